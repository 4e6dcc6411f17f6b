// The heads of an attention layer (`path:attention`, `path:attention_map`) in the details
// column: a head picker (one head, or all), the picked head's numbers in this probe sample
// and its dead mark (the overview's "heads"), and, on an `attention` layer, one query's
// attention over the keys: the row of a head's tile under the pointer (in the grid or the
// enlarged tile), folded onto the patch grid over the probe picture when the keys lie on
// one, else as bars over the keys with their token labels. The picked head itself is shown
// enlarged (and, for a map, over the picture) by the channel panel below.

import { colormap } from "../colormaps.js";
import { clear, el, fmt, option, percent } from "../dom.js";
import { DEAD_HEAD_MEANING, headInSample } from "../head_values.js";
import { paintScale, putImage } from "../paint.js";
import { queryAttention } from "../query_values.js";

const BOX = 270; // CSS pixels: the widest the query's picture is drawn
const OWN_PATCH = "#ff1744"; // the outline of the query's own patch

// The patches' masses as an image on the colour map, 0 to the row's largest.
function gridImage(grid, cmapName) {
  const table = colormap(cmapName).table;
  const image = new ImageData(grid.columns, grid.rows);
  const pixels = new Uint32Array(image.data.buffer);
  grid.values.forEach((value, index) => {
    const position = grid.high > 0 && Number.isFinite(value) ? Math.min(1, Math.max(0, value / grid.high)) : 0;
    pixels[index] = table[Math.round(position * 255)];
  });
  return image;
}

// `picture` (an <img> or a canvas) once it can be drawn, else null.
function loaded(picture) {
  if (!picture) return null;
  if (picture instanceof HTMLImageElement) return picture.complete && picture.naturalWidth ? picture : null;
  return picture;
}

export class HeadPanel {
  // onHead(head): a head was picked (null: all heads).
  constructor({ onHead }) {
    this.layer = null;
    this.layers = [];
    this.frame = null;
    this.point = null; // {head, row}: the query shown
    this.select = el("select", { class: "head-picker", "aria-label": "Head", on: {
      change: () => onHead(this.select.value === "" ? null : Number(this.select.value)),
    } });
    this.numbers = el("dl", { class: "head-numbers" });
    this.mark = el("span", { class: "head-dead", text: "dead head", hidden: true,
      title: DEAD_HEAD_MEANING });
    this.queryCaption = el("div", { class: "query-caption" });
    this.queryNote = el("div", { class: "query-note", hidden: true });
    this.queryCanvas = el("canvas", { class: "query-canvas" });
    this.scale = el("canvas", { class: "query-scale", width: "256", height: "1" });
    this.scaleHigh = el("span");
    this.opacity = el("input", {
      type: "range", min: "0", max: "1", step: "0.05", value: "0.55", "aria-label": "Attention over the picture: opacity",
      on: { input: () => this.#query() },
    });
    this.queryStage = el("div", { class: "query-stage", hidden: true },
      el("div", { class: "channel-stage" }, this.queryCanvas),
      el("div", { class: "query-legend" }, el("span", { text: "attention 0" }), this.scale, this.scaleHigh),
      this.ownLegend = el("div", { class: "query-legend" }, el("span", { class: "query-own" }), "the query's own patch"),
      this.opacityLabel = el("label", { class: "opacity" }, "picture", this.opacity, "attention"));
    this.prefix = el("div", { class: "query-prefix" });
    this.bars = el("div", { class: "query-bars", role: "list", hidden: true });
    this.queryHint = el("div", { class: "empty-note" });
    this.query = el("div", { class: "query-box" },
      el("div", { class: "section-title", text: "One query's attention" }),
      this.queryHint, this.queryCaption, this.queryNote, this.queryStage, this.prefix, this.bars);
    this.element = el("section", { class: "panel-section head-panel", hidden: true, "aria-label": "Attention heads" },
      el("div", { class: "section-title" }, "Heads", el("span", { class: "spacer" }), this.mark),
      el("label", { class: "head-pick" }, el("span", { class: "control-label", text: "Show" }), this.select),
      this.numbers, this.query);
  }

  // The layer shown (a LayerEntry) and the run's layers: the panel shows for heads only.
  setLayer(layer, layers) {
    const heads = layer && layer.source && ["attention", "attention_map"].includes(layer.source);
    this.element.hidden = !heads;
    if (layer?.layer !== this.layer?.layer) [this.point, this.frame] = [null, null];
    this.layer = heads ? layer : null;
    this.layers = layers;
  }

  // The current frame (frames.js) and view state: picker, numbers, the query shown.
  show(frame, { channel, cmap }, picture) {
    if (!this.layer || frame.layer.layer !== this.layer.layer) return;
    this.frame = frame;
    this.cmap = cmap;
    this.picture = picture;
    if (picture instanceof HTMLImageElement && !loaded(picture)) {
      picture.addEventListener("load", () => {
        if (this.picture === picture) this.#query();
      }, { once: true });
    }
    const count = frame.layer.channels_total;
    const dead = frame.heads?.dead ?? [];
    clear(this.select).append(option("", `all ${count} heads`, channel === null),
      ...Array.from({ length: count }, (_, head) =>
        option(head, `head ${head}${dead[head] === true ? " (dead)" : ""}`, channel === head)));
    this.#numbers(channel);
    // A picked head's rows are the ones shown (the row pointed at last is kept).
    if (Number.isInteger(channel) && this.point?.head !== channel) this.point = { head: channel, row: this.point?.row ?? 0 };
    this.#query();
  }

  // The query under the pointer: row `row` of head `head`'s tile of the current frame.
  pointAt(head, row) {
    if (!this.frame || this.frame.layer.source !== "attention") return;
    this.point = { head, row };
    this.#query();
  }

  #numbers(head) {
    const heads = this.frame.heads;
    const picked = Number.isInteger(head) && heads ? headInSample(heads, head, this.frame.sample) : null;
    this.mark.hidden = !picked?.dead;
    this.numbers.hidden = !Number.isInteger(head);
    if (!picked) {
      clear(this.numbers).append(el("dt", { text: `head ${head}` }),
        el("dd", { text: this.frame.source === "live" ? "numbers are logged per step only" : "no per-head numbers at this step" }));
      return;
    }
    const rows = [
      ["entropy", `${fmt(picked.entropy)} nats${picked.normalised === null ? "" : ` (${percent(picked.normalised)} of uniform)`}`],
      ["largest probability", `${fmt(picked.peak)} (mean over queries)`],
      ["mean distance", picked.distance === null ? "– (keys not on a patch grid)" : `${fmt(picked.distance)} patches`],
      ["dead", picked.dead ? `yes: ${DEAD_HEAD_MEANING}` : "no"],
    ];
    clear(this.numbers).append(el("dt", { class: "head-numbers-title", text: `head ${head}, sample ${this.frame.sample}` }),
      ...rows.flatMap(([name, text]) => [el("dt", { text: name }), el("dd", { text })]));
  }

