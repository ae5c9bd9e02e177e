"""RTSP camera ingest (视频图像接入): pull a camera with PyAV, decode once, publish VP8.

ARCHITECTURE.md, bridge/ gateways: an RTSP camera looks like an ordinary participant to the
relay. An :class:`RtspCamera` owns, for its whole life,

- a :class:`~bridge.vp8_publisher.Vp8Publisher` whose publication carries the camera as VP8
  (RFC 7741) into any slot (a terminal's ``main`` when the camera has the floor, a chair's
  preview) — the camera's H.264 (RFC 6184) is decoded once and encoded once, never per
  subscriber, and not encoded at all while no slot carries it;
- a :class:`~bridge.track_reader.LatestFrameTrack` that yields the decoded pictures to the
  wall's feeds (:meth:`RtspCamera.set_decode` implements
  :class:`~bridge.track_reader.DecodedSource`).

It pulls only while :meth:`RtspCamera.want` says someone shows it. Pulling runs in its own
thread: open (RTSP over TCP or UDP, RFC 2326 / RFC 7826, with socket and PyAV interrupt
timeouts), demux, decode, hand each frame on. When the stream fails or ends, the camera
retries with exponential backoff, capped, with jitter (so many cameras behind one dead
switch do not reconnect in lockstep), and keeps the reason for the status page.

States: ``idle`` (not wanted: "not shown, not pulled"), ``connecting``, ``live``,
``retrying`` (with the reason of the last failure and the attempt count). ``since`` is when
the state last changed, where connecting and retrying count as one episode of trying.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import av
from aiortc.mediastreams import MediaStreamTrack

from .encoder import EncoderConfig
from .publication import Publication, RelayConfig
from .track_reader import LatestFrameTrack
from .vp8_publisher import Vp8Publisher

__all__ = [
    "CameraConfig",
    "CameraState",
    "CameraStatus",
    "NoVideoError",
    "RtspCamera",
    "UnknownHostError",
    "failure_reason",
    "public_url",
]

logger = logging.getLogger(__name__)

#: The reason an idle camera gives.
NOT_PULLED = "not shown, not pulled"


class CameraState(enum.StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LIVE = "live"
    RETRYING = "retrying"


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """One camera's source and pulling policy (owned by :mod:`bridge`).

    - ``transport``: RTSP interleaved over TCP, or RTP over UDP (RFC 2326 10.12).
    - ``open_timeout_s`` / ``read_timeout_s``: give up on a camera that does not answer or
      stops sending (RTSP socket ``timeout`` option plus PyAV's interrupt timeouts).
    - backoff: the n-th retry in a row waits ``backoff_initial_s * 2**(n-1)``, at most
      ``backoff_max_s``, times a random factor in ``1 ± backoff_jitter``; a connection that
      stayed up ``backoff_reset_s`` starts the count again.
    - ``encoder``: the VP8 encode for subscribers (2 Mbit/s suits 720p); ``encode_max_height``:
      taller pictures are scaled down for it (the wall still gets the decoded original).
    """

    url: str
    transport: str = "tcp"
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.2
    backoff_reset_s: float = 10.0
    fps_hint: int = 25
    decoder_threads: int = 1
    encode_max_height: int | None = 720
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(bitrate=2_000_000, keyframe_interval_s=5.0)
    )

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be tcp or udp, got {self.transport!r}")
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        if not 0 <= self.backoff_jitter < 1:
            raise ValueError("backoff_jitter must lie in [0, 1)")
        if not self.url.startswith(("rtsp://", "rtsps://")):  # never a local file or device
            raise ValueError(
                f"url must start with rtsp:// or rtsps://, got {public_url(self.url)!r}"
            )

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number *attempt* (1, 2, ...)."""
        base = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** max(0, attempt - 1))
        return base * (1 - self.backoff_jitter + 2 * self.backoff_jitter * rand())


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """A snapshot for the status page (``since`` is Unix time)."""

    state: CameraState
    reason: str
    since: float
    attempts: int
    fps: float
    width: int
    height: int


def public_url(url: str) -> str:
    """*url* without credentials (``rtsp://user:pass@host/`` → ``rtsp://host/``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


class UnknownHostError(Exception):
    """The camera's host name does not resolve."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.host = host

    def __str__(self) -> str:
        return f"unknown host {self.host!r}"


class NoVideoError(Exception):
    """The camera's stream has no video track."""

    def __str__(self) -> str:
        return "no video stream"


