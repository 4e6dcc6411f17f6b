// The Activations tab. TensorBoard loads this module into the tab's iframe (whose base URL is
// the plugin's route prefix) and calls render() once. Here the model (model.js) and the views
// (views/*.js) are built and wired: views report what the user does to the model, the model's
// events update the views. A new view is a new file plus its lines here.

import { el, clear } from "./static/dom.js";
import { Downloads } from "./static/downloads.js";
import { Model } from "./static/model.js";
import { headNote, headsLayerPath } from "./static/head_values.js";
import { layerNote } from "./static/overview_values.js";
import { followTheme } from "./static/theme.js";
import { readState, writeState } from "./static/url_state.js";
import { Banner } from "./static/views/banner.js";
import { ChannelPanel } from "./static/views/channel_panel.js";
import { ColorBar } from "./static/views/colorbar.js";
import { messageView } from "./static/views/empty_state.js";
import { GridView } from "./static/views/grid_view.js";
import { HeadMap } from "./static/views/head_map.js";
import { HeadPanel } from "./static/views/head_panel.js";
import { LayerHeader } from "./static/views/layer_header.js";
import { LayerList } from "./static/views/layer_list.js";
import { LivePanel } from "./static/views/live_panel.js";
import { OverviewView } from "./static/views/overview.js";
import { ProblemsNotice } from "./static/views/problems_notice.js";
import { RunPicker } from "./static/views/run_picker.js";
import { SamplePicker } from "./static/views/sample_picker.js";
import { SelectivityMap } from "./static/views/selectivity_map.js";
import { SparsityChart } from "./static/views/sparsity_chart.js";
import { StatusLine } from "./static/views/status_line.js";
import { StepBar } from "./static/views/step_bar.js";
import { TopInputs } from "./static/views/top_inputs.js";
import { ViewOptions } from "./static/views/view_options.js";

const POLL_MS = 30000;
// The URL follows the view this much later, once for every change made meanwhile: writing it
// (history.replaceState in the iframe and in TensorBoard's page) costs milliseconds a step
// shown would otherwise wait for, and the slider or Play changes the view many times a second.
const URL_DELAY_MS = 200;

function loadStyle(href) {
  return new Promise((resolve) => {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    // An unstyled page still works, so a failed stylesheet does not stop the tab.
    link.addEventListener("load", resolve, { once: true });
    link.addEventListener("error", resolve, { once: true });
    document.head.append(link);
  });
}

function writeUrl(state) {
  try {
    writeState(state);
  } catch (error) {
    // A browser that refuses history updates still shows the view; only links suffer.
    console.warn("tb-activations: could not store the view in the URL", error);
  }
}

// write(state) stores the state in the URL URL_DELAY_MS later, as it is then.
function urlWriter() {
  let timer = null;
  return (state) => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      writeUrl(state);
    }, URL_DELAY_MS);
  };
}

export async function render() {
  document.title = "Activations";
  await loadStyle("./static/style.css");
  followTheme();
  const model = new Model();
  const views = buildViews(model);
  showModel(model, views);
  clear(document.body).append(views.app);
  bindKeys(model, views);
  await model.start(readState());
  setInterval(() => {
    if (!document.hidden && !model.playing) model.refresh({ quiet: true });
  }, POLL_MS);
}

