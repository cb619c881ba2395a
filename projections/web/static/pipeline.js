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

  const canWrite = () => document.body.dataset.canWrite === "true";
  const splitList = (text) => text.split(",").map((x) => x.trim()).filter(Boolean);

  /* Library management (issue 16): PATCH / DELETE /libraries/{id} for write sessions. */
  async function change(method, id, body, question) {
    if (question && !window.confirm(question)) return;
    const trouble = document.getElementById("trouble");
    try {
      await window.eventsvc.api(method, `/libraries/${encodeURIComponent(id)}`, body);
      trouble.hidden = true;
    } catch (err) {
      trouble.textContent = `Could not change library ${id}: ${err.message}`;
      trouble.hidden = false;
    }
    refresh();
  }

  function manage(l) {
    const box = el("span", undefined, "actions");
    const button = (label, action) => {
      const b = el("button", label);
      b.type = "button";
      b.dataset.library = l.library_id;
      b.addEventListener("click", action);
      box.append(b, " ");
    };
    if (!l.configured) return el("small", "from the scanner's log only");
    if (l.enabled) button("Disable", () => change("PATCH", l.library_id, { enabled: false }));
    else button("Enable", () => change("PATCH", l.library_id, { enabled: true }));
    button("Excludes…", () => {
      const text = window.prompt(`Excludes of ${l.name} (comma-separated)`, (l.excludes || []).join(", "));
      if (text !== null) change("PATCH", l.library_id, { excludes: splitList(text) });
    });
    button("Remove", () => change("DELETE", l.library_id, undefined,
      `Remove library ${l.name}? Its photos leave every listing (the files stay on disk).`));
    return box;
  }

  function libraries(data) {
    const cols = canWrite() ? 10 : 9;
    fill("libraries", data.items.map((l) => {
      const name = el("span");
      name.append(el("strong", l.name), el("br"), el("small", l.root));
      if (l.excludes && l.excludes.length) name.append(el("br"), el("small", `excludes: ${l.excludes.join(", ")}`));
      const watch = l.watch ? `${l.watch.state}${l.watch.reason ? ": " + l.watch.reason : ""}` : "–";
      const cells = [name, health(l), num(l.files), num(l.images), num(l.videos),
        num(l.hashed), bytes(l.bytes), scan(l.last_scan), watch];
      if (canWrite()) cells.push(manage(l));
      return row(cells);
    }), "No library configured.", cols);
  }

  async function addLibrary(ev) {
    ev.preventDefault();
    const form = ev.target;
    const error = document.getElementById("add-library-error");
    const field = (n) => form.elements.namedItem(n).value.trim();  /* (form.name is the form's) */
    const body = { root: field("root"), excludes: splitList(field("excludes")) };
    if (field("name")) body.name = field("name");
    try {
      await window.eventsvc.api("POST", "/libraries", body);
      error.textContent = "";
      form.reset();
    } catch (err) {
      error.textContent = err.message;
    }
    refresh();
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
    const add = document.getElementById("add-library");
    if (add) add.addEventListener("submit", addLibrary);
    refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, every);
  });
})();
