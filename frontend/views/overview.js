// The overview of a run (./overview), in place of the grid: every layer in model order with
// its dead channels, sparsity and NaN/Inf at the selected step as bars, beside a heat map of
// layers × steps over the whole training, so where and when units die or blow up shows at a
// glance. Hover says what a cell holds; a click on a row or a cell opens that layer at that
// step in the grid.

import { clear, el, option, percent } from "../dom.js";
import {
  HEAT_COLOURS, HEAT_METRICS, columnValue, heatColour, heatColumns, heatMetric, heatPosition,
  metricMax, scaleLabels, stepIndex, summaryAt, summaryText,
} from "../overview_values.js";
import { headNote, headsFor } from "../head_values.js";
import { shownName } from "../layouts.js";
import { paintScale } from "../paint.js";

const ROW_HEIGHT = 18; // CSS pixels per layer, in the list and the heat map alike (style.css)
const MIN_COLUMN_WIDTH = 3; // CSS pixels; more steps than fit are grouped into columns

// Diagonal stripes in the theme's line colour: a cell without a value.
function noValuePattern(context, colour) {
  const tile = el("canvas", { width: "6", height: "6" });
  const stripes = tile.getContext("2d");
  stripes.strokeStyle = colour;
  stripes.lineWidth = 1.5;
  stripes.beginPath();
  stripes.moveTo(-1, 7);
  stripes.lineTo(7, -1);
  stripes.stroke();
  return context.createPattern(tile, "repeat");
}

function bar(kind, fraction, text) {
  const node = el("span", { class: `overview-bar ${kind}` }, el("span", { class: "track" }, el("span", { class: "fill" })),
    el("span", { class: "value", text }));
  node.style.setProperty("--value", Math.min(1, Math.max(0, fraction ?? 0)));
  return node;
}

