// The view state in URLs, so a link reopens the same view.
//
// TensorBoard owns the top window's hash ("#activations") and loads this tab into an iframe
// whose own URL it builds itself, so a link must carry the state in the top window's hash.
// TensorBoard's hash format is `#<tab>&key=value&...` with plugin keys namespaced
// `p.<plugin>.<key>` (as the What-If tool does); TensorBoard keeps keys it does not know.
// The iframe's own hash is written too, for a tab opened on its own.

const PREFIX = "p.activations.";
const TAB = "activations";

const FIELDS = {
  run: "string",
  layer: "string",
  input: "string",
  sample: "int",
  step: "int",
  channel: "int",
  compare: "int",
  cmap: "string",
  scale: "string",
  lo: "number",
  hi: "number",
  live: "flag",
  overview: "flag",
  heat: "string",
  order: "string",
};

// TensorBoard parses its hash with decodeURIComponent per `key=value` part, so values are
// written with encodeURIComponent (URLSearchParams would write spaces as "+").
function parseHash(hash) {
  const parts = hash.replace(/^#/, "").split("&").filter(Boolean);
  const pairs = [];
  for (const part of parts) {
    const pieces = part.split("=");
    try {
      pairs.push(pieces.length === 2
        ? [decodeURIComponent(pieces[0]), decodeURIComponent(pieces[1])]
        : [null, decodeURIComponent(part)]);
    } catch {
      // A malformed escape in a hand-edited URL: ignore that part.
    }
  }
  return pairs;
}

function convert(kind, text) {
  if (kind === "string") return text;
  if (kind === "flag") return text === "1" ? true : undefined;
  const value = Number(text);
  if (text === "" || !Number.isFinite(value)) return undefined;
  return kind === "int" ? Math.trunc(value) : value;
}

function fromPairs(pairs, prefix) {
  const state = {};
  for (const [key, text] of pairs) {
    if (key === null || !key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length);
    if (!(name in FIELDS)) continue;
    const value = convert(FIELDS[name], text);
    if (value !== undefined) state[name] = value;
  }
  return state;
}

function toParts(state, prefix) {
  const parts = [];
  for (const name of Object.keys(FIELDS)) {
    const value = state[name];
    if (value === null || value === undefined || value === "" || value === false) continue;
    const text = value === true ? "1" : String(value);
    parts.push(`${encodeURIComponent(prefix + name)}=${encodeURIComponent(text)}`);
  }
  return parts;
}

function parentWindow() {
  try {
    if (window.parent !== window && window.parent.location.hash !== undefined) return window.parent;
  } catch {
    // Not same-origin: only the iframe's own URL is ours.
  }
  return null;
}

// State from the top window's hash if it holds any of ours, else from the iframe's hash.
export function readState() {
  const parent = parentWindow();
  if (parent) {
    const state = fromPairs(parseHash(parent.location.hash), PREFIX);
    if (Object.keys(state).length) return state;
  }
  return fromPairs(parseHash(window.location.hash), "");
}

export function writeState(state) {
  // Absolute URLs: a bare "#..." would resolve against the iframe's <base>, not its address.
  const own = new URL(window.location.href);
  own.hash = toParts(state, "").join("&");
  if (own.href !== window.location.href) history.replaceState(history.state, "", own.href);
  const parent = parentWindow();
  if (!parent) return;
  const pairs = parseHash(parent.location.hash);
  const tab = pairs.find(([key]) => key === null);
  // Only while our tab is the one shown: another tab's hash is not ours to change.
  if (!tab || tab[1] !== TAB) return;
  const kept = parent.location.hash.replace(/^#/, "").split("&").filter((part) => {
    const key = part.split("=")[0];
    try {
      return part && !decodeURIComponent(key).startsWith(PREFIX);
    } catch {
      return true;
    }
  });
  const target = new URL(parent.location.href);
  target.hash = kept.concat(toParts(state, PREFIX)).join("&");
  if (target.href !== parent.location.href) {
    // replaceState fires no hashchange, so TensorBoard does not re-route.
    parent.history.replaceState(parent.history.state, "", target.href);
  }
}
