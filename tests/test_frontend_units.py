"""The frontend's pure modules (layouts, geometry, scaling, URL state, channel flags,
difference, input values, overview values, reference values, tile order) run in Debian's Chromium, loaded from frontend/ by a small local
HTTP server: no TensorBoard. The grid geometry is also held against the Python tiler.
"""

import functools
import http.server
import os
import pathlib
import threading

import hypothesis
import numpy as np
import pytest

from tb_activations.exporting import montage
from tb_activations.format import layout as layout_module
from tb_activations.format import metadata
from tb_activations.rendering import grid_images
from tests import browser_helpers as helpers

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(helpers.CHROMIUM), reason="needs Debian's chromium"),
]

FRONTEND = pathlib.Path(__file__).resolve().parent.parent / "frontend"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {".js": "text/javascript", ".html": "text/html", "": "application/octet-stream"}

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def frontend_url():
    handler = functools.partial(_QuietHandler, directory=str(FRONTEND))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def page(frontend_url):
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=helpers.CHROMIUM,
                                             args=helpers.CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(frontend_url + "/style.css")  # any page of that origin: modules import from it
        yield page
        assert errors == []
        browser.close()


def run(page, body, arg=None):
    """Evaluates `body` (an async function body; `m` holds the frontend modules) in the page."""
    return page.evaluate("""async ([body, arg]) => {
        const names = ["layouts", "geometry", "scaling", "url_state", "channel_flags", "difference",
                       "input_values", "overview_values", "head_values", "query_values",
                       "reference_values", "tile_order"];
        const m = {};
        for (const name of names) m[name] = await import(`./${name}.js`);
        return await new Function("m", "arg", `return (async () => { ${body} })();`)(m, arg);
    }""", [body, arg])


def layer(content, name="layer"):
    return dict(content, layer=name, layer_class="Test", samples=1)


def two_tiles(tile_width, channels_total):
    """A channels layer drawn as two 1-pixel-high tiles side by side."""
    return layer({"layout": "channels", "rows": 1, "columns": 2, "tile_height": 1,
                  "tile_width": tile_width, "gutter": 1, "depth_slices": [],
                  "channels_total": channels_total, "channels_shown": 2,
                  "channel_selection": "top", "downscale": [1, 1]})


# --- layouts.js: the one table of layout kinds ---

def test_layouts_table_answers_what_views_ask(page):
    answers = run(page, """
        const layer = {layout: "", channels_shown: 5, channels_total: 9, depth_slices: [0, 3, 6],
                       channel_selection: "top", downscale: [2, 3], columns: 3};
        const out = {};
        for (const [name, kind] of Object.entries(m.layouts.LAYOUTS)) {
            const entry = m.layouts.layoutOf({...layer, layout: name});
            out[name] = [entry.tiled, entry.unit, entry.tiles({...layer, layout: name}),
                         entry.firstTileOfChannel(2, 3), entry.channelIndexOfTile(7, 3),
                         entry.channelSpansRow, entry.overlaysInput, entry.valueOnly,
                         entry.facts({...layer, layout: name}).join(" | ")];
        }
        out.title = m.layouts.unitTitle({...layer, layout: "vector"}, 4);
        try { m.layouts.layoutOf({...layer, layout: "cube", layer: "x"}); out.unknown = null; }
        catch (error) { out.unknown = error.message; }
        return out;
    """)
    assert answers["channels"] == [True, "channel", 5, 2, 7, False, True, False,
                                   "5 of 9 channels drawn (largest mean |activation|)"]
    assert answers["volume"] == [True, "channel", 15, 6, 2, True, False, False,
                                 "5 of 9 channels drawn (largest mean |activation|) | "
                                 "depth slices 0, 3, 6"]
    assert answers["sequence"] == [False, "feature", 1, 0, None, False, False, False,
                                   "time × features"]
    assert answers["vector"] == [False, "unit", 1, 0, None, False, False, True,
                                 "9 units as a block"]
    assert answers["title"] == "Unit 4"
    assert answers["unknown"] == 'unknown grid layout "cube" of layer x'


def test_the_tab_and_export_name_units_alike(page):
    pairs = [(layout, source) for layout in metadata.LAYOUTS for source in layout_module.SOURCES]
    named = run(page, """
        return arg.map(([layout, source]) => m.layouts.layoutOf(
            {layout, source, layer: "x", token_grid: {rows: 2, columns: 2, prefix_tokens: 0}}).unit);
    """, pairs)
    assert named == [layout_module.unit_name(layout, source) for layout, source in pairs]
    assert set(named) == {"channel", "feature", "unit", "head", "map"}


def test_the_tab_and_export_show_records_by_the_same_name(page):
    contents = [{"layer": "Net:attention_rollout", "source": source}
                for source in layout_module.SOURCES] + [{"layer": "blocks/0/attn"}]
    shown = run(page, "return arg.map((layer) => m.layouts.shownName(layer));", contents)
    assert shown == [layout_module.shown_name(content) for content in contents]
    assert shown.count("attention rollout") == 1 and shown[-1] == "blocks/0/attn"


@pytest.mark.parametrize("shape", [(5, 7, 3), (9, 9, 10), (4, 6, 6, 3), (12, 5), (30,), (7,)],
                         ids=lambda shape: "x".join(map(str, shape)))
