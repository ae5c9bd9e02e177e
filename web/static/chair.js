// The chair console (主会场控制台): the district leader's control of the conference.
//
// Opened as /chair?token=<chair token> (the join link). Everything on the page is rebuilt from
// the `welcome` snapshot (after every reconnect too) and kept current by the server's events
// (PROTOCOL.md, Conference control): site, floor, hands, rollcall, poll, recording, banner.
// The chair acts through requests; a refusal shows as a notice and changes nothing.
//
// Stable hooks for tests and automation: every site row is `[data-site="<id>"]` inside
// `[data-testid="roster"]`; actions are buttons with `data-action` (floor, unfloor, mute,
// unmute, lower-hand, mute-all, unmute-all, rollcall-start/next/stop, record, poll-start/stop,
// banner, preview, preview-clear); panels carry `data-testid`.
//
// Media (/static/media.js): the chair publishes its camera and microphone and receives the
// programme (`main`: the floor holder) plus PREVIEW_TILES extra video slots (extra1, ...), each
// pointed at a site with a `preview` request (PROTOCOL additions) and labelled from `slots`
// events. `window.__huishang` holds {conn, media, pc, firstFrameAt} for tests.
//
// Recordings: /static/chair-recordings.js (loaded with each welcome and whenever recording
// starts or stops). The uplink panel: /static/chair-uplink.js.

import { connect, describeError, ProtocolError } from "/static/protocol.js";
import { bi, formatClock, formatDuration, groupSites, h, Notices, showConnection, showFatal } from "/static/ui.js";
import { acquireLocalMedia, describeMissing, MediaLink } from "/static/media.js";
import { RecordingsPanel } from "/static/chair-recordings.js";
import { startUplinkPanel } from "/static/chair-uplink.js";

const SPEAKING_ROLES = new Set(["terminal", "uplink"]);
const BANNER_MAX = 200;
const TOKEN_KEY = "huishang.chair.token";
const PREVIEW_TILES = 4;

const $ = (id) => document.getElementById(id);
const notices = new Notices($("notices"));
const recordings = new RecordingsPanel(() => state.token);

/** Everything the page knows, replaced by each welcome and patched by events. */
const state = {
  conn: null,
  token: "",
  me: null,
  title: "",
  chair: null,
  sites: new Map(), // id -> site state (PROTOCOL.md <site state> + role, since)
  floor: null,
  hands: [],
  rollcall: null,
  rollcallCalledAt: 0, // local ms when the current roll-call site was called
  recording: false,
  banner: "",
  polls: new Map(), // "output:target" -> poll state
  rows: new Map(), // id -> {row, parts}
  groups: [], // [{card, ids, countEl}]
  slots: {}, // slot name -> {source, label}, from `slots` events
};

/** The media side: one MediaLink for the page, a new peer connection per session. */
const av = {
  local: null, // Promise of acquireLocalMedia()
  link: null,
  startedFor: null, // session id the current peer connection was offered for
  nextTile: 0, // round robin when every preview tile is busy
  wanted: {}, // slot -> site the chair asked to preview: asked again after a rejoin
};
const debug = { conn: null, media: null, pc: null, firstFrameAt: null };
window.__huishang = debug;

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
  state.token = readToken();
  if (!state.token) {
    showFatal("需要令牌 Token needed", "请使用指挥中心下发的入会链接，或在下面输入令牌。", true);
    return;
  }
  $("attendance").href = `/api/attendance.csv?token=${encodeURIComponent(state.token)}`;
  startUplinkPanel(state.token, notices); // only where [uplink] is configured
  try {
    state.conn = await connect({ token: state.token, client: "chair-console/1", onEvent, onState });
    debug.conn = state.conn;
    startMedia(); // the first welcome arrived before state.conn was set
  } catch (err) {
    // onState("stopped") already shows why; nothing else to do.
    console.warn("chair console stopped:", describeError(err));
  }
}

function onState(st) {
  showConnection($("conn"), st);
  if (st.state === "stopped" && av.link) av.link.close();
  $("stale").hidden = !(st.state === "offline" || (st.state === "connecting" && state.me));
  $("stale-reason").textContent = st.reason || "";
  if (st.state === "stopped") {
    showFatal(st.reason || "连接已停止 stopped", stoppedDetail(st.reason), false);
  }
}

