// Huishang media for browser pages: one RTCPeerConnection to the server, offered the way
// PROTOCOL.md ("Media") says. Used by the terminal page and the chair console; the operator
// page and the wall display reuse it (send: false).
//
// API
// ---
//   import { MediaLink, acquireLocalMedia } from "/static/media.js";
//
//   const local = await acquireLocalMedia();      // {stream, audio, video, missing: [...], why}
//   const media = new MediaLink({
//     local: local.stream,         // MediaStream to publish (null: receive only)
//     extraVideos: 4,              // extra recvonly video transceivers: slots extra1..extra4
//     onStreams(streams) {},       // {main: MediaStream(video+audio), extra1: MediaStream, ...}
//     onState(st) {},              // {pc, ice, gathering, generation}: connection states
//     onStats(s) {},               // once a second: {rtt_ms, in_kbps, out_kbps, frames_decoded,
//                                  //   fps, loss} (main video for frames/fps)
//     onNotice(text, kind) {},     // a line for the user: kind "error" | "info"
//   });
//   media.start(conn);             // on every `welcome` (first join and every rejoin): a new
//                                  // peer connection and a fresh offer for the new session
//   media.pause({video, audio, video_limit}); // the server's `pause` event (see below)
//   media.videoLimit               // the limit in force: {height?, fps?} (positive numbers
//                                  //   only), null: send as captured
//   media.videoEncoding            // what the camera sender's encodings[0] was last set to:
//                                  //   {scaleResolutionDownBy, maxFramerate (null: none)}
//   await media.sendersSettled()   // resolves once no replaceTrack / setParameters of ours is
//                                  //   in flight (tests, troubleshooting)
//   media.setMuted(bool);          // mute self: the microphone track is disabled
//   media.streams                  // the current slot streams (as given to onStreams)
//   media.pc                       // the current RTCPeerConnection (tests read getStats on it)
//   media.marks                    // performance.now() of this session's steps: start, offer
//                                  //   (sent), answer (applied), connected, frame (first main
//                                  //   video frame decoded, seen by the once-a-second stats)
//   await media.negotiate(sdp)     // send one offer SDP; a refusal shows as a notice, null
//   media.lastRefusal              // the error code of the last refused offer, or null
//   media.close()
//
// Offer (PROTOCOL.md, Media): audio then video, each sendrecv when we have that device
// (recvonly when not: the server maps the first receiving section of a kind to `main`), then
// `extraVideos` recvonly video sections (extra1, ...). Non-trickle first: the offer waits for
// ICE gathering to complete, at most `gatherTimeoutMs`; candidates found after that are sent
// as `candidate` messages once the answer is in (trickle, RFC 8838), ended by a null one.
//
// Pause (the server says nobody needs our stream): the sender's track is replaced by null,
// so the browser stops encoding and sending altogether (no bandwidth, no CPU), and put back
// on resume without renegotiating (RTCRtpSender.replaceTrack, W3C WebRTC 5.2). Disabling the
// track instead (track.enabled = false) would keep sending black frames and silence: cheap,
// but not nothing, on the 200 uplinks a conference has. The resumed encoder starts with a
// keyframe, and the relay asks for one (PLI) when it switches a slot to us anyway.
//
// Senders follow the latest wish, one operation at a time per sender: replaceTrack and
// setParameters are asynchronous, and `sender.track` changes only when replaceTrack resolves.
// A wish that changes while an operation runs is taken up when it ends, against the settled
// `sender.track`. A pause and a resume in quick succession (the server sends both within
// milliseconds when several sites rejoin at once) must end sending: comparing the resume
// with a `sender.track` whose replacement by null is still in flight would see "already
// sending", skip it, and leave the camera off for good (the cause of a flaky browser test).
//
// Video limit (the server needs at most this much of our camera: only small wall tiles show
// it; docs/protocol.md, `pause` `video_limit`): each `pause` carries the limit in force
// (absent or null: none; a field that is not a positive number is ignored, the other still
// applies). It is applied to the camera sender's encodings[0] without renegotiating
// (W3C WebRTC, RTCRtpSender.getParameters / setParameters, RTCRtpEncodingParameters
// `scaleResolutionDownBy` and `maxFramerate`): scaleResolutionDownBy = max(1, capture height
// / limit height) with the capture height from the camera track's getSettings(), and
// maxFramerate = the limit's fps; a lifted limit sets scaleResolutionDownBy back to 1 and
// removes maxFramerate. It is checked again after every resume (replaceTrack). A new session
// (`welcome`) starts without a limit, as it starts unpaused: the server's state for a new
// session starts there too and it sends a `pause` as soon as its plan differs (the limit
// included), so the new peer connection gets the limit again from the server, and a limit
// lifted while we were away is not kept. A failed setParameters is a notice, never a throw.
//
// Mute self disables the microphone track (silence is sent while not paused), independent of
// the server's pause, which can come and go while muted.
//
// Recovery: each `welcome` (protocol.js reconnects by itself after a network drop or a server
// restart) starts a new peer connection for the new session. If the peer connection fails
// while signalling is still up, the signalling socket is dropped so that protocol.js rejoins
// and the whole thing starts over from a fresh `welcome`. So does a session's first offer
// that the server could not take up for a passing reason (`timeout`, `rate_limited`,
// `internal`), after a back-off (1 s, 2 s, 4 s ... 15 s, jittered, reset once media
// connects): offering again on the same session would not do, as the server may hold a peer
// for the lost offer. A refusal of the offer itself (`bad_request`, `conflict`, ...) stays a
// notice; `offline` needs nothing (the socket is gone, a new `welcome` restarts media).

