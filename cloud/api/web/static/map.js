// The pages' map (Leaflet, bundled from the npm registry): the lines' spans and towers, the
// flight's track, and one marker per alert or fault, filled by severity and ringed by status.
// Markers that would cover each other at the current zoom are spread on a small circle around
// their place, so six alerts are six markers. Without a basemap the map says how to set one.
"use strict";
window.PLIMap = (function () {
  const SEVERITY = { high: "#dc2626", medium: "#ea580c", low: "#ca8a04" };
  const STATUS = {
    new: "solid, white ring", confirmed: "black ring", reclassified: "black ring", open: "black ring",
    false_alarm: "grey, hollow", repaired: "green ring", repair_confirmed: "green ring",
  };
  const SPREAD = 16; // px: markers closer than this are spread apart

  function icon(m, dx, dy) {
    return L.divIcon({
      className: "fault-marker fault-look sev-" + m.severity + " st-" + m.status,
      html: '<span style="--sev:' + (SEVERITY[m.severity] || "#555") + '"></span>',
      iconSize: [18, 18],
      iconAnchor: [9 - dx, 9 - dy],
    });
  }

  function legend(map, basemap) {
    const c = L.control({ position: "bottomright" });
    c.onAdd = function () {
      const div = L.DomUtil.create("div", "map-legend");
      let html = "<b>Severity</b>";
      for (const s of ["high", "medium", "low"]) {
        html += '<div><span class="fault-look st-new"><span style="--sev:' + SEVERITY[s] + '"></span></span> ' + s + "</div>";
      }
      html += "<b>Status</b>";
      for (const [s, cls] of [["new", "st-new"], ["confirmed", "st-confirmed"], ["false alarm", "st-false_alarm"], ["repaired", "st-repaired"]]) {
        html += '<div><span class="fault-look ' + cls + '"><span style="--sev:#64748b"></span></span> ' + s + "</div>";
      }
      html += '<div><span class="tower-key"></span> tower <span class="span-key"></span> span <span class="track-key"></span> track</div>';
      div.innerHTML = html;
      return div;
    };
    c.addTo(map);
    if (!basemap.url) {
      const n = L.control({ position: "topright" });
      n.onAdd = function () {
        const div = L.DomUtil.create("div", "map-note");
        div.textContent = basemap.note;
        return div;
      };
      n.addTo(map);
    }
  }

  function draw(element, data) {
    const map = L.map(element, { zoomControl: true });
    const basemap = data.tiles || { url: null, note: "No basemap is configured." };
    if (basemap.url) L.tileLayer(basemap.url, { maxZoom: 20, attribution: "basemap" }).addTo(map);
    element.classList.toggle("no-basemap", !basemap.url);
    L.control.scale({ metric: true, imperial: false }).addTo(map);
    legend(map, basemap);
    const bounds = [];
    for (const s of data.spans || []) {
      L.polyline(s.points, { color: "#334155", weight: 2, dashArray: "4 4", className: "span" })
        .bindTooltip("line " + s.line + ": " + s.from + "–" + s.to).addTo(map);
    }
    for (const t of data.towers || []) {
      L.marker([t.lat, t.lon], {
        icon: L.divIcon({ className: "tower-marker", html: "<span></span>", iconSize: [12, 12] }),
        title: "tower " + t.tower + " (line " + t.line + ")", keyboard: false,
      }).bindTooltip(t.tower, { permanent: false }).addTo(map);
      bounds.push([t.lat, t.lon]);
    }
    if ((data.track || []).length > 1) {
      L.polyline(data.track, { color: "#2563eb", weight: 3, className: "track" }).addTo(map);
      data.track.forEach((p) => bounds.push([p[0], p[1]]));
    }
    const markers = [];
    for (const m of data.markers || []) {
      const mk = L.marker([m.lat, m.lon], { icon: icon(m, 0, 0), title: m.label, riseOnHover: true }).addTo(map);
      mk.pli = m;
      mk.on("click", () => {
        const card = m.card && document.getElementById(m.card);
        if (card) {
          card.scrollIntoView({ behavior: "smooth", block: "center" });
          card.classList.add("flash");
          setTimeout(() => card.classList.remove("flash"), 1200);
        } else if (m.href) {
          window.location.href = m.href;
        }
      });
      markers.push(mk);
      bounds.push([m.lat, m.lon]);
    }
    // Spread markers that share a place at this zoom (greedy groups in screen pixels).
    function spread() {
      const pts = markers.map((mk) => map.latLngToLayerPoint(mk.getLatLng()));
      const group = new Array(markers.length).fill(-1);
      const groups = [];
      pts.forEach((p, i) => {
        if (group[i] >= 0) return;
        const g = [i];
        group[i] = groups.length;
        pts.forEach((q, j) => { if (group[j] < 0 && p.distanceTo(q) < SPREAD) { group[j] = groups.length; g.push(j); } });
        groups.push(g);
      });
      for (const g of groups) {
        const r = g.length > 1 ? SPREAD * Math.max(1, g.length / 5) : 0;
        g.forEach((i, k) => {
          const a = (2 * Math.PI * k) / g.length;
          markers[i].setIcon(icon(markers[i].pli, Math.round(r * Math.cos(a)), Math.round(r * Math.sin(a))));
        });
      }
    }
    if (bounds.length) map.fitBounds(bounds, { padding: [30, 30], maxZoom: 19 });
    else map.setView([0, 0], 2);
    map.on("zoomend", spread);
    spread();
    // a status changed on the page: its marker's ring follows
    document.addEventListener("pli:changed", (e) => {
      for (const mk of markers) {
        if (mk.pli.id === e.detail.id) { mk.pli.status = e.detail.status; mk.pli.severity = e.detail.severity; }
      }
      spread();
    });
    element.dataset.markers = String(markers.length);
    return { map: map, markers: markers };
  }

  const el = document.getElementById("map");
  const data = document.getElementById("map-data");
  return el && data ? draw(el, JSON.parse(data.textContent)) : null;
})();
