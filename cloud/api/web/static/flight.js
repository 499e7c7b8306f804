// The flight report: verdict buttons on every alert card, and a review by keyboard (J/K or the
// arrows to move, C confirm, F false alarm, R repaired, X reclassify, P photo, Enter the page).
"use strict";
(function () {
  const cards = Array.from(document.querySelectorAll("article.fault"));
  const data = JSON.parse(document.getElementById("map-data").textContent);
  const status = {};
  (data.alerts || []).forEach((a) => { status[a.id] = a.status; });
  cards.forEach((card) => {
    const box = card.querySelector(".actions");
    PLI.wire(box, status[card.dataset.alert] || "new");
    box.addEventListener("pli:changed", (e) => {
      card.querySelector(".status").textContent = e.detail.status;
      const sev = card.querySelector("h3 span");
      sev.textContent = e.detail.severity;
      sev.className = "sev-" + e.detail.severity;
      card.querySelector("h3 a").textContent = e.detail.class;
      const li = document.createElement("li");
      li.textContent = "now: status → " + e.detail.status;
      card.querySelector(".history").appendChild(li);
      card.dataset.saved = e.detail.status;
    });
  });
  let at = -1;
  function select(i) {
    if (!cards.length) return;
    at = Math.max(0, Math.min(cards.length - 1, i));
    cards.forEach((c, k) => c.classList.toggle("selected", k === at));
    cards[at].focus({ preventScroll: true });
    cards[at].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", (e) => {
    if (e.target.closest && e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.toLowerCase();
    if (key === "j" || key === "arrowdown") { select(at + 1); e.preventDefault(); return; }
    if (key === "k" || key === "arrowup") { select(at - 1); e.preventDefault(); return; }
    if (at < 0) return;
    const card = cards[at];
    const box = card.querySelector(".actions");
    const press = (s) => { const b = box.querySelector('button[data-status="' + s + '"]'); if (b && !b.disabled) b.click(); };
    if (key === "c") press("confirmed");
    else if (key === "f") press("false_alarm");
    else if (key === "r") press("repaired");
    else if (key === "x") { const s = box.querySelector("select.reclass"); if (s && !s.disabled) s.focus(); }
    else if (key === "p") { const p = card.querySelector("a.photo"); if (p) window.location.href = p.href; }
    else if (key === "enter") window.location.href = card.querySelector("h3 a").href;
    else return;
    e.preventDefault();
  });
})();
