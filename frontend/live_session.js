// The live view's conversation with the run's saved model (./live): each request draws only
// the layers shown (`layer=`) and summarises every layer. One request at a time; while one is
// on its way, later asks leave one more to send with the inputs as they are then. The frames
// answered for one drawn input are kept, so switching back to a layer is instant.

import { api } from "./api.js";
import { liveFrame } from "./frames.js";

export class LiveSession {
  // readInputs(): {input name: nested list of one sample}; onAnswer(answer): a new answer
  // arrived; onError(message); onBusy(busy): a request is on its way or not.
  constructor({ readInputs, onAnswer, onError, onBusy }) {
    this.readInputs = readInputs;
    this.handlers = { onAnswer, onError, onBusy };
    this.inFlight = false;
    this.reset(null);
  }

  // Forgets every answer; a request still on its way is ignored. run: null when closed.
  reset(run) {
    this.run = run;
    this.session = {};
    this.inputVersion = 0;
    /** @type {import("./model.js").LiveAnswer|null} the newest answer */
    this.answer = null;
    this.answered = { version: -1, frames: new Map() };
    this.wanted = [];
    this.asking = null;
    this.pending = false;
  }

  // The drawing changed: ask about it for `layers`.
  inputChanged(layers) {
    this.inputVersion++;
    this.#ask(layers);
  }

  /**
   * The frame of layer `path` for the newest answered input; null (and asked for) when no
   * answer drew it yet.
   * @returns {Promise<import("./frames.js").Frame>|null}
   */
  frame(path) {
    const known = this.answered.frames.get(path);
    if (known && this.answered.version === this.inputVersion) return known;
    const asking = this.asking;
    const coming = asking && asking.version === this.inputVersion && asking.layers.includes(path);
    if (!coming) this.#ask([path]);
    return known ?? null;
  }

  #ask(layers) {
    if (this.run === null) return;
    this.wanted = layers;
    this.pending = true;
    if (!this.inFlight) this.#send();
  }

  async #send() {
    const session = this.session;
    this.inFlight = true;
    this.handlers.onBusy(true);
    while (this.pending && session === this.session) {
      this.pending = false;
      const version = this.inputVersion;
      const layers = this.wanted;
      this.asking = { version, layers };
      try {
        const answer = await api.live(this.run, this.readInputs(), layers);
        if (session !== this.session || version < this.answered.version) continue;
        this.#keep(answer, version);
        await this.handlers.onAnswer(answer);
      } catch (error) {
        if (session === this.session) this.handlers.onError(error.message);
      }
    }
    this.asking = null;
    this.inFlight = false;
    this.handlers.onBusy(false);
    // A session reset while this one's request was on its way may have asked meanwhile.
    if (this.pending) this.#send();
  }

  #keep(answer, version) {
    if (version !== this.answered.version) this.answered = { version, frames: new Map() };
    for (const entry of answer.layers) {
      if (entry.grid !== undefined) this.answered.frames.set(entry.layer, liveFrame(answer, entry.layer));
    }
    this.answer = answer;
  }
}
