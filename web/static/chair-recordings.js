// The chair console's recordings list (录像): GET /api/recordings with the chair's token
// (web/recording.py), loaded with each welcome and again whenever recording starts or stops;
// after a switch it is asked again (0.5 s apart) until the index agrees: a file being written
// while recording is on, none once it is off (the server closes and indexes the file).
// Each entry links to /recordings/<id>?token=… (a download).
//
// Hooks: `[data-testid="recordings"]`, `recordings-list`, `recordings-count`,
// `recording-<id>` (data-state: recording / done), `recording-meta`, `recording-download`.

import { bi, formatClock, h } from "/static/ui.js";

const RETRIES = 20; // how often to ask until the index agrees with the switch
const $ = (id) => document.getElementById(id);
const pad2 = (n) => String(n).padStart(2, "0");

export class RecordingsPanel {
  constructor(token) {
    this.token = token; // () => the chair's token
    this.entries = []; // GET /api/recordings entries, newest first
    this.loads = 0; // the newest load wins
  }

  /** Fetch the index until it agrees with the switch (*recording*: on or off now). */
  async load(recording, tries = RETRIES) {
    const load = ++this.loads;
    const token = encodeURIComponent(this.token());
    for (let i = 0; i < tries && load === this.loads; i++) {
      if (i) await new Promise((resolve) => setTimeout(resolve, 500));
      let body;
      try {
        const reply = await fetch(`/api/recordings?token=${token}`);
        if (reply.status === 401 || reply.status === 403) {
          document.querySelector('[data-testid="recordings"]').hidden = true; // not the chair
          return;
        }
        if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
        body = await reply.json();
      } catch (err) {
        console.warn("recordings:", err);
        continue;
      }
      if (load !== this.loads) return;
      this.entries = body.recordings || [];
      this.render(token);
      const writing = this.entries.some((r) => r.ended_at === null);
      if (writing === recording) return; // settled
    }
  }

  render(token) {
    const entries = this.entries;
    $("recordings-count").textContent = String(entries.length);
    $("recordings-empty").hidden = entries.length > 0;
    $("recordings-list").replaceChildren(...entries.map((r) => entry(r, token)));
  }
}

function entry(r, token) {
  const writing = r.ended_at === null;
  const meta = writing
    ? bi(`${formatStart(r.started_at)} · 录制中`, "recording…")
    : h("span", {
        text: `${formatStart(r.started_at)} · ${formatLength(r.duration_s)} · ${formatSize(r.size)}`,
      });
  return h(
    "li",
    {
      dataset: {
        recording: String(r.id),
        testid: `recording-${r.id}`,
        state: writing ? "recording" : "done",
      },
    },
    h("span", { class: "rec-file", text: r.file, title: `${r.file} (${r.source})` }),
    h("span", { class: "rec-meta", dataset: { testid: "recording-meta" } }, meta),
    writing
      ? h("span", { class: "rec-download hint" }, bi("写入中", "writing"))
      : h(
          "a",
          {
            class: "btn btn-small rec-download",
            href: `${r.url}?token=${token}`,
            download: r.file,
            dataset: { testid: "recording-download" },
          },
          bi("下载", "Download"),
        ),
  );
}

function formatLength(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  const hours = Math.floor(s / 3600);
  const mm = pad2(Math.floor((s % 3600) / 60));
  return hours ? `${hours}:${mm}:${pad2(s % 60)}` : `${mm}:${pad2(s % 60)}`;
}

function formatSize(bytes) {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

function formatStart(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  const day = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
  return `${day} ${formatClock(epochSeconds)}`;
}
