// The selected layer's path and what its grid shows: class, output shape, which channels are
// drawn and how they were reduced.

import { clear, el } from "../dom.js";
import { layoutOf, shownName } from "../layouts.js";
import { shapeText } from "./layer_list.js";

export class LayerHeader {
  constructor() {
    this.element = el("div", { class: "layer-header" });
  }

  show(layer) {
    const parts = [layer.layer_class, `output ${shapeText(layer.output_shape)}`, ...layoutOf(layer).facts(layer)];
    if (layer.downscale.some((d) => d > 1)) parts.push(`averaged ${layer.downscale.join("×")} to fit`);
    clear(this.element).append(el("span", { class: "layer-path", text: shownName(layer), title: layer.layer }),
      el("span", { class: "layer-facts", text: parts.join(" · ") }));
  }
}
