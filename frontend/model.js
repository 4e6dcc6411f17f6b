// The tab's state and data: which run, layer, probe sample, step, channel and view options are
// chosen, what is loaded for them through api.js (cached there), and what follows from it:
// the frames on screen, the range their colours share, the saved model's live answer.
// Views learn of every change through events (on(type, listener)); the model never touches
// the DOM.
//
// Events and their detail:
//   "state"       ViewState, whenever it changed (before the view is redrawn)
//   "runs"        {runs: RunSummary[], selected: run name, or null when it is not listed}
//   "problems"    {run, problems: ["<tag>: <why>"]}: the selected run's unreadable tags
//   "layers"      LayerEntry[] of the selected run
//   "samples"     {count, probes: ProbeEntry[], input, sample, urls: picture URL per sample}
//   "layer"       LayerEntry selected
//   "steps"       {steps: StepEntry[], step}
//   "sparsity"    {series, channels} or {error}
//   "overview"    {data: ./overview of the run, or null while it loads; error: why there is none}
//   "reference"   {set: ReferenceSet of the selected run, layers: Map path -> ./reference_tags
//                 entry (empty while it loads or when there are none), summary: ./reference_summary or null}
//   "view"        View: the frames to draw
//   "message"     {kind: "info"|"error"|"empty-state"|"load-failed"|"no-runs", text}: no view
//   "banner"      a warning above the view, or null
//   "playing"     boolean
//   "live-info"   LiveInfo of the selected run, or null while it is asked for
//   "live-answer" LiveAnswer, the newest one
//   "live-busy"   boolean: a live request is on its way

import { api, statsWeight } from "./api.js";
import { COLORMAPS } from "./colormaps.js";
import { loggedFrame } from "./frames.js";
import { headsFor, headsLayerPath } from "./head_values.js";
import { LiveSession } from "./live_session.js";
import { Prefetcher } from "./prefetch.js";
import { ReferenceSet } from "./reference_set.js";
import { TILE_ORDERS, referenceStepFor, tileOrder } from "./reference_values.js";
import { reorderedFrame } from "./tile_order.js";
import { HEAT_METRICS, stepIndex, summaryAt } from "./overview_values.js";
import { SCALINGS, spanOf } from "./scaling.js";

const PLAY_DELAY_MS = 350;
// A partial run listing (the plugin's first on a big logdir) is asked for again this soon.
const PARTIAL_RETRY_MS = 1500;

/**
 * @typedef {object} ViewState  everything a link restores (url_state.js)
 * @property {string|null} run
 * @property {string|null} layer
 * @property {string|null} input  the probe input whose pictures pick the sample
 * @property {number} sample
 * @property {number|null} step
 * @property {number|null} channel
 * @property {number|null} compare  a logged step shown beside the current frame
 * @property {string} cmap
 * @property {"channel"|"layer"|"steps"|"fixed"} scale
 * @property {number|null} lo  the fixed range
 * @property {number|null} hi
 * @property {boolean} live  the current frame is the saved model's answer to a drawn input
 * @property {boolean} overview  the run's overview is shown instead of the grid
 * @property {string} heat  what the overview's heat map shows (overview_values.js HEAT_METRICS)
 * @property {string} order  the order of a layer's tiles (reference_values.js TILE_ORDERS)
 */

/**
 * A logged step as ./steps lists it; `epoch` (Keras's 0-based index) only in a run with epoch
 * records.
 * @typedef {{step: number, wall_time: number, epoch?: number}} StepEntry
 */
/** @typedef {{input: string, shape: (number|null)[], samples: number}} ProbeEntry */
/**
 * @typedef {{run: string, layers: import("./layouts.js").LayerEntry[], probes: ProbeEntry[], problems: string[],
 *   tokens: string[][]|null}} RunEntry  tokens: the run's token labels per probe sample (./tokens)
 */
