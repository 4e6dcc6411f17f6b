// The line under the grid: how many channels are dead, what the pointer is over, progress.

import { channelStats, flags } from "../channel_flags.js";
import { el } from "../dom.js";

export class StatusLine {
  constructor() {
    this.element = el("div", { class: "status", role: "status" });
  }

  setText(text) {
    this.element.textContent = text;
  }

  // The dead channels of the current frame (frames: frames.js).
  showSummary(frame) {
    const layer = frame.layer;
    const channels = frame.geometry.layout.tiled ? layer.channels_total : 0;
    let dead = 0;
    for (let c = 0; c < channels; c++) if (flags(channelStats(frame.stats, frame.sample, c)).dead) dead++;
    const text = channels ? `${dead} of ${channels} channels dead in this ${frame.source === "live" ? "input" : "sample"}. ` : "";
    this.setText(`${text}Hover the grid for values, click to look closer.`);
  }
}
