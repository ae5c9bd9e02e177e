// Operations status page (运行状态): which sites are online, since when, link quality.
//
// No token and no WebSocket: it polls GET /api/status every few seconds (`?every=N` seconds,
// at least 1) so it keeps working on a plain monitor PC. Offline sites that had joined
// ("dropped", 掉线) stand out in red; sites that never joined are grey. Durations use the
// server's clock (`time` in the reply), so a PC with a wrong clock still shows them right.
//
// Rows: `tr[data-site="<id>"]` with `data-state` = online | dropped | never.
//
// Cameras (视频图像接入): GET /api/cameras, polled with the sites. One row per camera,
// `tr[data-camera="<id>"]` with `data-state` = idle | connecting | live | retrying and the
// reason it is not live (`td.reason`): "connection refused", "timeout", "no video stream",
// "not shown, not pulled"... The section stays hidden on a server without cameras.

import { formatClock, formatDuration, groupSites, h, LEVEL_NAMES } from "/static/ui.js";

const $ = (id) => document.getElementById(id);
const RTT_WARN_MS = 150;
const RTT_BAD_MS = 400;
const LOSS_WARN = 0.02;
const LOSS_BAD = 0.08;

const every = Math.max(1, Number(new URLSearchParams(location.search).get("every")) || 3);
const view = { rows: new Map(), groups: [], key: "", skew: 0, lastOk: 0, sites: [] };
const cameraView = { rows: new Map(), key: "" };

const CAMERA_STATES = {
  idle: "未调用 idle",
  connecting: "连接中 connecting",
  live: "正常 live",
  retrying: "重连中 retrying",
};
const CAMERA_REASONS = {
  "not shown, not pulled": "未显示，未拉流 not shown, not pulled",
  "connection refused": "连接被拒绝 connection refused",
  timeout: "超时 timeout",
  "no video stream": "无视频流 no video stream",
  "stream ended": "视频流中断 stream ended",
};

function linkClass(value, warn, bad) {
  if (value === null || value === undefined) return "";
  if (value >= bad) return "q-bad";
  if (value >= warn) return "q-warn";
  return "";
}

function siteState(site) {
  if (site.online) return "online";
  return site.since === null || site.since === undefined ? "never" : "dropped";
}

function poorLink(site) {
  const link = site.link;
  return !!(site.online && link && (link.rtt_ms >= RTT_BAD_MS || link.loss >= LOSS_BAD));
}

function build(sites) {
  const body = $("rows");
  body.replaceChildren();
  view.rows.clear();
  view.groups = [];
  for (const group of groupSites(sites)) {
    const groupCount = h("span", { class: "en" });
    const groupRow = h(
      "tr",
      { class: "group-row", dataset: { group: group.key } },
      h("td", { colspan: 7 }, group.title, " ", groupCount),
    );
    body.append(groupRow);
    view.groups.push({ row: groupRow, ids: group.sites.map((s) => s.id), count: groupCount });
    for (const site of group.sites) {
      const cells = {
        name: h(
          "td",
          { class: "name" },
          h("strong", { text: site.name }),
          " ",
          h("span", { class: "en", text: site.id }),
        ),
        level: h("td", { text: LEVEL_NAMES[site.level] || site.level }),
        state: h("td", { class: "state" }, h("span", { class: "pill" })),
        since: h("td", { class: "since" }),
        rtt: h("td", { class: "rtt" }),
        loss: h("td", { class: "loss" }),
        kbps: h("td", { class: "kbps" }),
      };
      const attrs = { dataset: { site: site.id, testid: `status-${site.id}` } };
      const row = h("tr", attrs, ...Object.values(cells));
      view.rows.set(site.id, { row, cells });
      body.append(row);
    }
  }
}

function set(node, text, cls) {
  if (node.textContent !== text) node.textContent = text;
  if (cls !== undefined && node.className !== cls) node.className = cls;
}

