// One channel up close: enlarged, the value under the cursor, its statistics, laid over the
// input picture, and across all steps as a filmstrip (frames drawn as they scroll into view).

import { channelFlags, channelStats, flagText, silentSamples } from "../channel_flags.js";
import { isDiverging } from "../colormaps.js";
import { clear, el, fmt, percent } from "../dom.js";
import { unitTitle } from "../layouts.js";
import { paint, putImage } from "../paint.js";
import { spanOf, tileRanges } from "../scaling.js";

// Enlarged channel and overlay sit side by side; alone, the channel takes the full width.
const HALF_BOX = 132;
const FULL_BOX = 270;
const BOX_HEIGHT = 160;
const FRAME_HEIGHT = 56;

function imageCanvas(image) {
  const canvas = el("canvas");
  putImage(canvas, image);
  return canvas;
}

function integerZoom(width, height, box, boxHeight = box) {
  return Math.max(1, Math.floor(Math.min(box / width, boxHeight / height)));
}

// The size of a loaded picture (an <img> or a canvas), or null while an <img> loads.
function pictureSize(picture) {
  if (picture instanceof HTMLImageElement) {
    return picture.complete && picture.naturalWidth ? { width: picture.naturalWidth, height: picture.naturalHeight } : null;
  }
  return { width: picture.width, height: picture.height };
}

function statsRows(s, frame, channel) {
  if (!s) return [];
  if (frame.geometry.layout.valueOnly) return [["value", fmt(s.mean)]];
  return [
    ["min", fmt(s.min)], ["max", fmt(s.max)], ["mean", fmt(s.mean)], ["std", fmt(s.std)],
    ["sparsity", percent(s.zero_fraction)], ["NaN / Inf", `${s.nan_count} / ${s.inf_count}`],
    ...(frame.source === "live" || frame.geometry.layout.unit === "head" ? []
      : [["silent in", `${silentSamples(frame.stats, channel)} of ${frame.stats.samples.length} samples`]]),
  ];
}

