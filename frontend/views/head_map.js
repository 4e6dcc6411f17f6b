// The overview's head map: attention layers (rows, in model order: by depth) × heads
// (columns) at the selected step, coloured by mean attention distance (or entropy where no
// layer's keys lie on a patch grid, or when chosen); dead heads crossed. Hover names the
// layer and head and gives its numbers (means over the probe samples); a click opens that
// layer at that step with that head picked. The colour scale spans every step, so stepping
// shows how heads change over training.

import { clear, el, fmt, option } from "../dom.js";
import { HEAT_COLOURS, heatColour, stepIndex } from "../overview_values.js";
import { DEAD_HEAD_MEANING, HEAD_METRICS, attentionLayers, headCell, headMetric, headsAt, metricRange } from "../head_values.js";
import { paintScale } from "../paint.js";

const ROW_HEIGHT = 18;
const CELL_WIDTH = 28;

export class HeadMap {
  // onOpen(path, step, head): open attention layer `path` at `step` with `head` picked.
  constructor({ onOpen }) {
    this.onOpen = onOpen;
    this.data = null;
    this.step = null;
    this.choice = "distance";
    this.layers = [];
    this.metricSelect = el("select", { "aria-label": "Head map shows", on: { change: () => {
      this.choice = this.metricSelect.value;
      this.#render();
    } } }, HEAD_METRICS.map((metric) => option(metric.name, metric.label)));
    this.scale = el("canvas", { class: "overview-scale", width: "256", height: "1" });
    paintScale(this.scale, HEAT_COLOURS);
    this.scaleLow = el("span");
    this.scaleHigh = el("span");
    this.title = el("span", { class: "overview-title" });
    this.names = el("div", { class: "head-map-names" });
    this.canvas = el("canvas", { class: "head-map-canvas", "aria-label": "Heat map of attention layers by heads" });
    this.hover = el("div", { class: "overview-hover", hidden: true });
    this.tooltip = el("div", { class: "head-map-tooltip", hidden: true, role: "status" });
    this.canvas.addEventListener("mousemove", (event) => this.#pointer(event));
    this.canvas.addEventListener("click", (event) => {
      const cell = this.#cellAt(event);
      if (cell) this.onOpen(cell.layer.layer, this.data.steps[this.index], cell.head);
    });
    this.canvas.addEventListener("mouseleave", () => {
      this.tooltip.hidden = true;
      this.hover.hidden = true;
    });
    this.element = el("div", { class: "head-map", hidden: true, "aria-label": "Attention heads by depth" },
      el("div", { class: "overview-head" }, this.title, el("span", { class: "spacer" }),
        el("label", { class: "option" }, el("span", { class: "control-label", text: "Heads" }), this.metricSelect),
        el("span", { class: "overview-legend" }, this.scaleLow, this.scale, this.scaleHigh),
        el("span", { class: "legend-item" }, el("span", { class: "head-map-dead-swatch", text: "×" }), "dead head")),
      el("div", { class: "head-map-body" }, this.names,
        el("div", { class: "head-map-stage" }, this.canvas, this.hover)),
      this.tooltip);
  }

  // overview: {data: ./overview or null, error}.
  setData({ data }) {
    this.data = data;
    this.layers = attentionLayers(data);
    this.#render();
  }

  setState({ step }) {
    if (step === this.step) return;
    this.step = step;
    this.#render();
  }

  #render() {
    this.element.hidden = !this.layers.length;
    if (!this.layers.length) return;
    const steps = this.data.steps;
    const index = stepIndex(steps, this.step);
    this.metric = headMetric(this.choice, this.layers);
    this.metricSelect.value = this.metric.name;
    this.range = metricRange(this.metric, this.layers);
    this.scaleLow.textContent = fmt(this.range[0]);
    this.scaleHigh.textContent = `${fmt(this.range[1])} ${this.metric.unit}`;
    this.title.textContent = `Attention heads by depth at step ${steps[index]}: ${this.metric.label}`;
    this.index = index;
    const columns = Math.max(1, ...this.layers.map((layer) => headsAt(layer, index)?.dead.length ?? 0));
    this.columns = columns;
    clear(this.names).append(...this.layers.map((layer) => el("div", { class: "head-map-name", text: layer.layer, title: layer.layer })));
    const canvas = this.canvas;
    canvas.width = columns * CELL_WIDTH;
    canvas.height = this.layers.length * ROW_HEIGHT;
    canvas.style.width = `${canvas.width}px`;
    canvas.style.height = `${canvas.height}px`;
    canvas.dataset.rows = String(this.layers.length);
    canvas.dataset.columns = String(columns);
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    const [low, high] = this.range;
    let dead = 0;
    this.layers.forEach((layer, row) => {
      const heads = headsAt(layer, index);
      for (let head = 0; head < (heads?.dead.length ?? 0); head++) {
        const cell = headCell(heads, head);
        const value = cell[this.metric.name];
        const x = head * CELL_WIDTH;
        const y = row * ROW_HEIGHT;
        context.fillStyle = value === null ? "#888888" : heatColour(high > low ? (value - low) / (high - low) : 0.5);
        context.fillRect(x + 1, y + 1, CELL_WIDTH - 2, ROW_HEIGHT - 2);
        if (cell.dead) {
          dead += 1;
          context.strokeStyle = "#000000";
          context.lineWidth = 1.5;
          context.beginPath();
          context.moveTo(x + 8, y + 4);
          context.lineTo(x + CELL_WIDTH - 8, y + ROW_HEIGHT - 4);
          context.moveTo(x + CELL_WIDTH - 8, y + 4);
          context.lineTo(x + 8, y + ROW_HEIGHT - 4);
          context.stroke();
        }
      }
    });
    canvas.dataset.dead = String(dead);
  }

