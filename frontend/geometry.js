// Where each tile of a layer's grid sits, what a pixel means, and its real value
// (docs/format.md: codes 0..253 are low + code/253*(high-low), 254 NaN/Inf, 255 gutter).

import { layoutOf } from "./layouts.js";

export const FINITE_MAX_CODE = 253; // 254 (NaN/Inf) decodes to NaN like any code above this
export const GUTTER_CODE = 255;

export class Geometry {
  constructor(layer, width, height) {
    this.layer = layer;
    this.layout = layoutOf(layer);
    this.width = width;
    this.height = height;
    this.rows = layer.rows;
    this.columns = layer.columns;
    this.tileWidth = layer.tile_width;
    this.tileHeight = layer.tile_height;
    this.gutter = layer.gutter;
    this.tiles = this.layout.tiles(layer);
    // Per pixel column/row: the tile column/row it belongs to, or -1 on a gutter.
    this.columnOf = this.#axis(width, this.tileWidth, this.columns);
    this.rowOf = this.#axis(height, this.tileHeight, this.rows);
  }

  #axis(size, tile, count) {
    const index = new Int32Array(size).fill(-1);
    const pitch = tile + this.gutter;
    for (let i = 0; i < size; i++) {
      const cell = Math.floor(i / pitch);
      if (cell < count && i % pitch < tile) index[i] = cell;
    }
    return index;
  }

  tileAt(x, y) {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return -1;
    const column = this.columnOf[x];
    const row = this.rowOf[y];
    if (column < 0 || row < 0) return -1;
    const tile = row * this.columns + column;
    return tile < this.tiles ? tile : -1;
  }

  tileRect(tile) {
    const row = Math.floor(tile / this.columns);
    const column = tile % this.columns;
    return {
      x: column * (this.tileWidth + this.gutter),
      y: row * (this.tileHeight + this.gutter),
      width: this.tileWidth,
      height: this.tileHeight,
    };
  }

  // The tile index drawing `channel`, or -1 if this step did not draw it.
  // Volume layers draw a channel as a grid row: its first tile is returned.
  tileOfChannel(channels, channel) {
    const index = channels.indexOf(channel);
    if (index < 0) return -1;
    return this.layout.firstTileOfChannel(index, this.columns);
  }

  // The region a selected channel occupies: a tile, a volume's row, or the whole image.
  channelRect(channels, channel) {
    const tile = this.tileOfChannel(channels, channel);
    if (tile < 0) return null;
    const rect = this.tileRect(tile);
    if (this.layout.channelSpansRow) rect.width = this.width;
    return rect;
  }

  // The cell of a vector's unit or the column of a sequence's feature; null for tiled layouts.
  unitRect(channel) {
    return this.layout.unitRect(this.layer, channel, this.tileWidth, this.tileHeight);
  }

  // Where `channel` is on the grid: its tile (or volume row), unit cell or feature column.
  outline(channels, channel) {
    return this.layout.tiled ? this.channelRect(channels, channel) : this.unitRect(channel);
  }

  // What the pixel (x, y) shows: tile, channel index (unit / feature for vectors and
  // sequences), position inside the tile, plus depth / time for volumes and sequences.
  describe(x, y, channels) {
    const tile = this.tileAt(x, y);
    if (tile < 0) return null;
    const rect = this.tileRect(tile);
    const info = { tile, x: x - rect.x, y: y - rect.y, channel: null };
    return this.layout.locate(this.layer, info, channels, this.tileWidth);
  }
}

// Real values of a grid, NaN wherever a code is not a finite value (NaN/Inf or gutter).
export function decodeValues(grid, geometry, ranges) {
  const { width, height, codes } = grid;
  const values = new Float32Array(width * height).fill(NaN);
  for (let tile = 0; tile < geometry.tiles; tile++) {
    const range = ranges[tile];
    if (!range || range[0] === null || range[1] === null) continue;
    const [low, high] = range;
    const span = high > low ? high - low : 0;
    const rect = geometry.tileRect(tile);
    for (let y = rect.y; y < Math.min(rect.y + rect.height, height); y++) {
      for (let x = rect.x; x < Math.min(rect.x + rect.width, width); x++) {
        const code = codes[y * width + x];
        if (code <= FINITE_MAX_CODE) values[y * width + x] = low + (code / FINITE_MAX_CODE) * span;
      }
    }
  }
  return values;
}
