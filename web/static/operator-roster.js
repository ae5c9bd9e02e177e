// The wall operator page's roster: the sites that have a picture, grouped by street (the
// command centre first, then each street with its communities), searchable, draggable.
//
//   const roster = new Roster(container);
//   roster.build(sites)                  // site states (PROTOCOL.md <site state>)
//   roster.update(site, {armed})         // one site changed (online, tapped)
//   roster.markTiles(layout)             // "▣ 2,5": the tiles each site is on
//   roster.filter(text, onlineOnly)      // hide what does not match
//
// Rows are `[data-site="<id>"]` (data-online) inside `[data-group="<group key>"]` cards.

import { groupSites, h } from "/static/ui.js";

/** Sites with a picture to put on the wall: not the wall, not the operator desk, not a
 *  non-camera observer (PROTOCOL.md additions, "Layouts"). */
export function displayable(site) {
  const silent = ["wall", "operator", "observer"].includes(site.role);
  return !silent || site.level === "camera";
}

export class Roster {
  constructor(container) {
    this.container = container;
    this.rows = new Map(); // site id -> row
    this.sites = new Map(); // site id -> site state
    this.groups = []; // [{card, ids}]
  }

  build(sites) {
    this.container.replaceChildren();
    this.rows.clear();
    this.sites = new Map();
    this.groups = [];
    for (const group of groupSites(sites.filter(displayable))) {
      const card = h("section", { class: "op-group", dataset: { group: group.key } });
      if (!group.head) card.append(h("h3", { class: "op-group-title", text: group.title }));
      for (const site of group.sites) card.append(this._row(site, site === group.head));
      this.container.append(card);
      this.groups.push({ card, ids: group.sites.map((s) => s.id) });
    }
  }

  _row(site, isStreet) {
    const row = h(
      "div",
      {
        class: `op-site level-${isStreet ? "street" : site.level}`,
        draggable: "true",
        role: "button",
        tabindex: "0",
        dataset: { site: site.id, testid: `site-${site.id}` },
        title: `${site.name} (${site.id})`,
      },
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("span", { class: "name", text: site.name }),
      h("span", { class: "op-site-tiles" }),
    );
    this.rows.set(site.id, row);
    this.update(site, { armed: false });
    return row;
  }

  update(site, { armed }) {
    const row = this.rows.get(site.id);
    if (!row) return;
    this.sites.set(site.id, site);
    row.classList.toggle("online", site.online);
    row.classList.toggle("offline", !site.online);
    row.classList.toggle("armed", armed);
    row.dataset.online = String(site.online);
  }

  markTiles(layout) {
    const on = new Map();
    (layout ? layout.tiles : []).forEach((t, i) => {
      if (t.source) on.set(t.source, [...(on.get(t.source) || []), i + 1]);
    });
    for (const [id, row] of this.rows) {
      const tiles = on.get(id);
      const text = tiles ? `▣ ${tiles.join(",")}` : "";
      const label = row.querySelector(".op-site-tiles");
      if (label.textContent !== text) label.textContent = text;
      row.classList.toggle("on-wall", !!tiles);
    }
  }

  filter(text, onlineOnly) {
    const needle = text.trim().toLowerCase();
    for (const group of this.groups) {
      let visible = 0;
      for (const id of group.ids) {
        const site = this.sites.get(id);
        const match =
          (!needle || site.name.toLowerCase().includes(needle) || id.toLowerCase().includes(needle)) &&
          (!onlineOnly || site.online || site.level === "camera");
        this.rows.get(id).hidden = !match;
        if (match) visible += 1;
      }
      group.card.hidden = visible === 0;
    }
  }
}
