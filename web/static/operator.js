// The wall operator's page (大屏操作台): arranges the command-centre wall live while leaders talk.
//
// Opened as /operator?token=<operator token> (the join link). Like the chair console, the page is
// rebuilt from each `welcome` snapshot and kept current by the server's events (PROTOCOL.md,
// Conference control): site, layout, poll, presets, banner.
//
// Every change to the wall is ONE `layout` request carrying the whole layout (the other tiles
// kept). The schematic shows the change at once; the server's `layout` event is the truth: when
// a request is refused, a notice says why and the schematic goes back to the server's layout.
// Tile geometry comes from GET /api/layout-geometry, so tiles are drawn exactly where the
// compositor puts them (bridge/layout.py).
//
// Ways to put a site on a tile: drag it from the roster onto the tile (HTML5 drag and drop),
// or tap the site and then the tile (touch screens); drag a tile onto another to swap them.
// Esc cancels a tapped site.
//
// Stable hooks for tests and automation: roster rows are `[data-site="<id>"]` inside
// `[data-testid="roster"]`; tiles are `[data-tile="<index from 0>"]` inside `[data-testid="wall"]`
// (with data-source, data-online, data-polling); layout buttons are `[data-kind="<kind>"]` in
// `[data-testid="layout-picker"]`; presets are `[data-preset="<name>"]`; actions are buttons
// with `data-action`; panels carry `data-testid`.
//
// This module owns the connection, the page state and the wiring; the parts live beside it:
// operator-wall.js (layouts, tile geometry, the schematic's tiles), operator-roster.js (the
// site list), operator-dnd.js (drag and drop), operator-panel.js (the selected tile and its
// polling editor), operator-presets.js (presets, banner, custom rects) and operator-actions.js
// (request buttons: busy state, outcome notices, confirm-twice).

import { connect, describeError, ProtocolError } from "/static/protocol.js";
import { Notices, showConnection, showFatal } from "/static/ui.js";
import { Actions, confirmed } from "/static/operator-actions.js";
import { installDragAndDrop } from "/static/operator-dnd.js";
import { TilePanel } from "/static/operator-panel.js";
import { parseRects, rectsText, renderBanner, renderPresets, updateBannerCount } from "/static/operator-presets.js";
import { Roster } from "/static/operator-roster.js";
import { playWall } from "/static/wall-player.js";
import {
  OUTPUT,
  buildPicker,
  buildTiles,
  customLayout,
  geometry,
  geometryKey,
  kindLabel,
  updateTile,
  withKind,
  withSource,
  withSwap,
} from "/static/operator-wall.js";

const TOKEN_KEY = "huishang.operator.token";

const $ = (id) => document.getElementById(id);
const notices = new Notices($("notices"));
const roster = new Roster($("roster"));

/** Everything the page knows, replaced by each welcome and patched by events. */
const state = {
  conn: null,
  token: "",
  me: null,
  title: "",
  sites: new Map(), // id -> site state
  layout: null, // the server's layout of the wall output (the truth)
  shown: null, // what the schematic shows: the server's layout, or a change on its way
  polls: new Map(), // tile index -> poll state (this output's tile polls)
  presets: [],
  banner: "",
  selected: 0, // the tile the tile panel edits
  armed: null, // a site tapped in the roster, waiting for a tile
  pollDraft: [], // the tile panel's list of sites to poll
  pollDraftTile: null, // the tile that list belongs to
  tiles: [], // tile elements of the schematic
};

const siteName = (id) => (id && state.sites.get(id) ? state.sites.get(id).name : id || "");
const actions = new Actions({
  conn: () => state.conn,
  notices,
  offline: () => offlineNotice(),
  settled: () => panel.render(),
});
const panel = new TilePanel(state, { siteName, isBusy: (button) => actions.isBusy(button) });

// -- connection -----------------------------------------------------------------------------

