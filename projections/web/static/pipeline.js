/* Libraries & pipeline page: filled from GET /libraries and GET /pipeline, refreshed. */
"use strict";

(() => {
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  };
  const row = (cells) => {
    const tr = el("tr");
    for (const c of cells) {
      const td = el("td");
      if (c instanceof Node) td.append(c); else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.append(td);
    }
    return tr;
  };
  const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
  const bytes = (n) => {
    let v = Number(n) || 0;
    for (const u of ["B", "KB", "MB", "GB", "TB"]) {
      if (v < 1024 || u === "TB") return u === "B" ? `${v} B` : `${v.toFixed(1)} ${u}`;
      v /= 1024;
    }
    return `${n} B`;
  };
  const when = (iso) => {
    if (!iso) return "–";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  };
  const fill = (id, rows, empty, cols) => {
    const body = document.querySelector(`#${id} tbody`);
    body.replaceChildren(...(rows.length ? rows : [row([empty, ...Array(cols - 1).fill("")])]));
  };

  function health(lib) {
    const box = el("span");
    box.append(el("span", lib.state, `state ${lib.state}`));
    if (lib.reason) box.append(" ", el("span", lib.reason, "why"));
    box.append(el("small", ` since ${when(lib.state_since)}`));
    return box;
  }

  function scan(s) {
    if (!s) return "–";
    const box = el("span");
    const done = s.finished_at ? `${when(s.finished_at)}` : `running since ${when(s.started_at)}`;
    box.append(el("span", `${s.full ? "full" : "quick"}, ${done}`));
    const parts = [];
    if (s.duration_s !== null && s.duration_s !== undefined) parts.push(`${s.duration_s.toFixed(1)} s`);
    if (s.files !== null && s.files !== undefined) parts.push(`${num(s.files)} files`);
    if (s.new) parts.push(`${num(s.new)} new`);
    if (s.changed) parts.push(`${num(s.changed)} changed`);
    if (s.missing) parts.push(`${num(s.missing)} missing`);
    if (parts.length) box.append(el("small", ` (${parts.join(", ")})`));
    if (s.error) box.append(" ", el("span", s.error, "why"));
    if (s.issue_count) box.append(" ", el("span", `${s.issue_count} unreadable`, "why"));
    return box;
  }

  function libraries(data) {
    fill("libraries", data.items.map((l) => {
      const name = el("span");
      name.append(el("strong", l.name), el("br"), el("small", l.root));
      const watch = l.watch ? `${l.watch.state}${l.watch.reason ? ": " + l.watch.reason : ""}` : "–";
      return row([name, health(l), num(l.files), num(l.images), num(l.videos),
        num(l.hashed), bytes(l.bytes), scan(l.last_scan), watch]);
    }), "No library configured.", 9);
  }

  function worker(w) {
    if (!w) return "";
    if (w.model_error) return el("span", `paused: ${w.model_error}`, "why");
    if (w.disabled) return el("span", `off: ${w.disabled}`, "why");
    return w.model ? `model ${w.model}` : "running";
  }

  function pipeline(st) {
    const s = document.getElementById("summary");
    const pairs = [
      ["NATS", st.nats.connected ? "connected" : `not connected: ${st.nats.error || ""}`],
      ["Events in the log", st.stream.error ? `unreadable: ${st.stream.error}` : num(st.stream.last_seq)],
      ["Read model", `${st.projector.generation || "none yet"}, at event ${num(st.projector.checkpoint)}`],
      ["Projector lag", st.projector.lag === null ? "unknown" : `${num(st.projector.lag)} event${st.projector.lag === 1 ? "" : "s"}`],
      ["Pending in all stages", num(st.consumers.reduce((n, c) => n + c.pending + c.ack_pending, 0))],
    ];
    s.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
    const workers = (st.extra && st.extra.workers) || {};
    fill("consumers", st.consumers.map((c) => row([c.name, num(c.pending), num(c.ack_pending),
      num(c.redelivered), num(c.last_delivered), worker(workers[c.name])])),
    "No stage has started.", 6);
    const f = st.failures;
    const by = Object.entries(f.by_stage).map(([k, v]) => `${k} ${v}`).join(", ");
    document.getElementById("fail-total").textContent = f.total ? `${num(f.total)} in all (${by})` : "none";
    fill("failures", f.recent.map((x) => row([when(x.occurred_at),
      x.operation && x.operation !== x.stage ? `${x.stage} (${x.operation})` : x.stage, el("span", x.reason, "reason"),
      x.permanent ? "permanent" : `gave up after ${x.deliveries} tries`,
      x.content_hash ? (() => { const a = el("a", x.content_hash.slice(0, 12)); a.href = `/photo/${x.content_hash}`; return a; })()
        : (x.file_id || x.input_subject)])),
    "No failure recorded.", 5);
  }

  async function refresh() {
    const trouble = document.getElementById("trouble");
    try {
      const [libs, st] = await Promise.all([
        window.eventsvc.api("GET", "/libraries"), window.eventsvc.api("GET", "/pipeline"),
      ]);
      libraries(libs);
      pipeline(st);
      trouble.hidden = true;
      document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.loaded = "true";
    } catch (err) {
      trouble.textContent = `Could not refresh: ${err.message}`;
      trouble.hidden = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const every = Number(document.getElementById("updated").dataset.refresh || 3) * 1000;
    refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, every);
  });
})();
