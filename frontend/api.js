// The plugin's HTTP API (docs/http_api.md). Relative URLs resolve against the iframe's base,
// the plugin prefix, so this works under --path_prefix too.

import { decodeGray } from "./grid_codes.js";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// An array value repeats its parameter (`layer=a&layer=b`).
function url(route, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const item of [value].flat()) {
      if (item !== undefined && item !== null) query.append(key, String(item));
    }
  }
  const text = query.toString();
  return text ? `./${route}?${text}` : `./${route}`;
}

// The plugin answers errors as JSON {"error": ...}; TensorBoard itself (e.g. a data server
// failure) as plain text.
async function errorMessage(response) {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "string") return body.error;
  } catch {
    // Not JSON: the text itself is the message.
  }
  const status = `${response.status} ${response.statusText}`;
  return text.trim() ? `${status}: ${text.trim().slice(0, 400)}` : status;
}

async function request(route, params, init = undefined) {
  let response;
  try {
    response = await fetch(url(route, params), init);
  } catch (error) {
    throw new ApiError(`TensorBoard did not answer (${error.message}); is it still running?`, 0);
  }
  if (!response.ok) {
    throw new ApiError(await errorMessage(response), response.status);
  }
  return response;
}

async function getJson(route, params, init = undefined) {
  return (await request(route, params, init)).json();
}

// The live route runs the run's saved model: a POST with a header a plain form or <img>
// cannot send, so another page cannot make this TensorBoard run it.
async function postJson(route, params, body) {
  const init = {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Activations-Live": "1" },
    body: JSON.stringify(body),
  };
  return (await request(route, params, init)).json();
}

// What the page keeps of logged steps: grids and statistics, up to CACHE_BYTES, least recently
// used first out. A logged step never changes, but a run directory written again from scratch
// can hold another value at the same step, so keys hold the step's wall time too. Promises are
// kept so concurrent callers share one request; an entry weighs what its value holds once it
// has arrived.
export const CACHE_BYTES = 128 << 20;

export class ByteCache {
  constructor(maxBytes) {
    this.maxBytes = maxBytes;
    this.bytes = 0;
    this.entries = new Map();
  }

  has(key) {
    return this.entries.has(key);
  }

  // The value of `key`, loading it with load() (a promise) if it is not kept; weigh(value)
  // gives its bytes.
  get(key, load, weigh) {
    const found = this.entries.get(key);
    if (found) {
      this.entries.delete(key);
      this.entries.set(key, found);
      return found.promise;
    }
    const entry = { promise: load(), bytes: 0 };
    this.entries.set(key, entry);
    entry.promise.then((value) => {
      if (this.entries.get(key) !== entry) return;
      const bytes = weigh(value);
      if (bytes > this.maxBytes) {
        this.entries.delete(key); // heavier than everything kept: not kept, evicts nothing
        return;
      }
      entry.bytes = bytes;
      this.bytes += bytes;
      this.#evict();
    }, () => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    return entry.promise;
  }

  #evict() {
    for (const [key, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) return;
      this.entries.delete(key);
      this.bytes -= entry.bytes;
    }
  }
}

const cache = new ByteCache(CACHE_BYTES);
const gridKey = (run, layer, entry, sample) => JSON.stringify(["grid", run, layer, entry.step, entry.wall_time, sample]);
const statsKey = (run, layer, entry) => JSON.stringify(["stats", run, layer, entry.step, entry.wall_time]);
const gridWeight = (grid) => grid.codes.length + 100;

// Bytes held by a ./stats answer: about 16 per number.
export function statsWeight(stats) {
  let numbers = stats.channels.length + stats.units.length;
  for (const sample of stats.samples) {
    numbers += sample.stats.length * (sample.stats[0]?.length ?? 0) + sample.ranges.length * 2 + sample.layer.length;
  }
  return 16 * numbers + 200;
}

// The prefetcher's ./frames loads run in frame_worker.js, created at the first one; each
// waits for its {id, answer} or {id, error}. A worker that fails (it could not load, say) fails
// the loads waiting on it and is created anew for the next.
let worker = null;
let lastLoad = 0;
const waiting = new Map(); // id -> {resolve, reject}

function frameWorker() {
  if (worker) return worker;
  worker = new Worker(new URL("./frame_worker.js", import.meta.url), { type: "module" });
  worker.addEventListener("message", ({ data }) => {
    const load = waiting.get(data.id);
    if (!load) return;
    waiting.delete(data.id);
    if (data.error === undefined) load.resolve(data.answer);
    else load.reject(new ApiError(data.error, 0));
  });
  worker.addEventListener("error", (event) => {
    worker = null;
    for (const load of waiting.values()) load.reject(new ApiError(`the frame loader failed: ${event.message || "no reason given"}`, 0));
    waiting.clear();
  });
  return worker;
}

