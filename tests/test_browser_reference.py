"""What a unit responds to, in the tab: the demo run (its CNN trained for real, reference set
logged by the real Keras callback) in a real TensorBoard, looked at in Chromium: a unit's top
inputs strip, the overview's selectivity map, tiles sorted by selectivity and class."""

import json
import os
import pathlib
import urllib.request

import numpy as np
import pytest

import tb_activations as tba
from tb_activations.exporting import figures
from tests import browser_helpers as helpers

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(helpers.CHROMIUM), reason="needs Debian's chromium"),
]
playwright_api = pytest.importorskip("playwright.sync_api")

RUN = "mnist_cnn"
LAYER = "conv2"
SCREENSHOTS = pathlib.Path(__file__).resolve().parent.parent / "test-output" / "browser"


@pytest.fixture(scope="module")
def served(demo_run):
    """(page, url, errors, the run as read_reference reads it) over the demo's logdir."""
    logdir = os.path.dirname(demo_run)
    read = tba.read_reference(logdir, run=RUN)[RUN]
    with helpers.served_page(logdir, height=1000) as (page, url, errors):
        yield page, url, errors, read
    assert errors == []


def open_fresh(page, url, **state):
    """The tab loaded anew showing the demo's conv2 (a hash change alone keeps the page)."""
    page.goto("about:blank")
    return helpers.open_layer(page, url, RUN, LAYER, **state)


def screenshot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / ("%s.png" % name)
    page.screenshot(path=str(path))
    return path


def texts(frame, selector):
    return frame.eval_on_selector_all(selector, "nodes => nodes.map(n => n.textContent)")


def responds(responses, row, names):
    """What the tab must say of row `row` of a UnitResponses."""
    if responses.dead[row]:
        return "dead on the reference set: zero on every reference input"
    return "responds most to: %s (selectivity %.2f)" % (names[responses.preferred[row]],
                                                       responses.selectivity[row])


def test_a_units_top_inputs_at_the_last_and_first_reference_step(served):
    page, url, _, read = served
    steps = read.layers[LAYER]
    first, last = steps[0], steps[-1]
    names = read.class_names
    row = int(np.nanargmax(np.where(last.dead, np.nan, last.selectivity)))  # its most selective
    unit = int(last.units[row])
    frame = open_fresh(page, url, channel=unit, step=last.step)
    frame.wait_for_selector(".top-inputs-row[data-step='%d'] canvas" % first.step)
    rows = frame.query_selector_all(".top-inputs-row")
    assert [r.get_attribute("data-step") for r in rows] == [str(last.step), str(first.step)]
    captions = texts(frame, ".top-inputs-caption")
    first_row = list(first.units).index(unit)
    assert captions == ["step %d: %s" % (last.step, responds(last, row, names)),
                        "at the first reference step, step %d: %s"
                        % (first.step, responds(first, first_row, names))]
    # Under each crop: the input's class and the unit's value, highest first.
    expected = ["%s · %s" % (names[read.labels[index]], figures.fmt(float(value)))
                for index, value in zip(last.top_index[row], last.top_value[row])]
    assert texts(frame, ".top-inputs-row[data-step='%d'] figcaption" % last.step) == expected
    page.wait_for_timeout(500)  # the thumbnail page loads, then the crops are drawn
    crops = [canvas.evaluate(helpers.CANVAS_PIXELS) for canvas in
             frame.query_selector_all(".top-inputs-row[data-step='%d'] canvas" % last.step)]
    assert len(crops) == last.content["k"]
    assert all(crop["colours"] > 2 for crop in crops)  # gray digit pixels and the red mark
    # conv2 sees 8x8 of the 28x28 digits: a square crop; whole inputs are square too, but
    # their pixels are others.
    assert all(crop["width"] == crop["height"] for crop in crops)
    path = screenshot(page, "top_inputs")
    # "whole input": each input whole, what the unit sees outlined.
    frame.locator(".top-inputs label.option input").check()
    page.wait_for_timeout(500)
    whole = frame.query_selector(".top-inputs-row canvas").evaluate(helpers.CANVAS_PIXELS)
    assert whole["hash"] != crops[0]["hash"] and whole["colours"] > crops[0]["colours"] / 2
    screenshot(page, "top_inputs_whole")
    frame.locator(".top-inputs label.option input").uncheck()
    assert path.exists()


