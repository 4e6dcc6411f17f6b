// The run chooser (with TensorBoard's run filter: a case-insensitive regular expression), the
// reload button, and the two views of a whole run besides the grid: the Overview of every
// layer over every step, and "Try an input": the live view of the run's saved model, offered
// only when that model can answer.

import { clear, el, option } from "../dom.js";

/**
 * The runs whose name matches `filter` as TensorBoard's run filter does (a regular
 * expression, case-insensitive; empty matches every run).
 * @returns {{runs: object[], error: string|null}} error: why the filter is no regular expression
 */
export function filterRuns(runs, filter) {
  if (!filter) return { runs, error: null };
  let pattern;
  try {
    pattern = new RegExp(filter, "i");
  } catch (error) {
    return { runs: [], error: error.message };
  }
  return { runs: runs.filter((r) => pattern.test(r.run)), error: null };
}

export class RunPicker {
  constructor({ onRun, onReload, onOverviewToggle, onLiveToggle }) {
    this.runs = [];
    this.selected = null;
    this.select = el("select", { class: "run-select", "aria-label": "Run", on: { change: () => onRun(this.select.value) } });
    this.filter = el("input", {
      class: "run-filter", type: "search", placeholder: "Filter runs (regex)", "aria-label": "Filter runs (regular expression)",
      spellcheck: "false", on: { input: () => this.#showRuns() },
    });
    this.count = el("div", { class: "run-count", role: "status" });
    this.reload = el("button", { class: "icon", title: "Reload runs and steps", text: "↻", on: { click: onReload } });
    this.overview = el("button", { class: "overview-toggle", text: "Overview", "aria-pressed": "false",
      title: "Every layer's dead channels, sparsity and NaN/Inf over every step", on: { click: onOverviewToggle } });
    this.live = el("button", { class: "live-toggle", text: "Try an input", disabled: true, on: { click: onLiveToggle } });
    this.element = el("section", { class: "runs" }, el("div", { class: "section-title" }, "Run"),
      this.filter, this.count, el("div", { class: "run-row" }, this.select, this.reload),
      el("div", { class: "mode-row" }, this.overview, this.live));
  }

  setOverview(open) {
    this.overview.classList.toggle("active", open);
    this.overview.setAttribute("aria-pressed", String(open));
  }

  setRuns(runs, selected) {
    this.runs = runs;
    this.selected = selected;
    this.#showRuns();
  }

  // The runs the filter matches; the selected run stays listed (first) so the chooser shows it.
  #showRuns() {
    const { runs, error } = filterRuns(this.runs, this.filter.value);
    this.filter.classList.toggle("invalid", Boolean(error));
    this.filter.setAttribute("aria-invalid", String(Boolean(error)));
    const total = this.runs.length;
    this.count.textContent = error ? `Not a regular expression: ${error}`
      : this.filter.value ? `${runs.length} of ${total} runs match` : total > 1 ? `${total} runs` : "";
    this.count.classList.toggle("error", Boolean(error));
    const shown = this.selected !== null && !runs.some((r) => r.run === this.selected)
      ? [{ run: this.selected }, ...runs] : runs;
    clear(this.select).append(...shown.map((r) => option(r.run, r.run)));
    if (this.selected !== null) this.select.value = this.selected;
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