def failure_reason(exc: BaseException, elapsed: float | None = None, limit: float = 0.0) -> str:
    """A short, operator-readable reason for a failed open or read."""
    if isinstance(exc, NoVideoError | UnknownHostError):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | av.ExitError):
        return "timeout"
    if elapsed is not None and limit and elapsed >= limit * 0.9:
        return "timeout"  # FFmpeg reports a socket timeout as "invalid data" at times
    if isinstance(exc, av.FFmpegError):
        text = (exc.strerror or str(exc)).strip()
        lowered = text.lower()
        if "not found" in lowered and "protocol" not in lowered:
            return f"not found ({text})"
        if "protocol not found" in lowered:
            return "bad URL (unsupported protocol)"
        if "unauthorized" in lowered or "401" in lowered:
            return "unauthorized (check the camera's user and password)"
        return text[:1].lower() + text[1:] if text else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return f"{type(exc).__name__}: {exc}"[:200]


class _Stop(Exception):
    """Raised inside the pull thread when its run was stopped."""


class RtspCamera:
    """Pulls one RTSP camera on demand (see the module docstring).

    :meth:`want`, :meth:`set_decode`, :meth:`status` and :meth:`close` run on the event loop;
    the pull thread reports back through ``call_soon_threadsafe``. *on_change* is called on
    the loop after every state change.
    """

    def __init__(
        self,
        camera_id: str,
        config: CameraConfig,
        *,
        relay_config: RelayConfig | None = None,
        on_change: Callable[[RtspCamera], None] | None = None,
    ) -> None:
        self.id = camera_id
        self.config = config
        self.on_change = on_change
        self.publisher = Vp8Publisher(
            camera_id,
            encoder=config.encoder,
            fps_hint=config.fps_hint,
            relay_config=relay_config,
            max_height=config.encode_max_height,
        )
        self.track = LatestFrameTrack()
        self.state = CameraState.IDLE
        self.reason = NOT_PULLED
        self.since = time.time()
        self.attempts = 0  # failed connections since the camera was last live
        self.connections = 0  # connections that went live
        self.frames = 0  # decoded frames, all connections
        self.width = 0
        self.height = 0
        self._decode = False
        self._wanted = False
        self._generation = 0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._frame_times: collections.deque[float] = collections.deque(maxlen=30)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"RtspCamera({self.id!r}, {self.state.value})"

    @property
    def publication(self) -> Publication:
        """The camera's VP8 publication (add it to the relay once)."""
        return self.publisher.publication

    @property
    def pulling(self) -> bool:
        return self._wanted and not self.closed

    # -- DecodedSource --------------------------------------------------------------------

    def set_decode(self, kind: str, decode: bool) -> MediaStreamTrack | None:
        """Hand decoded frames to :attr:`track` too (a wall shows the camera), or stop."""
        if kind != "video" or self.closed:
            return None
        self._decode = decode
        return self.track

    # -- control --------------------------------------------------------------------------

    def want(self, wanted: bool) -> None:
        """Pull while *wanted* (someone shows the camera); stop pulling otherwise."""
        if self.closed or wanted == self._wanted:
            return
        self._wanted = wanted
        self._loop = asyncio.get_running_loop()
        self.publisher.start()
        if wanted:
            self.attempts = 0
            self._generation += 1
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run,
                args=(self._generation, self._stop),
                name=f"rtsp-{self.id}",
                daemon=True,
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(self._thread)
            self._set_state(self._generation, CameraState.CONNECTING, "")
            self._thread.start()
        else:
            self._halt()
            self._set_state(self._generation, CameraState.IDLE, NOT_PULLED)

    def _halt(self) -> None:
        self._generation += 1  # whatever the old thread still reports is ignored
        if self._stop is not None:
            self._stop.set()
        self._stop = None
        self._thread = None
        self._frame_times.clear()

    def status(self) -> CameraStatus:
        return CameraStatus(
            state=self.state,
            reason=self.reason,
            since=self.since,
            attempts=self.attempts,
            fps=round(self.fps, 1),
            width=self.width,
            height=self.height,
        )

    @property
    def fps(self) -> float:
        """Decoded frames per second over the last ~30 frames (0 when stalled)."""
        times = tuple(self._frame_times)
        if len(times) < 2 or self.state is not CameraState.LIVE:
            return 0.0
        if time.monotonic() - times[-1] > 2.0:
            return 0.0
        span = times[-1] - times[0]
        return (len(times) - 1) / span if span > 0 else 0.0

    async def close(self) -> None:
        """Stop pulling, end the track, close the publication (idempotent)."""
        if self.closed:
            return
        self._wanted = False
        self._halt()
        self.closed = True
        self.track.stop()
        await self.publisher.close()
        threads = [t for t in self._threads if t.is_alive()]
        self._threads.clear()
        loop = asyncio.get_running_loop()
        limit = self.config.open_timeout_s + self.config.read_timeout_s + 1.0
        for thread in threads:  # bounded by the PyAV timeouts
            await loop.run_in_executor(None, thread.join, limit)

    # -- loop side of the thread's reports ------------------------------------------------

    def _set_state(self, generation: int, state: CameraState, reason: str) -> None:
        if generation != self._generation or self.closed:
            return
        if state is CameraState.RETRYING:
            self.attempts += 1
        if state is self.state and reason == self.reason:
            return
        if state is CameraState.LIVE:
            self.attempts = 0  # the pull thread keeps its own count for the backoff
            self.connections += 1
            self.publisher.request_keyframe()  # a fresh connection: start subscribers clean
        trying = (CameraState.CONNECTING, CameraState.RETRYING)
        if not (state in trying and self.state in trying):  # one episode of trying: one since
            self.since = time.time()
        self.state, self.reason = state, reason
        if state is CameraState.RETRYING:
            # the 1st, 2nd, 4th, 8th... failure in a row: a dead camera does not flood the log
            quiet = self.attempts & (self.attempts - 1) != 0
            logger.log(
                logging.DEBUG if quiet else logging.WARNING,
                "camera %s: %s; retry %d",
                self.id,
                reason,
                self.attempts,
            )
        else:
            logger.info("camera %s: %s%s", self.id, state.value, f" ({reason})" if reason else "")
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:
                logger.exception("camera %s: on_change failed", self.id)

    def _deliver(self, generation: int, frame: av.VideoFrame) -> None:
        if generation == self._generation and self._decode and not self.closed:
            self.track.put(frame)

    def _report(self, *what: object) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens any more
            loop.call_soon_threadsafe(*what)  # type: ignore[arg-type]

    # -- pull thread ----------------------------------------------------------------------

    def _run(self, generation: int, stop: threading.Event) -> None:
        """Connect, decode, retry with backoff, until *stop* is set."""
        attempt = 0
        while not stop.is_set():
            started = time.monotonic()
            session = _Connection()
            try:
                self._pull(generation, stop, session)
                reason = "stream ended"
            except _Stop:
                return
            except Exception as exc:
                elapsed = None if session.live_at is not None else time.monotonic() - started
                reason = failure_reason(exc, elapsed, self.config.open_timeout_s)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("camera %s failed", self.id, exc_info=True)
            if stop.is_set():
                return
            live_for = 0.0 if session.live_at is None else time.monotonic() - session.live_at
            if live_for >= self.config.backoff_reset_s:
                attempt = 0  # it was up a good while: start the backoff again
            attempt += 1
            self._report(self._set_state, generation, CameraState.RETRYING, reason)
            if stop.wait(self.config.backoff(attempt)):
                return
            self._report(self._set_state, generation, CameraState.CONNECTING, reason)

    def _pull(self, generation: int, stop: threading.Event, session: _Connection) -> None:
        """One connection, until the stream ends (returns) or fails (raises)."""
        cfg = self.config
        host = urlsplit(cfg.url).hostname
        if host:
            try:  # FFmpeg says only "Input/output error" for a name that does not resolve
                socket.getaddrinfo(host, None)
            except socket.gaierror:
                raise UnknownHostError(host) from None
        options = {
            "rtsp_transport": cfg.transport,
            # socket I/O timeout in microseconds (FFmpeg 5 renamed ``stimeout`` to this)
            "timeout": str(int(cfg.open_timeout_s * 1_000_000)),
        }
        container = av.open(
            cfg.url, "r", options=options, timeout=(cfg.open_timeout_s, cfg.read_timeout_s)
        )
        try:
            if not container.streams.video:
                raise NoVideoError
            stream = container.streams.video[0]
            stream.codec_context.thread_count = cfg.decoder_threads
            anchor: tuple[float, float] | None = None  # (monotonic, media seconds)
            for packet in container.demux(stream):
                if stop.is_set():
                    raise _Stop
                try:
                    frames = packet.decode()
                except av.InvalidDataError:  # a damaged packet: the next keyframe heals it
                    session.bad_packets += 1
                    continue
                for frame in frames:
                    if not isinstance(frame, av.VideoFrame):
                        continue
                    now = time.monotonic()
                    if session.live_at is None:
                        session.live_at = now
                        self._report(self._set_state, generation, CameraState.LIVE, "")
                    media = frame.time
                    if media is None:
                        capture = now
                    else:
                        if anchor is None or abs(anchor[0] + media - anchor[1] - now) > 2.0:
                            anchor = (now, media)  # first frame, or the camera's clock jumped
                        capture = anchor[0] + media - anchor[1]
                    self.frames += 1
                    self.width, self.height = frame.width, frame.height
                    self._frame_times.append(now)
                    self.publisher.submit(frame, capture)
                    if self._decode:
                        self._report(self._deliver, generation, frame)
        finally:
            container.close()


@dataclass(slots=True)
class _Connection:
    """What one connection of the pull thread has seen."""

    live_at: float | None = None  # monotonic time of its first decoded frame
    bad_packets: int = 0
