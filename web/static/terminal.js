// Terminal page (street / community): join in one click, see and hear the programme, publish
// camera and microphone, raise a hand, answer the roll call, mute self; rejoin by itself.
//
// Media (PROTOCOL.md, Media) is /static/media.js: on every `welcome` (the first and each one
// after a reconnect) a new peer connection offers audio + video sendrecv; the answer's `slots`
// put `main` on the programme <video>, labelled from `slots` events; `pause` stops sending.
// For tests and troubleshooting, `window.__huishang` holds {conn, media, pc, firstFrameAt}.
import { connect, describeError } from "/static/protocol.js";
import { acquireLocalMedia, describeMissing, MediaLink } from "/static/media.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const token = new URLSearchParams(location.search).get("token") || "";
const state = {
  me: null, role: null, sites: new Map(), floor: null, chair: null, hands: [], rollcall: null,
  mainLabel: null, // from `slots` events: what `main` carries now
};
const debug = {
  conn: null, media: null, pc: null, local: null,
  firstFrameAt: null, // performance.now() (ms since navigation) of the first programme frame
  localAt: null, // ... when the camera and microphone were ready
  welcomeAt: null, // ... when the first welcome arrived
};
window.__huishang = debug;
let conn = null;
let media = null;
let localReady = null; // Promise of acquireLocalMedia(), once per page
let startedFor = null; // the session the current peer connection was offered for

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
  let label;
  if (state.floor === state.me) {
    label = `您正在发言 · You have the floor${state.mainLabel ? ` — ${state.mainLabel}` : ""}`;
  } else if (state.mainLabel) {
    label = `${state.mainLabel}${state.floor ? " 发言中" : "（主席）"}`;
  } else {
    label = `${nameOf(speaker)}${state.floor ? " 发言中" : "（主席）"}`;
  }
  $("programme-label").textContent = label;
  const hand = $("hand");
  hand.setAttribute("aria-pressed", String(!!me.hand));
  const pos = state.hands.indexOf(state.me);
  hand.textContent = me.hand ? `放下 · Lower hand (第${pos + 1}位)` : "举手 · Raise hand";
  const mute = $("mute");
  mute.setAttribute("aria-pressed", String(!!me.audio_muted));
  mute.textContent = me.audio_muted ? "取消静音 · Unmute" : "静音 · Mute";
  if (media) media.setMuted(!!me.audio_muted);
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
      if (debug.welcomeAt === null) debug.welcomeAt = performance.now();
      state.me = msg.site.id;
      state.role = msg.site.role;
      state.sites = new Map(c.sites.map((s) => [s.id, s]));
      state.floor = c.floor; state.chair = c.chair; state.hands = c.hands || [];
      state.rollcall = c.rollcall;
      state.mainLabel = null;
      $("banner").textContent = c.banner || "";
      $("title").textContent = c.title || "";
      startMedia(); // first join and every rejoin: a new peer connection for the new session
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
    case "slots": {
      const main = msg.assign && msg.assign.main;
      if (main) {
        state.mainLabel = main.label || null;
        $("programme").dataset.source = main.source || "";
      }
      break;
    }
    case "pause":
      if (media) media.pause(msg);
      $("self-paused").hidden = !msg.video;
      break;
    case "candidate":
      if (media) media.addRemoteCandidate(msg.candidate);
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
  if (st.state === "stopped" && media) media.close();
}

// -- media ------------------------------------------------------------------------------------

const MEDIA_TEXT = {
  new: "媒体准备中 media starting", connecting: "媒体连接中 media connecting",
  connected: "媒体已连接 media connected", disconnected: "媒体中断 media interrupted",
  failed: "媒体失败 media failed", closed: "媒体已关闭 media closed",
  refused: "媒体被拒绝 media refused",
};

function sendsMedia() {
  return !["observer", "wall"].includes(state.role);
}

async function startMedia() {
  // Once per session: the first welcome arrives before connect() resolves (conn unset), each
  // later one (a rejoin) is a new session with a new server-side peer.
  if (!conn || !conn.welcome || startedFor === conn.welcome.session) return;
  startedFor = conn.welcome.session;
  let local = await localReady;
  if (!sendsMedia() && local.stream) {
    // observers and walls only watch: give the camera back
    for (const track of local.stream.getTracks()) track.stop();
    local = { stream: null, missing: [] };
    localReady = Promise.resolve(local);
  }
  debug.local = local;
  if (!media) {
    const missing = describeMissing(local);
    $("devices").hidden = !missing;
    $("devices").textContent = missing;
    if (local.stream && local.stream.getVideoTracks().length) {
      $("self-view").srcObject = local.stream;
    } else {
      $("self").hidden = true;
    }
    media = new MediaLink({
      local: local.stream,
      onStreams: showStreams,
      onState: showMediaState,
      onStats: showStats,
      onNotice: (text) => notice(text),
    });
    debug.media = media;
  }
  media.setMuted(!!(state.sites.get(state.me) || {}).audio_muted);
  $("self-paused").hidden = true;
  debug.conn = conn;
  if (startedFor !== conn.welcome.session) return; // a newer welcome took over meanwhile
  const started = media.start(conn);
  debug.pc = media.pc;
  await started;
}

function showStreams(streams) {
  const video = $("programme-video");
  const tile = $("programme");
  tile.dataset.live = "false";
  video.srcObject = streams.main || null;
  debug.pc = media.pc;
  if (!streams.main) return;
  const markLive = () => {
    tile.dataset.live = "true";
    if (debug.firstFrameAt === null) debug.firstFrameAt = performance.now();
  };
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(markLive);
  else video.addEventListener("playing", markLive, { once: true });
  video.play().catch(() => {
    // Autoplay with sound refused until the user interacts: play muted, offer sound.
    video.muted = true;
    video.play().catch(() => {});
    $("sound").hidden = false;
  });
}

function showMediaState(st) {
  const el = $("media-state");
  el.dataset.state = st.pc;
  el.dataset.ice = st.ice;
  el.textContent = MEDIA_TEXT[st.pc] || st.pc;
}

function showStats(s) {
  const rtt = s.rtt_ms === null ? "—" : `${Math.round(s.rtt_ms)} ms`;
  $("media-stats").textContent =
    `RTT ${rtt} · ↓${Math.round(s.in_kbps)} kbps · ↑${Math.round(s.out_kbps)} kbps · ` +
    `${Math.round(s.fps)} fps`;
  $("media-stats").dataset.framesDecoded = String(s.frames_decoded);
}

$("sound").addEventListener("click", () => {
  const video = $("programme-video");
  video.muted = false;
  video.play().catch(() => {});
  $("sound").hidden = true;
});

// -- actions ----------------------------------------------------------------------------------

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

// The camera starts while signalling connects: joining is one click, and the first frame
// comes sooner (getUserMedia takes a few hundred ms).
localReady = acquireLocalMedia().then((local) => {
  debug.localAt = performance.now();
  return local;
});
connect({ token, client: "terminal-page/1", onEvent, onState })
  .then((c) => {
    conn = c;
    debug.conn = c;
    startMedia(); // the first welcome arrived before `conn` was set
  })
  .catch((err) => { onState({ state: "stopped", reason: describeError(err) }); });
