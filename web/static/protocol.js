// Huishang signalling client for browser pages (PROTOCOL.md, version 1).
//
// A plain ES module, no build step, no dependencies. Every page (chair console, terminal,
// operator, wall display) talks to the server through it.
//
// API
// ---
//   import { connect, ProtocolError, describeError } from "/static/protocol.js";
//
//   const conn = await connect({
//     token,                      // the site's join token (required)
//     client: "chair-console/1",  // optional: sent in hello as "client"
//     onEvent(msg) {},            // every server message that is not a reply to a request:
//                                 //   "welcome" (again after every reconnect: re-render from
//                                 //   msg.conference), "site", "floor", "hands", "rollcall",
//                                 //   "poll", "layout", "banner", "recording", "presets",
//                                 //   "muted", "slots", "pause", ...
//     onState(st) {},             // st = {state, reason, attempt, retryInMs}
//                                 //   state: "connecting" | "online" | "offline" | "stopped"
//     infoUrl: "/api/info",       // optional: where to discover the signalling URL
//     signallingUrl: undefined,   // optional: skip discovery and use this ws(s):// URL
//   });
//
//   connect() resolves with the Connection once the first `welcome` arrived, and rejects with a
//   ProtocolError if the server refuses the token (4401) or the session is replaced (4409)
//   before that. It keeps retrying transport failures (server down, network drop) on its own.
//
//   conn.welcome                 // the latest welcome: {session, site, ice_servers, conference}
//   conn.state                   // the latest onState value
//   await conn.request(msg)      // adds an "id"; resolves with the `ok` reply (or `answer`),
//                                // rejects with ProtocolError {code, message, reply}.
//                                // Local codes besides the server's: "offline" (not connected,
//                                // or the connection dropped before the reply), "timeout".
//   conn.send(msg)               // fire and forget (no id); false if not connected
//   conn.serverNow()             // the server's clock in epoch seconds (`since` values are on
//                                // it), estimated from ping round trips; local clock until then
//   conn.close()                 // says leave, stops reconnecting; state becomes "stopped"
//
// Reconnection: after a drop the client waits min(maxDelay, base * 2^attempt) with full jitter
// (a random 50-100 % of it), reconnects and says hello again; the server resumes the site's
// session (PROTOCOL.md, Session) and the new welcome carries a fresh snapshot. A ping every
// 15 s detects a dead link that the browser has not noticed (a half-open TCP connection).
// Close code 4401 (invalid token) and 4409 (signed in elsewhere) stop it for good.

export const PROTOCOL_VERSION = 1;
export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_REPLACED = 4409;

const STOP_REASONS = {
  [CLOSE_UNAUTHORIZED]: { code: "unauthorized", message: "令牌无效 invalid token" },
  [CLOSE_REPLACED]: { code: "replaced", message: "已在别处登录 signed in elsewhere" },
};

const CODE_TEXT = {
  bad_request: "请求有误 bad request",
  unauthorized: "令牌无效 invalid token",
  forbidden: "无权限 forbidden",
  not_found: "不存在 not found",
  conflict: "当前状态不允许 not allowed now",
  too_large: "消息过大 too large",
  rate_limited: "操作过于频繁 too many requests",
  internal: "服务器内部错误 server error",
  offline: "未连接服务器 not connected",
  timeout: "服务器无响应 no reply",
  replaced: "已在别处登录 signed in elsewhere",
};

/** A refused request or a refused session: `code` is a PROTOCOL.md error code or a local one. */
export class ProtocolError extends Error {
  constructor(code, message, reply = null) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
    this.reply = reply;
  }
}

/** A short bilingual line for an error: "当前状态不允许 not allowed now: <server's sentence>". */
export function describeError(err) {
  if (err instanceof ProtocolError) {
    const head = CODE_TEXT[err.code] || err.code;
    return err.message ? `${head}: ${err.message}` : head;
  }
  return String(err && err.message ? err.message : err);
}

export async function connect(options) {
  const conn = new Connection(options);
  return conn._start();
}

export class Connection {
  constructor({
    token,
    client = "huishang-page/1",
    onEvent = () => {},
    onState = () => {},
    infoUrl = "/api/info",
    signallingUrl = undefined,
    baseDelayMs = 500,
    maxDelayMs = 15000,
    requestTimeoutMs = 10000,
    pingIntervalMs = 15000,
  }) {
    if (!token) throw new ProtocolError("unauthorized", "没有令牌 no token given");
    this.token = token;
    this.client = client;
    this.onEvent = onEvent;
    this.onState = onState;
    this.infoUrl = infoUrl;
    this.signallingUrl = signallingUrl;
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.requestTimeoutMs = requestTimeoutMs;
    this.pingIntervalMs = pingIntervalMs;
    this.welcome = null;
    this.clockOffsetS = 0; // server clock minus local clock, from the best ping so far
    this._bestRttMs = Infinity;
    this.state = { state: "connecting", reason: "", attempt: 0, retryInMs: 0 };
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._attempt = 0;
    this._retryTimer = null;
    this._pingTimer = null;
    this._stopped = false;
    this._first = null; // {resolve, reject} until the first welcome
    this._onBrowserOnline = () => {
      if (this.state.state === "offline") this._retryNow();
    };
  }

  _start() {
    const promise = new Promise((resolve, reject) => {
      this._first = { resolve, reject };
    });
    globalThis.addEventListener?.("online", this._onBrowserOnline);
    this._open();
    return promise;
  }

