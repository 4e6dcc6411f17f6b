// The grid canvases (one, or three when comparing steps) with outlines for flagged,
// hovered and selected tiles. Canvases stay at the grid's own resolution; CSS enlarges them
// by an integer zoom (the --zoom variable) so pixels stay square and crisp.

import { clear, el } from "./dom.js";
import { putImage } from "./paint.js";

const MAX_ZOOM = 64;
const GAP = 16; // between panels, as in style.css
const CAPTION = 24; // a panel's caption line

function placed(className, rect, title) {
  const node = el("div", { class: className, title });
  for (const key of ["x", "y", "width", "height"]) node.style.setProperty(`--${key}`, rect[key]);
  return node;
}

export class GridView {
  constructor({ onHover, onLeave, onClick }) {
    this.onHover = onHover;
    this.onClick = onClick;
    this.zoomMode = "fit";
    this.zoom = 1;
    this.panels = [];
    this.size = { width: 1, height: 1 };
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

  showMessage(text, kind = "info") {
    this.message.hidden = false;
    this.message.className = `grid-message ${kind}`;
    clear(this.message).append(...(Array.isArray(text) ? text : [text]));
    this.panelsElement.hidden = true;
    this.tooltip.hidden = true;
  }

  // panels: [{kind, step, title, image: ImageData, marks: [{rect, kind, title}]}]
  render(panels, selected) {
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
      this.panelsElement.append(el("figure", { class: `grid-panel ${panel.kind}`, "data-step": panel.step },
        el("figcaption", { text: panel.title, title: panel.title }), stage));
      return { canvas, hover, selection };
    });
    this.setSelected(selected);
    this.layout();
  }

  #pointer(event, index, canvas, click) {
    const box = canvas.getBoundingClientRect();
    const x = Math.floor(((event.clientX - box.left) / box.width) * canvas.width);
    const y = Math.floor(((event.clientY - box.top) / box.height) * canvas.height);
    if (x < 0 || y < 0 || x >= canvas.width || y >= canvas.height) return;
    if (click) this.onClick(index, x, y);
    else this.onHover(index, x, y, event);
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

  showTooltip(lines, event) {
    clear(this.tooltip).append(...lines.map((line) => el("div", { class: line.class || "", text: line.text ?? line })));
    this.tooltip.hidden = false;
    const area = this.element.getBoundingClientRect();
    const left = event.clientX - area.left + this.element.scrollLeft + 14;
    const top = event.clientY - area.top + this.element.scrollTop + 14;
    const maxLeft = this.element.scrollLeft + area.width - this.tooltip.offsetWidth - 6;
    this.tooltip.style.left = `${Math.max(0, Math.min(left, maxLeft))}px`;
    this.tooltip.style.top = `${top}px`;
  }

  hideTooltip() {
    this.tooltip.hidden = true;
  }

  // Integer zoom and panel columns: the largest zoom at which every panel fits ("fit"), or
  // the zoom chosen with as many panels side by side as the width allows.
  layout() {
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
