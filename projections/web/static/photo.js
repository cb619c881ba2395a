/* The photo view: keyboard steps, HLS playback, face boxes and naming, similar strip. */
"use strict";

(function () {
  const article = document.querySelector("article.photo");
  if (!article) return;
  const api = window.eventsvc.api;
  const canWrite = document.body.dataset.canWrite === "true";

  /* Keyboard: arrows step through the listing, Esc goes back to it. */
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || e.target.isContentEditable) return;
    if (e.key === "ArrowLeft" && article.dataset.prev) { e.preventDefault(); location.assign(article.dataset.prev); }
    else if (e.key === "ArrowRight" && article.dataset.next) { e.preventDefault(); location.assign(article.dataset.next); }
    else if (e.key === "Escape") {
      if (document.querySelector(".face-editor")) return;
      e.preventDefault();
      location.assign(article.dataset.back || "/");
    }
  });

  /* Video: native HLS where the browser has it (Safari, Chromium), else hls.js. */
  const video = document.getElementById("player");
  if (video && video.dataset.hls) {
    const src = video.dataset.hls;
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src;
    } else if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({ enableWorker: false });
      hls.loadSource(src);
      hls.attachMedia(video);
      video.hls = hls;
    } else {
      video.insertAdjacentHTML("afterend", "<p class=\"banner error\">This browser cannot play HLS video.</p>");
    }
  }

  /* The image fits the stage and the window (small images scaled up), ratio kept, so
     the face boxes (relative to the image) stay on the faces. */
  const img = document.getElementById("photo-img");
  const stage = article.querySelector(".stage");
  function fit() {
    if (!img || !img.naturalWidth) return;
    const r = img.naturalWidth / img.naturalHeight;
    const maxW = stage.clientWidth, maxH = Math.max(200, window.innerHeight - 140);
    const w = Math.min(maxW, maxH * r);
    img.style.width = `${Math.round(w)}px`;
    img.style.height = `${Math.round(w / r)}px`;
  }
  if (img) {
    if (img.complete) fit(); else img.addEventListener("load", fit);
    window.addEventListener("resize", fit);
  }

  /* Face boxes: placed over the image from their relative [left, top, right, bottom]. */
  for (const b of article.querySelectorAll(".face[data-box]")) {
    const [l, t, r, bo] = b.dataset.box.split(",").map(Number);
    b.style.left = `${(l * 100).toFixed(3)}%`;
    b.style.top = `${(t * 100).toFixed(3)}%`;
    b.style.width = `${((r - l) * 100).toFixed(3)}%`;
    b.style.height = `${((bo - t) * 100).toFixed(3)}%`;
    if (!canWrite) { b.disabled = true; b.title = b.dataset.name || "unnamed"; continue; }
    b.addEventListener("click", () => openEditor(b));
  }

  function personIdForName(name) {
    for (const o of document.querySelectorAll("#people-names option")) {
      if (o.value.toLowerCase() === name.toLowerCase()) return o.dataset.id;
    }
    return null;
  }

  /* A decision is an event: the new person exists once the projector applied it. Ask the
     face (always there, so no 404 while waiting) until it names that person. */
  async function untilProjected(faceId, personId) {
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline) {
      const face = await api("GET", `/faces/${encodeURIComponent(faceId)}`);
      if (face.person_id === personId) return;
      await new Promise((ok) => setTimeout(ok, 300));
    }
    throw new Error("the new person is not in the read model yet (is the projector running?): try again");
  }

  function openEditor(box) {
    closeEditor();
    const tpl = document.getElementById("face-editor");
    if (!tpl) return;
    const form = tpl.content.firstElementChild.cloneNode(true);
    const input = form.querySelector("input[name=name]");
    const msg = form.querySelector(".message");
    input.value = box.dataset.name || "";
    if (!box.dataset.person) form.querySelector("[data-act=split]").hidden = true;
    box.parentNode.appendChild(form);
    form.style.left = box.style.left;
    form.style.top = `calc(${box.style.top} + ${box.style.height} + 1.6em)`;
    input.focus();
    const faceId = box.dataset.face;
    const done = (label) => {
      const span = box.querySelector("span");
      span.textContent = label || "?";
      box.dataset.name = label || "";
      box.classList.toggle("unnamed", !label);
      closeEditor();
      box.focus();
    };
    const fail = (err) => { msg.textContent = err.message; };
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const name = input.value.trim();
      try {
        const current = box.dataset.person;
        const existing = name ? personIdForName(name) : null;
        if (existing && existing !== current) {
          await api("POST", `/faces/${encodeURIComponent(faceId)}/reassign`, { person_id: existing });
          box.dataset.person = existing;
        } else if (current) {
          await api("PATCH", `/people/${encodeURIComponent(current)}`, { name: name || null });
        } else if (name) {
          const r = await api("POST", `/faces/${encodeURIComponent(faceId)}/reassign`, { new_person: true });
          msg.textContent = "Creating the person…";
          await untilProjected(faceId, r.person_id);
          await api("PATCH", `/people/${encodeURIComponent(r.person_id)}`, { name });
          box.dataset.person = r.person_id;
        }
        done(name);
      } catch (err) { fail(err); }
    });
    form.addEventListener("click", async (e) => {
      const act = e.target.dataset && e.target.dataset.act;
      if (!act) return;
      try {
        if (act === "close") { closeEditor(); box.focus(); }
        else if (act === "split") {
          const r = await api("POST", `/faces/${encodeURIComponent(faceId)}/reassign`, { new_person: true });
          box.dataset.person = r.person_id;
          done("");
        } else if (act === "reject") {
          await api("POST", `/faces/${encodeURIComponent(faceId)}/reject`);
          box.remove();
          closeEditor();
        }
      } catch (err) { fail(err); }
    });
    form.addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); closeEditor(); box.focus(); } });
  }

  function closeEditor() {
    for (const f of document.querySelectorAll(".face-editor")) f.remove();
  }

  /* "Similar" strip: CLIP neighbours from the JSON API. */
  const similar = document.getElementById("similar");
  if (similar && similar.dataset.url) {
    const back = new URL(article.dataset.back || "/", location.origin);
    api("GET", similar.dataset.url).then((page) => {
      similar.textContent = "";
      if (!page.items.length) { similar.innerHTML = "<p class=\"empty\">Nothing similar above the threshold.</p>"; return; }
      for (const hit of page.items) {
        const a = document.createElement("a");
        a.className = "tile";
        a.href = `/photo/${hit.content_hash}${back.search}`;
        a.title = `${hit.path} (score ${hit.score.toFixed(3)})`;
        if (hit.thumbnail) {
          const img = document.createElement("img");
          img.src = hit.thumbnail; img.alt = hit.path.split("/").pop(); img.loading = "lazy";
          a.appendChild(img);
        }
        const s = document.createElement("span");
        s.className = "score"; s.textContent = hit.score.toFixed(2);
        a.appendChild(s);
        similar.appendChild(a);
      }
    }).catch((err) => {
      similar.innerHTML = "";
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = err.status === 503 || err.status === 404 ? `Not available: ${err.message}` : err.message;
      similar.appendChild(p);
    });
  }
})();