const GATHER_TIMEOUT_MS = 2000;
const FAILED_GRACE_MS = 4000;
const STATS_INTERVAL_MS = 1000;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 15000;
/** Refusals of an offer that say nothing about the offer: worth a fresh session. */
const PASSING_REFUSALS = new Set(["timeout", "rate_limited", "internal"]);

/**
 * The camera and microphone, as much of them as this browser will give: both, else each
 * alone, else nothing (receive only). Never throws.
 */
export async function acquireLocalMedia({
  audio = true,
  video = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } },
} = {}) {
  const out = { stream: null, audio: null, video: null, missing: [], why: "" };
  const devices = navigator.mediaDevices;
  if (!devices || !devices.getUserMedia) {
    out.missing = ["camera", "microphone"];
    out.why = "此页面不是安全连接（需要 HTTPS）· camera needs a secure page (HTTPS)";
    return out;
  }
  const attempts = [];
  if (audio && video) attempts.push({ audio, video });
  if (video) attempts.push({ video });
  if (audio) attempts.push({ audio });
  const tracks = [];
  let lastError = null;
  for (const constraints of attempts) {
    const wantAudio = !!constraints.audio && !tracks.some((t) => t.kind === "audio");
    const wantVideo = !!constraints.video && !tracks.some((t) => t.kind === "video");
    if (!wantAudio && !wantVideo) continue;
    try {
      const stream = await devices.getUserMedia({
        audio: wantAudio ? constraints.audio : false,
        video: wantVideo ? constraints.video : false,
      });
      tracks.push(...stream.getTracks());
    } catch (err) {
      lastError = err;
    }
  }
  out.audio = tracks.find((t) => t.kind === "audio") || null;
  out.video = tracks.find((t) => t.kind === "video") || null;
  if (audio && !out.audio) out.missing.push("microphone");
  if (video && !out.video) out.missing.push("camera");
  if (tracks.length) out.stream = new MediaStream(tracks);
  if (out.missing.length && lastError) {
    out.why =
      lastError.name === "NotAllowedError"
        ? "未获授权使用摄像头/麦克风 · permission denied"
        : lastError.name === "NotFoundError"
          ? "未检测到设备 · no device found"
          : `${lastError.name || "Error"}: ${lastError.message || ""}`;
  }
  return out;
}

/** A short bilingual description of what is missing, or "" when nothing is. */
export function describeMissing(local) {
  if (!local.missing.length) return "";
  const names = { camera: "摄像头 camera", microphone: "麦克风 microphone" };
  const what = local.missing.map((m) => names[m] || m).join("、");
  const mode = local.stream ? "" : "，仅接收 · receive only";
  return `无法使用${what}${mode}${local.why ? ` (${local.why})` : ""}`;
}

