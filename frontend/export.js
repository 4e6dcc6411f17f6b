// Downloads: the grid as shown (PNG, enlarged, panels side by side, with its colour bar)
// and the statistics (JSON).

import { download, safeFileName } from "./dom.js";
import { enlarged } from "./paint.js";

const GAP = 8;
const FONT = "12px Roboto, Arial, sans-serif";
const LINE = 16;
const BAR_WIDTH = 256;
const BAR_HEIGHT = 12;
const LEGEND_HEIGHT = GAP + LINE + BAR_HEIGHT + 2 + LINE;

function baseName({ run, layer, step, sample }) {
  return `activations_${safeFileName(run)}_${safeFileName(layer)}_step${step}_sample${sample}`;
}

// The panels side by side, and under them what a reader of the image needs: which run,
// layer, step and sample it is, and the colour bar with the real values it stands for.
// legend: { caption, gradient (a canvas of the colour map), labels: [low, middle, high] }.
export function exportPng(canvases, zoom, view, legend) {
  const images = canvases.map((canvas) => enlarged(canvas, zoom));
  const out = document.createElement("canvas");
  const context = out.getContext("2d");
  context.font = FONT;
  const gridWidth = images.reduce((sum, image) => sum + image.width, 0) + GAP * (images.length - 1);
  const gridHeight = Math.max(...images.map((image) => image.height));
  out.width = Math.ceil(Math.max(gridWidth, BAR_WIDTH, context.measureText(legend.caption).width));
  out.height = gridHeight + LEGEND_HEIGHT;
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, out.width, out.height);
  let left = 0;
  for (const image of images) {
    context.drawImage(image, left, 0);
    left += image.width + GAP;
  }
  context.font = FONT;
  context.fillStyle = "#202124";
  context.textBaseline = "top";
  const captionTop = gridHeight + GAP;
  context.fillText(legend.caption, 0, captionTop);
  const barTop = captionTop + LINE;
  context.imageSmoothingEnabled = false;
  context.drawImage(legend.gradient, 0, barTop, BAR_WIDTH, BAR_HEIGHT);
  const [low, middle, high] = legend.labels;
  const labelTop = barTop + BAR_HEIGHT + 2;
  for (const [text, x, align] of [[low, 0, "left"], [middle, BAR_WIDTH / 2, "center"], [high, BAR_WIDTH, "right"]]) {
    context.textAlign = align;
    context.fillText(text, x, labelTop);
  }
  out.toBlob((blob) => download(blob, `${baseName(view)}.png`), "image/png");
}

export function exportJson(content) {
  const blob = new Blob([JSON.stringify(content, null, 1)], { type: "application/json" });
  download(blob, `${baseName(content)}_stats.json`);
}
