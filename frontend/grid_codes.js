// A grid PNG back to its stored codes (one gray byte per pixel), in the page or in a worker
// (frame_worker.js): both have createImageBitmap and OffscreenCanvas.

// One canvas reads every grid out (a new canvas and context per grid cost the prefetcher's
// windows more time than the pixels); "copy" replaces what the last one left.
let decoder = null;

// createImageBitmap with colour conversion and premultiplying off keeps every gray value
// exact, which the codes need.
export async function decodeGray(blob) {
  const bitmap = await createImageBitmap(blob, {
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  const { width, height } = bitmap;
  if (!decoder) {
    decoder = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
  }
  const context = decoder;
  if (context.canvas.width !== width || context.canvas.height !== height) {
    [context.canvas.width, context.canvas.height] = [width, height];
  }
  context.globalCompositeOperation = "copy";
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;
  const codes = new Uint8Array(width * height);
  for (let i = 0; i < codes.length; i++) codes[i] = rgba[i * 4];
  return { width, height, codes };
}

// A grid sent inline (./frames, the live answer) as base64 PNG: the same codes as ./grid.
// A plain loop: Uint8Array.from with a mapping function costs many times more.
export function decodeGridBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return decodeGray(new Blob([bytes], { type: "image/png" }));
}