function stoppedDetail(reason) {
  if (reason && reason.includes("signed in elsewhere")) {
    return "主会场控制台已在另一个窗口或电脑上打开。点击下方按钮可在此处重新登录（另一处将被断开）。";
  }
  if (reason && reason.includes("invalid token")) {
    return "令牌无效或已被撤销，请联系值班人员获取新的入会链接。";
  }
  return "";
}

// -- events ---------------------------------------------------------------------------------

function onEvent(msg) {
  switch (msg.type) {
    case "welcome":
      loadWelcome(msg);
      break;
    case "site": {
      const before = state.sites.get(msg.site.id);
      state.sites.set(msg.site.id, msg.site);
      reconcileHand(msg.site);
      if (msg.site.hand && !(before && before.hand)) {
        notices.show(`${msg.site.name} 举手申请发言 · raised a hand`, { kind: "info" });
      }
      break;
    }
    case "floor":
      state.floor = msg.site;
      break;
    case "hands":
      state.hands = [...msg.queue];
      break;
    case "rollcall":
      setRollcall(msg.state);
      break;
    case "poll":
      setPoll(msg);
      break;
    case "recording":
      if (state.recording !== msg.on) {
        state.recording = msg.on;
        recordings.load(msg.on);
      }
      break;
    case "banner":
      state.banner = msg.text;
      break;
    case "slots":
      Object.assign(state.slots, msg.assign || {});
      renderMedia();
      return;
    case "pause":
      if (av.link) av.link.pause(msg);
      $("self-paused").hidden = !msg.video;
      return;
    case "candidate":
      if (av.link) av.link.addRemoteCandidate(msg.candidate);
      return;
    default:
      return; // layout, presets, muted: nothing to show on this page yet
  }
  render();
}

function loadWelcome(msg) {
  const snap = msg.conference;
  state.me = msg.site;
  if (msg.site.role !== "chair") {
    notices.show(`此令牌属于 ${msg.site.name}（${msg.site.role}），不是主会场 · not a chair token`, {
      kind: "error",
      code: "forbidden",
    });
  }
  state.title = snap.title || "";
  state.chair = snap.chair ?? msg.site.id;
  state.sites = new Map(snap.sites.map((s) => [s.id, s]));
  state.floor = snap.floor;
  state.hands = [...(snap.hands || snap.sites.filter((s) => s.hand).map((s) => s.id))];
  state.rollcallCalledAt = 0;
  setRollcall(snap.rollcall);
  state.recording = !!snap.recording;
  state.banner = snap.banner || "";
  state.polls = new Map();
  for (const poll of snap.polls || []) setPoll(poll);
  state.slots = {};
  buildRoster();
  render();
  renderMedia();
  startMedia();
  recordings.load(state.recording);
}

/** Keep the queue consistent with site states (a site given the floor or gone loses its hand). */
function reconcileHand(site) {
  const queued = state.hands.includes(site.id);
  if (!site.hand && queued) state.hands = state.hands.filter((id) => id !== site.id);
  if (site.hand && !queued) state.hands.push(site.id);
}

function setRollcall(rc) {
  const previous = state.rollcall;
  state.rollcall = rc || null;
  if (rc && rc.active && rc.current && (!previous || previous.current !== rc.current)) {
    state.rollcallCalledAt = Date.now();
  }
}

function setPoll(poll) {
  const key = `${poll.output || "wall"}:${poll.target}`;
  if (poll.sites && poll.sites.length) state.polls.set(key, poll);
  else state.polls.delete(key);
}

const serverNow = () => (state.conn ? state.conn.serverNow() : Date.now() / 1000);
const siteName = (id) => (id && state.sites.get(id) ? state.sites.get(id).name : id || "");

// -- roster ---------------------------------------------------------------------------------

function buildRoster() {
  const roster = $("roster");
  roster.replaceChildren();
  state.rows.clear();
  state.groups = [];
  for (const group of groupSites([...state.sites.values()])) {
    const countEl = h("span", { class: "group-count" });
    const card = h(
      "section",
      { class: `group group-${group.key === "centre" ? "centre" : "street"}`, dataset: { group: group.key } },
      h("h3", { class: "group-title" }, h("span", { text: group.title }), countEl),
    );
    for (const site of group.sites) card.append(buildRow(site, group.head));
    roster.append(card);
    state.groups.push({ card, ids: group.sites.map((s) => s.id), countEl });
  }
}

