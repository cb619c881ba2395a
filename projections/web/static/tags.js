/* The photo view's tags and favourite star (issue 16): writes go to the JSON API, then
   the page reloads once the projector has applied them. */
"use strict";

(function () {
  const article = document.querySelector("article.photo");
  const box = document.querySelector("section.tags");
  if (!article || !box) return;
  const api = window.eventsvc.api;
  const hash = article.dataset.hash;
  const url = `/photos/${hash}/tags`;
  const error = box.querySelector(".tag-error");

  function fail(err) {
    if (!error) return;
    error.textContent = err.message;
    error.hidden = false;
  }

  /* Poll the content's tags until `done(state)` holds (or a few seconds passed). */
  async function settle(done) {
    for (let i = 0; i < 40; i++) {
      try { if (done(await api("GET", url))) break; } catch (e) { break; }
      await new Promise((r) => setTimeout(r, 150));
    }
    location.reload();
  }

  const key = (name) => name.trim().toLowerCase();
  const has = (state, name) => state.tags.some((t) => key(t.name) === key(name) && t.sources.includes("user"));

  const form = box.querySelector("form.tag-add");
  if (form) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const tag = form.elements.tag.value;
      try {
        await api("POST", url, { tag });
        await settle((s) => has(s, tag));
      } catch (err) { fail(err); }
    });
  }
  for (const b of box.querySelectorAll("button.tag-remove")) {
    b.addEventListener("click", async () => {
      const tag = b.dataset.tag;
      try {
        await api("DELETE", `${url}/${encodeURIComponent(tag)}`);
        await settle((s) => !has(s, tag));
      } catch (err) { fail(err); }
    });
  }
  const star = box.querySelector("button.fav");
  if (star) {
    star.addEventListener("click", async () => {
      const want = star.dataset.fav !== "true";
      try {
        await api(want ? "PUT" : "DELETE", `/photos/${hash}/favorite`);
        await settle((s) => s.favorite === want);
      } catch (err) { fail(err); }
    });
  }
})();
