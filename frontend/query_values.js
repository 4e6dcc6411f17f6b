// One query's attention over the keys, read from a head's tile of an `attention` layer as it
// is stored: no new capture. Where the tile cap area-averaged the tile, a row is the mean of
// several queries and a value the mean over several keys; what is returned says so. Pure:
// views/head_panel.js draws it.

import { matching, tokenSpan } from "./layouts.js";

// The patch grid the keys of attention layer `layer` lie on, {rows, columns, prefix_tokens}:
// its `:attention_map` sibling's (in `layers`), when the tile keeps every key apart and
// they are the prefix tokens then the grid's patches; else null.
export function keyGrid(layer, layers) {
  if (layer.source !== "attention") return null;
  const map = layers.find((entry) => entry.layer === `${layer.layer}_map` && entry.source === "attention_map");
  const grid = map?.token_grid;
  const keys = layer.output_shape[3];
  if (!grid || layer.downscale[1] !== 1 || keys !== grid.prefix_tokens + grid.rows * grid.columns) return null;
  return grid;
}

// "query 3 'sat'", "queries 12–15 averaged", "queries 12–15 ('a' … 'z') averaged".
function queryText(first, last, labels) {
  const named = labels && tokenSpan("query", labels, first, last - first + 1);
  const text = named || (first === last ? `query ${first}` : `queries ${first}–${last}`);
  return last > first ? `${text} averaged` : text;
}

// "key 6 'mat'", "keys 12–13", "keys 12–13 ('a' … 'b')".
function keyText(first, last, labels) {
  const named = labels && tokenSpan("key", labels, first, last - first + 1);
  return named || (first === last ? `key ${first}` : `keys ${first}–${last}`);
}

/**
 * What row `row` of head `head`'s tile in `frame` (an `attention` layer's, frames.js) says:
 * {head, row, query: text, queries: [first, last], averagedQueries, keys: [{first, last,
 * text, mass}] (mass: the row's probability on those keys), grid: null or {rows, columns,
 * prefix: [{text, mass}], values: Float32Array rows*columns, high, own: the query's own
 * patch {row, column}, or null for a prefix token or averaged queries}}; null off the tile.
 * `layers`: the run's layers (for the key grid).
 */
export function queryAttention(frame, head, row, layers) {
  const { layer, geometry } = frame;
  const rect = geometry.channelRect(frame.stats.channels, head);
  const [, , queryCount, keyCount] = layer.output_shape;
  const [fy, fx] = layer.downscale;
  const first = row * fy;
  if (!rect || row < 0 || row >= rect.height || first >= queryCount) return null;
  const last = Math.min(first + fy, queryCount) - 1;
  const queryLabels = matching(frame.tokens, queryCount);
  const keyLabels = matching(frame.tokens, keyCount);
  const keys = [];
  for (let x = 0; x < rect.width && x * fx < keyCount; x++) {
    const start = x * fx;
    const end = Math.min(start + fx, keyCount) - 1;
    const mean = frame.values[(rect.y + row) * geometry.width + rect.x + x];
    keys.push({ first: start, last: end, text: keyText(start, end, keyLabels), mass: mean * (end - start + 1) });
  }
  const grid = keyGrid(layer, layers);
  return {
    head, row, queries: [first, last], averagedQueries: last > first,
    query: queryText(first, last, queryLabels), keys,
    grid: grid && { ...gridOf(grid, keys), own: ownPatch(grid, first, last) },
  };
}

// Where query `first` (self-attention: queries are the keys) lies on the grid, if it is one patch.
function ownPatch(grid, first, last) {
  const patch = first - grid.prefix_tokens;
  if (last !== first || patch < 0) return null;
  return { row: Math.floor(patch / grid.columns), column: patch % grid.columns };
}

// The keys of a row on their patch grid: the prefix tokens apart, the patches as an image.
function gridOf(grid, keys) {
  const prefix = keys.slice(0, grid.prefix_tokens).map(({ text, mass }) => ({ text, mass }));
  const values = Float32Array.from(keys.slice(grid.prefix_tokens), (key) => key.mass);
  const high = values.reduce((top, value) => (value > top ? value : top), 0);
  return { rows: grid.rows, columns: grid.columns, prefix, values, high };
}
