// Small helpers shared by Huishang's pages: DOM building, time formatting, notices, and the
// grouping of the site directory (district centre and control sites first, then each street
// with its communities under it).
//
//   import { h, formatClock, formatDuration, Notices, groupSites } from "/static/ui.js";
//
//   h("button", {class: "btn", dataset: {action: "floor"}}, "点名发言")  // -> HTMLElement
//   formatClock(epochSeconds)             // "09:41:05" (local time, 24 h)
//   formatDuration(seconds)               // "12 分钟 min", "2 小时 h 5 分", "刚刚 just now"
//   const notices = new Notices(container);  notices.show(text, {kind: "error"|"info", code})
//   groupSites(sites)                     // [{key, title, head: site|null, sites: [...]}, ...]

/** Create an element: h(tag, {class, dataset, text, hidden, on: {click}, ...attrs}, ...children). */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key === "on") {
      for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    } else if (key === "hidden") node.hidden = true;
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A bilingual label: Chinese first, English smaller after it. */
export function bi(zh, en, tag = "span") {
  return h(tag, { class: "bi" }, h("span", { class: "zh" }, zh), " ", h("span", { class: "en" }, en));
}

const pad = (n) => String(n).padStart(2, "0");

/**
 * Show a protocol.js connection state (`onState`'s argument) in the page header's status
 * element *el*, and on `<body data-conn>` for styles and tests.
 */
export function showConnection(el, st) {
  document.body.dataset.conn = st.state;
  el.dataset.state = st.state;
  el.replaceChildren();
  if (st.state === "online") el.append(bi("已连接", "Online"));
  else if (st.state === "connecting") el.append(bi("连接中", "Connecting…"));
  else if (st.state === "offline") {
    const secs = Math.max(1, Math.round(st.retryInMs / 1000));
    el.append(bi("已断开", `Offline · 重连 retry ${secs} s`));
  } else el.append(bi("已停止", "Stopped"));
}

/**
 * Cover the page with why it stopped (the `#fatal` panel the chair console and the operator
 * page share): *askToken* shows the token form instead of the reload button.
 */
export function showFatal(text, detail, askToken) {
  const $ = (id) => document.getElementById(id);
  $("fatal").hidden = false;
  $("fatal-text").textContent = text;
  $("fatal-detail").textContent = detail || "";
  $("token-form").hidden = !askToken;
  $("fatal-reload").hidden = askToken;
}

export function formatClock(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "—";
  const d = new Date(epochSeconds * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 60) return "刚刚 just now";
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} 分钟 min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} 小时 ${minutes % 60} 分 (${hours} h ${minutes % 60} min)`;
  return `${Math.floor(hours / 24)} 天 days`;
}

export const LEVEL_NAMES = {
  district: "区 district",
  street: "街道 street",
  community: "社区 community",
  control: "控制 control",
  uplink: "上级 upper level",
  camera: "监控 camera",
};

export const ROLE_NAMES = {
  chair: "主会场 chair",
  terminal: "终端 terminal",
  operator: "操作台 operator",
  wall: "大屏 wall",
  observer: "监看 observer",
  uplink: "级联 cascade",
};

/**
 * Group the directory for display, keeping the configured order inside each group:
 * first the command centre (the district, control desks, uplinks, cameras: anything that is
 * neither a street nor a community), then each street followed by its communities; communities
 * whose street is not listed end up in a last "other" group.
 */
export function groupSites(sites) {
  const centre = { key: "centre", title: "区指挥中心 Command centre", head: null, sites: [] };
  const streets = new Map();
  for (const site of sites) {
    if (site.level === "street") {
      streets.set(site.id, { key: site.id, title: site.name, head: site, sites: [site] });
    }
  }
  const other = { key: "other", title: "其他 Other", head: null, sites: [] };
  for (const site of sites) {
    if (site.level === "street") continue;
    if (site.level === "community") {
      const street = streets.get(site.parent);
      (street ? street.sites : other.sites).push(site);
    } else {
      centre.sites.push(site);
    }
  }
  const groups = [centre, ...streets.values()];
  if (other.sites.length) groups.push(other);
  return groups.filter((g) => g.sites.length > 0);
}

/** Non-blocking notices (toasts): errors stay 12 s, infos 5 s; each has a close button. */
export class Notices {
  constructor(container) {
    this.container = container;
  }

  show(text, { kind = "info", code = "", timeoutMs } = {}) {
    const close = h("button", { class: "notice-close", "aria-label": "关闭 close", text: "×" });
    const item = h(
      "div",
      {
        class: `notice notice-${kind}`,
        role: kind === "error" ? "alert" : "status",
        dataset: { testid: "notice", kind, code },
      },
      h("span", { class: "notice-text", text }),
      close,
    );
    const remove = () => item.remove();
    close.addEventListener("click", remove);
    this.container.prepend(item);
    while (this.container.children.length > 5) this.container.lastElementChild.remove();
    setTimeout(remove, timeoutMs ?? (kind === "error" ? 12000 : 5000));
    return item;
  }
}
