// A frame (frames.js) with its tiles drawn in another order: the layer view sorted by what the
// reference set says of each unit (reference_values.js tileOrder). Only one-tile-per-channel
// grids ("channels" layout) are reordered; everything that finds a channel's tile goes through
// stats.channels, so permuting it with the pixels keeps every lookup right.

// `frame` with tile i showing what tile order[i] showed; the frame itself when the layout has
// no tile per channel or nothing moves.
export function reorderedFrame(frame, order) {
  const { geometry, grid, stats } = frame;
  if (!order || geometry.layout.name !== "channels" || order.every((from, to) => from === to)) return frame;
  const codes = new Uint8Array(grid.codes);
  const values = new Float32Array(frame.values);
  const width = grid.width;
  order.forEach((from, to) => {
    const source = geometry.tileRect(from);
    const target = geometry.tileRect(to);
    for (let y = 0; y < source.height; y++) {
      const start = (source.y + y) * width + source.x;
      const at = (target.y + y) * width + target.x;
      codes.set(grid.codes.subarray(start, start + source.width), at);
      values.set(frame.values.subarray(start, start + source.width), at);
    }
  });
  const permute = (list) => order.map((from) => list[from]);
  const ranges = permute(frame.ranges);
  return {
    ...frame,
    grid: { ...grid, codes },
    values,
    ranges,
    stats: {
      ...stats,
      channels: permute(Array.from(stats.channels)),
      samples: stats.samples.map((sample, index) => (index === frame.sample ? { ...sample, ranges } : sample)),
    },
  };
}
