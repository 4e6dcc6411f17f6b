"""End to end: a real Keras model trained with ActivationsCallback, a real TensorBoard (both
data loaders), Debian's Chromium driven by Playwright, looking at the Activations tab.

Screenshots land in test-output/browser/.
"""

import json
import os
import pathlib
import re
import urllib.parse
import urllib.request

import pytest

from tests import browser_helpers as helpers

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(helpers.CHROMIUM), reason="needs Debian's chromium"),
]

SCREENSHOTS = pathlib.Path(__file__).resolve().parent.parent / "test-output" / "browser"
VIEWPORT = {"width": 1366, "height": 768}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs")
    helpers.train_runs(str(path))
    return path


@pytest.fixture(scope="module", params=[False, True], ids=["python_loader", "rust_loader"])
def tensorboard(request, logdir):
    served = helpers.serve(request, logdir)
    helpers.wait_loaded(served["url"], logdir)
    return served


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=helpers.CHROMIUM,
                                             args=helpers.CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Page:
    """A fresh browser page that records dialogs and script errors."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
        self.dialogs = []
        self.errors = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, url):
        self.page.goto(url)
        self.frame = helpers.activations_frame(self.page)
        return self.frame

    def wait_grid(self):
        self.frame.wait_for_selector(".grid-canvas", state="visible")
        return self.grid_pixels()

    def wait_url(self, part, present=True):
        """Until TensorBoard's URL holds `part` (or no longer does, present=False): the tab
        writes the view into it a moment after it changes."""
        self.page.wait_for_function("([part, present]) => location.href.includes(part) === present",
                                    arg=[part, present])
        return self.page.url

    def grid_pixels(self, panel=0):
        canvas = self.frame.query_selector_all(".grid-canvas")[panel]
        return canvas.evaluate(helpers.CANVAS_PIXELS)

    def state(self):
        """What the page shows, read from its controls."""
        f = self.frame
        return {
            "run": f.eval_on_selector(".run-select", "s => s.value"),
            "layer": f.eval_on_selector(".layer-row.selected .layer-name", "e => e.textContent"),
            "sample": f.eval_on_selector_all(
                ".sample", "bs => bs.findIndex(b => b.classList.contains('selected'))"),
            "step": f.eval_on_selector(".step-label", "e => e.dataset.step"),
            "channel": f.eval_on_selector(".channel-title", "e => e.textContent"),
            "cmap": f.eval_on_selector("select[aria-label='Colour map']", "s => s.value"),
            "scale": f.eval_on_selector("select[aria-label='Scaling']", "s => s.value"),
            "compare": f.eval_on_selector("select[aria-label='Step to compare with']",
                                          "s => s.disabled ? null : s.value"),
            "panels": len(f.query_selector_all(".grid-canvas")),
        }

    def screenshot(self, name, tensorboard):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / ("%s_%s.png" % (name, tensorboard["name"]))))

    def close(self):
        assert self.errors == [], "script errors in the page: %s" % self.errors
        assert self.dialogs == [], "dialogs opened: %s" % self.dialogs
        self.page.close()


@pytest.fixture
def page(browser):
    page = Page(browser)
    yield page
    page.close()


def exp1(tensorboard, **state):
    """The TensorBoard URL of the Activations tab showing run exp1 (plus `state`)."""
    parts = ["activations", "p.activations.run=exp1"]
    parts += ["p.activations.%s=%s" % (key, value) for key, value in state.items()]
    return tensorboard["url"] + "/#" + "&".join(parts)


def texts(frame, selector):
    return frame.eval_on_selector_all(selector, "nodes => nodes.map(n => n.textContent)")


def wait_text(frame, selector, text):
    frame.wait_for_function(
        "([selector, text]) => document.querySelector(selector)?.textContent === text",
        arg=[selector, text])


def click_tile(page, tile, layer_tile=(16, 16), columns=2, gutter=1):
    """Clicks the middle of `tile` of the first grid panel."""
    zoom = int(page.frame.eval_on_selector(".grid-area", "e => e.dataset.zoom"))
    height, width = layer_tile
    row, column = divmod(tile, columns)
    x = (column * (width + gutter) + width // 2) * zoom
    y = (row * (height + gutter) + height // 2) * zoom
    page.frame.locator(".grid-canvas").first.click(position={"x": x, "y": y})


def test_tab_lists_layers_and_draws_grid(page, tensorboard):
    page.open(exp1(tensorboard))
    tabs = page.page.inner_text("body")
    assert "ACTIVATIONS" in tabs.upper()
    # The frame may first show "Loading activation runs…"; the grid comes after the layers.
    pixels = page.wait_grid()
    names = texts(page.frame, ".layer-row .layer-name")
    assert names == ["stem", "block_1_conv", "block_1_pool", "block_2_conv", "block_2_relu",
                     "pool", "hidden", "classes"]
    groups = texts(page.frame, ".group-row .layer-name")
    assert groups == ["backbone"]
    assert pixels["colours"] > 8, pixels
    assert (pixels["width"], pixels["height"]) == (33, 33)  # 2x2 tiles of 16 px, 1 px gutter
    assert page.frame.query_selector_all(".sample img")  # the probe pictures
    page.frame.wait_for_selector(".sparsity-chart path.zeros-line", state="attached")
    page.screenshot("grid", tensorboard)

    # ↓ moves to the next layer in the tree.
    page.frame.locator(".layer-tree").click(position={"x": 5, "y": 5})
    page.page.keyboard.press("ArrowDown")
    wait_text(page.frame, ".layer-row.selected .layer-name", "block_1_conv")
    page.frame.wait_for_function("() => document.querySelector('.grid-canvas').width === 50")


def test_slider_changes_step(page, tensorboard):
    page.open(exp1(tensorboard, layer="backbone%2Fblock_1_conv"))
    before = page.wait_grid()
    last = page.state()["step"]
    page.frame.locator(".step-slider").fill("0")
    page.frame.wait_for_selector(".grid-panel.current[data-step='0']")
    assert page.state()["step"] == "0"
    after = page.wait_grid()
    assert after["hash"] != before["hash"]
    page.page.keyboard.press("ArrowRight")
    page.frame.wait_for_function("() => document.querySelector('.step-label').dataset.step === '2'")
    assert page.state()["step"] != last


def test_step_bar_says_which_epoch_a_step_is_in(page, tensorboard):
    """exp1: 3 epochs of 4 batches logged every 2 steps (0, 2, ..., 12); Keras's epoch ends
    at steps 4, 8 and 12 are shown as the console counts them, from 1."""
    frame = page.open(exp1(tensorboard, layer="stem", step="6"))
    wait_text(frame, ".step-label", "epoch 2 · step 6 · 4 of 7")
    ticks = frame.eval_on_selector_all("#step-epoch-ends option",
                                       "options => options.map(o => o.value)")
    assert ticks == ["2", "4"]  # the slider positions of steps 4 and 8, each epoch's last
    frame.locator(".step-slider").fill("0")
    wait_text(frame, ".step-label", "epoch 1 · step 0 · 1 of 7")


def test_png_export_is_the_grid_with_its_caption_and_colour_bar(page, tensorboard, tmp_path):
    from PIL import Image
    import numpy as np

    page.open(exp1(tensorboard, scale="layer", cmap="magma"))
    grid = page.wait_grid()
    zoom = int(page.frame.eval_on_selector(".grid-area", "e => e.dataset.zoom"))
    with page.page.expect_download() as download:
        page.frame.locator("button.export", has_text="PNG").click()
    name = download.value.suggested_filename
    assert name.startswith("activations_exp1_stem_step") and name.endswith("_sample0.png")
    path = tmp_path / name
    download.value.save_as(str(path))
    image = np.asarray(Image.open(path).convert("RGB"))
    height, width = grid["height"] * zoom, grid["width"] * zoom
    assert image.shape[0] > height + 30 and image.shape[1] >= max(width, 256)
    assert len({tuple(p) for p in image[:height, :width].reshape(-1, 3)}) > 8  # the grid
    legend = image[height:]
    bar_rows = [row for row in legend if len({tuple(p) for p in row[:256]}) > 100]
    assert bar_rows, "no row of the legend holds the colour gradient"
    assert (legend[:, 256:] if legend.shape[1] > 256 else legend).min() < 128  # dark text


def test_video_export_records_every_step(page, tensorboard, tmp_path):
    page.open(exp1(tensorboard, step=0))
    page.wait_grid()
    steps = page.frame.eval_on_selector(".step-slider", "s => Number(s.max) + 1")
    with page.page.expect_download(timeout=120000) as download:
        page.frame.locator("button.export", has_text="Video").click()
    assert download.value.suggested_filename == "activations_exp1_stem_steps_sample0.webm"
    path = tmp_path / "steps.webm"
    download.value.save_as(str(path))
    data = path.read_bytes()
    assert data[:4] == bytes.fromhex("1a45dfa3")  # EBML: a WebM container
    assert len(data) > 1000 * steps // 4
    # Back on the step it showed before, with the button usable again.
    page.frame.wait_for_selector(".grid-panel.current[data-step='0']")
    assert page.frame.eval_on_selector("button.export >> text=Video", "b => b.disabled") is False


def test_click_tile_opens_channel_zoom(page, tensorboard):
    page.open(exp1(tensorboard))
    page.wait_grid()
    click_tile(page, 3)
    wait_text(page.frame, ".channel-title", "Channel 3")
    zoomed = page.frame.query_selector(".channel-zoom").evaluate(helpers.CANVAS_PIXELS)
    assert (zoomed["width"], zoomed["height"]) == (16, 16)
    assert zoomed["colours"] > 4
    steps = page.frame.eval_on_selector(".step-slider", "s => Number(s.max) + 1")
    frames = page.frame.query_selector_all(".filmstrip .frame")
    assert len(frames) == steps
    page.frame.wait_for_function(
        "() => [...document.querySelectorAll('.frame-canvas')].some(c => c.width === 16)")
    overlay = page.frame.query_selector(".overlay-canvas").evaluate(helpers.CANVAS_PIXELS)
    assert overlay["colours"] > 4
    page.frame.locator(".channel-zoom").hover(position={"x": 10, "y": 10})
    assert "channel 3" in page.frame.inner_text(".readout")
    page.screenshot("channel", tensorboard)
    # [ and ] move between drawn channels, clamped at the ends; Esc closes.
    page.frame.locator(".layer-tree").focus()
    page.page.keyboard.press("[")
    wait_text(page.frame, ".channel-title", "Channel 2")
    for _ in range(3):
        page.page.keyboard.press("]")
    wait_text(page.frame, ".channel-title", "Channel 3")
    page.page.keyboard.press("Escape")
    page.frame.wait_for_selector(".channel-zoom", state="hidden")


def test_url_round_trip(page, browser, tensorboard):
    page.open(tensorboard["url"] + "/#activations")
    frame = page.frame
    frame.select_option(".run-select", "exp1")
    frame.locator(".layer-row", has_text="block_2_conv").click()
    frame.locator(".sample").nth(2).click()
    page.wait_grid()
    frame.locator(".step-slider").fill("3")
    frame.select_option("select[aria-label='Colour map']", "magma")
    frame.select_option("select[aria-label='Scaling']", "layer")
    frame.locator("input[aria-label='Compare with another step']").check()
    frame.select_option("select[aria-label='Step to compare with']", "0")
    frame.wait_for_function("() => document.querySelectorAll('.grid-canvas').length === 3")
    click_tile(page, 4, layer_tile=(8, 8), columns=3)
    wait_text(frame, ".channel-title", "Channel 4")
    page.page.wait_for_timeout(300)
    shown = page.state()
    assert shown == {"run": "exp1", "layer": "block_2_conv", "sample": 2, "step": "6",
                     "channel": "Channel 4", "cmap": "magma", "scale": "layer", "compare": "0",
                     "panels": 3}
    pixels = [page.grid_pixels(i) for i in range(3)]
    page.wait_url("p.activations.channel=4")
    link = page.wait_url("p.activations.layer=backbone%2Fblock_2_conv")
    page.screenshot("compare", tensorboard)

    reopened = Page(browser)
    try:
        reopened.open(link)
        reopened.wait_grid()
        reopened.frame.wait_for_function(
            "() => document.querySelectorAll('.grid-canvas').length === 3")
        wait_text(reopened.frame, ".channel-title", "Channel 4")
        assert reopened.state() == shown
        assert [reopened.grid_pixels(i) for i in range(3)] == pixels
    finally:
        reopened.close()


def test_hostile_names_stay_text(page, tensorboard):
    page.open(tensorboard["url"] + "/#activations")
    frame = page.frame
    frame.select_option(".run-select", helpers.HOSTILE_RUN)
    wait_text(frame, ".layer-row.selected .layer-name", helpers.HOSTILE_LAYER)
    options = texts(frame, ".run-select option")
    assert helpers.HOSTILE_RUN in options
    assert frame.inner_text(".layer-path") == helpers.HOSTILE_LAYER
    # The Rust data server cannot key a run name holding '"': the plugin reads that run's
    # event files itself, so it is drawn on both loaders.
    assert page.wait_grid()["colours"] > 4
    click_tile(page, 1)
    wait_text(frame, ".channel-title", "Channel 1")
    page.page.wait_for_timeout(500)
    for document in (page.page, frame):
        assert document.query_selector_all("img[src=x]") == []
        assert document.query_selector_all("[onerror]") == []
    assert page.dialogs == []
    page.screenshot("hostile", tensorboard)


def test_grid_codes_decode_exactly(page, tensorboard, logdir):
    """The browser reads back every stored code: colour management must not touch them."""
    import tb_activations as tba

    records = tba.read_activations(str(logdir), run="exp1", layer="backbone/block_1_conv")
    record = next(r for r in records if r.sample == 1 and r.step == 4)
    page.open(exp1(tensorboard))
    page.wait_grid()
    codes = page.frame.evaluate("""async () => {
        const {api} = await import("./static/api.js");
        const entry = (await api.steps("exp1", "backbone/block_1_conv")).steps.find((s) => s.step === 4);
        const grid = await api.grid("exp1", "backbone/block_1_conv", entry, 1);
        return {width: grid.width, height: grid.height, codes: Array.from(grid.codes)};
    }""")
    assert (codes["height"], codes["width"]) == record.image.shape
    assert codes["codes"] == record.image.ravel().tolist()


def test_vectors_without_probe_and_nonfinite_values(page, tensorboard):
    page.open(tensorboard["url"] + "/#activations&p.activations.run=vectors"
              "&p.activations.layer=broken")
    frame = page.frame
    pixels = page.wait_grid()
    # No picture for plain-vector inputs: samples are numbered, and the page says why.
    assert frame.query_selector_all(".sample img") == []
    assert len(frame.query_selector_all(".sample")) == 3
    assert "no probe picture" in frame.inner_text(".samples")
    # Written by a custom loop, without epoch records: the step alone, no epoch ticks.
    wait_text(frame, ".step-label", "2 · 3 of 3")
    assert frame.query_selector_all("#step-epoch-ends option") == []
    # 30 units as a 6 x 5 block; units 3 (NaN) and 5 (Inf) drawn in the NaN colour.
    assert (pixels["width"], pixels["height"]) == (6, 5)
    nonfinite = frame.evaluate("""() => {
        const canvas = document.querySelector(".grid-canvas");
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        const magenta = [];
        for (let i = 0; i < data.length; i += 4) {
            if (data[i] === 255 && data[i + 1] === 0 && data[i + 2] === 255) magenta.push(i / 4);
        }
        return magenta;
    }""")
    assert nonfinite == [3, 5]
    zoom = int(frame.eval_on_selector(".grid-area", "e => e.dataset.zoom"))
    frame.locator(".grid-canvas").first.click(position={"x": 3.5 * zoom, "y": 0.5 * zoom})
    wait_text(frame, ".channel-title", "Unit 3")
    assert frame.inner_text(".channel-stats") == "value\nNaN"
    # Units past the 8 kept (max_channels=8) have no statistics of their own: the panel says so.
    frame.locator(".grid-canvas").first.click(position={"x": 2.5 * zoom, "y": 3.5 * zoom})
    wait_text(frame, ".channel-title", "Unit 20")
    assert frame.inner_text(".channel-stats") == ""
    assert frame.inner_text(".channel-note") == ("No statistics for this unit at step 2: they "
                                                 "are kept for 8 of 30 units (the first).")
    page.screenshot("vectors", tensorboard)


# --- Try an input: the live view of exp1's saved model ---

LIVE_TIMEOUT = 90000  # the first live request imports TensorFlow inside TensorBoard


def open_live(page, tensorboard, **state):
    """exp1 in the live view, once the saved model has answered the blank pad."""
    page.open(exp1(tensorboard, **state))
    page.wait_grid()
    button = page.frame.locator(".live-toggle")
    page.frame.wait_for_function("() => !document.querySelector('.live-toggle').disabled")
    assert button.inner_text() == "Try an input"
    button.click()
    page.frame.wait_for_selector(".grid-panel.current[data-source='live']", timeout=LIVE_TIMEOUT)
    page.frame.wait_for_selector(".output-row")
    return page.frame


def grid_changes(page, before, timeout=LIVE_TIMEOUT):
    """Waits until the first grid panel's pixels differ from `before`; returns them."""
    page.frame.wait_for_function("""([script, hash]) => {
        const canvas = document.querySelector(".grid-panel.current[data-source='live'] .grid-canvas");
        return canvas && new Function("return " + script)()(canvas).hash !== hash;
    }""", arg=[helpers.CANVAS_PIXELS, before["hash"]], timeout=timeout)
    return page.grid_pixels()


