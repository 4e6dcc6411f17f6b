// The grid canvases (one, or three when comparing: current, compared, difference) with
// outlines for flagged, hovered and selected tiles, and a tooltip saying what the pointer is
// over. Canvases stay at the grid's own resolution; CSS enlarges them by an integer zoom (the
// --zoom variable) so pixels stay square and crisp.

import { channelFlags, flagText, markKind } from "../channel_flags.js";
import { isDiverging } from "../colormaps.js";
import { describePixel } from "../describe.js";
import { difference } from "../difference.js";
import { clear, el, fmt } from "../dom.js";
import { paint, putImage } from "../paint.js";
import { tileRanges } from "../scaling.js";

const MAX_ZOOM = 64;
const GAP = 16; // between panels, as in style.css
const CAPTION = 24; // a panel's caption line

function placed(className, rect, title) {
  const node = el("div", { class: className, title });
  for (const key of ["x", "y", "width", "height"]) node.style.setProperty(`--${key}`, rect[key]);
  return node;
}

// Outlines of the silent, dead, saturated and NaN/Inf channels of a frame (frames.js).
function flagMarks(frame) {
  if (!frame.geometry.layout.tiled) return [];
  const marks = [];
  frame.stats.channels.forEach((channel) => {
    const f = channelFlags(frame, channel);
    const kind = markKind(f);
    if (!kind) return;
    const rect = frame.geometry.channelRect(frame.stats.channels, channel);
    if (rect) marks.push({ kind, rect, title: `${frame.geometry.layout.unit} ${channel}: ${flagText(f)}` });
  });
  return marks;
}

// current − compared, on the diverging map centred on zero.
function differencePanel(a, b, scale) {
  const diff = difference(a, b);
  const perTile = scale === "channel";
  const ranges = perTile ? diff.ranges : diff.ranges.map(() => [-diff.largest, diff.largest]);
  const note = perTile ? "each tile ±its max |Δ|" : `±${fmt(diff.largest)}`;
  const blanked = diff.mismatched ? `; ${diff.mismatched} tiles show other channels: blank` : "";
  return {
    kind: "difference",
    title: `${a.label} − ${b.label} (${note})${blanked}`,
    image: paint(diff.values, diff.codes, a.geometry, ranges, "diverging"),
    marks: [],
  };
}

export class GridView {
  // onPoint({lines, info, frame}): the pointer is over a pixel of `frame`; onChannel(channel):
  // a click chose a channel.
  constructor({ onPoint, onLeave, onChannel }) {
    this.onPoint = onPoint;
    this.onChannel = onChannel;
    this.view = null;
    this.showMarks = true;
    this.zoomMode = "fit";
    this.zoom = 1;
    this.panels = [];
    this.size = { width: 1, height: 1 };
    this.shape = null; // panel count and size the zoom was last chosen for
    this.panelsElement = el("div", { class: "grid-panels" });
    this.message = el("div", { class: "grid-message", hidden: true });
    this.tooltip = el("div", { class: "tooltip", hidden: true, role: "status" });
    this.element = el("div", { class: "grid-area" }, this.message, this.panelsElement, this.tooltip);
    this.element.addEventListener("mouseleave", () => {
      this.tooltip.hidden = true;
      this.setHover(null);
      onLeave();
    });
    new ResizeObserver(() => this.layout()).observe(this.element);
  }

  setZoomMode(mode) {
    this.zoomMode = mode;
    this.layout();
  }

  setMarks(on) {
    this.showMarks = on;
    if (this.view) this.#render();
  }

  showMessage(content, kind = "info") {
    this.view = null;
    this.message.hidden = false;
    this.message.className = `grid-message ${kind}`;
    clear(this.message).append(...(Array.isArray(content) ? content : [content]));
    this.panelsElement.hidden = true;
    this.tooltip.hidden = true;
  }

  // view: {a, b, shared} (model.js); display: {cmap, scale, channel}.
  show(view, display) {
    this.view = view;
    this.display = display;
    this.#render();
  }

