// Frames: one layer's grid for one input, decoded into real values, whatever it came from.
// Two sources: a logged step of a probe sample (./grid and ./stats) and a live answer of the
// run's saved model (./live, one drawn input). Every view draws a frame the same way.

import { api } from "./api.js";
import { decodeGridBase64 } from "./grid_codes.js";
import { Geometry, decodeValues } from "./geometry.js";

/**
 * The statistics of one layer at one step, as ./stats answers them (docs/http_api.md).
 * @typedef {object} LayerStats
 * @property {string[]} fields  names of the columns of each statistics row
 * @property {number[]} channels  the drawn channels, in grid order (untiled layouts: the kept units)
 * @property {number[]} units  the unit of each statistics row
 * @property {number} dead_channels  channels all zero in every probe sample (of every channel)
 * @property {{stats: (number|null)[][], ranges: (number|null)[][], layer: (number|null)[],
 *   silent_channels: number}[]} samples  per sample: a row per unit of `units`, a [low, high]
 *   per tile, the statistics over every unit, and how many channels are all zero
 */

/**
 * @typedef {object} Frame
 * @property {"logged"|"live"} source
 * @property {number|null} step  the logged step (live: the saved model's step)
 * @property {number} sample  the row of stats.samples this frame shows
 * @property {string} label  short, for a panel beside another: "step 4", "drawn input"
 * @property {string} caption  for a panel alone: "step 4 · sample 1"
 * @property {import("./layouts.js").LayerEntry} layer
 * @property {{width: number, height: number, codes: Uint8Array}} grid
 * @property {LayerStats} stats
 * @property {(number|null)[][]} ranges  this sample's [low, high] per tile
 * @property {Geometry} geometry
 * @property {Float32Array} values  real value per grid pixel (NaN: NaN/Inf or gutter)
 * @property {string[]|null} tokens  the probe sample's token labels (logged frames of a run that stored them)
 * @property {object|null} heads  an attention layer's per-head numbers at this step (./overview's
 *   "heads", head_values.js headsFor), for its dead heads; null elsewhere and for live frames
 */

function frame({ source, step, sample, label, caption, layer, grid, stats, tokens = null, heads = null }) {
  const own = stats.samples[sample];
  if (!own) throw new Error(`${label} has no statistics for sample ${sample}`);
  const geometry = new Geometry(layer, grid.width, grid.height);
  return {
    source, step, sample, label, caption, layer, grid, stats, ranges: own.ranges, geometry, tokens, heads,
    values: decodeValues(grid, geometry, own.ranges),
  };
}

/**
 * @param {string[]|null} tokens  the sample's token labels, if the run stored them
 * @param {object|null} heads  the layer's per-head numbers at this step, if it has them
 * @returns {Promise<Frame>} the logged step `entry` ({step, wall_time}) of probe sample `sample`.
 */
export async function loggedFrame(run, layer, entry, sample, tokens = null, heads = null) {
  const [grid, stats] = await Promise.all([api.grid(run, layer.layer, entry, sample), api.stats(run, layer.layer, entry)]);
  const { step } = entry;
  const label = `step ${step}`;
  return frame({ source: "logged", step, sample, label, caption: `${label} · sample ${sample}`, layer, grid, stats, tokens, heads });
}

/**
 * @param {object} answer  a ./live answer: {layers: [LayerEntry & {grid: base64, stats}], model}
 * @returns {Promise<Frame>} layer `path` of it
 */
export async function liveFrame(answer, path) {
  const entry = answer.layers.find((layer) => layer.layer === path);
  if (!entry) throw new Error(`the saved model has no layer ${path}`);
  const { grid, stats, ...layer } = entry;
  const step = answer.model?.step ?? null;
  const caption = step === null ? "drawn input" : `drawn input · model of step ${step}`;
  return frame({
    source: "live", step, sample: 0, label: "drawn input", caption, layer,
    grid: await decodeGridBase64(grid), stats,
  });
}
