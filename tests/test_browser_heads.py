"""The tab's head and query pickers for attention layers: timm ViTs (random weights, small
images) and a tiny BERT logged by tb_activations.torch.log_activations, in a real TensorBoard,
used in Chromium."""

import json
import re
import time
import urllib.parse
import urllib.request

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

import tb_activations.torch as tbat  # noqa: E402
from tests import browser_helpers  # noqa: E402
from tests.test_token_labels import EXPECTED  # noqa: E402
from tests.test_token_labels import log_bert_run  # noqa: E402

IMAGE = 96  # a 6x6 patch grid and the class token: 37 tokens
PATCHES = IMAGE // 16
TOKENS = 1 + PATCHES * PATCHES
FIRST = "blocks/0/attn:attention"
SECOND = "blocks/1/attn:attention"
BERT_ATTENTION = "encoder/layer/0/attention/self:attention"


def vit_and_probe(**model_options):
    """vit_tiny at 96x96 whose block 0 head 0 queries nothing (uniform attention: a dead head
    whose tile every value of is its maximum, which read as "saturated" as an activation);
    `model_options` go to timm.create_model (depth=2: a shorter one)."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=IMAGE,
                              **model_options).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight.mul_(3.0)
        model.blocks[0].attn.qkv.weight[:64].zero_()
        model.blocks[0].attn.qkv.bias[:64].zero_()
    # Pictures a reader can follow under the overlays: a bright square on a dark gradient.
    probe = torch.linspace(0, 0.4, IMAGE).expand(2, 3, IMAGE, IMAGE).clone()
    probe[0, :, 16:48, 40:72] = 1.0
    probe[1, 1:, 48:80, 8:40] = 0.9
    return model, probe


def block_attention(model, probe, block):
    """(samples, heads, T, T) softmax probabilities of `block`, computed by timm's own
    non-fused path (the reference the tab's numbers must match)."""
    attention = model.blocks[block].attn
    seen = []
    handle = attention.attn_drop.register_forward_hook(lambda module, args, out: seen.append(out))
    fused, attention.fused_attn = attention.fused_attn, False
    try:
        with torch.no_grad():
            model(probe)
    finally:
        attention.fused_attn = fused
        handle.remove()
    return seen[0].numpy()


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Runs `vit` (every query and key kept: tile cap 64 >= 37 tokens), `vit_averaged` (tile
    cap 16: rows and columns average 3 tokens) and `bert` (token labels); the reference
    attention of `vit`'s block 1."""
    root = tmp_path_factory.mktemp("heads")
    model, probe = vit_and_probe()
    layers = ["blocks/0/attn", "blocks/1/attn"]
    for step in (0, 10):
        tbat.log_activations(model, probe, step=step, log_dir=str(root / "vit"), layers=layers,
                             max_tile=64)
    tbat.log_activations(model, probe, step=10, log_dir=str(root / "vit_averaged"),
                         layers=layers, max_tile=16)
    log_bert_run(root / "bert", tmp_path_factory.mktemp("vocab"))
    return {"root": root, "reference": block_attention(model, probe, 1)}


@pytest.fixture(scope="module")
def served(logged):
    pytest.importorskip("playwright.sync_api")
    with browser_helpers.served_page(logged["root"]) as (page, url, errors):
        yield page, url, errors
    assert errors == []


@pytest.fixture(autouse=True)
def blank_page(request):
    """Each browser test starts from a blank page: a failed one leaves TensorBoard's page
    behind, and a hash-only navigation would keep its stale iframe."""
    if "served" in request.fixturenames:
        request.getfixturevalue("served")[0].goto("about:blank")


def layer_entry(url, run, path):
    """The layer as /layers lists it (grid geometry)."""
    query = urllib.parse.urlencode({"run": run})
    with urllib.request.urlopen("%s/data/plugin/activations/layers?%s" % (url, query)) as answer:
        return next(entry for entry in json.load(answer)["runs"][0]["layers"]
                    if entry["layer"] == path)


def point_at_tile(page, frame, entry, head, x, y):
    """Moves the pointer over pixel (x, y) of head `head`'s tile in the grid canvas."""
    column, row = head % entry["columns"], head // entry["columns"]
    grid_x = column * (entry["tile_width"] + entry["gutter"]) + x
    grid_y = row * (entry["tile_height"] + entry["gutter"]) + y
    canvas = frame.query_selector(".grid-canvas")
    width, height = canvas.evaluate("c => [c.width, c.height]")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + (grid_x + 0.5) / width * box["width"],
                    box["y"] + (grid_y + 0.5) / height * box["height"])