/**
 * A run as ./runs lists it (layers and problems are counts, null in a partial listing).
 * @typedef {{run: string, layers: number|null, max_step: number|null, problems: number|null}} RunSummary
 */

/**
 * @typedef {object} View
 * @property {import("./frames.js").Frame} a  the current frame
 * @property {import("./frames.js").Frame|null} b  the logged step compared with it
 * @property {number[]|null} shared  the [low, high] every tile is coloured by (null: each its own)
 */

/**
 * ./live_info of a run.
 * @typedef {object} LiveInfo
 * @property {boolean} available
 * @property {string|null} reason  why not, when not available
 * @property {{step: number, saved_at: number, latest_step: number}|null} model
 * @property {{name: string, shape: number[], dtype: string, low: number|null, high: number|null, image: boolean}[]} inputs
 * @property {{name: string, shape: number[]}[]} outputs
 * @property {string[]|null} class_names
 */

/**
 * ./live's answer to one drawn input.
 * @typedef {object} LiveAnswer
 * @property {object[]} layers  LayerEntry plus its summary (every layer) and, for the layers
 *   asked for, its grid (base64 PNG) and stats
 * @property {{name: string, shape: number[], values: (number|null)[]}[]} outputs
 * @property {{step: number, saved_at: number}} model
 * @property {number} elapsed_ms
 */

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class Model extends EventTarget {
  constructor() {
    super();
    /** @type {ViewState} */
    this.state = {
      run: null, layer: null, input: null, sample: 0, step: null, channel: null, compare: null,
      cmap: "viridis", scale: "channel", lo: null, hi: null, live: false, overview: false, heat: "dead", order: "unit",
    };
    /** @type {ReferenceSet|null} the selected run's reference steps */
    this.reference = null;
    /** @type {RunSummary[]} */
    this.runs = [];
    /** @type {RunEntry|null} */
    this.run = null;
    this.layer = null;
    /** @type {StepEntry[]} */
    this.steps = [];
    /** @type {View|null} */
    this.view = null;
    this.playing = false;
    /** @type {LiveInfo|null} */
    this.liveInfo = null;
    this.wanted = {};
    this.drawToken = 0;
    this.layerToken = 0;
    this.runToken = 0;
    this.partialTimer = null;
    this.prefetcher = new Prefetcher();
    // ./stats_series per layer and last step: the sparsity chart and "all steps" scaling.
    this.series = new Map();
    // ./steps of the run's layers shown so far (layer path -> StepEntry[]).
    this.layerSteps = new Map();
    /** @type {{key: string, data: object|null, error: string|null}|null} the run's ./overview */
    this.overview = null;
    this.liveInputs = () => ({});
    this.live = new LiveSession({
      readInputs: () => this.liveInputs(),
      onAnswer: (answer) => {
        this.#emit("live-answer", answer);
        return this.draw();
      },
      onError: (message) => this.#banner(`The saved model could not answer: ${message}`),
      onBusy: (busy) => this.#emit("live-busy", busy),
    });
  }

  on(type, listener) {
    this.addEventListener(type, (event) => listener(event.detail));
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // `wanted`: the state to restore (from the URL) where it exists.
  async start(wanted) {
    this.wanted = wanted;
    this.#message("info", "Loading activation runs…");
    for (const key of ["cmap", "scale", "lo", "hi", "heat", "order"]) if (wanted[key] !== undefined) this.state[key] = wanted[key];
    if (!SCALINGS.some((s) => s.name === this.state.scale)) this.state.scale = "channel";
    if (!COLORMAPS.some((c) => c.name === this.state.cmap)) this.state.cmap = "viridis";
    if (!HEAT_METRICS.some((m) => m.name === this.state.heat)) this.state.heat = "dead";
    if (!TILE_ORDERS.some((o) => o.name === this.state.order)) this.state.order = "unit";
    this.state.overview = Boolean(wanted.overview) && !wanted.live;
    this.#emit("state", this.state);
    await this.loadRuns();
  }

  // Runs first (a small listing whatever the logdir's size), then the chosen run's layers.
  async loadRuns(wanted = this.wanted) {
    let runs;
    try {
      runs = await this.#fetchRuns();
    } catch (error) {
      this.#message("load-failed", error.message);
      return;
    }
    this.runs = runs;
    if (!this.runs.length) {
      this.#message("no-runs", "");
      return;
    }
    const run = this.runs.find((r) => r.run === wanted.run) || this.runs[0];
    this.#emit("runs", { runs: this.runs, selected: run.run });
    await this.selectRun(run.run, wanted);
  }

  // Every run's summary, page after page of ./runs; a partial listing is asked for again.
  async #fetchRuns() {
    const runs = [];
    let page;
    do {
      page = await api.runs(runs.length);
      runs.push(...page.runs);
    } while (page.more > 0 && page.runs.length);
    clearTimeout(this.partialTimer);
    if (page.partial) this.partialTimer = setTimeout(() => this.refresh({ quiet: true }), PARTIAL_RETRY_MS);
    return runs;
  }

  // A run's entry with every layer, page after page of ./layers?run=, and its token labels
  // (./tokens: null when it stored none; a reason among its problems when they are unreadable).
  async #fetchRun(name) {
    const tokens = api.tokens(name).catch((error) => ({ tokens: null, problem: `tokens: ${error.message}` }));
    const layers = [];
    let entry;
    do {
      [entry] = (await api.layers(name, layers.length)).runs;
      layers.push(...entry.layers);
    } while (entry.more > 0 && entry.layers.length);
    const labels = await tokens;
    const problems = [...(entry.problems || []), ...(labels.problem ? [labels.problem] : [])];
    return { ...entry, layers, problems, tokens: Array.isArray(labels.tokens) ? labels.tokens : null };
  }

  async selectRun(name, wanted = {}) {
    this.stopPlaying();
    this.prefetcher.stop();
    const token = ++this.runToken;
    this.state.run = name;
    this.layerSteps = new Map();
    this.live.reset(null);
    this.overview = null;
    this.reference = new ReferenceSet(name);
    // The previous run's layers are not this run's: none are offered until these arrive.
    this.#emit("layers", []);
    let run;
    try {
      run = await this.#fetchRun(name);
    } catch (error) {
      if (token === this.runToken) this.#message("error", `Could not load the layers of run ${name}: ${error.message}`);
      return;
    }
    if (token !== this.runToken) return;
    this.run = run;
    this.#emit("problems", { run: name, problems: run.problems || [] });
    this.#emit("layers", this.run.layers);
    this.#loadOverview();
    this.#loadReference(this.reference);
    const probes = this.run.probes || [];
    this.state.input = probes.some((p) => p.input === wanted.input) ? wanted.input : probes[0]?.input ?? null;
    const count = this.sampleCount();
    this.state.sample = Number.isInteger(wanted.sample) && wanted.sample >= 0 && wanted.sample < count ? wanted.sample : 0;
    this.#emitSamples();
    this.#loadLiveInfo({ open: wanted.live ?? this.state.live });
    const layer = this.run.layers.find((l) => l.layer === wanted.layer) || this.run.layers[0];
    if (!layer) {
      this.#message("empty-state", "This run has no layers logged yet.");
      return;
    }
    await this.selectLayer(layer.layer, wanted);
  }

  sampleCount() {
    const probe = this.run.probes?.find((p) => p.input === this.state.input);
    return Math.max(1, this.run.layers[0]?.samples ?? probe?.samples ?? 1);
  }

  #emitSamples() {
    const { run, input, sample } = this.state;
    const probes = this.run.probes || [];
    const count = this.sampleCount();
    const urls = probes.length ? Array.from({ length: count }, (_, i) => api.probeUrl(run, input, i)) : [];
    this.#emit("samples", { count, probes, input, sample, urls });
  }

  async selectLayer(path, wanted = {}) {
    const token = ++this.layerToken;
    const previous = this.layer;
    this.prefetcher.stop();
    this.layer = this.run.layers.find((l) => l.layer === path);
    this.state.layer = path;
    this.#emit("layer", this.layer);
    const keepChannel = previous && previous.layer !== path ? null : this.state.channel;
    this.state.channel = Number.isInteger(wanted.channel) ? wanted.channel : keepChannel;
    const stepBefore = this.state.step;
    const early = this.#earlyFrame(wanted.step ?? this.state.step);
    let steps;
    try {
      steps = (await api.steps(this.state.run, path)).steps;
    } catch (error) {
      if (token === this.layerToken) this.#message("error", `Could not load the steps of ${path}: ${error.message}`);
      return;
    }
    if (token !== this.layerToken) return;
    this.layerSteps.set(path, steps);
    // A step picked while the steps were loading wins over the one asked for.
    this.#setSteps(steps, this.state.step !== stepBefore ? this.state.step : wanted.step ?? this.state.step);
    const entry = early && steps.find((s) => s.step === early.step);
    if (entry && this.state.step === early.step) api.keep(this.state.run, path, entry, this.state.sample, early);
    const compare = wanted.compare ?? this.state.compare;
    this.state.compare = steps.some((s) => s.step === compare) ? compare : null;
    this.#loadSparsity();
    await this.draw();
  }

  // A layer's first view asks for `step`'s grid and statistics beside its ./steps, rather than
  // after them, when the step is likely logged for it: the layers of a run are usually logged
  // at the same steps, so a step the previous layer had, up to this layer's last one. Not when
  // the layer was shown before and the step is still in memory: the view finds it there.
  #earlyFrame(step) {
    const last = this.layer?.max_step;
    if (!Number.isInteger(step) || !Number.isInteger(last) || step > last || this.state.live || this.state.overview) return null;
    if (step !== last && !this.steps.some((s) => s.step === step)) return null;
    const { run, sample } = this.state;
    const seen = this.layerSteps.get(this.layer.layer)?.find((s) => s.step === step);
    if (seen && api.cached(run, this.layer.layer, seen, this.sampleCount())) return null;
    return api.early(run, this.layer.layer, step, sample);
  }

  // Keeps `step` if logged, else the nearest earlier one, else the first.
  #setSteps(steps, step) {
    this.steps = steps;
    let chosen = null;
    for (const entry of steps) if (step === null || step === undefined || entry.step <= step) chosen = entry.step;
    this.state.step = steps.some((s) => s.step === step) ? step : chosen ?? steps[0]?.step ?? null;
    this.#emit("steps", { steps, step: this.state.step });
  }

  // The current layer's ./stats_series, asked for once per layer and last logged step.
  #series() {
    const { run, layer } = this.state;
    const key = JSON.stringify([run, layer, this.steps.at(-1)?.step ?? null]);
    if (!this.series.has(key)) {
      const promise = api.statsSeries(run, layer);
      promise.catch(() => this.series.delete(key));
      this.series.set(key, promise);
    }
    return this.series.get(key);
  }

  async #loadSparsity() {
    const { run, layer } = this.state;
    try {
      const series = await this.#series();
      if (run === this.state.run && layer === this.state.layer) {
        this.#emit("sparsity", { series: series.steps, channels: this.layer.channels_total });
      }
    } catch (error) {
      this.#emit("sparsity", { error: `Sparsity unavailable: ${error.message}` });
    }
  }

  // The run's ./overview, asked for again when the run has logged a new step.
  async #loadOverview() {
    const run = this.run;
    const key = JSON.stringify([run.run, Math.max(-1, ...run.layers.map((l) => l.max_step ?? -1))]);
    if (this.overview?.key === key) return;
    const shown = this.overview?.data ?? null;
    if (!shown) this.#emit("overview", { data: null, error: null });
    this.overview = { key, data: shown, error: null };
    let data = null;
    let error = null;
    try {
      data = await api.overview(run.run);
    } catch (failure) {
      error = failure.message;
    }
    if (this.overview?.key !== key) return;
    if (error && shown) {
      // A passing failure keeps what is shown; the next refresh asks again.
      this.overview.key = null;
      return;
    }
    this.overview = { key, data, error };
    this.#emit("overview", { data, error });
    // An attention layer's dead heads come from the overview: drawn again with them.
    if (this.layer && headsLayerPath(this.layer.layer) && this.view) await this.draw();
  }

  // The run's reference layers and summary; a run without reference steps (or a plugin that
  // cannot say) has none.
  async #loadReference(set) {
    this.#emit("reference", { set, layers: new Map(), summary: null });
    let layers = new Map();
    let summary = null;
    try {
      layers = (await set.tags()).layers;
      if (layers.size) summary = await set.summary();
    } catch (error) {
      this.#banner(`The reference steps of this run could not be read: ${error.message}`);
    }
    if (set === this.reference) this.#emit("reference", { set, layers, summary });
  }

  // The frames with their tiles in the chosen order (by the reference step nearest the current
  // step); as they are when the order is by unit or the layer has no such step.
  async #ordered(frames) {
    const { order, layer, step } = this.state;
    const set = this.reference;
    if (order === "unit" || !set || frames[0].source !== "logged") return frames;
    const entry = (await set.tags()).layers.get(layer);
    if (!entry?.steps.length) return frames;
    const answer = await set.step(layer, referenceStepFor(entry.steps, step));
    const named = TILE_ORDERS.find((o) => o.name === order).label;
    return frames.map((frame) => {
      const moved = frame && reorderedFrame(frame, tileOrder(order, Array.from(frame.stats.channels), answer));
      return moved === frame ? frame : { ...moved, caption: `${frame.caption} · tiles by ${named} at reference step ${answer.step}` };
    });
  }

  // Every layer's summary (overview.py's fields) for what the grid shows: the drawn input's
  // in the live view, else the selected step's from the overview; {drawn, summaries: Map
  // path -> summary} or null when there is none.
  layerSummaries() {
    if (this.state.live) {
      const answer = this.live.answer;
      return answer && { drawn: true, summaries: new Map(answer.layers.map((entry) => [entry.layer, entry.summary])) };
    }
    const data = this.overview?.data;
    if (!data || this.state.step === null) return null;
    const index = stepIndex(data.steps, this.state.step);
    return { drawn: false, summaries: new Map(data.layers.map((layer) => [layer.layer, summaryAt(layer, index)])) };
  }

  // Applies a change of view state, then redraws.
  async set(change) {
    Object.assign(this.state, change);
    if ("input" in change) this.#emitSamples();
    if ("scale" in change && this.state.scale === "fixed" && (this.state.lo === null || this.state.hi === null) && this.view) {
      // Start the fixed range from what is on screen, so switching to it changes nothing yet.
      const [low, high] = this.view.shared || spanOf([this.view.a.ranges]);
      [this.state.lo, this.state.hi] = [low, high].map((value) => Number(value.toPrecision(4)));
    }
    await this.draw();
  }

  stopPlaying() {
    this.playing = false;
    this.#emit("playing", false);
  }

  async togglePlay() {
    if (this.playing) {
      this.stopPlaying();
      return;
    }
    if (this.steps.length < 2 || this.state.live) return;
    this.playing = true;
    this.#emit("playing", true);
    while (this.playing) {
      const index = this.steps.findIndex((s) => s.step === this.state.step);
      const next = this.steps[(index + 1) % this.steps.length].step;
      await this.set({ step: next });
      await sleep(PLAY_DELAY_MS);
    }
  }

  // The previous or next drawn channel, in grid order (tiled layouts only).
  stepChannel(offset) {
    if (!this.view || !this.view.a.geometry.layout.tiled) return;
    const channels = Array.from(this.view.a.stats.channels);
    if (!channels.length) return;
    const at = channels.indexOf(this.state.channel);
    const next = at < 0 ? (offset > 0 ? 0 : channels.length - 1)
      : Math.min(channels.length - 1, Math.max(0, at + offset));
    this.set({ channel: channels[next] });
  }

  // New runs and steps written since the page loaded. At the last step, follows new ones.
  async refresh({ quiet = false } = {}) {
    let runs;
    let run = null;
    try {
      runs = await this.#fetchRuns();
      if (this.run && runs.some((r) => r.run === this.state.run)) run = await this.#fetchRun(this.state.run);
    } catch (error) {
      if (!quiet) this.#banner(`Could not reload: ${error.message}`);
      return;
    }
    this.#banner(null);
    if (!this.run) {
      if (runs.length) await this.loadRuns(this.state);
      return;
    }
    this.runs = runs;
    this.#emit("runs", { runs: this.runs, selected: run?.run ?? null });
    if (!run || run.run !== this.state.run) return;
    this.#emit("problems", { run: run.run, problems: run.problems || [] });
    const names = (r) => JSON.stringify(r.layers.map((l) => [l.layer, l.layer_class]));
    if (names(run) !== names(this.run)) this.#emit("layers", run.layers);
    this.run = run;
    this.#loadLiveInfo({ reloading: true });
    this.#loadOverview();
    const layer = run.layers.find((l) => l.layer === this.state.layer);
    if (!layer) return;
    this.layer = layer;
    const atEnd = this.steps.length && this.state.step === this.steps[this.steps.length - 1].step;
    const steps = (await api.steps(run.run, layer.layer).catch(() => ({ steps: this.steps }))).steps;
    if (steps.length === this.steps.length) return;
    this.#setSteps(steps, atEnd ? steps[steps.length - 1].step : this.state.step);
    this.#loadSparsity();
    await this.draw();
  }

  // A message in place of the view.
  #message(kind, text) {
    this.view = null;
    this.#emit("message", { kind, text });
  }

  #banner(text) {
    this.#emit("banner", text);
  }

  /** @returns {Promise<import("./frames.js").Frame>} `step` of the current layer and sample. */
  loggedFrame(step) {
    const entry = this.steps.find((s) => s.step === step) || { step, wall_time: null };
    return loggedFrame(this.state.run, this.layer, entry, this.state.sample, this.run?.tokens?.[this.state.sample] ?? null,
      this.headsOf(this.layer.layer, step));
  }

  // The per-head numbers of attention layer `path` at `step` from the run's overview, or null.
  headsOf(path, step) {
    return headsFor(this.overview?.data, path, step);
  }

  // [low, high] over every step and probe sample of the layer ("all steps" scaling): the
  // series' per-step range of the drawn tiles, computed on the server.
  async #stepsRange() {
    const series = await this.#series();
    return spanOf([series.steps.map((entry) => [entry.low, entry.high])]);
  }

  // The range every tile shares under the current scaling (null: per channel).
  async #sharedRange(frames) {
    const { scale, lo, hi } = this.state;
    const framesSpan = () => spanOf(frames.map((f) => f.ranges));
    if (scale === "layer") return framesSpan();
    // A live input may reach past every logged value: the span includes it.
    if (scale === "steps") return spanOf([[await this.#stepsRange()], ...frames.map((f) => f.ranges)]);
    if (scale === "fixed") {
      if (Number.isFinite(lo) && Number.isFinite(hi) && hi > lo) return [lo, hi];
      this.#banner("Fixed range: enter a low value below the high value; showing the layer's range meanwhile.");
      return framesSpan();
    }
    return null;
  }

  async draw() {
    const token = ++this.drawToken;
    const state = this.state;
    this.#emit("state", state);
    // The overview is drawn from its own data ("overview" events).
    if (!this.layer || state.overview) return;
    const current = state.live ? this.live.frame(state.layer) : state.step !== null && this.loggedFrame(state.step);
    if (!current) {
      this.#message("empty-state", state.live ? `Waiting for the saved model's answer for ${state.layer}…` : "No steps logged for this layer yet.");
      return;
    }
    let a;
    let b = null;
    let shared;
    try {
      [a, b] = await this.#ordered(await Promise.all([current, state.compare !== null ? this.loggedFrame(state.compare) : null]));
      this.#banner(null);
      shared = await this.#sharedRange(b ? [a, b] : [a]);
    } catch (error) {
      if (token === this.drawToken) {
        const what = state.live ? "the drawn input" : `step ${state.step}`;
        this.#message("error", `Could not draw ${what} of ${state.layer}: ${error.message}`);
      }
      return;
    }
    if (token !== this.drawToken) return;
    // The overview (an attention layer's dead heads) may have come while these frames loaded.
    if ([a, b].some((f) => f?.source === "logged" && f.heads === null && this.headsOf(this.layer.layer, f.step))) {
      await this.draw();
      return;
    }
    this.view = { a, b, shared };
    this.#emit("view", this.view);
    if (a.source === "logged") {
      const stepBytes = a.grid.codes.length * this.sampleCount() + statsWeight(a.stats);
      this.prefetcher.aim(state.run, this.layer, this.steps, a.step, stepBytes);
    }
  }

  // --- The live view: the run's saved model answers a drawn or uploaded input. ---

  // open: open the live view once the run's model is known to answer; reloading: keep what
  // is shown meanwhile.
  async #loadLiveInfo({ open = false, reloading = false } = {}) {
    const run = this.state.run;
    if (!reloading) {
      this.liveInfo = null;
      this.#emit("live-info", null);
    }
    let info;
    try {
      info = await api.liveInfo(run);
    } catch (error) {
      if (reloading) return; // a passing failure: what is known stays
      info = { available: false, reason: `Could not ask for the run's saved model: ${error.message}`, inputs: [], outputs: [] };
      if (open) this.#banner(info.reason);
    }
    if (run !== this.state.run) return;
    this.liveInfo = info;
    this.#emit("live-info", info);
    if (open && info.available) await this.openLive();
    else if (this.state.live && !info.available) await this.closeLive();
  }

  // The run's latest logged step, as far as this page knows.
  latestStep() {
    const known = [this.steps.at(-1)?.step, this.liveInfo?.model?.latest_step].filter(Number.isFinite);
    return known.length ? Math.max(...known) : null;
  }

  // `read()` returns the inputs to send: {input name: nested list of one sample}.
  setLiveSource(read) {
    this.liveInputs = read;
  }

  async openLive() {
    if (!this.liveInfo?.available) return;
    this.state.live = true;
    this.state.overview = false;
    this.stopPlaying();
    this.live.reset(this.state.run);
    await this.draw();
  }

  async closeLive() {
    this.state.live = false;
    this.live.reset(null);
    await this.draw();
  }

  // The drawing changed: asks the saved model about it, for the layer shown.
  requestLive() {
    if (this.state.live) this.live.inputChanged([this.state.layer]);
  }

  // --- The overview: every layer of the run over every step, instead of the grid. ---

  async openOverview() {
    this.live.reset(null);
    await this.set({ overview: true, live: false });
  }

  async closeOverview() {
    await this.set({ overview: false });
  }

  // Layer `path` at `step` (its nearest logged step) in the grid, with `channel` (a head of
  // an attention layer) picked if given.
  async openLayerAt(path, step, channel = undefined) {
    this.state.overview = false;
    await this.selectLayer(path, { step, channel });
  }
}
