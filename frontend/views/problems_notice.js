// The selected run's tags that could not be read (./layers "problems"): one line saying how
// many, the reasons on demand. The rest of the run is shown as usual.

import { clear, el } from "../dom.js";

export class ProblemsNotice {
  constructor() {
    this.summary = el("summary");
    this.list = el("ul", { class: "problems-list" });
    this.element = el("details", { class: "problems-notice", hidden: true }, this.summary, this.list);
  }

  // problems: ["<tag>: <why>"] of run `run`.
  show(run, problems) {
    this.element.hidden = !problems.length;
    this.element.open = false;
    const count = problems.length;
    this.summary.textContent = `${count} ${count === 1 ? "tag" : "tags"} of run ${run} could not be read`;
    clear(this.list).append(...problems.map((problem) => el("li", { text: problem })));
  }
}
