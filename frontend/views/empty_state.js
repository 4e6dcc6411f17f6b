// What the grid area says instead of a grid (model.js "message" events): the two states that
// leave nothing else to show get a page of their own.

import { el } from "../dom.js";

function code(text) {
  return el("code", { text });
}

// {content, kind, empty: the page has nothing but this message}; onReload: try loading again.
export function messageView({ kind, text }, onReload) {
  if (kind === "load-failed") {
    return {
      kind: "error",
      empty: true,
      content: [el("h2", { text: "Could not load the activation runs" }), el("p", { text }),
        el("button", { text: "Try again", on: { click: onReload } })],
    };
  }
  if (kind === "no-runs") {
    return {
      kind: "empty-state",
      empty: true,
      content: [
        el("h2", { text: "No activation data yet" }),
        el("p", {}, "Add ", code("tba.ActivationsCallback(log_dir, probe=x[:4])"), " to the callbacks of ",
          code("model.fit"), ", with ", code("import tb_activations as tba"), ", and point TensorBoard's ",
          code("--logdir"), " at the folder holding that ", code("log_dir"), "."),
        el("p", {}, "Steps appear here while training writes them; this page checks every 30 seconds, or ",
          el("button", { text: "reload now", on: { click: onReload } }), "."),
      ],
    };
  }
  return { kind, empty: false, content: text };
}
