"""Text on the wall: tile labels, the banner (会标), clock glyphs and placeholder tiles.

Everything is rendered once with Pillow and a CJK font into small I420 bitmaps
(:class:`Bitmap`) and cached by the :class:`TextRenderer` that made it; the compositor then
only copies or blends those bitmaps onto its canvas (ARCHITECTURE.md, "The wall": cached
labels and placeholders). Colours are BT.601 limited range, like the decoded video.

Site names are Chinese: a font without CJK glyphs would draw "tofu" boxes, so the renderer
refuses to start without one (:class:`FontNotFoundError`) and can tell whether a character has
a real glyph (:meth:`TextRenderer.has_glyph`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "DEFAULT_FONT_CANDIDATES",
    "Bitmap",
    "FontNotFoundError",
    "LabelConfig",
    "TextRenderer",
    "blend_onto",
    "rgb_to_yuv",
]

logger = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
RGB = tuple[int, int, int]
RGBA = tuple[int, int, int, int]

#: Fonts tried in order when :attr:`LabelConfig.font_path` is not set (Debian paths).
DEFAULT_FONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Medium.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)

#: A code point no CJK font maps: rendering it gives the font's ``.notdef`` ("tofu") glyph.
_NOTDEF_PROBE = "\U0010fffd"
#: A character every CJK font has; a font that draws it as ``.notdef`` is not a CJK font.
_CJK_PROBE = "会"


class FontNotFoundError(LookupError):
    """No usable CJK font: ``tried`` lists the paths looked at."""

    def __init__(self, tried: tuple[str, ...], detail: str = "") -> None:
        message = "no CJK font found; tried: " + ", ".join(tried)
        if detail:
            message += f" ({detail})"
        message += "; install fonts-noto-cjk or set LabelConfig.font_path"
        super().__init__(message)
        self.tried = tried


@dataclass(frozen=True, slots=True)
class LabelConfig:
    """How wall text looks. Colours are RGB(A); sizes are fractions of the tile/canvas height.

    ``font_index`` picks the face inside a font collection: 2 is Simplified Chinese in Noto
    Sans CJK's ``.ttc`` (0 JP, 1 KR, 2 SC, 3 TC, 4 HK); a font with fewer faces uses face 0.
    """

    font_path: str | None = None
    font_candidates: tuple[str, ...] = DEFAULT_FONT_CANDIDATES
    font_index: int = 2
    label_text: RGB = (255, 255, 255)
    label_background: RGBA = (0, 0, 0, 168)
    banner_text: RGB = (255, 230, 120)
    banner_background: RGB = (160, 16, 16)
    clock_text: RGB = (255, 255, 255)
    placeholder_background: RGB = (34, 40, 52)
    placeholder_name: RGB = (235, 235, 235)
    offline_text: RGB = (150, 150, 150)
    no_signal_text: RGB = (240, 170, 60)
    cache_limit: int = 1024


def rgb_to_yuv(rgb: RGB) -> tuple[int, int, int]:
    """BT.601 limited-range Y, Cb, Cr of an 8-bit RGB colour (ITU-R BT.601-7, 2.5.3)."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return round(y), round(u), round(v)