def pad_pixels(frame):
    """The drawing pad's gray levels, row by row."""
    return frame.eval_on_selector(".drawing-canvas", """canvas => {
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        const rows = [];
        for (let y = 0; y < canvas.height; y++) {
            const row = [];
            for (let x = 0; x < canvas.width; x++) row.push(data[(y * canvas.width + x) * 4]);
            rows.push(row);
        }
        return rows;
    }""")


def scores(frame):
    return texts(frame, ".output-value")


def test_live_view_answers_a_drawn_stroke(page, tensorboard):
    frame = open_live(page, tensorboard, layer="stem")
    assert texts(frame, ".output-label") == helpers.CLASS_NAMES
    assert len(frame.query_selector_all(".output-row.top")) == 1
    assert frame.inner_text(".live-model").startswith("model saved at step 12 (")
    assert frame.query_selector(".live-warning").is_hidden()  # saved at the end: the latest step
    assert (frame.eval_on_selector(".drawing-canvas", "c => [c.width, c.height]")) == [16, 16]
    assert frame.eval_on_selector(".step-slider", "s => s.disabled")
    blank_grid, blank_scores = page.grid_pixels(), scores(frame)
    assert sum(map(sum, pad_pixels(frame))) == 0

    box = frame.locator(".drawing-canvas").bounding_box()
    page.page.mouse.move(box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.15)
    page.page.mouse.down()
    for i in range(1, 12):
        page.page.mouse.move(box["x"] + box["width"] * (0.15 + 0.05 * i),
                             box["y"] + box["height"] * (0.15 + 0.02 * i))
    page.page.mouse.up()
    drawn = pad_pixels(frame)
    assert drawn[2][2] > 200 and drawn[15][0] == 0  # the stroke, and untouched background
    drawn_grid = grid_changes(page, blank_grid)
    assert drawn_grid["colours"] > 4
    frame.wait_for_function("(before) => [...document.querySelectorAll('.output-value')]"
                            ".map(e => e.textContent).join() !== before", arg=",".join(blank_scores))
    page.wait_url("live=1")
    page.screenshot("live", tensorboard)

    # The answer holds every layer: the list still navigates, the channel panel still zooms.
    frame.locator(".layer-row", has_text="block_2_conv").click()
    frame.wait_for_function("() => document.querySelector(\".grid-panel.current[data-source='live'] "
                            ".grid-canvas\")?.width === 26")  # 3 x 8-pixel tiles, 2 gutters
    click_tile(page, 4, layer_tile=(8, 8), columns=3)
    wait_text(frame, ".channel-title", "Channel 4")
    assert frame.query_selector(".overlay-canvas").evaluate(helpers.CANVAS_PIXELS)["colours"] > 2
    assert frame.query_selector(".filmstrip-box").is_hidden()  # a drawn input has no steps

    # Back to the logged steps.
    frame.locator(".live-toggle").click()
    frame.wait_for_selector(".grid-panel.current[data-step='12']")
    assert frame.query_selector(".live-panel").is_hidden()
    page.wait_url("live=1", present=False)


