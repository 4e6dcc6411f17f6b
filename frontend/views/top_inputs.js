// The channel panel's "top inputs" section: the reference inputs the selected unit responds to
// most (each cropped to what the unit's maximum sees, its maximum marked, the unit's value and
// the input's class under it), what class it prefers and how selectively, or that it is dead
// on the reference set; at the reference step nearest the selected step beside the first one, so
// how training changed both shows.

import { clear, el, fmt } from "../dom.js";
import {
  className, receptiveBox, referenceStepFor, respondsText, thumbnailAt, unitAt,
} from "../reference_values.js";

const CELL = 52; // CSS pixels of a drawn crop's longer side

function drawCrop(canvas, page, thumb, box, whole) {
  const context = canvas.getContext("2d");
  const source = whole || !box ? { x: 0, y: 0, width: thumb.width, height: thumb.height } : box;
  const scale = CELL / Math.max(source.width, source.height);
  canvas.width = Math.max(1, Math.round(source.width * scale));
  canvas.height = Math.max(1, Math.round(source.height * scale));
  context.imageSmoothingEnabled = false;
  context.drawImage(page, thumb.x + source.x, thumb.y + source.y, source.width, source.height, 0, 0, canvas.width, canvas.height);
  if (!box) return;
  const outline = (rect, colour) => {
    context.strokeStyle = colour;
    context.lineWidth = 1.5;
    context.strokeRect((rect.x - source.x) * scale + 0.75, (rect.y - source.y) * scale + 0.75,
      Math.max(2, rect.width * scale - 1.5), Math.max(2, rect.height * scale - 1.5));
  };
  if (whole) outline(box, "#ffb000");
  outline(box.mark, "#ff2d55");
}

export class TopInputs {
  constructor() {
    this.token = 0;
    this.whole = el("input", { type: "checkbox", "aria-label": "Show the whole input", on: { change: () => this.#redraw() } });
    this.note = el("div", { class: "top-inputs-note" });
    this.rows = el("div", { class: "top-inputs-rows" });
    this.element = el("section", { class: "top-inputs", hidden: true, "aria-label": "Top inputs on the reference set" },
      el("div", { class: "section-title" }, el("span", { text: "Top inputs" }), el("span", { class: "spacer" }),
        el("label", { class: "option", title: "Show each whole input with what the unit sees outlined, instead of the crop" },
          this.whole, el("span", { class: "control-label", text: "whole input" }))),
      this.note, this.rows);
  }

  hide() {
    this.token += 1;
    this.request = null;
    this.element.hidden = true;
  }

  // request: {set: ReferenceSet of the run, layer: path, channel, step: the selected step}.
  async show(request) {
    const token = ++this.token;
    this.request = request;
    const { set, layer, channel, step } = request;
    let entry;
    let inputs;
    try {
      const tags = await set.tags();
      entry = tags.layers.get(layer);
      inputs = entry ? await set.inputs() : null;
    } catch (error) {
      if (token === this.token) this.#message(`Could not load the reference steps: ${error.message}`);
      return;
    }
    if (token !== this.token) return;
    if (!entry || !entry.steps.length) {
      this.element.hidden = true;
      return;
    }
    const current = referenceStepFor(entry.steps, step);
    const steps = [...new Set([current, entry.steps[0]])];
    let answers;
    try {
      answers = await Promise.all(steps.map((at) => set.step(layer, at)));
    } catch (error) {
      if (token === this.token) this.#message(`Could not load the reference step of ${layer}: ${error.message}`);
      return;
    }
    if (token !== this.token) return;
    // Another step with the same reference steps (Play, the slider) keeps what is drawn.
    const previous = this.shown;
    const same = previous && !this.element.hidden && previous.set === set && previous.channel === channel &&
      previous.answers.length === answers.length && previous.answers.every((answer, i) => answer === answers[i]);
    this.shown = { set, inputs, channel, answers, token };
    if (!same) this.#redraw();
  }

  #message(text) {
    this.element.hidden = false;
    this.note.textContent = text;
    clear(this.rows);
  }

  #redraw() {
    const shown = this.shown;
    if (!shown || shown.token !== this.token) return;
    const { set, inputs, channel, answers } = shown;
    this.element.hidden = false;
    const count = answers[0].inputs;
    const pictures = inputs?.pictures === true;
    this.note.textContent = `The ${answers[0].k} of ${count} reference inputs it responds to most` +
      (pictures ? ", each cropped to what the unit sees (its maximum's cell in red), its class · the unit's value under it"
        : " (not pictures: their indices), its class · the unit's value under it");
    clear(this.rows).append(...answers.map((answer, i) => this.#row(answer, i > 0, set, inputs, channel)));
  }

  #row(answer, first, set, inputs, channel) {
    const unit = unitAt(answer, channel);
    const caption = `${first ? "at the first reference step, " : ""}step ${answer.step}: ${respondsText(unit, inputs)}`;
    const strip = el("div", { class: "top-inputs-strip", role: "list" });
    const row = el("div", { class: `top-inputs-row${unit.dead ? " dead" : ""}`, "data-step": String(answer.step) },
      el("div", { class: "top-inputs-caption", text: caption }), strip);
    if (!unit.kept || unit.dead) return row;
    for (const top of unit.top) {
      const label = inputs?.labels ? className(inputs, inputs.labels[top.index]) : null;
      const canvas = el("canvas", { class: "top-input-canvas", width: "1", height: "1" });
      const title = `reference input ${top.index}${label === null ? "" : `, class ${label}`}: the unit's maximum ${fmt(top.value)}` +
        (top.position.length ? ` at (${top.position.join(", ")})` : "");
      strip.append(el("figure", { class: "top-input", role: "listitem", title },
        inputs?.pictures ? canvas : el("span", { class: "top-input-index", text: `#${top.index}` }),
        el("figcaption", { text: `${label === null ? "" : `${label} · `}${fmt(top.value)}` })));
      if (!inputs?.pictures) continue;
      const thumb = thumbnailAt(inputs, top.index);
      const box = receptiveBox(answer.receptive_field, top.position, inputs);
      set.page(thumb.page).then((page) => {
        if (canvas.isConnected) drawCrop(canvas, page, thumb, box, this.whole.checked);
      }, (error) => {
        canvas.title = error.message;
      });
    }
    return row;
  }
}
