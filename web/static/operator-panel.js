// The wall operator page's tile panel: the selected tile, its source, and its polling editor
// (轮询: a list of sites the tile cycles through, PROTOCOL.md "poll").
//
//   const panel = new TilePanel(state, { siteName, isBusy });
//   panel.fillSites()              // the "add a site" menu, from state.sites
//   panel.render()                 // after any change to state.shown, state.polls, state.selected
//   panel.add(ids) / panel.remove(id) / panel.clear()   // edit the draft list
//   panel.streets({onlineOnly})    // the street sites' ids, for "all streets" buttons
//
// The draft list (state.pollDraft) belongs to one tile (state.pollDraftTile): selecting another
// tile starts a new draft from that tile's running poll, if any.

import { bi, groupSites, h } from "/static/ui.js";
import { displayable } from "/static/operator-roster.js";

const $ = (id) => document.getElementById(id);

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export class TilePanel {
  /** `state` is the page's state object (read, and its pollDraft fields written);
   *  `siteName(id)` names a site; `isBusy(button)` says whether a request is on its way. */
  constructor(state, { siteName, isBusy }) {
    this.state = state;
    this.siteName = siteName;
    this.isBusy = isBusy;
  }

  fillSites() {
    const select = $("poll-add");
    select.replaceChildren(h("option", { value: "", text: "选择站点… choose a site" }));
    const sites = [...this.state.sites.values()].filter(displayable);
    for (const group of groupSites(sites)) {
      const optgroup = h("optgroup", { label: group.title });
      for (const site of group.sites) {
        const indent = site.level === "community" ? "\u3000" : "";
        optgroup.append(h("option", { value: site.id, text: `${indent}${site.name}` }));
      }
      select.append(optgroup);
    }
  }

  render() {
    const state = this.state;
    const siteName = this.siteName;
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
    this.renderList(poll);
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
    start.disabled = this.isBusy(start) || state.pollDraft.length === 0;
    start.replaceChildren(poll ? bi("更新轮询", "Restart") : bi("开始轮询", "Start"));
  }

  renderList(poll) {
    const state = this.state;
    const siteName = this.siteName;
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

  add(ids) {
    for (const id of ids) if (id && !this.state.pollDraft.includes(id)) this.state.pollDraft.push(id);
    this.render();
  }

  remove(id) {
    this.state.pollDraft = this.state.pollDraft.filter((s) => s !== id);
    this.render();
  }

  clear() {
    this.state.pollDraft = [];
    this.render();
  }

  streets({ onlineOnly }) {
    return [...this.state.sites.values()]
      .filter((s) => s.level === "street" && (!onlineOnly || s.online))
      .map((s) => s.id);
  }
}
