// One run's reference steps as the tab loads them: which layers have them (./reference_tags),
// the reference inputs' description and labels, each asked-for step of a layer, every layer's
// summary and the thumbnail pages; each asked for once and kept while the run is shown (a
// reference step is at most 64 KiB, docs/format.md).

import { api } from "./api.js";

function once(map, key, load) {
  if (!map.has(key)) {
    const promise = load();
    promise.catch(() => map.delete(key));
    map.set(key, promise);
  }
  return map.get(key);
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.addEventListener("load", () => resolve(image), { once: true });
    image.addEventListener("error", () => reject(new Error(`the thumbnail page ${src} could not be loaded`)), { once: true });
    image.src = src;
  });
}

export class ReferenceSet {
  constructor(run) {
    this.run = run;
    this.loads = new Map();
  }

  // {layers: Map path -> {steps, units_kept, classes, receptive_field, ...}, inputs: boolean}
  tags() {
    return once(this.loads, "tags", async () => {
      const answer = await api.referenceTags(this.run);
      return { layers: new Map(answer.layers.map((layer) => [layer.layer, layer])), inputs: answer.inputs };
    });
  }

  // The ./reference_inputs answer, or null when the run stored none.
  async inputs() {
    const { inputs } = await this.tags();
    return inputs ? once(this.loads, "inputs", () => api.referenceInputs(this.run)) : null;
  }

  step(layer, step) {
    return once(this.loads, JSON.stringify(["step", layer, step]), () => api.reference(this.run, layer, step));
  }

  summary() {
    return once(this.loads, "summary", () => api.referenceSummary(this.run));
  }

  // The thumbnail page `page` as a loaded <img>.
  page(page) {
    return once(this.loads, JSON.stringify(["page", page]), () => loadImage(api.referencePageUrl(this.run, page)));
  }
}
