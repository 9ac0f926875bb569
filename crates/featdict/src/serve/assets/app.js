// featdict web UI: progressive enhancement only — every page works without this script.
// The manual-label form is sent as JSON so errors show inline instead of on a new page.
(function () {
  "use strict";
  // Marks that scripts run (the browser test checks it alongside the escaping checks).
  document.documentElement.setAttribute("data-js", "on");
  var form = document.querySelector("form.label");
  if (!form) return;
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var input = form.querySelector("input[name=text]");
    var status = form.querySelector(".status");
    status.textContent = "saving…";
    fetch(form.getAttribute("action"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: input.value })
    }).then(function (res) {
      return res.json().then(function (body) {
        if (!res.ok) throw new Error(body.error || res.statusText);
        window.location.reload();
      });
    }).catch(function (err) {
      // textContent, never innerHTML: the message may echo user input.
      status.textContent = "not saved: " + err.message;
    });
  });
})();
