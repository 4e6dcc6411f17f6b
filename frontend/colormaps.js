// Colour maps as 256-entry lookup tables, from 33 stops of matplotlib's maps
// (linear interpolation between stops is visually exact for these smooth maps).

const STOPS = {
  gray: ["000000", "ffffff"],
  viridis: ("440154 470d60 48186a 482374 472d7b 453781 424086 3e4989 3b528b 375b8d 33638d " +
    "2f6b8e 2c728e 297a8e 26828e 23898e 21918c 1f988b 1fa088 22a785 28ae80 32b67a 3fbc73 " +
    "4ec36b 5ec962 70cf57 84d44b 98d83e addc30 c2df23 d8e219 ece51b fde725").split(" "),
  magma: ("000004 030312 0a0822 130d34 1d1147 29115a 36106b 440f76 51127c 5d177f 6a1c81 " +
    "762181 832681 902a81 9c2e7f aa337d b73779 c43c75 d0416f dc4869 e75263 ef5d5e f56b5c " +
    "f9795d fc8961 fd9869 fea772 feb67c fec488 fed395 fde2a3 fcf0b2 fcfdbf").split(" "),
  // RdBu reversed: blue below zero, white at zero, red above.
  diverging: ("053061 0e4179 175290 1f63a8 2a71b2 3480b9 3f8ec0 529dc8 6bacd1 84bcd9 9bc9e0 " +
    "aed3e6 c2ddec d4e6f1 e0ecf3 ecf2f5 f7f6f6 f9eee7 fbe5d8 fddcc9 fbccb4 f8bb9e f5aa89 " +
    "ee9677 e48066 db6b55 d05548 c53e3d ba2832 ab162a 930e26 7c0722 67001f").split(" "),
  // OrRd: the overview's heat map (cream for none, dark red for all); not offered for grids.
  heat: "fff7ec fee8c8 fdd49e fdbb84 fc8d59 ef6548 d7301f b30000 7f0000".split(" "),
};

export const COLORMAPS = [
  { name: "viridis", label: "viridis" },
  { name: "magma", label: "magma" },
  { name: "gray", label: "gray" },
  { name: "diverging", label: "diverging ±" },
];

// NaN/Inf get a colour that no map uses: magenta, or lime where magenta would blend in.
const NONFINITE = { gray: "ff00ff", viridis: "ff00ff", magma: "00ff00", diverging: "00ff00", heat: "00ff00" };

function rgb(hex) {
  return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

// Canvas ImageData is RGBA bytes; packed into one little-endian uint32 per pixel.
function pack([r, g, b], a = 255) {
  return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

function buildTable(stops) {
  const colours = stops.map(rgb);
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    const position = (i / 255) * (colours.length - 1);
    const low = Math.min(Math.floor(position), colours.length - 2);
    const f = position - low;
    table[i] = pack(colours[low].map((c, k) => Math.round(c + f * (colours[low + 1][k] - c))));
  }
  return table;
}

const tables = new Map();

export function isDiverging(name) {
  return name === "diverging";
}

// {table: Uint32Array(256) packed RGBA, nonfinite: packed RGBA, nonfiniteCss: "#rrggbb"}.
export function colormap(name) {
  const key = name in STOPS ? name : "viridis";
  if (!tables.has(key)) {
    tables.set(key, {
      name: key,
      table: buildTable(STOPS[key]),
      nonfinite: pack(rgb(NONFINITE[key])),
      nonfiniteCss: "#" + NONFINITE[key],
    });
  }
  return tables.get(key);
}

export const TRANSPARENT = 0;
