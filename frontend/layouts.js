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
 * @property {(info: PixelInfo) => string} label  "channel 5", "unit 12", "t 4, feature 7"…
 * @property {(layer: LayerEntry) => string[]} facts  what the layer header says about the grid
 */

function drawnChannels(layer) {
  const selection = layer.channel_selection === "top" ? "largest mean |activation|" : "the first";
  const subset = layer.channels_shown < layer.channels_total ? ` (${selection})` : "";
  return `${layer.channels_shown} of ${layer.channels_total} channels drawn${subset}`;
}

// "–17" when one pixel averages units 12..17.
function groupEnd(info) {
  const group = info.group[info.group.length - 1];
  return group > 1 ? `–${info.channel + group - 1}` : "";
}

// What the two single-image layouts (sequence, vector) share.
const UNTILED = {
  tiled: false,
  overlaysInput: false,
  tiles: () => 1,
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

/** @returns {LayoutKind} */
export function layoutOf(layer) {
  const kind = Object.hasOwn(LAYOUTS, layer.layout) ? LAYOUTS[layer.layout] : null;
  if (!kind) throw new Error(`unknown grid layout "${layer.layout}" of layer ${layer.layer}`);
  return kind;
}

// "Channel 3", "Unit 3", "Feature 3".
export function unitTitle(layer, channel) {
  const unit = layoutOf(layer).unit;
  return `${unit[0].toUpperCase()}${unit.slice(1)} ${channel}`;
}
