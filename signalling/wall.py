"""The wall director: the conference's wall decisions carried out on the bridge's wall outputs.

After every routing plan (:meth:`signalling.media.MediaBridge.apply` calls its listeners), the
director pushes each output's layout (tiles labelled with the sites' names), the banner and the
floor into its :class:`bridge.wall.WallOutput`, and tells :class:`bridge.feeds.Feeds` which
sources to decode: every site some output shows, plus the sites a poll switches to next
(``plan.upcoming``), so a polled tile switches to a picture that is already there instead of
grey or a frozen frame. Sites without a live connection show as offline.

Each output's publication is registered with the relay and in ``MediaBridge.local_sources``
under the output id, so the plan's wall and operator ``main`` slots (which carry the output
id) are routed to it like to any publisher.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from bridge.compositor import TileSpec, band_height
from bridge.feeds import Feeds
from bridge.layout import LayoutError
from bridge.scaler import FitMode
from bridge.track_reader import DecodedSource
from bridge.wall import WallConfig, WallOutput

from .conference import Conference, WallGeometry
from .media import MediaBridge
from .model import Layout, SiteId
from .routing import RoutingPlan

__all__ = ["WallDirector", "wall_geometry"]

logger = logging.getLogger(__name__)


def wall_geometry(config: WallConfig) -> WallGeometry:
    """What the conference needs to know of outputs made with *config* (every output of a
    :meth:`WallDirector.for_conference` shares it) to work out the sites' video limits."""
    compositor = config.compositor
    return WallGeometry(
        width=compositor.width,
        height=compositor.height,
        band=0 if compositor.banner_overlay else band_height(compositor),
        clock=compositor.show_clock,
        fill=compositor.fit is FitMode.FILL,
        fps=config.fps,
        large_layout_tiles=config.large_layout_tiles,
        large_layout_fps=config.large_layout_fps,
    )


class WallDirector:
    """Keeps every wall output and the decoded feeds in line with the conference."""

    def __init__(
        self, conference: Conference, media: MediaBridge, outputs: Mapping[str, WallOutput]
    ) -> None:
        self.conference = conference
        self.media = media
        self.outputs = dict(outputs)
        self.feeds = Feeds(tuple(self.outputs.values()))
        self._layouts: dict[str, Layout] = {}
        self._started = False
        self.closed = False

    @classmethod
    def for_conference(
        cls,
        conference: Conference,
        media: MediaBridge,
        config: WallConfig | None = None,
    ) -> WallDirector:
        """One output per configured output id, each with *config* (its id replaced)."""
        base = config or WallConfig()
        outputs = {}
        for output_id in conference.config.outputs:
            cfg = dataclasses.replace(base, output_id=output_id)
            outputs[output_id] = WallOutput(cfg, relay_config=media.relay.config)
        return cls(conference, media, outputs)

    def start(self) -> None:
        """Publish the outputs, start them, follow every plan from now on (idempotent)."""
        if self._started or self.closed:
            return
        self._started = True
        for output_id, output in self.outputs.items():
            self.media.relay.add_publication(output.publication)
            self.media.local_sources[output_id] = {"video": output.publication}
            output.start()
        self.media.listeners.append(self.apply)
        self.apply(self.conference.plan)
        self.media.apply(self.conference.plan)  # sessions already waiting for an output

    def apply(self, plan: RoutingPlan) -> None:
        """Push layouts, banner, floor and names; (de)activate feed decoding."""
        if self.closed:
            return
        conference = self.conference
        shown: set[str] = set()
        for output_id, output in self.outputs.items():
            layout = conference.layouts.get(output_id)
            if layout is None:
                continue
            shown.update(t.source for t in layout.tiles if t.source is not None)
            if self._layouts.get(output_id) != layout:
                self._set_layout(output, layout)
            output.set_banner(conference.banner)
            output.set_floor(conference.floor)
        upcoming = {s for s in plan.upcoming if SiteId(s) in conference.sites}
        wanted: dict[str, DecodedSource | None] = {
            source: self.media.source_of(source) for source in shown | upcoming
        }
        self.feeds.update(wanted)

    def _set_layout(self, output: WallOutput, layout: Layout) -> None:
        tiles = [
            TileSpec(t.source, self._name(t.source) if t.source is not None else "")
            for t in layout.tiles
        ]
        rects = [t.rect for t in layout.tiles if t.rect is not None]
        try:
            output.set_layout(layout.kind, rects if layout.kind == "custom" else None, tiles)
        except LayoutError as exc:  # accepted as fractions, refused in pixels: keep the old
            logger.warning("output %s cannot show layout %s: %s", output.id, layout.kind, exc)
        self._layouts[output.id] = layout

    def _name(self, source: str) -> str:
        site = self.conference.sites.get(SiteId(source))
        return site.name if site is not None else source

    async def close(self) -> None:
        """Stop following plans, stop decoding, close the outputs (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self.apply in self.media.listeners:
            self.media.listeners.remove(self.apply)
        await self.feeds.close()
        for output_id, output in self.outputs.items():
            if self.media.local_sources.get(output_id, {}).get("video") is output.publication:
                del self.media.local_sources[output_id]
            self.media.relay.remove_publication(output.publication)
            await output.close()
