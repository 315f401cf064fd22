// The dashboard's only script: confirmations, auto-refresh while something runs, and the log tail.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var message = button && button.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  // Pages showing a running sync refresh themselves, unless the user is typing.
  var refresh = Number(document.body.getAttribute("data-refresh") || 0);
  if (refresh > 0) {
    window.setTimeout(function tick() {
      var active = document.activeElement;
      if (active && (active.tagName === "INPUT" || active.tagName === "SELECT")) {
        window.setTimeout(tick, refresh * 1000);
        return;
      }
      window.location.reload();
    }, refresh * 1000);
  }

  var box = document.getElementById("logs");
  if (!box) {
    return;
  }
  var state = document.getElementById("tail-state");

  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = text;
    return td;
  }

  function append(entry) {
    var tr = document.createElement("tr");
    tr.className = "fresh lvl-" + String(entry.level).replace(/[^a-z]/g, "");
    tr.setAttribute("data-id", entry.id);
    tr.appendChild(cell(entry.time, "ts"));
    var lvl = cell("", "");
    var span = document.createElement("span");
    span.className = "lvl";
    span.textContent = entry.level;
    lvl.appendChild(span);
    tr.appendChild(lvl);
    var msg = cell(entry.message, "msg");
    if (entry.fields) {
      var extra = document.createElement("span");
      extra.className = "fields";
      extra.textContent = " " + JSON.stringify(entry.fields).slice(0, 400);
      msg.appendChild(extra);
    }
    tr.appendChild(msg);
    box.appendChild(tr);
    var empty = document.getElementById("logs-empty");
    if (empty) { empty.remove(); }
  }

  function poll() {
    var params = new URLSearchParams({
      id: box.getAttribute("data-job"),
      after: box.getAttribute("data-after") || "0",
      level: box.getAttribute("data-level") || "",
      q: box.getAttribute("data-q") || ""
    });
    fetch("/dashboard/job/logs.json?" + params.toString(), { credentials: "same-origin" })
      .then(function (resp) { return resp.ok ? resp.json() : Promise.reject(resp.status); })
      .then(function (data) {
        data.logs.forEach(append);
        if (data.logs.length) {
          box.setAttribute("data-after", data.logs[data.logs.length - 1].id);
          var last = box.lastElementChild;
          var rect = last && last.getBoundingClientRect();
          if (rect && rect.top < window.innerHeight + 200) { last.scrollIntoView({ block: "nearest" }); }
        }
        if (data.running || data.more) {
          if (state) { state.textContent = data.running ? "live: following new lines" : "loading..."; }
          window.setTimeout(poll, data.more ? 50 : 1500);
        } else if (state) {
          state.textContent = "run " + data.status;
          if (box.getAttribute("data-running")) { box.setAttribute("data-running", ""); }
        }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }

  if (box.getAttribute("data-running") || box.getAttribute("data-full")) {
    window.setTimeout(poll, 1000);
  }
})();