  #render() {
    const { a, b, shared } = this.view;
    const { cmap, scale } = this.display;
    const diverging = isDiverging(cmap);
    const panels = [a, b].filter(Boolean).map((frame) => ({
      kind: frame === a ? "current" : "compare",
      frame,
      title: frame.label,
      image: paint(frame.values, frame.grid.codes, frame.geometry,
        tileRanges(scale, frame.ranges, frame.geometry.tiles, shared, diverging), cmap),
      marks: this.showMarks ? flagMarks(frame) : [],
    }));
    if (b) panels.push(differencePanel(a, b, scale));
    if (panels.length === 1) panels[0].title = a.caption;
    this.#panels(panels);
  }

  #selectedRect() {
    const { channel } = this.display;
    if (channel === null) return null;
    const { a } = this.view;
    return a.geometry.outline(a.stats.channels, channel);
  }

  // panels: [{kind, frame, title, image: ImageData, marks: [{rect, kind, title}]}]
  #panels(panels) {
    this.message.hidden = true;
    this.panelsElement.hidden = false;
    this.size = { width: panels[0].image.width, height: panels[0].image.height };
    clear(this.panelsElement);
    this.panels = panels.map((panel, index) => {
      const canvas = el("canvas", { class: "grid-canvas", "data-panel": panel.kind });
      putImage(canvas, panel.image);
      canvas.style.setProperty("--w", canvas.width);
      canvas.style.setProperty("--h", canvas.height);
      const marks = el("div", { class: "marks" }, panel.marks.map((mark) => placed(`mark ${mark.kind}`, mark.rect, mark.title)));
      const hover = el("div", { class: "mark hover", hidden: true });
      const selection = el("div", { class: "mark selected", hidden: true });
      const stage = el("div", { class: "stage" }, canvas, marks, selection, hover);
      stage.addEventListener("mousemove", (event) => this.#pointer(event, index, canvas, false));
      stage.addEventListener("click", (event) => this.#pointer(event, index, canvas, true));
      const source = panel.frame?.source;
      this.panelsElement.append(el("figure", {
        class: `grid-panel ${panel.kind}`, "data-source": source, "data-step": source === "logged" ? panel.frame.step : null,
      }, el("figcaption", { text: panel.title, title: panel.title }), stage));
      return { canvas, hover, selection };
    });
    this.setSelected(this.#selectedRect());
    // The zoom depends on the area's size (the ResizeObserver lays out again when it
    // changes), the zoom mode and the panels' count and size: a new step of the same layer
    // keeps them, and measuring the area would force the page's layout on every step.
    const shape = `${panels.length} ${this.size.width} ${this.size.height}`;
    if (shape !== this.shape) this.layout();
  }

  #pointer(event, index, canvas, click) {
    const box = canvas.getBoundingClientRect();
    const x = Math.floor(((event.clientX - box.left) / box.width) * canvas.width);
    const y = Math.floor(((event.clientY - box.top) / box.height) * canvas.height);
    if (x < 0 || y < 0 || x >= canvas.width || y >= canvas.height || !this.view) return;
    const { a, b } = this.view;
    if (click) {
      const info = a.geometry.describe(x, y, a.stats.channels);
      if (info) this.onChannel(info.channel);
      return;
    }
    const shown = index === 1 && b ? b : a;
    const info = shown.geometry.describe(x, y, shown.stats.channels);
    if (!info) {
      this.#hideTooltip();
      this.setHover(null);
      return;
    }
    const lines = describePixel(info, y * a.geometry.width + x, a, b, shown);
    this.setHover(a.geometry.outline(a.stats.channels, info.channel));
    this.#showTooltip(lines, event);
    this.onPoint({ lines, info, frame: shown });
  }

  #placeOutline(node, rect) {
    node.hidden = !rect;
    if (rect) for (const key of ["x", "y", "width", "height"]) node.style.setProperty(`--${key}`, rect[key]);
  }

  setHover(rect) {
    for (const panel of this.panels) this.#placeOutline(panel.hover, rect);
  }

  setSelected(rect) {
    for (const panel of this.panels) this.#placeOutline(panel.selection, rect);
  }

  #showTooltip(lines, event) {
    clear(this.tooltip).append(...lines.map((line) => el("div", { class: line.class || "", text: line.text ?? line })));
    this.tooltip.hidden = false;
    const area = this.element.getBoundingClientRect();
    const left = event.clientX - area.left + this.element.scrollLeft + 14;
    const top = event.clientY - area.top + this.element.scrollTop + 14;
    const maxLeft = this.element.scrollLeft + area.width - this.tooltip.offsetWidth - 6;
    this.tooltip.style.left = `${Math.max(0, Math.min(left, maxLeft))}px`;
    this.tooltip.style.top = `${top}px`;
  }

  #hideTooltip() {
    this.tooltip.hidden = true;
  }

  // Integer zoom and panel columns: the largest zoom at which every panel fits ("fit"), or
  // the zoom chosen with as many panels side by side as the width allows.
  layout() {
    this.shape = `${this.panels.length} ${this.size.width} ${this.size.height}`;
    const count = Math.max(1, this.panels.length);
    const style = getComputedStyle(this.element);
    const width = this.element.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 4;
    const height = this.element.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom) - 4;
    let zoom = Number(this.zoomMode);
    let columns = Math.max(1, Math.min(count, Math.floor((width + GAP) / (this.size.width * zoom + GAP))));
    if (this.zoomMode === "fit") {
      zoom = 0;
      for (let candidate = count; candidate >= 1; candidate--) {
        const rows = Math.ceil(count / candidate);
        const perWidth = (width - (candidate - 1) * GAP) / candidate;
        const perHeight = (height - rows * CAPTION - (rows - 1) * GAP) / rows;
        const fits = Math.floor(Math.min(perWidth / this.size.width, perHeight / this.size.height));
        if (fits > zoom) [zoom, columns] = [fits, candidate];
      }
    }
    this.zoom = Math.max(1, Math.min(MAX_ZOOM, zoom || 1));
    this.panelsElement.style.setProperty("--zoom", this.zoom);
    this.panelsElement.style.setProperty("--columns", columns);
    this.element.dataset.zoom = String(this.zoom);
  }

  canvases() {
    return this.panels.map((panel) => panel.canvas);
  }
}
