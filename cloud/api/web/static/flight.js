// The flight report: track and faults on a Leaflet map; confirm / false alarm / repaired through
// the API (PATCH /alerts/{id}) with the session cookie and its CSRF token; the photo in a viewer.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("flight-data").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const map = L.map("map", { zoomControl: true });
  if (data.tiles) {
    L.tileLayer(data.tiles, { maxZoom: 20, attribution: "map tiles" }).addTo(map);
  }
  const bounds = [];
  if (data.track.length > 1) {
    const line = L.polyline(data.track, { color: "#2563eb", weight: 3, className: "track" }).addTo(map);
    line.getLatLngs().forEach((p) => bounds.push([p.lat, p.lng]));
  }
  const colours = { high: "#dc2626", medium: "#ea580c", low: "#ca8a04" };
  for (const a of data.alerts) {
    const icon = L.divIcon({
      className: "fault-marker sev-" + a.severity,
      html: '<span style="background:' + (colours[a.severity] || "#555") + '"></span>',
      iconSize: [16, 16],
    });
    const m = L.marker([a.lat, a.lon], { icon: icon, title: a.class + " " + a.id }).addTo(map);
    m.on("click", () => {
      const card = document.getElementById("alert-" + a.id);
      card.scrollIntoView({ behavior: "smooth", block: "center" });
      card.classList.add("flash");
      setTimeout(() => card.classList.remove("flash"), 1200);
    });
    bounds.push([a.lat, a.lon]);
  }
  if (bounds.length) {
    map.fitBounds(bounds, { padding: [30, 30], maxZoom: 19 });
  } else {
    map.setView([0, 0], 2);
  }

  document.querySelectorAll("article.fault").forEach((card) => {
    const id = card.dataset.alert;
    card.querySelectorAll("button.act").forEach((btn) => {
      btn.addEventListener("click", async () => {
        btn.disabled = true;
        try {
          const r = await fetch("/alerts/" + encodeURIComponent(id), {
            method: "PATCH",
            credentials: "same-origin",
            headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
            body: JSON.stringify({ status: btn.dataset.status }),
          });
          const body = await r.json();
          if (!r.ok) throw new Error(body.detail || r.status);
          card.querySelector(".status").textContent = body.status;
          const li = document.createElement("li");
          li.textContent = "now: status → " + body.status;
          card.querySelector(".history").appendChild(li);
          card.dataset.saved = body.status;
        } catch (err) {
          card.querySelector(".status").textContent = "not saved: " + err.message;
        } finally {
          btn.disabled = false;
        }
      });
    });
    const photo = card.querySelector("button.photo");
    if (photo) {
      photo.addEventListener("click", () => {
        const viewer = document.getElementById("viewer");
        const img = viewer.querySelector("img");
        img.src = photo.dataset.src;
        img.classList.remove("zoomed");
        viewer.showModal();
      });
    }
  });
  const viewer = document.getElementById("viewer");
  viewer.querySelector("img").addEventListener("click", (e) => e.target.classList.toggle("zoomed"));
  viewer.addEventListener("click", (e) => { if (e.target === viewer) viewer.close(); });
})();
