// Per-head numbers of attention layers (./overview's "heads": docs/format.md, Overview blob)
// and what the head map draws of them. Pure: views/head_map.js draws what these answer.

import { stepIndex } from "./overview_values.js";

// What a dead head is, in the tab's words: the one definition is rendering/overview.py
// dead_heads (normalised entropy or largest probability >= 0.99 in every probe sample), whose
// stored flags the tab reads; docs/glossary.md says the same.
export const DEAD_HEAD_MEANING = "uniform attention, or all on one token, in every probe sample";

// The heads of `layer` at step index `index`, or null: {keys, entropy, peak, distance, dead}
// as the blob holds them (lists per probe sample and head).
export function headsAt(layer, index) {
  const heads = Array.isArray(layer.heads) && index >= 0 ? layer.heads[index] : null;
  if (!heads || !Array.isArray(heads.entropy) || !Array.isArray(heads.dead)) return null;
  return heads;
}

// The attention layers of an ./overview (those with "heads" at some step), in model order.
export function attentionLayers(data) {
  return (data?.layers ?? []).filter((layer) => Array.isArray(layer.heads) && layer.heads.some((value) => value));
}

// The mean over probe samples of rows[sample][head], null where no sample has a number.
export function sampleMean(rows, head) {
  let sum = 0;
  let count = 0;
  for (const row of rows ?? []) {
    const value = Array.isArray(row) ? row[head] : null;
    if (typeof value === "number" && Number.isFinite(value)) {
      sum += value;
      count += 1;
    }
  }
  return count ? sum / count : null;
}

export const HEAD_METRICS = [
  { name: "distance", label: "mean attention distance", unit: "patches" },
  { name: "entropy", label: "entropy", unit: "nats" },
];

// The metric a map shows: distance where any layer has one, unless entropy is asked for.
export function headMetric(name, layers) {
  const hasDistance = layers.some((layer) => layer.heads.some((heads) => heads && Array.isArray(heads.distance)));
  if (name === "entropy" || !hasDistance) return HEAD_METRICS[1];
  return HEAD_METRICS[0];
}

// One head's numbers at one step: {entropy, normalised, peak, distance, dead}; null parts
// where the blob has none.
export function headCell(heads, head) {
  const entropy = sampleMean(heads.entropy, head);
  return {
    entropy,
    normalised: entropy !== null && heads.keys > 1 ? entropy / Math.log(heads.keys) : null,
    peak: sampleMean(heads.peak, head),
    distance: Array.isArray(heads.distance) ? sampleMean(heads.distance, head) : null,
    dead: heads.dead[head] === true,
  };
}

// [low, high] of `metric` over every attention layer, head and step (a scale that stays put
// while the step changes, so the map's change over steps shows).
export function metricRange(metric, layers) {
  let low = Infinity;
  let high = -Infinity;
  for (const layer of layers) {
    for (const heads of layer.heads) {
      if (!heads) continue;
      const count = heads.dead?.length ?? 0;
      for (let head = 0; head < count; head++) {
        const value = headCell(heads, head)[metric.name];
        if (value === null) continue;
        low = Math.min(low, value);
        high = Math.max(high, value);
      }
    }
  }
  return low <= high ? [low, high] : [0, 1];
}

// The layer whose overview entry holds the heads of `path`: an attention layer's own
// (`x:attention`), or an attention map's (`x:attention_map` → `x:attention`); null otherwise.
export function headsLayerPath(path) {
  if (path.endsWith(":attention")) return path;
  return path.endsWith(":attention_map") ? path.slice(0, -"_map".length) : null;
}

// The heads of layer `path` at `step` (its nearest earlier logged step) in an ./overview,
// or null when it has none there.
export function headsFor(data, path, step) {
  const own = headsLayerPath(path);
  const layer = own && data?.layers?.find((entry) => entry.layer === own);
  if (!layer || !data.steps?.length || step === null || step === undefined) return null;
  return headsAt(layer, stepIndex(data.steps, step));
}

// One head in one probe sample: {entropy, normalised, peak, distance} (null parts where the
// blob has none) and `dead` (over every probe sample, rendering/overview.py dead_heads).
export function headInSample(heads, head, sample) {
  const at = (rows) => (Array.isArray(rows?.[sample]) && typeof rows[sample][head] === "number" ? rows[sample][head] : null);
  const entropy = at(heads.entropy);
  return {
    entropy,
    normalised: entropy !== null && heads.keys > 1 ? entropy / Math.log(heads.keys) : null,
    peak: at(heads.peak),
    distance: at(heads.distance),
    dead: heads.dead[head] === true,
  };
}

// The layer list's note on an attention layer: "12 heads, 2 dead" ({text, title, alert}).
export function headNote(heads) {
  const count = heads.dead.length;
  const dead = heads.dead.filter((flag) => flag === true).length;
  return {
    text: `${count} head${count === 1 ? "" : "s"}${dead ? `, ${dead} dead` : ""}`,
    title: `at this step: ${dead} of ${count} heads dead (${DEAD_HEAD_MEANING})`,
    alert: dead > 0,
  };
}
