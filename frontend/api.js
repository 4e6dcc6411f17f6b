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

async function getJson(route, params) {
  return (await request(route, params)).json();
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

// A logged (run, layer, step, sample) never changes, so its grid and stats are cached;
// promises are cached so concurrent callers share one request.
class Cache {
  constructor(limit) {
    this.limit = limit;
    this.entries = new Map();
  }

  get(key, load) {
    if (this.entries.has(key)) {
      const value = this.entries.get(key);
      this.entries.delete(key);
      this.entries.set(key, value);
      return value;
    }
    const value = load();
    value.catch(() => this.entries.delete(key));
    this.entries.set(key, value);
    if (this.entries.size > this.limit) this.entries.delete(this.entries.keys().next().value);
    return value;
  }
}

const grids = new Cache(400);
const stats = new Cache(4000);

// The grid PNG as its raw codes. createImageBitmap with colour conversion and premultiplying
// off keeps every gray value exact, which the codes need.
async function decodeGray(blob) {
  const bitmap = await createImageBitmap(blob, {
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;
  const codes = new Uint8Array(width * height);
  for (let i = 0; i < codes.length; i++) codes[i] = rgba[i * 4];
  return { width, height, codes };
}

// A grid sent inline (the live answer) as base64 PNG: the same codes as ./grid.
export function decodeGridBase64(text) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return decodeGray(new Blob([bytes], { type: "image/png" }));
}

export const api = {
  layers: () => getJson("layers"),
  steps: (run, layer) => getJson("steps", { run, layer }),
  statsSeries: (run, layer) => getJson("stats_series", { run, layer }),
  overview: (run) => getJson("overview", { run }),
  stats: (run, layer, step) =>
    stats.get(JSON.stringify([run, layer, step]), () => getJson("stats", { run, layer, step })),
  grid: (run, layer, step, sample) =>
    grids.get(JSON.stringify([run, layer, step, sample]), async () =>
      decodeGray(await (await request("grid", { run, layer, step, sample })).blob())),
  probeUrl: (run, input, sample) => url("probe", { run, input, sample }),
  liveInfo: (run) => getJson("live_info", { run }),
  // inputs: {input name: nested list of one sample}; layers: the paths whose grids and
  // statistics to draw (every layer is summarised).
  live: (run, inputs, layers) => postJson("live", { run, layer: layers }, { inputs }),
};
