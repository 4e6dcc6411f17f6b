"""Export of the attention views (issue 16): each head's attention map and the attention
rollout laid over the probe picture (PNG and the HTML page), per-head numbers in the npz and
the page, the rollout under its shown name. A two-block timm ViT at 96 px, random weights,
logged for real and read back through TensorBoard's loader."""

import csv
import io
import math
import pathlib

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

import tb_activations as tba  # noqa: E402
import tb_activations.torch as tbat  # noqa: E402
from tb_activations.exporting import figures  # noqa: E402
from tb_activations.reading import reader  # noqa: E402
from tests.test_browser_heads import IMAGE  # noqa: E402  (a 6x6 patch grid)
from tests.test_browser_heads import vit_and_probe  # noqa: E402

HEADS = 3
MAP = "blocks/0/attn:attention_map"
ATTENTION = "blocks/0/attn:attention"
ROLLOUT = "VisionTransformer:attention_rollout"


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Run `vit`, steps 0 and 10: block 0's head 0 queries nothing (uniform: dead)."""
    root = tmp_path_factory.mktemp("attention_export")
    model, probe = vit_and_probe(depth=2)
    for step in (0, 10):
        tbat.log_activations(model, probe, step=step, log_dir=str(root / "vit"))
    tbat.flush()
    return root


@pytest.fixture(scope="module")
def exported(logdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("attention_out")
    result = tba.export(str(logdir), out, layers=["blocks/0/attn:*", ROLLOUT], progress=False)
    with open(result.index, newline="", encoding="utf-8") as file:
        return result, list(csv.DictReader(file))


def probe_pictures(logdir):
    item = next(item for item in reader.read_run(str(logdir / "vit"))
                if isinstance(item, reader.ProbeStep))
    return [np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) for png in item.pictures]


