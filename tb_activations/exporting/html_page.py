"""The export's one-file HTML page: every picture inlined as a data: URI, no network.

The page is written as the run is read: pictures go into a hidden pool as they come (step
by step), each tagged with numbers only; the manifest (runs, layers in model order, steps,
probe inputs) follows at the end, and a small script lays the pictures out by layer for the
chosen run, step and sample. User text (run, layer and input names) travels only in the
manifest, as JSON escaped for a script element, and is put on the page as text nodes.
"""

import base64
import html
import json

_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Activations</title>
<style>
body { font: 14px/1.4 Roboto, Arial, sans-serif; color: #202124; margin: 0; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #dadce0;
  padding: 8px 16px; z-index: 1; }
h1 { font-size: 18px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 16px 16px 0; overflow-wrap: anywhere; }
.controls { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
.probes { display: flex; gap: 8px; margin-top: 6px; flex-wrap: wrap; }
.probes figure { margin: 0; cursor: pointer; text-align: center; font-size: 12px; }
.probes figure.chosen img { outline: 2px solid #1a73e8; }
.probes img { width: 56px; height: 56px; object-fit: contain; image-rendering: pixelated;
  background: #000; }
.muted { color: #5f6368; }
section.layer { margin: 12px 16px; padding-bottom: 12px; border-bottom: 1px solid #eee; }
section.layer h3 { font-size: 15px; margin: 0; overflow-wrap: anywhere; }
.grid img { image-rendering: pixelated; display: block; margin: 6px 0; }
.bar { display: flex; align-items: center; gap: 12px; font-size: 12px; }
.bar .scale { width: 256px; }
.bar .gradient { width: 256px; height: 12px; image-rendering: pixelated; display: block; }
.bar .ticks { display: flex; justify-content: space-between; }
details.reference { margin-top: 8px; }
details.reference summary { cursor: pointer; }
.montages { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 6px; }
.montages figure { margin: 0; font-size: 12px; max-width: 640px; }
.montages img { display: block; }
.overlay img { display: block; margin: 6px 0; max-width: 100%; }
table.heads { border-collapse: collapse; font-size: 12px; margin-top: 6px; }
table.heads th, table.heads td { padding: 2px 8px; text-align: right;
  border-bottom: 1px solid #eee; }
table.heads tr.dead td { color: #b3261e; }
.swatch { display: inline-block; width: 12px; height: 12px; vertical-align: middle;
  margin-right: 4px; }
</style></head>
<body>
<header>
<h1>Activations</h1>
<div class="controls">
<label>Run <select id="run"></select></label>
<label>Step <input id="step" type="range" min="0" max="0" value="0">
<output id="step-value"></output></label>
<label>Sample <select id="sample"></select></label>
<span id="about" class="muted"></span>
</div>
<div id="probes" class="probes"></div>
</header>
<h2 id="run-name"></h2>
<main id="layers"></main>
<div id="pictures" hidden>
"""

_SCRIPT = """<script>
"use strict";
const manifest = JSON.parse(document.getElementById("manifest").textContent);
const grids = new Map();
const probes = new Map();
const montages = new Map();
const references = new Map(manifest.references.map(([run, layer, info]) => [run + "/" + layer, info]));
const overlays = new Map();
const heads = new Map(manifest.heads.map(
  ([run, layer, step, numbers]) => [[run, layer, step].join("/"), numbers]));
for (const img of document.querySelectorAll("#pictures img")) {
  const d = img.dataset;
  if (d.kind === "grid") grids.set([d.run, d.layer, d.step, d.sample].join("/"), img);
  else if (d.kind === "montage") montages.set([d.run, d.layer, d.unit].join("/"), img);
  else if (d.kind === "overlay") overlays.set([d.run, d.layer, d.step, d.sample].join("/"), img);
  else probes.set([d.run, d.probe, d.sample].join("/"), img);
}
const $ = (id) => document.getElementById(id);
function el(tag, className, ...children) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  element.append(...children);
  return element;
}
let views = [];
function run() { return manifest.runs[Number($("run").value)]; }
// A number as the tab prints it (4 significant digits), "–" where there is none.
function number(value) {
  return typeof value === "number" ? String(Number(value.toPrecision(4))) : "–";
}
// An attention layer's per-head numbers at one step, for one probe sample (docs/format.md,
// Overview blob): entropy (and its share of uniform), largest probability, mean distance, dead.
function headsTable(numbers, sample) {
  if (!numbers) return "";
  const row = (name) => (numbers[name] || [])[Number(sample)] || [];
  const [entropy, peak, distance] = ["entropy", "peak", "distance"].map(row);
  const uniform = Math.log(numbers.keys);
  const head = el("tr", "", ...["head", "entropy (nats)", "of uniform", "largest probability",
    "mean distance (patches)", "dead"].map((text) => el("th", "", text)));
  const rows = numbers.dead.map((dead, h) => {
    const cells = [String(h), number(entropy[h]),
      typeof entropy[h] === "number" && uniform > 0
        ? Math.round(100 * entropy[h] / uniform) + "%" : "–",
      number(peak[h]), number(distance[h]), dead ? "dead" : ""];
    return el("tr", dead ? "dead" : "", ...cells.map((text) => el("td", "", text)));
  });
  return el("details", "", el("summary", "", "Per-head numbers, sample " + sample + " (" +
    numbers.dead.filter(Boolean).length + " of " + numbers.dead.length + " heads dead: uniform " +
    "attention, or all on one token, in every probe sample)"), el("table", "heads", head, ...rows));
}
function showStep() {
  const current = run();
  const step = current.steps[Number($("step").value)];
  const sample = $("sample").value;
  $("step-value").textContent = current.step_labels[Number($("step").value)];
  for (const view of views) {
    const img = grids.get([$("run").value, view.index, step, sample].join("/"));
    const key = [$("run").value, view.index, step].join("/");
    const over = overlays.get(key + "/" + sample);
    view.overlay.replaceChildren(...(over ? [Object.assign(over.cloneNode(), { id: "",
      alt: view.layer.layer + " over the probe picture, step " + step + ", sample " + sample })]
      : []));
    view.heads.replaceChildren(headsTable(heads.get(key), sample));
    if (!img) {
      view.grid.replaceChildren(el("p", "muted", "not logged at step " + step));
      view.ticks.replaceChildren();
      continue;
    }
    const copy = img.cloneNode();
    copy.removeAttribute("id");
    copy.width = view.layer.width;
    copy.height = view.layer.height;
    copy.alt = view.layer.layer + ", step " + step + ", sample " + sample;
    view.grid.replaceChildren(copy);
    const labels = JSON.parse(img.dataset.labels);
    view.ticks.replaceChildren(...labels.map((text) => el("span", "", text)));
  }
  for (const figure of document.querySelectorAll("#probes figure")) {
    figure.classList.toggle("chosen", figure.dataset.sample === sample);
  }
}
// A layer's top inputs on the reference set: a montage per kept unit at its last reference
// step, each under what the unit responds to.
function referenceSection(run, layer) {
  const info = references.get(run + "/" + layer);
  if (!info) return "";
  const figures = info.units.map((unit) => {
    const img = montages.get([run, layer, unit.unit].join("/"));
    if (!img) return "";
    const copy = img.cloneNode();
    copy.removeAttribute("id");
    copy.alt = "unit " + unit.unit + ": " + unit.text;
    return el("figure", "", copy);
  });
  return el("details", "reference",
    el("summary", "", "Top inputs on the reference set at step " + info.step + " (" + info.units.length + " units)"),
    el("div", "montages", ...figures));
}
function showRun() {
  const current = run();
  const index = $("run").value;
  $("run-name").textContent = current.run;
  $("step").max = String(Math.max(0, current.steps.length - 1));
  $("step").value = $("step").max;
  $("sample").replaceChildren(...current.samples.map((s) => new Option("sample " + s, String(s))));
  $("probes").replaceChildren();
  current.probes.forEach((probe, p) => current.samples.forEach((s) => {
    const img = probes.get([index, p, s].join("/"));
    if (!img) return;
    const copy = img.cloneNode();
    copy.removeAttribute("id");
    copy.alt = probe.input + ", sample " + s;
    const figure = el("figure", "", copy, el("figcaption", "", probe.input + " · " + s));
    figure.dataset.sample = String(s);
    figure.addEventListener("click", () => { $("sample").value = String(s); showStep(); });
    $("probes").append(figure);
  }));
  views = current.layers.map((layer, i) => {
    const gradient = el("img", "gradient");
    gradient.src = manifest.gradient;
    gradient.alt = "colour map " + manifest.cmap;
    const swatch = el("span", "swatch");
    swatch.style.background = manifest.nonfinite;
    const view = { layer, index: layer.index, grid: el("div", "grid"), ticks: el("div", "ticks"),
      overlay: el("div", "overlay"), heads: el("div", "") };
    const title = el("h3", "", layer.layer);
    title.title = layer.path;
    $("layers").append(el("section", "layer",
      title,
      el("div", "muted", layer.layer_class + " · output " + layer.output_shape),
      view.grid,
      el("div", "bar", el("div", "scale", gradient, view.ticks),
        el("span", "", swatch, "NaN/Inf"), el("span", "muted", manifest.note)),
      view.overlay, view.heads,
      referenceSection(index, layer.index)));
    return view;
  });
  showStep();
}
manifest.runs.forEach((r, i) => $("run").append(new Option(r.run, String(i))));
$("about").textContent = manifest.about;
$("run").addEventListener("change", () => { $("layers").replaceChildren(); showRun(); });
$("step").addEventListener("input", showStep);
$("sample").addEventListener("change", showStep);
showRun();
</script>
</body></html>
"""


def _data_uri(png):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def script_json(value):
    """JSON that can stand inside a <script> element whatever strings it holds."""
    text = json.dumps(value, ensure_ascii=False)
    for character, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                              ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(character, escape)
    return text


class HtmlPage:
    """activations.html, written as pictures arrive; `file` is an open text file."""

    def __init__(self, file):
        self._file = file
        self._count = 0
        self._references = []
        self._heads = []
        file.write(_HEAD)

    def _picture(self, png, **numbers):
        attributes = "".join(' data-%s="%s"' % (key, html.escape(str(value), quote=True))
                             for key, value in numbers.items())
        self._file.write('<img id="p%d"%s src="%s" alt="">\n'
                         % (self._count, attributes, _data_uri(png)))
        self._count += 1

    def add_grid(self, png, run, layer, step, sample, labels):
        """A coloured grid (PNG) of layer number `layer` of run number `run`; `labels` are
        its colour bar's texts."""
        self._picture(png, kind="grid", run=run, layer=layer, step=step, sample=sample,
                      labels=json.dumps(labels))

    def add_overlay(self, png, run, layer, step, sample):
        """A figure of layer number `layer`'s tiles over the probe picture (overlays.py)."""
        self._picture(png, kind="overlay", run=run, layer=layer, step=step, sample=sample)

    def add_heads(self, run, layer, step, heads):
        """An attention layer's per-head numbers at `step` (the overview's checked `heads`
        field; numbers only, in the manifest)."""
        self._heads.append([run, layer, step, heads])

    def add_probe(self, png, run, probe, sample):
        self._picture(png, kind="probe", run=run, probe=probe, sample=sample)

    def add_montage(self, png, run, layer, unit):
        """The montage of a unit's top inputs on the reference set (exporting/montage.py)."""
        self._picture(png, kind="montage", run=run, layer=layer, unit=unit)

    def add_reference(self, run, layer, step, units):
        """What the montages of a layer show: their reference step and, per unit, {"unit",
        "text"} (what it responds to; text from the event files, so in the manifest)."""
        self._references.append([run, layer, {"step": step, "units": units}])

    def close(self, manifest, gradient_png):
        """Ends the page. manifest: {"runs": [{"run", "steps", "step_labels", "samples", "probes":
        [{"input"}], "layers": [{"index", "layer" (its shown name), "path", "layer_class",
        "output_shape", "width", "height"}]}], "cmap", "note", "nonfinite", "about"}."""
        manifest = dict(manifest, gradient=_data_uri(gradient_png), references=self._references,
                        heads=self._heads)
        self._file.write('</div>\n<script type="application/json" id="manifest">%s</script>\n'
                         % script_json(manifest))
        self._file.write(_SCRIPT)
