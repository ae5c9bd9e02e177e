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

import { connect, describeError, ProtocolError } from "/static/protocol.js";
import { bi, groupSites, h, Notices, showConnection, showFatal } from "/static/ui.js";
import { installDragAndDrop } from "/static/operator-dnd.js";
import { displayable, Roster } from "/static/operator-roster.js";
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

const BANNER_MAX = 200;
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
      renderTilePanel();
      return;
    case "presets":
      state.presets = [...msg.names];
      renderPresets();
      return;
    case "banner":
      state.banner = msg.text;
      renderBanner();
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
  fillPollAdd();
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

const siteName = (id) => (id && state.sites.get(id) ? state.sites.get(id).name : id || "");

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
  renderTilePanel();
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
  renderTilePanel();
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

// -- tile panel: the selected tile and its polling ------------------------------------------

function fillPollAdd() {
  const select = $("poll-add");
  select.replaceChildren(h("option", { value: "", text: "选择站点… choose a site" }));
  const sites = [...state.sites.values()].filter(displayable);
  for (const group of groupSites(sites)) {
    const optgroup = h("optgroup", { label: group.title });
    for (const site of group.sites) {
      const indent = site.level === "community" ? "\u3000" : "";
      optgroup.append(h("option", { value: site.id, text: `${indent}${site.name}` }));
    }
    select.append(optgroup);
  }
}

function renderTilePanel() {
  const layout = state.shown;
  if (!layout) return;
  const index = Math.min(state.selected, layout.tiles.length - 1);
  const source = layout.tiles[index] ? layout.tiles[index].source : null;
  const poll = state.polls.get(index);
  $("tile-panel").dataset.tile = String(index);
  setText($("tile-title"), `第 ${index + 1} 格 · Tile ${index + 1}`);
  const site = source ? state.sites.get(source) : null;
  const online = site ? (site.online ? "在线 online" : "离线 offline") : "";
  setText($("tile-source"), source ? `${siteName(source)} · ${online}` : "空 empty");
  $("tile-source").dataset.source = source || "";
  document.querySelector('[data-action="clear-selected"]').disabled = !source;

  if (state.pollDraftTile !== index) {
    state.pollDraftTile = index;
    state.pollDraft = poll ? [...poll.sites] : [];
    if (poll) $("poll-interval").value = String(poll.interval_s);
  }
  renderPollList(poll);
  const el = $("poll-state");
  el.dataset.active = String(!!poll);
  if (poll) {
    const next = poll.sites.length > 1 && poll.current
      ? poll.sites[(poll.sites.indexOf(poll.current) + 1) % poll.sites.length]
      : null;
    setText(
      el,
      `轮询中 Polling · 每 ${poll.interval_s} 秒 s · 当前 now: ${siteName(poll.current) || "—"}` +
        (next ? ` · 下一个 next: ${siteName(next)}` : ""),
    );
    el.dataset.current = poll.current || "";
  } else {
    setText(el, "未轮询 Not polling");
    el.dataset.current = "";
  }
  $("poll-state").classList.toggle("active", !!poll);
  document.querySelector('[data-action="poll-stop"]').disabled = !poll;
  const start = document.querySelector('[data-action="poll-start"]');
  start.disabled = busy.has(start) || state.pollDraft.length === 0;
  start.replaceChildren(poll ? bi("更新轮询", "Restart") : bi("开始轮询", "Start"));
}

function renderPollList(poll) {
  const list = $("poll-list");
  const current = poll ? poll.current : null;
  const key = `${state.pollDraft.join(",")}|${current}`;
  $("poll-empty").hidden = state.pollDraft.length > 0;
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(
    ...state.pollDraft.map((id) =>
      h(
        "li",
        { dataset: { site: id }, class: id === current ? "current" : "" },
        h("span", { class: "name", text: siteName(id) }),
        h("button", {
          type: "button",
          class: "op-chip-remove",
          dataset: { action: "poll-remove" },
          "aria-label": `移除 ${siteName(id)} remove`,
          text: "×",
        }),
      ),
    ),
  );
}

function addToDraft(ids) {
  for (const id of ids) if (id && !state.pollDraft.includes(id)) state.pollDraft.push(id);
  renderTilePanel();
}

function streets({ onlineOnly }) {
  return [...state.sites.values()]
    .filter((s) => s.level === "street" && (!onlineOnly || s.online))
    .map((s) => s.id);
}

