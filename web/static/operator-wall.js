// The wall operator page's schematic: layouts as plain objects, their tile geometry and the
// drawing of tiles and layout-picker icons. No connection, no page state: operator.js owns
// those and calls in here.
//
//   import { KINDS, kindLabel, withKind, withSource, withSwap, geometry, geometryKey,
//            buildPicker, buildTiles, updateTile } from "/static/operator-wall.js";
//
// Geometry comes from GET /api/layout-geometry (bridge/layout.py's tile_rects), so the
// schematic puts each tile exactly where the compositor will, scaled to the page.

import { h } from "/static/ui.js";

export const OUTPUT = "wall";
export const WALL_W = 1920; // the canvas the geometry is asked for (tiles are even-pixel rects)
export const WALL_H = 1080;
export const KINDS = ["1", "2", "4", "1+5", "1+7", "9", "16", "25", "36"];
const KIND_TILES = { 1: 1, 2: 2, 4: 4, "1+5": 6, "1+7": 8, 9: 9, 16: 16, 25: 25, 36: 36 };
const KIND_NAMES = {
  1: "单画面",
  2: "二分屏",
  4: "四分屏",
  "1+5": "一大五小",
  "1+7": "一大七小",
  9: "九宫格",
  16: "十六分屏",
  25: "二十五分屏",
  36: "三十六分屏",
};

export function kindLabel(kind) {
  return kind === "custom" ? "自定义 custom" : `${KIND_NAMES[kind] || kind} ${kind}`;
}

// -- layouts (PROTOCOL.md <layout>) -----------------------------------------------------------

export function copyLayout(layout) {
  return {
    output: layout.output || OUTPUT,
    kind: layout.kind,
    tiles: layout.tiles.map((t) =>
      t.rect ? { source: t.source, rect: [...t.rect] } : { source: t.source },
    ),
  };
}

/** The layout with tile *index* showing *source* (null: empty), every other tile kept. */
export function withSource(layout, index, source) {
  const next = copyLayout(layout);
  next.tiles[index].source = source;
  return next;
}

/** The layout with tiles *a* and *b* swapped (their sources; custom rects stay in place). */
export function withSwap(layout, a, b) {
  const next = copyLayout(layout);
  [next.tiles[a].source, next.tiles[b].source] = [next.tiles[b].source, next.tiles[a].source];
  return next;
}

/** The layout as another kind, keeping the sources in tile order as far as they fit. */
export function withKind(layout, kind) {
  const sources = layout.tiles.map((t) => t.source);
  const tiles = Array.from({ length: KIND_TILES[kind] }, (_, i) => ({ source: sources[i] ?? null }));
  return { output: layout.output || OUTPUT, kind, tiles };
}

/** A custom layout of *rects* (fractions), keeping the sources in tile order. */
export function customLayout(layout, rects) {
  const sources = layout ? layout.tiles.map((t) => t.source) : [];
  return {
    output: (layout && layout.output) || OUTPUT,
    kind: "custom",
    tiles: rects.map((rect, i) => ({ source: sources[i] ?? null, rect })),
  };
}

// -- geometry (GET /api/layout-geometry) ------------------------------------------------------

const cache = new Map(); // geometry key -> {ok, rects: [[fx, fy, fw, fh], ...]}

export function geometryKey(layout) {
  if (layout.kind !== "custom") return layout.kind;
  return `custom:${JSON.stringify(layout.tiles.map((t) => t.rect))}`;
}

/**
 * Tile rects of *layout* as fractions of the wall, or null when the server cannot be asked
 * (asked again next time). Custom rects the server refuses come back as given, with ok false,
 * so a refused layout can still be drawn until the server's own layout replaces it.
 */
