// The plugin's HTTP API (docs/http_api.md). Relative URLs resolve against the iframe's base,
// the plugin prefix, so this works under --path_prefix too.

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

// One canvas reads every grid out (a new canvas and context per grid cost the prefetcher's
// windows more main-thread time than the pixels); "copy" replaces what the last one left.
let decoder = null;

// The grid PNG as its raw codes. createImageBitmap with colour conversion and premultiplying
// off keeps every gray value exact, which the codes need.
async function decodeGray(blob) {
  const bitmap = await createImageBitmap(blob, {
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  const { width, height } = bitmap;
  if (!decoder) {
    decoder = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
  }
  const context = decoder;
  if (context.canvas.width !== width || context.canvas.height !== height) {
    [context.canvas.width, context.canvas.height] = [width, height];
  }
  context.globalCompositeOperation = "copy";
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;
  const codes = new Uint8Array(width * height);
  for (let i = 0; i < codes.length; i++) codes[i] = rgba[i * 4];
  return { width, height, codes };
}

// A grid sent inline (the live answer) as base64 PNG: the same codes as ./grid.
// A plain loop: Uint8Array.from with a mapping function costs the prefetcher's windows many
// times more main-thread time, which the step on screen waits behind.
export function decodeGridBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return decodeGray(new Blob([bytes], { type: "image/png" }));
}

const fetchGrid = async (run, layer, step, sample) =>
  decodeGray(await (await request("grid", { run, layer, step, sample })).blob());
const fetchStats = (run, layer, step) => getJson("stats", { run, layer, step });

export const api = {
  // One page of the run summaries, and one page of a run's layers (docs/http_api.md).
  runs: (offset) => getJson("runs", { offset }),
  layers: (run, offset) => getJson("layers", { run, offset }),
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
  // request; resolves to the steps that did not come (too big for one answer, or unreadable).
  // signal: an AbortSignal that cancels the request.
  async prefetch(run, layer, entries, signal) {
    const steps = entries.map((entry) => entry.step).join(",");
    const answer = await getJson("frames", { run, layer, steps }, { signal });
    const failed = [...answer.left];
    await Promise.all(answer.frames.map((frame) => {
      if (frame.error) {
        failed.push(frame.step);
        return null;
      }
      cache.get(statsKey(run, layer, frame), async () => frame.stats, statsWeight);
      return Promise.all(frame.grids.map((grid, i) =>
        cache.get(gridKey(run, layer, frame, frame.samples[i]), () => decodeGridBase64(grid), gridWeight)));
    }));
    return failed;
  },
  probeUrl: (run, input, sample) => url("probe", { run, input, sample }),
  liveInfo: (run) => getJson("live_info", { run }),
  // inputs: {input name: nested list of one sample}; layers: the paths whose grids and
  // statistics to draw (every layer is summarised).
  live: (run, inputs, layers) => postJson("live", { run, layer: layers }, { inputs }),
};