export class ChannelPanel {
  // onPoint(x, y): the pointer is at (x, y) of the enlarged tile.
  constructor({ onStep, onClose, onPoint }) {
    this.onStep = onStep;
    this.onPoint = onPoint;
    this.title = el("span", { class: "channel-title" });
    this.flags = el("span", { class: "channel-flags" });
    this.stats = el("dl", { class: "channel-stats" });
    this.zoomCanvas = el("canvas", { class: "channel-zoom" });
    this.readout = el("div", { class: "readout", text: "Point at the map to read values." });
    this.note = el("div", { class: "channel-note" });
    this.zoomStage = el("div", { class: "channel-stage" }, this.zoomCanvas);
    this.zoomStage.addEventListener("mousemove", (event) => this.#read(event));
    this.zoomStage.addEventListener("mouseleave", () => {
      this.readout.textContent = "Point at the map to read values.";
    });
    this.opacity = el("input", {
      type: "range", min: "0", max: "1", step: "0.05", value: "0.6", "aria-label": "Overlay opacity",
      on: { input: () => this.#drawOverlay() },
    });
    this.overlayCanvas = el("canvas", { class: "overlay-canvas" });
    this.overlay = el("figure", { class: "overlay" },
      el("figcaption", { class: "section-title" }, "Over the input"),
      el("div", { class: "channel-stage" }, this.overlayCanvas),
      el("label", { class: "opacity" }, "opacity", this.opacity));
    this.strip = el("div", { class: "filmstrip", role: "list" });
    this.filmstrip = el("div", { class: "filmstrip-box" },
      el("div", { class: "section-title" }, "Across steps"), this.strip);
    this.empty = el("div", { class: "empty-note", text: "Click a tile of the grid (or press ]) to look at one channel." });
    this.body = el("div", { class: "channel-body", hidden: true },
      el("div", { class: "channel-views" },
        el("figure", { class: "enlarged" }, el("figcaption", { class: "section-title" }, "Enlarged"), this.zoomStage),
        this.overlay),
      this.note, this.readout, this.stats, this.filmstrip);
    this.element = el("section", { class: "panel-section channel-panel" },
      el("div", { class: "section-title" }, this.title, this.flags,
        el("button", { class: "icon close", title: "Close (Esc); [ and ] move between channels", text: "×", on: { click: onClose } })),
      this.empty, this.body);
    this.filmKey = null;
    this.observer = new IntersectionObserver((entries) => this.#reveal(entries), { root: this.strip, rootMargin: "0px 200px" });
  }

  // The channel `channel` of the current frame of `view` (model.js), coloured as the grid;
  // picture: the input it is laid over (an <img> or a canvas) or null; film: the channel
  // across steps, {key, steps, frameAt(step) -> Promise<Frame>}, or null.
  showChannel(request) {
    this.request = request;
    const { view, channel, cmap, scale, picture, film } = request;
    const { a, shared } = view;
    const geometry = a.geometry;
    const layout = geometry.layout;
    const rect = layout.tiled ? geometry.channelRect(a.stats.channels, channel)
      : { x: 0, y: 0, width: geometry.width, height: geometry.height };
    const s = channelStats(a.stats, a.sample, channel);
    const diverging = isDiverging(cmap);
    const rangesOf = (frame, sharedRange) => tileRanges(scale, frame.ranges, frame.geometry.tiles, sharedRange, diverging);
    const blank = new ImageData(rect ? rect.width : layout.channelSpansRow ? geometry.width : geometry.tileWidth,
      rect ? rect.height : geometry.tileHeight);
    const overlay = layout.overlaysInput && picture ? picture : null;
    if (overlay && !pictureSize(overlay)) {
      overlay.addEventListener("load", () => {
        if (this.request === request) this.showChannel(request);
      }, { once: true });
    }
    const where = a.source === "live" ? "for the drawn input" : `at step ${a.step}`;
    this.#render({
      title: unitTitle(a.layer, channel),
      flags: layout.tiled ? flagText(channelFlags(a, channel)) : "",
      note: !s ? `No statistics for this ${layout.unit} ${where}: they are kept for ${a.stats.units.length} of ` +
          `${a.layer.channels_total} ${layout.unit}s (${a.layer.channel_selection === "top" ? "the most active" : "the first"}).`
        : layout.tiled && !rect ? `Not drawn ${where}: this layer draws the ${a.layer.channels_shown} ${layout.unit}s ` +
          `with the largest mean |activation|, chosen per ${a.source === "live" ? "input" : "step"}. Its statistics are below.` : "",
      stats: statsRows(s, a, channel),
      image: rect ? paint(a.values, a.grid.codes, geometry, rangesOf(a, shared), cmap, rect) : blank,
      valueAt: (x, y) => {
        if (!rect) return "";
        const info = geometry.describe(rect.x + x, rect.y + y, a.stats.channels);
        const value = a.values[(rect.y + y) * geometry.width + rect.x + x];
        return info ? `${layout.label(info, a.layer)}${layout.tiled ? ` (${info.y}, ${info.x})` : ""}: ${fmt(value)}` : "";
      },
      overlay: overlay && pictureSize(overlay) ? { picture: overlay } : null,
      film: film && {
        key: film.key,
        steps: film.steps,
        current: a.step,
        width: blank.width,
        height: blank.height,
        frame: async (step) => {
          const frame = await film.frameAt(step);
          const frameRect = layout.tiled ? frame.geometry.channelRect(frame.stats.channels, channel) : rect;
          if (!frameRect) return blank;
          const frameShared = scale === "layer" ? spanOf([frame.ranges]) : shared;
          return paint(frame.values, frame.grid.codes, frame.geometry, rangesOf(frame, frameShared), cmap, frameRect);
        },
      },
    });
  }

  // Another view's element (the top inputs on the reference set), under the statistics.
  addSection(element) {
    this.body.insertBefore(element, this.filmstrip);
  }

  hide() {
    this.request = null;
    this.body.hidden = true;
    this.empty.hidden = false;
    this.title.textContent = "Channel";
    this.flags.textContent = "";
    this.#clearFilm();
  }

  #clearFilm() {
    this.filmKey = null;
    this.observer.disconnect();
    clear(this.strip);
  }