// -- presets and banner ---------------------------------------------------------------------

function renderPresets() {
  const list = $("preset-list");
  const names = [...state.presets].sort((a, b) => a.localeCompare(b, "zh-CN"));
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

function renderBanner() {
  const input = $("banner-input");
  if (document.activeElement !== input && !input.dataset.dirty) input.value = state.banner;
  updateBannerCount();
}

function updateBannerCount() {
  const n = $("banner-input").value.length;
  setText($("banner-count"), `${n}/${BANNER_MAX}`);
  $("banner-count").classList.toggle("over", n > BANNER_MAX);
}

function renderAll() {
  const title = state.title ? `${state.title} · 大屏操作台` : "大屏操作台";
  setText($("title"), title);
  document.title = `${title} Wall operator`;
  renderCounts();
  renderGroups();
  renderWall();
  renderPresets();
  renderBanner();
}

// -- actions --------------------------------------------------------------------------------

const busy = new Set();

async function act(button, message, describeOk) {
  if (!state.conn) {
    offlineNotice();
    return null;
  }
  busy.add(button);
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const reply = await state.conn.request(message);
    if (describeOk) notices.show(describeOk(reply), { kind: "info" });
    return reply;
  } catch (err) {
    notices.show(describeError(err), { kind: "error", code: err.code || "" });
    return null;
  } finally {
    busy.delete(button);
    button.disabled = false;
    button.removeAttribute("aria-busy");
    renderTilePanel();
  }
}

/** Destructive buttons ask twice: the first press arms them for 4 s. */
function confirmed(button, zh, en) {
  if (button.dataset.confirm === "1") {
    delete button.dataset.confirm;
    clearTimeout(button.confirmTimer);
    return true;
  }
  const label = button.innerHTML;
  button.dataset.confirm = "1";
  button.replaceChildren(bi(zh, en));
  button.confirmTimer = setTimeout(() => {
    delete button.dataset.confirm;
    button.innerHTML = label;
  }, 4000);
  return false;
}

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
      addToDraft([$("poll-add").value]);
      $("poll-add").value = "";
      break;
    case "poll-remove": {
      const id = button.closest("[data-site]").dataset.site;
      state.pollDraft = state.pollDraft.filter((s) => s !== id);
      renderTilePanel();
      break;
    }
    case "poll-online-streets":
      addToDraft(streets({ onlineOnly: true }));
      break;
    case "poll-all-streets":
      addToDraft(streets({ onlineOnly: false }));
      break;
    case "poll-clear-list":
      state.pollDraft = [];
      renderTilePanel();
      break;
    case "poll-start": {
      const interval = Number($("poll-interval").value);
      const tile = state.selected;
      act(
        button,
        { type: "poll", output: OUTPUT, target: tile, sites: [...state.pollDraft], interval_s: interval },
        () => `第 ${tile + 1} 格开始轮询 · polling tile ${tile + 1}`,
      );
      break;
    }
    case "poll-stop":
      act(button, { type: "poll", output: OUTPUT, target: state.selected, sites: [] });
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
        act(button, { type: "preset_delete", name: presetName }, () => `已删除预设 ${presetName} · deleted`);
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
  act(button, { type: "preset_load", name }, () => `已载入预设 ${name} · preset loaded`);
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
  act(button, { type: "preset_save", name }, () => `已保存预设 ${name} · preset saved`);
}

async function customFromCurrent() {
  const layout = state.shown;
  if (!layout) return;
  const geo = await geometry(layout);
  if (!geo) return;
  const round = (v) => Math.round(v * 10000) / 10000;
  $("custom-rects").value = geo.rects.map((r) => JSON.stringify(r.map(round))).join(",\n");
}

function applyCustom() {
  let rects;
  try {
    const text = $("custom-rects").value.trim();
    rects = JSON.parse(text.startsWith("[[") ? text : `[${text}]`);
    if (!Array.isArray(rects) || !rects.length || !rects.every((r) => Array.isArray(r) && r.length === 4)) {
      throw new Error("not a list of [x, y, w, h]");
    }
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
  act(button, { type: "banner", text: input.value }, () => "会标已更新 · banner updated").then((reply) => {
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
  onPollDrop: (siteId) => addToDraft([siteId]),
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