export async function geometry(layout) {
  const key = geometryKey(layout);
  if (cache.has(key)) return cache.get(key);
  // output=: the rects the wall output really draws (below its banner/clock band)
  const output = layout.output || OUTPUT;
  const params = new URLSearchParams({ kind: layout.kind, w: WALL_W, h: WALL_H, output });
  if (layout.kind === "custom") params.set("rects", JSON.stringify(layout.tiles.map((t) => t.rect)));
  let result;
  try {
    const response = await fetch(`/api/layout-geometry?${params}`, { cache: "no-store" });
    if (response.ok) {
      const body = await response.json();
      const frac = ([x, y, w, hh]) => [x / body.w, y / body.h, w / body.w, hh / body.h];
      result = { ok: true, rects: body.rects.map(frac) };
    } else if (layout.kind === "custom") {
      result = { ok: false, rects: layout.tiles.map((t) => t.rect) };
    } else {
      throw new Error(`HTTP ${response.status}`);
    }
  } catch (err) {
    console.warn("layout geometry unavailable", layout.kind, err);
    return null;
  }
  if (cache.size > 64) cache.clear();
  cache.set(key, result);
  return result;
}

function placeRect(node, [x, y, w, hh]) {
  node.style.left = `${x * 100}%`;
  node.style.top = `${y * 100}%`;
  node.style.width = `${w * 100}%`;
  node.style.height = `${hh * 100}%`;
}

// -- drawing ----------------------------------------------------------------------------------

/** One button per kind, each with a small drawing of its tiles. */
export function buildPicker(picker) {
  for (const kind of KINDS) {
    const icon = h("span", { class: "op-kind-icon", "aria-hidden": "true" });
    picker.append(
      h(
        "button",
        {
          type: "button",
          class: "btn op-kind",
          dataset: { kind, action: "kind" },
          "aria-pressed": "false",
          title: kindLabel(kind),
        },
        icon,
        h("span", { class: "op-kind-name", text: kind }),
      ),
    );
    geometry({ kind, tiles: [] }).then((geo) => {
      for (const rect of geo ? geo.rects : []) {
        const cell = h("span");
        placeRect(cell, rect);
        icon.append(cell);
      }
    });
  }
}

/** Tile elements for *geo*: `[data-tile]`, focusable, draggable, each with a clear button. */
export function buildTiles(geo) {
  return geo.rects.map((rect, index) => {
    const n = index + 1;
    const parts = {
      name: h("span", { class: "op-tile-name" }),
      status: h("span", { class: "op-tile-status" }),
      poll: h("span", { class: "op-tile-poll", hidden: true }),
      clear: h("button", {
        type: "button",
        class: "op-tile-clear",
        dataset: { action: "clear-tile" },
        title: "清空此格 clear this tile",
        "aria-label": `清空第 ${n} 格 clear tile ${n}`,
        text: "×",
      }),
    };
    const tile = h(
      "div",
      {
        class: "op-tile",
        role: "button",
        tabindex: "0",
        draggable: "true",
        dataset: { tile: String(index), testid: `tile-${index}` },
      },
      h("span", { class: "op-tile-index", text: String(n) }),
      parts.poll,
      parts.clear,
      h("span", { class: "op-tile-body" }, parts.name, parts.status),
    );
    tile.parts = parts;
    placeRect(tile, rect);
    return tile;
  });
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/**
 * Show tile *spec* ({source}) on *tile*: the source's Chinese name and online state, its poll.
 * `view`: {site(id) -> site state or undefined, poll: poll state or undefined, selected, armed}.
 */
export function updateTile(tile, index, spec, view) {
  const source = spec ? spec.source : null;
  const site = source ? view.site(source) : null;
  const camera = !!site && site.level === "camera";
  const { parts } = tile;
  tile.dataset.source = source || "";
  tile.dataset.online = String(!!(site && site.online));
  tile.dataset.polling = String(!!view.poll);
  tile.classList.toggle("vacant", !source);
  tile.classList.toggle("offline", !!source && !(site && site.online) && !camera);
  tile.classList.toggle("selected", view.selected);
  tile.classList.toggle("target", view.armed);
  const name = site ? site.name : source || "";
  setText(parts.name, source ? name : "空 empty");
  let status = "拖入站点 drop a site";
  if (site) status = site.online ? "在线 online" : camera ? "监控 camera" : "离线 offline";
  else if (source) status = "未知站点 unknown";
  setText(parts.status, status);
  parts.clear.hidden = !source;
  parts.poll.hidden = !view.poll;
  if (view.poll) setText(parts.poll, `轮询 ${view.poll.interval_s} s · ${view.poll.sites.length} 站`);
  tile.title = `${index + 1}: ${source ? `${name} (${source})` : "空 empty"}`;
}
