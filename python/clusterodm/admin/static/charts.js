// Line charts drawn as inline SVG: no library, no canvas, nothing fetched from elsewhere.
// lineChart(host, times, series, options) replaces host's content with one chart; every path
// carries data-series and data-points (its number of drawn points) so tests and curious
// operators can read what is plotted.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_W = 560;
const CHART_H = 150;
const PAD = { left: 52, right: 10, top: 10, bottom: 22 };

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

// The smallest "round" number (1, 2, 2.5 or 5 times a power of ten) at or above `value`.
function niceCeil(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

// A time of day; with seconds when the chart spans less than ten minutes.
function clockLabel(ms, spanMs) {
  const parts = spanMs < 600000 ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
  return new Date(ms).toLocaleTimeString([], parts);
}

// series: [{name, label, values (numbers or null), color, dashed, area, step}]
// options: {format(value) -> text, minMax: lowest top of the y axis}
function lineChart(host, times, series, options) {
  const opts = options || {};
  const format = opts.format || ((v) => String(v));
  const values = series.flatMap((s) => s.values.filter((v) => typeof v === "number"));
  const top = niceCeil(Math.max(opts.minMax || 1, ...values));
  const t0 = times.length ? times[0] : 0;
  const t1 = times.length > 1 ? times[times.length - 1] : t0 + 1;
  const plotW = CHART_W - PAD.left - PAD.right;
  const plotH = CHART_H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - t0) / Math.max(1, t1 - t0)) * plotW;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;

  const svg = svgEl("svg", {
    viewBox: `0 0 ${CHART_W} ${CHART_H}`,
    class: "chart",
    role: "img",
    "data-points": times.length,
    "data-max": values.length ? Math.max(...values) : 0,
  });
  for (const fraction of [0, 0.5, 1]) {
    const gy = y(top * fraction);
    svg.append(svgEl("line", { x1: PAD.left, x2: CHART_W - PAD.right, y1: gy, y2: gy, class: "grid" }));
    const label = svgEl("text", { x: PAD.left - 6, y: gy + 4, class: "axis", "text-anchor": "end" });
    label.textContent = format(top * fraction);
    svg.append(label);
  }
  if (times.length) {
    for (const [t, anchor] of [[t0, "start"], [t1, "end"]]) {
      const label = svgEl("text", { x: x(t), y: CHART_H - 6, class: "axis", "text-anchor": anchor });
      label.textContent = clockLabel(t, t1 - t0);
      svg.append(label);
    }
  }

  for (const s of series) {
    let d = "";
    let points = 0;
    let last = null;
    let previous = null;
    s.values.forEach((v, i) => {
      if (typeof v !== "number") {
        previous = null;
        return;
      }
      const px = x(times[i]).toFixed(1);
      const py = y(v).toFixed(1);
      if (previous === null) d += `M${px} ${py}`;
      else if (s.step) d += `H${px}V${py}`;
      else d += `L${px} ${py}`;
      previous = [px, py];
      last = previous;
      points += 1;
    });
    if (s.area && points > 1) {
      const first = s.values.findIndex((v) => typeof v === "number");
      const area = `${d}V${y(0).toFixed(1)}H${x(times[first]).toFixed(1)}Z`;
      svg.append(svgEl("path", { d: area, fill: s.color, class: "area" }));
    }
    const path = svgEl("path", {
      d: d || "M0 0",
      stroke: s.color,
      class: s.dashed ? "line dashed" : "line",
      "data-series": s.name,
      "data-points": points,
    });
    const title = svgEl("title");
    title.textContent = s.label || s.name;
    path.append(title);
    svg.append(path);
    if (last !== null) svg.append(svgEl("circle", { cx: last[0], cy: last[1], r: 2.5, fill: s.color }));
  }

  const legend = document.createElement("div");
  legend.className = "legend";
  for (const s of series) {
    const latest = [...s.values].reverse().find((v) => typeof v === "number");
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color;
    item.append(swatch, `${s.label || s.name} ${latest === undefined ? "–" : format(latest)}`);
    legend.append(item);
  }
  host.replaceChildren(svg, legend);
  return svg;
}

function formatBytesRate(value) {
  const units = ["B/s", "KB/s", "MB/s", "GB/s"];
  let v = value;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

function formatCount(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}
