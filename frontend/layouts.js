// The four grid layouts a layer can be drawn in (docs/format.md, tb_activations/format/layout.py),
// as one table: whatever a view needs to know about a layout kind is answered here, so no
// other module compares layout names.

/**
 * A layer entry as the plugin lists it (./layers, and each layer of a ./live answer).
 * @typedef {object} LayerEntry
 * @property {string} layer  path, e.g. "backbone/block_1_conv"
 * @property {string} layer_class
 * @property {(number|null)[]} output_shape  with the batch axis first
 * @property {"channels"|"volume"|"sequence"|"vector"} layout
 * @property {number} rows
 * @property {number} columns
 * @property {number} tile_height
 * @property {number} tile_width
 * @property {number} gutter
 * @property {number[]} downscale  area-averaging factor per drawn axis
 * @property {number} channels_total
 * @property {number} channels_shown
 * @property {"first"|"top"} channel_selection
 * @property {number[]} depth_slices
 * @property {boolean} channels_first
 * @property {number} samples
 * @property {"token_grid"|"prefix_tokens"|"attention"|"attention_map"|"windows"|"attention_rollout"} [source]  what the grid's
 *   values are when not the layer's output as it is
 * @property {{rows: number, columns: number, prefix_tokens: number}} [token_grid]
 * @property {"class_token"|"mean"} [attention_query]
 * @property {{count: number, partition: string}} [windows]  the entries per sample a batch axis
 *   that held windows had, and the model's partition (docs/format.md)
 */

/**
 * What a pixel of the grid shows (see Geometry.describe).
 * @typedef {object} PixelInfo
 * @property {number} tile
 * @property {number} x  position inside the tile
 * @property {number} y
 * @property {number} channel  channel, unit or feature index
 * @property {number} [depth]  volume layers
 * @property {number} [time]  sequence layers
 * @property {number[]} [group]  how many time steps / units one pixel averages
 */

/**
 * @typedef {object} LayoutKind
 * @property {string} name
 * @property {boolean} tiled  one tile (volumes: one row of tiles) per drawn channel, with
 *   per-channel statistics, flags and scaling; else the whole layer is one image
 * @property {string} unit  what a channel index counts: "channel", "unit" or "feature"
 * @property {boolean} overlaysInput  a tile spans the input's field of view, so it can be
 *   laid over the probe picture
 * @property {boolean} valueOnly  one value per unit: its statistics are that value
 * @property {(layer: LayerEntry) => number} tiles  how many tiles the grid has
 * @property {(tile: number, columns: number) => (number|null)} channelIndexOfTile  position in
 *   the drawn channel list of the channel a tile shows (null: untiled)
 * @property {(index: number, columns: number) => number} firstTileOfChannel
 * @property {boolean} channelSpansRow  a channel is a whole grid row (volumes)
 * @property {(layer: LayerEntry, info: PixelInfo, channels: number[], tileWidth: number) => (PixelInfo|null)} locate
 *   fills in what the pixel at info.x, info.y of tile info.tile shows
 * @property {(layer: LayerEntry, channel: number, tileWidth: number, tileHeight: number) => (object|null)} unitRect
 *   the cell of a vector's unit or the column of a sequence's feature (null: tiled)
 * @property {(info: PixelInfo, layer: LayerEntry) => string} label  "channel 5", "unit 12", "t 4, feature 7",
 *   "head 3, query 0, key 14"…
 * @property {(layer: LayerEntry) => string[]} facts  what the layer header says about the grid
 * @property {(layer: LayerEntry, info: PixelInfo, labels: string[]) => (string|null)} tokens
 *   which tokens the pixel is, by the run's labels of its sample ("query 3 'cat', key 7
 *   'sat'"); null where the labels' count is not the layer's sequence length
 */

function drawnChannels(layer, unit = "channel") {
  const selection = layer.channel_selection === "top" ? "largest mean |activation|" : "the first";
  const subset = layer.channels_shown < layer.channels_total ? ` (${selection})` : "";
  return `${layer.channels_shown} of ${layer.channels_total} ${unit}s drawn${subset}`;
}

// "12" or "12–18" when one pixel of a tile averages `factor` positions from `start`.
function span(start, factor) {
  return factor > 1 ? `${start}–${start + factor - 1}` : `${start}`;
}

// Where tile pixel (info.y, info.x) lies on a token grid: its patch and token index.
function patchOf(layer, info) {
  const [fy, fx] = layer.downscale;
  const grid = layer.token_grid;
  const row = info.y * fy;
  const column = info.x * fx;
  const token = fy * fx === 1 ? `, token ${grid.prefix_tokens + row * grid.columns + column}` : "";
  return `patch (${span(row, fy)}, ${span(column, fx)})${token}`;
}

function prefixText(layer) {
  const count = layer.token_grid.prefix_tokens;
  return count ? `after ${count} prefix token${count === 1 ? "" : "s"}` : "no prefix token";
}

// "–17" when one pixel averages units 12..17.
function groupEnd(info) {
  const group = info.group[info.group.length - 1];
  return group > 1 ? `–${info.channel + group - 1}` : "";
}