def test_live_view_reads_an_uploaded_png_in_the_browser(page, tensorboard, tmp_path):
    import numpy as np
    from tb_activations.rendering.grid_images import encode_png

    picture = np.zeros((16, 16), np.uint8)
    picture[2:7, 10:15] = 255  # a blob top right, as exp1 was trained on
    picture[12, 1] = 100
    path = tmp_path / "blob.png"
    path.write_bytes(encode_png(picture))
    frame = open_live(page, tensorboard, layer="stem")
    before_grid, before_scores = page.grid_pixels(), scores(frame)
    frame.set_input_files("input.picture-file", str(path))
    frame.wait_for_function("() => document.querySelector('.drawing-canvas')"
                            ".getContext('2d').getImageData(12, 4, 1, 1).data[0] === 255")
    assert pad_pixels(frame) == picture.tolist()
    grid_changes(page, before_grid)
    frame.wait_for_function("(before) => [...document.querySelectorAll('.output-value')]"
                            ".map(e => e.textContent).join() !== before", arg=",".join(before_scores))


def test_live_view_starts_from_a_probe_and_compares_with_a_logged_step(page, tensorboard):
    frame = open_live(page, tensorboard, layer="stem", sample=2)
    before = page.grid_pixels()
    start = frame.locator("button.from-probe")
    assert start.inner_text() == "Start from probe sample 2"
    start.click()
    probe = frame.eval_on_selector(".sample.selected img", """img => {
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        const context = canvas.getContext("2d");
        context.drawImage(img, 0, 0);
        const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
        return Array.from({length: canvas.height}, (_, y) =>
            Array.from({length: canvas.width}, (_, x) => data[(y * canvas.width + x) * 4]));
    }""")
    assert pad_pixels(frame) == probe
    grid_changes(page, before)

    frame.locator("input[aria-label='Compare with another step']").check()
    frame.select_option("select[aria-label='Step to compare with']", "0")
    frame.wait_for_function("() => document.querySelectorAll('.grid-canvas').length === 3")
    assert frame.query_selector(".grid-panel.compare").get_attribute("data-step") == "0"
    captions = texts(frame, ".grid-panel figcaption")
    assert captions[:2] == ["drawn input", "step 0"]
    assert captions[2].startswith("drawn input − step 0")
    live, logged, difference = (page.grid_pixels(i) for i in range(3))
    assert live["hash"] != logged["hash"] and difference["colours"] > 4
    page.screenshot("live_compare", tensorboard)


