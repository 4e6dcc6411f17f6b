// The overview's selectivity map: layers with reference steps (rows, in model order) ×
// reference steps (columns), coloured by the layer's mean class selectivity over its kept
// units, or by the fraction of them dead on the reference set: "units specialise with depth
// and training" at a glance. The reference step nearest the selected step is outlined; hover
// gives a cell's numbers; a click opens that layer at that step.

import { clear, el, option, percent } from "../dom.js";
import { HEAT_COLOURS, heatColour } from "../overview_values.js";
import { paintScale } from "../paint.js";
import { referenceStepFor, selectivityText } from "../reference_values.js";

const ROW_HEIGHT = 18;
// Columns share this many CSS pixels, each between the two widths; a cell at least
// LABELLED_WIDTH wide writes its value, and its step under the map.
const MAP_WIDTH = 640;
const MIN_CELL = 8;
const MAX_CELL = 56;
const LABELLED_WIDTH = 36;
const NO_VALUE = "#c8c8c8";

export const SELECTIVITY_METRICS = [
  { name: "selectivity", label: "mean class selectivity", value: (layer, i) => layer.mean_selectivity[i] },
  { name: "dead", label: "dead on the reference set", value: (layer, i) => layer.dead_fraction[i] },
];

// The value of `layer` at the run's reference step `step` under `metric`, or null.
export function cellValue(metric, layer, step) {
  const index = layer.steps.indexOf(step);
  const value = index < 0 ? null : metric.value(layer, index);
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

export class SelectivityMap {
  // onOpen(path, step): open a layer at a step in the grid.
  constructor({ onOpen }) {
    this.onOpen = onOpen;
    this.data = null;
    this.metric = SELECTIVITY_METRICS[0];
    this.metricSelect = el("select", { "aria-label": "Selectivity map shows", on: { change: () => {
      this.metric = SELECTIVITY_METRICS.find((metric) => metric.name === this.metricSelect.value);
      this.#render();
    } } }, SELECTIVITY_METRICS.map((metric) => option(metric.name, metric.label)));
    this.scale = el("canvas", { class: "overview-scale", width: "256", height: "1" });
    paintScale(this.scale, HEAT_COLOURS);
    this.title = el("span", { class: "overview-title" });
    this.names = el("div", { class: "head-map-names" });
    this.canvas = el("canvas", { class: "selectivity-map-canvas", "aria-label": "Heat map of layers by reference steps" });
    this.hover = el("div", { class: "overview-hover", hidden: true });
    this.marker = el("div", { class: "overview-marker", hidden: true });
    this.tooltip = el("div", { class: "head-map-tooltip", hidden: true, role: "status" });
    this.axis = el("div", { class: "selectivity-map-axis" });
    this.canvas.addEventListener("mousemove", (event) => this.#pointer(event, false));
    this.canvas.addEventListener("click", (event) => this.#pointer(event, true));
    this.canvas.addEventListener("mouseleave", () => {
      this.tooltip.hidden = true;
      this.hover.hidden = true;
    });
    this.element = el("div", { class: "head-map selectivity-map", hidden: true, "aria-label": "Class selectivity by depth and training" },
      el("div", { class: "overview-head" }, this.title, el("span", { class: "spacer" }),
        el("label", { class: "option" }, el("span", { class: "control-label", text: "Reference set" }), this.metricSelect),
        el("span", { class: "overview-legend" }, el("span", { text: "0" }), this.scale, el("span", { text: "1" })),
        el("span", { class: "legend-item" }, el("span", { class: "swatch selectivity-none" }), "no value")),
      el("div", { class: "head-map-body" }, this.names,
        el("div", { class: "head-map-stage" }, this.canvas, this.marker, this.hover, this.axis)),
      this.tooltip);
  }

  // The reference step nearest the selected step is outlined.
  setState({ step }) {
    if (step === this.step) return;
    this.step = step;
    this.#placeMarker();
  }

  #placeMarker() {
    const steps = this.data?.steps ?? [];
    const column = steps.indexOf(referenceStepFor(steps, this.step));
    this.marker.hidden = column < 0;
    Object.assign(this.marker.style, { left: `${column * this.cell}px`, width: `${this.cell}px`, height: `${this.canvas.height}px` });
  }

  // summary: ./reference_summary of the run, or null (none, or not loaded).
  setData(summary) {
    this.data = summary && summary.layers.length ? summary : null;
    this.#render();
  }

  #render() {
    this.element.hidden = !this.data;
    if (!this.data) return;
    const { steps, layers } = this.data;
    this.metricSelect.value = this.metric.name;
    this.title.textContent = `Reference set by depth and training: ${this.metric.label}, per layer (rows) and reference step (columns)`;
    clear(this.names).append(...layers.map((layer) => el("div", { class: "head-map-name", text: layer.layer, title: layer.layer })));
    const cell = Math.max(MIN_CELL, Math.min(MAX_CELL, Math.floor(MAP_WIDTH / Math.max(1, steps.length))));
    this.cell = cell;
    const canvas = this.canvas;
    canvas.width = Math.max(1, steps.length) * cell;
    canvas.height = layers.length * ROW_HEIGHT;
    canvas.style.width = `${canvas.width}px`;
    canvas.style.height = `${canvas.height}px`;
    canvas.dataset.rows = String(layers.length);
    canvas.dataset.columns = String(steps.length);
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.font = "10px Roboto, Arial, sans-serif";
    context.textAlign = "center";
    context.textBaseline = "middle";
    layers.forEach((layer, row) => {
      steps.forEach((step, column) => {
        const value = cellValue(this.metric, layer, step);
        const position = value === null ? null : Math.min(1, Math.max(0, value));
        context.fillStyle = position === null ? NO_VALUE : heatColour(position);
        context.fillRect(column * cell + 1, row * ROW_HEIGHT + 1, cell - 2, ROW_HEIGHT - 2);
        if (cell < LABELLED_WIDTH || position === null) return;
        context.fillStyle = position > 0.55 ? "#ffffff" : "#202124";
        context.fillText(value.toFixed(2), (column + 0.5) * cell, (row + 0.5) * ROW_HEIGHT + 0.5);
      });
    });
    this.#placeMarker();
    this.axis.style.width = `${canvas.width}px`;
    clear(this.axis).append(...(cell >= LABELLED_WIDTH
      ? steps.map((step) => el("span", { class: "selectivity-map-step", text: String(step) }))
      : [el("span", { text: `step ${steps[0]}` }), el("span", { text: steps.length > 1 ? String(steps.at(-1)) : "" })]));
  }

  #pointer(event, click) {
    const box = this.canvas.getBoundingClientRect();
    const row = Math.floor((event.clientY - box.top) / ROW_HEIGHT);
    const column = Math.floor((event.clientX - box.left) / this.cell);
    const layer = this.data?.layers[row];
    const step = this.data?.steps[column];
    if (!layer || step === undefined) {
      this.tooltip.hidden = true;
      this.hover.hidden = true;
      return;
    }
    if (click) {
      this.onOpen(layer.layer, step);
      return;
    }
    const [selectivity, dead] = SELECTIVITY_METRICS.map((metric) => cellValue(metric, layer, step));
    const lines = [`${layer.layer} · reference step ${step}`,
      selectivity === null ? (layer.classes ? "no selectivity: every kept unit is zero on every class" : "no labels: no selectivity")
        : `mean class selectivity ${selectivityText(selectivity)} over its ${layer.units_kept} kept units`,
      dead === null ? "no value" : `${percent(dead)} of them dead on the reference set`,
      "Click to open the layer at this step"];
    clear(this.tooltip).append(...lines.map((text, i) => el("div", { class: i ? "" : "tooltip-title", text })));
    this.tooltip.hidden = false;
    const area = this.element.getBoundingClientRect();
    this.tooltip.style.left = `${Math.max(0, event.clientX - area.left + 14)}px`;
    this.tooltip.style.top = `${event.clientY - area.top + 14}px`;
    Object.assign(this.hover.style, { left: `${column * this.cell}px`, top: `${row * ROW_HEIGHT}px`, width: `${this.cell}px` });
    this.hover.hidden = false;
  }
}
