// Which value range each tile is coloured by, for the four scaling modes.

export const SCALINGS = [
  { name: "channel", label: "per channel" },
  { name: "layer", label: "per layer" },
  { name: "steps", label: "all steps" },
  { name: "fixed", label: "fixed range" },
];

// [min low, max high] over tile ranges (each [low, high], null where a tile had no finite value).
export function spanOf(rangeLists) {
  let low = Infinity;
  let high = -Infinity;
  for (const ranges of rangeLists) {
    for (const range of ranges) {
      if (!range || range[0] === null || range[1] === null) continue;
      low = Math.min(low, range[0]);
      high = Math.max(high, range[1]);
    }
  }
  return Number.isFinite(low) ? [low, high] : [0, 0];
}

// A diverging map is centred on zero: the range becomes [-m, m].
export function centred([low, high]) {
  const m = Math.max(Math.abs(low), Math.abs(high));
  return [-m, m];
}

// One [low, high] per tile. `shared` is the range used by every mode but "channel":
// the layer's span at this step (or steps being compared), over all steps, or the fixed inputs.
export function tileRanges(mode, ranges, tiles, shared, diverging) {
  const result = [];
  for (let tile = 0; tile < tiles; tile++) {
    let range = shared;
    if (mode === "channel") {
      const own = ranges[tile];
      range = own && own[0] !== null && own[1] !== null ? own : [0, 0];
    }
    result.push(diverging ? centred(range) : range);
  }
  return result;
}

// The position 0..1 of `value` on a colour map spanning [low, high].
export function position(value, low, high, diverging) {
  if (high > low) return Math.min(1, Math.max(0, (value - low) / (high - low)));
  if (value > high) return 1;
  if (value < low) return 0;
  return diverging ? 0.5 : 0;
}
