"""Reading a decoded remote track in its own task (the wall's feeds, the audio mixer), and
the decoded-frame track a gateway offers them (:class:`LatestFrameTrack`).

aiortc queues a decoding track's frames without bound until someone reads them, so a reader
keeps draining while inactive and hands frames on only while active. Subclasses say what to do
with one frame (:meth:`TrackReader.take`).

A track that decodes in a thread of its own may also offer its frames right there
(:class:`AttachableTrack`, e.g. :class:`bridge.decoder.DecodedVideoTrack`): a reader that can
take frames in any thread attaches to it and saves a hop through the event loop per frame
(a cross-thread wake-up, a queue, a task switch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

__all__ = ["AttachableTrack", "DecodedSource", "LatestFrameTrack", "TrackReader"]

logger = logging.getLogger(__name__)


class DecodedSource(Protocol):
    """Something whose publication of one kind can also be decoded: a connected participant
    (:class:`bridge.peer.Peer`) or a gateway that makes its pictures itself (an RTSP camera,
    a WHIP push, the cascade uplink).

    ``set_decode(kind, True)`` turns decoding on (asking for a keyframe where that helps) and
    returns the track whose ``recv`` yields the decoded frames, or None when there is no such
    publication; ``set_decode(kind, False)`` turns it off again.
    """

    def set_decode(self, kind: str, decode: bool) -> MediaStreamTrack | None: ...


@runtime_checkable
class AttachableTrack(Protocol):
    """A track that can hand its frames to a consumer in the thread that makes them.

    While a consumer is attached, frames go to it and not to ``recv``, which then only
    reports the end of the track (MediaStreamError).
    """

    @property
    def consumer(self) -> Callable[[Any], None] | None: ...

    def attach(self, consumer: Callable[[Any], None] | None) -> None: ...


class TrackReader:
    """Reads one remote track until it ends; :meth:`take` each frame while active."""

    def __init__(
        self,
        track: MediaStreamTrack,
        *,
        on_end: Callable[[Any], None] | None = None,
    ) -> None:
        self.track = track
        self.active = True
        self.frames = 0  # frames taken
        self.drained = 0  # frames read while inactive, or not taken
        self._on_end = on_end
        self._task: asyncio.Task[None] = asyncio.ensure_future(self._run())

    @property
    def done(self) -> bool:
        return self._task.done()

    def take(self, frame: Any) -> bool:
        """Use one decoded frame; False when it was not usable."""
        raise NotImplementedError

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                if self.active and self.take(frame):
                    self.frames += 1
                else:
                    self.drained += 1
        except MediaStreamError:
            pass  # the publisher's connection ended
        except Exception:
            logger.exception("%s of track %s failed", type(self).__name__, self.track.id)
        finally:
            if self._on_end is not None:
                self._on_end(self)

    async def close(self) -> None:
        """Stop reading (idempotent)."""
        self.active = False
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class LatestFrameTrack(MediaStreamTrack):
    """A decoded-video track whose :meth:`recv` yields the newest frame (older ones are
    dropped, never queued): what a gateway that decodes anyway (an RTSP camera, an H.264
    WHIP push) hands the wall's :class:`~bridge.feeds.FeedReader` from
    :meth:`DecodedSource.set_decode`."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._frame: VideoFrame | None = None
        self._event = asyncio.Event()
        self.put_count = 0
        self.dropped = 0

    def put(self, frame: VideoFrame) -> None:
        """Offer the newest frame (on the event loop)."""
        if self.readyState != "live":
            return
        if self._frame is not None:
            self.dropped += 1
        self._frame = frame
        self.put_count += 1
        self._event.set()

    async def recv(self) -> VideoFrame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            frame = self._frame
            if frame is not None:
                self._frame = None
                self._event.clear()
                return frame
            await self._event.wait()

    def stop(self) -> None:
        super().stop()
        self._frame = None
        self._event.set()  # wakes a reader, which then raises MediaStreamError
