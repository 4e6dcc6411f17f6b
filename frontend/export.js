// Downloads: the grid as shown (PNG, enlarged, panels side by side) and the statistics (JSON).

import { download, safeFileName } from "./dom.js";
import { enlarged } from "./paint.js";

const GAP = 8;

function baseName({ run, layer, step, sample }) {
  return `activations_${safeFileName(run)}_${safeFileName(layer)}_step${step}_sample${sample}`;
}

export function exportPng(canvases, zoom, view) {
  const images = canvases.map((canvas) => enlarged(canvas, zoom));
  const out = document.createElement("canvas");
  out.width = images.reduce((sum, image) => sum + image.width, 0) + GAP * (images.length - 1);
  out.height = Math.max(...images.map((image) => image.height));
  const context = out.getContext("2d");
  let left = 0;
  for (const image of images) {
    context.drawImage(image, left, 0);
    left += image.width + GAP;
  }
  out.toBlob((blob) => download(blob, `${baseName(view)}.png`), "image/png");
}

export function exportJson(content) {
  const blob = new Blob([JSON.stringify(content, null, 1)], { type: "application/json" });
  download(blob, `${baseName(content)}_stats.json`);
}
