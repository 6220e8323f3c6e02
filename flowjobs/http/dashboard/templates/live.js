// Live refresh of the overview: polls /api/overview and updates the numbers in place.
(function () {
  "use strict";
  var root = document.getElementById("overview");
  if (!root) return;
  var every = 2000, statuses = [];
  document.querySelectorAll("[data-count]").forEach(function (el) { statuses.push(el.dataset.count); });
  function text(id, value) {
    var el = document.getElementById(id);
    if (el && el.textContent !== String(value)) el.textContent = value;
  }
  function cell(tag, value, cls) {
    var td = document.createElement(tag);
    td.textContent = value;
    if (cls) td.className = cls;
    return td;
  }
  function render(d) {
    statuses.forEach(function (s) { text("count-" + s, d.counts[s]); });
    text("count-total", d.total);
    text("as-of", d.now);
    text("alive-count", d.alive);
    Object.keys(d.finished).forEach(function (s) { text("finished-" + s, d.finished[s]); });
    document.getElementById("chart").innerHTML = d.chart;  // numbers and fixed names only
    var rows = document.getElementById("queue-rows"), frag = document.createDocumentFragment();
    Object.keys(d.queues).forEach(function (q) {
      var tr = document.createElement("tr");
      tr.dataset.queue = q;
      tr.appendChild(cell("td", q));
      statuses.forEach(function (s) { tr.appendChild(cell("td", d.queues[q][s], "num")); });
      frag.appendChild(tr);
    });
    if (frag.childNodes.length) rows.replaceChildren(frag);
    var wrows = document.getElementById("worker-rows"), wf = document.createDocumentFragment();
    d.workers.forEach(function (w) {
      var tr = document.createElement("tr");
      tr.appendChild(cell("td", w.id));
      tr.appendChild(cell("td", w.state, w.state));
      tr.appendChild(cell("td", w.queues));
      tr.appendChild(cell("td", w.in_flight + "/" + w.concurrency, "num"));
      tr.appendChild(cell("td", w.processed, "num"));
      tr.appendChild(cell("td", w.heartbeat + " ago"));
      wf.appendChild(tr);
    });
    if (wf.childNodes.length) wrows.replaceChildren(wf);
    var oldest = document.getElementById("oldest");
    if (d.oldest) {
      var a = document.createElement("a");
      a.href = "/runs/" + encodeURIComponent(d.oldest.id);
      a.textContent = d.oldest.id;
      oldest.replaceChildren(a, document.createTextNode(" " + d.oldest.task + " on " + d.oldest.queue +
        ", due " + d.oldest.run_at + " (waiting " + d.oldest.waited + ")"));
    } else {
      oldest.replaceChildren(cell("span", "nothing is waiting", "muted"));
    }
  }
  function poll() {
    if (document.hidden) { setTimeout(poll, every); return; }  // a background tab stays quiet
    fetch("/api/overview?range=" + encodeURIComponent(root.dataset.range), {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (d) { render(d); text("live-state", "live"); })
      .catch(function () { text("live-state", "refresh failed; retrying"); })
      .finally(function () { setTimeout(poll, every); });
  }
  text("live-state", "live");
  setTimeout(poll, every);
})();