def expected_panel(record, tile, picture):
    """What the tab's channel panel shows at opacity 0.6: the tile's values coloured by its
    own range (viridis), each map cell stretched over IMAGE / 6 picture pixels."""
    assert np.isfinite(record.values()[:6, :6]).all()
    tiling = record.tiling
    height, width, gutter = tiling["tile_height"], tiling["tile_width"], tiling["gutter"]
    row, column = divmod(tile, tiling["columns"])
    values = record.values()[row * (height + gutter):row * (height + gutter) + height,
                             column * (width + gutter):column * (width + gutter) + width]
    low, high = record.ranges[tile]
    # A flat tile (the dead head's uniform attention) takes the map's first colour.
    position = (np.clip((values.astype(np.float64) - low) / (high - low), 0, 1) if high > low
                else np.zeros(values.shape))
    colours = figures.colormap("viridis").table[np.floor(position * 255 + 0.5).astype(int)]
    stretched = np.repeat(np.repeat(colours, IMAGE // height, 0), IMAGE // width, 1)
    return np.floor(0.4 * picture + 0.6 * stretched.astype(np.float64) + 0.5)


def panel_at(figure, tiling, tile):
    """The picture of panel `tile` in an overlay figure (figures.plan_cells' places)."""
    plan = figures.plan_cells(tiling["columns"], tiling["rows"], IMAGE, IMAGE, True)
    row, column = divmod(tile, tiling["columns"])
    x = figures._MARGIN + column * (plan.cell_width + figures._GAP)
    y = plan.grid_top + row * (plan.cell_height + figures._GAP) + plan.label_height
    return figure[y:y + IMAGE, x:x + IMAGE].astype(np.float64)


def test_each_head_and_the_rollout_are_drawn_over_the_probe_picture(logdir, exported):
    result, rows = exported
    overlaid = [row for row in rows if row["format"] == "overlay"]
    assert sorted({row["layer"] for row in overlaid}) == sorted([MAP, ROLLOUT])
    assert len(overlaid) == 2 * 2 * 2  # two layers, two steps, two samples
    pictures = probe_pictures(logdir)
    records = {(record.layer, record.step, record.sample): record
               for layer in (MAP, ROLLOUT) for record in tba.read_activations(
                   str(logdir), layer=layer)}
    for row in overlaid:
        record = records[(row["layer"], int(row["step"]), int(row["sample"]))]
        with Image.open(pathlib.Path(result.folder, row["file"])) as image:
            figure = np.asarray(image.convert("RGB"))
            title = image.text["Title"]
        tiles = HEADS if row["layer"] == MAP else 1
        for tile in range(tiles):
            want = expected_panel(record, tile, pictures[record.sample])
            got = panel_at(figure, record.tiling, tile)
            assert np.abs(got - want).max() <= 1, (row["file"], tile)
        if row["layer"] == ROLLOUT:  # shown by its name, the path stays in index.csv
            assert title.startswith("attention rollout over the probe picture · step %s"
                                    % row["step"])
        else:
            assert title == "%s over the probe picture · step %s · sample %s" % (
                MAP, row["step"], row["sample"])
    assert not any(row["format"] == "overlay" and row["layer"] == ATTENTION for row in rows)
    grid_titles = [Image.open(pathlib.Path(result.folder, row["file"])).text["Title"]
                   for row in rows if row["format"] == "png" and row["layer"] == ROLLOUT]
    assert grid_titles and all(title.startswith("attention rollout · ") for title in grid_titles)


def test_the_npz_of_an_attention_map_carries_its_heads_numbers(logdir, exported):
    result, rows = exported
    read = {item.step: item for item in tba.read_heads(str(logdir), layer=ATTENTION)}
    assert read[0].dead.tolist()[0] is True
    for layer in (ATTENTION, MAP):
        (npz,) = [row["file"] for row in rows if row["format"] == "npz" and row["layer"] == layer]
        with np.load(pathlib.Path(result.folder, npz), allow_pickle=False) as arrays:
            assert arrays["head_steps"].tolist() == [0, 10]
            for index, step in enumerate((0, 10)):
                np.testing.assert_allclose(arrays["head_entropy"][index], read[step].entropy)
                np.testing.assert_allclose(arrays["head_distance"][index], read[step].distance)
                np.testing.assert_array_equal(arrays["head_dead"][index], read[step].dead)


@pytest.mark.browser
def test_the_page_shows_the_overlays_and_each_heads_numbers(logdir, exported):
    pytest.importorskip("playwright.sync_api")
    from tests import browser_helpers as helpers

    result, _ = exported
    read = {item.step: item for item in tba.read_heads(str(logdir), layer=ATTENTION)}
    with helpers.chromium_page(1200, 900) as (page, errors):
        page.goto(pathlib.Path(result.html).as_uri())
        page.select_option("#sample", "1")
        page.wait_for_function("[...document.querySelectorAll('#layers img')]"
                               ".every((img) => img.complete && img.naturalWidth > 0)")
        sections = page.evaluate("""() => [...document.querySelectorAll('section.layer')].map(
            (s) => ({name: s.querySelector('h3').textContent, path: s.querySelector('h3').title,
                     overlays: s.querySelectorAll('.overlay img').length,
                     rows: [...s.querySelectorAll('table.heads tr')].slice(1).map(
                        (tr) => [...tr.children].map((td) => td.textContent))}))""")
        page.evaluate("document.querySelectorAll('details').forEach((d) => d.open = true)")
        page.screenshot(path=str(pathlib.Path(result.folder, "page.png")), full_page=True)
    assert errors == []
    by_name = {section["name"]: section for section in sections}
    assert by_name["attention rollout"]["path"] == ROLLOUT
    assert by_name["attention rollout"]["overlays"] == 1
    assert by_name[MAP]["overlays"] == 1 and by_name[ATTENTION]["overlays"] == 0
    heads = read[10]  # the page opens at the last step
    for name in (ATTENTION, MAP):
        table = by_name[name]["rows"]
        assert [row[0] for row in table] == [str(head) for head in range(HEADS)]
        for head, row in enumerate(table):
            assert float(row[1]) == pytest.approx(heads.entropy[1][head], rel=1e-3)
            assert row[2] == "%d%%" % round(100 * heads.entropy[1][head] / math.log(heads.keys))
            assert float(row[4]) == pytest.approx(heads.distance[1][head], rel=1e-3)
            assert row[5] == ("dead" if heads.dead[head] else "")
    others = [name for name in by_name if name not in (ATTENTION, MAP)]
    assert others == ["attention rollout"] and all(by_name[name]["rows"] == [] for name in others)