// ./frames with every grid decoded, loaded off the main thread; `signal` aborts it.
function framesOffThread(params, signal) {
  return new Promise((resolve, reject) => {
    const id = ++lastLoad;
    const target = frameWorker();
    waiting.set(id, { resolve, reject });
    target.postMessage({ id, url: new URL(url("frames", params), document.baseURI).href });
    signal.addEventListener("abort", () => {
      if (!waiting.delete(id)) return;
      target.postMessage({ id, cancel: true });
      reject(signal.reason);
    }, { once: true });
  });
}

const fetchGrid = async (run, layer, step, sample) =>
  decodeGray(await (await request("grid", { run, layer, step, sample })).blob());
const fetchStats = (run, layer, step) => getJson("stats", { run, layer, step });

export const api = {
  // One page of the run summaries, and one page of a run's layers (docs/http_api.md).
  runs: (offset) => getJson("runs", { offset }),
  layers: (run, offset) => getJson("layers", { run, offset }),
  // {tokens: a list of labels per probe sample, or null; problem: why they are unreadable}
  tokens: (run) => getJson("tokens", { run }),
  steps: (run, layer) => getJson("steps", { run, layer }),
  statsSeries: (run, layer) => getJson("stats_series", { run, layer }),
  overview: (run) => getJson("overview", { run }),
  // entry: the step's StepEntry ({step, wall_time}).
  stats: (run, layer, entry) =>
    cache.get(statsKey(run, layer, entry), () => fetchStats(run, layer, entry.step), statsWeight),
  grid: (run, layer, entry, sample) =>
    cache.get(gridKey(run, layer, entry, sample), () => fetchGrid(run, layer, entry.step, sample), gridWeight),
  // A step's statistics and grid asked for before its StepEntry (the key of the cache) is
  // known, while ./steps loads: {step, stats, grid} promises for keep(). A guess that turns
  // out wrong is dropped, its failure unseen.
  early(run, layer, step, sample) {
    const early = { step, stats: fetchStats(run, layer, step), grid: fetchGrid(run, layer, step, sample) };
    early.stats.catch(() => {});
    early.grid.catch(() => {});
    return early;
  },
  // Caches early()'s answers under `entry`, the StepEntry ./steps gave for the step.
  keep(run, layer, entry, sample, early) {
    cache.get(statsKey(run, layer, entry), () => early.stats, statsWeight);
    cache.get(gridKey(run, layer, entry, sample), () => early.grid, gridWeight);
  },
  // Whether the step's statistics and the grids of `samples` probe samples are in memory.
  cached: (run, layer, entry, samples) =>
    cache.has(statsKey(run, layer, entry)) &&
    Array.from({ length: samples }, (_, sample) => gridKey(run, layer, entry, sample)).every((key) => cache.has(key)),
  // Loads the steps `entries` of a layer (every probe sample) into memory with one ./frames
  // request, off the main thread. Steps that do not come (too big for one answer, or
  // unreadable) are left out. signal: an AbortSignal that cancels the request.
  async prefetch(run, layer, entries, signal) {
    const steps = entries.map((entry) => entry.step).join(",");
    const answer = await framesOffThread({ run, layer, steps }, signal);
    for (const frame of answer.frames) {
      if (frame.error) continue;
      cache.get(statsKey(run, layer, frame), async () => frame.stats, statsWeight);
      frame.grids.forEach((grid, i) => cache.get(gridKey(run, layer, frame, frame.samples[i]), async () => grid, gridWeight));
    }
  },
  probeUrl: (run, input, sample) => url("probe", { run, input, sample }),
  // Reference steps (docs/http_api.md): the layers that have them, one step of a layer, every
  // layer's mean selectivity and dead fraction per step, the reference inputs' description
  // and labels, and a page of their thumbnails.
  referenceTags: (run) => getJson("reference_tags", { run }),
  reference: (run, layer, step) => getJson("reference", { run, layer, step }),
  referenceSummary: (run) => getJson("reference_summary", { run }),
  referenceInputs: (run) => getJson("reference_inputs", { run }),
  referencePageUrl: (run, page) => url("reference_page", { run, page }),
  liveInfo: (run) => getJson("live_info", { run }),
  // inputs: {input name: nested list of one sample}; layers: the paths whose grids and
  // statistics to draw (every layer is summarised).
  live: (run, inputs, layers) => postJson("live", { run, layer: layers }, { inputs }),
};