export class MediaLink {
  constructor({
    local = null,
    extraVideos = 0,
    onStreams = () => {},
    onState = () => {},
    onStats = () => {},
    onNotice = () => {},
    gatherTimeoutMs = GATHER_TIMEOUT_MS,
  } = {}) {
    this.local = local;
    this.extraVideos = extraVideos;
    this.onStreams = onStreams;
    this.onState = onState;
    this.onStats = onStats;
    this.onNotice = onNotice;
    this.gatherTimeoutMs = gatherTimeoutMs;
    this.conn = null;
    this.pc = null;
    this.slots = {}; // mid -> slot name, from the answer
    this.streams = {};
    this.senders = { audio: null, video: null };
    this.paused = { audio: false, video: false };
    this.videoLimit = null; // {height?, fps?} from the latest pause, null: send as captured
    this.videoEncoding = null; // what encodings[0] of the camera sender was last set to
    this.muted = false;
    this._sync = { audio: null, video: null }; // per sender: {sender, running, again}
    this.generation = 0;
    this.startedAt = 0;
    this.firstFrameMs = null; // ms from start() to the first decoded main video frame
    this.marks = {};
    this._statsTimer = null;
    this._failTimer = null;
    this._retryTimer = null;
    this._retries = 0; // sessions in a row whose first offer was refused for a passing reason
    this.lastRefusal = null; // the code of the last refused offer, or null
    this._last = null; // previous stats sample for rates
  }

  /** A new peer connection and offer for the session `conn.welcome` describes. */
  async start(conn) {
    this.conn = conn;
    const generation = ++this.generation;
    this._teardown();
    this.paused = { audio: false, video: false }; // a new session starts unpaused,
    this.videoLimit = null; // and unlimited (see the header)
    this.videoEncoding = null;
    this.startedAt = performance.now();
    this.firstFrameMs = null;
    this.marks = { start: this.startedAt };
    const marks = this.marks;
    const iceServers = (conn.welcome && conn.welcome.ice_servers) || [];
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    const localStream = this.local || new MediaStream();
    for (const kind of ["audio", "video"]) {
      const track = this.local ? this.local.getTracks().find((t) => t.kind === kind) : null;
      const transceiver = track
        ? pc.addTransceiver(track, { direction: "sendrecv", streams: [localStream] })
        : pc.addTransceiver(kind, { direction: "recvonly" });
      this.senders[kind] = track ? transceiver.sender : null;
      this._sync[kind] = track ? { sender: transceiver.sender, running: null, again: false } : null;
    }
    for (let i = 0; i < this.extraVideos; i++) pc.addTransceiver("video", { direction: "recvonly" });
    this._applyMute();
    const late = []; // candidates found after the offer went out
    let offered = false;
    let answered = false;
    pc.addEventListener("icecandidate", (ev) => {
      if (!offered || generation !== this.generation) return;
      const candidate = ev.candidate ? ev.candidate.toJSON() : null;
      if (answered) this._sendCandidate(candidate);
      else late.push(candidate);
    });
    const report = () => {
      if (generation !== this.generation) return;
      if (pc.connectionState === "connected" && !marks.connected) {
        marks.connected = performance.now();
        this._retries = 0;
      }
      this.onState({
        pc: pc.connectionState,
        ice: pc.iceConnectionState,
        gathering: pc.iceGatheringState,
        generation,
      });
      this._watchFailure(pc, generation);
    };
    pc.addEventListener("connectionstatechange", report);
    pc.addEventListener("iceconnectionstatechange", report);
    pc.addEventListener("icegatheringstatechange", report);
    report();
    try {
      await pc.setLocalDescription(await pc.createOffer());
      marks.described = performance.now();
      await this._gathered(pc);
      if (generation !== this.generation) return;
      offered = true;
      marks.offer = performance.now();
      const answer = await this.negotiate(pc.localDescription.sdp, generation);
      if (generation !== this.generation) return;
      if (!answer) {
        this.onState({ pc: "refused", ice: pc.iceConnectionState, gathering: pc.iceGatheringState, generation });
        if (PASSING_REFUSALS.has(this.lastRefusal)) this._retryLater(generation);
        return;
      }
      answered = true;
      marks.answer = performance.now();
      for (const candidate of late.splice(0)) this._sendCandidate(candidate);
    } catch (err) {
      if (generation === this.generation) {
        this.onNotice(`媒体协商失败 · media setup failed: ${err.message || err}`, "error");
      }
      return;
    }
    this._statsTimer = setInterval(() => this._sampleStats(pc, generation), STATS_INTERVAL_MS);
  }

  /**
   * Send one offer and apply the answer. A refused offer (`bad_request` with the server's
   * reason, `conflict`, ...) is shown as a notice and yields null.
   */
  async negotiate(sdp, generation = this.generation) {
    let reply;
    try {
      reply = await this.conn.request({ type: "offer", sdp });
      this.lastRefusal = null;
    } catch (err) {
      if (generation === this.generation) {
        this.lastRefusal = err.code || "error";
        const reason = err.code ? `${err.code}: ${err.message}` : String(err.message || err);
        this.onNotice(`服务器拒绝了媒体请求 · offer refused (${reason})`, "error");
      }
      return null;
    }
    if (generation !== this.generation || !this.pc) return null;
    this.slots = { ...(reply.slots || {}) };
    await this.pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    this._collectStreams();
    return reply;
  }