  // The cell under the pointer, {row, head, layer, heads}, or null.
  #cellAt(event) {
    const box = this.canvas.getBoundingClientRect();
    const row = Math.floor((event.clientY - box.top) / ROW_HEIGHT);
    const head = Math.floor((event.clientX - box.left) / CELL_WIDTH);
    const layer = this.layers[row];
    const heads = layer ? headsAt(layer, this.index) : null;
    return heads && head >= 0 && head < heads.dead.length ? { row, head, layer, heads } : null;
  }

  #pointer(event) {
    const found = this.#cellAt(event);
    if (!found) {
      this.tooltip.hidden = true;
      this.hover.hidden = true;
      return;
    }
    const { row, head, layer, heads } = found;
    const cell = headCell(heads, head);
    const lines = [`${layer.layer} · head ${head}`, `step ${this.data.steps[this.index]}, mean over the probe samples`,
      `mean attention distance ${cell.distance === null ? "– (keys not on a patch grid)" : `${fmt(cell.distance)} patches`}`,
      `entropy ${fmt(cell.entropy)} nats${cell.normalised === null ? "" : ` (${fmt(cell.normalised)} of uniform)`}`,
      `largest probability ${fmt(cell.peak)} (mean over queries)`];
    if (cell.dead) lines.push(`dead head: ${DEAD_HEAD_MEANING}`);
    lines.push("Click to open this head");
    clear(this.tooltip).append(...lines.map((text, i) => el("div", { class: i ? "" : "tooltip-title", text })));
    this.tooltip.hidden = false;
    const area = this.element.getBoundingClientRect();
    this.tooltip.style.left = `${Math.max(0, event.clientX - area.left + 14)}px`;
    this.tooltip.style.top = `${event.clientY - area.top + 14}px`;
    Object.assign(this.hover.style, { left: `${head * CELL_WIDTH}px`, top: `${row * ROW_HEIGHT}px`, width: `${CELL_WIDTH}px` });
    this.hover.hidden = false;
  }
}
