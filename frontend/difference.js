// The difference of two frames' grids in real values (current − compare).

import { GUTTER_CODE } from "./geometry.js";

// {values, codes, ranges, largest, mismatched} of frames a and b (frames.js): per-pixel
// differences (NaN where either is NaN/Inf), codes marking gutters and blanked tiles, each
// tile's symmetric [-m, m] with m its largest |difference|, the largest over the grid, and how
// many tiles were blanked because they show different channels in the two frames ("top"
// channel selection picks per step, and per drawn input).
export function difference(a, b) {
  const geometry = a.geometry;
  const codes = Uint8Array.from(a.grid.codes);
  const values = new Float32Array(a.values.length);
  const sameShape = b.grid.width === a.grid.width && b.grid.height === a.grid.height;
  for (let i = 0; i < values.length; i++) values[i] = sameShape ? a.values[i] - b.values[i] : NaN;
  let mismatched = 0;
  if (geometry.layout.tiled) {
    for (let tile = 0; tile < geometry.tiles; tile++) {
      const index = geometry.layout.channelIndexOfTile(tile, geometry.columns);
      if (a.stats.channels[index] === b.stats.channels[index]) continue;
      mismatched++;
      const rect = geometry.tileRect(tile);
      for (let y = rect.y; y < rect.y + rect.height; y++) {
        codes.fill(GUTTER_CODE, y * geometry.width + rect.x, y * geometry.width + rect.x + rect.width);
      }
    }
  }
  const ranges = [];
  let largest = 0;
  for (let tile = 0; tile < geometry.tiles; tile++) {
    const rect = geometry.tileRect(tile);
    let m = 0;
    for (let y = rect.y; y < rect.y + rect.height; y++) {
      for (let x = rect.x; x < rect.x + rect.width; x++) {
        const i = y * geometry.width + x;
        if (codes[i] !== GUTTER_CODE && Number.isFinite(values[i])) m = Math.max(m, Math.abs(values[i]));
      }
    }
    ranges.push([-m, m]);
    largest = Math.max(largest, m);
  }
  return { values, codes, ranges, largest, mismatched };
}