def open_attention(page, url, run, path, **state):
    frame = browser_helpers.open_layer(page, url, run, path, **state)
    frame.wait_for_selector(".grid-canvas")
    frame.wait_for_selector(".head-panel:not([hidden])")
    return frame


def fmt(value):
    """A number as the tab writes it (dom.js fmt, for magnitudes 1e-3..1e5)."""
    return repr(float("%.4g" % value))


def layer_notes(frame):
    return dict(frame.evaluate("""() => [...document.querySelectorAll('.layer-row')]
        .map((row) => [row.layerEntry.layer, row.querySelector('.layer-note').textContent])"""))


@pytest.mark.browser
def test_a_picked_head_shows_its_numbers_and_attention_gets_head_flags_not_channel_flags(
        served, logged, tmp_path):
    import tb_activations as tba

    page, url, errors = served
    steps = {}
    for item in tba.read_heads(str(logged["root"]), run="vit"):
        steps.setdefault(item.step, {})[item.layer] = item
    heads = steps[10][FIRST]
    assert heads.dead.tolist() == [True, False, False]
    frame = open_attention(page, url, "vit", FIRST, step=10)
    frame.wait_for_selector(".marks .mark.dead")
    # Head 0 attends uniformly: every value at its tile's maximum, which the channel flags read
    # as "saturated"; it is a dead head, and the only outline.
    marks = frame.eval_on_selector_all(".grid-panel.current .marks .mark",
                                       "nodes => nodes.map((n) => [n.className, n.title])")
    assert marks == [["mark dead", "head 0: dead head"]]
    assert frame.is_hidden(".colorbar-legend .swatch.saturated")
    assert "1 of 3 heads dead" in frame.inner_text(".status")
    notes = layer_notes(frame)
    assert notes[FIRST] == notes[FIRST + "_map"] == "3 heads, 1 dead"
    second_dead = int(steps[10][SECOND].dead.sum())
    assert notes[SECOND] == "3 heads" + (", %d dead" % second_dead if second_dead else "")
    assert not any(notes[path].startswith("sparsity") for path in (FIRST, SECOND))
    assert frame.is_hidden(".sparsity")
    frame.select_option(".head-picker", "0")
    frame.wait_for_function("() => document.querySelector('.channel-title').textContent === 'Head 0'")
    assert frame.inner_text(".channel-flags") == "dead head"
    assert frame.is_visible(".head-panel .head-dead")
    numbers = frame.inner_text(".head-numbers")
    assert "head 0, sample 0" in numbers
    assert "%s nats (100%% of uniform)" % fmt(heads.entropy[0][0]) in numbers
    assert "yes: uniform attention, or all on one token" in numbers
    frame.select_option(".head-picker", "2")
    frame.wait_for_function("() => document.querySelector('.channel-title').textContent === 'Head 2'")
    assert frame.is_hidden(".head-panel .head-dead")
    numbers = frame.inner_text(".head-numbers")
    assert "%s patches" % fmt(heads.distance[0][2]) in numbers
    assert "largest probability %s" % fmt(heads.peak[0][2]) in numbers.replace("\n", " ").replace("\t", " ")
    page.screenshot(path=str(tmp_path / "picked_head.png"))
    # An attention map's head: its map over the probe picture, its numbers, no query rows.
    page.goto("about:blank")
    frame = open_attention(page, url, "vit", FIRST + "_map", step=10, channel=1)
    frame.wait_for_selector(".channel-panel .overlay:not([hidden]) .overlay-canvas")
    assert frame.eval_on_selector(".head-picker", "s => s.value") == "1"
    assert "head 1, sample 0" in frame.inner_text(".head-numbers")
    assert frame.is_hidden(".query-box")
    assert frame.eval_on_selector_all(".grid-panel.current .marks .mark.dead",
                                      "nodes => nodes.map((n) => n.title)") == ["head 0: dead head"]
    page.goto("about:blank")
    assert errors == []