@dataclass(frozen=True, slots=True, eq=False)
class Bitmap:
    """A small I420 image with an optional alpha, ready to copy or blend onto a canvas.

    ``y`` and ``alpha`` are ``(h, w)``; ``u``, ``v`` and ``alpha_c`` are ``(h/2, w/2)``;
    ``h`` and ``w`` are even. ``alpha`` is ``None`` for opaque bitmaps (a plain copy).
    Blend weights are kept as float32 for :func:`cv2.blendLinear`.
    """

    y: U8
    u: U8
    v: U8
    alpha: F32 | None = None
    alpha_inv: F32 | None = None
    alpha_c: F32 | None = None
    alpha_c_inv: F32 | None = None
    coverage: U8 | None = field(default=None, repr=False)  # glyph coverage, for tests/probes

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    @classmethod
    def from_rgba(
        cls,
        rgba: npt.NDArray[np.uint8],
        coverage: U8 | None = None,
        *,
        opaque_chroma: bool = False,
    ) -> Bitmap:
        """Convert an ``(h, w, 4)`` RGBA array (even ``h``, ``w``) to an I420 bitmap.

        With ``opaque_chroma``, only luma is blended; the chroma planes are the bitmap's own
        colour, copied (a label plate tints what lies under it to its own hue: one blend
        instead of three, which matters with 36 labels per frame).
        """
        h, w = rgba.shape[:2]
        if h % 2 or w % 2:
            raise ValueError(f"bitmap size must be even, got {w}x{h}")
        rgb = rgba[..., :3].astype(np.float32)
        a = rgba[..., 3].astype(np.float32) / 255.0
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
        u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
        v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
        # Chroma is subsampled 2x2 with alpha weighting (premultiplied averaging).
        a_c = a.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        weight = np.maximum(a_c * 4, 1e-6)
        u_c = (u * a).reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) / weight
        v_c = (v * a).reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) / weight
        opaque = bool(np.all(rgba[..., 3] == 255))
        if opaque or opaque_chroma:
            u_c = u.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            v_c = v.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        planes = [
            np.ascontiguousarray(np.clip(np.rint(p), 0, 255).astype(np.uint8))
            for p in (y, u_c, v_c)
        ]
        if opaque:
            return cls(planes[0], planes[1], planes[2], coverage=coverage)
        a32 = np.ascontiguousarray(a, dtype=np.float32)
        ac32 = np.ascontiguousarray(a_c, dtype=np.float32)
        if opaque_chroma:
            return cls(
                planes[0],
                planes[1],
                planes[2],
                alpha=a32,
                alpha_inv=np.ascontiguousarray(1.0 - a32),
                coverage=coverage,
            )
        return cls(
            planes[0],
            planes[1],
            planes[2],
            alpha=a32,
            alpha_inv=np.ascontiguousarray(1.0 - a32),
            alpha_c=ac32,
            alpha_c_inv=np.ascontiguousarray(1.0 - ac32),
            coverage=coverage,
        )


def blend_onto(bitmap: Bitmap, y: U8, u: U8, v: U8) -> None:
    """Copy or alpha-blend ``bitmap`` into the canvas views ``y``, ``u``, ``v`` in place.

    The views must have the bitmap's shapes (the caller clips). Opaque planes are copied;
    others use one :func:`cv2.blendLinear` per plane (a few microseconds for a label).
    """
    if bitmap.alpha is None or bitmap.alpha_inv is None:
        np.copyto(y, bitmap.y)
    else:
        cv2.blendLinear(bitmap.y, y, bitmap.alpha, bitmap.alpha_inv, dst=y)
    if bitmap.alpha_c is None or bitmap.alpha_c_inv is None:
        np.copyto(u, bitmap.u)
        np.copyto(v, bitmap.v)
    else:
        cv2.blendLinear(bitmap.u, u, bitmap.alpha_c, bitmap.alpha_c_inv, dst=u)
        cv2.blendLinear(bitmap.v, v, bitmap.alpha_c, bitmap.alpha_c_inv, dst=v)


def _even(n: float) -> int:
    return max(2, 2 * round(n / 2))


