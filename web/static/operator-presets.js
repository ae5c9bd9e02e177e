// The wall operator page's presets, banner (会标) and custom-layout editor: what they show.
//
//   renderPresets(names)            // the saved presets (PROTOCOL.md "presets"), sorted
//   renderBanner(text)              // the server's banner, unless the operator is editing it
//   updateBannerCount()             // "n/200" under the banner input
//   await rectsText(geo)            // a layout's rects as editable text
//   parseRects(text)                // that text back to [[x, y, w, h], ...], or throws
//
// Requests (save, load, delete, banner, apply) stay in operator.js, which owns the connection.

import { bi, h } from "/static/ui.js";

export const BANNER_MAX = 200;

const $ = (id) => document.getElementById(id);

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function renderPresets(presets) {
  const list = $("preset-list");
  const names = [...presets].sort((a, b) => a.localeCompare(b, "zh-CN"));
  $("preset-empty").hidden = names.length > 0;
  $("preset-names").replaceChildren(...names.map((n) => h("option", { value: n })));
  const key = names.join("\n");
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(
    ...names.map((name) =>
      h(
        "li",
        { dataset: { preset: name } },
        h("button", { type: "button", class: "op-preset-name", dataset: { action: "preset-pick" }, text: name }),
        h("button", { type: "button", class: "btn btn-small btn-primary", dataset: { action: "preset-load" } }, bi("载入", "Load")),
        h("button", { type: "button", class: "btn btn-small", dataset: { action: "preset-delete" } }, bi("删除", "Delete")),
      ),
    ),
  );
}

export function renderBanner(text) {
  const input = $("banner-input");
  if (document.activeElement !== input && !input.dataset.dirty) input.value = text;
  updateBannerCount();
}

export function updateBannerCount() {
  const n = $("banner-input").value.length;
  setText($("banner-count"), `${n}/${BANNER_MAX}`);
  $("banner-count").classList.toggle("over", n > BANNER_MAX);
}

/** A geometry answer's rects (fractions of the canvas) as one `[x, y, w, h]` per line. */
export function rectsText(geo) {
  const round = (v) => Math.round(v * 10000) / 10000;
  return geo.rects.map((r) => JSON.stringify(r.map(round))).join(",\n");
}

/** `[x, y, w, h]` lists (with or without the outer brackets) → rects; throws on bad input. */
export function parseRects(text) {
  const trimmed = text.trim();
  const rects = JSON.parse(trimmed.startsWith("[[") ? trimmed : `[${trimmed}]`);
  if (!Array.isArray(rects) || !rects.length || !rects.every((r) => Array.isArray(r) && r.length === 4)) {
    throw new Error("not a list of [x, y, w, h]");
  }
  return rects;
}
