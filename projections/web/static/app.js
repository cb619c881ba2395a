/* eventsvc web app: the little JavaScript the pages need (no inline scripts: CSP). */
"use strict";

const ROW_HEIGHT = () => (window.innerWidth < 600 ? 100 : 160);

/* Writes go to the JSON API with the session cookie (same origin, JSON body). */
async function api(method, url, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(url, init);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.detail) || `${r.status} ${r.statusText}`);
    err.status = r.status;
    throw err;
  }
  return data;
}
window.eventsvc = { api };

/* Justified grid: each tile grows in proportion to its aspect ratio. */
function layoutTiles(root) {
  const h = ROW_HEIGHT();
  for (const t of root.querySelectorAll(".tile[data-w]:not([data-laid])")) {
    const w = Number(t.dataset.w) || 4, hh = Number(t.dataset.h) || 3;
    const r = Math.min(Math.max(w / hh, 0.4), 4);
    t.style.flexGrow = String(r);
    t.style.flexBasis = `${Math.round(r * h)}px`;
    t.style.aspectRatio = `${r}`;
    t.dataset.laid = "1";
  }
}

function relayout() {
  for (const t of document.querySelectorAll(".tile[data-laid]")) delete t.dataset.laid;
  layoutTiles(document);
}

/* Login page: post the token to /auth/login, then go on. */
function initLogin() {
  const form = document.getElementById("login-form");
  if (!form) return;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const msg = document.getElementById("login-message");
    msg.textContent = "";
    try {
      await api("POST", "/auth/login", { token: document.getElementById("token").value });
      const next = form.dataset.next || "/";
      location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/");
    } catch (err) {
      msg.textContent = err.message;
    }
  });
}

function initLogout() {
  const b = document.getElementById("logout");
  if (!b) return;
  b.addEventListener("click", async () => {
    try { await api("POST", "/auth/logout"); } finally { location.assign("/login"); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  layoutTiles(document);
  initLogin();
  initLogout();
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(relayout, 150);
  });
});

document.addEventListener("htmx:afterSwap", (e) => layoutTiles(e.target.parentNode || document));
document.addEventListener("htmx:afterSettle", () => layoutTiles(document));
