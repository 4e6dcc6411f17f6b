// The Activations tab. TensorBoard loads this module into the tab's iframe (whose base URL is
// the plugin's route prefix) and calls render() once.

import { startApp } from "./static/app.js";
import { followTheme } from "./static/theme.js";

function loadStyle(href) {
  return new Promise((resolve) => {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    // An unstyled page still works, so a failed stylesheet does not stop the tab.
    link.addEventListener("load", resolve, { once: true });
    link.addEventListener("error", resolve, { once: true });
    document.head.append(link);
  });
}

export async function render() {
  document.title = "Activations";
  await loadStyle("./static/style.css");
  followTheme();
  await startApp(document.body);
}
