// The line under the grid: how many channels are silent or dead, and what the pointer is
// over.

import { channelFlags } from "../channel_flags.js";
import { el } from "../dom.js";

export class StatusLine {
  constructor() {
    this.element = el("div", { class: "status", role: "status" });
  }

  setText(text) {
    this.element.textContent = text;
  }

  // The silent and dead channels of the current frame (frames: frames.js).
  showSummary(frame) {
    const layer = frame.layer;
    const channels = frame.geometry.layout.tiled ? layer.channels_total : 0;
    let silent = 0;
    let dead = 0;
    for (let c = 0; c < channels; c++) {
      const f = channelFlags(frame, c);
      if (f.silent) silent++;
      if (f.dead) dead++;
    }
    let text = "";
    if (channels && frame.source === "live") text = `${silent} of ${channels} channels silent for this input. `;
    else if (channels) text = `${silent} of ${channels} channels silent in this sample · ${dead} dead in every sample. `;
    this.setText(`${text}Hover the grid for values, click to look closer.`);
  }
}
