// The wall operator page's buttons that send one request: busy while it is on its way, a
// notice with the outcome, and a second press to confirm destructive ones.
//
//   const actions = new Actions({ conn: () => state.conn, notices, offline, settled });
//   await actions.act(button, message, describeOk)   // the reply, or null (refused / offline)
//   actions.isBusy(button)
//   confirmed(button, zh, en)                         // true on the second press within 4 s

import { describeError } from "/static/protocol.js";
import { bi } from "/static/ui.js";

export class Actions {
  /** `conn()` is the connection or null; `offline()` tells the user there is none;
   *  `settled()` runs after every request (to re-enable what depends on it). */
  constructor({ conn, notices, offline, settled }) {
    this.conn = conn;
    this.notices = notices;
    this.offline = offline;
    this.settled = settled;
    this.busy = new Set();
  }

  isBusy(button) {
    return this.busy.has(button);
  }

  async act(button, message, describeOk) {
    const conn = this.conn();
    if (!conn) {
      this.offline();
      return null;
    }
    this.busy.add(button);
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      const reply = await conn.request(message);
      if (describeOk) this.notices.show(describeOk(reply), { kind: "info" });
      return reply;
    } catch (err) {
      this.notices.show(describeError(err), { kind: "error", code: err.code || "" });
      return null;
    } finally {
      this.busy.delete(button);
      button.disabled = false;
      button.removeAttribute("aria-busy");
      this.settled();
    }
  }
}

/** Destructive buttons ask twice: the first press arms them for 4 s. */
export function confirmed(button, zh, en) {
  if (button.dataset.confirm === "1") {
    delete button.dataset.confirm;
    clearTimeout(button.confirmTimer);
    return true;
  }
  const label = button.innerHTML;
  button.dataset.confirm = "1";
  button.replaceChildren(bi(zh, en));
  button.confirmTimer = setTimeout(() => {
    delete button.dataset.confirm;
    button.innerHTML = label;
  }, 4000);
  return false;
}
