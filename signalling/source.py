"""Media sources for the Python terminal (``huishang join --source``): a synthetic test
pattern, media files played in a loop, V4L2 cameras and RTSP cameras (PyAV through
:class:`aiortc.contrib.media.MediaPlayer`).

    video, audio, closer = open_source("file:/srv/clip.mp4")
    video, audio, closer = open_source("testsrc", label="珠吉街")

aiortc's own ``MediaPlayer(loop=True)`` restarts a file's timestamps at zero and stops pacing
after the first pass (its read-ahead throttle compares the new, small frame times with the
time elapsed since the start), so a looped file floods the encoder with frames whose RTP
timestamps run backwards. :class:`LoopingPlayer` instead opens the file again at its end and
shifts the new pass's timestamps past the previous pass's last frame, paced by a fresh player.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from av import VideoFrame
from av.frame import Frame

from bridge.labels import Bitmap, FontNotFoundError, TextRenderer, blend_onto, rgb_to_yuv

__all__ = ["LoopingPlayer", "Source", "TestPattern", "open_source"]

logger = logging.getLogger(__name__)

#: An opened source: (video track, audio track, a function that stops both).
Source = tuple[MediaStreamTrack | None, MediaStreamTrack | None, Callable[[], None]]

#: Colour bars of the test pattern (RGB), left to right.
_BARS = (
    (192, 192, 192),
    (192, 192, 0),
    (0, 192, 192),
    (0, 192, 0),
    (192, 0, 192),
    (192, 0, 0),
    (0, 0, 192),
)


class TestPattern(MediaStreamTrack):
    """Synthetic camera: colour bars, a moving block, ``label`` (e.g. the site's name, drawn
    with the wall's CJK font when one is installed) and a frame counter, at ``fps``."""

    kind = "video"
    __test__ = False  # not a pytest test class

    def __init__(self, label: str = "", width: int = 640, height: int = 360, fps: int = 30) -> None:
        super().__init__()
        self.width, self.height, self.fps = width & ~1, height & ~1, fps
        self.index = 0
        self._start: float | None = None
        w, h = self.width, self.height
        self._y = np.empty((h, w), np.uint8)
        self._u = np.empty((h // 2, w // 2), np.uint8)
        self._v = np.empty((h // 2, w // 2), np.uint8)
        bar = -(-w // len(_BARS))
        for i, rgb in enumerate(_BARS):
            y, u, v = rgb_to_yuv(rgb)
            self._y[:, i * bar : (i + 1) * bar] = y
            self._u[:, i * bar // 2 : (i + 1) * bar // 2] = u
            self._v[:, i * bar // 2 : (i + 1) * bar // 2] = v
        self._label: Bitmap | None = None
        if label:
            try:
                self._label = TextRenderer().label(label, max(16, h // 8), w - 32)
            except FontNotFoundError as exc:
                logger.warning("test pattern without its label: %s", exc)

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        wait = self._start + self.index / self.fps - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = self.draw(self.index)
        frame.pts = self.index * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self.index += 1
        return frame

    def draw(self, index: int) -> VideoFrame:
        """Frame ``index`` of the pattern (I420)."""
        w, h = self.width, self.height
        y, u, v = self._y.copy(), self._u.copy(), self._v.copy()
        size = (h // 6) & ~1
        x = (index * 4) % max(2, w - size) & ~1
        y[h - 2 * size : h - size, x : x + size] = 235
        u[(h - 2 * size) // 2 : (h - size) // 2, x // 2 : (x + size) // 2] = 128
        v[(h - 2 * size) // 2 : (h - size) // 2, x // 2 : (x + size) // 2] = 128
        label = self._label
        if label is not None:
            top, left = 16, 16
            blend_onto(
                label,
                y[top : top + label.height, left : left + label.width],
                u[top // 2 : (top + label.height) // 2, left // 2 : (left + label.width) // 2],
                v[top // 2 : (top + label.height) // 2, left // 2 : (left + label.width) // 2],
            )
        scale = h / 360
        cv2.putText(y, f"{index:06d}", (16, h - 16), cv2.FONT_HERSHEY_SIMPLEX, 1.2 * scale, 235, 2)
        planes = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
        return VideoFrame.from_ndarray(planes, format="yuv420p")


class LoopingPlayer:
    """Plays a media file again and again with timestamps that keep rising (see the module
    docstring). :attr:`video` and :attr:`audio` are tracks for the kinds the file has."""

    def __init__(self, path: str, open_player: Callable[[str], Any] | None = None) -> None:
        if open_player is None:
            from aiortc.contrib.media import MediaPlayer

            open_player = MediaPlayer
        self.path = path
        self._open = open_player
        self.player = open_player(path)
        self.passes = 1
        self.video = _LoopTrack(self, "video") if self.player.video is not None else None
        self.audio = _LoopTrack(self, "audio") if self.player.audio is not None else None
        self._stopped = False

    def source(self, kind: str) -> Any:
        return getattr(self.player, kind)

    def next_pass(self, seen: int) -> None:
        """The pass number ``seen`` ended: open the file again (once per pass)."""
        if self._stopped or seen != self.passes:
            return
        self._stop_player()
        self.player = self._open(self.path)
        self.passes += 1

    def stop(self) -> None:
        self._stopped = True
        self._stop_player()

    def _stop_player(self) -> None:
        for kind in ("video", "audio"):
            track = getattr(self.player, kind)
            if track is not None:
                track.stop()


class _LoopTrack(MediaStreamTrack):
    def __init__(self, owner: LoopingPlayer, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.owner = owner
        self._offset = 0  # added to the current pass's pts (in the frames' time base)
        self._last: int | None = None  # the last pts handed out
        self._step = 1  # the last interval between two frames' pts

    async def recv(self) -> Frame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            seen = self.owner.passes
            source = self.owner.source(self.kind)
            if source is None:
                raise MediaStreamError
            try:
                frame: Frame = await source.recv()
            except MediaStreamError:
                if self.readyState != "live":
                    raise
                self.owner.next_pass(seen)
                if self._last is not None:  # the next pass starts one frame after this one
                    self._offset = self._last + self._step
                await asyncio.sleep(0)
                continue
            if frame.pts is None:
                continue
            pts = frame.pts + self._offset
            if self._last is not None:
                if pts <= self._last:  # never hand out a timestamp that goes back
                    self._offset += self._last + self._step - pts
                    pts = self._last + self._step
                else:
                    self._step = pts - self._last
            self._last = pts
            frame.pts = pts
            return frame

    def stop(self) -> None:
        super().stop()
        if all(t is None or t.readyState != "live" for t in (self.owner.video, self.owner.audio)):
            self.owner.stop()


def open_source(source: str, label: str = "") -> Source:
    """``(video, audio, stop)`` for a ``--source`` value:

    - ``testsrc``: :class:`TestPattern` with ``label`` and silence;
    - ``file:PATH``: the file's video and audio, looped (:class:`LoopingPlayer`);
    - ``v4l2:/dev/videoN``: a V4L2 camera;
    - ``rtsp://...`` / ``rtsps://...``: an RTSP camera (over TCP).

    Raises ``ValueError`` for an unknown kind of source or a missing file, and PyAV's errors
    (``OSError`` subclasses) when the source cannot be opened.
    """
    if source == "testsrc":
        video, audio = TestPattern(label), AudioStreamTrack()

        def stop_both() -> None:
            video.stop()
            audio.stop()

        return video, audio, stop_both
    from aiortc.contrib.media import MediaPlayer

    if source.startswith("file:"):
        path = Path(source.removeprefix("file:"))
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        looping = LoopingPlayer(str(path))
        return looping.video, looping.audio, looping.stop
    if source.startswith("v4l2:"):
        player = MediaPlayer(source.removeprefix("v4l2:"), format="v4l2")
    elif source.startswith(("rtsp://", "rtsps://")):
        player = MediaPlayer(source, options={"rtsp_transport": "tcp"})
    else:
        raise ValueError("use testsrc, file:PATH, v4l2:/dev/videoN or rtsp://...")
    if player.video is None and player.audio is None:
        raise ValueError("the source has neither video nor audio")

    def stop() -> None:
        for track in (player.video, player.audio):
            if track is not None:
                track.stop()

    return player.video, player.audio, stop
