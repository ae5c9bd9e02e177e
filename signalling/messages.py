"""The wire schema of PROTOCOL.md: one :func:`parse` for what clients send, one :func:`serialize`
for what the server sends, and small typed classes in between.

Requests are frozen dataclasses; :func:`parse` checks every field's presence and type and raises
:class:`~signalling.errors.BadRequest` (carrying the request's ``id`` when it could be read) for
anything else. Server messages are plain JSON objects built by the constructors at the bottom of
this module, so their shape is written down in one place.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from bridge.layout import MAX_TILES

from .errors import BadRequest, TooLarge
from .model import LAYOUT_KINDS, Layout, SiteId, Tile

__all__ = [
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "REQUEST_TYPES",
    "Banner",
    "Candidate",
    "Floor",
    "Hand",
    "Hello",
    "LayoutRequest",
    "Leave",
    "Mute",
    "MuteAll",
    "Offer",
    "Ping",
    "Poll",
    "PresetDelete",
    "PresetLoad",
    "PresetSave",
    "Preview",
    "Record",
    "Request",
    "RequestId",
    "Rollcall",
    "RollcallAck",
    "error",
    "layout_from_wire",
    "layout_to_wire",
    "ok",
    "parse",
    "serialize",
]

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 256 * 1024
MAX_TEXT = 200  # banner, client name
MAX_NAME = 64  # preset names
MAX_SDP = 200 * 1024

RequestId: TypeAlias = str | int | None
Wire: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Hello:
    token: str
    protocol: int = PROTOCOL_VERSION
    client: str = ""
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Leave:
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Ping:
    """Keep-alive and round-trip probe (a project addition): answered with ``ok``."""

    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Offer:
    sdp: str
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Candidate:
    candidate: Mapping[str, Any] | None  # RTCIceCandidateInit; null = end of candidates
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Floor:
    site: SiteId | None
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Mute:
    site: SiteId
    audio: bool | None = None
    video: bool | None = None
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class MuteAll:
    audio: bool
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Hand:
    up: bool
    site: SiteId | None = None  # project addition: the chair may lower another site's hand
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Rollcall:
    action: str  # "start" | "next" | "stop"
    sites: tuple[SiteId, ...] | None = None
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class RollcallAck:
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Poll:
    target: str | int  # "floor" or a tile index
    sites: tuple[SiteId, ...]
    interval_s: float
    output: str = "wall"
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class LayoutRequest:
    layout: Layout
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class PresetSave:
    name: str
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class PresetLoad:
    name: str
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class PresetDelete:
    name: str
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Banner:
    text: str
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Preview:
    """Choose what one of the requester's extra slots shows (a project addition)."""

    slot: str
    source: str | None
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Record:
    on: bool
    id: RequestId = None


#: Every request ``type`` a client may send (PROTOCOL.md plus the project's additions).
REQUEST_TYPES: Final = (
    "hello",
    "leave",
    "ping",
    "offer",
    "candidate",
    "floor",
    "mute",
    "mute_all",
    "hand",
    "rollcall",
    "rollcall_ack",
    "poll",
    "layout",
    "preset_save",
    "preset_load",
    "preset_delete",
    "banner",
    "record",
    "preview",
)

Request: TypeAlias = (
    Hello
    | Leave
    | Ping
    | Offer
    | Candidate
    | Floor
    | Mute
    | MuteAll
    | Hand
    | Rollcall
    | RollcallAck
    | Poll
    | LayoutRequest
    | PresetSave
    | PresetLoad
    | PresetDelete
    | Banner
    | Record
    | Preview
)


class _Fields:
    """Typed reads from one JSON object; every failure is a :class:`BadRequest` naming the field."""

    def __init__(self, obj: Mapping[str, Any], kind: str, re: RequestId) -> None:
        self.obj, self.kind, self.re = obj, kind, re

    def fail(self, field: str, what: str) -> BadRequest:
        return BadRequest(f"{self.kind}: field '{field}' {what}", re=self.re)

    def _get(self, field: str, optional: bool) -> Any:
        if field not in self.obj:
            if optional:
                return None
            raise self.fail(field, "is missing")
        return self.obj[field]

    def flag(self, field: str, *, optional: bool = False) -> bool | None:
        value = self._get(field, optional)
        if value is None and optional:
            return None
        if not isinstance(value, bool):
            raise self.fail(field, "must be true or false")
        return value

    def text(self, field: str, *, optional: bool = False, limit: int = MAX_TEXT) -> str | None:
        value = self._get(field, optional)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(field, "must be a string")
        if len(value) > limit:
            raise self.fail(field, f"is longer than {limit} characters")
        return value

    def site(self, field: str, *, nullable: bool = False, optional: bool = False) -> SiteId | None:
        """A site id; *nullable*: present but may be null; *optional*: may be left out."""
        value = self._get(field, optional=optional)
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(field, "must be a site id (a non-empty string)")
        return SiteId(value)

    def sites(self, field: str, *, optional: bool = False) -> tuple[SiteId, ...] | None:
        value = self._get(field, optional)
        if value is None and optional:
            return None
        if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
            raise self.fail(field, "must be a list of site ids")
        if len(value) > 1000:
            raise self.fail(field, "lists too many sites")
        return tuple(SiteId(s) for s in value)


