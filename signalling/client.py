"""The Python terminal client: speaks PROTOCOL.md to a Huishang server.

Used by ``huishang join``, the tests, the benchmarks and (later) the cascade uplink::

    client = await Client.connect("ws://127.0.0.1:8081/", token, client_name="box-7")
    await client.request({"type": "hand", "up": True})
    event = await client.next_event("floor", timeout=5)
    await client.close()

Replies are matched to requests by ``id``; an ``error`` reply raises :class:`ClientError`.
Events are kept in :attr:`Client.events` in arrival order; :meth:`Client.next_event` walks them
with a cursor per event type, so no event is lost to a waiter of another type.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .messages import PROTOCOL_VERSION

__all__ = ["Client", "ClientError"]

Event = dict[str, Any]


class ClientError(Exception):
    """The server refused a request (or the session): carries the protocol's error ``code``."""

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.close_code = code, message, close_code


class Client:
    """One signalling session. Events are kept in :attr:`events` for :meth:`next_event`
    (tests, ``huishang join``); a long-lived client that only uses :attr:`on_event` (the
    cascade uplink) passes ``keep_events=False`` so they do not pile up for days."""

    def __init__(self, ws: ClientConnection, *, keep_events: bool = True) -> None:
        self._ws = ws
        self.keep_events = keep_events
        self._ids = itertools.count(1)
        self._pending: dict[int | str, asyncio.Future[Event]] = {}
        self._cursors: dict[str | None, int] = {}
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self.events: list[Event] = []
        self.welcome: Event = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self.on_event: Callable[[Event], None] | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        client_name: str = "huishang-python",
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        keep_events: bool = True,
    ) -> Client:
        """Open the socket, say hello and wait for ``welcome`` (or raise :class:`ClientError`)."""
        kwargs: dict[str, Any] = {"open_timeout": timeout, "max_size": 8 * 1024 * 1024}
        if url.startswith("wss:"):
            kwargs["ssl"] = ssl_context or ssl.create_default_context()
        ws = await connect(url, compression=None, **kwargs)
        client = cls(ws, keep_events=keep_events)
        hello = {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "token": token,
            "client": client_name,
            "id": "hello",
        }
        await ws.send(json.dumps(hello))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    reply = json.loads(await ws.recv())
                    if reply.get("type") == "welcome":
                        client.welcome = reply
                        break
                    if reply.get("type") == "error":
                        raise ClientError(reply["code"], reply["message"])
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            raise ClientError("closed", f"connection closed ({code})", code) from None
        except ClientError as exc:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                async with asyncio.timeout(2):
                    await ws.wait_closed()
            exc.close_code = ws.close_code
            await ws.close()
            raise
        client._reader = asyncio.create_task(client._read(), name="huishang-client-reader")
        return client

    @property
    def session(self) -> str:
        return str(self.welcome.get("session", ""))

    @property
    def site(self) -> Event:
        site: Event = self.welcome.get("site", {})
        return site

    @property
    def closed(self) -> bool:
        return self._reader is None or self._reader.done()

    async def send(self, message: Event) -> None:
        """Send one frame as is (no reply tracking)."""
        await self._ws.send(json.dumps(message, ensure_ascii=False))

    async def send_raw(self, frame: str | bytes) -> None:
        await self._ws.send(frame)

    async def request(self, message: Event, timeout: float = 10.0) -> Event:
        """Send a request with a fresh ``id``; return the ``ok`` (or ``answer``) reply."""
        rid = message.get("id", next(self._ids))
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await self.send({**message, "id": rid})
            async with asyncio.timeout(timeout):
                reply = await future
        finally:
            self._pending.pop(rid, None)
        if reply.get("type") == "error":
            raise ClientError(reply.get("code", "?"), reply.get("message", ""))
        return reply

    async def next_event(
        self,
        type_: str | None = None,
        timeout: float = 10.0,
        where: Callable[[Event], bool] | None = None,
    ) -> Event:
        """The next event of *type_* (any when None) after the last one this returned for it."""
        key = type_
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                start = self._cursors.get(key, 0)
                for i in range(start, len(self.events)):
                    event = self.events[i]
                    if (type_ is None or event.get("type") == type_) and (
                        where is None or where(event)
                    ):
                        self._cursors[key] = i + 1
                        return event
                self._cursors[key] = len(self.events)
                if self.closed:
                    raise ClientError("closed", f"connection closed ({self.close_code})")
                await self._arrived.wait()

    async def close(self, *, leave: bool = True) -> None:
        """Leave cleanly (or just drop the socket with ``leave=False``); idempotent."""
        if leave and not self.closed:
            with contextlib.suppress(ConnectionClosed, TimeoutError, ClientError):
                await self.request({"type": "leave"}, timeout=2)
        await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                message = json.loads(frame)
                if (
                    isinstance(message, dict)
                    and "re" in message
                    and message.get("type")
                    in (
                        "ok",
                        "error",
                        "answer",
                    )
                ):
                    future = self._pending.get(message["re"])
                    if future is not None and not future.done():
                        future.set_result(message)
                        continue
                async with self._arrived:
                    if self.keep_events:
                        self.events.append(message)
                    self._arrived.notify_all()
                if self.on_event is not None:
                    self.on_event(message)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason or ""
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(
                        ClientError("closed", "connection closed", self.close_code)
                    )
            async with self._arrived:
                self._arrived.notify_all()
