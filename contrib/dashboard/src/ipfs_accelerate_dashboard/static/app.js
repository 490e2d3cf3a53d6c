// The dashboard page: one EventSource, a history of points, canvas line charts and tables.
// No library: every byte of the page comes from the package.
"use strict";
(function () {
  var MAX_POINTS = 300;
  var points = [];
  var $ = function (id) { return document.getElementById(id); };
  var COLORS = { ok: "#2b8a3e", failed: "#c92a2a", retries: "#e67700", rate_limited: "#7048e8",
                 p50: "#1c7ed6", p95: "#e67700", p99: "#c92a2a", queue: "#7048e8", in_flight: "#1c7ed6" };
  var CHARTS = {
    "chart-throughput": ["ok", "failed"],
    "chart-retries": ["retries", "rate_limited"],
    "chart-latency": ["p50", "p95", "p99"],
    "chart-queue": ["queue", "in_flight"]
  };
  var LABELS = { ok: "ok/s", failed: "errors/s", retries: "retries/s", rate_limited: "429s/s",
                 p50: "p50", p95: "p95", p99: "p99", queue: "queued", in_flight: "in flight" };

  function fmt(v, digits) {
    if (v === null || v === undefined) return "-";
    if (typeof v !== "number") return String(v);
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
    return v.toFixed(digits === undefined ? (Number.isInteger(v) ? 0 : 1) : digits);
  }
  function clock(t) { return new Date(t * 1000).toLocaleTimeString("en-GB"); }
  function text(id, v) { $(id).textContent = v; }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c];
    });
  }

  function drawChart(canvas, names) {
    var ctx = canvas.getContext("2d");
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var left = 44, right = 8, top = 18, bottom = 18;
    var max = 0, shown = 0;
    points.forEach(function (p) { names.forEach(function (n) { if (typeof p[n] === "number") { max = Math.max(max, p[n]); shown++; } }); });
    max = max > 0 ? max * 1.1 : 1;
    ctx.strokeStyle = "#e3e6eb"; ctx.fillStyle = "#6b7280"; ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    for (var i = 0; i <= 4; i++) {
      var y = top + (h - top - bottom) * i / 4;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
      ctx.fillText(fmt(max * (4 - i) / 4), 2, y + 4);
    }
    if (points.length) {
      ctx.fillText(clock(points[0].t), left, h - 4);
      var last = clock(points[points.length - 1].t);
      ctx.fillText(last, w - right - ctx.measureText(last).width, h - 4);
    }
    var n = points.length, xs = function (k) { return left + (w - left - right) * (n <= 1 ? 1 : k / (n - 1)); };
    var lx = left;
    names.forEach(function (name) {
      ctx.strokeStyle = COLORS[name]; ctx.lineWidth = 1.6; ctx.beginPath();
      var started = false;
      points.forEach(function (p, k) {
        var v = p[name];
        if (typeof v !== "number") { started = false; return; }
        var y = top + (h - top - bottom) * (1 - v / max);
        if (started) ctx.lineTo(xs(k), y); else { ctx.moveTo(xs(k), y); started = true; }
      });
      ctx.stroke();
      var lastV = null;
      for (var j = points.length - 1; j >= 0; j--) { if (typeof points[j][name] === "number") { lastV = points[j][name]; break; } }
      ctx.fillStyle = COLORS[name];
      var label = LABELS[name] + " " + fmt(lastV);
      ctx.fillRect(lx, 5, 8, 8); ctx.fillStyle = "#1d2330"; ctx.fillText(label, lx + 11, 13);
      lx += ctx.measureText(label).width + 24;
    });
    canvas.setAttribute("data-points", String(n));
    canvas.setAttribute("data-values", String(shown));
  }

  function rows(tbodyId, html) { $(tbodyId).querySelector("tbody").innerHTML = html.join(""); }

  function renderCurrent(c) {
    if (!c || !c.totals) return;
    text("updated", clock(c.time));
    text("total-ok", fmt(c.totals.ok)); text("total-failed", fmt(c.totals.failed));
    text("total-retries", fmt(c.totals.retries)); text("total-429", fmt(c.totals.rate_limited));
    text("queue", fmt(c.queue)); text("in-flight", fmt(c.in_flight));
    text("oldest", c.oldest_queued === null || c.oldest_queued === undefined ? "-" : fmt(c.oldest_queued, 1) + " s");
    text("lat-scope", c.latency_windowed ? "last 10 s" : "recent samples");
    if (c.spend !== null && c.spend !== undefined) {
      $("spend-tile").hidden = false;
      text("spend", typeof c.spend === "object" ? Object.keys(c.spend).map(function (k) { return k + " " + fmt(c.spend[k], 4); }).join(", ") : fmt(c.spend, 4));
    }
    rows("backends", c.backends.map(function (b) {
      return "<tr data-backend=\"" + esc(b.name) + "\"><td>" + esc(b.name) + "</td><td class=\"state-" + esc(b.breaker) + "\">" + esc(b.breaker) +
        "</td><td data-field=\"ok\">" + fmt(b.ok) + "</td><td>" + fmt(b.failed) + "</td><td>" + fmt(b.retries) + "</td><td>" + fmt(b.rate_limited) +
        "</td><td>" + fmt(b.queue) + "</td><td>" + fmt(b.in_flight) + "</td><td>" + fmt(b.p50) + "</td><td>" + fmt(b.p95) + "</td><td>" + fmt(b.p99) +
        "</td><td>" + fmt(b.tokens) + "</td></tr>";
    }));
    rows("keys", c.keys.map(function (k) {
      var hr = typeof k.headroom === "number" ? k.headroom : null;
      var bar = hr === null ? "-" : "<span class=\"hr\"><i style=\"width:" + Math.round(hr * 100) + "%\"></i></span>" + Math.round(hr * 100) + "%";
      var state = k.healthy === false ? "<span class=\"state-open\">rejected</span>" : (k.cooldown ? "cooling down" : "ok");
      return "<tr data-key=\"" + esc(k.key_id) + "\"><td>" + esc(k.backend + "/" + k.key_id) + "</td><td data-field=\"headroom\">" + bar + "</td><td>" +
        fmt(k.in_flight) + " / " + fmt(k.max_concurrent) + "</td><td>" + fmt(k.rpm) + (k.learned ? " (learned)" : "") + "</td><td>" + fmt(k.tpm) +
        "</td><td>" + fmt(k.cooldown, 2) + "</td><td data-field=\"ok\">" + fmt(k.ok) + "</td><td>" + fmt(k.rate_limited) + "</td><td>" + state + "</td></tr>";
    }));
    var p = c.progress;
    if (p && p.total) {
      $("progress-box").hidden = false;
      $("progress-fill").style.width = Math.min(100, 100 * p.done / p.total) + "%";
      text("progress-text", fmt(p.done) + " / " + fmt(p.total) + " done, " + fmt(p.failed) + " failed" + (p.rate ? ", " + fmt(p.rate) + "/s" : ""));
      text("progress-eta", p.eta === null ? "-" : (p.eta >= 60 ? Math.floor(p.eta / 60) + " min " + Math.round(p.eta % 60) + " s" : fmt(p.eta, 0) + " s"));
    }
  }

  function renderBreakers(list) {
    rows("breakers", list.map(function (e) {
      return "<tr><td>" + clock(e.time) + "</td><td>" + esc(e.backend) + "</td><td class=\"state-" + esc(e.from) + "\">" + esc(e.from) +
        "</td><td class=\"state-" + esc(e.to) + "\">" + esc(e.to) + "</td></tr>";
    }));
  }

  function redraw() { Object.keys(CHARTS).forEach(function (id) { drawChart($(id), CHARTS[id]); }); }

  text("bind", location.host);
  var src = new EventSource("events" + location.search);
  src.addEventListener("full", function (ev) {
    var m = JSON.parse(ev.data);
    points = m.history.slice(-MAX_POINTS);
    renderCurrent(m.current); renderBreakers(m.breakers); redraw();
    $("status").textContent = "live"; $("status").setAttribute("data-state", "live");
  });
  src.addEventListener("update", function (ev) {
    var m = JSON.parse(ev.data);
    points.push(m.point);
    if (points.length > MAX_POINTS) points.shift();
    renderCurrent(m.current);
    if (m.breakers) renderBreakers(m.breakers);
    redraw();
    $("status").textContent = "live"; $("status").setAttribute("data-state", "live");
  });
  src.onerror = function () { $("status").textContent = "reconnecting"; $("status").setAttribute("data-state", "lost"); };
  window.addEventListener("resize", redraw);
})();
