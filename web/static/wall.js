// The wall display page (大屏): the PC driving the command-centre wall opens the wall site's
// join link (/wall?token=...) in a kiosk browser and leaves it. The page plays its output
// (the `main` video slot, which carries the wall output; signalling/routing.py) full screen,
// unattended, and reconnects for ever: protocol.js retries the signalling on its own and the
// player (wall-player.js) offers again after each `welcome`.
//
// An overlay says what is wrong only while it is wrong: not connected, or no frames arriving.
// Hooks for tests and automation: [data-testid="wall-video"], [data-testid="overlay"] (hidden
// while playing; data-status carries the player's status), and window.huishangWall (the
// player: .status, .link.pc).

import { connect, describeError } from "/static/protocol.js";
import { playWall } from "/static/wall-player.js";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token") || "";

function onEvent(msg) {
  if (msg.type === "welcome") {
    $("site").textContent = `${msg.site.name} · ${msg.conference.title || ""}`;
  }
}

function showStopped(reason) {
  const overlay = $("overlay");
  overlay.hidden = false;
  overlay.dataset.status = "stopped";
  overlay.querySelector("[data-wall-status]").textContent = `已停止 · stopped (${reason})`;
}

async function start() {
  if (!token) {
    showStopped("需要令牌 · token needed: open the wall's join link");
    return;
  }
  let conn;
  try {
    conn = await connect({ token, client: "wall-display/1", onEvent });
  } catch (err) {
    showStopped(describeError(err)); // invalid token, or replaced by another wall PC
    return;
  }
  window.huishangWall = playWall(conn, $("wall-video"), { overlay: $("overlay") });
}

document.addEventListener("dblclick", () => {
  if (!document.fullscreenElement) document.documentElement.requestFullscreen().catch(() => {});
});

start();