@pytest.mark.browser
def test_dead_heads_are_outlined_when_the_overview_comes_while_the_grid_loads(served):
    """A loaded machine answers in any order: here ./overview (the dead heads) while the
    first grid is still on its way."""
    page, url, errors = served
    held = {"overview": [], "grid": []}
    released = set()

    def hold(route):
        kind = "overview" if "/overview?" in route.request.url else "grid"
        if kind in released:
            route.continue_()
        else:
            held[kind].append(route)

    def release(kind):
        released.add(kind)
        for route in held[kind]:
            route.continue_()

    page.route(re.compile(r".*/data/plugin/activations/(overview|grid)\?.*"), hold)
    try:
        page.goto(url + "/#activations&p.activations.run=vit&p.activations.layer="
                  + urllib.parse.quote(FIRST, safe="") + "&p.activations.step=10")
        deadline = time.monotonic() + 30
        while not (held["overview"] and held["grid"]) and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert held["overview"] and held["grid"], "the tab never asked for both"
        release("overview")
        frame = next(f for f in page.frames if "/data/plugin_entry.html" in f.url)
        frame.wait_for_function("""() => [...document.querySelectorAll('.layer-note')]
            .some((note) => note.textContent === '3 heads, 1 dead')""")
        release("grid")
        frame.wait_for_selector(".grid-panel.current .marks .mark.dead")
        titles = frame.eval_on_selector_all(".grid-panel.current .marks .mark",
                                            "nodes => nodes.map((n) => n.title)")
        assert titles == ["head 0: dead head"]
    finally:
        page.unroute_all()
        page.goto("about:blank")
    assert errors == []


@pytest.mark.browser
def test_a_query_row_shows_its_attention_over_the_patch_grid(served, logged, tmp_path):
    page, url, errors = served
    reference = logged["reference"][0, 1, 7]  # sample 0, head 1, query 7
    frame = open_attention(page, url, "vit", SECOND, step=10, channel=1)
    point_at_tile(page, frame, layer_entry(url, "vit", SECOND), 1, 3, 7)
    frame.wait_for_function("() => document.querySelector('.query-caption').textContent === 'head 1 · query 7'")
    assert frame.is_visible(".query-stage .query-canvas") and frame.is_hidden(".query-bars")
    assert frame.is_hidden(".query-note")
    assert frame.is_visible(".query-own")  # query 7 is patch 6: outlined on the grid
    high = float(frame.eval_on_selector(".query-canvas", "c => c.dataset.high"))
    assert abs(high - reference[1:].max()) < 2e-3
    prefix = frame.inner_text(".query-prefix")
    shown = float(re.search(r"key 0 \(prefix token\): (\d+)%", prefix).group(1))
    assert abs(shown - 100 * reference[0]) <= 1.5
    assert "the %d×%d patches" % (PATCHES, PATCHES) in prefix
    page.screenshot(path=str(tmp_path / "query.png"))
    # The picked head's enlarged tile answers the pointer the same way.
    zoom = frame.wait_for_selector(".channel-zoom")
    box = zoom.bounding_box()
    height = zoom.evaluate("c => c.height")
    page.mouse.move(box["x"] + 2, box["y"] + (2.5 / height) * box["height"])
    frame.wait_for_function("() => document.querySelector('.query-caption').textContent === 'head 1 · query 2'")
    page.goto("about:blank")
    assert errors == []


@pytest.mark.browser
def test_an_averaged_row_says_so_and_keys_off_a_grid_are_bars_named_by_token(served):
    page, url, errors = served
    entry = layer_entry(url, "vit_averaged", SECOND)
    rows, columns = entry["downscale"]
    assert rows > 1 and columns > 1
    frame = open_attention(page, url, "vit_averaged", SECOND)
    point_at_tile(page, frame, entry, 0, 0, 1)
    caption = "head 0 · queries %d–%d averaged" % (rows, 2 * rows - 1)
    frame.wait_for_function("text => document.querySelector('.query-caption').textContent === text",
                            arg=caption)
    assert "one row per %d queries" % rows in frame.inner_text(".query-note")
    keys = frame.eval_on_selector_all(".query-bar .query-key", "nodes => nodes.map((n) => n.textContent)")
    assert keys[0] == "keys 0–%d" % (columns - 1) and len(keys) == entry["tile_width"]
    page.goto("about:blank")
    frame = open_attention(page, url, "bert", BERT_ATTENTION, sample=0)
    point_at_tile(page, frame, layer_entry(url, "bert", BERT_ATTENTION), 0, 0, 3)
    frame.wait_for_function("text => document.querySelector('.query-caption').textContent === text",
                            arg="head 0 · query 3 '%s'" % EXPECTED[0][3])
    keys = frame.eval_on_selector_all(".query-bar .query-key", "nodes => nodes.map((n) => n.textContent)")
    assert keys == ["key %d '%s'" % (index, token) for index, token in enumerate(EXPECTED[0])]
    masses = frame.eval_on_selector_all(".query-bar .query-mass",
                                        "nodes => nodes.map((n) => parseFloat(n.textContent))")
    assert abs(sum(masses) - 100) <= len(masses)  # each rounded to a percent
    assert frame.is_hidden(".query-stage")
    page.goto("about:blank")
    assert errors == []


