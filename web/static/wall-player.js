// The live picture of one wall output in a <video>: the wall display page (wall.js) and the
// operator page's preview (operator.js) both use it.
//
// API
// ---
//   import { playWall } from "/static/wall-player.js";
//
//   const player = playWall(conn, videoElement, {
//     overlay,          // optional element shown only while the wall is not playing; an
//                       //   element inside it with [data-wall-status] gets the status line
//     onStatus(st) {},  // st: "connecting" | "waiting" | "playing" | "offline" | "stopped"
//   });
//   player.status       // the latest status
//   player.link         // the MediaLink (media.js); player.link.pc is the RTCPeerConnection
//   player.close()
//
// `conn` is a protocol.js Connection that already has its first `welcome` (connect() resolved).
// The site's role decides what its `main` video slot carries: the wall output for the wall
// and operator roles (signalling/routing.py). The player offers receive-only audio + video
// (PROTOCOL.md, Media: a receive-only client offers recvonly) and offers again after every
// `welcome`: protocol.js reconnects by itself after a network drop or a server restart, and
// the new session needs a new peer connection.
//
// "playing" means decoded frames keep arriving (getStats framesDecoded rising, sampled once a
// second by media.js); after `stallMs` without a new frame the status becomes "waiting".

import { MediaLink } from "/static/media.js";

const STALL_MS = 2500;

const TEXT = {
  connecting: "正在连接服务器 · connecting",
  waiting: "等待大屏画面 · waiting for the picture",
  playing: "",
  offline: "与服务器的连接已断开，正在重连 · offline, reconnecting",
  stopped: "已停止 · stopped",
};

export function playWall(conn, video, options = {}) {
  const player = new WallPlayer(conn, video, options);
  player.attach();
  return player;
}

export class WallPlayer {
  constructor(conn, video, { overlay = null, onStatus = () => {}, stallMs = STALL_MS } = {}) {
    this.conn = conn;
    this.video = video;
    this.overlay = overlay;
    this.onStatus = onStatus;
    this.stallMs = stallMs;
    this.status = "connecting";
    this.reason = "";
    this.frames = 0;
    this.lastFrameAt = 0;
    this.closed = false;
    this.link = new MediaLink({
      local: null,
      onStreams: (streams) => this._show(streams.main || null),
      onStats: (stats) => this._onStats(stats),
      onState: () => this._update(),
      onNotice: (text) => console.warn("wall player:", text),
    });
    this._timer = setInterval(() => this._update(), 500);
    video.muted = true; // a kiosk starts without a user gesture: muted autoplay
    video.autoplay = true;
    video.playsInline = true;
  }

  attach() {
    const conn = this.conn;
    const onEvent = conn.onEvent;
    const onState = conn.onState;
    conn.onEvent = (msg) => {
      onEvent.call(conn, msg);
      if (msg.type === "welcome" && !this.closed) this._start();
    };
    conn.onState = (st) => {
      onState.call(conn, st);
      this.reason = st.reason || "";
      this._update();
    };
    if (conn.welcome && conn.state.state === "online") this._start();
    this._update();
  }

  close() {
    this.closed = true;
    clearInterval(this._timer);
    this.link.close();
    this._update();
  }

  _start() {
    this.frames = 0;
    this.lastFrameAt = 0;
    this.link.start(this.conn);
    this._update();
  }

  _show(stream) {
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    if (stream) this.video.play().catch(() => {});
  }

  _onStats(stats) {
    if (stats.frames_decoded > this.frames) {
      this.frames = stats.frames_decoded;
      this.lastFrameAt = performance.now();
    }
    this._update();
  }

  _compute() {
    if (this.closed) return "stopped";
    const signalling = this.conn.state.state;
    if (signalling === "stopped") return "stopped";
    if (signalling !== "online") return signalling === "offline" ? "offline" : "connecting";
    const pc = this.link.pc;
    if (!pc || pc.connectionState !== "connected") return "connecting";
    if (this.lastFrameAt && performance.now() - this.lastFrameAt < this.stallMs) return "playing";
    return "waiting";
  }

  _update() {
    const status = this._compute();
    const changed = status !== this.status;
    this.status = status;
    this.video.dataset.status = status;
    if (this.overlay) {
      this.overlay.hidden = status === "playing";
      this.overlay.dataset.status = status;
      const line = this.overlay.querySelector("[data-wall-status]");
      if (line) {
        const why = status === "stopped" || status === "offline" ? this.reason : "";
        line.textContent = why ? `${TEXT[status]} (${why})` : TEXT[status];
      }
    }
    if (changed) this.onStatus(status);
  }
}