class TextRenderer:
    """Renders and caches wall text as :class:`Bitmap` objects.

    Not thread-safe: one compositor owns one renderer and calls it from its compose thread.
    Caches are per instance and bounded by :attr:`LabelConfig.cache_limit` (cleared when full).
    """

    def __init__(self, config: LabelConfig | None = None) -> None:
        self.config = config or LabelConfig()
        self.font_path, self.font_index = self._find_font()
        self._fonts: dict[int, ImageFont.FreeTypeFont] = {}
        self._cache: dict[tuple[object, ...], Bitmap] = {}
        self._notdef: dict[int, bytes] = {}

    # -- fonts -----------------------------------------------------------------------------

    def _find_font(self) -> tuple[str, int]:
        """The first candidate that loads and draws CJK (not as ``.notdef``)."""
        paths = (self.config.font_path,) if self.config.font_path else self.config.font_candidates
        rejected = []
        for path in paths:
            if not os.path.isfile(path):
                continue
            for index in dict.fromkeys((self.config.font_index, 0)):
                try:
                    font = ImageFont.truetype(path, 32, index=index)
                except OSError:
                    continue
                if _mask(font, _CJK_PROBE).tobytes() != _mask(font, _NOTDEF_PROBE).tobytes():
                    return path, index
                rejected.append(path)
                break
        detail = f"{', '.join(rejected)}: no glyph for {_CJK_PROBE!r}" if rejected else ""
        raise FontNotFoundError(tuple(paths), detail)

    def font(self, size: int) -> ImageFont.FreeTypeFont:
        """The font at ``size`` pixels (cached)."""
        size = max(6, int(size))
        font = self._fonts.get(size)
        if font is None:
            font = ImageFont.truetype(self.font_path, size, index=self.font_index)
            self._fonts[size] = font
        return font

    def text_mask(self, text: str, size: int) -> U8:
        """Glyph coverage of ``text`` (0…255), ``(ascent + descent, width)`` pixels."""
        return _mask(self.font(size), text)

    def has_glyph(self, char: str, size: int = 32) -> bool:
        """Whether the font draws ``char`` with a real glyph rather than ``.notdef`` (tofu)."""
        notdef = self._notdef.get(size)
        if notdef is None:
            notdef = self.text_mask(_NOTDEF_PROBE, size).tobytes()
            self._notdef[size] = notdef
        mask = self.text_mask(char, size)
        return mask.tobytes() != notdef and bool(mask.any() or char.isspace())

    def missing_glyphs(self, text: str) -> str:
        """The characters of ``text`` the font cannot draw (for a warning)."""
        return "".join(
            ch for ch in dict.fromkeys(text) if not ch.isspace() and not self.has_glyph(ch)
        )

    # -- cache -----------------------------------------------------------------------------

    def _cached(self, key: tuple[object, ...]) -> Bitmap | None:
        return self._cache.get(key)

    def _store(self, key: tuple[object, ...], bitmap: Bitmap) -> Bitmap:
        if len(self._cache) >= self.config.cache_limit:
            self._cache.clear()
        self._cache[key] = bitmap
        return bitmap

    def _check_text(self, text: str) -> None:
        missing = self.missing_glyphs(text)
        if missing:
            logger.warning("font %s has no glyph for %r in %r", self.font_path, missing, text)

    # -- bitmaps ---------------------------------------------------------------------------

    def label(self, text: str, height: int, max_width: int) -> Bitmap:
        """A tile label: ``text`` on a translucent plate ``height`` pixels high (even sizes)."""
        key = ("label", text, height, max_width)
        cached = self._cached(key)
        if cached is not None:
            return cached
        self._check_text(text)
        height = _even(height)
        pad = max(2, height // 4)
        mask = self.text_mask(text, max(6, round(height * 0.72)))
        width = min(_even(mask.shape[1] + 2 * pad), max(2, max_width & ~1))
        cfg = self.config
        rgba = np.zeros((height, width, 4), np.uint8)
        rgba[...] = cfg.label_background
        coverage = _place(mask, height, width, pad)
        _paint(rgba, coverage, cfg.label_text)
        return self._store(key, Bitmap.from_rgba(rgba, coverage, opaque_chroma=True))

    def banner(self, text: str, width: int, height: int) -> Bitmap:
        """The banner (会标): ``text`` centred on an opaque band ``width`` x ``height``."""
        key = ("banner", text, width, height)
        cached = self._cached(key)
        if cached is not None:
            return cached
        self._check_text(text)
        cfg = self.config
        rgba = np.empty((height, width, 4), np.uint8)
        rgba[...] = (*cfg.banner_background, 255)
        if text:
            mask = self.text_mask(text, max(6, round(height * 0.62)))
            coverage = _place(mask, height, width, (width - mask.shape[1]) // 2)
            _paint(rgba, coverage, cfg.banner_text)
        else:
            coverage = np.zeros((height, width), np.uint8)
        return self._store(key, Bitmap.from_rgba(rgba, coverage))

    def glyph(self, char: str, height: int, advance: int) -> Bitmap:
        """One clock character, opaque on the banner colour, ``advance`` x ``height`` pixels."""
        key = ("glyph", char, height, advance)
        cached = self._cached(key)
        if cached is not None:
            return cached
        cfg = self.config
        rgba = np.empty((height, advance, 4), np.uint8)
        rgba[...] = (*cfg.banner_background, 255)
        mask = self.text_mask(char, max(6, round(height * 0.62)))
        coverage = _place(mask, height, advance, (advance - mask.shape[1]) // 2)
        _paint(rgba, coverage, cfg.clock_text)
        return self._store(key, Bitmap.from_rgba(rgba, coverage))

    def clock_advance(self, height: int) -> int:
        """Fixed (even) advance of clock characters at ``height``: the widest digit's."""
        font = self.font(max(6, round(height * 0.62)))
        return _even(max(font.getlength(d) for d in "0123456789") + 1)

    def placeholder(
        self, name: str, status: str, width: int, height: int, *, offline: bool
    ) -> Bitmap:
        """A whole tile saying who should be here and why they are not (opaque)."""
        key = ("placeholder", name, status, width, height, offline)
        cached = self._cached(key)
        if cached is not None:
            return cached
        self._check_text(name)
        cfg = self.config
        rgba = np.empty((height, width, 4), np.uint8)
        rgba[...] = (*cfg.placeholder_background, 255)
        name_px = max(6, min(round(height * 0.16), round(width * 0.8 / max(1, len(name)))))
        status_px = max(6, min(round(height * 0.09), round(width * 0.8 / max(1, len(status)))))
        coverage = np.zeros((height, width), np.uint8)
        if name:
            mask = _fit(self.text_mask(name, name_px), width)
            top = max(0, height // 2 - mask.shape[0] - height // 40)
            _stamp(coverage, rgba, mask, (width - mask.shape[1]) // 2, top, cfg.placeholder_name)
        if status:
            mask = _fit(self.text_mask(status, status_px), width)
            top = height // 2 + height // 40
            colour = cfg.offline_text if offline else cfg.no_signal_text
            _stamp(coverage, rgba, mask, (width - mask.shape[1]) // 2, top, colour)
        return self._store(key, Bitmap.from_rgba(rgba, coverage))


def _mask(font: ImageFont.FreeTypeFont, text: str) -> U8:
    ascent, descent = font.getmetrics()
    width = max(1, int(np.ceil(font.getlength(text))))
    image = Image.new("L", (width, ascent + descent), 0)
    ImageDraw.Draw(image).text((0, 0), text, font=font, fill=255)
    return np.asarray(image, dtype=np.uint8).copy()


def _fit(mask: U8, width: int) -> U8:
    return mask[:, :width] if mask.shape[1] > width else mask


def _place(mask: U8, height: int, width: int, left: int) -> U8:
    """``mask`` centred vertically at column ``left`` in a ``height`` x ``width`` field."""
    out = np.zeros((height, width), np.uint8)
    top = (height - mask.shape[0]) // 2
    src = mask[max(0, -top) : max(0, -top) + height, : max(0, width - max(0, left))]
    t, lft = max(0, top), max(0, left)
    out[t : t + src.shape[0], lft : lft + src.shape[1]] = src
    return out


def _paint(rgba: npt.NDArray[np.uint8], coverage: U8, colour: RGB) -> None:
    """Composite ``colour`` with ``coverage`` over the RGBA image (straight alpha)."""
    c = coverage.astype(np.float32)[..., None] / 255.0
    a_bg = rgba[..., 3:4].astype(np.float32) / 255.0
    a_out = c + a_bg * (1 - c)
    fg = np.asarray(colour, np.float32)
    rgb = (fg * c + rgba[..., :3].astype(np.float32) * a_bg * (1 - c)) / np.maximum(a_out, 1e-6)
    rgba[..., :3] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    rgba[..., 3] = np.clip(np.rint(a_out[..., 0] * 255), 0, 255).astype(np.uint8)


def _stamp(
    coverage: U8, rgba: npt.NDArray[np.uint8], mask: U8, left: int, top: int, colour: RGB
) -> None:
    h = min(mask.shape[0], coverage.shape[0] - top)
    w = min(mask.shape[1], coverage.shape[1] - left)
    if h <= 0 or w <= 0:
        return
    field_ = np.zeros_like(coverage)
    field_[top : top + h, left : left + w] = mask[:h, :w]
    np.maximum(coverage, field_, out=coverage)
    _paint(rgba, field_, colour)