def test_geometry_finds_every_tile_where_the_python_tiler_put_it(page, shape):
    """The Python↔JavaScript contract: tile t's pixels carry code t in a grid tiled by
    tb_activations.rendering.grid_images; the browser must name tile t for exactly those pixels."""
    plan = layout_module.plan_layout(shape)
    codes = np.broadcast_to(np.arange(plan.tiles, dtype=np.uint8)[None, :, None, None],
                            (1, plan.tiles, plan.tile_height, plan.tile_width))
    grid = grid_images.tile_feature_maps(codes, plan)[0]
    expected = np.where(grid == 255, -1, grid.astype(int))
    found = run(page, """
        const [layer, width, height] = arg;
        const geometry = new m.geometry.Geometry(layer, width, height);
        const channels = Array.from({length: layer.channels_shown}, (_, i) => i);
        const tiles = [];
        for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
            tiles.push(geometry.describe(x, y, channels)?.tile ?? -1);
        }
        return {tiles, count: geometry.tiles};
    """, [layer(plan.to_content()), plan.grid_width, plan.grid_height])
    assert found["count"] == plan.tiles
    assert found["tiles"] == expected.ravel().tolist()


def test_geometry_describes_pixels_of_each_layout(page):
    content = {"rows": 2, "columns": 2, "tile_height": 3, "tile_width": 3, "gutter": 1,
               "depth_slices": [], "channels_total": 4, "channels_shown": 4,
               "channel_selection": "top", "downscale": [1, 1]}
    out = run(page, """
        const [channels, volume, sequence, vector] = arg;
        const g = (l, w, h) => new m.geometry.Geometry(l, w, h);
        const grid = g(channels, 7, 7);
        const cube = g(volume, 7, 7);
        const seq = g(sequence, 4, 6);
        const vec = g(vector, 4, 3);
        return {
            tile1: grid.describe(4, 2, [8, 5, 3, 1]),
            gutter: grid.describe(3, 0, [8, 5, 3, 1]),
            outline: grid.outline([8, 5, 3, 1], 3),
            missing: grid.channelRect([8, 5, 3, 1], 2),
            volume: cube.describe(5, 5, [6, 2]),
            volumeRow: cube.channelRect([6, 2], 2),
            sequence: seq.describe(3, 5, [0]),
            sequenceLabel: seq.layout.label(seq.describe(3, 5, [0])),
            feature: seq.outline([0], 7),
            unit: vec.describe(1, 2, []),
            unitLabel: vec.layout.label(vec.describe(1, 2, [])),
            padding: vec.describe(3, 2, []),
            cell: vec.unitRect(21),
        };
    """, [layer(dict(content, layout="channels")),
          layer(dict(content, layout="volume", rows=2, depth_slices=[0, 4], channels_shown=2)),
          layer(dict(content, layout="sequence", rows=1, columns=1, tile_height=6, tile_width=4,
                     channels_total=8, channels_shown=8, downscale=[3, 2])),
          layer(dict(content, layout="vector", rows=1, columns=1, tile_height=3, tile_width=4,
                     channels_total=22, channels_shown=22, downscale=[2]))])
    assert out["tile1"] == {"tile": 1, "x": 0, "y": 2, "channel": 5}
    assert out["gutter"] is None
    assert out["outline"] == {"x": 0, "y": 4, "width": 3, "height": 3}
    assert out["missing"] is None
    assert out["volume"] == {"tile": 3, "x": 1, "y": 1, "channel": 2, "depth": 4}
    assert out["volumeRow"] == {"x": 0, "y": 4, "width": 7, "height": 3}
    assert out["sequence"] == {"tile": 0, "x": 3, "y": 5, "channel": 6, "time": 15,
                               "group": [3, 2]}
    assert out["sequenceLabel"] == "t 15–17, feature 6–7"
    assert out["feature"] == {"x": 3, "y": 0, "width": 1, "height": 6}
    assert out["unit"] == {"tile": 0, "x": 1, "y": 2, "channel": 18, "group": [2]}
    assert out["unitLabel"] == "unit 18–19"
    assert out["padding"] is None  # cell 11 would hold units 22-23 of 22
    assert out["cell"] == {"x": 2, "y": 2, "width": 1, "height": 1}


def test_decode_values_reads_codes_as_docs_format_says(page):
    values = run(page, """
        const geometry = new m.geometry.Geometry(arg, 7, 1);
        const grid = {width: 7, height: 1, codes: Uint8Array.from([0, 253, 254, 255, 0, 100, 253])};
        return Array.from(m.geometry.decodeValues(grid, geometry, [[-1, 1], [null, null]]))
            .map((v) => Number.isNaN(v) ? "NaN" : v);
    """, two_tiles(3, 2))
    assert values == [-1, 1, "NaN", "NaN", "NaN", "NaN", "NaN"]


# --- scaling.js ---

def test_scaling_ranges_per_mode(page):
    out = run(page, """
        const s = m.scaling;
        const ranges = [[0, 2], [null, null], [-3, 1]];
        return {
            span: s.spanOf([ranges, [[5, 6]]]),
            empty: s.spanOf([[[null, null]]]),
            centred: s.centred([-1, 4]),
            channel: s.tileRanges("channel", ranges, 3, null, false),
            channelDiverging: s.tileRanges("channel", ranges, 3, null, true),
            layer: s.tileRanges("layer", ranges, 2, [-3, 2], false),
            positions: [s.position(1, 0, 2, false), s.position(5, 0, 2, false),
                        s.position(-1, 0, 2, false), s.position(0, 0, 0, true),
                        s.position(0, 0, 0, false)],
        };
    """)
    assert out["span"] == [-3, 6]
    assert out["empty"] == [0, 0]
    assert out["centred"] == [-4, 4]
    assert out["channel"] == [[0, 2], [0, 0], [-3, 1]]
    assert out["channelDiverging"] == [[-2, 2], [0, 0], [-3, 3]]
    assert out["layer"] == [[-3, 2], [-3, 2]]
    assert out["positions"] == [0.5, 1, 0, 0.5, 0]


# --- url_state.js ---

