// A photo with the alert's box drawn on it, zoomed at the pointer (wheel, +/-) and panned by
// dragging: the point under the pointer stays under it, as in any map.
"use strict";
function PhotoViewer(stage, src, box) {
  const layer = stage.querySelector(".layer");
  const img = layer.querySelector("img");
  const frame = layer.querySelector(".box");
  const note = stage.parentElement.querySelector(".photo-note");
  let scale = 1, x = 0, y = 0, fit = 1;

  function apply() {
    layer.style.transform = "translate(" + x + "px," + y + "px) scale(" + scale + ")";
    frame.style.borderWidth = (2 / scale) + "px";  // the box's line stays 2 screen pixels wide
    stage.dataset.scale = scale.toFixed(3);
  }
  function reset() {
    const w = stage.clientWidth, h = stage.clientHeight;
    fit = Math.min(w / img.naturalWidth, h / img.naturalHeight);
    scale = fit;
    x = (w - img.naturalWidth * fit) / 2;
    y = (h - img.naturalHeight * fit) / 2;
    apply();
  }
  // Zoom by `factor` keeping the stage point (px, py) fixed.
  function zoomAt(factor, px, py) {
    const next = Math.min(Math.max(scale * factor, fit), fit * 40);
    const k = next / scale;
    x = px - (px - x) * k;
    y = py - (py - y) * k;
    scale = next;
    apply();
  }
  img.addEventListener("load", () => {
    layer.style.width = img.naturalWidth + "px";
    layer.style.height = img.naturalHeight + "px";
    if (box && box.length === 4) {
      frame.style.left = box[0] + "px";
      frame.style.top = box[1] + "px";
      frame.style.width = (box[2] - box[0]) + "px";
      frame.style.height = (box[3] - box[1]) + "px";
      frame.hidden = false;
    } else if (note) {
      note.textContent = "the drone sent no box for this alert";
    }
    reset();
    stage.dataset.ready = "1";
  });
  img.addEventListener("error", () => { if (note) note.textContent = "the photo could not be loaded"; });
  img.src = src;
  stage.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = stage.getBoundingClientRect();
    zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  let drag = null;
  stage.addEventListener("pointerdown", (e) => { drag = { sx: e.clientX, sy: e.clientY, x: x, y: y }; stage.setPointerCapture(e.pointerId); });
  stage.addEventListener("pointermove", (e) => {
    if (!drag) return;
    x = drag.x + e.clientX - drag.sx;
    y = drag.y + e.clientY - drag.sy;
    apply();
  });
  stage.addEventListener("pointerup", () => { drag = null; });
  stage.addEventListener("dblclick", (e) => {
    const r = stage.getBoundingClientRect();
    zoomAt(2, e.clientX - r.left, e.clientY - r.top);
  });
  function centre(factor) { zoomAt(factor, stage.clientWidth / 2, stage.clientHeight / 2); }
  stage.addEventListener("keydown", (e) => {
    if (e.key === "+" || e.key === "=") centre(1.25);
    else if (e.key === "-") centre(0.8);
    else if (e.key === "0") reset();
  });
  stage.parentElement.querySelectorAll("button[data-zoom]").forEach((b) => {
    b.addEventListener("click", () => {
      if (b.dataset.zoom === "in") centre(1.25);
      else if (b.dataset.zoom === "out") centre(0.8);
      else reset();
    });
  });
  return { zoomAt: zoomAt, reset: reset };
}