function buildRow(site, head) {
  const level = site.level === "community" ? "community" : head === site ? "street" : site.level;
  const parts = {
    name: h("span", { class: "name", text: site.name, title: site.id }),
    badges: h("span", { class: "badges" }),
    since: h("span", { class: "since" }),
    link: h("span", { class: "link" }),
    actions: h("span", { class: "actions" }),
  };
  const speaks = SPEAKING_ROLES.has(site.role) || site.level === "camera";
  if (speaks && site.id !== state.chair) {
    parts.floor = actionButton("floor", "点名发言", "Give floor", "btn-primary");
    parts.unfloor = actionButton("unfloor", "收回发言", "Take back", "btn-warn");
    parts.actions.append(parts.floor, parts.unfloor);
    parts.preview = actionButton("preview", "预览", "Preview", "");
    parts.actions.append(parts.preview);
  }
  if (SPEAKING_ROLES.has(site.role)) {
    parts.mute = actionButton("mute", "静音", "Mute", "");
    parts.unmute = actionButton("unmute", "取消静音", "Unmute", "");
    parts.actions.append(parts.mute, parts.unmute);
  }
  const row = h(
    "div",
    { class: `site level-${level}`, dataset: { site: site.id, testid: `site-${site.id}` } },
    h("span", { class: "dot", "aria-hidden": "true" }),
    h("span", { class: "who" }, parts.name, parts.badges),
    h("span", { class: "meta" }, parts.since, parts.link),
    parts.actions,
  );
  state.rows.set(site.id, { row, parts });
  return row;
}

