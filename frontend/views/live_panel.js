// "Try an input": a drawing pad per input of the run's saved model, which saved model answers
// (its step, how long ago, whether older than the latest logged step), and its outputs.

import { clear, el, fmt, option } from "../dom.js";
import { drawable } from "../input_values.js";
import { DrawingPad } from "./drawing_pad.js";
import { OutputChart } from "./output_chart.js";

function ago(seconds) {
  const elapsed = Math.max(0, Date.now() / 1000 - seconds);
  if (elapsed < 60) return "just now";
  if (elapsed < 3600) return `${Math.round(elapsed / 60)} min ago`;
  if (elapsed < 2 * 86400) return `${Math.round(elapsed / 3600)} h ago`;
  return `${Math.round(elapsed / 86400)} days ago`;
}

// Pads are kept while the inputs stay the same, so a reload does not wipe a drawing.
function inputsKey(inputs) {
  return JSON.stringify(inputs.map((input) => [input.name, input.shape, input.dtype, input.low, input.high]));
}

export class LivePanel {
  // onDraw / onDone: the drawing changed during / at the end of a stroke (DrawingPad);
  // onFromProbe(): load the selected probe sample into the pad; onError(message).
  constructor({ onDraw, onDone, onFromProbe, onError }) {
    this.handlers = { onDraw, onDone, onError };
    this.pads = new Map();
    this.key = null;
    this.inputSelect = el("select", { class: "live-input", "aria-label": "Input to draw", hidden: true,
      on: { change: () => this.#showPad() } });
    this.stage = el("div", { class: "live-pad" });
    this.tools = el("div", { class: "live-tools-slot" });
    this.fromProbe = el("button", { class: "from-probe", on: { click: onFromProbe } });
    this.modelLine = el("div", { class: "live-model" });
    this.warning = el("div", { class: "live-warning", hidden: true });
    this.busy = el("span", { class: "live-busy", text: "answering…", hidden: true });
    this.note = el("div", { class: "empty-note", hidden: true });
    this.outputs = new OutputChart();
    this.element = el("section", { class: "live-panel", hidden: true, "aria-label": "Try an input" },
      this.stage,
      el("div", { class: "live-tools" },
        el("div", { class: "section-title" }, "Your input", this.busy),
        this.inputSelect, this.tools, this.fromProbe, this.modelLine, this.warning, this.note),
      this.outputs.element);
    this.setSample(0, false);
  }

  setVisible(visible) {
    this.element.hidden = !visible;
  }

  setBusy(busy) {
    this.busy.hidden = !busy;
  }

  // info: the run's live_info (model.js).
  setInfo(info) {
    const inputs = info?.available ? info.inputs : [];
    this.classNames = info?.class_names ?? null;
    const key = inputsKey(inputs);
    if (key === this.key) return;
    this.key = key;
    this.pads = new Map(inputs.filter(drawable).map((input) => [input.name, new DrawingPad(input, this.handlers)]));
    const undrawable = inputs.filter((input) => !drawable(input)).map((input) => input.name);
    const notes = inputs.filter((input) => input.range_known === false)
      .map((input) => `${input.name}: values assumed in ${fmt(input.low)}…${fmt(input.high)}.`);
    if (undrawable.length) notes.push(`Not drawable here (not image-like): ${undrawable.join(", ")}.`);
    this.note.hidden = !notes.length;
    this.note.textContent = notes.join(" ");
    clear(this.inputSelect).append(...[...this.pads.keys()].map((name) => option(name, name)));
    this.inputSelect.hidden = this.pads.size < 2;
    this.outputs.clear();
    this.#showPad();
  }

  #pad() {
    return this.pads.get(this.inputSelect.value) ?? null;
  }

  #showPad() {
    const pad = this.#pad();
    clear(this.stage).append(pad ? pad.element : "");
    clear(this.tools).append(pad ? pad.tools : "");
  }

  // The probe sample "start from" loads; available: it has a picture.
  setSample(sample, available) {
    this.fromProbe.textContent = `Start from probe sample ${sample}`;
    this.fromProbe.disabled = !available;
    this.fromProbe.title = available ? "Load this probe picture into the pad, then edit it"
      : "This run stored no picture of this probe sample";
  }

  // Draws `picture` (a loaded <img>) into the pad of the input it belongs to, or the one shown.
  loadPicture(picture, input) {
    const pad = this.pads.get(input) ?? this.#pad();
    if (!pad) return;
    if (this.pads.has(input)) this.inputSelect.value = input;
    this.#showPad();
    pad.drawPicture(picture, picture.naturalWidth, picture.naturalHeight);
  }

  // {input name: nested list} of every input; the server says which it misses.
  values() {
    return Object.fromEntries([...this.pads].map(([name, pad]) => [name, pad.values()]));
  }

  // The picture being drawn, for the channel panel's overlay.
  picture() {
    return this.#pad()?.canvas ?? null;
  }

  // model: {step, saved_at} of the answering model; latestStep: the run's latest logged step.
  showModel(model, latestStep) {
    if (!model) {
      this.modelLine.textContent = "";
      this.warning.hidden = true;
      return;
    }
    const when = Number.isFinite(model.saved_at) ? ` (${ago(model.saved_at)})` : "";
    this.modelLine.textContent = `model saved at step ${model.step}${when}`;
    const older = Number.isFinite(latestStep) && model.step < latestStep;
    this.warning.hidden = !older;
    this.warning.textContent = older ? `older than the latest logged step ${latestStep}` : "";
  }

  showOutputs(outputs) {
    this.outputs.show(outputs, this.classNames);
  }
}
