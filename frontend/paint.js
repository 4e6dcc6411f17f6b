// Grid values to coloured pixels. Canvases hold the grid at its own resolution and are
// enlarged by CSS (image-rendering: pixelated) at integer zoom, so every value stays one
// crisp block.

import { colormap, isDiverging, TRANSPARENT } from "./colormaps.js";
import { GUTTER_CODE } from "./geometry.js";
import { position } from "./scaling.js";

// ImageData of `rect` (default: the whole grid). values: real values (NaN: NaN/Inf);
// codes: the stored codes, for gutters; ranges: the display [low, high] of each tile.
export function paint(values, codes, geometry, ranges, cmapName, rect = null) {
  const { x: x0, y: y0, width, height } = rect || { x: 0, y: 0, width: geometry.width, height: geometry.height };
  const cmap = colormap(cmapName);
  const diverging = isDiverging(cmapName);
  const image = new ImageData(width, height);
  const pixels = new Uint32Array(image.data.buffer);
  for (let y = 0; y < height; y++) {
    const row = geometry.rowOf[y0 + y];
    for (let x = 0; x < width; x++) {
      const source = (y0 + y) * geometry.width + x0 + x;
      const column = geometry.columnOf[x0 + x];
      const tile = row * geometry.columns + column;
      if (row < 0 || column < 0 || tile >= geometry.tiles || codes[source] === GUTTER_CODE) {
        pixels[y * width + x] = TRANSPARENT;
        continue;
      }
      const value = values[source];
      if (Number.isNaN(value)) {
        pixels[y * width + x] = cmap.nonfinite;
        continue;
      }
      const [low, high] = ranges[tile];
      pixels[y * width + x] = cmap.table[Math.round(position(value, low, high, diverging) * 255)];
    }
  }
  return image;
}

// The colour map's 256 colours, left to right, into a 256×1 canvas (a colour bar).
export function paintScale(canvas, cmapName) {
  const image = new ImageData(256, 1);
  new Uint32Array(image.data.buffer).set(colormap(cmapName).table);
  putImage(canvas, image);
}

export function putImage(canvas, image) {
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext("2d").putImageData(image, 0, 0);
}

// A copy of `canvas` enlarged `zoom` times without smoothing (for export and overlays).
export function enlarged(canvas, zoom) {
  const out = document.createElement("canvas");
  out.width = canvas.width * zoom;
  out.height = canvas.height * zoom;
  const context = out.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(canvas, 0, 0, out.width, out.height);
  return out;
}