function readToken() {
  const fromUrl = new URLSearchParams(location.search).get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function start() {
  buildPicker($("picker"));
  state.token = readToken();
  if (!state.token) {
    showFatal("需要令牌 Token needed", "请使用指挥中心下发的入会链接，或在下面输入令牌。", true);
    return;
  }
  try {
    state.conn = await connect({ token: state.token, client: "wall-operator/1", onEvent, onState });
    playWall(state.conn, $("preview"), { overlay: $("preview-empty") }); // the live wall output
  } catch (err) {
    console.warn("operator page stopped:", describeError(err));
  }
}

function onState(st) {
  showConnection($("conn"), st);
  $("stale").hidden = !(st.state === "offline" || (st.state === "connecting" && state.me));
  $("stale-reason").textContent = st.reason || "";
  if (st.state === "stopped") {
    let detail = "";
    if (st.reason && st.reason.includes("signed in elsewhere")) {
      detail = "操作台已在另一个窗口或电脑上打开。点击下方按钮可在此处重新登录（另一处将被断开）。";
    } else if (st.reason && st.reason.includes("invalid token")) {
      detail = "令牌无效或已被撤销，请联系值班人员获取新的入会链接。";
    }
    showFatal(st.reason || "连接已停止 stopped", detail, false);
  }
}

// -- events ---------------------------------------------------------------------------------

function onEvent(msg) {
  switch (msg.type) {
    case "welcome":
      loadWelcome(msg);
      return;
    case "site":
      state.sites.set(msg.site.id, msg.site);
      roster.update(msg.site, { armed: state.armed === msg.site.id });
      renderGroups();
      renderCounts();
      renderWall();
      return;
    case "layout":
      if ((msg.layout.output || OUTPUT) !== OUTPUT) return;
      state.layout = msg.layout;
      state.shown = msg.layout;
      renderWall();
      return;
    case "poll":
      setPoll(msg, true);
      renderWall();
      panel.render();
      return;
    case "presets":
      state.presets = [...msg.names];
      renderPresets(state.presets);
      return;
    case "banner":
      state.banner = msg.text;
      renderBanner(state.banner);
      return;
    default:
      // floor, hands, rollcall, slots, pause...: nothing to show on this page
  }
}

function loadWelcome(msg) {
  const snap = msg.conference;
  state.me = msg.site;
  if (!["operator", "chair"].includes(msg.site.role)) {
    notices.show(`此令牌属于 ${msg.site.name}（${msg.site.role}），不能操作大屏 · cannot arrange the wall`, {
      kind: "error",
      code: "forbidden",
    });
  }
  state.title = snap.title || "";
  state.sites = new Map(snap.sites.map((s) => [s.id, s]));
  state.layout = (snap.layouts && snap.layouts[OUTPUT]) || snap.layout;
  state.shown = state.layout;
  state.polls = new Map();
  for (const poll of snap.polls || []) setPoll(poll, false);
  state.presets = [...(snap.presets || [])];
  state.banner = snap.banner || "";
  if (state.selected >= state.layout.tiles.length) state.selected = 0;
  state.pollDraftTile = null;
  roster.build([...state.sites.values()]);
  panel.fillSites();
  renderAll();
}

function setPoll(poll, live) {
  if ((poll.output || OUTPUT) !== OUTPUT || poll.target === "floor") return;
  const had = state.polls.has(poll.target);
  if (poll.sites && poll.sites.length) {
    state.polls.set(poll.target, poll);
  } else {
    state.polls.delete(poll.target);
    if (live && had) {
      notices.show(`第 ${poll.target + 1} 格轮询已停止 · polling stopped on tile ${poll.target + 1}`);
    }
  }
}

// -- helpers --------------------------------------------------------------------------------

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function renderPicker() {
  const kind = state.shown ? state.shown.kind : "";
  for (const button of $("picker").querySelectorAll("[data-kind]")) {
    button.setAttribute("aria-pressed", String(button.dataset.kind === kind));
  }
  setText($("kind-name"), state.shown ? kindLabel(state.shown.kind) : "—");
}

// -- the wall schematic ---------------------------------------------------------------------

let wallDrawn = ""; // geometry key of the tiles on screen

async function renderWall() {
  renderPicker();
  const layout = state.shown;
  if (!layout) return;
  const wall = $("wall");
  const key = geometryKey(layout);
  if (key !== wallDrawn) {
    const geo = await geometry(layout);
    if (!geo || state.shown !== layout) return; // a newer layout arrived meanwhile
    state.tiles = buildTiles(geo);
    wall.dataset.valid = String(geo.ok);
    wall.replaceChildren(...state.tiles);
    wallDrawn = key;
  }
  wall.dataset.kind = layout.kind;
  wall.dataset.pending = String(state.shown !== state.layout);
  state.selected = Math.min(state.selected, layout.tiles.length - 1);
  state.tiles.forEach((tile, index) =>
    updateTile(tile, index, layout.tiles[index], {
      site: (id) => state.sites.get(id),
      poll: state.polls.get(index),
      selected: index === state.selected,
      armed: !!state.armed,
    }),
  );
  roster.markTiles(layout);
  panel.render();
}

/** One `layout` request with the whole layout; shown at once, reverted if refused. */
async function sendLayout(next, okText) {
  if (!state.conn) {
    offlineNotice();
    return false;
  }
  state.shown = next;
  renderWall();
  try {
    await state.conn.request({ type: "layout", layout: next });
    if (okText) notices.show(okText, { kind: "info" });
    return true;
  } catch (err) {
    notices.show(describeError(err), { kind: "error", code: err.code || "" });
    if (state.shown === next) {
      state.shown = state.layout; // the server's layout is the truth
      renderWall();
    }
    return false;
  }
}

function offlineNotice() {
  notices.show(describeError(new ProtocolError("offline", "未连接服务器 not connected")), {
    kind: "error",
    code: "offline",
  });
}

function placeSite(index, siteId) {
  const layout = state.shown;
  if (!layout || index >= layout.tiles.length) return;
  if (layout.tiles[index].source === siteId) return;
  sendLayout(withSource(layout, index, siteId));
}

function swapTiles(from, to) {
  const layout = state.shown;
  if (!layout || from === to) return;
  sendLayout(withSwap(layout, from, to));
}

function selectTile(index) {
  state.selected = index;
  for (const tile of state.tiles) tile.classList.toggle("selected", Number(tile.dataset.tile) === index);
  panel.render();
}

// -- roster ---------------------------------------------------------------------------------

function renderGroups() {
  roster.filter($("filter").value, $("online-only").checked);
}

function renderCounts() {
  const sites = [...state.sites.values()];
  setText($("online-count"), String(sites.filter((s) => s.online).length));
  setText($("total-count"), String(sites.length));
}

function arm(siteId) {
  const before = state.armed;
  state.armed = state.armed === siteId ? null : siteId;
  for (const id of [before, state.armed]) {
    if (id && state.sites.has(id)) roster.update(state.sites.get(id), { armed: state.armed === id });
  }
  $("armed").hidden = !state.armed;
  setText(
    $("armed-text"),
    state.armed ? `已选 ${siteName(state.armed)}：点击大屏格子放置 · tap a tile to place it (Esc 取消)` : "",
  );
  for (const tile of state.tiles) tile.classList.toggle("target", !!state.armed);
}

function renderAll() {
  const title = state.title ? `${state.title} · 大屏操作台` : "大屏操作台";
  setText($("title"), title);
  document.title = `${title} Wall operator`;
  renderCounts();
  renderGroups();
  renderWall();
  renderPresets(state.presets);
  renderBanner(state.banner);
}

// -- actions --------------------------------------------------------------------------------

function onClick(event) {
  const tileEl = event.target.closest("[data-tile]");
  const button = event.target.closest("button[data-action]");
  if (button && button.disabled) return;
  if (button && button.dataset.action === "clear-tile" && tileEl) {
    placeSite(Number(tileEl.dataset.tile), null);
    return;
  }
  if (tileEl && !button) {
    const index = Number(tileEl.dataset.tile);
    if (state.armed) {
      placeSite(index, state.armed);
      arm(null);
    }
    selectTile(index);
    return;
  }
  const row = event.target.closest("[data-testid='roster'] [data-site]");
  if (row && !button) {
    arm(row.dataset.site);
    return;
  }
  if (!button) return;
  const preset = button.closest("[data-preset]");
  const presetName = preset ? preset.dataset.preset : "";
  switch (button.dataset.action) {
    case "kind": {
      const kind = button.dataset.kind;
      if (state.shown && state.shown.kind !== kind) sendLayout(withKind(state.shown, kind));
      break;
    }
    case "disarm":
      arm(null);
      break;
    case "clear-selected":
      placeSite(state.selected, null);
      break;
    case "poll-add":
      panel.add([$("poll-add").value]);
      $("poll-add").value = "";
      break;
    case "poll-remove":
      panel.remove(button.closest("[data-site]").dataset.site);
      break;
    case "poll-online-streets":
      panel.add(panel.streets({ onlineOnly: true }));
      break;
    case "poll-all-streets":
      panel.add(panel.streets({ onlineOnly: false }));
      break;
    case "poll-clear-list":
      panel.clear();
      break;
    case "poll-start": {
      const interval = Number($("poll-interval").value);
      const tile = state.selected;
      actions.act(
        button,
        { type: "poll", output: OUTPUT, target: tile, sites: [...state.pollDraft], interval_s: interval },
        () => `第 ${tile + 1} 格开始轮询 · polling tile ${tile + 1}`,
      );
      break;
    }
    case "poll-stop":
      actions.act(button, { type: "poll", output: OUTPUT, target: state.selected, sites: [] });
      break;
    case "preset-pick":
      $("preset-name").value = presetName;
      break;
    case "preset-load":
      loadPreset(button, presetName);
      break;
    case "preset-load-named":
      loadPreset(button, $("preset-name").value.trim());
      break;
    case "preset-delete":
      if (confirmed(button, "确认删除", "Confirm")) {
        actions.act(button, { type: "preset_delete", name: presetName }, () => `已删除预设 ${presetName} · deleted`);
      }
      break;
    case "custom-from-current":
      customFromCurrent();
      break;
    case "custom-apply":
      applyCustom();
      break;
    default:
      break;
  }
}

function loadPreset(button, name) {
  if (!name) {
    notices.show("请输入或选择预设名称 · enter or pick a preset name", { kind: "error", code: "local" });
    return;
  }
  actions.act(button, { type: "preset_load", name }, () => `已载入预设 ${name} · preset loaded`);
}

function onPresetSave(event) {
  event.preventDefault();
  const button = document.querySelector('[data-action="preset-save"]');
  const name = $("preset-name").value.trim();
  if (!name) {
    notices.show("请输入预设名称 · enter a preset name", { kind: "error", code: "local" });
    return;
  }
  if (state.presets.includes(name) && !confirmed(button, "覆盖同名预设?", "Overwrite?")) return;
  actions.act(button, { type: "preset_save", name }, () => `已保存预设 ${name} · preset saved`);
}

async function customFromCurrent() {
  const layout = state.shown;
  if (!layout) return;
  const geo = await geometry(layout);
  if (!geo) return;
  $("custom-rects").value = rectsText(geo);
}

function applyCustom() {
  let rects;
  try {
    rects = parseRects($("custom-rects").value);
  } catch (err) {
    notices.show(`自定义布局格式有误 · custom layout: ${err.message}`, { kind: "error", code: "local" });
    return;
  }
  sendLayout(customLayout(state.shown, rects));
}

function onBannerSubmit(event) {
  event.preventDefault();
  const input = $("banner-input");
  const button = document.querySelector('[data-action="banner"]');
  actions.act(button, { type: "banner", text: input.value }, () => "会标已更新 · banner updated").then((reply) => {
    if (reply) delete input.dataset.dirty;
  });
}

function onTokenSubmit(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  const url = new URL(location.href);
  url.searchParams.set("token", token);
  location.assign(url.toString());
}

// -- keyboard -------------------------------------------------------------------------------

function onKey(event) {
  if (event.key === "Escape" && state.armed) {
    arm(null);
    return;
  }
  const row = event.target.closest?.("[data-testid='roster'] [data-site]");
  if (row && (event.key === "Enter" || event.key === " ")) {
    event.preventDefault();
    arm(row.dataset.site); // then Enter on a tile places it
    return;
  }
  const tile = event.target.closest?.("[data-tile]");
  if (!tile || event.target.closest("button")) return;
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    tile.click();
  } else if (event.key === "Delete" || event.key === "Backspace") {
    event.preventDefault();
    placeSite(Number(tile.dataset.tile), null);
  }
}

// -- wiring ---------------------------------------------------------------------------------

document.addEventListener("click", onClick);
document.addEventListener("keydown", onKey);
installDragAndDrop({
  onPlace(index, siteId) {
    placeSite(index, siteId);
    selectTile(index);
  },
  onSwap(from, to) {
    swapTiles(from, to);
    selectTile(to);
  },
  onPollDrop: (siteId) => panel.add([siteId]),
});
$("banner-form").addEventListener("submit", onBannerSubmit);
$("banner-input").addEventListener("input", () => {
  $("banner-input").dataset.dirty = "1";
  updateBannerCount();
});
$("preset-form").addEventListener("submit", onPresetSave);
$("filter").addEventListener("input", renderGroups);
$("online-only").addEventListener("change", renderGroups);
$("token-form").addEventListener("submit", onTokenSubmit);
$("fatal-reload").addEventListener("click", () => location.reload());

start();

// The page state, for debugging from the devtools console and for tests (read only, please).
export { state };