def test_url_state_round_trips_names_numbers_and_the_live_flag(page):
    out = run(page, """
        const u = m.url_state;
        const state = {run: "a b&c/d=é", layer: "x/y", input: null, sample: 2, step: 40,
                       channel: null, compare: 0, cmap: "magma", scale: "fixed", lo: -0.5,
                       hi: 2.25, live: true};
        u.writeState(state);
        const written = window.location.hash;
        const back = u.readState();
        u.writeState({...state, live: false, compare: null});
        const off = u.readState();
        history.replaceState(null, "", "#run=r&step=abc&sample=3.7&live=yes&other=1&%E0%A4%A=2");
        const hand = u.readState();
        return {written, back, off, hand};
    """)
    assert "run=a%20b%26c%2Fd%3D%C3%A9" in out["written"] and "live=1" in out["written"]
    assert out["back"] == {"run": "a b&c/d=é", "layer": "x/y", "sample": 2, "step": 40,
                           "compare": 0, "cmap": "magma", "scale": "fixed", "lo": -0.5,
                           "hi": 2.25, "live": True}
    assert "live" not in out["off"] and "compare" not in out["off"]
    assert out["hand"] == {"run": "r", "sample": 3}


# --- channel_flags.js: one vocabulary (tb_activations/rendering/overview.py) ---

def test_channel_flags_say_silent_per_sample_and_dead_in_every_sample(page):
    out = run(page, """
        const f = m.channel_flags;
        const stats = {fields: ["min", "max", "mean", "std", "zero_fraction", "nan_count", "inf_count"],
                       channels: [0, 1, 2, 3], units: [0, 1, 2, 3],
                       samples: [{stats: [[0, 0, 0, 0, 1, 0, 0], [0.98, 1, 0.99, 0.01, 0, 0, 0],
                                          [-1, 1, 0, 0.5, 0.2, 0, 0], [-1, 1, 0, 0.5, 0, 2, 1]]},
                                 {stats: [[0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0, 0],
                                          [-1, 1, 0, 0.5, 0, 0, 0], [0, 1, 0.5, 0.5, 0, 0, 0]]}]};
        const flagsOf = (c) => f.flags(f.channelStats(stats, 0, c));
        const geometry = {layout: {unit: "channel"}};
        const logged = (sample) => ({source: "logged", sample, stats, geometry});
        const live = {source: "live", sample: 0, stats: {...stats, samples: [stats.samples[1]]}, geometry};
        return {
            flags: [0, 1, 2, 3].map(flagsOf),
            silent: [0, 1, 2].map((c) => f.silentSamples(stats, c)),
            // channel 0: silent in both samples (dead); 1: silent in sample 1 only.
            logged0: [0, 1].map((c) => f.channelFlags(logged(0), c)),
            logged1: [0, 1].map((c) => f.channelFlags(logged(1), c)),
            live: [0, 1].map((c) => f.channelFlags(live, c)),
            text: [f.channelFlags(logged(1), 0), f.channelFlags(logged(1), 1), f.channelFlags(live, 0),
                   f.channelFlags(logged(0), 3), f.channelFlags(logged(0), 2)].map(f.flagText),
            marks: [f.channelFlags(logged(1), 0), f.channelFlags(logged(1), 1), f.channelFlags(logged(0), 1),
                    f.channelFlags(logged(0), 3), f.channelFlags(logged(0), 2)].map(f.markKind),
            row: f.channelStats(stats, 1, 3),
            none: f.channelStats(stats, 5, 0),
            // Format 2 keeps rows for some units only: row r is unit units[r].
            kept: [9, 4, 0].map((c) => f.channelStats({...stats, units: [9, 4]}, 0, c)),
        };
    """)
    assert out["flags"] == [
        {"silent": True, "saturated": False, "nonfinite": False},
        {"silent": False, "saturated": True, "nonfinite": False},
        {"silent": False, "saturated": False, "nonfinite": False},
        {"silent": False, "saturated": False, "nonfinite": True},
    ]
    assert out["silent"] == [2, 1, 0]
    assert [f["dead"] for f in out["logged0"]] == [True, False]
    assert [(f["silent"], f["dead"]) for f in out["logged1"]] == [(True, True), (True, False)]
    # A drawn input is one sample, not the probe: silent, never dead.
    assert [(f["silent"], f["dead"]) for f in out["live"]] == [(True, False), (True, False)]
    assert out["text"] == ["dead", "silent", "silent", "NaN/Inf", ""]
    assert out["marks"] == ["dead", "silent", "saturated", "nonfinite", None]
    assert out["row"] == {"min": 0, "max": 1, "mean": 0.5, "std": 0.5, "zero_fraction": 0,
                          "nan_count": 0, "inf_count": 0}
    assert out["none"] is None
    assert out["kept"][0]["zero_fraction"] == 1 and out["kept"][1]["mean"] == 0.99
    assert out["kept"][2] is None


# --- difference.js ---

def test_difference_blanks_tiles_showing_other_channels(page):
    out = run(page, """
        const geometry = new m.geometry.Geometry(arg, 5, 1);
        const frame = (values, channels) => ({
            geometry, values: Float32Array.from(values),
            grid: {width: 5, height: 1, codes: Uint8Array.from([0, 0, 255, 0, 0])},
            stats: {channels},
        });
        const same = m.difference.difference(frame([1, 2, NaN, 4, -1], [3, 1]), frame([0.5, 5, NaN, 1, 1], [3, 1]));
        const other = m.difference.difference(frame([1, 2, NaN, 4, -1], [3, 1]), frame([0.5, 5, NaN, 1, 1], [3, 4]));
        const shape = (d) => ({values: Array.from(d.values).map((v) => Number.isNaN(v) ? "NaN" : v),
                               codes: Array.from(d.codes), ranges: d.ranges, largest: d.largest,
                               mismatched: d.mismatched});
        return {same: shape(same), other: shape(other)};
    """, two_tiles(2, 5))
    assert out["same"] == {"values": [0.5, -3, "NaN", 3, -2], "codes": [0, 0, 255, 0, 0],
                           "ranges": [[-3, 3], [-3, 3]], "largest": 3, "mismatched": 0}
    assert out["other"]["codes"] == [0, 0, 255, 255, 255]
    assert out["other"]["ranges"] == [[-3, 3], [0, 0]]
    assert out["other"]["mismatched"] == 1


