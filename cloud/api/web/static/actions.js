// An operator's verdicts and an admin's release steps, through the API with the session cookie
// and its CSRF token (the API checks the role and the status rules again, and audits).
"use strict";
window.PLI = (function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const table = document.getElementById("pli-transitions");
  const transitions = table ? JSON.parse(table.textContent) : {};

  async function send(method, url, body) {
    const r = await fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    let doc = {};
    try { doc = await r.json(); } catch (e) { doc = {}; }
    if (!r.ok) throw new Error(doc.detail || ("HTTP " + r.status));
    return doc;
  }

  function label(status) { return String(status).replace(/_/g, " "); }

  // Enable the buttons the rules allow from `status`.
  function allow(box, status) {
    const allowed = transitions[status] || [];
    box.querySelectorAll("button.act").forEach((b) => { b.disabled = !allowed.includes(b.dataset.status); });
    const sel = box.querySelector("select.reclass");
    if (sel) sel.disabled = !allowed.includes("reclassified");
  }

  async function verdict(box, body) {
    const said = box.querySelector(".said");
    box.querySelectorAll("button, select").forEach((el) => { el.disabled = true; });
    try {
      const alert = await send("PATCH", "/alerts/" + encodeURIComponent(box.dataset.alert), body);
      said.textContent = "saved: " + label(alert.status) + (body.fault_class ? " as " + label(alert.class) : "");
      said.classList.remove("error");
      allow(box, alert.status);
      box.dispatchEvent(new CustomEvent("pli:changed", { bubbles: true, detail: alert }));
      return alert;
    } catch (err) {
      said.textContent = "not saved: " + err.message;
      said.classList.add("error");
      allow(box, box.dataset.status || "new");
      return null;
    }
  }

  function wire(box, status) {
    box.dataset.status = status;
    box.addEventListener("pli:changed", (e) => { box.dataset.status = e.detail.status; });
    box.querySelectorAll("button.act").forEach((b) => {
      b.addEventListener("click", () => verdict(box, { status: b.dataset.status }));
    });
    const sel = box.querySelector("select.reclass");
    if (sel) {
      sel.addEventListener("change", () => {
        if (sel.value) verdict(box, { status: "reclassified", fault_class: sel.value }).then(() => { sel.value = ""; });
      });
    }
  }

  return { send: send, verdict: verdict, wire: wire, allow: allow, label: label };
})();
