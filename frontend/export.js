// Downloads: the grid as shown (PNG, enlarged, panels side by side, with its colour bar),
// every step of it as a video (WebM), and the statistics (JSON).

import { download, safeFileName } from "./dom.js";
import { enlarged } from "./paint.js";

const GAP = 8;
const FONT = "12px Roboto, Arial, sans-serif";
const LINE = 16;
const BAR_WIDTH = 256;
const BAR_HEIGHT = 12;
const LEGEND_HEIGHT = GAP + LINE + BAR_HEIGHT + 2 + LINE;
const VIDEO_FRAMES = 120;
const FRAME_MS = 250;

function baseName({ run, layer, step, sample }) {
  return `activations_${safeFileName(run)}_${safeFileName(layer)}_step${step}_sample${sample}`;
}

// The panels side by side, and under them what a reader of the image needs: which run,
// layer, step and sample it is, and the colour bar with the real values it stands for.
// legend: { caption, gradient (a canvas of the colour map), labels: [low, middle, high] }.
function composed(canvases, zoom, legend) {
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
  return out;
}

export function exportPng(canvases, zoom, view, legend) {
  composed(canvases, zoom, legend).toBlob((blob) => download(blob, `${baseName(view)}.png`), "image/png");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Steps as frames of a WebM video, encoded by the browser itself (MediaRecorder). At most
// VIDEO_FRAMES steps, evenly spread. drawStep(step) shows a step and returns what
// exportPng takes: { canvases, zoom, legend }.
export async function exportVideo(steps, drawStep, view) {
  const every = Math.max(1, Math.ceil(steps.length / VIDEO_FRAMES));
  const chosen = steps.filter((_, index) => index % every === 0 || index === steps.length - 1);
  const first = await drawStep(chosen[0]);
  const size = composed(first.canvases, first.zoom, first.legend);
  const out = document.createElement("canvas");
  out.width = size.width + (size.width % 2);  // encoders want even sides
  out.height = size.height + (size.height % 2);
  const context = out.getContext("2d");
  const stream = out.captureStream(0);
  const [track] = stream.getVideoTracks();
  const type = ["video/webm;codecs=vp9", "video/webm"].find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, { mimeType: type });
  const chunks = [];
  recorder.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
  const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
  recorder.start();
  for (const [index, step] of chosen.entries()) {
    const shown = index === 0 ? first : await drawStep(step);
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, out.width, out.height);
    context.drawImage(composed(shown.canvases, shown.zoom, shown.legend), 0, 0);
    track.requestFrame();
    await sleep(FRAME_MS);
  }
  recorder.stop();
  await stopped;
  const { run, layer, sample } = view;
  download(new Blob(chunks, { type: "video/webm" }),
    `activations_${safeFileName(run)}_${safeFileName(layer)}_steps_sample${sample}.webm`);
}

export function exportJson(content) {
  const blob = new Blob([JSON.stringify(content, null, 1)], { type: "application/json" });
  download(blob, `${baseName(content)}_stats.json`);
}