function update(reply) {
  const sites = reply.sites;
  const key = sites.map((s) => s.id).join(",");
  if (key !== view.key) {
    view.key = key;
    build(sites);
  }
  view.sites = sites;
  const now = (reply.time ?? Date.now() / 1000);
  view.skew = now - Date.now() / 1000;
  const title = reply.conference && reply.conference.title;
  set($("title"), title ? `运行状态 · ${title}` : "运行状态 Operations status");
  document.title = `${title || "运行状态"} · Status — 会商 Huishang`;

  let dropped = 0;
  let never = 0;
  let poor = 0;
  for (const site of sites) {
    const entry = view.rows.get(site.id);
    const st = siteState(site);
    if (st === "dropped") dropped += 1;
    if (st === "never") never += 1;
    if (poorLink(site)) poor += 1;
    const { row, cells } = entry;
    row.dataset.state = st;
    row.className = { online: "online", dropped: "offline alarm", never: "offline never" }[st];
    const pill = cells.state.firstChild;
    set(pill, { online: "在线 online", dropped: "掉线 offline", never: "未上线 not joined" }[st]);
    if (site.since === null || site.since === undefined) set(cells.since, "—");
    else set(cells.since, `${formatClock(site.since)} 起 · ${formatDuration(now - site.since)}`);
    const link = site.online ? site.link : null;
    const rttClass = link ? linkClass(link.rtt_ms, RTT_WARN_MS, RTT_BAD_MS) : "";
    const lossClass = link ? linkClass(link.loss, LOSS_WARN, LOSS_BAD) : "";
    set(cells.rtt, link ? `${Math.round(link.rtt_ms)} ms` : "—", `rtt ${rttClass}`.trim());
    set(cells.loss, link ? `${(link.loss * 100).toFixed(1)} %` : "—", `loss ${lossClass}`.trim());
    set(cells.kbps, link ? `${Math.round(link.kbps)} kbps` : "—");
  }
  renderAlarms(sites, now);
  const online = sites.filter((s) => s.online).length;
  set($("n-online"), String(online));
  set($("n-dropped"), String(dropped));
  set($("n-never"), String(never));
  set($("n-link"), String(poor));
  set($("n-total"), String(sites.length));
  $("card-dropped").classList.toggle("zero", dropped === 0);
  $("card-link").classList.toggle("zero", poor === 0);
  for (const group of view.groups) {
    const n = group.ids.filter((id) => view.rows.get(id).row.dataset.state === "online").length;
    set(group.count, `在线 ${n}/${group.ids.length}`);
  }
  applyFilter();
}

function renderAlarms(sites, now) {
  const dropped = sites
    .filter((s) => siteState(s) === "dropped")
    .sort((a, b) => b.since - a.since);
  $("alarms").hidden = dropped.length === 0;
  const key = dropped.map((s) => `${s.id}@${s.since}`).join(",");
  const list = $("alarm-list");
  if (list.dataset.key !== key) {
    list.dataset.key = key;
    list.replaceChildren(
      ...dropped.map((s) =>
        h(
          "li",
          { dataset: { site: s.id } },
          h("strong", { text: s.name }),
          ` ${formatClock(s.since)} 掉线 dropped`,
        ),
      ),
    );
  }
  for (const item of list.children) {
    const site = dropped.find((s) => s.id === item.dataset.site);
    item.title = site ? formatDuration(now - site.since) : "";
  }
}

function applyFilter() {
  const show = $("show").value;
  const text = $("filter").value.trim().toLowerCase();
  for (const group of view.groups) {
    let visible = 0;
    for (const id of group.ids) {
      const { row } = view.rows.get(id);
      const st = row.dataset.state;
      const stateOk =
        show === "all" ||
        (show === "online" && st === "online") ||
        (show === "offline" && st !== "online") ||
        (show === "dropped" && st === "dropped");
      const name = row.querySelector(".name").textContent.toLowerCase();
      const match = stateOk && (!text || name.includes(text));
      row.hidden = !match;
      if (match) visible += 1;
    }
    group.row.hidden = visible === 0;
  }
}

function cameraReason(camera) {
  const reason = camera.reason || "";
  if (!reason) return "—";
  let text = CAMERA_REASONS[reason];
  if (!text && reason.startsWith("not found")) text = `找不到视频流 ${reason}`;
  if (!text) text = reason;
  return camera.state === "connecting" ? `上次 last: ${text}` : text;
}

function buildCameras(cameras) {
  const body = $("camera-rows");
  body.replaceChildren();
  cameraView.rows.clear();
  for (const camera of cameras) {
    const cells = {
      name: h(
        "td",
        { class: "name" },
        h("strong", { text: camera.name }),
        " ",
        h("span", { class: "en", text: `${camera.site} · ${camera.transport} · ${camera.url}` }),
      ),
      state: h("td", { class: "state" }, h("span", { class: "pill" })),
      reason: h("td", { class: "reason" }),
      since: h("td", { class: "since" }),
      attempts: h("td", { class: "attempts" }),
      fps: h("td", { class: "fps" }),
    };
    const row = h(
      "tr",
      { dataset: { camera: camera.site, testid: `camera-${camera.site}` } },
      ...Object.values(cells),
    );
    cameraView.rows.set(camera.site, { row, cells });
    body.append(row);
  }
}

