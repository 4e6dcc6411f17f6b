// The toolbar's downloads of what is shown: PNG (with caption and colour bar), the layer
// across every logged step as a video, the statistics as JSON (export.js makes the files).

import { exportJson, exportPng, exportVideo } from "./export.js";

// model: model.js; views: the views index.js built (grid, colorBar, options, banner).
export class Downloads {
  constructor(model, views) {
    this.model = model;
    this.views = views;
    this.recording = false;
  }

  #caption() {
    const { run, layer, sample, cmap } = this.model.state;
    const { a, b } = this.model.view;
    const versus = b ? ` vs ${b.label}` : "";
    const sampleText = a.source === "live" && !b ? "" : ` · sample ${sample}`;
    return `${run} · ${layer} · ${a.label}${versus}${sampleText} · ${cmap}`;
  }

  #shown() {
    const { grid, colorBar } = this.views;
    return { canvases: grid.canvases(), zoom: grid.zoom, legend: colorBar.legend(this.#caption()) };
  }

  #names() {
    const { run, layer, sample, step, live } = this.model.state;
    return { run, layer, sample, step: live ? "live" : step };
  }

  png() {
    if (!this.model.view) return;
    const { canvases, zoom, legend } = this.#shown();
    exportPng(canvases, zoom, this.#names(), legend);
  }

  json() {
    const view = this.model.view;
    if (!view) return;
    exportJson({
      ...this.#names(), compare: this.model.state.compare, layer_info: view.a.layer,
      stats: view.a.stats, compare_stats: view.b?.stats ?? null,
    });
  }

  updateVideo(state) {
    if (state.live) this.views.options.setVideoAvailable(false, "The video plays the logged steps: leave the live view first");
    else this.views.options.setVideoAvailable(!this.recording);
  }

  // Plays every step through the grid once while the browser records it; then back to the
  // step that was shown.
  async video() {
    const model = this.model;
    if (!model.view || model.steps.length < 2 || this.recording || model.state.live) return;
    model.stopPlaying();
    this.recording = true;
    this.updateVideo(model.state);
    const { run, layer, sample, step } = model.state;
    try {
      await exportVideo(model.steps.map((s) => s.step), async (next) => {
        await model.set({ step: next });
        return this.#shown();
      }, { run, layer, sample });
    } catch (error) {
      this.views.banner.show(`Could not record the video: ${error.message}`);
    } finally {
      this.recording = false;
      await model.set({ step });
    }
  }
}