# --- input_values.js: a drawn picture as a model input ---

def test_input_values_map_pixels_into_the_trained_range(page):
    out = run(page, """
        const iv = m.input_values;
        // 2 x 2 pixels: black, white, mid gray, pure red.
        const rgba = Uint8ClampedArray.from([0, 0, 0, 255, 255, 255, 255, 255,
                                             51, 51, 51, 255, 255, 0, 0, 255]);
        const input = (shape, dtype, low, high) => ({name: "x", shape, dtype, low, high, image: true});
        let wrongSize = null;
        try { iv.inputValues(rgba, input([3, 2, 1], "float32", 0, 1)); }
        catch (error) { wrongSize = error.message; }
        return {
            gray: iv.inputValues(rgba, input([2, 2, 1], "float32", -1, 1)),
            plain: iv.inputValues(rgba, input([2, 2], "float32", 0, 1)),
            colour: iv.inputValues(rgba, input([2, 2, 3], "uint8", 0, 255)),
            integers: iv.inputValues(rgba, input([2, 2, 1], "int32", 0, 10)),
            assumed: iv.inputValues(rgba, input([2, 2, 1], "uint8", null, null)),
            wrongSize,
            drawable: [[28, 28, 1], [28, 28], [32, 32, 3], [8, 8, 4], [8, 8, 2], [20], [null, 8, 1]]
                .map((shape) => iv.drawable({shape, image: true})),
            notImage: iv.drawable({shape: [8, 8, 1], image: false}),
        };
    """)
    assert out["gray"] == [[[-1], [1]], [[-0.6], [-0.4039216]]]
    assert out["plain"] == [[0, 1], [0.2, 0.2980392]]
    assert out["colour"] == [[[0, 0, 0], [255, 255, 255]], [[51, 51, 51], [255, 0, 0]]]
    assert out["integers"] == [[[0], [10]], [[2], [3]]]
    assert out["assumed"] == [[[0], [255]], [[51], [76]]]
    assert out["wrongSize"] == "a 2×3 picture is needed for input x, got 4 pixels"
    assert out["drawable"] == [True, True, True, True, False, False, False]
    assert out["notImage"] is False


# --- overview_values.js: the overview's numbers and heat-map colours ---

OVERVIEW_LAYER = {"layer": "conv", "layer_class": "Conv2D", "channels_total": 4,
                  "zero_fraction": [0.1, None, 0.5, 1.0, 0.3],
                  "dead_channels": [0, None, 2, 4, 1],
                  "silent_channels": [[0, 1], None, [2, 3], [4, 4], [1, 2]],
                  "nan_count": [0, None, 3, 0, 0], "inf_count": [0, None, 0, 12, 0],
                  "low": [0, None, 0, 0, 0], "high": [1, None, 2, 0, 3]}


def test_heat_map_columns_values_and_colours(page):
    out = run(page, """
        const o = m.overview_values;
        const [dead, sparsity, nonfinite] = ["dead", "sparsity", "nonfinite"].map((name) => o.heatMetric(name));
        const values = (metric) => [0, 1, 2, 3, 4].map((i) => metric.value(arg, i));
        return {
            fallback: o.heatMetric("nonsense").name,
            dead: values(dead), sparsity: values(sparsity), nonfinite: values(nonfinite),
            columns: [o.heatColumns(3, 100), o.heatColumns(10, 3), o.heatColumns(0, 5), o.heatColumns(5, 0.5)],
            // a grouped column shows its largest value and the first step holding it
            cells: [o.columnValue(dead, arg, [0, 3]), o.columnValue(dead, arg, [1, 2]),
                    o.columnValue(sparsity, arg, [2, 5]), o.columnValue(dead, arg, [3, 5])],
            max: [o.metricMax(nonfinite, [arg], 5), o.metricMax(dead, [arg], 5)],
            positions: [o.heatPosition(dead, 0.25, 1), o.heatPosition(dead, 1.5, 1),
                        o.heatPosition(nonfinite, 0, 15), o.heatPosition(nonfinite, 3, 15),
                        o.heatPosition(nonfinite, 15, 15), o.heatPosition(nonfinite, 4, 0)],
            colours: [o.heatColour(0), o.heatColour(1), o.heatColour(2), o.heatColour(0.5)],
            labels: [o.scaleLabels(dead, 0), o.scaleLabels(nonfinite, 15)],
        };
    """, OVERVIEW_LAYER)
    assert out["fallback"] == "dead"
    assert out["dead"] == [0, None, 0.5, 1, 0.25]
    assert out["sparsity"] == [0.1, None, 0.5, 1, 0.3]
    assert out["nonfinite"] == [0, None, 3, 12, 0]
    assert out["columns"] == [[[0, 1], [1, 2], [2, 3]], [[0, 3], [3, 6], [6, 10]], [], [[0, 5]]]
    assert out["cells"] == [{"value": 0.5, "index": 2}, None, {"value": 1, "index": 3},
                            {"value": 1, "index": 3}]
    assert out["max"] == [12, 1]
    assert out["positions"] == [0.25, 1, 0, 0.5, 1, 0]
    assert out["colours"][:3] == ["#fff7ec", "#7f0000", "#7f0000"]  # OrRd's ends, clamped
    assert out["colours"][3] not in out["colours"][:2]
    assert out["labels"] == [["0%", "100%"], ["0", "15"]]


