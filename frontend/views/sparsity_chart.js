// The layer's sparsity over training: sparsity (mean fraction of exact zeros), dead channels
// (all zero in every probe sample) and NaN/Inf counts per logged step (from ./stats_series),
// as an SVG built node by node. A new step only moves the current-step line and rewrites the
// summary: the chart itself (a hit area per step) is built again only for a new series.

import { clear, el, svg } from "../dom.js";

const WIDTH = 300;
const HEIGHT = 96;
const MARGIN = { left: 30, right: 26, top: 8, bottom: 16 };

function sparsityText(point) {
  return point.zero_fraction === null ? "–" : `${(point.zero_fraction * 100).toFixed(1)}%`;
}

export class SparsityChart {
  constructor({ onStep }) {
    this.onStep = onStep;
    this.series = [];
    this.channels = 1;
    this.svg = svg("svg", { class: "sparsity-chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img" });
    this.summary = el("div", { class: "chart-summary" });
    this.element = el("section", { class: "panel-section sparsity" },
      el("div", { class: "section-title" }, "Sparsity over steps",
        el("span", { class: "chart-legend" },
          el("span", { class: "key zeros" }), "sparsity",
          el("span", { class: "key dead" }), "dead")),
      this.svg, this.summary);
  }

  set(series, channels) {
    this.series = series;
    this.channels = Math.max(1, channels);
    this.draw();
  }

  setError(message) {
    this.series = [];
    clear(this.svg);
    this.summary.textContent = message;
  }

  setStep(step) {
    if (step === this.step) return;
    this.step = step;
    if (this.series.length) this.#showStep();
  }

  draw() {
    clear(this.svg);
    this.marker = null;
    const points = this.series;
    if (!points.length) return;
    const steps = points.map((p) => p.step);
    const first = steps[0];
    const last = steps[steps.length - 1];
    const innerWidth = WIDTH - MARGIN.left - MARGIN.right;
    const innerHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
    const x = (step) => MARGIN.left + (last > first ? ((step - first) / (last - first)) * innerWidth : innerWidth / 2);
    const yZeros = (fraction) => MARGIN.top + (1 - (fraction ?? 0)) * innerHeight;
    const yDead = (count) => MARGIN.top + (1 - count / this.channels) * innerHeight;
    const bottom = MARGIN.top + innerHeight;

    const grid = [0, 0.5, 1].map((f) => svg("line", {
      class: "gridline", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: yZeros(f), y2: yZeros(f),
    }));
    const labels = [
      svg("text", { class: "axis", x: MARGIN.left - 3, y: yZeros(1) + 3, "text-anchor": "end" }, "100%"),
      svg("text", { class: "axis", x: MARGIN.left - 3, y: yZeros(0), "text-anchor": "end" }, "0%"),
      svg("text", { class: "axis dead-axis", x: WIDTH - MARGIN.right + 3, y: yDead(this.channels) + 3 }, String(this.channels)),
      svg("text", { class: "axis dead-axis", x: WIDTH - MARGIN.right + 3, y: bottom }, "0"),
      svg("text", { class: "axis", x: MARGIN.left, y: HEIGHT - 3 }, String(first)),
      svg("text", { class: "axis", x: WIDTH - MARGIN.right, y: HEIGHT - 3, "text-anchor": "end" }, String(last)),
    ];
    const zerosLine = points.map((p, i) => `${i ? "L" : "M"}${x(p.step).toFixed(1)},${yZeros(p.zero_fraction).toFixed(1)}`).join("");
    const area = `${zerosLine}L${x(last).toFixed(1)},${bottom}L${x(first).toFixed(1)},${bottom}Z`;
    const deadLine = points.map((p, i) => {
      const y = yDead(p.dead_channels).toFixed(1);
      return i ? `H${x(p.step).toFixed(1)}V${y}` : `M${x(p.step).toFixed(1)},${y}`;
    }).join("");
    const nonfiniteCount = (p) => p.nan_count + p.inf_count;
    const nonfinite = points.filter((p) => nonfiniteCount(p) > 0).map((p) => svg("circle", {
      class: "nonfinite-mark", cx: x(p.step), cy: MARGIN.top + 2, r: 2.5,
    }));
    // One invisible hit area per step: its tooltip and a click to jump there.
    const hits = points.map((p, i) => {
      const left = i ? (x(points[i - 1].step) + x(p.step)) / 2 : MARGIN.left;
      const right = i < points.length - 1 ? (x(p.step) + x(points[i + 1].step)) / 2 : WIDTH - MARGIN.right;
      return svg("rect", {
        class: "hit", x: left, y: MARGIN.top, width: Math.max(1, right - left), height: innerHeight,
      }, svg("title", {}, `step ${p.step}: sparsity ${sparsityText(p)}, ${p.dead_channels} dead channels ` +
        `(all zero in every sample), ${nonfiniteCount(p)} NaN/Inf values`));
    });
    for (const [i, hit] of hits.entries()) hit.addEventListener("click", () => this.onStep(points[i].step));

    this.svg.append(...grid, svg("path", { class: "zeros-area", d: area }), svg("path", { class: "zeros-line", d: zerosLine }),
      svg("path", { class: "dead-line", d: deadLine }), ...nonfinite, ...labels, ...hits);
    this.hits = hits;
    this.x = x;
    this.bottom = bottom;
    this.#showStep();
  }

  // The current-step line (under the hit areas, which take the clicks) and the summary.
  #showStep() {
    const points = this.series;
    const current = points.find((p) => p.step === this.step);
    this.marker?.remove();
    this.marker = null;
    if (current) {
      const at = this.x(current.step);
      this.marker = svg("line", { class: "current-step", x1: at, x2: at, y1: MARGIN.top, y2: this.bottom });
      this.svg.insertBefore(this.marker, this.hits[0]);
    }
    const shown = current || points[points.length - 1];
    const nonfinite = shown.nan_count + shown.inf_count;
    this.summary.textContent = `step ${shown.step}: sparsity ${sparsityText(shown)} · ${shown.dead_channels} dead` +
      (nonfinite ? ` · ${nonfinite} NaN/Inf` : "");
  }
}
