// The model's layers as a collapsible tree of nested paths (`backbone/block_1/conv`), with a
// name filter, a layer-type filter, and a note per layer on what the grid shows (its sparsity
// and dead or silent channels; overview_values.js layerNote).

import { clear, el, option } from "../dom.js";
import { layoutOf, shownName } from "../layouts.js";

export function shapeText(shape) {
  return (shape || []).slice(1).map((d) => (d === null ? "?" : d)).join("×") || "scalar";
}

function buildTree(layers) {
  const root = { name: "", path: "", children: new Map(), layer: null };
  for (const layer of layers) {
    const parts = layer.layer.split("/");
    let node = root;
    parts.forEach((part, i) => {
      const path = parts.slice(0, i + 1).join("/");
      if (!node.children.has(part)) node.children.set(part, { name: part, path, children: new Map(), layer: null });
      node = node.children.get(part);
    });
    node.layer = layer;
  }
  return root;
}

function countLayers(node) {
  let count = node.layer ? 1 : 0;
  for (const child of node.children.values()) count += countLayers(child);
  return count;
}

export class LayerList {
  constructor({ onSelect }) {
    this.onSelect = onSelect;
    this.layers = [];
    this.notes = new Map();
    this.selected = null;
    this.collapsed = new Set();
    this.filterInput = el("input", {
      type: "search",
      class: "layer-filter",
      placeholder: "Filter by name…",
      "aria-label": "Filter layers by name",
      on: { input: () => this.render() },
    });
    this.classSelect = el("select", {
      class: "class-filter",
      "aria-label": "Filter layers by type",
      on: { change: () => this.render() },
    });
    this.count = el("div", { class: "layer-count" });
    this.tree = el("div", { class: "layer-tree", role: "tree", tabindex: "0", "aria-label": "Layers (↑/↓ to move)" });
    this.element = el("section", { class: "layer-list" },
      el("div", { class: "section-title" }, "Layers", this.count),
      el("div", { class: "layer-filters" }, this.filterInput, this.classSelect),
      this.tree);
  }

  setLayers(layers) {
    this.layers = layers;
    const current = this.classSelect.value;
    const classes = [...new Set(layers.map((layer) => layer.layer_class))].sort();
    clear(this.classSelect).append(option("", "All types"),
      ...classes.map((name) => option(name, name, name === current)));
    this.render();
  }

  // notes: Map path -> {text, title, alert} (layers without one get none).
  setNotes(notes) {
    this.notes = notes;
    for (const row of this.tree.querySelectorAll(".layer-row")) this.#showNote(row);
  }

  #showNote(row) {
    const note = this.notes.get(row.layerEntry.layer);
    row.note.textContent = note?.text ?? "";
    row.note.title = note?.title ?? "";
    row.note.classList.toggle("alert", Boolean(note?.alert));
  }

  matches(layer) {
    const text = this.filterInput.value.trim().toLowerCase();
    const type = this.classSelect.value;
    return (!text || layer.layer.toLowerCase().includes(text) || shownName(layer).includes(text))
      && (!type || layer.layer_class === type);
  }

  filtering() {
    return Boolean(this.filterInput.value.trim() || this.classSelect.value);
  }

  // Layers in display order that are shown now (filtered, not inside a collapsed group).
  visibleLayers() {
    return [...this.tree.querySelectorAll(".layer-row")].map((row) => row.layerEntry);
  }

  select(path, notify = false) {
    this.selected = path;
    for (const row of this.tree.querySelectorAll(".layer-row")) {
      const on = row.layerEntry.layer === path;
      row.classList.toggle("selected", on);
      row.setAttribute("aria-selected", String(on));
      if (on) row.scrollIntoView({ block: "nearest" });
    }
    if (notify) this.onSelect(path);
  }

  move(delta) {
    const visible = this.visibleLayers();
    if (!visible.length) return;
    const index = visible.findIndex((layer) => layer.layer === this.selected);
    const next = index < 0 ? 0 : Math.min(visible.length - 1, Math.max(0, index + delta));
    if (visible[next].layer !== this.selected) this.select(visible[next].layer, true);
  }

  render() {
    const scroll = this.tree.scrollTop;
    clear(this.tree);
    const shown = this.layers.filter((layer) => this.matches(layer));
    this.count.textContent = this.filtering() ? `${shown.length} of ${this.layers.length}` : String(this.layers.length);
    if (!shown.length) {
      this.tree.append(el("div", { class: "empty-note" }, this.layers.length ? "No layer matches the filter." : "No layers."));
      return;
    }
    this.#renderChildren(buildTree(shown), 0);
    this.tree.scrollTop = scroll;
    this.select(this.selected);
  }

  #renderChildren(node, depth) {
    for (const child of node.children.values()) {
      if (child.layer) this.tree.append(this.#layerRow(child.layer, child.name, depth));
      if (child.children.size) {
        const open = this.filtering() || !this.collapsed.has(child.path);
        if (!child.layer) this.tree.append(this.#groupRow(child, depth, open));
        if (open) this.#renderChildren(child, depth + 1);
      }
    }
  }

  #groupRow(node, depth, open) {
    const row = el("div", {
      class: "group-row",
      role: "treeitem",
      "aria-expanded": String(open),
      title: node.path,
      on: {
        click: () => {
          if (this.collapsed.has(node.path)) this.collapsed.delete(node.path);
          else this.collapsed.add(node.path);
          this.render();
        },
      },
    }, el("span", { class: "twisty", text: open ? "▾" : "▸" }),
    el("span", { class: "layer-name", text: node.name }),
    el("span", { class: "layer-meta", text: `${countLayers(node)} layers` }));
    row.style.setProperty("--depth", depth);
    return row;
  }

  #layerRow(layer, name, depth) {
    const drawn = layoutOf(layer).tiled && layer.channels_shown < layer.channels_total
      ? `, ${layer.channels_shown} of ${layer.channels_total} channels drawn` : "";
    const row = el("div", {
      class: "layer-row",
      role: "treeitem",
      title: `${layer.layer}\n${layer.layer_class}, output ${shapeText(layer.output_shape)}${drawn}`,
      on: { click: () => this.select(layer.layer, true) },
    }, el("span", { class: "layer-name", text: shownName(layer, name) }),
    el("span", { class: "layer-class", text: layer.layer_class }),
    el("span", { class: "layer-shape", text: shapeText(layer.output_shape) }));
    row.note = el("span", { class: "layer-note" });
    row.append(row.note);
    row.layerEntry = layer;
    row.style.setProperty("--depth", depth);
    this.#showNote(row);
    return row;
  }
}