def test_live_errors_show_in_the_page(page, browser, tensorboard):
    # A run without a saved model: the button says why it is off.
    other = Page(browser)
    try:
        other.open(tensorboard["url"] + "/#activations&p.activations.run=vectors")
        other.wait_grid()
        other.frame.wait_for_function(
            "() => document.querySelector('.live-toggle').title.includes('model.keras')")
        assert other.frame.eval_on_selector(".live-toggle", "b => b.disabled")
    finally:
        other.close()

    # A failing live request: its message in the banner, the tab still answering.
    live_route = re.compile(r"/data/plugin/activations/live\?")
    page.page.route(live_route, lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"error": "the model is busy <b>elsewhere</b>"}'))
    page.open(exp1(tensorboard))
    page.wait_grid()
    page.frame.wait_for_function("() => !document.querySelector('.live-toggle').disabled")
    page.frame.locator(".live-toggle").click()
    wait_text(page.frame, ".banner", "The saved model could not answer: the model is busy <b>elsewhere</b>")
    assert page.frame.query_selector_all(".banner b") == []
    page.page.unroute(live_route)
    page.frame.locator(".drawing-canvas").click(position={"x": 40, "y": 40})
    page.frame.wait_for_selector(".grid-panel.current[data-source='live']", timeout=LIVE_TIMEOUT)
    assert page.frame.query_selector(".banner").is_hidden()