  /** A server `candidate` message (the server may trickle too). */
  addRemoteCandidate(candidate) {
    if (this.pc) this.pc.addIceCandidate(candidate || null).catch(() => {});
  }

  /** The server's `pause`: stop or resume sending each kind, and the video limit in force
   * (see the header). Never throws. */
  pause({ video, audio, video_limit: limit } = {}) {
    this.paused = { video: !!video, audio: !!audio };
    this.videoLimit = validLimit(limit);
    this._applySenders();
  }

  /** Resolves once no sender operation of ours is in flight. */
  async sendersSettled() {
    for (;;) {
      const running = Object.values(this._sync).map((s) => s && s.running).filter(Boolean);
      if (!running.length) return;
      await Promise.all(running);
    }
  }

  setMuted(muted) {
    this.muted = !!muted;
    this._applyMute();
  }

  close() {
    this.generation += 1;
    this._teardown();
  }

  // -- internals ----------------------------------------------------------------------------

  _applyMute() {
    const mic = this.local ? this.local.getAudioTracks()[0] : null;
    if (mic) mic.enabled = !this.muted;
  }

  _applySenders() {
    if (!this.local) return;
    for (const kind of ["audio", "video"]) this._syncSender(kind);
  }

  /** Bring one sender in line with the wish; one run at a time per sender, and a wish that
   * changes meanwhile is taken up when the run ends (see the header). */
  _syncSender(kind) {
    const sync = this._sync[kind];
    if (!sync) return;
    if (sync.running) {
      sync.again = true;
      return;
    }
    sync.again = false;
    sync.running = (async () => {
      try {
        do {
          sync.again = false;
          if (this._sync[kind] !== sync) return; // a new peer connection took over
          await this._syncOnce(kind, sync);
        } while (sync.again);
      } finally {
        sync.running = null;
      }
    })();
  }

  async _syncOnce(kind, sync) {
    const sender = sync.sender;
    const track = this.local.getTracks().find((t) => t.kind === kind) || null;
    if (!track) return;
    const wanted = this.paused[kind] ? null : track;
    if (sender.track !== wanted) {
      try {
        await sender.replaceTrack(wanted);
      } catch (err) {
        // a sender of a closed peer connection (a rejoin took over) has nothing to say
        if (this._sync[kind] === sync) {
          this.onNotice(`无法切换发送 · cannot ${wanted ? "resume" : "pause"} ${kind}: ${err}`, "error");
        }
        return;
      }
    }
    if (kind === "video" && this._sync[kind] === sync) await this._applyVideoLimit(sync, track);
  }

  /** encodings[0] of the camera sender as the video limit says (see the header). */
  async _applyVideoLimit(sync, track) {
    const sender = sync.sender;
    const limit = this.videoLimit;
    const captured = (track.getSettings && track.getSettings().height) || 0;
    const scale = limit && limit.height && captured > 0 ? Math.max(1, captured / limit.height) : 1;
    const fps = limit && limit.fps ? limit.fps : null;
    let params;
    try {
      params = sender.getParameters();
    } catch (err) {
      this.onNotice(`无法限制视频 · cannot limit video: ${err}`, "error");
      return;
    }
    const encoding = params.encodings && params.encodings[0];
    if (!encoding) return; // nothing to set before the sender has an encoding
    const now = { scale: encoding.scaleResolutionDownBy || 1, fps: encoding.maxFramerate ?? null };
    if (now.scale === scale && now.fps === fps) {
      this.videoEncoding = { scaleResolutionDownBy: scale, maxFramerate: fps };
      return;
    }
    encoding.scaleResolutionDownBy = scale;
    if (fps === null) delete encoding.maxFramerate;
    else encoding.maxFramerate = fps;
    try {
      await sender.setParameters(params);
      this.videoEncoding = { scaleResolutionDownBy: scale, maxFramerate: fps };
    } catch (err) {
      if (this._sync.video === sync) {
        this.onNotice(`无法限制视频 · cannot limit video: ${err.name || ""} ${err.message || err}`, "error");
      }
    }
  }

  _gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const check = () => {
        if (pc.iceGatheringState === "complete") done();
      };
      const timer = setTimeout(done, this.gatherTimeoutMs);
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  _sendCandidate(candidate) {
    if (this.conn) this.conn.send({ type: "candidate", candidate });
  }

