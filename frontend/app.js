// The Activations tab: wires the data (api.js) to the views and keeps the view state
// (run, layer, sample, step, channel, colours, scaling, comparison) in one place and in the URL.

import { api } from "./api.js";
import { channelStats, deadSamples, flags, flagText } from "./channel_flags.js";
import { ChannelPanel } from "./channel_panel.js";
import { ColorBar } from "./colorbar.js";
import { COLORMAPS, isDiverging } from "./colormaps.js";
import { clear, el, fmt, option, percent } from "./dom.js";
import { exportJson, exportPng, exportVideo } from "./export.js";
import { describePixel, isTiled, unitName } from "./describe.js";
import { difference } from "./difference.js";
import { Geometry, decodeValues } from "./geometry.js";
import { GridView } from "./grid_view.js";
import { LayerList, shapeText } from "./layer_list.js";
import { paint } from "./paint.js";
import { SamplePicker } from "./sample_picker.js";
import { SCALINGS, centred, spanOf, tileRanges } from "./scaling.js";
import { SparsityChart } from "./sparsity_chart.js";
import { StepBar } from "./step_bar.js";
import { readState, writeState } from "./url_state.js";
import { ViewOptions } from "./view_options.js";

const PLAY_DELAY_MS = 350;
const POLL_MS = 30000;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function code(text) {
  return el("code", { text });
}

export async function startApp(root) {
  const app = new App(root);
  await app.start();
  return app;
}

class App {
  constructor(root) {
    this.state = {
      run: null, layer: null, input: null, sample: 0, step: null, channel: null, compare: null,
      cmap: "viridis", scale: "channel", lo: null, hi: null,
    };
    this.runs = [];
    this.run = null;
    this.layer = null;
    this.steps = [];
    this.view = null;
    this.opacity = 0.6;
    this.showMarks = true;
    this.playing = false;
    this.recording = false;
    this.drawToken = 0;
    this.layerToken = 0;
    this.stepsRanges = new Map();
    this.#build(root);
  }

  #build(root) {
    this.runSelect = el("select", { class: "run-select", "aria-label": "Run", on: { change: () => this.selectRun(this.runSelect.value) } });
    this.reload = el("button", { class: "icon", title: "Reload runs and steps", text: "↻", on: { click: () => this.refresh() } });
    this.samples = new SamplePicker({
      onSample: (sample) => this.update({ sample }),
      onInput: (input) => this.update({ input }, { resetSamples: true }),
    });
    this.layerList = new LayerList({ onSelect: (path) => this.selectLayer(path) });
    this.stepBar = new StepBar({ onStep: (step) => this.update({ step }), onPlayToggle: () => this.togglePlay() });
    this.options = new ViewOptions({
      onChange: (change) => this.update(change),
      onZoom: (zoom) => this.grid.setZoomMode(zoom),
      onMarks: (on) => { this.showMarks = on; this.draw(); },
      onExportPng: () => this.#export("png"),
      onExportVideo: () => this.#exportVideo(),
      onExportJson: () => this.#export("json"),
    });
    this.grid = new GridView({
      onHover: (panel, x, y, event) => this.hover(panel, x, y, event),
      onLeave: () => this.leave(),
      onClick: (panel, x, y) => this.click(panel, x, y),
    });
    this.layerHeader = el("div", { class: "layer-header" });
    this.colorBar = new ColorBar();
    this.status = el("div", { class: "status", role: "status" });
    this.sparsity = new SparsityChart({ onStep: (step) => this.update({ step }) });
    this.channelPanel = new ChannelPanel({
      onStep: (step) => this.update({ step }),
      onClose: () => this.update({ channel: null }),
      onOpacity: (opacity) => { this.opacity = opacity; },
    });
    this.banner = el("div", { class: "banner", hidden: true, role: "alert" });
    this.sidebar = el("aside", { class: "sidebar" },
      el("section", { class: "runs" }, el("div", { class: "section-title" }, "Run"),
        el("div", { class: "run-row" }, this.runSelect, this.reload)),
      this.samples.element, this.layerList.element);
    this.details = el("aside", { class: "details" }, this.sparsity.element, this.channelPanel.element);
    this.main = el("main", { class: "main" },
      el("div", { class: "toolbar" }, this.stepBar.element, this.options.element),
      this.layerHeader, this.banner, this.grid.element,
      el("footer", { class: "grid-footer" }, this.colorBar.element, this.status));
    this.app = el("div", { class: "app" }, this.sidebar, this.main, this.details);
    clear(root).append(this.app);
    document.addEventListener("keydown", (event) => this.#key(event));
  }