def live_layers(urls):
    """The `layer` parameters of each live request URL."""
    return [urllib.parse.parse_qs(urllib.parse.urlparse(url).query).get("layer") for url in urls]


def test_live_asks_for_the_layer_shown_and_notes_every_layer(page, tensorboard):
    live_urls = []
    page.page.on("request", lambda r: live_urls.append(r.url) if "/activations/live?" in r.url else None)
    frame = open_live(page, tensorboard, layer="stem")
    assert live_urls and live_layers(live_urls) == [["stem"]] * len(live_urls)
    # Every layer's statistics for the drawn input, from the answer's summaries: one sample,
    # so channels all zero are "silent", never "dead".
    frame.wait_for_function("() => [...document.querySelectorAll('.layer-row .layer-note')]"
                            ".every(n => n.title.startsWith('for the drawn input'))")
    notes = texts(frame, ".layer-row .layer-note")
    assert len(notes) == 8 and all(note.startswith("sparsity ") for note in notes), notes
    assert not any("dead" in note for note in notes)
    page.screenshot("live_notes", tensorboard)

    # Another layer: one request, for it; back to the first: none (kept for this input).
    asked = len(live_urls)
    frame.locator(".layer-row", has_text="block_2_conv").click()
    frame.wait_for_function("() => document.querySelector(\".grid-panel.current[data-source='live'] "
                            ".grid-canvas\")?.width === 26")
    assert live_layers(live_urls[asked:]) == [["backbone/block_2_conv"]]
    frame.locator(".layer-row", has_text="stem").click()
    frame.wait_for_function("() => document.querySelector(\".grid-panel.current[data-source='live'] "
                            ".grid-canvas\")?.width === 33")
    page.page.wait_for_timeout(300)
    assert len(live_urls) == asked + 1

    # Logged steps again: the notes are the step's, from the run's overview.
    frame.locator(".live-toggle").click()
    frame.wait_for_function("() => [...document.querySelectorAll('.layer-row .layer-note')]"
                            ".every(n => n.title.startsWith('at this step'))")


