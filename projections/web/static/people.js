/* People pages: rename inline, hide/show, merge the selected, split or reject a face. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const { decide } = window.manage;

  for (const form of document.querySelectorAll("form.rename")) {
    const input = form.querySelector("input.name");
    const person = form.dataset.person;
    let sent = (input.defaultValue || "").trim();
    const save = () => {  /* Enter fires both change and submit: send a name once */
      const name = input.value.trim();
      if (name === sent) return;
      sent = name;
      decide("PATCH", `/people/${person}`, { name: name || null }, `Naming ${name || "(no name)"}`)
        .then((r) => { if (!r) sent = null; });  // failed: the same name may be sent again
    };
    form.addEventListener("submit", (e) => { e.preventDefault(); save(); });
    input.addEventListener("change", save);
  }

  for (const b of document.querySelectorAll("button.hide")) {
    b.addEventListener("click", () => {
      const hide = b.dataset.hidden !== "true";
      decide("PATCH", `/people/${b.dataset.person}`, { hidden: hide }, hide ? "Hiding" : "Showing");
    });
  }

  const merge = document.getElementById("merge");
  if (merge) {
    const picked = () => [...document.querySelectorAll("input.select:checked")].map((c) => c.value);
    for (const c of document.querySelectorAll("input.select")) {
      c.addEventListener("change", () => {
        const n = picked().length;
        merge.disabled = n < 2;
        merge.textContent = n < 2 ? "Merge selected" : `Merge ${n} people`;
        c.closest(".person-card").classList.toggle("picked", c.checked);
      });
    }
    merge.addEventListener("click", () => {
      const [target, ...rest] = picked();  // page order: the one with most faces first
      if (!target || !rest.length) return;
      decide("POST", `/people/${target}/merge`, { people: rest }, `Merging ${rest.length + 1} people`);
    });
  }

  for (const b of document.querySelectorAll("button.split")) {
    b.addEventListener("click", () => decide(
      "POST", `/faces/${b.dataset.face}/reassign`, { new_person: true }, "Moving the face out",
      (r) => location.assign(`/web/people/${r.person_id}`),
    ));
  }
  for (const b of document.querySelectorAll("button.reject")) {
    b.addEventListener("click", () => decide(
      "POST", `/faces/${b.dataset.face}/reject`, undefined, "Rejecting the face",
    ));
  }
  for (const s of document.querySelectorAll("select.move-to")) {
    s.addEventListener("change", () => {
      if (!s.value) return;
      decide("POST", `/faces/${s.dataset.face}/reassign`, { person_id: s.value }, "Moving the face");
    });
  }
});
