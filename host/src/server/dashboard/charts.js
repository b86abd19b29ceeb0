// Time series kept in the browser and drawn as SVG: a bounded ring of one point a second (15
// minutes), so memory stays flat however long the page is open.
"use strict";

const WINDOW_SECONDS = 15 * 60;

/** A fixed-size ring of [time ms, values...] points, oldest first when read. */
class Ring {
  constructor(capacity) {
    this.capacity = capacity;
    this.items = new Array(capacity);
    this.start = 0;
    this.length = 0;
  }

  push(item) {
    if (this.length < this.capacity) {
      this.items[(this.start + this.length) % this.capacity] = item;
      this.length += 1;
    } else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  last() {
    return this.length ? this.items[(this.start + this.length - 1) % this.capacity] : undefined;
  }

  toArray() {
    const out = [];
    for (let i = 0; i < this.length; i++) out.push(this.items[(this.start + i) % this.capacity]);
    return out;
  }
}

/** One SVG element as markup (the chart is rebuilt whole each time it is drawn). */
function svgElement(name, attributes, text) {
  const attrs = Object.entries(attributes).map(([key, value]) => ` ${key}="${escapeHtml(String(value))}"`).join("");
  return text === undefined ? `<${name}${attrs}/>` : `<${name}${attrs}>${escapeHtml(text)}</${name}>`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** A round upper bound for an axis: 1, 2 or 5 times a power of ten. */
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/**
 * Draws `points` ([t, v0, v1, ...]) of the last 15 minutes up to `now` into `svg`, one line per
 * series named in `names`, with the y axis from 0 to a round maximum.
 */
function drawChart(svg, points, names, now) {
  const width = svg.clientWidth || 600;
  const height = svg.clientHeight || 160;
  const left = 44, right = 8, top = 8, bottom = 18;
  const plotW = width - left - right, plotH = height - top - bottom;
  const from = now - WINDOW_SECONDS * 1000;
  let max = 0;
  for (const point of points) for (let i = 1; i < point.length; i++) max = Math.max(max, point[i] || 0);
  const ymax = niceMax(max);
  const x = (t) => left + ((t - from) / (WINDOW_SECONDS * 1000)) * plotW;
  const y = (v) => top + plotH - (v / ymax) * plotH;

  const parts = [];
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  parts.push(svgElement("line", { class: "axis", x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH }));
  parts.push(svgElement("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + plotH }));
  parts.push(svgElement("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, formatNumber(ymax)));
  parts.push(svgElement("text", { x: left - 4, y: top + plotH, "text-anchor": "end" }, "0"));
  parts.push(svgElement("text", { x: left, y: height - 4 }, "-15 min"));
  parts.push(svgElement("text", { x: left + plotW, y: height - 4, "text-anchor": "end" }, "now"));
  names.forEach((name, i) => {
    const coordinates = points
      .filter((point) => point[0] >= from && point[i + 1] !== null && point[i + 1] !== undefined)
      .map((point) => `${x(point[0]).toFixed(1)},${y(point[i + 1]).toFixed(1)}`);
    if (coordinates.length) {
      parts.push(svgElement("polyline", { class: `s${i}`, points: coordinates.join(" ") }));
    }
    const last = points.length ? points[points.length - 1][i + 1] : null;
    parts.push(svgElement("text", { x: left + 6 + i * 150, y: top + 10, class: `legend${i}`, fill: ["#0b5cad", "#1d7a2c", "#b00020"][i] },
      `${name}: ${last === null || last === undefined ? "–" : formatNumber(last)}`));
  });
  if (!points.length) {
    parts.push(svgElement("text", { x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle" }, "waiting for the hub's stats events"));
  }
  // innerHTML of an <svg> element parses its markup as SVG.
  svg.innerHTML = parts.join("");
}

function formatNumber(value) {
  if (value >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return value.toFixed(value >= 10 ? 1 : 2);
}
