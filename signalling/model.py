"""The control plane's nouns: sites, roles, levels and layouts (ARCHITECTURE.md, PROTOCOL.md).

A *site* is a place that may join the conference (the district centre, a street, a community,
the operator's desk, the wall, an uplink, a camera). Its role comes from configuration, never
from the client. A *session* is one live connection of a site.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NewType

from bridge.layout import TILE_COUNTS

__all__ = [
    "LAYOUT_KINDS",
    "Layout",
    "Level",
    "Role",
    "SessionId",
    "Site",
    "SiteId",
    "Tile",
]

SiteId = NewType("SiteId", str)
SessionId = NewType("SessionId", str)


class Role(enum.StrEnum):
    """What a site may do (PROTOCOL.md, Session)."""

    CHAIR = "chair"
    TERMINAL = "terminal"
    OPERATOR = "operator"
    WALL = "wall"
    OBSERVER = "observer"
    UPLINK = "uplink"


class Level(enum.StrEnum):
    """Where a site sits in the district's hierarchy."""

    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    CONTROL = "control"  # operator desk, wall PCs: part of the command centre, not a place
    UPLINK = "uplink"
    CAMERA = "camera"


@dataclass(frozen=True, slots=True)
class Site:
    """One registered site, from configuration."""

    id: SiteId
    name: str
    level: Level
    role: Role
    parent: SiteId | None = None


#: Layout kind → number of tiles (``custom``: its own rects), the one table in bridge.layout.
LAYOUT_KINDS = TILE_COUNTS


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile of a wall layout: what it shows and, for custom layouts, where."""

    source: SiteId | None = None
    rect: tuple[float, float, float, float] | None = None  # x, y, w, h as fractions of the canvas


@dataclass(frozen=True, slots=True)
class Layout:
    """A wall output's layout (PROTOCOL.md ``<layout>``)."""

    output: str = "wall"
    kind: str = "1"
    tiles: tuple[Tile, ...] = field(default_factory=lambda: (Tile(),))