@pytest.mark.browser
def test_a_head_map_cell_opens_that_layer_with_that_head_picked(served):
    page, url, errors = served
    page.goto(url + "/#activations&p.activations.run=vit&p.activations.overview=1")
    frame = browser_helpers.activations_frame(page)
    canvas = frame.wait_for_selector(".head-map-canvas[data-rows='2']")
    # The overview's "dead" column counts an attention layer's dead heads, not channels.
    row = frame.wait_for_selector(".overview-row[data-layer='%s']" % FIRST)
    assert row.query_selector(".overview-bar.dead .value").inner_text() == "1/3"
    assert "3 heads, 1 dead" in row.get_attribute("title")
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + 28 * 2 + 14, box["y"] + 18 * 1 + 9)  # block 1, head 2
    frame.wait_for_function("path => document.querySelector('.layer-path')?.textContent === path",
                            arg=SECOND)
    frame.wait_for_function("() => document.querySelector('.channel-title').textContent === 'Head 2'")
    assert frame.eval_on_selector(".head-picker", "s => s.value") == "2"
    assert frame.is_hidden(".overview")
    page.goto("about:blank")
    assert errors == []


def overview_answer(url, run):
    query = urllib.parse.urlencode({"run": run})
    with urllib.request.urlopen("%s/data/plugin/activations/overview?%s" % (url, query)) as answer:
        return json.load(answer)


@pytest.mark.browser
def test_the_overview_counts_an_attention_layers_dead_heads_as_its_dead_units(
        served, logged, tmp_path):
    import tb_activations as tba

    page, url, errors = served
    answer = overview_answer(url, "vit")
    layers = {layer["layer"]: layer for layer in answer["layers"]}
    read = {item.step: item for item in tba.read_heads(str(logged["root"]), run="vit",
                                                       layer=FIRST)}
    want = [int(read[step].dead.sum()) for step in answer["steps"]]
    assert want == [1, 1]  # block 0's head 0 queries nothing: uniform, dead
    for path in (FIRST, FIRST + "_map"):
        assert layers[path]["dead_heads"] == want
        assert layers[path]["dead_channels"] == [0, 0]  # probabilities are never all zero
    assert all("dead_heads" not in layer for path, layer in layers.items()
               if not path.endswith((":attention", ":attention_map")))

    page.goto(url + "/#activations&p.activations.run=vit&p.activations.overview=1"
              "&p.activations.heat=dead")
    frame = browser_helpers.activations_frame(page)
    heat = frame.wait_for_selector(".overview-heat[data-rows]")
    names = frame.eval_on_selector_all(".overview-row", "rows => rows.map((r) => r.dataset.layer)")
    row = names.index(FIRST)
    bar = frame.inner_text(".overview-row[data-layer='%s'] .overview-bar.dead .value" % FIRST)
    assert bar == "1/3"
    box = heat.bounding_box()
    colours = heat.evaluate("""(canvas, rows) => rows.map((row) => Array.from(
        canvas.getContext('2d').getImageData(2, row * 18 + 9, 1, 1).data))""",
                            [row, names.index(FIRST + "_map"), names.index("blocks/0/attn")])
    page.mouse.move(box["x"] + 2, box["y"] + row * 18 + 9)
    frame.wait_for_function("() => document.querySelector('.overview .tooltip:not([hidden])')"
                            "?.textContent.includes('%s')" % FIRST)
    tip = frame.inner_text(".overview .tooltip")
    page.screenshot(path=str(tmp_path / "overview_dead_heads.png"))
    page.goto("about:blank")
    assert errors == []
    assert "dead 1 of 3 heads (33%)" in tip
    assert colours[0] == colours[1] != colours[2]  # a third dead is not the cream of none