def _number(value: Any) -> bool:
    """A JSON number that fits a float (Python's ints are unbounded; JSON's are not)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= 2**53
    return isinstance(value, float) and math.isfinite(value)


def layout_from_wire(value: Any, re: RequestId = None) -> Layout:
    """Check a PROTOCOL.md ``<layout>`` object's shape (not its sites: the conference does)."""
    if not isinstance(value, dict):
        raise BadRequest("layout: must be an object", re=re)
    f = _Fields(value, "layout", re)
    output = f.text("output", optional=True, limit=MAX_NAME) or "wall"
    kind = f.text("kind") or ""
    if kind not in LAYOUT_KINDS:
        raise f.fail("kind", f"must be one of {', '.join(LAYOUT_KINDS)}")
    raw_tiles = value.get("tiles", [])
    if not isinstance(raw_tiles, list):
        raise f.fail("tiles", "must be a list")
    count = LAYOUT_KINDS[kind]
    if len(raw_tiles) > (count if count is not None else MAX_TILES):
        most = count or MAX_TILES
        raise f.fail("tiles", f"has {len(raw_tiles)} tiles; kind {kind!r} has {most} at most")
    tiles: list[Tile] = []
    for i, raw in enumerate(raw_tiles):
        if not isinstance(raw, dict):
            raise f.fail(f"tiles[{i}]", "must be an object")
        source = raw.get("source")
        if source is not None and (not isinstance(source, str) or not source):
            raise f.fail(f"tiles[{i}].source", "must be a site id or null")
        rect = raw.get("rect")
        if kind == "custom":
            if not (isinstance(rect, list) and len(rect) == 4 and all(_number(v) for v in rect)):
                raise f.fail(f"tiles[{i}].rect", "must be [x, y, w, h] (fractions of the canvas)")
            x, y, w, h = (float(v) for v in rect)
            if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
                raise f.fail(f"tiles[{i}].rect", "must lie within the canvas (0..1)")
            if x + w > 1 + 1e-9 or y + h > 1 + 1e-9:
                raise f.fail(f"tiles[{i}].rect", "reaches past the canvas edge")
            tiles.append(Tile(SiteId(source) if source else None, (x, y, w, h)))
        else:
            if rect is not None:
                raise f.fail(f"tiles[{i}].rect", f"is only for custom layouts, not {kind!r}")
            tiles.append(Tile(SiteId(source) if source else None))
    if kind == "custom" and not tiles:
        raise f.fail("tiles", "a custom layout needs at least one tile")
    if count is not None:
        tiles.extend(Tile() for _ in range(count - len(tiles)))
    return Layout(output=output, kind=kind, tiles=tuple(tiles))


def layout_to_wire(layout: Layout) -> Wire:
    tiles: list[Wire] = []
    for tile in layout.tiles:
        item: Wire = {"source": tile.source}
        if tile.rect is not None:
            item["rect"] = list(tile.rect)
        tiles.append(item)
    return {"output": layout.output, "kind": layout.kind, "tiles": tiles}


