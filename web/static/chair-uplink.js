// The chair console's uplink panel (级联上级): shown only on a server with an [uplink] table.
//
// GET /api/uplink (web/uplink.py), polled every few seconds: the link's state, the upper site,
// whether the upper level gives us the floor, our hand there, and whether its roll call calls
// this district now. The chair raises or lowers the district's hand upstairs
// (POST /api/uplink/hand) and answers the upper roll call with 到 (POST /api/uplink/rollcall_ack).
// Refusals show as notices; nothing else on the console depends on this panel.
//
// Hooks: `[data-testid="uplink"]` (data-state: connecting / up / waiting / closed),
// `uplink-state`, `uplink-hand`, `uplink-ack` (hidden unless called).

const STATES = {
  up: "已连接 linked",
  connecting: "连接中 connecting",
  waiting: "重连中 retrying",
  closed: "已关闭 closed",
};

export function startUplinkPanel(token, notices, everyMs = 2000) {
  const panel = document.querySelector('[data-testid="uplink"]');
  const stateText = document.querySelector('[data-testid="uplink-state"]');
  const handButton = document.querySelector('[data-testid="uplink-hand"]');
  const ackButton = document.querySelector('[data-testid="uplink-ack"]');
  let status = null;

  async function post(path, body, ok) {
    try {
      const reply = await fetch(`${path}?token=${encodeURIComponent(token)}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await reply.json().catch(() => ({}));
      if (!reply.ok) {
        notices.show(`上级拒绝 refused upstairs: ${answer.message || reply.status}`, {
          kind: "error",
          code: answer.code || String(reply.status),
        });
        return;
      }
      notices.show(ok, { kind: "info", timeoutMs: 4000 });
      refresh();
    } catch (err) {
      notices.show(`无法连接服务器 cannot reach the server: ${err.message}`, { kind: "error" });
    }
  }

  handButton.addEventListener("click", () => {
    const up = !(status && status.hand);
    post("/api/uplink/hand", { up }, up ? "已向上级举手 hand raised upstairs" : "已放下 hand lowered");
  });
  ackButton.addEventListener("click", () => {
    post("/api/uplink/rollcall_ack", {}, "已应答上级点名 answered the upper roll call");
  });

  function render() {
    const linked = status.state === "up";
    panel.dataset.state = status.state;
    const upper = status.upper_site ? status.upper_site.name || status.upper_site.id : status.url;
    const floor = status.have_floor ? " · 本区发言中 we have the floor" : "";
    stateText.textContent = `${STATES[status.state] || status.state} · ${upper}${floor}`;
    handButton.disabled = !linked;
    handButton.textContent = status.hand ? "放下举手 Lower hand" : "向上级举手 Raise hand upstairs";
    ackButton.hidden = !(linked && status.rollcall_called && !status.rollcall_acked);
  }

  async function refresh() {
    try {
      const reply = await fetch("/api/uplink", { cache: "no-store" });
      if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
      const body = await reply.json();
      panel.hidden = !body.configured;
      if (!body.configured) return false;
      status = body;
      render();
    } catch (err) {
      // the console's own connection banner says when the server is gone
    }
    return true;
  }

  async function loop() {
    if ((await refresh()) === false) return; // no uplink on this server: stop polling
    setTimeout(loop, everyMs);
  }
  loop();
}
