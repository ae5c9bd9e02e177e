"""The ``huishang`` command: ``serve``, ``join`` and ``token`` (ARCHITECTURE.md, web/).

huishang serve [--config FILE] [--data DIR] [--host HOST] [--port PORT]
huishang join --url URL --token TOKEN [--hand] [--no-ack] [--seconds N]
              [--source testsrc|file:PATH|v4l2:/dev/videoN|rtsp://...] [--no-media]
              [--previews N] [--ice-host ADDR]
huishang token SITE [--config FILE] [--data DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from bridge.ice import IceConfig, apply_ice_config
from signalling.client import Client, ClientError
from signalling.source import Source, open_source
from signalling.terminal import MediaTerminal, TerminalConfig
from web.config import ConfigError, default_config_path, load_config

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="huishang", description="Huishang 会商 video bridge")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (default: the demo config)")
    serve.add_argument("--config", type=Path, default=None, help="huishang.toml to use")
    serve.add_argument("--data", type=Path, default=None, help="data directory (overrides config)")
    serve.add_argument("--host", default=None, help="listen address (overrides config)")
    serve.add_argument(
        "--port",
        type=int,
        default=None,
        help="web port; signalling takes PORT+1 (0: free ports for both)",
    )

    join = commands.add_parser("join", help="join a conference as a terminal")
    join.add_argument("--url", required=True, help="the server's web URL or a join link")
    join.add_argument("--token", default=None, help="the site's token (or ?token= in --url)")
    join.add_argument("--hand", action="store_true", help="raise a hand after joining")
    join.add_argument("--no-ack", action="store_true", help="do not answer roll calls")
    join.add_argument("--seconds", type=float, default=None, help="leave after N seconds")
    join.add_argument(
        "--source",
        default="testsrc",
        help="what to send: testsrc (a test pattern with the site's name), file:PATH, "
        "v4l2:/dev/videoN or an rtsp:// URL (default: testsrc)",
    )
    join.add_argument("--no-media", action="store_true", help="signalling only, no media")
    join.add_argument(
        "--previews", type=int, default=0, help="extra receive-only video slots to offer"
    )
    join.add_argument(
        "--ice-host",
        action="append",
        default=None,
        help="gather ICE host candidates on this address only (repeatable; default: "
        "127.0.0.1 when the server is on loopback, else every interface)",
    )

    token = commands.add_parser("token", help="issue a new join token for a site")
    token.add_argument("site", help="site id, e.g. tianhe.zhuji")
    token.add_argument("--config", type=Path, default=None)
    token.add_argument("--data", type=Path, default=None)

    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose if args.command != "serve" else logging.INFO
    logging.basicConfig(
        level=max(level - (10 if args.verbose else 0), logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            return _run(_serve(args))
        if args.command == "join":
            return _run(_join(args))
        return _token(args)
    except ConfigError as exc:
        print(f"huishang: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop's event loop where it is installed (cheaper per packet), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _serve(args: argparse.Namespace) -> int:
    from web.app import Huishang  # the composition root is only needed to serve

    app = await Huishang.open(args.config, args.data, host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        print(f"Huishang 会商 — conference {app.conference.config.conference_id}")
        print(f"web        {app.web_url}")
        print(f"signalling {app.signalling_url}")
        print(f"status     {app.web_url}/status")
        print(f"data       {app.config.data_dir}")
        print("join links (one per site):")
        for site in app.config.sites:
            token = app.token_for(site.id)
            uplink = app.config.uplink
            if uplink is not None and site.id == uplink.site:
                url = f"(the upper level, through [uplink] {uplink.url})"
            elif token:
                url = app.join_url(site.id)
            else:
                url = "(no plain token: huishang token " + site.id + ")"
            print(f"  {site.id:24} {site.name}\t{url}")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await app.close()
    return 0


async def _join(args: argparse.Namespace) -> int:
    url = args.url
    token = args.token or parse_qs(urlsplit(url).query).get("token", [None])[0]
    if not token:
        print("huishang join: give --token or a join link with ?token=", file=sys.stderr)
        return 2
    signalling_url = await _signalling_url(url)
    opened: Source | None = None
    if not args.no_media:
        if args.source != "testsrc":  # a camera or file that cannot open fails before joining
            try:
                opened = open_source(args.source)
            except (ValueError, OSError) as exc:
                print(f"huishang join: cannot open --source {args.source}: {exc}", file=sys.stderr)
                return 2
        _loopback_ice(args.ice_host, signalling_url)
    try:
        client = await Client.connect(signalling_url, token, client_name="huishang-join/0.1")
    except ClientError as exc:
        print(f"huishang join: refused: {exc}", file=sys.stderr)
        if opened is not None:
            opened[2]()
        return 1
    site = client.site
    _print({"joined": site, "session": client.session})
    acked: set[int] = set()

    def on_event(event: dict[str, Any]) -> None:
        _print(event)
        state = event.get("state") or {}
        called = event.get("type") == "rollcall" and state.get("current") == site.get("id")
        if called and not args.no_ack and state.get("round") not in acked:
            acked.add(state.get("round", 0))
            asyncio.get_running_loop().create_task(_ack(client))

    client.on_event = on_event
    for event in client.events:
        on_event(event)
    if args.hand:
        await client.request({"type": "hand", "up": True})
    terminal: MediaTerminal | None = None
    reporter: asyncio.Task[None] | None = None
    if not args.no_media:
        if opened is None:  # the test pattern shows the site's name
            opened = open_source(args.source, str(site.get("name", "")))
        video, audio, _stop = opened
        terminal = MediaTerminal(
            client, video=video, audio=audio, config=TerminalConfig(extra_videos=args.previews)
        )
        try:
            slots = await terminal.start()
        except (ClientError, ConnectionError, TimeoutError) as exc:
            print(f"huishang join: media failed: {exc}", file=sys.stderr)
            await terminal.close()
            await client.close()
            return 1
        _print({"media": {"slots": slots, "source": args.source}})
        reporter = asyncio.get_running_loop().create_task(_report(terminal))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    closed = loop.create_task(_wait_closed(client))
    waiter = loop.create_task(stop.wait())
    await asyncio.wait([closed, waiter], timeout=args.seconds, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if reporter is not None:
        reporter.cancel()
    if terminal is not None:
        await terminal.close()
    if closed.done():
        print(
            f"huishang join: disconnected ({client.close_code} {client.close_reason})",
            file=sys.stderr,
        )
        return 1
    closed.cancel()
    await client.close()
    return 0


def _loopback_ice(hosts: list[str] | None, signalling_url: str) -> None:
    """ICE host candidates: the given addresses, else loopback for a server on loopback."""
    if hosts is None:
        host = urlsplit(signalling_url).hostname or ""
        with contextlib.suppress(ValueError):
            if host == "localhost" or ipaddress.ip_address(host).is_loopback:
                hosts = ["127.0.0.1"]
    if hosts:
        apply_ice_config(IceConfig(host_addresses=tuple(hosts)))


async def _report(terminal: MediaTerminal) -> None:
    """Once a second: frames per second of ``main`` (and the rest of the media status)."""
    while True:
        await asyncio.sleep(1.0)
        _print({"media": terminal.status()})


async def _ack(client: Client) -> None:
    try:
        await client.request({"type": "rollcall_ack"})
        _print({"acked": True})
    except ClientError as exc:
        _print({"ack_refused": str(exc)})


async def _wait_closed(client: Client) -> None:
    while not client.closed:
        await asyncio.sleep(0.2)


async def _signalling_url(url: str) -> str:
    """A ws(s):// URL is used as is; an http(s):// URL is asked ``/api/info`` (discovery)."""
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        return url
    base = f"{parts.scheme}://{parts.netloc}"
    async with aiohttp.ClientSession() as session, session.get(f"{base}/api/info") as response:
        info = await response.json()
    return str(info["signalling"])


def _print(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def _token(args: argparse.Namespace) -> int:
    from web.token_command import issue_token

    config = load_config(args.config or default_config_path(), data_dir_override=args.data)
    try:
        token = issue_token(config, args.site)
    except LookupError as exc:
        print(f"huishang token: {exc}", file=sys.stderr)
        return 2
    print(f"{args.site}\t{token}")
    print(f"join link: http://{config.web.host}:{config.web.port}/join?token={token}")
    print("the site's previous token no longer works", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
