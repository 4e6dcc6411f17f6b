// What a grid pixel shows, in words: for the tooltip, the status line and the channel panel.

import { channelStats, deadSamples, flags } from "./channel_flags.js";
import { fmt, percent } from "./dom.js";

export function isTiled(layer) {
  return layer.layout === "channels" || layer.layout === "volume";
}

// "channel 5", "channel 5, depth 3", "unit 12" or "t 4, feature 7" (ranges when averaged).
export function unitName(layer, info) {
  const group = info.group ? info.group[info.group.length - 1] : 1;
  const units = group > 1 ? `–${info.channel + group - 1}` : "";
  if (layer.layout === "vector") return `unit ${info.channel}${units}`;
  if (layer.layout === "sequence") {
    const time = info.group[0] > 1 ? `${info.time}–${info.time + info.group[0] - 1}` : info.time;
    return `t ${time}, feature ${info.channel}${units}`;
  }
  if (layer.layout === "volume") return `channel ${info.channel}, depth ${info.depth}`;
  return `channel ${info.channel}`;
}

// Tooltip lines (strings or {text, class}) for pixel `index` of the current frame `a`,
// compared with `b` if any; `shown` is the frame whose panel is pointed at.
export function describePixel(layer, info, index, a, b, shown, sample) {
  const lines = [{ text: unitName(layer, info), class: "tooltip-title" }];
  if (b) {
    lines.push(`step ${a.step}: ${fmt(a.values[index])}`, `step ${b.step}: ${fmt(b.values[index])}`,
      `difference: ${fmt(a.values[index] - b.values[index])}`);
  } else {
    lines.push(`value ${fmt(a.values[index])}` + (isTiled(layer) ? ` at (${info.y}, ${info.x})` : ""));
  }
  const s = channelStats(shown.stats, sample, info.channel);
  if (!s || !isTiled(layer)) return lines;
  lines.push(`min ${fmt(s.min)} · max ${fmt(s.max)} · mean ${fmt(s.mean)}`,
    `std ${fmt(s.std)} · zeros ${percent(s.zero_fraction)}`);
  const f = flags(s);
  if (f.dead) {
    const everywhere = deadSamples(shown.stats, info.channel);
    lines.push({ text: `dead channel (all zero in ${everywhere} of ${shown.stats.samples.length} samples)`, class: "flag" });
  }
  if (f.saturated) lines.push({ text: "saturated: nearly every value at its extreme", class: "flag" });
  if (f.nonfinite) lines.push({ text: `${s.nan_count} NaN, ${s.inf_count} Inf`, class: "flag" });
  return lines;
}