function actionButton(action, zh, en, cls) {
  return h("button", { type: "button", class: `btn btn-small ${cls}`, dataset: { action } }, bi(zh, en));
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function badge(cls, zh, en) {
  return h("span", { class: `badge badge-${cls}`, dataset: { badge: cls } }, bi(zh, en));
}

// a camera site's ingest state (site state "camera", docs/protocol.md): [kind, 中文, English]
const CAMERA_BADGES = {
  idle: ["camera", "待调用", "Camera idle"],
  connecting: ["camera", "连接中", "Camera connecting"],
  live: ["camera-live", "视频正常", "Camera live"],
  retrying: ["camera-down", "重连中", "Camera retrying"],
};

function updateRow(id) {
  const entry = state.rows.get(id);
  const site = state.sites.get(id);
  if (!entry || !site) return;
  const { row, parts } = entry;
  const rc = state.rollcall;
  const called = !!(rc && rc.active && rc.current === id);
  const handPos = state.hands.indexOf(id) + 1;
  const onFloor = state.floor === id || (state.floor === null && id === state.chair);
  row.classList.toggle("online", site.online);
  row.classList.toggle("offline", !site.online);
  row.classList.toggle("on-floor", onFloor);
  row.classList.toggle("hand-up", handPos > 0);
  row.classList.toggle("muted", site.audio_muted);
  row.classList.toggle("called", called);
  row.dataset.online = String(site.online);

  const badges = []; // [kind, 中文, English]
  if (id === state.chair) badges.push(["chair", "主会场", "Chair"]);
  if (onFloor) badges.push(["floor", "发言中", "Speaking"]);
  if (called) badges.push(["called", "点名中", "Being called"]);
  if (handPos > 0) badges.push(["hand", `举手 #${handPos}`, "Hand up"]);
  if (site.audio_muted) badges.push(["muted", "已静音", "Muted"]);
  if (site.video_muted) badges.push(["video-off", "画面关闭", "Video off"]);
  if (rc && rc.active && rc.acked.includes(id)) badges.push(["acked", "已到", "Present"]);
  if (rc && rc.active && rc.missed.includes(id)) badges.push(["missed", "未到", "Missed"]);
  if (site.level === "camera" && site.camera) badges.push(CAMERA_BADGES[site.camera] || [
    "camera", site.camera, site.camera]);
  const key = badges.map((b) => b[1]).join(" ");
  if (parts.badges.dataset.key !== key) {
    parts.badges.dataset.key = key;
    parts.badges.replaceChildren(...badges.map((b) => badge(...b)));
  }

  setText(parts.since, sinceText(site));
  const link = site.link;
  setText(
    parts.link,
    link
      ? `${Math.round(link.rtt_ms)} ms · 丢包 loss ${(link.loss * 100).toFixed(1)}% · ` +
          `${Math.round(link.kbps)} kbps`
      : "",
  );
  if (parts.floor) {
    parts.floor.hidden = state.floor === id;
    parts.unfloor.hidden = state.floor !== id;
    parts.floor.disabled = busy.has(parts.floor) || (!site.online && site.level !== "camera");
  }
  if (parts.preview) {
    const shown = Object.values(state.slots).some((a) => a && a.source === id);
    parts.preview.classList.toggle("on", shown);
    parts.preview.disabled = busy.has(parts.preview) || (!site.online && site.level !== "camera");
  }
  if (parts.mute) {
    parts.mute.hidden = site.audio_muted;
    parts.unmute.hidden = !site.audio_muted;
  }
}

function sinceText(site) {
  if (site.level === "camera") {
    return "视频图像接入 · 可随时调用 camera: show or give the floor at any time";
  }
  if (site.since === null || site.since === undefined) {
    return site.online ? "在线 online" : "未上线 not joined";
  }
  const at = formatClock(site.since).slice(0, 5);
  const held = formatDuration(serverNow() - site.since);
  return `${site.online ? "在线" : "离线"} ${at} 起 · ${held}`;
}

function applyFilter() {
  const text = $("filter").value.trim().toLowerCase();
  const onlineOnly = $("online-only").checked;
  for (const group of state.groups) {
    let visible = 0;
    for (const id of group.ids) {
      const site = state.sites.get(id);
      const entry = state.rows.get(id);
      const match =
        (!text || site.name.toLowerCase().includes(text) || id.toLowerCase().includes(text)) &&
        (!onlineOnly || site.online);
      entry.row.hidden = !match;
      if (match) visible += 1;
    }
    group.card.hidden = visible === 0;
  }
}

// -- panels ---------------------------------------------------------------------------------

function render() {
  const sites = [...state.sites.values()];
  const title = state.title || (state.me ? `${state.me.name} 会商` : "会商");
  setText($("title"), title);
  document.title = `${title} · 主会场控制台 Chair console`;
  setText($("online-count"), String(sites.filter((s) => s.online).length));
  setText($("total-count"), String(sites.length));
  for (const id of state.rows.keys()) updateRow(id);
  for (const group of state.groups) {
    const online = group.ids.filter((id) => state.sites.get(id).online).length;
    setText(group.countEl, `在线 ${online}/${group.ids.length}`);
    group.card.classList.toggle("has-online", online > 0);
  }
  applyFilter();
  renderFloor();
  renderHands();
  renderRollcall();
  renderPoll();
  renderRecording();
  renderBanner();
}

function renderFloor() {
  const floor = state.floor;
  setText($("floor-name"), floor ? siteName(floor) : `主会场 ${siteName(state.chair)}`);
  $("floor-name").dataset.site = floor || "";
  document.querySelector('[data-testid="floor-back"]').hidden = !floor;
}

function renderHands() {
  const list = $("hands-list");
  const key = state.hands.join(",");
  setText($("hands-count"), String(state.hands.length));
  $("hands-empty").hidden = state.hands.length > 0;
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(
    ...state.hands.map((id, i) =>
      h(
        "li",
        { dataset: { site: id, testid: `hand-${id}` } },
        h("span", { class: "pos", text: String(i + 1) }),
        h("span", { class: "name", text: siteName(id) }),
        h(
          "span",
          { class: "actions" },
          actionButton("floor", "点名发言", "Give floor", "btn-primary"),
          actionButton("lower-hand", "放下", "Lower", ""),
        ),
      ),
    ),
  );
}

function renderRollcall() {
  const rc = state.rollcall;
  const panel = $("rollcall");
  const active = !!(rc && rc.active);
  panel.dataset.active = String(active);
  setText($("rc-round"), rc ? `第 ${rc.round} 轮 · round ${rc.round}` : "");
  const current = $("rc-current");
  current.dataset.site = active && rc.current ? rc.current : "";
  if (active && rc.current) {
    const left = Math.max(0, Math.ceil(rc.timeout_s - (Date.now() - state.rollcallCalledAt) / 1000));
    setText(current, `正在点名 Calling: ${siteName(rc.current)} · 剩余 ${left} s`);
  } else if (rc) {
    setText(current, `本轮已结束 Round finished · 到 ${rc.acked.length} / 未到 ${rc.missed.length}`);
  } else {
    setText(current, "未在点名 Not running");
  }
  const acked = rc ? rc.acked : [];
  const missed = rc ? rc.missed : [];
  const pending = rc ? rc.pending : [];
  const total = acked.length + missed.length + pending.length + (active && rc.current ? 1 : 0);
  $("rc-progress").max = Math.max(1, total);
  $("rc-progress").value = acked.length + missed.length;
  setText($("rc-acked-count"), String(acked.length));
  setText($("rc-missed-count"), String(missed.length));
  setText($("rc-pending-count"), String(pending.length));
  fillList($("rc-acked"), acked);
  fillList($("rc-missed"), missed);
  fillList($("rc-pending"), pending);
  setDisabled('[data-action="rollcall-start"]', active);
  setDisabled('[data-action="rollcall-next"]', !active);
  setDisabled('[data-action="rollcall-stop"]', !active);
}

function fillList(list, ids) {
  const key = ids.join(",");
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(...ids.map((id) => h("li", { dataset: { site: id }, text: siteName(id) })));
}

function setDisabled(selector, disabled) {
  for (const button of document.querySelectorAll(selector)) {
    button.disabled = disabled || busy.has(button);
  }
}

function renderPoll() {
  const poll = state.polls.get("wall:floor");
  const el = $("poll-state");
  el.dataset.active = String(!!poll);
  if (poll) {
    setText(
      el,
      `轮询中 Polling ${poll.sites.length} 个站点 sites · 每 ${poll.interval_s} 秒 s · ` +
        `当前 now: ${siteName(poll.current) || "—"}`,
    );
  } else {
    setText(el, "未轮询 Not polling");
  }
  setDisabled('[data-action="poll-stop"]', !poll);
}

function renderRecording() {
  const button = document.querySelector('[data-action="record"]');
  button.setAttribute("aria-pressed", String(state.recording));
  button.classList.toggle("on", state.recording);
  const label = button.querySelector(".label");
  const wanted = state.recording ? "录制中 · 点击停止 Recording" : "开始录制 Record";
  if (label.textContent !== wanted) {
    label.replaceChildren(
      state.recording ? bi("录制中 · 点击停止", "Recording") : bi("开始录制", "Record"),
    );
  }
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

// -- actions --------------------------------------------------------------------------------

const busy = new Set();

async function act(button, message, describeOk) {
  if (!state.conn) {
    notices.show(describeError(new ProtocolError("offline", "未连接服务器 not connected")), {
      kind: "error",
      code: "offline",
    });
    return null;
  }
  busy.add(button);
  button.disabled = true;
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
    render();
  }
}

function sitesFor(scope, { streetsOnly = false } = {}) {
  return [...state.sites.values()]
    .filter((s) => s.role === "terminal")
    .filter((s) => (scope === "online" || scope === "streets-online" ? s.online : true))
    .filter((s) => (streetsOnly || scope === "streets" ? s.level === "street" : true))
    .map((s) => s.id);
}

function onClick(event) {
  const button = event.target.closest("button[data-action]");
  if (!button || button.disabled) return;
  const action = button.dataset.action;
  const holder = button.closest("[data-site]");
  const site = holder ? holder.dataset.site : null;
  const name = siteName(site);
  switch (action) {
    case "floor":
      act(button, { type: "floor", site }, () => `已请 ${name} 发言 · floor given`);
      break;
    case "unfloor":
      act(button, { type: "floor", site: null }, () => "已收回发言 · floor taken back");
      break;
    case "mute":
      act(button, { type: "mute", site, audio: true });
      break;
    case "unmute":
      act(button, { type: "mute", site, audio: false });
      break;
    case "lower-hand":
      act(button, { type: "hand", up: false, site });
      break;
    case "mute-all":
      act(button, { type: "mute_all", audio: true }, (r) => `已静音 ${r.count ?? 0} 个站点 · muted`);
      break;
    case "unmute-all":
      act(button, { type: "mute_all", audio: false }, (r) => {
        return `已取消静音 ${r.count ?? 0} 个站点 · unmuted`;
      });
      break;
    case "rollcall-start": {
      const scope = $("rc-scope").value;
      const message = { type: "rollcall", action: "start" };
      if (scope !== "all") {
        message.sites = sitesFor(scope);
        if (!message.sites.length) {
          notices.show("没有可点名的在线站点 · no sites online to call", {
            kind: "error",
            code: "local",
          });
          return;
        }
      }
      act(button, message);
      break;
    }
    case "rollcall-next":
      act(button, { type: "rollcall", action: "next" });
      break;
    case "rollcall-stop":
      act(button, { type: "rollcall", action: "stop" });
      break;
    case "record":
      act(button, { type: "record", on: !state.recording });
      break;
    case "poll-start": {
      const sites = sitesFor("online", { streetsOnly: $("poll-scope").value === "streets" });
      const interval = Number($("poll-interval").value) || 15;
      act(button, { type: "poll", target: "floor", sites, interval_s: interval });
      break;
    }
    case "poll-stop":
      act(button, { type: "poll", target: "floor", sites: [], interval_s: 15 });
      break;
    case "preview": {
      const slot = previewTileFor(site);
      if (!av.link || !av.link.slots || !Object.keys(av.link.slots).length) {
        // The preview slots exist once the console's media is up: ask then (restorePreviews).
        av.wanted[slot] = site;
        notices.show(`${name} → 预览将在媒体连接后显示 · preview shows once media connects`, {
          kind: "info",
        });
        break;
      }
      act(button, { type: "preview", slot, source: site }, () => `${name} → 预览 preview`).then(
        (reply) => {
          if (reply) av.wanted[slot] = site;
        },
      );
      break;
    }
    case "preview-clear": {
      const slot = button.dataset.slot;
      act(button, { type: "preview", slot, source: null }).then((reply) => {
        if (reply) delete av.wanted[slot];
      });
      break;
    }
    case "sound": {
      const video = $("programme-video");
      video.muted = false;
      video.play().catch(() => {});
      button.hidden = true;
      break;
    }
    default:
      break;
  }
}

function onBannerSubmit(event) {
  event.preventDefault();
  const input = $("banner-input");
  const button = document.querySelector('[data-action="banner"]');
  act(button, { type: "banner", text: input.value }, () => "会标已更新 · banner updated").then(
    (reply) => {
      if (reply) delete input.dataset.dirty;
    },
  );
}

function onTokenSubmit(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  const url = new URL(location.href);
  url.searchParams.set("token", token);
  location.assign(url.toString());
}

// -- media ----------------------------------------------------------------------------------

const MEDIA_TEXT = {
  new: ["媒体准备中", "media starting"],
  connecting: ["媒体连接中", "media connecting"],
  connected: ["媒体已连接", "media connected"],
  disconnected: ["媒体中断", "media interrupted"],
  failed: ["媒体失败", "media failed"],
  closed: ["媒体已关闭", "media closed"],
  refused: ["媒体被拒绝", "media refused"],
};

function buildPreviewTiles() {
  const tiles = [];
  for (let i = 1; i <= PREVIEW_TILES; i++) {
    const slot = `extra${i}`;
    tiles.push(
      h(
        "div",
        { class: "m-tile", dataset: { slot, live: "false", testid: `preview-${slot}` } },
        h("video", { class: "m-video", autoplay: true, playsinline: true, dataset: { testid: `preview-video-${slot}` } }),
        h("span", { class: "m-empty" }, bi(`预览 ${i}`, "Preview: pick a site")),
        h("span", { class: "m-label", dataset: { testid: `preview-label-${slot}` } }),
        h(
          "button",
          { type: "button", class: "btn btn-small m-clear", dataset: { action: "preview-clear", slot } },
          bi("清除", "Clear"),
        ),
      ),
    );
  }
  $("previews").replaceChildren(...tiles);
  for (const tile of tiles) tile.querySelector("video").muted = true;
}

/** The extra slot a new preview of `site` goes to: its own tile, a free one, else round robin. */
function previewTileFor(site) {
  const names = Array.from({ length: PREVIEW_TILES }, (_, i) => `extra${i + 1}`);
  const own = names.find((n) => state.slots[n] && state.slots[n].source === site);
  if (own) return own;
  const free = names.find((n) => !state.slots[n] || !state.slots[n].source);
  if (free) return free;
  const slot = names[av.nextTile % names.length];
  av.nextTile += 1;
  return slot;
}

function renderMedia() {
  const main = state.slots.main;
  const tiles = [[$("programme"), main], ...[...$("previews").children].map((t) => [t, state.slots[t.dataset.slot]])];
  for (const [tile, assign] of tiles) {
    const source = (assign && assign.source) || "";
    if (tile.dataset.source !== source) {
      tile.dataset.source = source;
      tile.dataset.live = "false"; // until the new source's first frame is shown
      const video = tile.querySelector("video");
      if (source && video.srcObject && video.requestVideoFrameCallback) {
        video.requestVideoFrameCallback(() => {
          if (tile.dataset.source === source) tile.dataset.live = "true";
        });
      }
    }
    setText(tile.querySelector(".m-label"), source ? assign.label || siteName(source) : "");
  }
  for (const id of state.rows.keys()) updateRow(id);
}

async function startMedia() {
  const conn = state.conn;
  if (!conn || !conn.welcome || av.startedFor === conn.welcome.session) return;
  av.startedFor = conn.welcome.session;
  if (!av.local) av.local = acquireLocalMedia();
  const local = await av.local;
  if (!av.link) {
    const missing = describeMissing(local);
    $("devices").hidden = !missing;
    $("devices").textContent = missing;
    if (missing) notices.show(missing, { kind: "error", code: "devices" });
    if (local.stream && local.stream.getVideoTracks().length) $("self-view").srcObject = local.stream;
    else $("self-tile").hidden = true;
    av.link = new MediaLink({
      local: local.stream,
      extraVideos: PREVIEW_TILES,
      onStreams: showStreams,
      onState: showMediaState,
      onStats: showStats,
      onNotice: (text, kind) => notices.show(text, { kind, code: "media" }),
    });
    debug.media = av.link;
  }
  $("self-paused").hidden = true;
  if (av.startedFor !== conn.welcome.session) return; // a newer welcome took over meanwhile
  const started = av.link.start(conn);
  debug.pc = av.link.pc;
  await started;
  await restorePreviews(conn);
}

/** A rejoin is a new session with empty extra slots: ask for the chair's previews again. */
async function restorePreviews(conn) {
  for (const [slot, source] of Object.entries(av.wanted)) {
    if (state.conn !== conn || !av.link.pc || !Object.keys(av.link.slots).length) return;
    if (state.slots[slot] && state.slots[slot].source === source) continue;
    try {
      await conn.request({ type: "preview", slot, source });
    } catch (err) {
      delete av.wanted[slot];
      notices.show(`${siteName(source)}: ${describeError(err)}`, { kind: "error", code: err.code || "" });
    }
  }
}

function play(video, tile, stream, withSound) {
  tile.dataset.live = "false";
  video.srcObject = stream || null;
  if (!stream) return;
  const live = () => {
    tile.dataset.live = "true";
    if (withSound && debug.firstFrameAt === null) debug.firstFrameAt = performance.now();
  };
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(live);
  else video.addEventListener("playing", live, { once: true });
  video.play().catch(() => {
    if (!withSound) return;
    video.muted = true; // autoplay with sound refused until the user interacts
    video.play().catch(() => {});
    document.querySelector('[data-action="sound"]').hidden = false;
  });
}

function showStreams(streams) {
  debug.pc = av.link.pc;
  play($("programme-video"), $("programme"), streams.main, true);
  for (const tile of $("previews").children) {
    play(tile.querySelector("video"), tile, streams[tile.dataset.slot], false);
  }
}

function showMediaState(st) {
  const el = $("media-state");
  el.dataset.state = st.pc;
  el.dataset.ice = st.ice;
  const [zh, en] = MEDIA_TEXT[st.pc] || [st.pc, ""];
  el.replaceChildren(bi(zh, en));
}

function showStats(s) {
  const rtt = s.rtt_ms === null ? "—" : `${Math.round(s.rtt_ms)} ms`;
  setText(
    $("media-stats"),
    `RTT ${rtt} · ↓${Math.round(s.in_kbps)} kbps · ↑${Math.round(s.out_kbps)} kbps · ` +
      `${Math.round(s.fps)} fps`,
  );
}

// -- wiring ---------------------------------------------------------------------------------

document.addEventListener("click", onClick);
$("banner-form").addEventListener("submit", onBannerSubmit);
$("banner-input").addEventListener("input", () => {
  $("banner-input").dataset.dirty = "1";
  updateBannerCount();
});
$("filter").addEventListener("input", applyFilter);
$("online-only").addEventListener("change", applyFilter);
$("token-form").addEventListener("submit", onTokenSubmit);
$("fatal-reload").addEventListener("click", () => location.reload());
buildPreviewTiles();
setInterval(() => {
  if (state.sites.size) render();
}, 1000);

start();

// The page state, for debugging from the devtools console and for tests (read only, please).
export { state };
