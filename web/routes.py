"""HTTP routes: pages, the JSON API, attendance downloads and health (PROTOCOL.md, Discovery).

State lives on the aiohttp application under :data:`APP` (no module globals).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.compositor import band_height, canvas_tile_rects
from bridge.layout import LayoutError, tile_rects
from signalling.model import Role, SiteId
from web.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from web.metrics import render_metrics

if TYPE_CHECKING:
    from web.app import Huishang

__all__ = ["APP", "STATIC_DIR", "setup_routes"]

STATIC_DIR = Path(__file__).parent / "static"
APP: web.AppKey[Huishang] = web.AppKey("huishang")
#: The largest wall canvas side the geometry endpoint draws (8K).
MAX_CANVAS = 8192

#: The page each role opens from its join link.
PAGES: dict[Role, str] = {
    Role.CHAIR: "chair",
    Role.TERMINAL: "terminal",
    Role.UPLINK: "terminal",
    Role.OPERATOR: "operator",
    Role.WALL: "wall",
    Role.OBSERVER: "terminal",
}


def setup_routes(aio: web.Application, app: Huishang) -> None:
    aio[APP] = app
    aio.router.add_get("/", _index)
    aio.router.add_get("/join", _join)
    for page in sorted(set(PAGES.values()) | {"status"}):
        aio.router.add_get(f"/{page}", _page(page))
    aio.router.add_get("/api/info", _info)
    aio.router.add_get("/api/status", _status)
    aio.router.add_get("/api/conferences", _conferences)
    aio.router.add_get("/api/attendance.csv", _attendance_csv)
    aio.router.add_get("/api/layout-geometry", _layout_geometry)
    aio.router.add_get("/healthz", _healthz)
    aio.router.add_get("/metrics", _metrics)
    STATIC_DIR.mkdir(exist_ok=True)
    aio.router.add_static("/static/", STATIC_DIR, append_version=False)
    aio.middlewares.append(_no_cache_pages)


@web.middleware
async def _no_cache_pages(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if request.path.startswith(("/api/", "/static/")) or request.path.endswith(".html"):
        response.headers.setdefault("Cache-Control", "no-cache")
    return response


def _page(name: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        path = STATIC_DIR / f"{name}.html"
        if not path.exists():
            raise web.HTTPNotFound(text=f"the {name} page is not part of this build yet")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return handler


async def _index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/status")


def _site_for(request: web.Request) -> SiteId | None:
    token = request.query.get("token", "")
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        token = auth.removeprefix("Bearer ").strip()
    return request.app[APP].authenticate(token)


async def _join(request: web.Request) -> web.StreamResponse:
    """One-click join: the token's role decides the page."""
    app = request.app[APP]
    site_id = _site_for(request)
    if site_id is None or site_id not in app.conference.sites:
        return web.Response(
            status=401,
            content_type="text/html",
            charset="utf-8",
            text="<!doctype html><meta charset=utf-8><title>会商</title>"
            "<h1>令牌无效 · Invalid or missing token</h1>"
            "<p>请使用指挥中心下发的入会链接。Use the join link the command centre gave you.</p>",
        )
    page = PAGES[app.conference.sites[site_id].role]
    raise web.HTTPFound(f"/{page}?token={request.query.get('token', '')}")


async def _info(request: web.Request) -> web.Response:
    app = request.app[APP]
    if not app.signalling.running:
        raise web.HTTPServiceUnavailable(text="the signalling listener is restarting; retry")
    return web.json_response({"protocol": 1, "signalling": app.signalling_url})