def test_overview_summaries_and_layer_notes(page):
    out = run(page, """
        const o = m.overview_values;
        const at = (i) => o.summaryAt(arg, i);
        const live = {zero_fraction: 0.5, dead_channels: 3, silent_channels: [3], nan_count: 0,
                      inf_count: 0, low: 0, high: 1};
        return {
            steps: [o.stepIndex([0, 2, 4], 4), o.stepIndex([0, 2, 4], 3), o.stepIndex([0, 2, 4], -1),
                    o.stepIndex([], 3)],
            summary: at(2), missing: [at(1), at(-1)],
            text: [o.summaryText(at(2), 4), o.summaryText(at(0), 4)],
            logged: [o.layerNote(at(2), 4, false), o.layerNote(at(0), 4, false)],
            drawn: o.layerNote(live, 8, true),
        };
    """, OVERVIEW_LAYER)
    assert out["steps"] == [2, 1, 0, -1]
    assert out["summary"] == {"zero_fraction": 0.5, "dead_channels": 2, "dead_heads": None,
                              "dead_fraction": 0.5, "silent_channels": [2, 3], "nan_count": 3,
                              "inf_count": 0}
    assert out["missing"] == [None, None]
    assert out["text"] == ["dead 2 of 4 channels (50%) · sparsity 50% · 3 NaN, 0 Inf",
                           "dead 0 of 4 channels (0%) · sparsity 10%"]
    assert [note["text"] for note in out["logged"]] == ["sparsity 50% · 2 dead · 3 NaN/Inf",
                                                        "sparsity 10%"]
    assert [note["alert"] for note in out["logged"]] == [True, False]
    assert "2 of 4 channels dead (all zero in every probe sample)" in out["logged"][0]["title"]
    # The drawn input is one sample: its all-zero channels are silent, not dead.
    assert out["drawn"]["text"] == "sparsity 50% · 3 silent"
    assert out["drawn"]["alert"] is False
    assert "3 of 8 channels silent (all zero for this input)" in out["drawn"]["title"]


ATTENTION_LAYER = dict(OVERVIEW_LAYER, layer="blocks/0/attn:attention", channels_total=3,
                       dead_channels=[0, None, 0, 0, 0], dead_heads=[1, None, None, 3, 0])


def test_an_attention_layers_dead_units_are_its_dead_heads(page):
    out = run(page, """
        const o = m.overview_values;
        const dead = o.heatMetric("dead");
        return {
            values: [0, 1, 2, 3, 4].map((i) => dead.value(arg, i)),
            text: o.summaryText(o.summaryAt(arg, 0), arg.channels_total),
            summary: o.summaryAt(arg, 3),
        };
    """, ATTENTION_LAYER)
    # Heads where the server counted them; a step without heads falls back to its channels.
    assert out["values"] == [pytest.approx(1 / 3), None, 0, 1, 0]
    assert out["text"] == "dead 1 of 3 heads (33%) · sparsity 10%"
    assert out["summary"]["dead_heads"] == 3 and out["summary"]["dead_fraction"] == 1


def test_run_filter_is_tensorboards_case_insensitive_regex(page):
    result = page.evaluate("""async () => {
        const {filterRuns} = await import("./views/run_picker.js");
        const runs = ["lr1e-01-seed000", "LR1e-02-seed001", "baseline", "a\\\\b\\"c"].map((run) => ({run}));
        const names = (filter) => {
            const {runs: shown, error} = filterRuns(runs, filter);
            return {names: shown.map((r) => r.run), error};
        };
        return {all: names(""), lr: names("^lr1e-0[12]"), seed1: names("seed00[1]$"),
                quoted: names('\\\\\\\\b"'), invalid: names("lr(")};
    }""")
    assert result["all"]["names"] == ["lr1e-01-seed000", "LR1e-02-seed001", "baseline", 'a\\b"c']
    assert result["lr"] == {"names": ["lr1e-01-seed000", "LR1e-02-seed001"], "error": None}
    assert result["seed1"]["names"] == ["LR1e-02-seed001"]
    assert result["quoted"]["names"] == ['a\\b"c']
    assert result["invalid"]["names"] == [] and "regular expression" in result["invalid"]["error"]


def test_byte_cache_keeps_recent_values_within_its_bytes(page):
    result = page.evaluate("""async () => {
        const {ByteCache} = await import("./api.js");
        const cache = new ByteCache(100);
        let loads = 0;
        const load = (value) => () => { loads++; return Promise.resolve(value); };
        const weigh = (value) => value.length;
        await cache.get("a", load("x".repeat(40)), weigh);
        await cache.get("b", load("y".repeat(40)), weigh);
        await cache.get("a", load("never"), weigh);          // a hit: "a" is now the newest
        await cache.get("c", load("z".repeat(40)), weigh);   // over 100 bytes: "b" goes
        await new Promise((resolve) => setTimeout(resolve));
        const kept = ["a", "b", "c"].filter((key) => cache.has(key));
        await cache.get("huge", load("w".repeat(500)), weigh);
        await new Promise((resolve) => setTimeout(resolve));
        const failed = cache.get("bad", () => Promise.reject(new Error("no")), weigh).catch(() => "failed");
        return {kept, loads, bytes: cache.bytes, huge: cache.has("huge"), failed: await failed,
                badKept: cache.has("bad"), keptAfterHuge: ["a", "c"].every((key) => cache.has(key))};
    }""")
    assert result["kept"] == ["a", "c"] and result["loads"] == 4
    assert result["bytes"] == 80 and result["huge"] is False and result["keptAfterHuge"]
    assert result["failed"] == "failed" and result["badKept"] is False


