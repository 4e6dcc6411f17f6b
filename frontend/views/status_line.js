// The line under the grid: how many channels are silent or dead, and what the pointer is
// over.

import { el } from "../dom.js";

export class StatusLine {
  constructor() {
    this.element = el("div", { class: "status", role: "status" });
  }

  setText(text) {
    this.element.textContent = text;
  }

  // The silent and dead channels of the current frame (frames: frames.js), counted by the
  // server over every channel; an attention layer's dead heads (channel_flags.js).
  showSummary(frame) {
    if (frame.geometry.layout.unit === "head") {
      const dead = frame.heads?.dead.filter((flag) => flag === true).length;
      const heads = frame.heads ? `${dead} of ${frame.layer.channels_total} heads dead at this step. ` : "";
      this.setText(`${heads}Hover a head's row for that query's attention, click a head to pick it.`);
      return;
    }
    const channels = frame.geometry.layout.tiled ? frame.layer.channels_total : 0;
    const units = `${frame.geometry.layout.unit}s`;
    const silent = frame.stats.samples[frame.sample].silent_channels;
    const dead = frame.stats.dead_channels;
    let text = "";
    if (channels && frame.source === "live") text = `${silent} of ${channels} ${units} silent for this input. `;
    else if (channels) text = `${silent} of ${channels} ${units} silent in this sample · ${dead} dead in every sample. `;
    this.setText(`${text}Hover the grid for values, click to look closer.`);
  }
}