  async start() {
    this.#message("Loading activation runs…");
    const wanted = readState();
    for (const key of ["cmap", "scale", "lo", "hi"]) if (wanted[key] !== undefined) this.state[key] = wanted[key];
    if (!SCALINGS.some((s) => s.name === this.state.scale)) this.state.scale = "channel";
    if (!COLORMAPS.some((c) => c.name === this.state.cmap)) this.state.cmap = "viridis";
    this.options.sync(this.state);
    await this.loadRuns(wanted);
    setInterval(() => {
      if (!document.hidden && !this.playing) this.refresh({ quiet: true });
    }, POLL_MS);
  }

  // Runs and their layers; `wanted` is the state to restore (from the URL) where it exists.
  async loadRuns(wanted = {}) {
    let data;
    try {
      data = await api.layers();
    } catch (error) {
      this.app.classList.add("empty");
      this.#message([el("h2", { text: "Could not load the activation runs" }), el("p", { text: error.message }),
        el("button", { text: "Try again", on: { click: () => this.loadRuns(wanted) } })], "error");
      return;
    }
    this.runs = data.runs;
    if (!this.runs.length) {
      this.app.classList.add("empty");
      this.#message([
        el("h2", { text: "No activation data yet" }),
        el("p", {}, "Add ", code("tba.ActivationsCallback(log_dir, probe=x[:4])"), " to the callbacks of ",
          code("model.fit"), ", with ", code("import tb_activations as tba"), ", and point TensorBoard's ",
          code("--logdir"), " at the folder holding that ", code("log_dir"), "."),
        el("p", {}, "Steps appear here while training writes them; this page checks every 30 seconds, or ",
          el("button", { text: "reload now", on: { click: () => this.loadRuns(wanted) } }), "."),
      ], "empty-state");
      return;
    }
    this.app.classList.remove("empty");
    clear(this.runSelect).append(...this.runs.map((r) => option(r.run, r.run)));
    const run = this.runs.find((r) => r.run === wanted.run) || this.runs[0];
    await this.selectRun(run.run, wanted);
  }

  async selectRun(name, wanted = {}) {
    this.stopPlaying();
    this.run = this.runs.find((r) => r.run === name);
    this.state.run = name;
    this.runSelect.value = name;
    this.layerList.setLayers(this.run.layers);
    const probes = this.run.probes || [];
    this.state.input = probes.some((p) => p.input === wanted.input) ? wanted.input : probes[0]?.input ?? null;
    const count = this.#sampleCount();
    this.state.sample = Number.isInteger(wanted.sample) && wanted.sample >= 0 && wanted.sample < count ? wanted.sample : 0;
    this.samples.set(name, count, probes, this.state.input, this.state.sample);
    const layer = this.run.layers.find((l) => l.layer === wanted.layer) || this.run.layers[0];
    if (!layer) {
      this.#message("This run has no layers logged yet.", "empty-state");
      return;
    }
    await this.selectLayer(layer.layer, wanted);
  }

  #sampleCount() {
    const probe = this.run.probes?.find((p) => p.input === this.state.input);
    return Math.max(1, this.run.layers[0]?.samples ?? probe?.samples ?? 1);
  }

  async selectLayer(path, wanted = {}) {
    const token = ++this.layerToken;
    const previous = this.layer;
    this.layer = this.run.layers.find((l) => l.layer === path);
    this.state.layer = path;
    this.layerList.select(path);
    this.#layerHeader();
    this.channelPanel.hide();
    const keepChannel = previous && previous.layer !== path ? null : this.state.channel;
    this.state.channel = Number.isInteger(wanted.channel) ? wanted.channel : keepChannel;
    let steps;
    try {
      steps = (await api.steps(this.state.run, path)).steps;
    } catch (error) {
      if (token === this.layerToken) this.#message(`Could not load the steps of ${path}: ${error.message}`, "error");
      return;
    }
    if (token !== this.layerToken) return;
    this.#setSteps(steps, wanted.step ?? this.state.step);
    const compare = wanted.compare ?? this.state.compare;
    this.state.compare = steps.some((s) => s.step === compare) ? compare : null;
    this.#loadSparsity();
    await this.draw();
  }

  // Keeps `step` if logged, else the nearest earlier one, else the first.
  #setSteps(steps, step) {
    this.steps = steps;
    this.stepBar.setSteps(steps);
    let chosen = null;
    for (const entry of steps) if (step === null || step === undefined || entry.step <= step) chosen = entry.step;
    this.state.step = steps.some((s) => s.step === step) ? step : chosen ?? steps[0]?.step ?? null;
    this.options.setSteps(steps, this.state.step);
  }

  async #loadSparsity() {
    const { run, layer } = this.state;
    try {
      const series = await api.statsSeries(run, layer);
      if (run === this.state.run && layer === this.state.layer) this.sparsity.set(series.steps, this.layer.channels_total);
    } catch (error) {
      this.sparsity.setError(`Sparsity unavailable: ${error.message}`);
    }
    this.sparsity.setStep(this.state.step);
  }

  #layerHeader() {
    const layer = this.layer;
    const parts = [`${layer.layer_class}`, `output ${shapeText(layer.output_shape)}`];
    if (layer.layout === "channels" || layer.layout === "volume") {
      parts.push(`${layer.channels_shown} of ${layer.channels_total} channels drawn` +
        (layer.channels_shown < layer.channels_total ? ` (${layer.channel_selection === "top" ? "largest mean |activation|" : "the first"})` : ""));
    } else {
      parts.push(layer.layout === "vector" ? `${layer.channels_total} units as a block` : "time × features");
    }
    if (layer.layout === "volume") parts.push(`depth slices ${layer.depth_slices.join(", ")}`);
    const factor = layer.downscale.filter((d) => d > 1);
    if (factor.length) parts.push(`averaged ${layer.downscale.join("×")} to fit`);
    clear(this.layerHeader).append(el("span", { class: "layer-path", text: layer.layer }), el("span", { class: "layer-facts", text: parts.join(" · ") }));
  }

  // Applies a change of view state, then redraws.
  async update(change, { resetSamples = false } = {}) {
    Object.assign(this.state, change);
    if ("sample" in change) this.samples.select(this.state.sample);
    if (resetSamples) {
      this.samples.set(this.state.run, this.#sampleCount(), this.run.probes || [], this.state.input, this.state.sample);
    }
    if ("scale" in change && this.state.scale === "fixed" && (this.state.lo === null || this.state.hi === null) && this.view) {
      // Start the fixed range from what is on screen, so switching to it changes nothing yet.
      const [low, high] = this.view.shared || spanOf([this.view.a.ranges]);
      [this.state.lo, this.state.hi] = [low, high].map((value) => Number(value.toPrecision(4)));
    }
    await this.draw();
  }

  stopPlaying() {
    this.playing = false;
    this.stepBar.setPlaying(false);
  }

  async togglePlay() {
    if (this.playing) {
      this.stopPlaying();
      return;
    }
    if (this.steps.length < 2) return;
    this.playing = true;
    this.stepBar.setPlaying(true);
    while (this.playing) {
      const index = this.steps.findIndex((s) => s.step === this.state.step);
      const next = this.steps[(index + 1) % this.steps.length].step;
      await this.update({ step: next });
      await sleep(PLAY_DELAY_MS);
    }
  }

  // New runs and steps written since the page loaded. At the last step, follows new ones.
  async refresh({ quiet = false } = {}) {
    let data;
    try {
      data = await api.layers();
    } catch (error) {
      if (!quiet) this.#banner(`Could not reload: ${error.message}`);
      return;
    }
    this.#banner(null);
    if (!this.run) {
      if (data.runs.length) await this.loadRuns(this.state);
      return;
    }
    this.runs = data.runs;
    clear(this.runSelect).append(...this.runs.map((r) => option(r.run, r.run)));
    const run = this.runs.find((r) => r.run === this.state.run);
    if (!run) return;
    this.runSelect.value = run.run;
    const names = (r) => JSON.stringify(r.layers.map((l) => [l.layer, l.layer_class]));
    if (names(run) !== names(this.run)) this.layerList.setLayers(run.layers);
    this.run = run;
    const layer = run.layers.find((l) => l.layer === this.state.layer);
    if (!layer) return;
    this.layer = layer;
    const atEnd = this.steps.length && this.state.step === this.steps[this.steps.length - 1].step;
    const steps = (await api.steps(run.run, layer.layer).catch(() => ({ steps: this.steps }))).steps;
    if (steps.length === this.steps.length) return;
    this.#setSteps(steps, atEnd ? steps[steps.length - 1].step : this.state.step);
    this.stepsRanges.delete(JSON.stringify([run.run, layer.layer]));
    this.#loadSparsity();
    await this.draw();
  }

  // A message in place of the grid; nothing drawn means no colour bar either.
  #message(content, kind) {
    this.view = null;
    this.grid.showMessage(content, kind);
    this.colorBar.element.hidden = true;
    this.status.textContent = "";
  }

  #banner(text) {
    this.banner.hidden = !text;
    this.banner.textContent = text || "";
  }

  // One step of the current layer and sample: codes, statistics, values, geometry.
  async frame(step) {
    const { run, layer, sample } = this.state;
    const [grid, stats] = await Promise.all([api.grid(run, layer, step, sample), api.stats(run, layer, step)]);
    const own = stats.samples[sample];
    if (!own) throw new Error(`step ${step} has no statistics for probe sample ${sample}`);
    const geometry = new Geometry(this.layer, grid.width, grid.height);
    return { step, grid, stats, ranges: own.ranges, geometry, values: decodeValues(grid, geometry, own.ranges) };
  }

  // [low, high] over every step and probe sample of the layer ("all steps" scaling).
  async #stepsRange() {
    const { run, layer } = this.state;
    const key = JSON.stringify([run, layer]);
    if (!this.stepsRanges.has(key)) {
      const steps = this.steps.map((s) => s.step);
      const promise = (async () => {
        const lists = [];
        for (let i = 0; i < steps.length; i += 8) {
          const batch = await Promise.all(steps.slice(i, i + 8).map((step) => api.stats(run, layer, step)));
          for (const stats of batch) for (const sample of stats.samples) lists.push(sample.ranges);
          if (steps.length > 16) this.status.textContent = `Reading value ranges: ${Math.min(i + 8, steps.length)} of ${steps.length} steps…`;
        }
        return spanOf(lists);
      })();
      promise.catch(() => this.stepsRanges.delete(key));
      this.stepsRanges.set(key, promise);
    }
    return this.stepsRanges.get(key);
  }

  // The range every tile shares under the current scaling (null: per channel).
  async #sharedRange(frames) {
    const { scale, lo, hi } = this.state;
    if (scale === "layer") return spanOf(frames.map((f) => f.ranges));
    if (scale === "steps") return this.#stepsRange();
    if (scale === "fixed") {
      if (Number.isFinite(lo) && Number.isFinite(hi) && hi > lo) return [lo, hi];
      this.#banner("Fixed range: enter a low value below the high value; showing the layer's range meanwhile.");
      return spanOf(frames.map((f) => f.ranges));
    }
    return null;
  }

  async draw() {
    const token = ++this.drawToken;
    const state = this.state;
    this.#writeUrl();
    if (!this.layer) return;
    this.options.sync(state);
    this.stepBar.setStep(state.step);
    this.sparsity.setStep(state.step);
    if (state.step === null) {
      this.#message("No steps logged for this layer yet.", "empty-state");
      return;
    }
    let a;
    let b = null;
    let shared;
    try {
      [a, b] = await Promise.all([this.frame(state.step), state.compare !== null ? this.frame(state.compare) : null]);
      this.#banner(null);
      shared = await this.#sharedRange(b ? [a, b] : [a]);
    } catch (error) {
      if (token === this.drawToken) {
        this.#message(`Could not draw step ${state.step} of ${state.layer}: ${error.message}`, "error");
      }
      return;
    }
    if (token !== this.drawToken) return;
    this.view = { a, b, shared };
    this.#paint();
  }

  #paint() {
    const { a, b, shared } = this.view;
    const { cmap, scale, sample } = this.state;
    const diverging = isDiverging(cmap);
    const panels = [a, b].filter(Boolean).map((frame) => ({
      kind: frame === a ? "current" : "compare",
      step: frame.step,
      title: `step ${frame.step}`,
      image: paint(frame.values, frame.grid.codes, frame.geometry, tileRanges(scale, frame.ranges, frame.geometry.tiles, shared, diverging), cmap),
      marks: this.showMarks ? this.#marks(frame, sample) : [],
    }));
    if (b) panels.push(this.#differencePanel(a, b));
    if (panels.length === 1) panels[0].title = `step ${a.step} · sample ${sample}`;
    this.grid.render(panels, this.#selectedRect());
    this.colorBar.element.hidden = false;
    this.#defaultColorBar();
    this.status.textContent = this.#summary(a);
    this.#channelPanel();
  }

  #summary(frame) {
    const stats = frame.stats;
    const channels = isTiled(this.layer) ? this.layer.channels_total : 0;
    let dead = 0;
    for (let c = 0; c < channels; c++) if (flags(channelStats(stats, this.state.sample, c)).dead) dead++;
    const text = channels ? `${dead} of ${channels} channels dead in this sample. ` : "";
    return `${text}Hover the grid for values, click to look closer.`;
  }

  // current − compare, on the diverging map centred on zero.
  #differencePanel(a, b) {
    const diff = difference(a, b, this.layer.layout);
    const perTile = this.state.scale === "channel";
    const ranges = perTile ? diff.ranges : diff.ranges.map(() => [-diff.largest, diff.largest]);
    const note = perTile ? "each tile ±its max |Δ|" : `±${fmt(diff.largest)}`;
    const blanked = diff.mismatched ? `; ${diff.mismatched} tiles show other channels: blank` : "";
    return {
      kind: "difference",
      title: `step ${a.step} − step ${b.step} (${note})${blanked}`,
      image: paint(diff.values, diff.codes, a.geometry, ranges, "diverging"),
      marks: [],
    };
  }

  #marks(frame, sample) {
    if (!isTiled(this.layer)) return [];
    const marks = [];
    frame.stats.channels.forEach((channel) => {
      const f = flags(channelStats(frame.stats, sample, channel));
      const kind = f.nonfinite ? "nonfinite" : f.dead ? "dead" : f.saturated ? "saturated" : null;
      if (!kind) return;
      const rect = frame.geometry.channelRect(frame.stats.channels, channel);
      if (rect) marks.push({ kind, rect, title: `channel ${channel}: ${flagText(f)}` });
    });
    return marks;
  }

  #selectedRect() {
    const { channel } = this.state;
    if (channel === null || !this.view) return null;
    return this.#channelOutline(channel);
  }

  // Where `channel` is on the grid: its tile (or volume row), unit cell or feature column.
  #channelOutline(channel) {
    const { a } = this.view;
    return isTiled(this.layer) ? a.geometry.channelRect(a.stats.channels, channel) : a.geometry.unitRect(channel);
  }

  hover(panelIndex, x, y, event) {
    if (!this.view) return;
    const { a, b } = this.view;
    const shown = panelIndex === 1 && b ? b : a;
    const info = shown.geometry.describe(x, y, shown.stats.channels);
    if (!info) {
      this.grid.hideTooltip();
      this.grid.setHover(null);
      return;
    }
    const lines = describePixel(this.layer, info, y * a.geometry.width + x, a, b, shown, this.state.sample);
    this.grid.setHover(this.#channelOutline(info.channel));
    this.grid.showTooltip(lines, event);
    this.status.textContent = lines.map((line) => line.text ?? line).join(" · ");
    if (this.state.scale === "channel" && isTiled(this.layer)) {
      const range = shown.ranges[info.tile];
      if (range && range[0] !== null) this.colorBar.update(this.state.cmap, isDiverging(this.state.cmap) ? centred(range) : range, `channel ${info.channel}'s own range`);
    }
  }

  leave() {
    this.grid.setHover(null);
    if (this.view) this.#defaultColorBar();
  }

  // The shared range; per channel, a single-tile layer's own range, else a note.
  #defaultColorBar() {
    const { a, shared } = this.view;
    const { cmap, scale, channel } = this.state;
    let own = null;
    let note = "per channel: each tile spans its own min…max";
    let hint = "hover a tile for its values";
    if (!shared && a.geometry.tiles === 1) {
      [own, note, hint] = [a.ranges[0], "this sample's range", ""];
    } else if (!shared && channel !== null && isTiled(this.layer) && a.stats.channels.includes(channel)) {
      [own, note, hint] = [a.ranges[a.geometry.tileOfChannel(a.stats.channels, channel)], `channel ${channel}'s own range`, ""];
    }
    const range = shared || (own && own[0] !== null ? own : null);
    if (shared) [note, hint] = [SCALINGS.find((s) => s.name === scale).label, ""];
    this.colorBar.update(cmap, range && (isDiverging(cmap) ? centred(range) : range), note, hint);
  }

  click(panelIndex, x, y) {
    if (!this.view) return;
    const info = this.view.a.geometry.describe(x, y, this.view.a.stats.channels);
    if (info) this.update({ channel: info.channel });
  }

  #channelPanel() {
    const { channel, sample, cmap, scale, lo, hi } = this.state;
    if (channel === null || !this.view) {
      this.channelPanel.hide();
      return;
    }
    const { a, shared } = this.view;
    const geometry = a.geometry;
    const tiled = isTiled(this.layer);
    const rect = tiled ? geometry.channelRect(a.stats.channels, channel) : { x: 0, y: 0, width: geometry.width, height: geometry.height };
    const s = channelStats(a.stats, sample, channel);
    const f = tiled ? flags(s) : flags(null);
    const name = tiled ? `Channel ${channel}` : `${this.layer.layout === "vector" ? "Unit" : "Feature"} ${channel}`;
    const diverging = isDiverging(cmap);
    const rangesOf = (frame, sharedRange) => tileRanges(scale, frame.ranges, frame.geometry.tiles, sharedRange, diverging);
    const blank = new ImageData(rect ? rect.width : this.layer.layout === "volume" ? geometry.width : geometry.tileWidth,
      rect ? rect.height : geometry.tileHeight);
    const stats = !s ? [] : this.layer.layout === "vector" ? [["value", fmt(s.mean)]] : [
      ["min", fmt(s.min)], ["max", fmt(s.max)], ["mean", fmt(s.mean)], ["std", fmt(s.std)],
      ["zeros", percent(s.zero_fraction)], ["NaN / Inf", `${s.nan_count} / ${s.inf_count}`],
      ["dead in", `${deadSamples(a.stats, channel)} of ${a.stats.samples.length} samples`],
    ];
    const picture = tiled && this.layer.layout === "channels" ? this.samples.picture(sample) : null;
    if (picture && !picture.complete) picture.addEventListener("load", () => this.#channelPanel(), { once: true });
    this.channelPanel.show({
      title: name,
      flags: flagText(f),
      note: !s ? `No statistics for this channel at step ${a.step}.`
        : tiled && !rect ? `Not drawn at step ${a.step}: this layer draws the ${this.layer.channels_shown} channels ` +
          "with the largest mean |activation|, chosen per step. Its statistics are below." : "",
      stats,
      image: rect ? paint(a.values, a.grid.codes, geometry, rangesOf(a, shared), cmap, rect) : blank,
      valueAt: (x, y) => {
        if (!rect) return "";
        const info = geometry.describe(rect.x + x, rect.y + y, a.stats.channels);
        const value = a.values[(rect.y + y) * geometry.width + rect.x + x];
        return info ? `${unitName(this.layer, info)}${tiled ? ` (${info.y}, ${info.x})` : ""}: ${fmt(value)}` : "";
      },
      overlay: picture && picture.complete && picture.naturalWidth ? { picture } : null,
      opacity: this.opacity,
      film: {
        key: JSON.stringify([this.state.run, this.state.layer, sample, channel, cmap, scale, lo, hi, this.steps.length]),
        steps: this.steps.map((entry) => entry.step),
        current: a.step,
        width: blank.width,
        height: blank.height,
        frame: async (step) => {
          const frame = await this.frame(step);
          const frameRect = tiled ? frame.geometry.channelRect(frame.stats.channels, channel) : rect;
          if (!frameRect) return blank;
          const frameShared = scale === "layer" ? spanOf([frame.ranges]) : shared;
          return paint(frame.values, frame.grid.codes, frame.geometry, rangesOf(frame, frameShared), cmap, frameRect);
        },
      },
    });
  }

  #writeUrl() {
    try {
      writeState(this.state);
    } catch (error) {
      // A browser that refuses history updates still shows the view; only links suffer.
      console.warn("tb-activations: could not store the view in the URL", error);
    }
  }

  #caption(step) {
    const { run, layer, sample, compare, cmap } = this.state;
    const versus = compare === null ? "" : ` vs step ${compare}`;
    return `${run} · ${layer} · step ${step}${versus} · sample ${sample} · ${cmap}`;
  }

  #shown() {
    return { canvases: this.grid.canvases(), zoom: this.grid.zoom, legend: this.colorBar.legend(this.#caption(this.state.step)) };
  }

  #export(kind) {
    if (!this.view) return;
    const { run, layer, step, sample } = this.state;
    if (kind === "png") {
      const { canvases, zoom, legend } = this.#shown();
      exportPng(canvases, zoom, { run, layer, step, sample }, legend);
    } else {
      exportJson({
        run, layer, step, sample, compare: this.state.compare, layer_info: this.layer,
        stats: this.view.a.stats, compare_stats: this.view.b?.stats ?? null,
      });
    }
  }

  // Plays every step through the grid once while the browser records it; then back to the
  // step that was shown.
  async #exportVideo() {
    if (!this.view || this.steps.length < 2 || this.recording) return;
    this.stopPlaying();
    this.recording = true;
    this.options.video.disabled = true;
    const { run, layer, sample, step } = this.state;
    try {
      await exportVideo(this.steps.map((s) => s.step), async (next) => {
        await this.update({ step: next });
        return this.#shown();
      }, { run, layer, sample });
    } catch (error) {
      this.#banner(`Could not record the video: ${error.message}`);
    } finally {
      this.recording = false;
      this.options.video.disabled = false;
      await this.update({ step });
    }
  }

  // [ and ]: the previous or next drawn channel, in grid order, into the channel panel.
  #stepChannel(offset) {
    if (!this.view || !isTiled(this.layer)) return;
    const channels = Array.from(this.view.a.stats.channels);
    if (!channels.length) return;
    const at = channels.indexOf(this.state.channel);
    const next = at < 0 ? (offset > 0 ? 0 : channels.length - 1)
      : Math.min(channels.length - 1, Math.max(0, at + offset));
    this.update({ channel: channels[next] });
  }

  #key(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest && event.target.closest("input, select, textarea")) return;
    if (event.key === " " && event.target.closest && event.target.closest("button")) return;
    const actions = {
      ArrowUp: () => this.layerList.move(-1),
      ArrowDown: () => this.layerList.move(1),
      ArrowLeft: () => this.stepBar.nudge(-1),
      ArrowRight: () => this.stepBar.nudge(1),
      " ": () => this.togglePlay(),
      "[": () => this.#stepChannel(-1),
      "]": () => this.#stepChannel(1),
      Escape: () => this.update({ channel: null }),
    };
    const action = Object.hasOwn(actions, event.key) ? actions[event.key] : null;
    if (!action) return;
    action();
    event.preventDefault();
  }
}