def test_prefetch_order_is_the_shown_step_then_outwards_next_first(page):
    orders = page.evaluate("""async () => {
        const {nearestFirst} = await import("./prefetch.js");
        return [nearestFirst(6, 2), nearestFirst(3, 0), nearestFirst(3, 2), nearestFirst(0, 0)];
    }""")
    assert orders == [[2, 3, 1, 4, 0, 5], [0, 1, 2], [2, 1, 0], []]


# --- head_values.js: the head map's numbers (attention layers x heads) ---

HEADS_LAYER = {"layer": "blocks/0/attn:attention", "heads": [
    None,
    {"keys": 4, "entropy": [[1.0, 0.0], [3.0, None]], "peak": [[0.5, 1.0], [0.3, 1.0]],
     "distance": [[2.0, 0.0], [4.0, 0.0]], "dead": [False, True]},
]}


def test_head_values_average_samples_and_pick_the_metric(page):
    out = run(page, """
        const h = m.head_values;
        const plain = {layer: "fc", heads: undefined};
        const noGrid = {layer: "text:attention", heads: [{keys: 4, entropy: [[1]], peak: [[0.5]], distance: null, dead: [false]}]};
        return {
            layers: h.attentionLayers({layers: [plain, arg, noGrid]}).map((l) => l.layer),
            at: [h.headsAt(arg, 0), h.headsAt(arg, 1) !== null, h.headsAt(arg, -1)],
            cells: [h.headCell(arg.heads[1], 0), h.headCell(arg.heads[1], 1)],
            metric: [h.headMetric("distance", [arg]).name, h.headMetric("entropy", [arg]).name,
                     h.headMetric("distance", [noGrid]).name],
            range: h.metricRange(h.headMetric("distance", [arg]), [arg]),
        };
    """, HEADS_LAYER)
    assert out["layers"] == ["blocks/0/attn:attention", "text:attention"]
    assert out["at"] == [None, True, None]
    first, second = out["cells"]
    assert first["entropy"] == 2.0 and first["distance"] == 3.0
    assert first["peak"] == pytest.approx(0.4)
    assert abs(first["normalised"] - 2.0 / np.log(4)) < 1e-12 and first["dead"] is False
    assert second["entropy"] == 0.0 and second["dead"] is True  # a null sample is left out
    assert out["metric"] == ["distance", "entropy", "entropy"]
    assert out["range"] == [0, 3]


def test_head_values_find_an_attention_maps_heads_and_note_them(page):
    data = {"steps": [0, 10], "layers": [dict(HEADS_LAYER, heads=[HEADS_LAYER["heads"][1], None])]}
    out = run(page, """
        const h = m.head_values;
        const heads = arg.layers[0].heads[0];
        return {
            paths: ["a:attention", "a:attention_map", "a", "a:prefix_tokens"].map(h.headsLayerPath),
            mapHeads: h.headsFor(arg, "blocks/0/attn:attention_map", 5) === heads,
            later: h.headsFor(arg, "blocks/0/attn:attention", 10),
            other: h.headsFor(arg, "blocks/1/attn:attention", 0),
            sample: [h.headInSample(heads, 0, 1), h.headInSample(heads, 1, 1)],
            notes: [h.headNote(heads), h.headNote({dead: [false]})],
        };
    """, data)
    assert out["paths"] == ["a:attention", "a:attention", None, None]
    assert out["mapHeads"] is True and out["later"] is None and out["other"] is None
    first, second = out["sample"]
    assert first["entropy"] == 3.0 and first["peak"] == 0.3 and first["distance"] == 4.0
    assert abs(first["normalised"] - 3.0 / np.log(4)) < 1e-12 and first["dead"] is False
    assert second["entropy"] is None and second["normalised"] is None and second["dead"] is True
    assert [note["text"] for note in out["notes"]] == ["2 heads, 1 dead", "1 head"]
    assert [note["alert"] for note in out["notes"]] == [True, False]


def attention_frame_source(queries, keys, downscale):
    """JS building a frame of a 2-head `attention` layer whose head 1's tile holds `values`
    (query rows of key columns), beside its `:attention_map` sibling on a 2x2 grid."""
    return """
        const [fy, fx] = %s;
        const width = Math.ceil(%d / fx);
        const height = Math.ceil(%d / fy);
        const layer = {layer: "a:attention", layout: "channels", source: "attention", rows: 1, columns: 2,
            tile_width: width, tile_height: height, gutter: 1, downscale: [fy, fx], channels_shown: 2,
            channels_total: 2, output_shape: [null, 2, %d, %d], depth_slices: []};
        const map = {layer: "a:attention_map", source: "attention_map",
            token_grid: {rows: 2, columns: 2, prefix_tokens: 1}};
        const geometry = new m.geometry.Geometry(layer, 2 * width + 1, height);
        const values = new Float32Array(geometry.width * height).fill(NaN);
        arg.values.forEach((row, y) => row.forEach((value, x) => {
            values[y * geometry.width + width + 1 + x] = value;
        }));
        const frame = {layer, geometry, values, stats: {channels: [0, 1]}, tokens: arg.tokens};
    """ % ([downscale[0], downscale[1]], keys, queries, queries, keys)