  _collectStreams() {
    const streams = {};
    for (const transceiver of this.pc.getTransceivers()) {
      const name = this.slots[transceiver.mid];
      if (!name) continue;
      if (!streams[name]) streams[name] = new MediaStream();
      streams[name].addTrack(transceiver.receiver.track);
    }
    this.streams = streams;
    this.onStreams(streams);
  }

  _watchFailure(pc, generation) {
    const bad = pc.connectionState === "failed" || pc.connectionState === "disconnected";
    if (!bad) {
      clearTimeout(this._failTimer);
      this._failTimer = null;
      return;
    }
    if (this._failTimer) return;
    this._failTimer = setTimeout(() => {
      this._failTimer = null;
      if (generation !== this.generation || this.pc !== pc) return;
      if (pc.connectionState !== "failed" && pc.connectionState !== "disconnected") return;
      this.onNotice("媒体连接中断，正在重新接入 · media lost, rejoining", "error");
      this._rejoin();
    }, pc.connectionState === "failed" ? 500 : FAILED_GRACE_MS);
  }

  /** A fresh session after a back-off, unless something else started one meanwhile. */
  _retryLater(generation) {
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** this._retries);
    this._retries += 1;
    const delay = Math.round(ceiling * (0.5 + Math.random() * 0.5));
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (generation === this.generation) this._rejoin();
    }, delay);
  }

  /** Start over from a fresh welcome: a dead media path with live signalling. */
  _rejoin() {
    const conn = this.conn;
    if (!conn) return;
    if (typeof conn.reconnect === "function") {
      conn.reconnect();
    } else if (conn._ws) {
      conn._ws.close(4000, "media restart"); // protocol.js reconnects and says hello again
    }
  }

  async _sampleStats(pc, generation) {
    if (generation !== this.generation || pc.connectionState === "closed") return;
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return;
    }
    const mainVideoMid = Object.keys(this.slots).find((mid) => {
      const t = pc.getTransceivers().find((x) => x.mid === mid);
      return this.slots[mid] === "main" && t && t.receiver.track.kind === "video";
    });
    let bytesIn = 0;
    let bytesOut = 0;
    let frames = 0;
    let lost = 0;
    let received = 0;
    let rtt = null;
    report.forEach((s) => {
      if (s.type === "inbound-rtp") {
        bytesIn += s.bytesReceived || 0;
        lost += Math.max(0, s.packetsLost || 0);
        received += s.packetsReceived || 0;
        if (s.kind === "video" && s.mid === mainVideoMid) frames = s.framesDecoded || 0;
      } else if (s.type === "outbound-rtp") {
        bytesOut += s.bytesSent || 0;
      } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
        if (typeof s.currentRoundTripTime === "number") rtt = s.currentRoundTripTime * 1000;
      }
    });
    const now = performance.now();
    const last = this._last && this._last.generation === generation ? this._last : null;
    const seconds = last ? (now - last.at) / 1000 : 0;
    const rate = (a, b) => (seconds > 0 ? Math.max(0, ((a - b) * 8) / 1000 / seconds) : 0);
    const stats = {
      rtt_ms: rtt,
      in_kbps: last ? rate(bytesIn, last.bytesIn) : 0,
      out_kbps: last ? rate(bytesOut, last.bytesOut) : 0,
      frames_decoded: frames,
      fps: last && seconds > 0 ? Math.max(0, (frames - last.frames) / seconds) : 0,
      loss: received + lost > 0 ? lost / (received + lost) : 0,
    };
    if (frames > 0 && this.firstFrameMs === null) {
      this.firstFrameMs = now - this.startedAt;
      this.marks.frame = now;
    }
    this._last = { generation, at: now, bytesIn, bytesOut, frames };
    this.onStats(stats);
  }

  _teardown() {
    clearInterval(this._statsTimer);
    this._statsTimer = null;
    clearTimeout(this._failTimer);
    this._failTimer = null;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._last = null;
    if (this.pc) {
      try {
        this.pc.close();
      } catch {
        // already closed
      }
    }
    this.pc = null;
    this.slots = {};
    this.senders = { audio: null, video: null };
    this._sync = { audio: null, video: null };
  }
}

/** The valid part of a `pause`'s `video_limit`: positive numbers only, else null. */
function validLimit(limit) {
  if (!limit || typeof limit !== "object") return null;
  const out = {};
  for (const key of ["height", "fps"]) {
    const value = limit[key];
    if (typeof value === "number" && Number.isFinite(value) && value > 0) out[key] = value;
  }
  return Object.keys(out).length ? out : null;
}
