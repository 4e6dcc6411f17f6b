// What a channel's statistics say about it. The words, as tb_activations/rendering/overview.py defines
// them for the server (one vocabulary for the tab, the routes and the docs):
//
//   sparsity   the fraction of exact zeros (the `zero_fraction` statistic)
//   silent     a channel whose map is all zeros in ONE sample (a probe sample, or the drawn
//              input); counted per sample
//   dead       a channel whose map is all zeros in EVERY probe sample
//   saturated  (nearly) every value of the map at its extreme, as when a sigmoid, tanh or
//              clipped unit is stuck: the map carries no spatial information
//   NaN/Inf    non-finite values, counted per channel (`nan_count`, `inf_count`)

// Row r of `stats.samples[n].stats` is unit `stats.units[r]` (every channel of a format 1 log,
// the kept ones, at most max_channels, from format 2); fields are named by `stats.fields`.
export function fieldIndex(stats) {
  return Object.fromEntries(stats.fields.map((name, i) => [name, i]));
}

const rowIndexes = new WeakMap();

// The row of `channel` in `stats`, or -1 when it has no statistics of its own.
function rowOf(stats, channel) {
  let rows = rowIndexes.get(stats);
  if (!rows) {
    rows = new Map(stats.units.map((unit, row) => [unit, row]));
    rowIndexes.set(stats, rows);
  }
  return rows.get(channel) ?? -1;
}

export function channelStats(stats, sample, channel) {
  const row = stats.samples[sample]?.stats[rowOf(stats, channel)];
  if (!row) return null;
  const index = fieldIndex(stats);
  return Object.fromEntries(Object.entries(index).map(([name, i]) => [name, row[i]]));
}

// The flags of one channel in one sample (s: a channelStats row, or null).
export function flags(s) {
  if (!s) return { silent: false, saturated: false, nonfinite: false };
  const nonfinite = (s.nan_count || 0) + (s.inf_count || 0) > 0;
  // A map whose extremes are both 0 holds zeros alone: runs logged through a graph that divided
  // by a reciprocal stored such a map's zero fraction as 0.99999994.
  const silent = s.zero_fraction >= 1 || (s.min === 0 && s.max === 0 && !nonfinite);
  let saturated = false;
  if (!silent && s.min !== null && s.max !== null && s.mean !== null) {
    const extreme = Math.max(Math.abs(s.min), Math.abs(s.max));
    saturated = extreme > 0 && Math.abs(s.mean) >= 0.97 * extreme;
  }
  return { silent, saturated, nonfinite };
}

// In how many samples of `stats` the channel is silent.
export function silentSamples(stats, channel) {
  let count = 0;
  for (let sample = 0; sample < stats.samples.length; sample++) {
    if (flags(channelStats(stats, sample, channel)).silent) count++;
  }
  return count;
}

// A frame's channel (frames.js): its flags in the frame's sample, and `dead` when it is silent
// in every probe sample of the step. A drawn input is one sample, not the probe: never dead.
// An attention head (a "channel" of a layout whose unit is "head") holds probabilities, not
// activations: a near-uniform head would read as saturated, none is ever all zero. A head is
// flagged `dead` (with `head` set) by the overview's dead heads (frame.heads:
// rendering/overview.py dead_heads), and NaN/Inf.
export function channelFlags(frame, channel) {
  const own = flags(channelStats(frame.stats, frame.sample, channel));
  if (frame.geometry.layout.unit === "head") {
    const dead = frame.source === "logged" && frame.heads?.dead?.[channel] === true;
    return { silent: false, saturated: false, nonfinite: own.nonfinite, dead, head: true };
  }
  const dead = own.silent && frame.source === "logged" && silentSamples(frame.stats, channel) === frame.stats.samples.length;
  return { ...own, dead };
}

export function flagText(f) {
  return [f.dead ? (f.head ? "dead head" : "dead") : f.silent && "silent", f.saturated && "saturated", f.nonfinite && "NaN/Inf"]
    .filter(Boolean).join(", ");
}

// The outline a flagged channel gets in the grid (the worst flag wins), or null.
export function markKind(f) {
  if (f.nonfinite) return "nonfinite";
  if (f.dead) return "dead";
  if (f.silent) return "silent";
  return f.saturated ? "saturated" : null;
}