def test_a_query_row_is_read_from_the_tile_on_its_key_grid(page):
    values = [[0.1, 0.2, 0.3, 0.1, 0.3], [0.2, 0.2, 0.2, 0.2, 0.2]]
    out = run(page, attention_frame_source(5, 5, (1, 1)) + """
        const found = m.query_values.queryAttention(frame, 1, 0, [layer, map]);
        return {found, grid: Array.from(found.grid.values), off: m.query_values.queryAttention(frame, 1, 5, [layer, map]),
                alone: m.query_values.queryAttention(frame, 1, 1, [layer]),
                row3: m.query_values.queryAttention(frame, 1, 3, [layer, map])};
    """, {"values": values, "tokens": None})
    found = out["found"]
    assert found["query"] == "query 0" and found["averagedQueries"] is False
    assert [key["text"] for key in found["keys"]] == ["key %d" % index for index in range(5)]
    assert [key["mass"] for key in found["keys"]] == pytest.approx(values[0])
    assert found["grid"]["prefix"] == [{"text": "key 0", "mass": pytest.approx(0.1)}]
    assert out["grid"] == pytest.approx([0.2, 0.3, 0.1, 0.3])
    assert found["grid"]["high"] == pytest.approx(0.3)
    assert found["grid"]["own"] is None  # query 0 is the prefix token
    assert out["alone"]["grid"] is None and out["row3"]["grid"]["own"] == {"row": 1, "column": 0}
    assert out["off"] is None
    assert out["alone"]["grid"] is None and out["alone"]["query"] == "query 1"


def test_an_averaged_row_names_its_queries_and_key_groups_carry_their_mass(page):
    tokens = ["a", "b", "c", "d", "e"]
    out = run(page, attention_frame_source(5, 5, (2, 2)) + """
        return m.query_values.queryAttention(frame, 1, 1, [layer, map]);
    """, {"values": [[0.1, 0.2, 0.2], [0.3, 0.1, 0.2]], "tokens": tokens})
    assert out["query"] == "queries 2–3 ('c' … 'd') averaged" and out["averagedQueries"] is True
    assert out["queries"] == [2, 3]
    assert [key["text"] for key in out["keys"]] == ["keys 0–1 ('a' … 'b')", "keys 2–3 ('c' … 'd')",
                                                    "key 4 'e'"]
    # a value is the mean over its keys: the group's share of the row is that times their count
    assert [key["mass"] for key in out["keys"]] == pytest.approx([0.6, 0.2, 0.2])
    assert out["grid"] is None  # keys averaged in pairs do not lie on the 2x2 grid


def test_attention_heads_get_the_dead_head_flag_never_saturated(page):
    out = run(page, """
        const cf = m.channel_flags;
        const stats = {fields: ["min", "max", "mean", "zero_fraction", "nan_count", "inf_count"], units: [0, 1],
            samples: [{stats: [[0.2, 0.2, 0.2, 0, 0, 0], [0.1, 0.5, 0.2, 0, 0, 0]]}]};
        const head = (unit, heads, source = "logged") => ({stats, sample: 0, source, heads,
            geometry: {layout: {unit}}});
        const uniform = {dead: [true, false]};
        return {
            channel: cf.channelFlags(head("channel", null), 0),
            dead: cf.channelFlags(head("head", uniform), 0),
            alive: cf.channelFlags(head("head", uniform), 1),
            live: cf.channelFlags(head("head", uniform, "live"), 0),
            none: cf.channelFlags(head("head", null), 0),
            text: cf.flagText(cf.channelFlags(head("head", uniform), 0)),
        };
    """)
    assert out["channel"]["saturated"] is True  # a constant activation map is saturated
    assert out["dead"] == {"silent": False, "saturated": False, "nonfinite": False, "dead": True,
                           "head": True}
    assert out["alive"]["dead"] is False and out["alive"]["saturated"] is False
    assert out["live"]["dead"] is False and out["none"]["dead"] is False
    assert out["text"] == "dead head"


# --- reference_values.js and tile_order.js: what the reference set says of each unit ---

def _sorted_positions(order, channels, answer):
    """The tile order reference_values.tileOrder must give, written out in Python."""
    rows = {unit: row for row, unit in enumerate(answer["units"])}

    def key(item):
        position, channel = item
        row = rows.get(channel)
        missing = row is None
        selectivity = None if missing else answer["selectivity"][row]
        preferred = None if missing or answer["dead"][row] else answer["preferred"][row]
        by_class = (preferred if preferred is not None else float("inf")) if order == "class" else 0
        return (missing, by_class, -(selectivity if selectivity is not None else float("-inf")),
                position)
    return [position for position, _ in sorted(enumerate(channels), key=key)]


@hypothesis.given(data=hypothesis.strategies.data())
def test_tile_order_sorts_by_selectivity_or_class_with_unknown_units_last(page, data):
    st = hypothesis.strategies
    drawn = data.draw(st.lists(st.integers(0, 40), min_size=1, max_size=12, unique=True))
    kept = data.draw(st.lists(st.integers(0, 40), min_size=1, max_size=12, unique=True))
    answer = {"units": kept,
              "selectivity": data.draw(st.lists(st.one_of(st.none(), st.floats(0, 1)),
                                                min_size=len(kept), max_size=len(kept))),
              "preferred": data.draw(st.lists(st.integers(0, 4), min_size=len(kept),
                                              max_size=len(kept))),
              "dead": data.draw(st.lists(st.booleans(), min_size=len(kept), max_size=len(kept)))}
    orders = run(page, """
        const [channels, answer] = arg;
        return ["unit", "selectivity", "class"].map((order) => m.reference_values.tileOrder(order, channels, answer));
    """, [drawn, answer])
    assert orders[0] is None
    assert orders[1] == _sorted_positions("selectivity", drawn, answer)
    assert orders[2] == _sorted_positions("class", drawn, answer)