async def _metrics(request: web.Request) -> web.Response:
    text = render_metrics(request.app[APP])
    return web.Response(body=text.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def _status(request: web.Request) -> web.Response:
    app = request.app[APP]
    snapshot = app.conference.snapshot()
    sites = snapshot["sites"]
    return web.json_response(
        {
            "conference": {"id": snapshot["id"], "title": snapshot["title"]},
            "time": time.time(),
            "floor": snapshot["floor"],
            "sites": sites,
            "online": sum(1 for s in sites if s["online"]),
            "total": len(sites),
        },
        dumps=_dumps,
    )


def _require_chair(request: web.Request) -> Huishang:
    app = request.app[APP]
    site_id = _site_for(request)
    if site_id is None:
        raise web.HTTPUnauthorized(text="a chair token is required (?token= or Bearer)")
    if app.conference.sites[site_id].role is not Role.CHAIR:
        raise web.HTTPForbidden(text="only the chair may read attendance")
    return app


async def _conferences(request: web.Request) -> web.Response:
    app = _require_chair(request)
    return web.json_response(
        {
            "current": app.conference.config.conference_id,
            "conferences": [dataclasses.asdict(c) for c in app.store.conferences()],
        },
        dumps=_dumps,
    )


async def _attendance_csv(request: web.Request) -> web.Response:
    app = _require_chair(request)
    conference_id = request.query.get("conference") or app.conference.config.conference_id
    names = {str(s.id): s.name for s in app.config.sites}
    try:
        text = app.store.attendance_csv(conference_id, names)
    except LookupError:
        raise web.HTTPNotFound(text=f"no conference {conference_id!r}") from None
    return web.Response(
        body=text.encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="attendance-{conference_id}.csv"'},
    )


async def _layout_geometry(request: web.Request) -> web.Response:
    """Tile rects in pixels (bridge.layout), or exactly as a wall output draws them.

    ``?kind=K&w=1920&h=1080``; a custom layout adds ``rects=`` (a JSON list of
    ``[x, y, w, h]`` fractions). With ``output=<id>`` (e.g. ``wall``) the rects are those that
    output's compositor really draws on a ``w`` x ``h`` canvas: it keeps a band across the top
    for the banner and the clock and lays the tiles out below it
    (:func:`bridge.compositor.canvas_tile_rects`); the reply then adds ``output`` and ``band``
    (the band's height in pixels, 0 when none is shown). Without ``output``: the layout's
    geometry on the whole canvas. A layout the compositor would refuse is a 400 with the
    reason; an unknown output a 404.
    """
    query = request.query
    kind = query.get("kind", "")
    try:
        width, height = int(query.get("w", "1920")), int(query.get("h", "1080"))
    except ValueError:
        raise web.HTTPBadRequest(text="w and h must be integers (pixels)") from None
    if not (2 <= width <= MAX_CANVAS and 2 <= height <= MAX_CANVAS):
        raise web.HTTPBadRequest(text=f"w and h must lie in 2..{MAX_CANVAS}")
    custom: Any = None
    if "rects" in query:
        try:
            custom = json.loads(query["rects"])
        except ValueError:
            raise web.HTTPBadRequest(text="rects must be a JSON list of [x, y, w, h]") from None
        if not isinstance(custom, list):
            raise web.HTTPBadRequest(text="rects must be a JSON list of [x, y, w, h]")
    app = request.app[APP]
    output_id = query.get("output")
    band = 0
    try:
        if output_id is None:
            rects = tile_rects(kind, width, height, custom)
        else:
            output = app.walls.outputs.get(output_id) if app.walls is not None else None
            if output is None:
                raise web.HTTPNotFound(text=f"no wall output {output_id!r}")
            try:
                config = dataclasses.replace(
                    output.config.compositor, width=width & ~1, height=height & ~1
                )
            except ValueError as exc:  # a canvas the compositor cannot have (under 16 px)
                raise web.HTTPBadRequest(text=f"w and h: {exc}") from None
            show_band = bool(app.conference.banner) or config.show_clock
            band = band_height(config) if show_band and not config.banner_overlay else 0
            rects = canvas_tile_rects(config, kind, custom, show_band=show_band)
    except LayoutError as exc:
        return web.json_response(
            {"error": exc.reason.value, "message": str(exc), "index": exc.index}, status=400
        )
    except OverflowError:  # a JSON integer too large for a float
        raise web.HTTPBadRequest(text="rects hold a number out of range") from None
    body: dict[str, Any] = {"kind": kind, "w": width, "h": height}
    if output_id is not None:
        body |= {"output": output_id, "band": band}
    body["rects"] = [list(r) for r in rects]
    return web.json_response(body)


async def _healthz(request: web.Request) -> web.Response:
    app = request.app[APP]
    return web.json_response(
        {
            "ok": True,
            "conference": app.conference.config.conference_id,
            "online": len(app.conference.online()),
        }
    )


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)