// The views, each told what to do with the user's actions, laid out in three columns.
function buildViews(model) {
  const v = {};
  v.runs = new RunPicker({
    onRun: (name) => model.selectRun(name),
    onReload: () => model.refresh(),
    onOverviewToggle: () => (model.state.overview ? model.closeOverview() : model.openOverview()),
    onLiveToggle: () => (model.state.live ? model.closeLive() : model.openLive()),
  });
  v.problems = new ProblemsNotice();
  v.samples = new SamplePicker({ onSample: (sample) => model.set({ sample }), onInput: (input) => model.set({ input }) });
  v.layers = new LayerList({ onSelect: (path) => model.openLayerAt(path, model.state.step) });
  v.overview = new OverviewView({
    onOpen: (path, step) => model.openLayerAt(path, step),
    onMetric: (heat) => model.set({ heat }),
  });
  v.heads = new HeadMap({ onOpen: (path, step, head) => model.openLayerAt(path, step, head) });
  v.overview.addSection(v.heads.element);
  v.selectivity = new SelectivityMap({ onOpen: (path, step) => model.openLayerAt(path, step) });
  v.overview.addSection(v.selectivity.element);
  v.stepBar = new StepBar({ onStep: (step) => model.set({ step }), onPlayToggle: () => model.togglePlay() });
  v.downloads = new Downloads(model, v);
  v.options = new ViewOptions({
    onChange: (change) => model.set(change),
    onZoom: (zoom) => v.grid.setZoomMode(zoom),
    onMarks: (on) => v.grid.setMarks(on),
    onExportPng: () => v.downloads.png(),
    onExportVideo: () => v.downloads.video(),
    onExportJson: () => v.downloads.json(),
  });
  v.grid = new GridView({
    onPoint: ({ lines, info, frame }) => {
      v.status.setText(lines.map((line) => line.text ?? line).join(" · "));
      v.colorBar.showTile(frame, info, model.state);
      if (frame === model.view?.a) v.headPanel.pointAt(info.channel, info.y);
    },
    onLeave: () => {
      if (model.view) v.colorBar.showView(model.view, model.state);
    },
    onChannel: (channel) => model.set({ channel }),
  });
  v.header = new LayerHeader();
  v.banner = new Banner();
  v.colorBar = new ColorBar();
  v.status = new StatusLine();
  v.sparsity = new SparsityChart({ onStep: (step) => model.set({ step }) });
  v.channel = new ChannelPanel({
    onStep: (step) => model.set({ step }),
    onClose: () => model.set({ channel: null }),
    onPoint: (x, y) => v.headPanel.pointAt(model.state.channel, y),
  });
  v.headPanel = new HeadPanel({ onHead: (channel) => model.set({ channel }) });
  v.topInputs = new TopInputs();
  v.channel.addSection(v.topInputs.element);
  v.live = new LivePanel({
    onDraw: () => model.requestLive(),
    onDone: () => model.requestLive(),
    onFromProbe: () => {
      const picture = v.samples.picture(model.state.sample);
      if (picture?.complete) v.live.loadPicture(picture, model.state.input);
    },
    onError: (message) => v.banner.show(message),
  });
  model.setLiveSource(() => v.live.values());

  const sidebar = el("aside", { class: "sidebar" }, v.runs.element, v.problems.element, v.samples.element, v.layers.element);
  const main = el("main", { class: "main" },
    el("div", { class: "toolbar" }, v.stepBar.element, v.options.element),
    v.live.element, v.header.element, v.banner.element, v.overview.element, v.grid.element,
    el("footer", { class: "grid-footer" }, v.colorBar.element, v.status.element));
  const details = el("aside", { class: "details" }, v.sparsity.element, v.headPanel.element, v.channel.element);
  v.app = el("div", { class: "app" }, sidebar, main, details);
  return v;
}