  #query() {
    const frame = this.frame;
    const attention = frame?.layer.source === "attention";
    this.query.hidden = !attention;
    if (!attention) return;
    const found = this.point && queryAttention(frame, this.point.head, this.point.row, this.layers);
    this.queryHint.hidden = Boolean(found);
    this.queryHint.textContent = "Point at a row of a head's tile (in the grid, or enlarged below): " +
      "that query's attention over the keys shows here.";
    for (const node of [this.queryCaption, this.queryStage, this.prefix, this.bars]) node.hidden = !found;
    this.queryNote.hidden = !found?.averagedQueries;
    if (!found) return;
    this.queryCaption.textContent = `head ${found.head} · ${found.query}`;
    const [fy] = frame.layer.downscale;
    this.queryNote.textContent = `This tile keeps one row per ${fy} queries (the tile cap): the row is their mean ` +
      "attention, not one query's.";
    this.queryStage.hidden = !found.grid;
    this.bars.hidden = Boolean(found.grid);
    if (found.grid) this.#grid(found.grid);
    else this.#bars(found.keys);
  }

  // The patches' attention over the probe picture, the prefix tokens' beside it.
  #grid(grid) {
    const patches = el("canvas");
    putImage(patches, gridImage(grid, this.cmap));
    const picture = loaded(this.picture);
    const { width, height } = picture
      ? { width: picture.naturalWidth || picture.width, height: picture.naturalHeight || picture.height }
      : { width: grid.columns, height: grid.rows };
    const scale = Math.min(BOX / width, BOX / height);
    const canvas = this.queryCanvas;
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.globalAlpha = 1;
    if (picture) context.drawImage(picture, 0, 0, canvas.width, canvas.height);
    context.globalAlpha = picture ? Number(this.opacity.value) : 1;
    this.opacityLabel.hidden = !picture;
    context.drawImage(patches, 0, 0, canvas.width, canvas.height);
    this.ownLegend.hidden = !grid.own;
    if (grid.own) {
      const [cellWidth, cellHeight] = [canvas.width / grid.columns, canvas.height / grid.rows];
      context.globalAlpha = 1;
      context.strokeStyle = OWN_PATCH;
      context.lineWidth = 2;
      context.strokeRect(grid.own.column * cellWidth + 1, grid.own.row * cellHeight + 1, cellWidth - 2, cellHeight - 2);
    }
    canvas.dataset.high = String(grid.high);
    paintScale(this.scale, this.cmap);
    this.scaleHigh.textContent = fmt(grid.high);
    const total = grid.values.reduce((sum, value) => sum + (Number.isFinite(value) ? value : 0), 0);
    clear(this.prefix).append(
      el("div", { text: `the ${grid.rows}×${grid.columns} patches: ${percent(total)} of the attention` }),
      ...grid.prefix.map((key) => el("div", { text: `${key.text} (prefix token): ${percent(key.mass)}` })));
  }

  // One bar per key (or per group of keys the tile averaged), in token order.
  #bars(keys) {
    const high = keys.reduce((top, key) => (key.mass > top ? key.mass : top), 0);
    clear(this.bars).append(...keys.map((key) => {
      const bar = el("div", { class: "query-bar", role: "listitem", title: `${key.text}: ${fmt(key.mass)}` },
        el("span", { class: "query-key", text: key.text }),
        el("span", { class: "track" }, el("span", { class: "fill" })),
        el("span", { class: "query-mass", text: percent(key.mass) }));
      bar.style.setProperty("--value", high > 0 && Number.isFinite(key.mass) ? key.mass / high : 0);
      return bar;
    }));
  }
}