  // view: {title, flags, note, stats: [[name, text]], image: ImageData, valueAt(x, y) -> text,
  //        overlay: {picture: <img> or canvas} | null,
  //        film: {key, steps: [step], current, width, height, frame(step) -> Promise<ImageData>} | null}
  #render(view) {
    this.view = view;
    this.body.hidden = false;
    this.empty.hidden = true;
    this.title.textContent = view.title;
    this.flags.textContent = view.flags;
    this.note.textContent = view.note || "";
    this.note.hidden = !view.note;
    clear(this.stats).append(...view.stats.flatMap(([name, text]) => [el("dt", { text: name }), el("dd", { text })]));
    putImage(this.zoomCanvas, view.image);
    const box = view.overlay ? HALF_BOX : FULL_BOX;
    const zoom = integerZoom(view.image.width, view.image.height, box, BOX_HEIGHT);
    this.zoomCanvas.style.width = `${view.image.width * zoom}px`;
    this.zoomCanvas.style.height = `${view.image.height * zoom}px`;
    this.overlay.hidden = !view.overlay;
    if (view.overlay) this.#drawOverlay();
    this.filmstrip.hidden = !view.film;
    this.#film(view.film);
  }

  #read(event) {
    if (!this.view) return;
    const box = this.zoomCanvas.getBoundingClientRect();
    const x = Math.floor(((event.clientX - box.left) / box.width) * this.zoomCanvas.width);
    const y = Math.floor(((event.clientY - box.top) / box.height) * this.zoomCanvas.height);
    if (x < 0 || y < 0 || x >= this.zoomCanvas.width || y >= this.zoomCanvas.height) return;
    this.readout.textContent = this.view.valueAt(x, y);
    this.onPoint(x, y);
  }

  // The channel stretched over the probe picture (both span the input's field of view).
  #drawOverlay() {
    const picture = this.view?.overlay?.picture;
    const size = picture && pictureSize(picture);
    if (!size) return;
    const { width, height } = size;
    // Small probes are enlarged by a whole factor (crisp); large ones shrunk to fit.
    const fit = Math.min(HALF_BOX / width, BOX_HEIGHT / height);
    const scale = fit >= 1 ? Math.floor(fit) : fit;
    const canvas = this.overlayCanvas;
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    const context = canvas.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.globalAlpha = 1;
    context.drawImage(picture, 0, 0, canvas.width, canvas.height);
    context.globalAlpha = Number(this.opacity.value);
    context.drawImage(imageCanvas(this.view.image), 0, 0, canvas.width, canvas.height);
  }

  #film(film) {
    if (!film) {
      this.#clearFilm();
      return;
    }
    if (film.key !== this.filmKey) {
      this.filmKey = film.key;
      this.observer.disconnect();
      clear(this.strip);
      // Frames get their final size before they load, so the strip does not shift under them.
      const zoom = integerZoom(film.width, film.height, 160, FRAME_HEIGHT);
      for (const step of film.steps) {
        const canvas = el("canvas", { class: "frame-canvas", width: "1", height: "1" });
        canvas.style.width = `${film.width * zoom}px`;
        canvas.style.height = `${film.height * zoom}px`;
        const frame = el("button", { class: "frame", title: `step ${step}`, on: { click: () => this.onStep(step) } },
          canvas, el("span", { class: "frame-label", text: String(step) }));
        frame.dataset.step = String(step);
        frame.frameSource = film;
        this.strip.append(frame);
        this.observer.observe(frame);
      }
    }
    for (const frame of this.strip.children) {
      const current = Number(frame.dataset.step) === film.current;
      frame.classList.toggle("current", current);
      if (current) this.#scrollTo(frame);
    }
  }

  // Scrolls the strip only: scrollIntoView would also scroll the panel and the page.
  #scrollTo(frame) {
    const left = frame.offsetLeft;
    if (left < this.strip.scrollLeft || left + frame.offsetWidth > this.strip.scrollLeft + this.strip.clientWidth) {
      this.strip.scrollLeft = left - (this.strip.clientWidth - frame.offsetWidth) / 2;
    }
  }

  #reveal(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const frame = entry.target;
      this.observer.unobserve(frame);
      frame.frameSource.frame(Number(frame.dataset.step)).then((image) => {
        if (!frame.isConnected) return;
        putImage(frame.querySelector("canvas"), image);
      }, (error) => {
        frame.classList.add("failed");
        frame.title = `step ${frame.dataset.step}: ${error.message}`;
      });
    }
  }
}
