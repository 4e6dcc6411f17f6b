// A canvas the size of one model input to draw on, enlarged without smoothing, with its
// tools: brush size, eraser, clear, ink colour (colour inputs), and an image file chosen or
// dropped, decoded and resized here in the browser (the server never sees the file).

import { el } from "../dom.js";
import { inputValues, luminance, pictureChannels } from "../input_values.js";

const BOX = 168; // the largest side the canvas is shown at, in CSS pixels
const BACKGROUND = "#000000";
const GRAY_INK = "#ffffff";

export class DrawingPad {
  // onDraw: the picture changed during a stroke; onDone: a stroke ended, or a picture loaded;
  // onError(message): an image file could not be read.
  constructor(input, { onDraw, onDone, onError }) {
    this.input = input;
    this.onDraw = onDraw;
    this.onDone = onDone;
    this.onError = onError;
    this.last = null;
    const [height, width] = input.shape;
    this.colour = pictureChannels(input) > 1;
    this.canvas = el("canvas", { class: "drawing-canvas", width: String(width), height: String(height),
      "aria-label": `Draw the input ${input.name}` });
    this.context = this.canvas.getContext("2d", { willReadFrequently: true });
    const longest = Math.max(width, height);
    const zoom = longest <= BOX ? Math.floor(BOX / longest) : BOX / longest;
    this.canvas.style.width = `${Math.round(width * zoom)}px`;
    this.canvas.style.height = `${Math.round(height * zoom)}px`;
    this.#listen();

    const defaultBrush = Math.max(1, Math.round(longest / 10));
    this.brush = el("input", { type: "range", min: "1", max: String(Math.max(4, Math.round(longest / 3))),
      value: String(defaultBrush), "aria-label": "Brush size", class: "brush-size" });
    this.eraser = el("button", { text: "Eraser", "aria-pressed": "false", title: "Paint the background back",
      on: { click: () => this.#setErasing(this.eraser.getAttribute("aria-pressed") !== "true") } });
    this.ink = el("input", { type: "color", value: "#ffffff", "aria-label": "Ink colour", hidden: !this.colour });
    this.file = el("input", { type: "file", accept: "image/*", class: "picture-file", "aria-label": "Image file",
      on: { change: () => this.#loadFile(this.file.files[0]) } });
    this.tools = el("div", { class: "drawing-tools" },
      el("label", { class: "option" }, el("span", { class: "control-label", text: "Brush" }), this.brush),
      el("span", { class: "tool-row" }, this.eraser,
        el("button", { text: "Clear", on: { click: () => { this.clear(); this.onDone(); } } }), this.ink),
      el("label", { class: "option file-option", title: "An image file, resized to the input here in the browser" },
        el("span", { class: "control-label", text: "Image" }), this.file));
    this.element = el("div", { class: "drawing-stage", title: "Draw here, or drop an image file" }, this.canvas);
    this.clear();
  }

  #listen() {
    const canvas = this.canvas;
    canvas.addEventListener("pointerdown", (event) => {
      canvas.setPointerCapture(event.pointerId);
      this.last = this.#point(event);
      this.#stroke(this.last, this.last);
      this.onDraw();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!this.last) return;
      const point = this.#point(event);
      this.#stroke(this.last, point);
      this.last = point;
      this.onDraw();
    });
    const end = () => {
      if (!this.last) return;
      this.last = null;
      this.onDone();
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("dragover", (event) => event.preventDefault());
    canvas.addEventListener("drop", (event) => {
      event.preventDefault();
      const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/"));
      if (file) this.#loadFile(file);
    });
  }

  #point(event) {
    const box = this.canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) / box.width) * this.canvas.width,
      y: ((event.clientY - box.top) / box.height) * this.canvas.height,
    };
  }

  #stroke(from, to) {
    const context = this.context;
    const erasing = this.eraser.getAttribute("aria-pressed") === "true";
    const colour = erasing ? BACKGROUND : this.colour ? this.ink.value : GRAY_INK;
    context.strokeStyle = colour;
    context.fillStyle = colour;
    context.lineWidth = Number(this.brush.value);
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    if (from === to) {
      context.arc(from.x, from.y, context.lineWidth / 2, 0, 2 * Math.PI);
      context.fill();
    } else {
      context.moveTo(from.x, from.y);
      context.lineTo(to.x, to.y);
      context.stroke();
    }
  }

  #setErasing(on) {
    this.eraser.setAttribute("aria-pressed", String(on));
    this.eraser.classList.toggle("active", on);
  }

  clear() {
    this.context.fillStyle = BACKGROUND;
    this.context.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  // A picture (an <img>, a canvas or an ImageBitmap) scaled to cover the canvas, centred;
  // a gray input keeps its luminance only, so what is shown is what is sent.
  drawPicture(picture, width, height) {
    const { width: targetWidth, height: targetHeight } = this.canvas;
    const scale = Math.max(targetWidth / width, targetHeight / height);
    const [drawnWidth, drawnHeight] = [width * scale, height * scale];
    this.clear();
    this.context.imageSmoothingEnabled = true;
    this.context.imageSmoothingQuality = "high";
    this.context.drawImage(picture, (targetWidth - drawnWidth) / 2, (targetHeight - drawnHeight) / 2, drawnWidth, drawnHeight);
    if (!this.colour) {
      const image = this.context.getImageData(0, 0, targetWidth, targetHeight);
      const pixels = image.data;
      for (let i = 0; i < pixels.length; i += 4) {
        pixels[i] = pixels[i + 1] = pixels[i + 2] = luminance(pixels[i], pixels[i + 1], pixels[i + 2]);
        pixels[i + 3] = 255;
      }
      this.context.putImageData(image, 0, 0);
    }
    this.onDone();
  }

  async #loadFile(file) {
    if (!file) return;
    this.file.value = "";
    let bitmap;
    try {
      // Exact pixel values: no colour management of the file's bytes.
      bitmap = await createImageBitmap(file, { colorSpaceConversion: "none" });
    } catch (error) {
      this.onError(`Could not read ${file.name} as an image: ${error.message}`);
      return;
    }
    this.drawPicture(bitmap, bitmap.width, bitmap.height);
    bitmap.close();
  }

  // The picture as the input's values (input_values.js).
  values() {
    const { width, height } = this.canvas;
    return inputValues(this.context.getImageData(0, 0, width, height).data, this.input);
  }
}
