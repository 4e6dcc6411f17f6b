// The model's outputs for the drawn input as bars: class scores with the run's class names and
// the top one highlighted, or the raw output values.

import { clear, el, fmt } from "../dom.js";

// More values than this: only the largest are drawn, largest first.
const MAX_BARS = 12;

// [{label, value, top}] of one output, in drawing order.
function bars(output, classNames) {
  const values = output.values;
  const named = classNames && classNames.length === values.length;
  const entries = values.map((value, index) => ({ label: named ? classNames[index] : String(index), value }));
  let best = -1;
  entries.forEach((entry, index) => {
    if (entry.value !== null && (best < 0 || entry.value > entries[best].value)) best = index;
  });
  entries.forEach((entry, index) => { entry.top = index === best && values.length > 1; });
  if (entries.length <= MAX_BARS) return entries;
  return entries.filter((entry) => entry.value !== null).sort((p, q) => q.value - p.value).slice(0, MAX_BARS);
}

export class OutputChart {
  constructor() {
    this.list = el("div", { class: "output-list" });
    this.element = el("section", { class: "output-chart", "aria-label": "Model outputs" },
      el("div", { class: "section-title", text: "Outputs" }), this.list);
  }

  // outputs: [{name, shape, values: flat, null for NaN/Inf}]; classNames: the run's, or null
  // (they label an output with as many values).
  show(outputs, classNames) {
    clear(this.list);
    for (const output of outputs) {
      const entries = bars(output, classNames);
      const finite = entries.map((entry) => entry.value).filter((value) => value !== null);
      const low = Math.min(0, ...finite);
      const high = Math.max(0, ...finite);
      const span = high > low ? high - low : 1;
      const shown = entries.length < output.values.length ? ` (top ${entries.length} of ${output.values.length})` : "";
      this.list.append(el("div", { class: "output-name", text: `${output.name}${shown}` }),
        ...entries.map((entry) => this.#row(entry, low, span)));
    }
  }

  #row(entry, low, span) {
    const fill = el("span", { class: "output-fill" });
    if (entry.value !== null) {
      // Bars grow from zero, leftwards for negative values.
      const zero = -low / span;
      const at = (entry.value - low) / span;
      fill.style.setProperty("--from", Math.min(zero, at));
      fill.style.setProperty("--size", Math.abs(at - zero));
    }
    return el("div", { class: entry.top ? "output-row top" : "output-row", title: `${entry.label}: ${fmt(entry.value)}` },
      el("span", { class: "output-label", text: entry.label }),
      el("span", { class: "output-bar" }, fill),
      el("span", { class: "output-value", text: fmt(entry.value) }));
  }

  clear() {
    clear(this.list);
  }
}
