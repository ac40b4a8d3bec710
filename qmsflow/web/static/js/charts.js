// The dashboard's charts, drawn by Chart.js (vendor/chartjs-*) from the JSON the server puts in each
// [data-qf-chart] (qmsflow/web/dashboard.py: bar_chart, stacked_chart). The table beside each chart holds
// the same numbers and links, so without this file the page loses nothing but the pictures (docs/web.md).
// A bar (or a stacked segment) opens the units list it counts: the link of the same figure in the table.
document.addEventListener("DOMContentLoaded", function () {
  if (typeof window.Chart === "undefined") { return; }
  // A stage has one colour in every chart. Colour is never the only signal: every segment is named in
  // the legend, the tooltip and the table.
  var stageColour = {none: "#6c757d", planned: "#0dcaf0", building: "#fd7e14", applying: "#ffc107", announced: "#198754",
                     maintaining: "#0b5ed7", reannouncing: "#6f42c1", superseded: "#adb5bd", withdrawn: "#212529"};
  window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  window.Chart.defaults.color = "#212529";
  // A long name beside a bar is cut short, or on a phone Chart.js would draw it past the canvas's
  // edge; the tooltip and the table beside the chart give it whole.
  function shortLabel(value) {
    var label = String(this.getLabelForValue(value));
    var room = Math.min(40, Math.max(12, Math.floor(this.chart.width / 18)));  // characters, about a third of the width
    return label.length > room ? label.slice(0, room - 1) + "…" : label;
  }
  document.querySelectorAll("[data-qf-chart]").forEach(function (figure) {
    var spec = JSON.parse(figure.getAttribute("data-qf-chart"));
    var canvas = figure.querySelector("canvas");
    if (!canvas || !spec.labels.length) { return; }  // nothing to draw: the table says so
    figure.hidden = false;
    // Chart.js fills its container: give it a height that fits the bars (CSSOM, which the CSP allows).
    figure.style.height = (spec.horizontal ? spec.labels.length * 28 + (spec.stacked ? 80 : 40) : 260) + "px";
    var chart = new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: spec.series.map(function (series) {
          return {label: series.label, data: series.data, links: series.links,
                  backgroundColor: stageColour[series.key] || "#0b5ed7"};
        })
      },
      options: {
        indexAxis: spec.horizontal ? "y" : "x",
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        layout: {padding: {left: 4}},  // drawn at once: for print, and for the reader of a meeting's figures
        scales: {
          x: {stacked: spec.stacked, beginAtZero: true, ticks: {precision: 0}},
          y: {stacked: spec.stacked, beginAtZero: true, ticks: spec.horizontal ? {callback: shortLabel} : {precision: 0}}
        },
        plugins: {legend: {display: spec.stacked, position: "bottom"}},
        onHover: function (event, elements) {
          event.native.target.style.cursor = elements.length ? "pointer" : "default";
        },
        onClick: function (event, elements) {
          if (!elements.length) { return; }
          var link = chart.data.datasets[elements[0].datasetIndex].links[elements[0].index];
          if (link) { window.location.assign(link); }
        }
      }
    });
    figure.setAttribute("data-qf-drawn", "true");  // the browser tests wait for this
  });
});
