// Loads a shown layer's neighbouring steps in the background, so the slider and Play find them
// in memory: windows of ./frames (a step's statistics and every probe sample's grid, many
// steps in one request, read in parallel on the server), nearest steps first, a few requests
// at a time, up to half of the page's cache. Moving to another step re-aims it; another layer
// or run starts over, its requests in flight cancelled (what was loaded stays cached): they
// would hold the server's threads and the browser's connections the new layer's first view
// needs.

import { CACHE_BYTES, api } from "./api.js";

const WINDOW = 16; // steps per request
const FIRST_WINDOW = 4; // steps of a layer's first request: the nearest come back sooner
const IN_FLIGHT = 2; // requests at once: the browser's other connections stay free for the view
const SHARE = 0.5; // of the cache, for one layer

/** The order to load steps in: `at` itself (its other samples), then outwards, next first. */
export function nearestFirst(count, at) {
  const order = at >= 0 && at < count ? [at] : [];
  for (let distance = 1; distance < count; distance++) {
    if (at + distance < count) order.push(at + distance);
    if (at - distance >= 0) order.push(at - distance);
  }
  return order;
}

export class Prefetcher {
  constructor() {
    this.target = null;
    this.key = null;
    // Steps asked for since the layer was aimed at (loading, loaded or failed): not asked for
    // again, nor looked up in the cache (every step shown re-aims the prefetcher, and looking
    // a few hundred steps up would cost that step milliseconds).
    this.asked = new Set();
    this.inFlight = 0;
    this.controller = new AbortController();
  }

  // layer: its LayerEntry; steps: its StepEntry list; step: the one shown; stepBytes: what
  // one step of every sample weighs in memory.
  aim(run, layer, steps, step, stepBytes) {
    const key = JSON.stringify([run, layer.layer]);
    if (key !== this.key) {
      this.stop();
      this.key = key;
      this.asked = new Set();
    }
    this.target = { run, layer, steps, step, stepBytes };
    this.#pump();
  }

  stop() {
    this.target = null;
    this.key = null;
    this.controller.abort();
    this.controller = new AbortController();
  }

  #batch() {
    const { run, layer, steps, step, stepBytes } = this.target;
    const at = steps.findIndex((entry) => entry.step === step);
    const limit = Math.max(1, Math.floor((CACHE_BYTES * SHARE) / Math.max(1, stepBytes)));
    const batch = [];
    for (const index of nearestFirst(steps.length, at).slice(0, limit)) {
      const entry = steps[index];
      if (this.asked.has(entry.step) || api.cached(run, layer.layer, entry, layer.samples)) continue;
      batch.push(entry);
      if (batch.length === (this.asked.size ? WINDOW : FIRST_WINDOW)) break;
    }
    return batch;
  }

  #pump() {
    while (this.target && this.inFlight < IN_FLIGHT) {
      const batch = this.#batch();
      if (!batch.length) return;
      for (const entry of batch) this.asked.add(entry.step);
      this.inFlight++;
      // A step that failed is not asked for again: the view asks for it itself if shown.
      api.prefetch(this.target.run, this.target.layer.layer, batch, this.controller.signal)
        .catch(() => null)
        .then(() => {
          this.inFlight--;
          this.#pump();
        });
    }
  }
}
