// The overview's numbers (./overview: every layer of a run summarised at every step, the fields
// of tb_activations/rendering/overview.py) and how the heat map turns them into colours. Pure: the view
// (views/overview.js) draws what these answer. Words as in channel_flags.js.

import { colormap } from "./colormaps.js";
import { percent } from "./dom.js";

// Heat-map colours: cream for none, dark red for all (of the channels dead, of the values
// zero, or the run's most NaN/Inf).
export const HEAT_COLOURS = "heat";

// An attention layer's (and its attention map's) dead units are its dead heads, counted by
// the server from the stored flags (rendering/overview.py dead_head_count); a channel is a head
// there, so channels_total counts the heads. Other layers: their dead channels.
export function deadUnits(layer, index) {
  const heads = Array.isArray(layer.dead_heads) ? layer.dead_heads[index] : undefined;
  if (heads !== undefined && heads !== null) return heads;
  const dead = layer.dead_channels[index];
  return dead === undefined ? null : dead;
}

function nonfiniteCount(layer, index) {
  const nan = layer.nan_count[index];
  const inf = layer.inf_count[index];
  return nan === null && inf === null ? null : (nan ?? 0) + (inf ?? 0);
}

/**
 * What the heat map can show. value(layer, i): the number at step index i of an ./overview
 * layer, or null where the layer has none; counts are drawn on a log scale up to the run's
 * largest.
 * @type {{name: string, label: string, count: boolean, value: (layer: object, index: number) => (number|null)}[]}
 */
export const HEAT_METRICS = [
  {
    name: "dead", label: "dead channels or heads", count: false,
    value: (layer, index) => {
      const dead = deadUnits(layer, index);
      return dead === null || !(layer.channels_total > 0) ? null : dead / layer.channels_total;
    },
  },
  { name: "sparsity", label: "sparsity", count: false, value: (layer, index) => layer.zero_fraction[index] },
  { name: "nonfinite", label: "NaN/Inf values", count: true, value: nonfiniteCount },
];

export function heatMetric(name) {
  return HEAT_METRICS.find((metric) => metric.name === name) ?? HEAT_METRICS[0];
}

// The step indices each heat-map column covers, [start, end): one step per column while
// they fit, else `maxColumns` even groups of neighbouring steps.
export function heatColumns(stepCount, maxColumns) {
  const count = Math.max(1, Math.min(stepCount, Math.floor(maxColumns)));
  if (!stepCount) return [];
  return Array.from({ length: count }, (_, column) =>
    [Math.floor((column * stepCount) / count), Math.floor(((column + 1) * stepCount) / count)]);
}

// The largest value of `layer` over the steps [start, end) and the first step index holding
// it (a grouped column shows its worst step, where units die or blow up), or null.
export function columnValue(metric, layer, [start, end]) {
  let best = null;
  for (let index = start; index < end; index++) {
    const value = metric.value(layer, index);
    if (value !== null && value !== undefined && (best === null || value > best.value)) best = { value, index };
  }
  return best;
}

// The largest value of `metric` over every layer and step (what a count's scale tops out at).
export function metricMax(metric, layers, stepCount) {
  let max = 0;
  for (const layer of layers) {
    for (let index = 0; index < stepCount; index++) max = Math.max(max, metric.value(layer, index) ?? 0);
  }
  return max;
}

// Where `value` sits on the colour scale, 0..1: a fraction as it is; a count on a log scale,
// 0 at none and 1 at `max`.
export function heatPosition(metric, value, max) {
  if (!metric.count) return Math.min(1, Math.max(0, value));
  if (value <= 0 || !(max > 0)) return 0;
  return Math.min(1, Math.log1p(value) / Math.log1p(max));
}

// The CSS colour of a position 0..1 on the heat map's scale.
export function heatColour(position) {
  const packed = colormap(HEAT_COLOURS).table[Math.round(Math.min(1, Math.max(0, position)) * 255)];
  return `#${[0, 8, 16].map((shift) => ((packed >>> shift) & 255).toString(16).padStart(2, "0")).join("")}`;
}

// The labels of the colour scale's ends.
export function scaleLabels(metric, max) {
  return metric.count ? ["0", String(max)] : ["0%", "100%"];
}

// The index in `steps` (ascending) of `step`, else of the latest step before it, else 0;
// -1 without steps.
export function stepIndex(steps, step) {
  if (!steps.length) return -1;
  let found = 0;
  for (let index = 0; index < steps.length; index++) if (steps[index] <= step) found = index;
  return found;
}

// Layer `layer` of an ./overview at step index `index`, in the fields of overview.py plus
// the dead fraction; null where it has no value there.
export function summaryAt(layer, index) {
  const dead = layer.dead_channels[index];
  if (index < 0 || dead === null || dead === undefined) return null;
  const heads = Array.isArray(layer.dead_heads) ? layer.dead_heads[index] ?? null : null;
  return {
    zero_fraction: layer.zero_fraction[index],
    dead_channels: dead,
    dead_heads: heads,
    dead_fraction: heatMetric("dead").value(layer, index),
    silent_channels: layer.silent_channels[index] ?? [],
    nan_count: layer.nan_count[index] ?? 0,
    inf_count: layer.inf_count[index] ?? 0,
  };
}

// "dead 2 of 8 channels (25%) · sparsity 40% · 3 NaN, 0 Inf": a summary in words; an
// attention layer's "dead 1 of 12 heads (8%)".
export function summaryText(summary, channels) {
  const heads = summary.dead_heads !== null && summary.dead_heads !== undefined;
  const dead = heads ? summary.dead_heads : summary.dead_channels;
  const parts = [`dead ${dead} of ${channels} ${heads ? "heads" : "channels"} (${percent(dead / channels)})`,
    `sparsity ${percent(summary.zero_fraction)}`];
  if (summary.nan_count || summary.inf_count) parts.push(`${summary.nan_count} NaN, ${summary.inf_count} Inf`);
  return parts.join(" · ");
}

/**
 * The layer list's note on a layer: its sparsity and dead (logged step) or silent (drawn
 * input: one sample) channels, and NaN/Inf when any.
 * @param {object} summary  overview.py's fields for one layer and step (a live answer's
 *   `summary`, or summaryAt of the overview)
 * @param {boolean} drawn  the summary is of the drawn input
 * @returns {{text: string, title: string, alert: boolean}}
 */
export function layerNote(summary, channels, drawn) {
  const nonfinite = (summary.nan_count ?? 0) + (summary.inf_count ?? 0);
  const zeroChannels = drawn ? summary.silent_channels[0] ?? 0 : summary.dead_channels;
  const word = drawn ? "silent" : "dead";
  const parts = [`sparsity ${percent(summary.zero_fraction)}`];
  if (zeroChannels) parts.push(`${zeroChannels} ${word}`);
  if (nonfinite) parts.push(`${nonfinite} NaN/Inf`);
  const where = drawn ? "for the drawn input" : "at this step, over every probe sample";
  const meaning = drawn ? "all zero for this input" : "all zero in every probe sample";
  return {
    text: parts.join(" · "),
    title: `${where}: sparsity ${percent(summary.zero_fraction)} (fraction of exact zeros), ` +
      `${zeroChannels} of ${channels} channels ${word} (${meaning}), ${nonfinite} NaN/Inf values`,
    alert: nonfinite > 0 || (!drawn && zeroChannels > 0),
  };
}
