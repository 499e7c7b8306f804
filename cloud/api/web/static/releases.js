// Admins' rollout steps on the releases page: promote to the canary group, approve for the
// fleet, roll a group back; the API checks the role and signs (cloud/registry/rollout.py).
"use strict";
(function () {
  document.querySelectorAll("td.release-actions").forEach((cell) => {
    const said = cell.querySelector(".said");
    async function step(url, body, what) {
      cell.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      try {
        const r = await PLI.send("POST", url, body);
        said.textContent = what + ": " + r.group + " " + r.status;
        said.classList.remove("error");
        setTimeout(() => window.location.reload(), 600);
      } catch (err) {
        said.textContent = what + " refused: " + err.message;
        said.classList.add("error");
      } finally {
        cell.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      }
    }
    const v = (b) => encodeURIComponent(b.dataset.version);
    cell.querySelectorAll("button.promote").forEach((b) => b.addEventListener("click",
      () => step("/releases/" + v(b) + "/promote", { group: "canary" }, "promoted")));
    cell.querySelectorAll("button.approve").forEach((b) => b.addEventListener("click",
      () => step("/releases/" + v(b) + "/approve", {}, "approved")));
    cell.querySelectorAll("button.rollback").forEach((b) => b.addEventListener("click",
      () => step("/rollback", { group: b.dataset.group, to: b.dataset.version }, "rolled back")));
  });
})();