@hypothesis.given(order=hypothesis.strategies.permutations(range(6)))
def test_reordered_frame_moves_each_tile_with_its_channel(page, order):
    """Tile t of a 6-channel grid holds code t; after reordering, the tile that
    geometry.channelRect finds for each channel still holds that channel's code, and its range."""
    content = layer({"layout": "channels", "rows": 2, "columns": 3, "tile_height": 2,
                     "tile_width": 3, "gutter": 1, "depth_slices": [], "channels_total": 9,
                     "channels_shown": 6, "channel_selection": "top", "downscale": [1, 1]})
    found = run(page, """
        const [layer, order] = arg;
        const width = 3 * 3 + 2, height = 2 * 2 + 1;
        const geometry = new m.geometry.Geometry(layer, width, height);
        const codes = new Uint8Array(width * height).fill(255);
        for (let tile = 0; tile < 6; tile++) {
            const rect = geometry.tileRect(tile);
            for (let y = 0; y < rect.height; y++) for (let x = 0; x < rect.width; x++) codes[(rect.y + y) * width + rect.x + x] = tile;
        }
        const channels = [8, 3, 5, 0, 1, 7];
        const ranges = channels.map((channel) => [0, channel]);
        const frame = {geometry, grid: {width, height, codes}, values: Float32Array.from(codes), ranges, sample: 0,
                       stats: {channels, samples: [{ranges}]}};
        const moved = m.tile_order.reorderedFrame(frame, order);
        return channels.map((channel, tile) => {
            const rect = geometry.channelRect(moved.stats.channels, channel);
            const seen = new Set();
            for (let y = 0; y < rect.height; y++) for (let x = 0; x < rect.width; x++) {
                const at = (rect.y + y) * width + rect.x + x;
                seen.add(moved.grid.codes[at]);
                seen.add(moved.values[at]);
            }
            const index = moved.stats.channels.indexOf(channel);
            return [tile, [...seen], moved.ranges[index][1], moved.stats.samples[0].ranges[index][1], frame.stats.channels[tile]];
        });
    """, [content, list(order)])
    for tile, seen, low_high, sample_range, original in found:
        assert seen == [tile]
        assert low_high == sample_range == original


def test_receptive_boxes_and_thumbnails_in_thumbnail_pixels(page):
    inputs = {"per_page": 6, "page_columns": 3, "thumb_width": 14, "thumb_height": 14,
              "input_width": 28, "input_height": 28, "class_names": ["zero", "one"]}
    field = {"stride": [2, 2], "size": [8, 8], "offset": [3.5, 3.5], "exact": True}
    out = run(page, """
        const [inputs, field] = arg;
        const r = m.reference_values;
        return {
            thumbs: [0, 4, 6, 13].map((index) => r.thumbnailAt(inputs, index)),
            middle: r.receptiveBox(field, [5, 4], inputs),
            corner: r.receptiveBox(field, [0, 0], inputs),
            clipped: r.receptiveBox({...field, offset: [2.5, 1.5]}, [0, 0], inputs),
            none: [r.receptiveBox(null, [1, 1], inputs), r.receptiveBox(field, [3], inputs)],
            step: [r.referenceStepFor([0, 50, 100], 75), r.referenceStepFor([50, 100], 10),
                   r.referenceStepFor([0, 48, 96], 90), r.referenceStepFor([], 3)],
            names: [r.className(inputs, 1), r.className(inputs, 7), r.className({class_names: null}, 2)],
        };
    """, [inputs, field])
    assert out["thumbs"] == [{"page": 0, "x": 0, "y": 0, "width": 14, "height": 14},
                             {"page": 0, "x": 14, "y": 14, "width": 14, "height": 14},
                             {"page": 1, "x": 0, "y": 0, "width": 14, "height": 14},
                             {"page": 2, "x": 14, "y": 0, "width": 14, "height": 14}]
    # Map cell (5, 4) sees the 8x8 input box centred on pixel (3.5 + 10, 3.5 + 8) (between
    # pixels 13 and 14, 11 and 12): rows 10..17, columns 8..15; at half scale in the
    # thumbnail. Its own 2x2 stride box is marked at the centre.
    assert out["middle"] == {"x": 4, "y": 5, "width": 4, "height": 4,
                             "mark": {"x": 5.5, "y": 6.5, "width": 1, "height": 1}}
    # Cell (0, 0) sees rows and columns 0..7; a box reaching past the edge is clipped.
    assert out["corner"]["x"] == 0 and out["corner"]["width"] == 4
    assert out["clipped"]["x"] == 0 and out["clipped"]["width"] == 3
    assert out["none"] == [None, None]
    assert out["step"] == [50, 50, 96, None]
    assert out["names"] == ["one", "7", "2"]


@hypothesis.given(data=hypothesis.strategies.data())
def test_the_tab_and_export_crop_the_same_receptive_field(page, data):
    """reference_values.receptiveBox (the tab) and exporting.montage.receptive_box (export)
    find the same input box and cell for any field, position and input size."""
    st = hypothesis.strategies
    side = st.integers(1, 96)
    size = data.draw(st.tuples(side, side))
    field = {"stride": list(data.draw(st.tuples(st.integers(1, 8), st.integers(1, 8)))),
             "size": list(data.draw(st.tuples(st.integers(1, 64), st.integers(1, 64)))),
             "offset": list(data.draw(st.tuples(st.floats(-4, 8, width=16),
                                                st.floats(-4, 8, width=16)))),
             "exact": True}
    position = list(data.draw(st.tuples(st.integers(0, 40), st.integers(0, 40))))
    inputs = {"thumb_height": size[0], "thumb_width": size[1], "input_height": size[0],
              "input_width": size[1]}
    box = run(page, "return m.reference_values.receptiveBox(...arg);", [field, position, inputs])
    (top, left, bottom, right), (cell_top, cell_left, cell_bottom, cell_right) = \
        montage.receptive_box(field, position, *size)
    assert [box["y"], box["x"], box["y"] + box["height"], box["x"] + box["width"]] == \
        pytest.approx([top, left, bottom, right])
    mark = box["mark"]
    assert [mark["y"], mark["x"], mark["y"] + mark["height"], mark["x"] + mark["width"]] == \
        pytest.approx([cell_top, cell_left, cell_bottom, cell_right])
    assert 0 <= top < bottom <= size[0] and 0 <= left < right <= size[1]