// Token labels are user text: views put them in as textContent only (dom.js).
const WORDS = { token: "tokens", query: "queries", key: "keys" };

// "token 3 'cat'", or "tokens 12–18 ('a' … 'z')" when one pixel averages `factor` positions
// from `start`; null past the labels.
export function tokenSpan(word, labels, start, factor = 1) {
  if (!(start >= 0 && start < labels.length)) return null;
  const end = Math.min(start + factor, labels.length) - 1;
  if (end === start) return `${word} ${start} '${labels[start]}'`;
  return `${WORDS[word]} ${start}–${end} ('${labels[start]}' … '${labels[end]}')`;
}

// The labels of a layer whose token axis holds `length` tokens: none of another length.
export function matching(labels, length) {
  return Array.isArray(labels) && labels.length === length ? labels : null;
}

// Every token of a token grid's output: its prefix tokens, then the patches row by row.
function gridTokens(layer) {
  const grid = layer.token_grid;
  return grid ? grid.prefix_tokens + grid.rows * grid.columns : null;
}

// The token a pixel of a token grid tile is (one patch: no downscale), by its labels.
function patchToken(layer, info, labels) {
  const own = matching(labels, gridTokens(layer));
  if (!own || layer.downscale[0] * layer.downscale[1] !== 1) return null;
  const grid = layer.token_grid;
  return tokenSpan("token", own, grid.prefix_tokens + info.y * grid.columns + info.x);
}

// The key a pixel of a map over the keys' patch grid is ("key 5 'cat'"), by its labels.
function keyToken(layer, info, labels) {
  const key = patchToken(layer, info, labels);
  return key && `key ${key.slice("token ".length)}`;
}

// What the two single-image layouts (sequence, vector) share.
const UNTILED = {
  tiled: false,
  overlaysInput: false,
  tiles: () => 1,
  tokens: () => null,
  channelIndexOfTile: () => null,
  firstTileOfChannel: () => 0,
  channelSpansRow: false,
};

/** @type {Object<string, LayoutKind>} */
export const LAYOUTS = {
  channels: {
    name: "channels",
    tiled: true,
    unit: "channel",
    overlaysInput: true,
    valueOnly: false,
    tiles: (layer) => layer.channels_shown,
    channelIndexOfTile: (tile) => tile,
    firstTileOfChannel: (index) => index,
    channelSpansRow: false,
    locate: (layer, info, channels) => ({ ...info, channel: channels[info.tile] }),
    unitRect: () => null,
    label: (info) => `channel ${info.channel}`,
    facts: (layer) => [drawnChannels(layer)],
    tokens: () => null,
  },
  volume: {
    name: "volume",
    tiled: true,
    unit: "channel",
    overlaysInput: false,
    valueOnly: false,
    tiles: (layer) => layer.channels_shown * layer.depth_slices.length,
    channelIndexOfTile: (tile, columns) => Math.floor(tile / columns),
    firstTileOfChannel: (index, columns) => index * columns,
    channelSpansRow: true,
    locate: (layer, info, channels) => ({
      ...info,
      channel: channels[Math.floor(info.tile / layer.columns)],
      depth: layer.depth_slices[info.tile % layer.columns],
    }),
    unitRect: () => null,
    label: (info) => `channel ${info.channel}, depth ${info.depth}`,
    facts: (layer) => [drawnChannels(layer), `depth slices ${layer.depth_slices.join(", ")}`],
    tokens: () => null,
  },
  sequence: {
    ...UNTILED,
    name: "sequence",
    unit: "feature",
    valueOnly: false,
    locate: (layer, info) => ({
      ...info,
      time: info.y * layer.downscale[0],
      channel: info.x * layer.downscale[1],
      group: [layer.downscale[0], layer.downscale[1]],
    }),
    unitRect: (layer, channel, tileWidth, tileHeight) =>
      ({ x: Math.floor(channel / layer.downscale[1]), y: 0, width: 1, height: tileHeight }),
    label: (info) => {
      const time = info.group[0] > 1 ? `${info.time}–${info.time + info.group[0] - 1}` : info.time;
      return `t ${time}, feature ${info.channel}${groupEnd(info)}`;
    },
    facts: () => ["time × features"],
    // A (B, T, F) output's rows are its T tokens (higher ranks fold axes into T: none).
    tokens: (layer, info, labels) => {
      const own = layer.output_shape.length === 3 ? matching(labels, layer.output_shape[1]) : null;
      return own && tokenSpan("token", own, info.time, info.group[0]);
    },
  },
  vector: {
    ...UNTILED,
    name: "vector",
    unit: "unit",
    valueOnly: true,
    locate: (layer, info, channels, tileWidth) => {
      const group = layer.downscale[0];
      const channel = (info.y * tileWidth + info.x) * group;
      return channel < layer.channels_total ? { ...info, channel, group: [group] } : null;
    },
    unitRect: (layer, channel, tileWidth) => {
      const cell = Math.floor(channel / layer.downscale[0]);
      return { x: cell % tileWidth, y: Math.floor(cell / tileWidth), width: 1, height: 1 };
    },
    label: (info) => `unit ${info.channel}${groupEnd(info)}`,
    facts: (layer) => [`${layer.channels_total} units as a block`],
  },
};

