"""Protocol fuzzing against the real server: arbitrary frames never crash it; each gets a
valid reply or an ``error`` with a protocol code, and the connection stays usable.

The server runs on its own event loop in a thread so that hypothesis can drive a plain
synchronous websocket client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from signalling.errors import SignallingError
from signalling.messages import REQUEST_TYPES, Leave, parse
from web.app import Huishang
from web.config import default_config_path, load_config

CODES = {
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "too_large",
    "rate_limited",
    "internal",
}
TYPES = [*REQUEST_TYPES, "bogus"]
SITES = ["tianhe", "tianhe.zhuji", "tianhe.wall", "nowhere", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(SITES),
    st.sampled_from(["start", "next", "stop", "floor", "custom", "1+7", "9"]),
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={
        "site": field_values,
        "audio": field_values,
        "video": field_values,
        "up": field_values,
        "action": field_values,
        "sites": st.lists(st.sampled_from(SITES), max_size=3) | field_values,
        "target": field_values,
        "interval_s": field_values,
        "name": field_values,
        "text": field_values,
        "on": field_values,
        "layout": field_values,
        "sdp": field_values,
        "candidate": field_values,
        "protocol": field_values,
        "token": field_values,
    },
)
frames = st.one_of(
    messages.map(lambda m: json.dumps(m)),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=64),
)


class ServerThread:
    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.data_dir = data_dir
        self.app: Huishang | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(20), "server did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            config = load_config(default_config_path(), data_dir_override=self.data_dir)
            # Rate limiting has its own test; here every frame should reach the parser.
            limits = dataclasses.replace(config.limits, rate_per_s=10_000.0, rate_burst=10_000)
            config = dataclasses.replace(config, limits=limits)
            self.app = await Huishang.open(config=config, host="127.0.0.1", port=0)

        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        assert self.app is not None
        asyncio.run_coroutine_threadsafe(self.app.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Huishang]:
    thread = ServerThread(tmp_path_factory.mktemp("fuzz-data"))
    assert thread.app is not None
    yield thread.app
    thread.stop()


# The sync connections outlive the function that opens them (hypothesis drives them), so they
# are not context managers; websockets warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager")


def welcomed(app: Huishang, site: str) -> ClientConnection:
    ws = connect(app.signalling_url, compression=None, max_size=None)
    token = app.token_for(site)  # type: ignore[arg-type]
    ws.send(json.dumps({"type": "hello", "protocol": 1, "token": token}))
    assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
    return ws


def reply_to(ws: ClientConnection, rid: Any) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(ws.recv(timeout=5))
        if message.get("re") == rid:
            return message


def is_leave(frame: str | bytes) -> bool:
    try:
        return isinstance(parse(frame), Leave)
    except SignallingError:
        return False


def reply_to_leave(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(ws.recv(timeout=5))
        if message.get("type") in ("ok", "error"):
            ws.close()
            return message


def check_reply(reply: dict[str, Any]) -> None:
    assert reply["type"] in ("ok", "error", "welcome", "answer"), reply
    if reply["type"] == "error":
        assert reply["code"] in CODES and reply["code"] != "internal", reply
        assert isinstance(reply["message"], str) and reply["message"]


@pytest.mark.parametrize("site", ["tianhe", "tianhe.zhuji", "tianhe.operator"])
def test_arbitrary_frames_get_valid_replies(server: Huishang, site: str) -> None:
    conn = [welcomed(server, site)]
    counter = iter(range(10**9))

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(frame=frames)
    def probe(frame: str | bytes) -> None:
        ws = conn[0]
        ws.send(frame)
        if is_leave(frame):  # hypothesis finds "leave" too: it ends the session cleanly
            assert reply_to_leave(ws)["type"] == "ok"
            conn[0] = welcomed(server, site)
            return
        # Every frame gets exactly one reply; a ping with a fresh id marks where it ends.
        marker = f"m{next(counter)}"
        ws.send(json.dumps({"type": "ping", "id": marker}))
        replies = []
        while True:
            message = json.loads(ws.recv(timeout=5))
            if message.get("re") == marker:
                if message["type"] == "error":  # the marker itself was rate limited
                    assert message["code"] == "rate_limited"
                break
            if message.get("type") in ("ok", "error", "welcome", "answer"):
                replies.append(message)
        if any(r.get("code") == "rate_limited" for r in replies):
            return
        assert len(replies) == 1, (frame, replies)
        check_reply(replies[0])

    # Afterwards the connection must still answer a ping.
    try:
        probe()
    finally:
        ws = conn[0]
        try:
            ws.send(json.dumps({"type": "ping", "id": "final"}))
            final = reply_to(ws, "final")
            assert final["type"] in ("ok", "error")
        finally:
            ws.close()


def test_server_still_healthy_after_fuzzing(server: Huishang) -> None:
    ws = welcomed(server, "tianhe.xiancun")
    ws.send(json.dumps({"type": "hand", "up": True, "id": 1}))
    assert reply_to(ws, 1)["type"] == "ok"
    ws.close()
