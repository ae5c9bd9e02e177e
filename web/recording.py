"""The recording gateway: the chair's record switch drives :class:`bridge.recorder.Recorder`.

The conference (signalling) decides *whether* to record: the chair's ``record`` request
(PROTOCOL.md) emits the fact ``RecordingChanged(on, at)``. This gateway follows that fact
(``app.fact_listeners``) and decides *what and where*:

- What: :attr:`RecordingConfig.source`: a wall output id (default: the conference's first
  output, ``conference.config.outputs[0]``), or ``"programme"`` (what a terminal sees: the
  floor holder, or the chair when nobody holds the floor). Audio is always the programme's
  (chair + floor holder, mixed by the server when both speak). The programme is routed to the
  recorder's slots by ``MediaBridge.carry_programme`` after every plan (a floor change switches
  the recording at the new source's keyframe); a wall output's publication is routed once. The
  conference keeps the programme's publishers un-paused while recording is on.
- Where: ``<data_dir>/recordings/<conference id>-<HHMMSS>.webm`` (WebM: VP8 + Opus as they
  came, no re-encoding; playable in a browser, and after a crash: :mod:`bridge.recorder`).
- The index (:class:`web.store.Store`, ``recordings``): a row when recording starts (so a file
  whose process died is still listed), completed with end, duration and size when it stops. At
  start-up, rows a dead process left unfinished are completed from their files (end: the
  file's modification time), or dropped when the file is gone. A recording that caught no
  media at all leaves no file and no row.
- Shutdown (the app closes its gateways before the media plane) stops a running recording
  cleanly: the file is closed and indexed.

HTTP (chair only: ``?token=`` or ``Authorization: Bearer``; no token 401, another role 403):

- ``GET /api/recordings``: ``{"recording": bool, "recordings": [{id, conference_id, file,
  source, started_at, ended_at, duration_s, size, url}, ...]}``, newest first (``ended_at``
  null: still recording).
- ``GET /recordings/{id}``: the file, as an attachment (``Content-Disposition``); 404 for an
  unknown id or a missing file. Only files directly inside the recordings folder are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.recorder import Recorder, RecorderConfig
from signalling import conference as conf
from signalling.model import Role
from web.config import ConfigError
from web.gateway import Gateway
from web.store import RecordingEntry

if TYPE_CHECKING:
    from web.app import Huishang

__all__ = ["PROGRAMME", "RecordingConfig", "RecordingGateway", "start"]

logger = logging.getLogger(__name__)

#: :attr:`RecordingConfig.source` for the programme (floor holder, else chair).
PROGRAMME = "programme"
_KEY = "recorder"  # MediaBridge.carry_programme key
_MAX_ID_DIGITS = 18  # SQLite integers are 64-bit


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    """What the recorder records and where (owned by :mod:`web.recording`).

    - ``source``: a wall output id, :data:`PROGRAMME`, or None for the first wall output.
    - ``folder``: the recordings folder, relative to the data directory.
    - ``recorder``: the file writer's own settings (:class:`bridge.recorder.RecorderConfig`).
    """

    source: str | None = None
    folder: str = "recordings"
    recorder: RecorderConfig = field(default_factory=RecorderConfig)


@dataclass(slots=True)
class _Active:
    entry: RecordingEntry
    recorder: Recorder


class RecordingGateway:
    """Follows ``RecordingChanged``; serves the index and the files (module docstring)."""

    def __init__(self, app: Huishang, config: RecordingConfig | None = None) -> None:
        self.app = app
        self.config = config or RecordingConfig()
        self.folder = Path(app.config.data_dir) / self.config.folder
        self.active: _Active | None = None
        self.closed = False
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- following the conference -----------------------------------------------------------

    def on_facts(self, facts: Sequence[conf.Fact]) -> None:
        """A fact listener (``app.fact_listeners``): start or stop on ``RecordingChanged``."""
        for fact in facts:
            if isinstance(fact, conf.RecordingChanged) and not self.closed:
                task = asyncio.get_running_loop().create_task(self.set_recording(fact.on))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def set_recording(self, on: bool) -> None:
        """Start (a new file) or stop (close and index it); repeating a state does nothing."""
        async with self._lock:
            try:
                if on and self.active is None and not self.closed:
                    await self._start()
                elif not on and self.active is not None:
                    await self._stop()
            except Exception:
                logger.exception("recording could not be %s", "started" if on else "stopped")
                if on and self.active is None and not self.closed:
                    # nothing is being recorded: say so everywhere instead of a red dot that lies
                    conference = self.app.conference
                    self.app.signalling.deliver(conference.set_recording(False, time.time()))

    def source_id(self) -> str:
        """What is recorded: :data:`PROGRAMME` or a wall output id."""
        outputs = self.app.conference.config.outputs
        source = self.config.source
        if source is None:
            return outputs[0] if outputs else PROGRAMME
        return source

    def _file_name(self, conference_id: str, started: float) -> str:
        stem = f"{conference_id}-{time.strftime('%H%M%S', time.localtime(started))}"
        suffix = ".webm" if self.config.recorder.container_format == "webm" else ".mkv"
        name, n = stem + suffix, 1
        while (self.folder / name).exists() or self._indexed(name):
            n += 1
            name = f"{stem}-{n}{suffix}"
        return name

    def _indexed(self, name: str) -> bool:
        return any(r.file == name for r in self.app.store.recordings())

    async def _start(self) -> None:
        app, media = self.app, self.app.media
        if media is None:
            raise RuntimeError("the media plane is not running")
        conference_id = app.conference.config.conference_id
        started = time.time()
        source = self.source_id()
        self.folder.mkdir(parents=True, exist_ok=True)
        name = self._file_name(conference_id, started)
        entry = app.store.start_recording(conference_id, name, source, started)
        try:
            recorder = Recorder(
                self.folder / name,
                media.relay,
                recorder_id=f"recorder-{entry.id}",
                config=self.config.recorder,
                video_size=self._video_size(source),
            )
        except BaseException:
            app.store.delete_recording(entry.id)
            raise
        self.active = _Active(entry, recorder)
        recorder.start()
        if source == PROGRAMME:
            media.carry_programme(_KEY, video=recorder.video_slot, audio=recorder.audio_slot)
        else:
            media.carry_programme(_KEY, audio=recorder.audio_slot)
            publication = media.local_sources.get(source, {}).get("video")
            if publication is None or publication.closed:
                logger.warning("recording %s: no wall output %r to record", name, source)
            else:
                media.relay.route(recorder.video_slot, publication)
        logger.info("recording %s started (%s)", name, source)

    def _video_size(self, source: str) -> tuple[int, int] | None:
        walls = self.app.walls
        output = walls.outputs.get(source) if walls is not None else None
        if output is None:
            return None
        return output.config.compositor.width, output.config.compositor.height

    async def _stop(self) -> None:
        active, self.active = self.active, None
        if active is None:
            return
        media = self.app.media
        if media is not None:
            media.drop_programme(_KEY)
        result = await active.recorder.stop()
        store = self.app.store
        if store.closed:
            return
        if result.size == 0:  # nothing was recorded: no file, no entry
            store.delete_recording(active.entry.id)
            logger.info("recording %s caught no media: dropped", active.entry.file)
            return
        store.finish_recording(active.entry.id, result.ended_at, result.duration_s, result.size)
        stats = active.recorder.stats
        logger.info(
            "recording %s: %.1f s, %d bytes, %d video + %d audio frames, %d dropped, %d errors",
            active.entry.file,
            result.duration_s,
            result.size,
            result.video_frames,
            result.audio_frames,
            stats.queue_dropped + active.recorder.vp8.dropped,
            result.errors,
        )

    def recover(self) -> None:
        """Complete the rows a dead process left unfinished (see the module docstring)."""
        store = self.app.store
        for entry in store.recordings(unfinished=True):
            path = self.folder / entry.file
            try:
                stat = path.stat()
            except OSError:
                store.delete_recording(entry.id)
                logger.warning("recording %s is gone: dropped from the index", entry.file)
                continue
            ended = max(entry.started_at, stat.st_mtime)
            store.finish_recording(entry.id, ended, ended - entry.started_at, stat.st_size)
            logger.warning("recording %s was not finished (the server stopped)", entry.file)

    async def close(self) -> None:
        """Stop a running recording cleanly (idempotent)."""
        self.closed = True
        for task in tuple(self._tasks):
            with contextlib.suppress(Exception):
                await task
        await self.set_recording(False)
        with contextlib.suppress(ValueError):
            self.app.fact_listeners.remove(self.on_facts)

    # -- HTTP -------------------------------------------------------------------------------

    def _chair(self, request: web.Request) -> None:
        token = request.query.get("token", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth.removeprefix("Bearer ").strip()
        site_id = self.app.authenticate(token) if token else None
        if site_id is None:
            raise web.HTTPUnauthorized(text="a chair token is required (?token= or Bearer)")
        site = self.app.conference.sites.get(site_id)
        if site is None or site.role is not Role.CHAIR:
            raise web.HTTPForbidden(text="only the chair may read recordings")

    async def list_recordings(self, request: web.Request) -> web.Response:
        self._chair(request)
        entries = self.app.store.recordings()
        return web.json_response(
            {
                "recording": self.active is not None,
                "recordings": [_wire(entry) for entry in entries],
            },
            dumps=_dumps,
        )

    async def download(self, request: web.Request) -> web.StreamResponse:
        self._chair(request)
        raw = request.match_info.get("id", "")
        if not raw.isdigit() or len(raw) > _MAX_ID_DIGITS:
            raise web.HTTPNotFound(text="no such recording")
        entry = self.app.store.recording(int(raw))
        if entry is None:
            raise web.HTTPNotFound(text="no such recording")
        folder = self.folder.resolve()
        path = (folder / entry.file).resolve()
        if path.parent != folder or not path.is_file():
            raise web.HTTPNotFound(text="the recording's file is missing")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "video/webm" if path.suffix == ".webm" else "video/x-matroska",
                "Content-Disposition": f'attachment; filename="{path.name}"',
                "Cache-Control": "no-cache",
            },
        )


def _wire(entry: RecordingEntry) -> dict[str, Any]:
    body = dataclasses.asdict(entry)
    body["url"] = f"/recordings/{entry.id}"
    return body


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


async def start(app: Huishang, aio: web.Application) -> Gateway:
    """The gateway entry point (:mod:`web.gateway`): listen for the record switch, add the
    routes, complete what a previous process left unfinished."""
    source = app.config.recording_source
    outputs = app.conference.config.outputs
    if source is not None and source != PROGRAMME and source not in outputs:
        choices = ", ".join(repr(o) for o in (PROGRAMME, *outputs))
        raise ConfigError(
            app.config.path, "recording.source", f"{source!r} is not one of {choices}"
        )
    gateway = RecordingGateway(app, RecordingConfig(source=source))
    gateway.recover()
    app.fact_listeners.append(gateway.on_facts)
    aio.router.add_get("/api/recordings", gateway.list_recordings)
    aio.router.add_get("/recordings/{id}", gateway.download)
    return gateway
