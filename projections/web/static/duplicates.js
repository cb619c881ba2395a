/* Duplicates page: "Not a duplicate" records a NotDuplicate event for the pair. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("button.not-duplicate")) {
    b.addEventListener("click", () => window.manage.decide(
      "POST", "/duplicates/not-duplicate", { a: b.dataset.a, b: b.dataset.b },
      "Recording: not a duplicate",
    ));
  }
});