# --- "All steps" scaling from the server's series, and the overview of a run ---

def get_json(tensorboard, route, **query):
    url = "%s/data/plugin/activations/%s?%s" % (tensorboard["url"], route,
                                                urllib.parse.urlencode(query))
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def test_all_steps_scaling_spans_the_series_without_reading_every_step(page, tensorboard):
    stats_steps, series_layers = [], []

    def record(request):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(request.url).query)
        if "/activations/stats?" in request.url:
            stats_steps.append(int(query["step"][0]))
        elif "/activations/stats_series?" in request.url:
            series_layers.append(query["layer"][0])

    page.page.on("request", record)
    page.open(exp1(tensorboard, layer="backbone%2Fblock_1_conv", step=4, scale="steps"))
    page.wait_grid()
    wait_text(page.frame, ".colorbar-note", "all steps")
    series = get_json(tensorboard, "stats_series", run="exp1", layer="backbone/block_1_conv")
    low = min(entry["low"] for entry in series["steps"] if entry["low"] is not None)
    high = max(entry["high"] for entry in series["steps"] if entry["high"] is not None)
    ticks = texts(page.frame, ".colorbar .tick")
    assert float(ticks[0]) == pytest.approx(low, rel=1e-3, abs=1e-9)
    assert float(ticks[2]) == pytest.approx(high, rel=1e-3, abs=1e-9)
    assert low < high and len(series["steps"]) == 7
    # One series request (the sparsity chart shares it), and the stats of the step shown only.
    assert series_layers == ["backbone/block_1_conv"]
    assert set(stats_steps) == {4}