export class OverviewView {
  // onOpen(path, step): open a layer at a step in the grid; onMetric(name): the heat map's
  // metric was chosen (overview_values.js HEAT_METRICS).
  constructor({ onOpen, onMetric }) {
    this.onOpen = onOpen;
    this.data = null;
    this.step = null;
    this.layer = null;
    this.metric = heatMetric();
    this.columns = [];
    this.metricSelect = el("select", { "aria-label": "Heat map shows", on: { change: () => onMetric(this.metricSelect.value) } },
      HEAT_METRICS.map((metric) => option(metric.name, metric.label)));
    this.scale = el("canvas", { class: "overview-scale", width: "256", height: "1" });
    paintScale(this.scale, HEAT_COLOURS);
    this.scaleLow = el("span");
    this.scaleHigh = el("span");
    this.title = el("span", { class: "overview-title" });
    this.stepHead = el("span");
    this.firstStep = el("span");
    this.axisLabel = el("span");
    this.lastStep = el("span");
    this.message = el("div", { class: "overview-message", hidden: true });
    this.rows = el("div", { class: "overview-rows", role: "list", "aria-label": "Layers at the selected step" });
    this.heat = el("canvas", { class: "overview-heat", "aria-label": "Heat map of layers over steps" });
    this.marker = el("div", { class: "overview-marker", hidden: true });
    this.band = el("div", { class: "overview-band", hidden: true });
    this.hover = el("div", { class: "overview-hover", hidden: true });
    this.heatStage = el("div", { class: "overview-stage" }, this.heat, this.band, this.marker, this.hover);
    this.heat.addEventListener("mousemove", (event) => this.#pointer(event, false));
    this.heat.addEventListener("click", (event) => this.#pointer(event, true));
    this.heat.addEventListener("mouseleave", () => this.#hideHover());
    this.tooltip = el("div", { class: "tooltip", hidden: true, role: "status" });
    this.body = el("div", { class: "overview-body" },
      el("div", { class: "overview-columns overview-row-grid" },
        this.stepHead, el("span", { text: "dead" }), el("span", { text: "sparsity" }), el("span", { text: "NaN/Inf" })),
      el("div", { class: "overview-columns overview-axis" }, this.firstStep, this.axisLabel, this.lastStep),
      this.rows, this.heatStage);
    this.element = el("section", { class: "overview", hidden: true, "aria-label": "Overview of the run" },
      el("div", { class: "overview-head" }, this.title, el("span", { class: "spacer" }),
        el("label", { class: "option" }, el("span", { class: "control-label", text: "Heat map" }), this.metricSelect),
        el("span", { class: "overview-legend" }, this.scaleLow, this.scale, this.scaleHigh),
        el("span", { class: "legend-item" }, el("span", { class: "swatch overview-none" }), "no value")),
      this.message, this.body, this.tooltip);
    new ResizeObserver(() => this.#drawHeat()).observe(this.heatStage);
  }

  // Another view's element (the head map), shown above the layer list.
  addSection(element) {
    this.element.insertBefore(element, this.body);
  }

  setVisible(visible) {
    const appearing = visible && this.element.hidden;
    this.element.hidden = !visible;
    // The heat map is drawn at the width it gets, known once it is shown.
    if (appearing) this.#drawHeat();
  }

  // overview: {data: ./overview or null while it loads, error: the server's message or null}.
  setData({ data, error }) {
    this.data = data;
    this.message.hidden = Boolean(data);
    this.body.hidden = !data;
    this.message.className = `overview-message ${error ? "error" : "info"}`;
    this.message.textContent = error ? `No overview for this run: ${error}` : "Loading the overview of every layer…";
    this.#render();
  }

  // state: the model's ViewState (run, layer, step, heat).
  setState({ run, layer, step, heat }) {
    const changed = run !== this.run || layer !== this.layer || step !== this.step || heat !== this.metric.name;
    [this.run, this.layer, this.step, this.metric] = [run, layer, step, heatMetric(heat)];
    this.metricSelect.value = this.metric.name;
    if (changed) this.#render();
  }

  #stepIndex() {
    return this.data ? stepIndex(this.data.steps, this.step) : -1;
  }

  #render() {
    const data = this.data;
    if (!data) return;
    const index = this.#stepIndex();
    const steps = data.steps;
    this.title.textContent = `Overview of ${this.run ?? "the run"}: ${data.layers.length} layers, ${steps.length} steps`;
    this.stepHead.textContent = index >= 0 ? `layer, at step ${steps[index]}` : "layer";
    this.firstStep.textContent = steps.length ? `step ${steps[0]}` : "";
    this.axisLabel.textContent = `${this.metric.label} over the steps`;
    this.lastStep.textContent = steps.length > 1 ? String(steps.at(-1)) : "";
    clear(this.rows).append(...data.layers.map((layer) => this.#row(layer, index)));
    this.#drawHeat();
  }

  #row(layer, index) {
    const summary = summaryAt(layer, index);
    const nonfinite = summary ? summary.nan_count + summary.inf_count : 0;
    const step = this.data.steps[index];
    // An attention layer's "dead" are its dead heads, not channels (overview_values.js).
    const heads = headsFor(this.data, layer.layer, step);
    const said = heads ? `${headNote(heads).text} (${headNote(heads).title})`
      : summary && summaryText(summary, layer.channels_total);
    const dead = summary && (summary.dead_heads ?? summary.dead_channels);
    const row = el("div", {
      class: `overview-row overview-row-grid${layer.layer === this.layer ? " selected" : ""}`,
      role: "listitem",
      tabindex: "0",
      "data-layer": layer.layer,
      title: `${shownName(layer)} (${layer.layer_class}${shownName(layer) === layer.layer ? "" : `, ${layer.layer}`})\n` +
        (said ? `step ${step}: ${said}` : `no summary at step ${step}`) +
        "\nClick to open it at this step",
      on: {
        click: () => this.onOpen(layer.layer, step),
        keydown: (event) => {
          if (event.key === "Enter") this.onOpen(layer.layer, step);
        },
      },
    },
    el("span", { class: "overview-name", text: shownName(layer) }),
    summary ? bar("dead", summary.dead_fraction, `${dead}/${layer.channels_total}`) : el("span", { text: "–" }),
    summary ? bar("sparsity", summary.zero_fraction, percent(summary.zero_fraction)) : el("span", { text: "–" }),
    el("span", { class: `overview-nonfinite${nonfinite ? " alert" : ""}`, text: nonfinite ? String(nonfinite) : "" }));
    return row;
  }

  // The heat map at the stage's width: one cell per layer and column of steps.
  #drawHeat() {
    const data = this.data;
    if (!data || this.element.hidden) return;
    const width = Math.max(1, Math.floor(this.heatStage.clientWidth));
    const layers = data.layers;
    const height = layers.length * ROW_HEIGHT;
    this.columns = heatColumns(data.steps.length, width / MIN_COLUMN_WIDTH);
    const max = metricMax(this.metric, layers, data.steps.length);
    const [low, high] = scaleLabels(this.metric, max);
    this.scaleLow.textContent = low;
    this.scaleHigh.textContent = high;
    const canvas = this.heat;
    canvas.width = width;
    canvas.height = height;
    canvas.style.height = `${height}px`;
    canvas.dataset.columns = String(this.columns.length);
    canvas.dataset.rows = String(layers.length);
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, width, height);
    const columnWidth = width / Math.max(1, this.columns.length);
    const gap = columnWidth >= 6 ? 1 : 0;
    const none = noValuePattern(context, getComputedStyle(this.element).getPropertyValue("--faint"));
    layers.forEach((layer, row) => {
      this.columns.forEach((range, column) => {
        const cell = columnValue(this.metric, layer, range);
        context.fillStyle = cell ? heatColour(heatPosition(this.metric, cell.value, max)) : none;
        const x = Math.round(column * columnWidth);
        context.fillRect(x, row * ROW_HEIGHT + 1, Math.round((column + 1) * columnWidth) - x - gap, ROW_HEIGHT - 2);
      });
    });
    this.#placeMarks(columnWidth);
  }

  // The selected step's column and the selected layer's row.
  #placeMarks(columnWidth) {
    const index = this.#stepIndex();
    const column = this.columns.findIndex(([start, end]) => index >= start && index < end);
    this.marker.hidden = column < 0;
    this.marker.style.left = `${column * columnWidth}px`;
    this.marker.style.width = `${columnWidth}px`;
    const row = this.data.layers.findIndex((layer) => layer.layer === this.layer);
    this.band.hidden = row < 0;
    this.band.style.top = `${row * ROW_HEIGHT}px`;
  }

