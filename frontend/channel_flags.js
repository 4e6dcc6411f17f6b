// What a channel's statistics say about it: dead, saturated, non-finite.

// Rows of `stats.samples[n].stats` are channels; fields are named by `stats.fields`.
export function fieldIndex(stats) {
  return Object.fromEntries(stats.fields.map((name, i) => [name, i]));
}

export function channelStats(stats, sample, channel) {
  const row = stats.samples[sample]?.stats[channel];
  if (!row) return null;
  const index = fieldIndex(stats);
  return Object.fromEntries(Object.entries(index).map(([name, i]) => [name, row[i]]));
}

// Dead: the map is all zeros. Saturated: (nearly) every value sits at the map's extreme, as
// when a sigmoid, tanh or clipped unit is stuck, so the map carries no spatial information.
export function flags(s) {
  if (!s) return { dead: false, saturated: false, nonfinite: false };
  const dead = s.zero_fraction === 1 || (s.min === 0 && s.max === 0);
  const nonfinite = (s.nan_count || 0) + (s.inf_count || 0) > 0;
  let saturated = false;
  if (!dead && s.min !== null && s.max !== null && s.mean !== null) {
    const extreme = Math.max(Math.abs(s.min), Math.abs(s.max));
    saturated = extreme > 0 && Math.abs(s.mean) >= 0.97 * extreme;
  }
  return { dead, saturated, nonfinite };
}

// In how many probe samples the channel is dead.
export function deadSamples(stats, channel) {
  let count = 0;
  for (let sample = 0; sample < stats.samples.length; sample++) {
    if (flags(channelStats(stats, sample, channel)).dead) count++;
  }
  return count;
}

export function flagText(f) {
  return [f.dead && "dead", f.saturated && "saturated", f.nonfinite && "NaN/Inf"].filter(Boolean).join(", ");
}
