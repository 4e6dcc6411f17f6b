// The colour bar: the current map with the real values its ends and middle stand for.

import { colormap, isDiverging } from "../colormaps.js";
import { el, fmt } from "../dom.js";
import { DEAD_HEAD_MEANING } from "../head_values.js";
import { paintScale } from "../paint.js";
import { SCALINGS, centred } from "../scaling.js";

function usable(range) {
  return range && range[0] !== null ? range : null;
}

export class ColorBar {
  constructor() {
    this.canvas = el("canvas", { class: "colorbar-gradient", width: "256", height: "1" });
    this.low = el("span", { class: "tick low" });
    this.middle = el("span", { class: "tick middle" });
    this.high = el("span", { class: "tick high" });
    this.note = el("span", { class: "colorbar-note" });
    this.nonfinite = el("span", { class: "swatch" });
    // Channel outlines; an attention layer's heads get the dead-head one only (channel_flags.js).
    this.silent = el("span", { class: "legend-item", title: "all zero in this sample" }, el("span", { class: "swatch outline silent" }), "silent");
    this.deadLabel = el("span", { text: "dead" });
    this.dead = el("span", { class: "legend-item" }, el("span", { class: "swatch outline dead" }), this.deadLabel);
    this.saturated = el("span", { class: "legend-item" }, el("span", { class: "swatch outline saturated" }), "saturated");
    this.element = el("div", { class: "colorbar", "aria-label": "Colour bar" },
      el("div", { class: "colorbar-scale" }, this.canvas, el("div", { class: "ticks" }, this.low, this.middle, this.high)),
      el("div", { class: "colorbar-legend" },
        el("span", { class: "legend-item" }, this.nonfinite, "NaN/Inf"),
        this.silent, this.dead, this.saturated, this.note));
  }

  setVisible(visible) {
    this.element.hidden = !visible;
  }

  // What the view's tiles share; per channel, a single-tile layer's own range or the selected
  // channel's, else a note (view: model.js; display: {cmap, scale, channel}).
  showView(view, { cmap, scale, channel }) {
    const { a, shared } = view;
    const heads = a.geometry.layout.unit === "head";
    this.silent.hidden = heads;
    this.saturated.hidden = heads;
    this.deadLabel.textContent = heads ? "dead head" : "dead";
    this.dead.title = heads ? DEAD_HEAD_MEANING : "all zero in every probe sample";
    let own = null;
    let note = `per ${a.geometry.layout.unit}: each tile spans its own min…max`;
    let hint = "hover a tile for its values";
    if (!shared && a.geometry.tiles === 1) {
      [own, note, hint] = [a.ranges[0], `this ${a.source === "live" ? "input" : "sample"}'s range`, ""];
    } else if (!shared && channel !== null && a.geometry.layout.tiled && a.stats.channels.includes(channel)) {
      [own, note, hint] = [a.ranges[a.geometry.tileOfChannel(a.stats.channels, channel)], `${a.geometry.layout.unit} ${channel}'s own range`, ""];
    }
    const range = shared || usable(own);
    if (shared) [note, hint] = [SCALINGS.find((s) => s.name === scale).label, ""];
    this.update(cmap, range && (isDiverging(cmap) ? centred(range) : range), note, hint);
  }

  // Per channel scaling: the range of the tile under the pointer (info: Geometry.describe).
  showTile(frame, info, { cmap, scale }) {
    if (scale !== "channel" || !frame.geometry.layout.tiled) return;
    const range = usable(frame.ranges[info.tile]);
    if (range) this.update(cmap, isDiverging(cmap) ? centred(range) : range, `${frame.geometry.layout.unit} ${info.channel}'s own range`);
  }

  // range: the [low, high] the map spans, or null when each tile has its own (labels say so);
  // hint: a tip for the page only, left out of exported images.
  update(cmapName, range, note, hint = "") {
    paintScale(this.canvas, cmapName);
    this.nonfinite.style.background = colormap(cmapName).nonfiniteCss;
    const diverging = isDiverging(cmapName);
    if (range) {
      this.low.textContent = fmt(range[0]);
      this.middle.textContent = fmt(diverging ? 0 : (range[0] + range[1]) / 2);
      this.high.textContent = fmt(range[1]);
    } else {
      this.low.textContent = diverging ? "−max |v|" : "min";
      this.middle.textContent = diverging ? "0" : "";
      this.high.textContent = diverging ? "+max |v|" : "max";
    }
    this.noteText = note;
    this.note.textContent = hint ? `${note} (${hint})` : note;
  }

  // What an exported image needs to carry of this bar.
  legend(caption) {
    return {
      caption: this.noteText ? `${caption} · ${this.noteText}` : caption,
      gradient: this.canvas,
      labels: [this.low.textContent, this.middle.textContent, this.high.textContent],
    };
  }
}
