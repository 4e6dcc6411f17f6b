// A picture (canvas RGBA bytes, 0..255) as one sample of a model input: nested lists of the
// input's shape without the batch axis, with 0..255 mapped onto the value range the model
// was trained on (the probe's, from ./live_info) in the input's dtype.

/**
 * An input of the run's saved model, as ./live_info describes it.
 * @typedef {object} LiveInput
 * @property {string} name
 * @property {number[]} shape  without the batch axis: (h, w) or (h, w, channels)
 * @property {string} dtype  "float32", "uint8", …
 * @property {number|null} low  the probe's smallest value
 * @property {number|null} high  the probe's largest value
 * @property {boolean} [image]  image-like, when the server says (else the shape decides)
 * @property {boolean} [range_known]  false: low and high are assumed from the dtype
 */

const INTEGER_DTYPE = /^u?int\d+$/;
const PICTURE_CHANNELS = [1, 3, 4];
// Seven significant digits are all a float32 holds; fewer bytes to send.
const DIGITS = 7;

// Whether a picture can stand for the input: (h, w) or (h, w, 1|3|4) of known sizes, as
// tb_activations.rendering.grid_images.is_image_like decides for probe pictures.
export function drawable(input) {
  const { shape } = input;
  if (input.image === false || !shape.every((d) => Number.isInteger(d) && d > 0)) return false;
  return shape.length === 2 || (shape.length === 3 && PICTURE_CHANNELS.includes(shape[2]));
}

// 1 (gray, also for (h, w) inputs), 3 (RGB) or 4 (RGBA).
export function pictureChannels(input) {
  return input.shape.length === 3 ? input.shape[2] : 1;
}

// [low, high] that 0..255 maps onto: the probe's range, else what the dtype suggests.
export function valueRange(input) {
  const { low, high } = input;
  if (Number.isFinite(low) && Number.isFinite(high) && high > low) return [low, high];
  return input.dtype === "uint8" ? [0, 255] : [0, 1];
}

// Gray level of a colour (ITU-R BT.601 weights, as most image libraries use).
export function luminance(r, g, b) {
  return Math.round(0.299 * r + 0.587 * g + 0.114 * b);
}

/**
 * @param {Uint8ClampedArray} rgba  width × height pixels, width and height the input's
 * @param {LiveInput} input
 * @returns {Array} nested lists of input.shape
 */
export function inputValues(rgba, input) {
  const [height, width] = input.shape;
  if (rgba.length !== width * height * 4) {
    throw new Error(`a ${width}×${height} picture is needed for input ${input.name}, got ${rgba.length / 4} pixels`);
  }
  const channelAxis = input.shape.length === 3;
  const channels = pictureChannels(input);
  const [low, high] = valueRange(input);
  const integer = INTEGER_DTYPE.test(input.dtype);
  const value = (byte) => {
    const real = low + (byte / 255) * (high - low);
    return integer ? Math.round(real) : Number(real.toPrecision(DIGITS));
  };
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = [];
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      if (channels === 1) {
        const gray = value(luminance(rgba[i], rgba[i + 1], rgba[i + 2]));
        row.push(channelAxis ? [gray] : gray);
      } else {
        row.push(Array.from(rgba.subarray(i, i + channels), value));
      }
    }
    rows.push(row);
  }
  return rows;
}