// What a layer whose batch axis held each sample's windows says about them (docs/format.md).
function windowsFacts(layer, what) {
  if (!layer.windows) return [];
  const { count, partition } = layer.windows;
  return [`${what} ${count} ${partition.replace("_", " ")} entries per sample`];
}

// What a grid shows when it is not the layer's output as it is (docs/format.md, `source`):
// each entry overrides what it changes of its layout kind.
const SOURCES = {
  token_grid: {
    unit: "feature",
    label: (info, layer) => `feature ${info.channel}, ${patchOf(layer, info)}`,
    facts: (layer) => [drawnChannels(layer, "feature"),
      `tokens on a ${layer.token_grid.rows}×${layer.token_grid.columns} patch grid, ${prefixText(layer)}`,
      ...windowsFacts(layer, "put back from")],
    tokens: patchToken,
  },
  prefix_tokens: {
    facts: () => ["prefix tokens (class, distillation, register) × features"],
    // Row t is token t of the whole output (prefix, then the grid): its length is known from
    // the token_grid field (logs written before it have none, so no labels).
    tokens: (layer, info, labels) => {
      const own = matching(labels, gridTokens(layer));
      return own && tokenSpan("token", own, info.time, info.group[0]);
    },
  },
  attention: {
    unit: "head",
    overlaysInput: false,
    label: (info, layer) => `head ${info.channel}, query ${span(info.y * layer.downscale[0], layer.downscale[0])}, ` +
      `key ${span(info.x * layer.downscale[1], layer.downscale[1])}`,
    facts: (layer) => [drawnChannels(layer, "head"), "query tokens down, key tokens across; each row sums to 1",
      ...windowsFacts(layer, "the mean over its")],
    // (B, heads, Tq, Tk): queries and keys each named where the labels are as many.
    tokens: (layer, info, labels) => {
      const [, , queries, keys] = layer.output_shape;
      const [fy, fx] = layer.downscale;
      const query = matching(labels, queries);
      const key = matching(labels, keys);
      const parts = [query && tokenSpan("query", query, info.y * fy, fy),
        key && tokenSpan("key", key, info.x * fx, fx)].filter(Boolean);
      return parts.length ? parts.join(", ") : null;
    },
  },
  attention_map: {
    unit: "head",
    label: (info, layer) => `head ${info.channel}, ${patchOf(layer, info)}`,
    facts: (layer) => [drawnChannels(layer, "head"),
      layer.attention_query === "class_token" ? "the class token's attention over the patch grid"
        : "the mean query's attention over the patch grid",
      ...windowsFacts(layer, "each window's, put back from")],
    tokens: keyToken,
  },
  attention_rollout: {
    shownName: "attention rollout",
    unit: "map",
    label: (info, layer) => `rollout, ${patchOf(layer, info)}`,
    facts: (layer) => ["attention rollout: the class token's attention through every layer " +
      `(heads averaged, the residual as identity) over the ${layer.token_grid.rows}×` +
      `${layer.token_grid.columns} patch grid`],
    tokens: keyToken,
  },
  windows: {
    facts: (layer) => [`each sample's ${layer.windows.count} windows one after the other ` +
      `(partition: ${layer.windows.partition.replace("_", " ")})`],
  },
};

const resolved = new Map();

/** @returns {LayoutKind} */
export function layoutOf(layer) {
  const kind = Object.hasOwn(LAYOUTS, layer.layout) ? LAYOUTS[layer.layout] : null;
  if (!kind) throw new Error(`unknown grid layout "${layer.layout}" of layer ${layer.layer}`);
  const source = layer.source && Object.hasOwn(SOURCES, layer.source) ? layer.source : null;
  if (!source) return kind;
  const key = `${layer.layout}/${source}`;
  if (!resolved.has(key)) resolved.set(key, { ...kind, ...SOURCES[source] });
  return resolved.get(key);
}

/**
 * What a layer is called where it is shown: `name` (its path, or the part of it a tree row
 * shows), except for a record that is no module's output (the attention rollout, of the whole
 * model), which gets a name a reader knows. The path stays its identifier (URL, requests).
 * Needs only `source` (overview entries have no layout).
 * @param {{layer: string, source?: string}} layer
 */
export function shownName(layer, name = layer.layer) {
  const source = layer.source && Object.hasOwn(SOURCES, layer.source) ? SOURCES[layer.source] : null;
  return source?.shownName ?? name;
}

// "Channel 3", "Unit 3", "Feature 3".
export function unitTitle(layer, channel) {
  const unit = layoutOf(layer).unit;
  return `${unit[0].toUpperCase()}${unit.slice(1)} ${channel}`;
}

/** Which tokens pixel `info` of `layer` is, by its sample's `labels` (null: unnamed). */
export function tokenText(layer, info, labels) {
  if (!Array.isArray(labels) || !labels.length) return null;
  return layoutOf(layer).tokens(layer, info, labels) || null;
}
