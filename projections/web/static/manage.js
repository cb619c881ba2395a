/* People, duplicates and pipeline pages: a decision is an event, so after a write the
   page waits until the projector has applied it (GET /pipeline's checkpoint), then
   reloads to show the read model's answer. */
"use strict";

const manage = (() => {
  const say = (text, isError) => {
    const m = document.getElementById("message");
    if (!m) return;
    m.textContent = text;
    m.classList.toggle("error", Boolean(isError));
  };

  async function applied(seq, timeoutMs = 15000) {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const st = await window.eventsvc.api("GET", "/pipeline");
      if (st && st.projector && st.projector.checkpoint >= seq) return true;
      await new Promise((r) => setTimeout(r, 200));
    }
    return false;
  }

  /* Send a decision; once applied, reload (or go to `then`). */
  async function decide(method, url, body, doing, then) {
    say(doing + "…");
    document.body.classList.add("busy");
    try {
      const r = await window.eventsvc.api(method, url, body);
      const seqs = (r && r.seqs) || (r && r.seq !== undefined ? [r.seq] : []);
      if (seqs.length && !(await applied(Math.max(...seqs)))) {
        say("Recorded; the read model has not caught up yet: reload in a moment.");
        return r;
      }
      if (typeof then === "function") then(r);
      else if (then) location.assign(then);
      else location.reload();
      return r;
    } catch (err) {
      say(err.message, true);
      return null;
    } finally {
      document.body.classList.remove("busy");
    }
  }

  return { applied, decide, say };
})();
window.manage = manage;
