// Terminal page (street / community): join in one click, follow the programme, raise a hand,
// answer the roll call, mute self. Signalling only for now; the relay issue adds the media.
import { connect, describeError } from "/static/protocol.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const token = new URLSearchParams(location.search).get("token") || "";
const state = { me: null, sites: new Map(), floor: null, chair: null, hands: [], rollcall: null };
let conn = null;

function notice(text) {
  $("notice").textContent = text;
  if (text) setTimeout(() => { if ($("notice").textContent === text) $("notice").textContent = ""; }, 8000);
}

function nameOf(id) {
  return (state.sites.get(id) || {}).name || id || "";
}

function render() {
  const me = state.sites.get(state.me) || {};
  $("site-name").textContent = me.name || "会商终端";
  const speaker = state.floor && state.floor !== state.me ? state.floor : state.chair;
  $("programme-label").textContent = state.floor === state.me
    ? "您正在发言 · You have the floor"
    : `${nameOf(speaker)}${state.floor ? " 发言中" : "（主席）"}`;
  const hand = $("hand");
  hand.setAttribute("aria-pressed", String(!!me.hand));
  const pos = state.hands.indexOf(state.me);
  hand.textContent = me.hand ? `放下 · Lower hand (第${pos + 1}位)` : "举手 · Raise hand";
  const mute = $("mute");
  mute.setAttribute("aria-pressed", String(!!me.audio_muted));
  mute.textContent = me.audio_muted ? "取消静音 · Unmute" : "静音 · Mute";
  const call = state.rollcall;
  const called = call && call.active && call.current === state.me;
  $("present").hidden = !called;
  $("rollcall").textContent = called
    ? "主席点名：请点击“到” · You are being called"
    : (call && call.active ? `点名中：${nameOf(call.current)}` : "");
}

function onEvent(msg) {
  switch (msg.type) {
    case "welcome": {
      const c = msg.conference;
      state.me = msg.site.id;
      state.sites = new Map(c.sites.map((s) => [s.id, s]));
      state.floor = c.floor; state.chair = c.chair; state.hands = c.hands || [];
      state.rollcall = c.rollcall;
      $("banner").textContent = c.banner || "";
      $("title").textContent = c.title || "";
      break;
    }
    case "site": state.sites.set(msg.site.id, msg.site); break;
    case "floor": state.floor = msg.site; break;
    case "hands": state.hands = msg.queue; break;
    case "rollcall": state.rollcall = msg.state; break;
    case "banner": $("banner").textContent = msg.text; break;
    case "muted":
      if (msg.audio === true) notice("主席已将您静音 · The chair muted you");
      if (msg.audio === false) notice("主席已取消您的静音 · The chair unmuted you");
      break;
    default: break;
  }
  render();
}

function onState(st) {
  const link = $("link");
  link.dataset.state = st.state;
  link.textContent = {
    connecting: "连接中 connecting", online: "已连接 online",
    offline: `重连中 reconnecting${st.retryInMs ? ` (${Math.ceil(st.retryInMs / 1000)} s)` : ""}`,
    stopped: st.reason || "已断开 stopped",
  }[st.state] || st.state;
}

async function act(message) {
  try { await conn.request(message); } catch (err) { notice(describeError(err)); }
}

$("hand").addEventListener("click", () => {
  const me = state.sites.get(state.me) || {};
  act({ type: "hand", up: !me.hand });
});
$("mute").addEventListener("click", () => {
  const me = state.sites.get(state.me) || {};
  act({ type: "mute", site: state.me, audio: !me.audio_muted });
});
$("present").addEventListener("click", () => act({ type: "rollcall_ack" }));

connect({ token, client: "terminal-page/1", onEvent, onState })
  .then((c) => { conn = c; })
  .catch((err) => { onState({ state: "stopped", reason: describeError(err) }); });