// The model's events, shown by the views.
function showModel(model, v) {
  const showLiveState = (state) => {
    v.live.setVisible(state.live);
    v.live.setSample(state.sample, Boolean(v.samples.picture(state.sample)));
    v.runs.setLive(model.liveInfo, state.live);
    v.stepBar.setEnabled(!state.live, state.live ? "The grid shows the drawn input; compare it with a logged step below" : "");
    v.downloads.updateVideo(state);
  };
  // The layer list's notes: the drawn input's summaries while live, else the step's; an
  // attention layer's heads and dead heads at the step (none for a drawn input: dead heads
  // are judged over every probe sample).
  const showLayerNotes = () => {
    const known = model.layerSummaries();
    const notes = new Map();
    for (const layer of known ? model.run.layers : []) {
      const summary = known.summaries.get(layer.layer);
      const heads = headsLayerPath(layer.layer) && !known.drawn ? model.headsOf(layer.layer, model.state.step) : null;
      if (heads) notes.set(layer.layer, headNote(heads));
      else if (summary && !headsLayerPath(layer.layer)) notes.set(layer.layer, layerNote(summary, layer.channels_total, known.drawn));
    }
    v.layers.setNotes(notes);
  };
  const writeUrlSoon = urlWriter();
  model.on("state", (state) => {
    // Until a layer is chosen the URL still holds the view to restore.
    if (state.layer !== null) writeUrlSoon(state);
    v.options.sync(state);
    v.stepBar.setStep(state.step);
    v.sparsity.setStep(state.step);
    v.samples.select(state.sample);
    v.app.classList.toggle("overview-open", state.overview);
    v.runs.setOverview(state.overview);
    v.overview.setState(state);
    v.heads.setState(state);
    v.selectivity.setState(state);
    v.overview.setVisible(state.overview);
    showLiveState(state);
    showLayerNotes();
  });
  model.on("overview", (overview) => {
    v.overview.setData(overview);
    v.heads.setData(overview);
    showLayerNotes();
  });
  model.on("runs", ({ runs, selected }) => {
    v.app.classList.remove("empty");
    v.runs.setRuns(runs, selected);
  });
  model.on("problems", ({ run, problems }) => v.problems.show(run, problems));
  model.on("layers", (layers) => {
    v.layers.setLayers(layers);
    showLayerNotes();
  });
  model.on("samples", (samples) => v.samples.set(samples));
  let referenceLayers = new Map();
  model.on("reference", ({ layers, summary }) => {
    referenceLayers = layers;
    v.selectivity.setData(summary);
    v.options.setReference(referenceLayers.get(model.state.layer), model.layer);
  });
  model.on("layer", (layer) => {
    v.options.setReference(referenceLayers.get(layer.layer), layer);
    v.layers.select(layer.layer);
    v.header.show(layer);
    v.channel.hide();
    v.headPanel.setLayer(layer, model.run.layers);
    // Attention probabilities have no dead channels or sparsity to chart: their heads are shown.
    v.sparsity.element.hidden = Boolean(headsLayerPath(layer.layer));
    v.topInputs.hide();
  });
  model.on("steps", ({ steps, step }) => {
    v.stepBar.setSteps(steps);
    v.options.setSteps(steps, step);
  });
  model.on("sparsity", ({ series, channels, error }) => {
    if (error) v.sparsity.setError(error);
    else v.sparsity.set(series, channels);
    v.sparsity.setStep(model.state.step);
  });
  model.on("view", (view) => {
    v.grid.show(view, model.state);
    v.colorBar.setVisible(true);
    v.colorBar.showView(view, model.state);
    v.status.showSummary(view.a);
    v.headPanel.show(view.a, model.state, model.state.live ? v.live.picture() : v.samples.picture(model.state.sample));
    showChannel(model, v, view);
  });
  model.on("message", (message) => {
    const shown = messageView(message, () => model.loadRuns());
    if (shown.empty) v.app.classList.add("empty");
    v.grid.showMessage(shown.content, shown.kind);
    v.colorBar.setVisible(false);
    v.status.setText("");
  });
  model.on("banner", (text) => v.banner.show(text));
  model.on("playing", (playing) => v.stepBar.setPlaying(playing));
  model.on("live-info", (info) => {
    v.live.setInfo(info);
    v.live.showModel(info?.model, model.latestStep());
    showLiveState(model.state);
  });
  model.on("live-answer", (answer) => {
    v.live.showOutputs(answer.outputs);
    v.live.showModel(answer.model, model.latestStep());
    showLayerNotes();
  });
  model.on("live-busy", (busy) => v.live.setBusy(busy));
}

function showChannel(model, v, view) {
  const { run, layer, sample, channel, cmap, scale, lo, hi, live } = model.state;
  if (channel === null) {
    v.channel.hide();
    v.topInputs.hide();
    return;
  }
  if (live) v.topInputs.hide();
  else v.topInputs.show({ set: model.reference, layer, channel, step: model.state.step });
  v.channel.showChannel({
    view, channel, cmap, scale,
    picture: live ? v.live.picture() : v.samples.picture(sample),
    // The drawn input has no steps: no filmstrip.
    film: live ? null : {
      key: JSON.stringify([run, layer, sample, channel, cmap, scale, lo, hi, model.steps.length]),
      steps: model.steps.map((entry) => entry.step),
      frameAt: (step) => model.loggedFrame(step),
    },
  });
}

// ↑/↓ layers, ←/→ steps, space plays, [ and ] move between channels, Esc closes the channel.
function bindKeys(model, v) {
  const actions = {
    ArrowUp: () => v.layers.move(-1),
    ArrowDown: () => v.layers.move(1),
    ArrowLeft: () => v.stepBar.nudge(-1),
    ArrowRight: () => v.stepBar.nudge(1),
    " ": () => model.togglePlay(),
    "[": () => model.stepChannel(-1),
    "]": () => model.stepChannel(1),
    Escape: () => model.set({ channel: null }),
  };
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest && event.target.closest("input, select, textarea")) return;
    if (event.key === " " && event.target.closest && event.target.closest("button")) return;
    const action = Object.hasOwn(actions, event.key) ? actions[event.key] : null;
    if (!action) return;
    action();
    event.preventDefault();
  });
}
