// What a grid pixel shows, in words: for the tooltip and the status line.

import { channelFlags, channelStats, silentSamples } from "./channel_flags.js";
import { fmt, percent } from "./dom.js";
import { DEAD_HEAD_MEANING } from "./head_values.js";
import { tokenText } from "./layouts.js";

// Tooltip lines (strings or {text, class}) for pixel `index` of the current frame `a`,
// compared with `b` if any; `shown` is the frame whose panel is pointed at (frames: model.js).
export function describePixel(info, index, a, b, shown) {
  const layout = shown.geometry.layout;
  const lines = [{ text: layout.label(info, shown.geometry.layer), class: "tooltip-title" }];
  const tokens = tokenText(shown.geometry.layer, info, shown.tokens);
  if (tokens) lines.push({ text: tokens, class: "tooltip-tokens" });
  if (b) {
    lines.push(`${a.label}: ${fmt(a.values[index])}`, `${b.label}: ${fmt(b.values[index])}`,
      `difference: ${fmt(a.values[index] - b.values[index])}`);
  } else {
    lines.push(`value ${fmt(a.values[index])}` + (layout.tiled ? ` at (${info.y}, ${info.x})` : ""));
  }
  const s = channelStats(shown.stats, shown.sample, info.channel);
  if (!s || !layout.tiled) return lines;
  lines.push(`min ${fmt(s.min)} · max ${fmt(s.max)} · mean ${fmt(s.mean)}`,
    `std ${fmt(s.std)} · sparsity ${percent(s.zero_fraction)}`);
  const f = channelFlags(shown, info.channel);
  const samples = shown.stats.samples.length;
  if (f.dead && f.head) lines.push({ text: `dead head: ${DEAD_HEAD_MEANING} (${samples} samples)`, class: "flag" });
  else if (f.dead) lines.push({ text: `dead: all zero in every one of the ${samples} probe samples`, class: "flag" });
  else if (f.silent && shown.source === "live") lines.push({ text: "silent: all zero for this input", class: "flag" });
  else if (f.silent) {
    lines.push({ text: `silent: all zero in this sample (${silentSamples(shown.stats, info.channel)} of ${samples} samples)`, class: "flag" });
  }
  if (f.saturated) lines.push({ text: "saturated: nearly every value at its extreme", class: "flag" });
  if (f.nonfinite) lines.push({ text: `${s.nan_count} NaN, ${s.inf_count} Inf`, class: "flag" });
  return lines;
}
