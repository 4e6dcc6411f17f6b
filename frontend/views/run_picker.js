// The run chooser, the reload button, and the two views of a whole run besides the grid: the
// Overview of every layer over every step, and "Try an input": the live view of the run's
// saved model, offered only when that model can answer.

import { clear, el, option } from "../dom.js";

export class RunPicker {
  constructor({ onRun, onReload, onOverviewToggle, onLiveToggle }) {
    this.select = el("select", { class: "run-select", "aria-label": "Run", on: { change: () => onRun(this.select.value) } });
    this.reload = el("button", { class: "icon", title: "Reload runs and steps", text: "↻", on: { click: onReload } });
    this.overview = el("button", { class: "overview-toggle", text: "Overview", "aria-pressed": "false",
      title: "Every layer's dead channels, sparsity and NaN/Inf over every step", on: { click: onOverviewToggle } });
    this.live = el("button", { class: "live-toggle", text: "Try an input", disabled: true, on: { click: onLiveToggle } });
    this.element = el("section", { class: "runs" }, el("div", { class: "section-title" }, "Run"),
      el("div", { class: "run-row" }, this.select, this.reload), el("div", { class: "mode-row" }, this.overview, this.live));
  }

  setOverview(open) {
    this.overview.classList.toggle("active", open);
    this.overview.setAttribute("aria-pressed", String(open));
  }

  setRuns(runs, selected) {
    clear(this.select).append(...runs.map((r) => option(r.run, r.run)));
    if (selected !== null) this.select.value = selected;
  }

  // info: the run's live_info (model.js), or null while it is asked for; open: the live view
  // is shown.
  setLive(info, open) {
    this.live.disabled = !info?.available;
    this.live.title = !info ? "Looking for the run's saved model…"
      : info.available ? "Draw or upload an input and watch every layer of the run's saved model respond"
        : info.reason || "This run has no saved model to try inputs on.";
    this.live.textContent = open ? "Back to logged steps" : "Try an input";
    this.live.classList.toggle("active", open);
    this.live.setAttribute("aria-pressed", String(open));
  }
}
