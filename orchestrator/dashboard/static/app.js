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

// The front page's health chart: successful and failed sync runs per hour over the last day, as inline SVG
// (the CSP allows no chart library): one stacked bar per hour, its counts in data attributes and its title.
(function () {
  "use strict";

  var holder = document.getElementById("health-chart");
  if (!holder) {
    return;
  }
  var SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, String(attrs[key])); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function hourLabel(iso) {
    return iso.slice(11, 16);
  }

  function draw(hours) {
    var width = 720, height = 170, left = 36, bottom = 20, top = 10;
    var peak = Math.max(1, Math.max.apply(null, hours.map(function (h) { return h.success + h.failed; })));
    var slot = (width - left - 6) / hours.length, bar = Math.max(slot * 0.72, 2), plot = height - top - bottom;
    var svg = el("svg", { "class": "chart health", viewBox: "0 0 " + width + " " + height, role: "img",
                          "aria-label": "Successful and failed sync runs per hour, last 24 hours" });
    [0, 0.5, 1].forEach(function (frac) {
      var y = top + plot * (1 - frac);
      svg.appendChild(el("line", { "class": "grid", x1: left, x2: width - 4, y1: y, y2: y }));
      svg.appendChild(el("text", { "class": "axis", x: left - 6, y: y + 4, "text-anchor": "end" },
                         frac ? String(Math.round(peak * frac * 10) / 10) : "0"));
    });
    hours.forEach(function (h, i) {
      var x = left + i * slot + (slot - bar) / 2;
      var okH = plot * h.success / peak, badH = plot * h.failed / peak;
      var group = el("g", { "class": "hour", "data-hour": h.hour, "data-success": h.success,
                            "data-failed": h.failed });
      group.appendChild(el("title", {}, hourLabel(h.hour) + " UTC: " + h.success + " succeeded, " + h.failed +
                                        " failed"));
      group.appendChild(el("rect", { "class": "bar s-success", x: x, y: top + plot - okH, width: bar,
                                     height: okH }));
      group.appendChild(el("rect", { "class": "bar s-failed", x: x, y: top + plot - okH - badH, width: bar,
                                     height: badH }));
      svg.appendChild(group);
      if (i % 6 === 0 || i === hours.length - 1) {
        svg.appendChild(el("text", { "class": "axis", x: x + bar / 2, y: height - 4, "text-anchor": "middle" },
                           hourLabel(h.hour)));
      }
    });
    var ok = 0, bad = 0;
    hours.forEach(function (h) { ok += h.success; bad += h.failed; });
    var legend = document.createElement("p");
    legend.className = "legend muted small";
    [["s-success", ok + " succeeded"], ["s-failed", bad + " failed"]].forEach(function (pair) {
      var key = document.createElement("span");
      key.className = "key " + pair[0];
      key.textContent = pair[1];
      legend.appendChild(key);
    });
    holder.replaceChildren(svg, legend);
  }

  fetch(holder.getAttribute("data-src"), { credentials: "same-origin" })
    .then(function (resp) { return resp.ok ? resp.json() : Promise.reject(resp.status); })
    .then(function (data) { draw(data.hours); })
    .catch(function () { holder.textContent = "The chart could not be loaded."; });
})();