HEAT_ROW = 18  # pixels per layer in the overview's heat map (views/overview.js)


def heat_cell(frame, row, column):
    """The page position of the middle of the overview heat map's cell (row, column)."""
    box = frame.locator(".overview-heat").bounding_box()
    columns = int(frame.eval_on_selector(".overview-heat", "c => c.dataset.columns"))
    return box["x"] + (column + 0.5) * box["width"] / columns, box["y"] + (row + 0.5) * HEAT_ROW


def heat_colour(frame, row, column):
    """The colour drawn in the middle of the heat map's cell (row, column), as #rrggbb."""
    return frame.eval_on_selector(".overview-heat", """(canvas, [row, column, rowHeight]) => {
        const x = Math.floor((column + 0.5) * canvas.width / Number(canvas.dataset.columns));
        const data = canvas.getContext("2d").getImageData(x, Math.floor((row + 0.5) * rowHeight), 1, 1).data;
        return "#" + [0, 1, 2].map((i) => data[i].toString(16).padStart(2, "0")).join("");
    }""", [row, column, HEAT_ROW])


def test_overview_shows_when_a_layer_dies_and_opens_it_there(page, tensorboard):
    steps = get_json(tensorboard, "overview", run=helpers.DYING_RUN)["steps"]
    assert steps == [0, 2, 4, 6, 8, 10, 12]
    page.open(tensorboard["url"] + "/#activations&p.activations.run=" + helpers.DYING_RUN)
    page.wait_grid()
    frame = page.frame
    frame.locator(".overview-toggle").click()
    frame.wait_for_selector(".overview-heat[data-columns='7']")
    assert frame.query_selector(".grid-area").is_hidden()
    page.wait_url("p.activations.overview=1")
    # Every layer in model order; the bars at the selected (last) step.
    assert texts(frame, ".overview-row .overview-name") == ["stem", "doomed", "pool", "classes"]
    assert texts(frame, ".overview-row .overview-bar.dead .value") == ["0/4", "6/6", "6/6", "0/3"]
    assert frame.eval_on_selector(".overview-heat", "c => c.dataset.rows") == "4"

    # The doomed row, step by step: what the hover says and the colour drawn.
    colours = frame.evaluate("""async () => {
        const o = await import("./static/overview_values.js");
        return [o.heatColour(0), o.heatColour(1)];
    }""")
    for column, step in enumerate(steps):
        page.page.mouse.move(*heat_cell(frame, 1, column))
        frame.wait_for_function(
            "(step) => document.querySelector('.overview .tooltip:not([hidden])')"
            "?.textContent.includes(`step ${step}`)", arg=step)
        tip = frame.inner_text(".overview .tooltip")
        assert tip.startswith("doomed\nstep %d\n" % step), tip
        dead = step >= helpers.DYING_FROM
        assert ("dead 6 of 6 channels (100%)" in tip) == dead, tip
        assert heat_colour(frame, 1, column) == (colours[1] if dead else colours[0])
    page.screenshot("overview", tensorboard)

    # A click on a cell opens that layer at that step in the grid.
    page.page.mouse.click(*heat_cell(frame, 1, steps.index(8)))
    frame.wait_for_selector(".grid-panel.current[data-step='8']")
    assert frame.inner_text(".layer-path") == helpers.DYING_LAYER
    assert page.state()["layer"] == helpers.DYING_LAYER
    assert frame.query_selector(".overview").is_hidden()
    page.wait_url("p.activations.overview", present=False)
    # Its six channels, all zero in every probe sample: dead, in the grid and under it.
    assert len(frame.query_selector_all(".grid-panel.current .mark.dead")) == 6
    assert frame.inner_text(".status").startswith(
        "6 of 6 channels silent in this sample · 6 dead in every sample.")
    note = frame.locator(".layer-row", has_text=helpers.DYING_LAYER).locator(".layer-note")
    assert note.inner_text() == "sparsity 100% · 6 dead"

    # A row opens its layer at the selected step.
    frame.locator(".overview-toggle").click()
    frame.locator(".overview-row[data-layer='stem']").click()
    frame.wait_for_selector(".grid-panel.current[data-step='8']")
    assert frame.inner_text(".layer-path") == "stem"


