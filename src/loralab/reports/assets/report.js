// The report page's behaviour: draw the figures from the inlined JSON, sort and filter the tables,
// switch the cost axis, open a run's record when its point is clicked. No network, no modules.
(function () {
  "use strict";
  var report = JSON.parse(document.getElementById("report-data").textContent);
  var config = {responsive: true, displaylogo: false, scrollZoom: false};

  function draw(div, figure) {
    var layout = Object.assign({template: report.template}, figure.layout);
    return Plotly.react(div, figure.data, layout, config);
  }

  function openRecord(event) {
    var point = event.points && event.points[0];
    var href = point && point.customdata && point.customdata[0];
    if (href) { window.open(href, "_blank"); }
  }

  // Each figure div names its figure (data-figure) and, for the cost plot, the picker that switches it.
  document.querySelectorAll("[data-figure]").forEach(function (div) {
    var figures = report.figures[div.dataset.figure];
    var picker = div.dataset.picker && document.getElementById(div.dataset.picker);
    var current = function () { return picker ? figures[picker.value] : figures; };
    draw(div, current()).then(function () { div.on("plotly_click", openRecord); });
    if (picker) { picker.addEventListener("change", function () { draw(div, current()); }); }
  });

  // Sorting: a header click sorts by its column's data-sort values (numbers where they parse), then
  // flips direction; cells without a value (a diverged row's metric) stay at the bottom either way.
  function sortKey(cell) {
    var raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    if (raw === "") { return null; }
    var number = Number(raw);
    return isNaN(number) ? raw.toLowerCase() : number;
  }

  document.querySelectorAll("table.runs").forEach(function (table) {
    var body = table.tBodies[0];
    table.querySelectorAll("thead th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("thead th").forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = sortKey(a.cells[column]), y = sortKey(b.cells[column]);
          if (x === null || y === null) { return (x === null) - (y === null); }
          if (typeof x !== typeof y) { x = String(x); y = String(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });

  // Filtering: a row stays when its text holds every word typed, in any order.
  document.querySelectorAll("input.filter").forEach(function (input) {
    var table = document.getElementById(input.dataset.table);
    var count = document.getElementById(input.dataset.count);
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var text = row.textContent.toLowerCase();
        var keep = words.every(function (w) { return text.indexOf(w) >= 0; });
        row.hidden = !keep;
        shown += keep ? 1 : 0;
      });
      count.textContent = shown + " of " + table.tBodies[0].rows.length + " rows";
    });
  });
})();
