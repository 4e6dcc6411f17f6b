// The step slider over every logged step, with previous/next and play/pause. A step of a run
// with epoch records reads "epoch E · step S", E counted from 1 as Keras's console prints it
// ("Epoch 1/3"); the slider is ticked at the last logged step of each epoch.

import { el } from "../dom.js";

// "epoch E · step S" (E one more than the Keras index the plugin sends), or "S" without one.
export function stepText(entry) {
  return Number.isInteger(entry.epoch) ? `epoch ${entry.epoch + 1} · step ${entry.step}` : `${entry.step}`;
}

// Slider positions of each epoch's last logged step (none when the steps have no epochs).
export function epochTicks(steps) {
  const ticks = [];
  steps.forEach((entry, index) => {
    const next = steps[index + 1];
    if (Number.isInteger(entry.epoch) && next && next.epoch !== entry.epoch) ticks.push(index);
  });
  return ticks;
}

export class StepBar {
  constructor({ onStep, onPlayToggle }) {
    this.steps = [];
    this.enabled = true;
    this.onStep = onStep;
    this.slider = el("input", {
      type: "range",
      class: "step-slider",
      min: "0",
      max: "0",
      value: "0",
      "aria-label": "Step",
      list: "step-epoch-ends",
      on: { input: () => this.onStep(this.steps[Number(this.slider.value)].step) },
    });
    this.previous = el("button", { class: "icon", title: "Previous step (←)", text: "◀", on: { click: () => this.nudge(-1) } });
    this.next = el("button", { class: "icon", title: "Next step (→)", text: "▶", on: { click: () => this.nudge(1) } });
    this.play = el("button", { class: "play", title: "Play through the steps (space)", text: "Play", on: { click: onPlayToggle } });
    this.label = el("span", { class: "step-label" });
    this.ticks = el("datalist", { id: "step-epoch-ends" });
    this.element = el("div", { class: "step-bar" },
      el("span", { class: "control-label", text: "Step" }),
      this.previous, this.slider, this.ticks, this.next, this.play, this.label);
  }

  setSteps(steps) {
    this.steps = steps;
    this.slider.max = String(Math.max(0, steps.length - 1));
    this.ticks.replaceChildren(...epochTicks(steps).map((index) => el("option", { value: String(index) })));
    this.#updateControls();
  }

  // Off while the grid shows something that is not a logged step (the live view).
  setEnabled(enabled, reason = "") {
    this.enabled = enabled;
    this.element.title = reason;
    this.element.classList.toggle("disabled", !enabled);
    this.#updateControls();
  }

  #updateControls() {
    const index = Math.max(0, this.indexOf(Number(this.label.dataset.step)));
    this.slider.disabled = !this.enabled || this.steps.length < 2;
    this.previous.disabled = !this.enabled || index <= 0;
    this.next.disabled = !this.enabled || index >= this.steps.length - 1;
    this.play.disabled = !this.enabled;
  }

  indexOf(step) {
    return this.steps.findIndex((entry) => entry.step === step);
  }

  setStep(step) {
    const index = Math.max(0, this.indexOf(step));
    this.slider.value = String(index);
    const entry = this.steps[index];
    if (!entry) {
      this.label.textContent = "no steps";
      this.#updateControls();
      return;
    }
    const elapsed = entry.wall_time - this.steps[0].wall_time;
    const epoch = Number.isInteger(entry.epoch)
      ? `, in epoch ${entry.epoch + 1} (Keras's epoch index ${entry.epoch}, the step of its epoch scalars)`
      : "";
    this.label.textContent = stepText(entry);
    this.label.title = `step ${entry.step}${epoch}: ${index + 1} of ${this.steps.length} logged, ` +
      `${elapsed.toFixed(1)} s after the first, written ${new Date(entry.wall_time * 1000).toLocaleString()}`;
    this.label.dataset.step = String(entry.step);
    this.label.append(el("span", { class: "step-count", text: ` · ${index + 1} of ${this.steps.length}` }));
    this.#updateControls();
  }

  nudge(delta) {
    if (!this.enabled) return;
    const index = this.indexOf(Number(this.label.dataset.step));
    const next = Math.min(this.steps.length - 1, Math.max(0, index + delta));
    if (next !== index && this.steps[next]) this.onStep(this.steps[next].step);
  }

  setPlaying(playing) {
    this.play.textContent = playing ? "Pause" : "Play";
    this.play.classList.toggle("active", playing);
  }
}