function updateCameras(reply) {
  const cameras = reply.cameras || [];
  $("cameras").hidden = cameras.length === 0;
  const key = cameras.map((c) => c.site).join(",");
  if (key !== cameraView.key) {
    cameraView.key = key;
    buildCameras(cameras);
  }
  const now = reply.time ?? Date.now() / 1000;
  let live = 0;
  let failing = 0;
  for (const camera of cameras) {
    const { row, cells } = cameraView.rows.get(camera.site);
    row.dataset.state = camera.state;
    if (camera.state === "live") live += 1;
    if (camera.state === "retrying" || (camera.state === "connecting" && camera.reason)) {
      failing += 1;
    }
    set(cells.state.firstChild, CAMERA_STATES[camera.state] || camera.state);
    set(cells.reason, camera.state === "live" ? "—" : cameraReason(camera));
    set(cells.since, `${formatClock(camera.since)} 起 · ${formatDuration(now - camera.since)}`);
    set(cells.attempts, camera.attempts ? String(camera.attempts) : "—");
    const size = camera.width ? ` · ${camera.width}×${camera.height}` : "";
    set(cells.fps, camera.state === "live" ? `${camera.fps.toFixed(1)} fps${size}` : "—");
  }
  set($("camera-summary"), `正常 live ${live} · 重连中 failing ${failing} · 共 ${cameras.length}`);
}

// The cascade uplink (级联): GET /api/uplink; shown only where [uplink] is configured.
const UPLINK_STATES = {
  up: "已连接 up",
  connecting: "连接中 connecting",
  waiting: "重连中 retrying",
  closed: "已关闭 closed",
};

function updateUplink(reply) {
  $("uplink").hidden = !reply.configured;
  if (!reply.configured) return;
  const section = $("uplink");
  section.dataset.state = reply.state;
  set($("uplink-state"), UPLINK_STATES[reply.state] || reply.state);
  const upper = reply.upper_site ? `${reply.upper_site.name || reply.upper_site.id}` : reply.url;
  const floor = reply.have_floor ? " · 本级发言中 we have the floor" : "";
  set($("uplink-upper"), `上级 ${upper}${floor}`);
  const parts = [];
  if (reply.state !== "up" && reply.last_error) parts.push(`last error: ${reply.last_error}`);
  if (reply.retry_in_s != null) parts.push(`retry in ${reply.retry_in_s} s`);
  if (reply.failures) parts.push(`${reply.failures} failures`);
  parts.push(`${reply.connects} connects`);
  set($("uplink-detail"), parts.join(" · "));
}

async function refreshUplink() {
  try {
    const response = await fetch("/api/uplink", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    updateUplink(await response.json());
  } catch (err) {
    // the sites' refresh says when the server cannot be reached
  }
}

async function refreshCameras() {
  try {
    const response = await fetch("/api/cameras", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    updateCameras(await response.json());
  } catch (err) {
    // the sites' refresh says when the server cannot be reached
    if (cameraView.key === "") $("cameras").hidden = true;
  }
}

function showUpdated(ok, detail = "") {
  const el = $("updated");
  el.dataset.stale = String(!ok);
  if (ok) {
    view.lastOk = Date.now();
    set(el, `更新于 updated ${formatClock(Date.now() / 1000 + view.skew)}`);
  } else {
    const at = view.lastOk ? formatClock(view.lastOk / 1000 + view.skew) : "—";
    set(el, `无法获取状态 cannot reach the server (${detail}) · 最后更新 last ${at}`);
  }
}

async function refresh() {
  const cameras = refreshCameras();
  const uplink = refreshUplink();
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    update(await response.json());
    showUpdated(true);
  } catch (err) {
    showUpdated(false, err.message);
  } finally {
    await cameras;
    await uplink;
    setTimeout(refresh, every * 1000);
  }
}

$("every").textContent = String(every);
$("show").addEventListener("change", applyFilter);
$("filter").addEventListener("input", applyFilter);
refresh();
