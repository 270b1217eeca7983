/* Draws the pages' charts with the vendored Chart.js: each <canvas class="chart">
   names a <script type="application/json"> holding {labels, series: [{label, data}]}.
   No inline script runs (the pages' Content-Security-Policy forbids it). */
(function () {
  "use strict";
  var palette = ["#0f766e", "#b45309", "#1d4ed8", "#be123c", "#7c3aed", "#15803d",
                 "#a16207", "#0369a1", "#c2410c", "#4d7c0f"];
  var rupiah = new Intl.NumberFormat("id-ID", {maximumFractionDigits: 0});
  function money(value) { return "Rp " + rupiah.format(value); }
  document.querySelectorAll("canvas.chart").forEach(function (canvas) {
    var source = document.getElementById(canvas.dataset.source);
    if (!source) { return; }
    var spec = JSON.parse(source.textContent);
    var kind = canvas.dataset.kind;
    var isMoney = kind !== "line";
    var datasets = spec.series.map(function (s, i) {
      var colour = palette[i % palette.length];
      return {label: s.label, data: s.data, backgroundColor: colour, borderColor: colour,
              borderWidth: kind === "line" ? 2 : 0, pointRadius: kind === "line" ? 2 : 0};
    });
    var valueAxis = {beginAtZero: true, stacked: kind === "stacked",
                     ticks: {precision: 0,
                             callback: function (v) { return isMoney ? rupiah.format(v) : v; }}};
    if (kind === "hbar") {
      // one bar per district: the box grows with their number, not a fixed height
      canvas.parentNode.style.height = (60 + 26 * spec.labels.length) + "px";
    }
    var labelAxis = {stacked: kind === "stacked", ticks: {autoSkip: true, maxRotation: 0}};
    new Chart(canvas, {
      type: kind === "line" ? "line" : "bar",
      data: {labels: spec.labels, datasets: datasets},
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: kind === "hbar" ? "y" : "x",
        scales: kind === "hbar" ? {x: valueAxis, y: labelAxis} : {x: labelAxis, y: valueAxis},
        plugins: {
          legend: {display: datasets.length > 1, position: "bottom", labels: {boxWidth: 12}},
          tooltip: {callbacks: {label: function (c) {
            var v = kind === "hbar" ? c.parsed.x : c.parsed.y;
            return c.dataset.label + ": " + (isMoney ? money(v) : v);
          }}}
        }
      }
    });
  });
})();
