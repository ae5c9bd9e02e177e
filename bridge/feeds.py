"""Decoded wall feeds: one decoder per publication on some wall, shared by every output.

ARCHITECTURE.md, "The wall": only the feeds a wall shows are decoded. :class:`Feeds` is told
which sources are wanted and which :class:`~bridge.track_reader.DecodedSource` (a peer or a
gateway) publishes each one now (:meth:`Feeds.update`); it turns decoding on
(:meth:`~bridge.track_reader.DecodedSource.set_decode`, which also asks the
publisher for a keyframe) for new ones and off for those no longer wanted, and deposits every
decoded frame into each sink (the outputs' compositors) with :meth:`FrameSink.push`.

Decoding itself runs off the event loop: for a participant's camera in the
:class:`~bridge.decoder.VideoDecoder` worker that :meth:`bridge.peer.Peer.set_decode` attaches
to the publication (fed by the relay's RTP, no aiortc receiver path), for a gateway wherever
it decodes. A :class:`FeedReader` only moves finished frames from the track into the sinks (a
reference and a lock per output, no copy): from a decoder's track right in the decoding
thread (:class:`~bridge.track_reader.AttachableTrack`: no hop through the event loop per
frame), from other tracks in its task. A feed that stalls or breaks never delays a composed
frame: the compositor shows its last picture, then "no signal".

A reader lives as long as its track (the publisher's connection): while its feed is not
wanted it keeps draining the track, so frames decoded just before decoding stopped never
reach a wall later as stale pictures, and a track nobody reads never queues frames.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

from .track_reader import AttachableTrack, DecodedSource, TrackReader

__all__ = ["FeedReader", "Feeds", "FrameSink"]

logger = logging.getLogger(__name__)


class FrameSink(Protocol):
    """Where decoded frames go (a :class:`~bridge.wall.WallOutput`)."""

    def push(self, source_id: str, frame: VideoFrame, now: float) -> None: ...

    def remove(self, source_id: str) -> None: ...


class FeedReader(TrackReader):
    """Reads one remote video track; deposits its frames into the sinks while active.

    On an :class:`~bridge.track_reader.AttachableTrack` the frames arrive in the decoding
    thread; :attr:`active` is then switched under a lock, so once it is set False no frame of
    this reader reaches a sink any more.
    """

    def __init__(
        self,
        source_id: str,
        track: MediaStreamTrack,
        sinks: Sequence[FrameSink],
        *,
        clock: Callable[[], float] = time.monotonic,
        on_end: Callable[[FeedReader], None] | None = None,
    ) -> None:
        self.source_id = source_id
        self.sinks = sinks
        self._clock = clock
        self._lock = threading.Lock()
        self._active = True
        super().__init__(track, on_end=on_end)
        if isinstance(track, AttachableTrack):
            track.attach(self._direct)

    @property
    def active(self) -> bool:
        return self._active

    @active.setter
    def active(self, value: bool) -> None:
        with self._lock:
            self._active = value

    def take(self, frame: object) -> bool:
        if not isinstance(frame, VideoFrame):
            return False
        now = self._clock()
        for sink in self.sinks:
            sink.push(self.source_id, frame, now)
        return True

    def _direct(self, frame: VideoFrame) -> None:
        """A frame from an attached track, in the decoding thread."""
        with self._lock:
            try:
                if self._active and self.take(frame):
                    self.frames += 1
                    return
            except Exception:
                logger.exception("wall feed %s: cannot deposit a frame", self.source_id)
            self.drained += 1

    async def close(self) -> None:
        track = self.track
        if isinstance(track, AttachableTrack) and track.consumer == self._direct:
            track.attach(None)
        await super().close()


class _Feed:
    __slots__ = ("peer", "reader")

    def __init__(self, peer: DecodedSource, reader: FeedReader) -> None:
        self.peer = peer
        self.reader = reader


class Feeds:
    """The decoded feeds of every wall output (see the module docstring)."""

    def __init__(
        self, sinks: Sequence[FrameSink], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sinks = tuple(sinks)
        self._clock = clock
        self._feeds: dict[str, _Feed] = {}
        self._readers: dict[MediaStreamTrack, FeedReader] = {}
        self.closed = False

    @property
    def decoding(self) -> dict[str, DecodedSource]:
        """Source id → the peer whose publication is decoded for it."""
        return {source: feed.peer for source, feed in self._feeds.items()}

    def reader(self, source_id: str) -> FeedReader | None:
        feed = self._feeds.get(source_id)
        return feed.reader if feed is not None else None

    def update(self, wanted: Mapping[str, DecodedSource | None]) -> None:
        """Decode exactly the ``wanted`` sources that have a publisher now.

        ``wanted`` maps each source some output shows (or is about to show) to the peer that
        publishes it, or None when it has none (offline): its tiles then show it offline.
        """
        if self.closed:
            return
        for source, feed in list(self._feeds.items()):
            if source in wanted and wanted[source] is feed.peer and not feed.reader.done:
                continue
            self._stop(source, feed)
        for source, peer in wanted.items():
            if peer is None:
                self._forget(source)
            elif source not in self._feeds:
                self._start(source, peer)

    def _start(self, source: str, peer: DecodedSource) -> None:
        track = peer.set_decode("video", True)
        if track is None:
            self._forget(source)  # no camera published (yet)
            return
        reader = self._readers.get(track)
        if reader is None or reader.done:
            reader = FeedReader(source, track, self.sinks, clock=self._clock, on_end=self._ended)
            self._readers[track] = reader
        reader.source_id = source
        reader.active = True
        self._feeds[source] = _Feed(peer, reader)
        logger.info("wall feed %s: decoding %r", source, peer)

    def _stop(self, source: str, feed: _Feed) -> None:
        del self._feeds[source]
        feed.reader.active = False  # keeps draining whatever was decoded meanwhile
        with contextlib.suppress(Exception):  # a closed peer has nothing left to stop
            feed.peer.set_decode("video", False)
        self._forget(source)
        logger.info("wall feed %s: stopped decoding %r", source, feed.peer)

    def _forget(self, source: str) -> None:
        for sink in self.sinks:
            sink.remove(source)

    def _ended(self, reader: FeedReader) -> None:
        if self._readers.get(reader.track) is reader:
            del self._readers[reader.track]

    def sources(self) -> Iterable[str]:
        return tuple(self._feeds)

    async def close(self) -> None:
        """Stop decoding everything and every reader (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for source, feed in list(self._feeds.items()):
            self._stop(source, feed)
        for reader in list(self._readers.values()):
            await reader.close()
        self._readers.clear()