def test_dead_channels_are_outlined_whose_zero_fraction_was_stored_just_under_one(
        page, tensorboard):
    """Runs logged before the writer's fix hold 0.99999994 for a map of zeros alone (a graph
    divided by a reciprocal): its minimum and maximum, both 0, still say it is silent."""
    lowered = []

    def stored_under_one(route):
        response = route.fetch()
        body = response.json()
        zero = body["fields"].index("zero_fraction")
        for sample in body["samples"]:
            for row in sample["stats"]:
                if row[zero] == 1.0:
                    row[zero] = 0.99999994
                    lowered.append(row)
        route.fulfill(response=response, json=body)

    page.page.route(re.compile(r"/data/plugin/activations/stats\?"), stored_under_one)
    page.open(tensorboard["url"] + "/#activations&p.activations.run=%s&p.activations.layer=%s"
              "&p.activations.step=8" % (helpers.DYING_RUN, helpers.DYING_LAYER))
    page.frame.wait_for_selector(".grid-panel.current .mark.dead")
    assert lowered
    assert len(page.frame.query_selector_all(".grid-panel.current .mark.dead")) == 6


def test_overview_of_a_run_without_one_says_why(page, tensorboard):
    page.page.route(re.compile(r"/data/plugin/activations/overview\?"), lambda route: route.fulfill(
        status=404, content_type="application/json",
        body='{"error": "run \\"old\\" has no overview: <b>logged before</b>"}'))
    page.open(exp1(tensorboard, overview=1))
    wait_text(page.frame, ".overview-message",
              'No overview for this run: run "old" has no overview: <b>logged before</b>')
    assert page.frame.query_selector_all(".overview b") == []
    assert page.frame.query_selector(".overview-body").is_hidden()
