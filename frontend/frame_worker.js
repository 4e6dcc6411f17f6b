// Loads windows of ./frames for the prefetcher (prefetch.js) off the page's main thread: the
// request, its JSON (mostly base64 PNG) and every grid's decoding happen here, so a step the
// user moves to meanwhile is not drawn behind them.
//
// Messages in:  {id, url}: load this ./frames URL (absolute: a worker's base is its script);
//               {id, cancel: true}: abort that load.
// Messages out: {id, answer}: the ./frames answer with every grid decoded to {width, height,
//               codes} (the codes' buffers transferred), or {id, error}: why it did not come.

import { decodeGridBase64 } from "./grid_codes.js";

const loads = new Map(); // id -> AbortController

async function load(url, signal) {
  const response = await fetch(url, { signal });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  const answer = await response.json();
  await Promise.all(answer.frames.map(async (frame) => {
    if (!frame.error) frame.grids = await Promise.all(frame.grids.map(decodeGridBase64));
  }));
  return answer;
}

self.addEventListener("message", async ({ data }) => {
  const { id, url, cancel } = data;
  if (cancel) {
    loads.get(id)?.abort();
    return;
  }
  const controller = new AbortController();
  loads.set(id, controller);
  try {
    const answer = await load(url, controller.signal);
    const buffers = answer.frames.flatMap((frame) => (frame.grids || []).map((grid) => grid.codes.buffer));
    self.postMessage({ id, answer }, buffers);
  } catch (error) {
    self.postMessage({ id, error: error.message });
  } finally {
    loads.delete(id);
  }
});
