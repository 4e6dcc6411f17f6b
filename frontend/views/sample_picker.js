// Choosing the probe sample, shown as the probe input picture itself when the run stored one.

import { clear, el, option } from "../dom.js";

export class SamplePicker {
  constructor({ onSample, onInput }) {
    this.onSample = onSample;
    this.pictures = [];
    this.inputSelect = el("select", {
      class: "input-select", "aria-label": "Probe input",
      on: { change: () => onInput(this.inputSelect.value) },
    });
    this.list = el("div", { class: "sample-list", role: "listbox", "aria-label": "Probe samples" });
    this.note = el("div", { class: "empty-note" });
    this.element = el("section", { class: "samples" },
      el("div", { class: "section-title" }, "Probe sample"), this.inputSelect, this.list, this.note);
  }

  // probes: the run's image-like probe inputs (may be empty: then samples are numbered only);
  // urls: the picture of each sample of `input` (empty without probes).
  set({ count, probes, input, sample, urls }) {
    this.inputSelect.hidden = probes.length < 2;
    clear(this.inputSelect).append(...probes.map((p) => option(p.input, p.input, p.input === input)));
    clear(this.list);
    this.pictures = [];
    this.note.textContent = probes.length ? "" : "This run stored no probe picture (its input is not image-like).";
    this.note.hidden = Boolean(probes.length);
    for (let i = 0; i < count; i++) {
      const button = el("button", {
        class: "sample", role: "option", title: `probe sample ${i}`,
        on: { click: () => this.onSample(i) },
      });
      if (urls.length) {
        const picture = el("img", { alt: `probe sample ${i}`, src: urls[i] });
        picture.addEventListener("error", () => {
          picture.remove();
          button.classList.add("no-picture");
        }, { once: true });
        button.append(picture);
        this.pictures[i] = picture;
      } else {
        button.classList.add("no-picture");
      }
      button.append(el("span", { class: "sample-index", text: String(i) }));
      this.list.append(button);
    }
    this.select(sample);
  }

  select(sample) {
    [...this.list.children].forEach((button, i) => {
      button.classList.toggle("selected", i === sample);
      button.setAttribute("aria-selected", String(i === sample));
    });
  }

  // The loaded probe picture of `sample`, or null.
  picture(sample) {
    const picture = this.pictures[sample];
    return picture && picture.isConnected ? picture : null;
  }
}
