"""A live RTSP camera for the tests: GStreamer's RTSP server serving videotestsrc as H.264.

Run with Debian's own interpreter (python3-gi belongs to it, not to the project's venv)::

    /usr/bin/python3 tests/rtsp_camera_server.py --port 0 --path /cam1 --pattern red

``--port 0`` takes a free port. Once it listens it prints one line ``READY rtsp://HOST:PORT/PATH``
to stdout, then ``CLIENTS n`` each time the number of connected RTSP clients changes, so a
test can tell whether anyone pulls the camera. SIGTERM or SIGINT stop it cleanly (exit 0).

Pipeline: ``videotestsrc is-live=true pattern=P ! WxH@FPS ! x264enc tune=zerolatency
! rtph264pay`` (RFC 6184), one pipeline shared by all clients, a keyframe every second.
``--audio-only`` serves Opus audio and no video (a camera "without a picture").
Not a pytest module (no ``test_`` prefix); it is a program the tests start.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default="/cam1")
    parser.add_argument("--pattern", default="red", help="videotestsrc pattern (red, blue, ball…)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument(
        "--speed", type=int, default=0, help="videotestsrc horizontal-speed (moving picture)"
    )
    parser.add_argument("--bitrate", type=int, default=800, help="x264enc kbit/s")
    parser.add_argument(
        "--audio-only", action="store_true", help="serve Opus audio and no video at all"
    )
    args = parser.parse_args(argv)

    Gst.init(None)
    loop = GLib.MainLoop()
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    launch = (
        f"( videotestsrc is-live=true pattern={args.pattern} horizontal-speed={args.speed} "
        f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        f"bitrate={args.bitrate} ! video/x-h264,profile=constrained-baseline "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    if args.audio_only:
        launch = "( audiotestsrc is-live=true ! opusenc ! rtpopuspay name=pay0 pt=97 )"
    factory.set_launch(launch)
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)

    clients = 0

    def report() -> None:
        print(f"CLIENTS {clients}", flush=True)

    def on_closed(_client: GstRtspServer.RTSPClient) -> None:
        nonlocal clients
        clients -= 1
        report()

    def on_connected(_server: GstRtspServer.RTSPServer, client: GstRtspServer.RTSPClient) -> None:
        nonlocal clients
        clients += 1
        client.connect("closed", on_closed)
        report()

    server.connect("client-connected", on_connected)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1
    port = server.get_bound_port()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"READY rtsp://{args.host}:{port}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