def test_overview_selectivity_map_by_layer_and_reference_step(served):
    page, url, _, read = served
    frame = open_fresh(page, url)
    frame.locator(".overview-toggle").click()
    canvas = frame.wait_for_selector(".selectivity-map-canvas")
    steps = sorted({step.step for layer in read.layers.values() for step in layer})
    assert canvas.get_attribute("data-rows") == str(len(read.layers))
    assert canvas.get_attribute("data-columns") == str(len(steps))
    assert texts(frame, ".selectivity-map .head-map-name") == list(read.layers)
    # The reference step nearest the selected (last) step is outlined: the last one.
    marker = frame.eval_on_selector(".selectivity-map .overview-marker",
                                    "m => [m.hidden, parseFloat(m.style.left), parseFloat(m.style.width)]")
    cell = canvas.evaluate("c => c.width") / len(steps)
    assert marker == [False, (len(steps) - 1) * cell, cell]
    row = list(read.layers).index(LAYER)
    box = canvas.bounding_box()
    width, height = canvas.evaluate("c => [c.width, c.height]")
    for column, responses in enumerate(read.layers[LAYER]):
        page.mouse.move(box["x"] + (column + 0.5) * box["width"] / len(steps),
                        box["y"] + (row + 0.5) * box["height"] / len(read.layers))
        frame.wait_for_function(
            "step => document.querySelector('.selectivity-map .head-map-tooltip:not([hidden])')"
            "?.textContent.includes(`reference step ${step}`)", arg=responses.step)
        tip = frame.inner_text(".selectivity-map .head-map-tooltip")
        mean = np.mean(responses.selectivity[np.isfinite(responses.selectivity)])
        assert "mean class selectivity %.2f over its %d kept units" % (
            mean, len(responses.units)) in tip, tip
        assert "%d%% of them dead" % round(100 * np.mean(responses.dead)) in tip, tip
    screenshot(page, "selectivity_map")
    # A click opens that layer at that step in the grid.
    page.mouse.click(box["x"] + 0.5 * box["width"] / len(steps),
                     box["y"] + (row + 0.5) * box["height"] / len(read.layers))
    frame.wait_for_selector(".grid-canvas", state="visible")
    assert frame.inner_text(".layer-path") == LAYER


def hovered_channel(page, frame, tile, columns, tile_size, gutter):
    """The channel the tooltip names over the middle of `tile`."""
    canvas = frame.query_selector(".grid-canvas")
    width = canvas.evaluate("c => c.width")
    box = canvas.bounding_box()
    scale = box["width"] / width
    row, column = divmod(tile, columns)
    page.mouse.move(box["x"] + (column * (tile_size[1] + gutter) + tile_size[1] / 2) * scale,
                    box["y"] + (row * (tile_size[0] + gutter) + tile_size[0] / 2) * scale)
    frame.wait_for_selector(".grid-area .tooltip:not([hidden])")
    title = frame.inner_text(".grid-area .tooltip .tooltip-title")
    assert title.startswith("channel "), title
    return int(title.split()[1])


@pytest.mark.parametrize("order", ["selectivity", "class"])
def test_tiles_sorted_by_what_the_reference_set_says(served, order):
    page, url, _, read = served
    last = read.layers[LAYER][-1]
    frame = open_fresh(page, url, step=last.step)
    frame.wait_for_selector(".grid-canvas", state="visible")
    frame.wait_for_selector("select[aria-label='Tile order']:not([disabled])")
    frame.select_option("select[aria-label='Tile order']", order)
    frame.wait_for_function("text => document.querySelector('.grid-panel figcaption')"
                            "?.textContent.includes(text)",
                            arg="tiles by %s at reference step %d" % (
                                "selectivity" if order == "selectivity" else "preferred class",
                                last.step))
    layer = next(entry for entry in listed_layers(url) if entry["layer"] == LAYER)
    selectivity = np.where(np.isnan(last.selectivity), -np.inf, last.selectivity)
    preferred = np.where(last.dead, np.inf, last.preferred)
    keys = [(preferred[row] if order == "class" else 0, -selectivity[row], row)
            for row in range(len(last.units))]
    expected = [int(last.units[row]) for *_, row in sorted(keys)]
    size = (layer["tile_height"], layer["tile_width"])
    seen = [hovered_channel(page, frame, tile, layer["columns"], size, layer["gutter"])
            for tile in range(4)]
    assert seen == expected[:4]
    screenshot(page, "sorted_by_%s" % order)


def listed_layers(url):
    """The demo run's layer entries as ./layers lists them."""
    with urllib.request.urlopen(url + "/data/plugin/activations/layers?run=" + RUN) as answer:
        return json.load(answer)["runs"][0]["layers"]
