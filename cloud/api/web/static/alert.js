// One alert's page: the photo with the box, the verdict buttons, the audit trail kept in step.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("alert-data").textContent);
  const box = document.querySelector(".actions");
  PLI.wire(box, data.status);
  box.addEventListener("pli:changed", (e) => {
    document.getElementById("status").textContent = PLI.label(e.detail.status);
    const li = document.createElement("li");
    li.textContent = "now: status → " + e.detail.status + (e.detail.class ? " (" + e.detail.class + ", " + e.detail.severity + ")" : "");
    const none = document.querySelector("#history li.none");
    if (none) none.remove();
    document.getElementById("history").appendChild(li);
  });
  const stage = document.querySelector("#photo .stage");
  if (stage && data.photo) PhotoViewer(stage, data.photo, data.box);
})();
