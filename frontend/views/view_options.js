// The toolbar of view choices: colour map, scaling (and fixed range), comparison step, zoom,
// flag outlines, export.

import { COLORMAPS } from "../colormaps.js";
import { clear, el, option } from "../dom.js";
import { TILE_ORDERS } from "../reference_values.js";
import { SCALINGS } from "../scaling.js";

const ZOOMS = ["fit", 1, 2, 3, 4, 6, 8, 12, 16];
const VIDEO_TITLE = "Download the grid at every step, as a WebM video";

function labelled(text, control, className = "") {
  return el("label", { class: `option ${className}` }, el("span", { class: "control-label", text }), control);
}

export class ViewOptions {
  constructor({ onChange, onZoom, onMarks, onExportPng, onExportVideo, onExportJson }) {
    this.onChange = onChange;
    this.cmap = el("select", { "aria-label": "Colour map", title: "Colour map (diverging: white at 0, blue below, red above)", on: { change: () => onChange({ cmap: this.cmap.value }) } },
      COLORMAPS.map((c) => option(c.name, c.label)));
    this.scale = el("select", { "aria-label": "Scaling", on: { change: () => onChange({ scale: this.scale.value }) } },
      SCALINGS.map((s) => option(s.name, s.label)));
    const range = () => onChange({ lo: this.#number(this.low), hi: this.#number(this.high) });
    this.low = el("input", { type: "number", step: "any", class: "range-input", "aria-label": "Fixed range low", placeholder: "low", on: { change: range } });
    this.high = el("input", { type: "number", step: "any", class: "range-input", "aria-label": "Fixed range high", placeholder: "high", on: { change: range } });
    this.fixed = el("span", { class: "fixed-range" }, this.low, "…", this.high);
    this.compareToggle = el("input", { type: "checkbox", "aria-label": "Compare with another step", on: { change: () => this.#compareChanged() } });
    this.compareStep = el("select", { "aria-label": "Step to compare with", on: { change: () => this.#compareChanged() } });
    this.zoom = el("select", { "aria-label": "Zoom", on: { change: () => onZoom(this.zoom.value) } },
      ZOOMS.map((z) => option(z, z === "fit" ? "fit" : `${z}×`)));
    this.marks = el("input", { type: "checkbox", checked: true, on: { change: () => onMarks(this.marks.checked) } });
    this.order = el("select", { "aria-label": "Tile order", on: { change: () => onChange({ order: this.order.value }) } },
      TILE_ORDERS.map((o) => option(o.name, o.label)));
    this.orderLabel = labelled("Tiles by", this.order);
    this.element = el("div", { class: "view-options" },
      labelled("Colours", this.cmap),
      labelled("Scale", this.scale),
      this.fixed,
      el("label", { class: "option compare" }, this.compareToggle, el("span", { class: "control-label", text: "Compare with" }), this.compareStep),
      labelled("Zoom", this.zoom),
      this.orderLabel,
      el("label", { class: "option", title: "Outline silent (all zero in this sample), dead (all zero in every sample), saturated and NaN/Inf channels" }, this.marks, el("span", { class: "control-label", text: "Flags" })),
      el("span", { class: "spacer" }),
      el("span", { class: "exports" },
        el("button", { class: "export", title: "Download the grid as shown, as PNG", text: "PNG", on: { click: onExportPng } }),
        this.video = el("button", { class: "export", title: VIDEO_TITLE, text: "Video", on: { click: onExportVideo } }),
        el("button", { class: "export", title: "Download this step's statistics as JSON", text: "JSON", on: { click: onExportJson } })));
  }

  // The video plays logged steps: not while one records, nor in the live view.
  setVideoAvailable(available, reason = VIDEO_TITLE) {
    this.video.disabled = !available;
    this.video.title = reason;
  }

  // Tiles can be sorted by what the layer's reference steps say of each unit: only for a layer
  // drawn one tile per channel with labelled reference steps (entry: its ./reference_tags entry).
  setReference(entry, layer) {
    const usable = Boolean(entry?.steps.length && entry.classes > 0 && layer?.layout === "channels");
    this.order.disabled = !usable;
    this.orderLabel.title = usable ? "Sort the tiles by their class selectivity on the reference set (most selective first), or by the class they prefer"
      : "Sorting the tiles needs reference steps with labels (ActivationsCallback(reference=(x, y))) on a layer drawn one tile per channel";
  }

  #number(input) {
    return input.value === "" ? null : Number(input.value);
  }

  #compareChanged() {
    this.onChange({ compare: this.compareToggle.checked ? Number(this.compareStep.value) : null });
  }

  setSteps(steps, current) {
    const value = this.compareStep.value;
    clear(this.compareStep).append(...steps.map((s) => option(s.step, `step ${s.step}`)));
    const fallback = steps.find((s) => s.step !== current) || steps[0];
    this.compareStep.value = steps.some((s) => String(s.step) === value) ? value : String(fallback?.step ?? "");
    this.compareToggle.disabled = steps.length < 2;
  }

  sync(state) {
    this.cmap.value = state.cmap;
    this.order.value = state.order;
    this.scale.value = state.scale;
    this.fixed.hidden = state.scale !== "fixed";
    if (document.activeElement !== this.low) this.low.value = state.lo ?? "";
    if (document.activeElement !== this.high) this.high.value = state.hi ?? "";
    this.compareToggle.checked = state.compare !== null;
    if (state.compare !== null) this.compareStep.value = String(state.compare);
    this.compareStep.disabled = state.compare === null;
  }
}