def _request(kind: str, f: _Fields, re: RequestId) -> Request:
    obj = f.obj
    if kind == "hello":
        protocol = obj.get("protocol")
        if not isinstance(protocol, int) or isinstance(protocol, bool):
            raise f.fail("protocol", "must be an integer")
        client = f.text("client", optional=True) or ""
        token = f.text("token", limit=512) or ""
        return Hello(token=token, protocol=protocol, client=client, id=re)
    if kind == "leave":
        return Leave(id=re)
    if kind == "ping":
        return Ping(id=re)
    if kind == "offer":
        return Offer(sdp=f.text("sdp", limit=MAX_SDP) or "", id=re)
    if kind == "candidate":
        if "candidate" not in obj:
            raise f.fail("candidate", "is missing (null means end of candidates)")
        cand = obj["candidate"]
        if cand is not None and not isinstance(cand, dict):
            raise f.fail("candidate", "must be an RTCIceCandidateInit object or null")
        return Candidate(candidate=cand, id=re)
    if kind == "floor":
        return Floor(site=f.site("site", nullable=True), id=re)
    if kind == "mute":
        audio, video = f.flag("audio", optional=True), f.flag("video", optional=True)
        if audio is None and video is None:
            raise f.fail("audio", "or 'video' must be given")
        return Mute(site=f.site("site") or SiteId(""), audio=audio, video=video, id=re)
    if kind == "mute_all":
        return MuteAll(audio=bool(f.flag("audio")), id=re)
    if kind == "hand":
        site = f.site("site", nullable=True, optional=True)
        return Hand(up=bool(f.flag("up")), site=site, id=re)
    if kind == "rollcall":
        action = f.text("action")
        if action not in ("start", "next", "stop"):
            raise f.fail("action", "must be 'start', 'next' or 'stop'")
        return Rollcall(action=action, sites=f.sites("sites", optional=True), id=re)
    if kind == "rollcall_ack":
        return RollcallAck(id=re)
    if kind == "poll":
        target = obj.get("target")
        if not (target == "floor" or (isinstance(target, int) and not isinstance(target, bool))):
            raise f.fail("target", "must be 'floor' or a tile index")
        sites = f.sites("sites") or ()
        interval = obj.get("interval_s", 0 if not sites else None)  # not needed to stop a poll
        if interval is None:
            raise f.fail("interval_s", "is missing")
        bad_interval = not _number(interval) or interval < 3 or interval > 86400
        if (sites or "interval_s" in obj) and bad_interval:
            raise f.fail("interval_s", "must be a number of seconds, at least 3")
        output = f.text("output", optional=True, limit=MAX_NAME) or "wall"
        return Poll(target=target, sites=sites, interval_s=float(interval), output=output, id=re)
    if kind == "layout":
        return LayoutRequest(layout=layout_from_wire(obj.get("layout"), re), id=re)
    if kind in ("preset_save", "preset_load", "preset_delete"):
        name = (f.text("name", limit=MAX_NAME) or "").strip()
        if not name:
            raise f.fail("name", "must not be empty")
        if kind == "preset_save":
            return PresetSave(name=name, id=re)
        if kind == "preset_load":
            return PresetLoad(name=name, id=re)
        return PresetDelete(name=name, id=re)
    if kind == "banner":
        return Banner(text=f.text("text") or "", id=re)
    if kind == "preview":
        slot = f.text("slot", limit=MAX_NAME) or ""
        if not slot.startswith("extra") or not slot[5:].isdigit():
            raise f.fail("slot", "must name an extra slot: 'extra1', 'extra2', ...")
        return Preview(slot=slot, source=f.site("source", nullable=True), id=re)
    if kind == "record":
        return Record(on=bool(f.flag("on")), id=re)
    raise BadRequest(f"unknown message type {kind!r}", re=re)


def frame_size(frame: str | bytes) -> int:
    """A frame's size in bytes as sent (UTF-8 for text frames)."""
    if isinstance(frame, bytes) or frame.isascii():
        return len(frame)
    return len(frame.encode("utf-8", "surrogatepass"))


def parse(frame: str | bytes, *, limit: int = MAX_FRAME_BYTES) -> Request:
    """Parse one client frame. Raises :class:`TooLarge` or :class:`BadRequest`, nothing else."""
    size = frame_size(frame)
    if size > limit:
        raise TooLarge(f"frame of {size} bytes is over the {limit}-byte limit")
    if isinstance(frame, bytes):
        raise BadRequest("binary frames are not part of the protocol; send JSON text")
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        if not _valid_unicode(obj):
            raise BadRequest("text contains invalid Unicode (a lone surrogate)")
        raise BadRequest("a message must be a JSON object")
    re = obj.get("id")
    if not (re is None or isinstance(re, str) or (isinstance(re, int) and type(re) is not bool)):
        raise BadRequest("field 'id' must be a string or an integer")
    if isinstance(re, str) and (len(re) > MAX_NAME or not _valid_unicode(re)):
        raise BadRequest(f"field 'id' must be valid text of at most {MAX_NAME} characters")
    if (not frame.isascii() or "\\u" in frame) and not _valid_unicode(obj):
        raise BadRequest("text contains invalid Unicode (a lone surrogate)", re=re)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise BadRequest("field 'type' is missing or not a string", re=re)
    return _request(kind, _Fields(obj, kind, re), re)


def _valid_unicode(value: Any) -> bool:
    """No lone surrogates anywhere (they cannot be encoded back to UTF-8)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_valid_unicode(k) and _valid_unicode(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_valid_unicode(v) for v in value)
    return True


def serialize(message: Mapping[str, Any]) -> str:
    """One server message as a text frame (UTF-8 JSON, Chinese kept as is)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def ok(re: RequestId, **result: Any) -> Wire:
    message: Wire = {"type": "ok"}
    if re is not None:
        message["re"] = re
    message.update(result)
    return message


def error(re: RequestId, code: str, text: str) -> Wire:
    message: Wire = {"type": "error"}
    if re is not None:
        message["re"] = re
    message.update(code=code, message=text)
    return message
