// Line charts drawn as inline SVG by hand (no library, nothing fetched from
// elsewhere): one point per minute, a y axis with round ticks, the time
// along x, and a legend. Served with app.js as one script (admin_page.rs).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const FRAME = { width: 600, height: 210, left: 44, right: 14, top: 12, bottom: 26 };

function svgNode(name, attributes, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// 0 up to at least `max` in round steps (1, 2 or 5 × 10^n), about 4 of them.
function ticksUpTo(max, integer) {
  const top = max > 0 ? max : 1;
  const rough = top / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  let step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [0];
  while (ticks[ticks.length - 1] < top) ticks.push(Number((ticks.length * step).toPrecision(12)));
  return ticks;
}

function clock(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}

function shown(value) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

// A legend entry's sample line, dashed as its series is.
function swatch(series) {
  const svg = svgNode("svg", { width: 22, height: 10, "aria-hidden": "true" });
  svg.append(svgNode("line", {
    x1: 1, y1: 5, x2: 21, y2: 5, stroke: series.color, "stroke-width": 2.5, "stroke-dasharray": series.dash || "none",
  }));
  return svg;
}

// Draws into `figure` (its <svg> and .legend): `minutes` are Dates, each
// series {key, label, color, dash?, values: numbers or null (no data)};
// `options` {integer, summary(series) → text shown after the label}.
function lineChart(figure, minutes, seriesList, options = {}) {
  const { width, height, left, right, top, bottom } = FRAME;
  const svg = figure.querySelector(":scope > svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const values = seriesList.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const ticks = ticksUpTo(Math.max(0, ...values), options.integer);
  const yMax = ticks[ticks.length - 1];
  const x = (i) => left + (minutes.length > 1 ? (i * plotWidth) / (minutes.length - 1) : plotWidth);
  const y = (v) => top + plotHeight - (v / yMax) * plotHeight;
  const nodes = [];

  for (const tick of ticks) {
    nodes.push(svgNode("line", { class: "grid", x1: left, x2: width - right, y1: y(tick), y2: y(tick) }));
    nodes.push(svgNode("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end" }, shown(tick)));
  }
  nodes.push(svgNode("line", { class: "axis", x1: left, x2: left, y1: top, y2: top + plotHeight }));
  nodes.push(svgNode("line", { class: "axis", x1: left, x2: width - right, y1: top + plotHeight, y2: top + plotHeight }));
  minutes.forEach((minute, i) => {
    if (minute.getMinutes() % 10 !== 0) return;
    const tickX = x(i);
    nodes.push(svgNode("line", { class: "axis", x1: tickX, x2: tickX, y1: top + plotHeight, y2: top + plotHeight + 4 }));
    const anchor = tickX < left + 20 ? "start" : tickX > width - right - 20 ? "end" : "middle";
    nodes.push(svgNode("text", { x: tickX, y: height - 8, "text-anchor": anchor }, clock(minute)));
  });

  for (const series of seriesList) {
    const group = svgNode("g", { "data-series": series.key });
    let run = [];
    const flush = () => {
      if (run.length > 1) {
        group.append(svgNode("polyline", {
          points: run.join(" "), fill: "none", stroke: series.color, "stroke-width": 2,
          "stroke-dasharray": series.dash || "none", "stroke-linejoin": "round",
        }));
      }
      run = [];
    };
    series.values.forEach((value, i) => {
      if (value === null || value === undefined) return flush();
      run.push(`${x(i).toFixed(1)},${y(value).toFixed(1)}`);
      if (value > 0) {
        const point = svgNode("circle", {
          class: "point", cx: x(i).toFixed(1), cy: y(value).toFixed(1), r: 3, fill: series.color,
          "data-value": value, "data-minute": minutes[i].toISOString(),
        });
        point.append(svgNode("title", {}, `${clock(minutes[i])} · ${series.label}: ${shown(value)}`));
        group.append(point);
      }
    });
    flush();
    nodes.push(group);
  }
  if (values.length === 0 || Math.max(...values) === 0) {
    nodes.push(svgNode("text", { class: "empty", x: left + plotWidth / 2, y: top + plotHeight / 2, "text-anchor": "middle" },
      values.length === 0 ? "no data in this hour" : "nothing in this hour"));
  }
  svg.replaceChildren(...nodes);

  figure.querySelector(".legend").replaceChildren(...seriesList.map((series) => {
    const entry = document.createElement("span");
    const summary = options.summary ? options.summary(series) : "";
    entry.append(swatch(series), series.label + (summary ? " · " + summary : ""));
    return entry;
  }));
}

// Totals and latest values for the legends.
const total = (series) => series.values.reduce((sum, v) => sum + (v || 0), 0) + " in the hour";
const latest = (series) => {
  const defined = series.values.filter((v) => v !== null && v !== undefined);
  return defined.length ? "now " + shown(defined[defined.length - 1]) : "no sample";
};

// The admin history (GET /admin/history) as the page's four charts.
function drawHistory(history) {
  const minutes = history.map((m) => new Date(m.minute));
  const jobs = (queue, pick) => history.map((m) => pick(m.jobs[queue]));
  lineChart($("#chart-jobs"), minutes, [
    { key: "turns-completed", label: "turns: completed", color: "#1a7f37", values: jobs("turns", (j) => j.completed) },
    { key: "turns-failed", label: "turns: failed", color: "#cf222e", values: jobs("turns", (j) => j.failed + j.dead) },
    { key: "batch-completed", label: "batch: completed", color: "#0969da", dash: "6 3", values: jobs("batch", (j) => j.completed) },
    { key: "batch-failed", label: "batch: failed", color: "#bc4c00", dash: "6 3", values: jobs("batch", (j) => j.failed + j.dead) },
  ], { integer: true, summary: total });
  lineChart($("#chart-latency"), minutes, [
    { key: "latency-p50", label: "p50", color: "#0969da", values: history.map((m) => m.turns.latency_p50_ms) },
    { key: "latency-p95", label: "p95", color: "#8250df", values: history.map((m) => m.turns.latency_p95_ms) },
  ], { summary: latest });
  for (const queue of ["turns", "batch"]) {
    const depth = (state) => history.map((m) => (m.depth[queue] ? m.depth[queue][state] : null));
    lineChart($("#chart-depth-" + queue), minutes, [
      { key: queue + "-pending", label: "pending", color: "#0969da", values: depth("pending") },
      { key: queue + "-scheduled", label: "scheduled", color: "#8c959f", dash: "4 3", values: depth("scheduled") },
      { key: queue + "-running", label: "running", color: "#1a7f37", values: depth("running") },
      { key: queue + "-dead", label: "dead", color: "#cf222e", values: depth("dead") },
    ], { integer: true, summary: latest });
  }
}
