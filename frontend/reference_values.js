// What a run's reference steps say about its units (./reference, ./reference_inputs:
// docs/http_api.md) and where their pictures are. Pure: views/top_inputs.js and
// views/selectivity_map.js draw what these answer.

// The reference step shown with probe step `step`: the nearest one (the earlier of two as
// near), since the two kinds of steps are logged on their own schedules (the last probe step of
// an epoch comes before the reference pass at its end).
export function referenceStepFor(steps, step) {
  if (!steps.length) return null;
  let chosen = steps[0];
  for (const candidate of steps) if (step !== null && Math.abs(candidate - step) < Math.abs(chosen - step)) chosen = candidate;
  return chosen;
}

// Where reference input `index` is in the thumbnail atlas: {page, x, y, width, height} in the
// page's pixels (thumbnails row-major, page_columns to a row, per_page to a page).
export function thumbnailAt(inputs, index) {
  const page = Math.floor(index / inputs.per_page);
  const within = index % inputs.per_page;
  return {
    page,
    x: (within % inputs.page_columns) * inputs.thumb_width,
    y: Math.floor(within / inputs.page_columns) * inputs.thumb_height,
    width: inputs.thumb_width,
    height: inputs.thumb_height,
  };
}

function clippedSpan(centre, size, limit) {
  const start = Math.max(0, Math.min(limit, centre - size / 2));
  const end = Math.max(0, Math.min(limit, centre + size / 2));
  if (end > start) return [start, end];
  const pixel = Math.max(0, Math.min(limit - 1, Math.floor(centre))); // a box off the input: its nearest pixel
  return [pixel, pixel + 1];
}

// The box of the input a map cell at `position` ([row, column]) sees, in thumbnail pixels
// {x, y, width, height}, plus the cell's own stride box at its centre ({mark}); null when the
// layer has no spatial receptive field (sequences, vectors, unknown).
export function receptiveBox(field, position, inputs) {
  if (!field || !Array.isArray(position) || position.length !== 2) return null;
  const scaleY = inputs.thumb_height / inputs.input_height;
  const scaleX = inputs.thumb_width / inputs.input_width;
  // The field's centres are pixel indices (pixel i spans [i, i + 1), its centre is i + 0.5).
  const centreY = field.offset[0] + position[0] * field.stride[0] + 0.5;
  const centreX = field.offset[1] + position[1] * field.stride[1] + 0.5;
  const [top, bottom] = clippedSpan(centreY, field.size[0], inputs.input_height);
  const [left, right] = clippedSpan(centreX, field.size[1], inputs.input_width);
  const [markTop, markBottom] = clippedSpan(centreY, Math.max(1, field.stride[0]), inputs.input_height);
  const [markLeft, markRight] = clippedSpan(centreX, Math.max(1, field.stride[1]), inputs.input_width);
  return {
    x: left * scaleX, y: top * scaleY, width: (right - left) * scaleX, height: (bottom - top) * scaleY,
    mark: {
      x: markLeft * scaleX, y: markTop * scaleY,
      width: (markRight - markLeft) * scaleX, height: (markBottom - markTop) * scaleY,
    },
  };
}

// The name of class `id`: its class name where the run stored one, else the id.
export function className(inputs, id) {
  const names = inputs?.class_names;
  return Array.isArray(names) && typeof names[id] === "string" ? names[id] : String(id);
}

// What unit `channel` of a reference step answer does: {kept, row, dead, selectivity,
// preferred, top: [{index, value, position}]}; kept false when the step kept other units.
export function unitAt(answer, channel) {
  const row = answer.units.indexOf(channel);
  if (row < 0) return { kept: false, row };
  return {
    kept: true,
    row,
    dead: answer.dead[row] === true,
    zeroFraction: answer.zero_fraction[row],
    selectivity: answer.selectivity ? answer.selectivity[row] : null,
    preferred: answer.preferred ? answer.preferred[row] : null,
    top: answer.top_index[row].map((index, i) => ({
      index, value: answer.top_value[row][i], position: answer.top_position[row][i],
    })),
  };
}

// A class selectivity index as the tab and export write it: two decimals.
export function selectivityText(value) {
  return value === null || value === undefined || !Number.isFinite(value) ? "undefined" : value.toFixed(2);
}

// "responds most to: 7 (selectivity 0.83)", "dead on the reference set", or why neither
// (exporting/montage.py responds_text says the same).
export function respondsText(unit, inputs) {
  if (!unit.kept) return "not among the units kept on the reference set";
  if (unit.dead) return "dead on the reference set: zero on every reference input";
  if (unit.preferred === null) return "no labels with the reference set: no preferred class";
  return `responds most to: ${className(inputs, unit.preferred)} (selectivity ${selectivityText(unit.selectivity)})`;
}

// The order tiles are drawn in, by a reference step's numbers: `units` (every drawn channel)
// sorted by selectivity (most selective first) or by preferred class (then by selectivity);
// units without a number last, in their own order.
export const TILE_ORDERS = [
  { name: "unit", label: "unit index" },
  { name: "selectivity", label: "selectivity" },
  { name: "class", label: "preferred class" },
];

export function tileOrder(order, channels, answer) {
  if (order === "unit" || !answer?.selectivity) return null;
  const known = new Map(answer.units.map((unit, row) => [unit, row]));
  const key = (channel) => {
    const row = known.get(channel);
    const selectivity = row === undefined ? null : answer.selectivity[row];
    const preferred = row === undefined || answer.dead[row] ? null : answer.preferred[row];
    return { selectivity: selectivity ?? -Infinity, preferred: preferred ?? Infinity, missing: row === undefined };
  };
  const keyed = channels.map((channel, position) => ({ channel, position, ...key(channel) }));
  keyed.sort((a, b) => (a.missing - b.missing)
    || (order === "class" ? a.preferred - b.preferred : 0)
    || (b.selectivity - a.selectivity)
    || (a.position - b.position));
  return keyed.map((entry) => entry.position);
}