  _setState(state, reason = "", retryInMs = 0) {
    this.state = { state, reason, attempt: this._attempt, retryInMs };
    try {
      this.onState(this.state);
    } catch (err) {
      console.error("onState handler failed", err);
    }
  }

  async _discover() {
    if (this.signallingUrl) return this.signallingUrl;
    const response = await fetch(this.infoUrl, { cache: "no-store" });
    if (!response.ok) throw new Error(`${this.infoUrl}: HTTP ${response.status}`);
    const info = await response.json();
    if (info.protocol !== PROTOCOL_VERSION) {
      throw new Error(`server speaks protocol ${info.protocol}, this page ${PROTOCOL_VERSION}`);
    }
    return info.signalling;
  }

  async _open() {
    if (this._stopped) return;
    this._setState("connecting", this._attempt ? "重新连接 reconnecting" : "");
    let url;
    try {
      url = await this._discover();
    } catch (err) {
      this._dropped(`无法访问服务器 server unreachable (${err.message})`);
      return;
    }
    if (this._stopped) return;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      this._dropped(`无法连接 cannot connect (${err.message})`);
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      ws.send(
        JSON.stringify({
          type: "hello",
          protocol: PROTOCOL_VERSION,
          token: this.token,
          client: this.client,
        }),
      );
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn("ignoring a frame that is not JSON", ev.data);
        return;
      }
      if (msg.type === "welcome") {
        this._welcomed(msg);
        return;
      }
      if (msg.re !== undefined && msg.re !== null && this._pending.has(msg.re)) {
        this._settle(msg);
        return;
      }
      if (msg.type === "error") {
        // An error not tied to a request of ours (e.g. the hello was refused): log it;
        // a refused token is followed by close code 4401.
        console.warn("server error", msg.code, msg.message);
        return;
      }
      if (msg.type === "ok") return;
      this._emit(msg);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._stopPing();
      this._failPending("offline", "连接已断开 connection lost");
      const stop = STOP_REASONS[ev.code];
      if (stop) {
        this._stop(stop.code, stop.message);
        return;
      }
      const why = ev.reason ? `${ev.code} ${ev.reason}` : `${ev.code}`;
      this._dropped(`连接已断开 connection lost (${why})`);
    };
    ws.onerror = () => {
      // onclose follows and decides what to do.
    };
  }

  _welcomed(msg) {
    this.welcome = msg;
    this._attempt = 0;
    this._setState("online");
    this._startPing();
    this._bestRttMs = Infinity; // a new path: measure the clock again
    this._ping().catch(() => {});
    this._emit(msg);
    if (this._first) {
      this._first.resolve(this);
      this._first = null;
    }
  }

  _emit(msg) {
    try {
      this.onEvent(msg);
    } catch (err) {
      console.error("onEvent handler failed for", msg.type, err);
    }
  }

  _dropped(reason) {
    if (this._stopped) return;
    const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** this._attempt);
    const delay = Math.round(ceiling * (0.5 + Math.random() * 0.5));
    this._attempt += 1;
    this._setState("offline", reason, delay);
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  _retryNow() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._open();
  }

  _stop(code, message) {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._stopPing();
    globalThis.removeEventListener?.("online", this._onBrowserOnline);
    this._failPending(code, message);
    this._setState("stopped", message);
    if (this._first) {
      this._first.reject(new ProtocolError(code, message));
      this._first = null;
    }
  }

  _startPing() {
    this._stopPing();
    this._pingTimer = setInterval(() => {
      const ws = this._ws;
      this._ping().catch((err) => {
        if (err.code === "timeout" && ws && this._ws === ws) {
          ws.close(4000, "no reply to ping");
          // onclose does the rest; if the browser takes long to notice, force it.
          this._ws = null;
          this._failPending("offline", "连接无响应 connection not responding");
          this._dropped("连接无响应 connection not responding");
        }
      });
    }, this.pingIntervalMs);
  }

  /** A ping that also refines the server-clock offset (the reply's `time`, PROTOCOL addition). */
  async _ping() {
    const sent = Date.now();
    const reply = await this.request({ type: "ping" });
    const received = Date.now();
    const rtt = received - sent;
    if (typeof reply.time === "number" && rtt <= this._bestRttMs) {
      this._bestRttMs = rtt;
      this.clockOffsetS = reply.time - (sent + received) / 2000;
    }
    return reply;
  }

  serverNow() {
    return Date.now() / 1000 + this.clockOffsetS;
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  _settle(msg) {
    const pending = this._pending.get(msg.re);
    this._pending.delete(msg.re);
    clearTimeout(pending.timer);
    if (msg.type === "error") {
      pending.reject(new ProtocolError(msg.code, msg.message, msg));
    } else {
      pending.resolve(msg);
    }
  }

  _failPending(code, message) {
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new ProtocolError(code, message));
      this._pending.delete(id);
    }
  }

  get online() {
    return this.state.state === "online" && this._ws !== null;
  }

  request(msg) {
    if (!this.online) {
      return Promise.reject(new ProtocolError("offline", "未连接服务器 not connected"));
    }
    const id = `r${this._nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this._pending.delete(id)) {
          reject(new ProtocolError("timeout", `服务器无响应 no reply to ${msg.type}`));
        }
      }, this.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      this._ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  send(msg) {
    if (!this.online) return false;
    this._ws.send(JSON.stringify(msg));
    return true;
  }

  close() {
    const ws = this._ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "leave" }));
    }
    this._ws = null;
    this._stop("closed", "已退出 left");
    if (ws) ws.close(1000, "leave");
  }
}
