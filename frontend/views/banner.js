// A warning line above the grid (a failed reload, a live error, an unusable fixed range).

import { el } from "../dom.js";

export class Banner {
  constructor() {
    this.element = el("div", { class: "banner", hidden: true, role: "alert" });
  }

  show(text) {
    this.element.hidden = !text;
    this.element.textContent = text || "";
  }
}