  // The cell under the pointer: its tooltip, or (click) that layer at that step in the grid.
  #pointer(event, click) {
    const box = this.heat.getBoundingClientRect();
    const row = Math.floor((event.clientY - box.top) / ROW_HEIGHT);
    const column = Math.floor(((event.clientX - box.left) / box.width) * this.columns.length);
    const layer = this.data?.layers[row];
    const range = this.columns[column];
    if (!layer || !range) {
      this.#hideHover();
      return;
    }
    const cell = columnValue(this.metric, layer, range);
    const index = cell ? cell.index : range[0];
    const step = this.data.steps[index];
    if (click) {
      this.onOpen(layer.layer, step);
      return;
    }
    const summary = summaryAt(layer, index);
    const grouped = range[1] - range[0] > 1;
    const where = grouped ? `steps ${this.data.steps[range[0]]}–${this.data.steps[range[1] - 1]}, the most at step ${step}`
      : `step ${step}`;
    const lines = [shownName(layer), where, summary ? summaryText(summary, layer.channels_total) : "no value"];
    clear(this.tooltip).append(...lines.map((text, i) => el("div", { class: i ? "" : "tooltip-title", text })));
    this.tooltip.hidden = false;
    const area = this.element.getBoundingClientRect();
    const left = Math.min(event.clientX - area.left + 14, area.width - this.tooltip.offsetWidth - 6);
    this.tooltip.style.left = `${Math.max(0, left)}px`;
    this.tooltip.style.top = `${event.clientY - area.top + 14}px`;
    const columnWidth = box.width / this.columns.length;
    Object.assign(this.hover.style, {
      left: `${column * columnWidth}px`, top: `${row * ROW_HEIGHT}px`, width: `${columnWidth}px`,
    });
    this.hover.hidden = false;
  }

  #hideHover() {
    this.tooltip.hidden = true;
    this.hover.hidden = true;
  }
}
