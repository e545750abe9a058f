/* spancost report --html: the cost per hour, stacked by domain, drawn with uPlot from
   the report's JSON document embedded in the page (#spancost-report). Every figure in
   the page's text is written by spancost.htmlreport from the same document; this script
   only draws. */
(function () {
  "use strict";

  var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                 "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#86bcb6"];
  var OTHER_COLOUR = "#bab0ac";
  var OTHER_NAME = "other domains";
  var HEIGHT = 300;
  var HOUR = 3600;
  // Tick steps: whole hours and days, as the report's window is whole UTC hours.
  var STEPS = [HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, 24 * HOUR, 48 * HOUR,
               7 * 24 * HOUR, 14 * 24 * HOUR, 28 * 24 * HOUR];

  // As spancost.report.format_money: cents for large sums, significant digits for tiny ones.
  function money(amount) {
    if (amount == null) return "-";
    if (amount === 0) return "0";
    var size = Math.abs(amount);
    if (size >= 100) {
      return amount.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
    }
    if (size >= 0.01) return amount.toFixed(4);
    return String(Number(amount.toPrecision(3)));
  }

  function hourText(seconds) {
    return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
  }

  function has(object, key) {
    return Object.prototype.hasOwnProperty.call(object, key);
  }

  var report = JSON.parse(document.getElementById("spancost-report").textContent);
  var box = document.getElementById("hourly-chart");
  var hours = report.hourly;
  var xs = hours.map(function (hour) { return Date.parse(hour.hour) / 1000; });

  // Layers from the bottom: the listed domains (most expensive first), then what the
  // hour cost beyond them.
  var names = [];
  var layers = [];
  var windowCosts = [];
  report.domains.forEach(function (domain) {
    if (hours.some(function (hour) { return has(hour.domains, domain.name); })) {
      names.push(domain.name);
      windowCosts.push(domain.cost);
      layers.push(hours.map(function (hour) {
        return has(hour.domains, domain.name) ? hour.domains[domain.name] : 0;
      }));
    }
  });
  var peak = hours.reduce(function (most, hour) { return Math.max(most, hour.cost); }, 0);
  var other = hours.map(function (hour, index) {
    var listed = layers.reduce(function (sum, layer) { return sum + layer[index]; }, 0);
    return Math.max(0, hour.cost - listed);
  });
  // The listed domains' sum differs from the hour's by float rounding only when they are
  // all the domains there are.
  var hasOther = other.some(function (cost) { return cost > peak * 1e-9; });
  if (hasOther) {
    names.push(OTHER_NAME);
    windowCosts.push(other.reduce(function (sum, cost) { return sum + cost; }, 0));
    layers.push(other);
  }

  var tops = [];
  var running = xs.map(function () { return 0; });
  layers.forEach(function (layer) {
    running = running.map(function (sum, index) { return sum + layer[index]; });
    tops.push(running);
  });

  // uPlot draws its series in order, so the whole stack goes first and each lower layer
  // over it; the legend then reads top to bottom, as the bars do. Away from the bars, the
  // legend shows the whole window.
  var order = layers.map(function (_, index) { return layers.length - 1 - index; });
  var bars = uPlot.paths.bars({size: [0.85, 64, 1]});
  var series = [{
    label: "hour (UTC)",
    value: function (u, seconds) { return seconds == null ? "whole window" : hourText(seconds); }
  }].concat(order.map(function (layer) {
    var colour = hasOther && layer === layers.length - 1
      ? OTHER_COLOUR : PALETTE[layer % PALETTE.length];
    return {
      label: names[layer],
      fill: colour,
      stroke: colour,
      width: 0,
      paths: bars,
      points: {show: false},
      value: function (u, top, seriesIndex, index) {
        return money(index == null ? windowCosts[layer] : layers[layer][index]);
      }
    };
  }));

  var first = xs[0];
  var last = xs[xs.length - 1];
  var options = {
    width: Math.max(box.clientWidth, 320),
    height: HEIGHT,
    tzDate: function (seconds) { return uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"); },
    scales: {
      x: {time: true, range: function () { return [first - 1800, last + 1800]; }},
      y: {range: function (u, min, max) { return [0, max > 0 ? max * 1.08 : 1]; }}
    },
    axes: [
      {
        space: 64,
        incrs: STEPS,
        values: function (u, ticks) {
          return ticks.map(function (seconds, index) {
            var text = hourText(seconds);
            var dated = index === 0 || text.slice(11) === "00:00";
            return text.slice(11) + (dated ? "\n" + text.slice(0, 10) : "");
          });
        }
      },
      {size: 72, values: function (u, ticks) { return ticks.map(money); }}
    ],
    series: series,
    legend: {live: true}
  };
  var plot = new uPlot(options, [xs].concat(order.map(function (layer) { return tops[layer]; })), box);
  window.addEventListener("resize", function () {
    plot.setSize({width: Math.max(box.clientWidth, 320), height: HEIGHT});
  });
  box.setAttribute("data-series", String(layers.length));
  box.setAttribute("data-drawn", "true");
})();
