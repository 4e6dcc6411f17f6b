"""`tba.export` / `tb-activations export` from real training runs: every format read back,
colours held against the tab's own JavaScript in Chromium, errors, interruption, file names."""

import csv
import os
import pathlib
import re
import tempfile
import unicodedata

import hypothesis
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import strategies
from PIL import Image

import tb_activations as tba
from tb_activations import cli
from tb_activations.exporting import figures
from tb_activations.exporting import files as files_lib
from tb_activations.exporting import run_export
from tb_activations.format import metadata
from tb_activations.reading import reader
from tests import browser_helpers as helpers
from tests import models
from tests.test_epochs import write_hostile_epochs

playwright_api = pytest.importorskip("playwright.sync_api")

FRONTEND = pathlib.Path(__file__).resolve().parent.parent / "frontend"
HOSTILE_RUN = helpers.HOSTILE_RUN
PLAIN_RUN = "plain"
ORIGIN = "http://frontend.test"


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Two real fits: the hostile-named run (steps 0, 4, 8; its 2 epochs end at 4 and 8),
    and `plain` (steps 0, 2; its one epoch ends at 2)."""
    root = tmp_path_factory.mktemp("export_logs")
    hostile = models.train_and_log(root / HOSTILE_RUN, epochs=2, probe_size=2)
    plain = models.train_and_log(root / PLAIN_RUN, epochs=1, samples=128, probe_size=3,
                                 tensorboard=False)
    return root, {HOSTILE_RUN: hostile, PLAIN_RUN: plain}


@pytest.fixture(scope="module")
def exported(logdir, tmp_path_factory):
    """Every format of every run, with the decoded values: (result, index rows)."""
    out = tmp_path_factory.mktemp("export_out")
    result = tba.export(logdir[0], out, values=True, progress=False)
    with open(result.index, newline="", encoding="utf-8") as file:
        return result, list(csv.DictReader(file))


def rows_of(rows, run, format_name):
    return [row for row in rows if row["run"] == run and row["format"] == format_name]


def test_index_lists_every_file_under_its_real_names(logdir, exported):
    result, rows = exported
    for run, trained in logdir[1].items():
        pngs = rows_of(rows, run, "png")
        probe = len(trained.probe)
        assert len(pngs) == len(trained.layers) * len(trained.steps) * probe
        assert {row["layer"] for row in pngs} == set(trained.layers)
        assert {int(row["step"]) for row in pngs} == set(trained.steps)
        assert len(rows_of(rows, run, "gif")) == len(trained.layers) * probe
        assert len(rows_of(rows, run, "npz")) == len(trained.layers)
    assert [row["file"] for row in rows if row["format"] == "html"] == ["activations.html"]
    files = {row["file"] for row in rows}
    on_disk = {path.relative_to(result.folder).as_posix()
               for path in pathlib.Path(result.folder).rglob("*") if path.is_file()}
    assert files == on_disk - {"index.csv"}
    assert result.files == len(rows)


def test_file_names_sort_by_step_and_are_safe(exported):
    _, rows = exported
    for row in rows_of(rows, HOSTILE_RUN, "png"):
        run_folder, layer_folder, name = row["file"].split("/")
        assert run_folder == files_lib.safe_name(HOSTILE_RUN, set())
        assert not set('<>:"/\\|?*') & set(run_folder)
        assert layer_folder == row["layer"]
        assert name == "step-%06d_sample-%s.png" % (int(row["step"]), row["sample"])


def test_png_figures_decode_and_carry_their_title(exported):
    result, rows = exported
    for row in rows_of(rows, HOSTILE_RUN, "png"):
        with Image.open(os.path.join(result.folder, row["file"])) as image:
            image.load()
            assert image.mode == "RGB" and image.width >= 480
            epoch = 1 if int(row["step"]) <= 4 else 2  # as Keras's console counts them
            assert image.text["Title"] == "%s · epoch %d · step %s · sample %s" % (
                row["layer"], epoch, row["step"], row["sample"])
            assert image.text["Description"].startswith("run %s · %s · output ("
                                                        % (HOSTILE_RUN, row["layer_class"]))


def test_png_shows_the_grid_in_the_tab_colours(logdir, exported):
    """The tiles of a figure are the grid coloured as colour_grid colours it, enlarged."""
    result, rows = exported
    row = next(r for r in rows_of(rows, PLAIN_RUN, "png") if r["layer"] == "conv1"
               and r["step"] == "2" and r["sample"] == "1")
    record = next(r for r in tba.read_activations(logdir[0], run=PLAIN_RUN, layer="conv1")
                  if r.step == 2 and r.sample == 1)
    figure = np.asarray(Image.open(os.path.join(result.folder, row["file"])).convert("RGB"))
    layout = reader.layer_layout(record.tiling)
    cmap = figures.colormap("viridis")
    shown = figures.display_ranges("channel", record.ranges, None, False)
    rgba = figures.colour_grid(record.image, record.ranges, record.tiling,
                               figures.tile_index(layout), shown, cmap)
    plan = figures.plan_figure(layout, True)
    tile = rgba[:layout.tile_height, :layout.tile_width, :3]
    enlarged = np.repeat(np.repeat(tile, plan.zoom, axis=0), plan.zoom, axis=1)
    top = plan.grid_top + plan.label_height
    left = 12
    drawn = figure[top:top + enlarged.shape[0], left:left + enlarged.shape[1]]
    np.testing.assert_array_equal(drawn, enlarged)
    assert {tuple(c) for c in tile.reshape(-1, 3)} <= {tuple(c) for c in cmap.table}


def test_gif_has_one_frame_per_exported_step_with_the_step_on_it(logdir, exported,
                                                                  tmp_path):
    result, rows = exported
    steps = logdir[1][HOSTILE_RUN].steps
    for row in rows_of(rows, HOSTILE_RUN, "gif"):
        with Image.open(os.path.join(result.folder, row["file"])) as gif:
            assert gif.n_frames == len(steps)
            assert gif.info["loop"] == 0
    partial = tba.export(logdir[0], tmp_path, run=PLAIN_RUN, layers="dense", steps="last",
                         sample=0, formats="gif", progress=False)
    with open(partial.index, newline="", encoding="utf-8") as file:
        (row,) = list(csv.DictReader(file))
    with Image.open(os.path.join(tmp_path, row["file"])) as gif:
        assert gif.n_frames == 1
    frames = tba.export(logdir[0], tmp_path / "two", run=HOSTILE_RUN, layers="conv1",
                        steps=[0, "last"], sample=1, formats=["gif"], progress=False)
    gif_path = next(pathlib.Path(frames.folder).rglob("*.gif"))
    with Image.open(gif_path) as gif:
        assert gif.n_frames == 2
        first = np.asarray(gif.convert("RGB"))
        gif.seek(1)
        second = np.asarray(gif.convert("RGB"))
    # The frames differ in their title line (the step) as well as in their tiles.
    assert (first[:40] != second[:40]).any()


def test_npz_holds_what_read_activations_reads(logdir, exported):
    result, rows = exported
    for run, trained in logdir[1].items():
        for row in rows_of(rows, run, "npz"):
            with np.load(os.path.join(result.folder, row["file"]),
                         allow_pickle=False) as arrays:
                records = list(tba.read_activations(logdir[0], run=run, layer=row["layer"]))
                samples = len(trained.probe)
                channels = records[0].statistics["min"].shape[0]
                assert list(arrays["fields"]) == list(metadata.STAT_FIELDS)
                np.testing.assert_array_equal(arrays["steps"], trained.steps)
                np.testing.assert_array_equal(  # Keras's epoch index of each step
                    arrays["epochs"], [0, 0, 1] if run == HOSTILE_RUN else [0, 0])
                np.testing.assert_array_equal(arrays["samples"], np.arange(samples))
                statistics = arrays["statistics"]
                assert statistics.shape == (len(trained.steps), samples, channels, 7)
                values = arrays["values"]
                assert values.shape == (len(trained.steps), samples) + records[0].image.shape
                for record in records:
                    step = trained.steps.index(record.step)
                    expected = np.stack([record.statistics[field]
                                         for field in metadata.STAT_FIELDS], axis=-1)
                    np.testing.assert_array_equal(statistics[step, record.sample], expected)
                    np.testing.assert_array_equal(arrays["ranges"][step, record.sample],
                                                  record.ranges)
                    np.testing.assert_array_equal(values[step, record.sample],
                                                  record.values())


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(helpers.CHROMIUM):
        pytest.skip("needs Debian's chromium")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=helpers.CHROMIUM,
                                             args=helpers.CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.mark.browser
def test_html_page_draws_its_pictures_and_shows_names_as_text(exported, browser):
    result, _ = exported
    page = browser.new_page()
    dialogs, errors, requests = [], [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(pathlib.Path(result.html).as_uri())
    page.select_option("#run", label=HOSTILE_RUN)
    page.wait_for_function("[...document.querySelectorAll('#layers img, #probes img')]"
                           ".every((img) => img.complete && img.naturalWidth > 0)")
    shown = page.evaluate("""() => ({
        run: document.getElementById("run-name").textContent,
        options: [...document.querySelectorAll("#run option")].map((o) => o.textContent),
        layers: [...document.querySelectorAll("section.layer h3")].map((h) => h.textContent),
        grids: document.querySelectorAll("#layers .grid img").length,
        probes: document.querySelectorAll("#probes img").length,
        injected: document.querySelectorAll("img[src='x']").length,
        step: document.getElementById("step-value").textContent})""")
    assert shown["run"] == HOSTILE_RUN
    assert sorted(shown["options"]) == sorted([HOSTILE_RUN, PLAIN_RUN])
    assert shown["layers"] == models.SMALL_CNN_DRAWN
    assert shown["grids"] == len(models.SMALL_CNN_DRAWN)
    assert shown["probes"] == 2 and shown["injected"] == 0
    assert shown["step"] == "epoch 2 · step 8"
    page.fill("#step", "0")
    page.dispatch_event("#step", "input")
    assert page.text_content("#step-value") == "epoch 1 · step 0"
    assert dialogs == [] and errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests)
    page.close()


@pytest.fixture(scope="module")
def frontend_page(browser):
    """A page of a made-up origin whose files are frontend/, served by Playwright itself."""
    page = browser.new_page()

    def serve(route):
        name = route.request.url[len(ORIGIN) + 1:]
        body = (FRONTEND / name).read_bytes() if name else b"<!doctype html>"
        route.fulfill(body=body, content_type="text/javascript" if name else "text/html")

    page.route(ORIGIN + "/**", serve)
    page.goto(ORIGIN + "/")
    yield page
    page.close()


@pytest.mark.browser
def test_colour_maps_are_the_tab_tables(frontend_page):
    tables = frontend_page.evaluate("""async (names) => {
        const {colormap} = await import("./colormaps.js");
        const out = {};
        for (const name of names) {
            const cmap = colormap(name);
            out[name] = {table: [...new Uint8Array(cmap.table.buffer)],
                         nonfinite: cmap.nonfiniteCss};
        }
        return out;
    }""", list(figures.COLORMAPS))
    for name in figures.COLORMAPS:
        cmap = figures.colormap(name)
        rgba = np.array(tables[name]["table"], np.uint8).reshape(256, 4)
        np.testing.assert_array_equal(cmap.table, rgba[:, :3], err_msg=name)
        assert tables[name]["nonfinite"] == "#%02x%02x%02x" % cmap.nonfinite


@pytest.mark.browser
@pytest.mark.parametrize("cmap", ["viridis", "diverging"])
@pytest.mark.parametrize("scale", figures.SCALES)
def test_colours_equal_what_the_tab_paints(frontend_page, logdir, cmap, scale):
    """colour_grid against paint.js on a real grid: same pixels, same NaN/Inf colour, same
    meaning of each scaling ("global" is the tab's "all steps": its span is given)."""
    record = next(r for r in tba.read_activations(logdir[0], run=PLAIN_RUN, layer="conv2")
                  if r.sample == 2)
    image = record.image.copy()
    image[3, 2:6] = metadata.NONFINITE_CODE
    shared = (-0.75, 2.5) if scale == "global" else figures.span_of(record.ranges)
    colormap = figures.colormap(cmap)
    shown = figures.display_ranges(scale, record.ranges, shared, colormap.diverging)
    layout = reader.layer_layout(record.tiling)
    ours = figures.colour_grid(image, record.ranges, record.tiling, figures.tile_index(layout),
                               shown, colormap)
    painted = frontend_page.evaluate("""async ([layer, codes, ranges, scale, shared, cmap]) => {
        const {paint} = await import("./paint.js");
        const {Geometry, decodeValues} = await import("./geometry.js");
        const {tileRanges} = await import("./scaling.js");
        const {isDiverging} = await import("./colormaps.js");
        const [height, width] = [codes.length, codes[0].length];
        const grid = {width, height, codes: Uint8Array.from(codes.flat())};
        const geometry = new Geometry(layer, width, height);
        const values = decodeValues(grid, geometry, ranges);
        const mode = scale === "global" ? "steps" : scale;
        const shown = tileRanges(mode, ranges, geometry.tiles, shared, isDiverging(cmap));
        return [...paint(values, grid.codes, geometry, shown, cmap).data];
    }""", [record.tiling, image.tolist(), record.ranges.tolist(), scale, list(shared), cmap])
    np.testing.assert_array_equal(ours, np.array(painted, np.uint8).reshape(ours.shape))


@pytest.mark.browser
def test_labels_are_formatted_as_the_tab_formats_them(frontend_page):
    numbers = [0.0, 1.0, -2.5, 0.123456, 1234.5678, 99999.4, 123456.0, 0.00098765, -4.2e-7,
               12345.6, 1e5, float("nan"), float("inf"), float("-inf")]
    theirs = frontend_page.evaluate("""async (numbers) => {
        const {fmt} = await import("./dom.js");
        return numbers.map((n) => fmt(n === null ? NaN : n));
    }""", [None if np.isnan(n) else (1e309 if n == np.inf else -1e309 if n == -np.inf else n)
           for n in numbers])
    assert [figures.fmt(n) for n in numbers] == theirs


def test_malformed_tags_and_values_are_skipped_with_a_warning_naming_them(tmp_path):
    """A tag whose content is not a layer's, and a value that does not match its content
    (one blob where the probe's PNGs and statistics should be)."""
    model = models.small_cnn()
    probe = models.digits(2)[0]
    bad = metadata.create_summary_metadata({"kind": "layer", "layer": "broken",
                                            "layer_class": "Conv2D", "layout": "cube"})
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        tba.log_activations(model, probe, step=1)
        tf.summary.write(metadata.layer_tag("broken"), tf.constant([b"x"]), step=1,
                         metadata=bad)
        tf.summary.write(metadata.layer_tag("conv1"), tf.constant([b"x"]), step=2)
    with pytest.warns(UserWarning) as caught:
        result = tba.export(tmp_path, tmp_path / "out", formats="npz", progress=False)
    messages = {str(warning.message) for warning in caught}
    assert any(re.match(r"skipping activations tag 'activations/broken' of run 'run': ", m)
               for m in messages)
    assert "skipping step 2 of activations tag 'activations/conv1' of run 'run': 1 blobs, " \
           "expected 2 PNGs and the statistics" in messages
    with open(result.index, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert {row["layer"] for row in rows} == set(models.SMALL_CNN_DRAWN)
    with np.load(os.path.join(result.folder, rows[0]["file"]), allow_pickle=False) as arrays:
        assert arrays["epochs"].tolist() == [-1]  # a custom loop records no epochs


def test_hostile_epoch_records_are_left_out_of_the_export(tmp_path):
    write_hostile_epochs(tmp_path / "run")  # epoch 3 ended at step 5, bad records after it
    with pytest.warns(UserWarning):
        result = tba.export(tmp_path, tmp_path / "out", layers="conv1", formats="png,npz",
                            progress=False)
    with open(result.index, newline="", encoding="utf-8") as file:
        rows = {row["format"]: row for row in csv.DictReader(file)}
    with Image.open(os.path.join(result.folder, rows["png"]["file"])) as image:
        assert image.text["Title"] == "conv1 · epoch 4 · step 1 · sample 0"
    with np.load(os.path.join(result.folder, rows["npz"]["file"]), allow_pickle=False) as arrays:
        assert arrays["epochs"].tolist() == [3] and arrays["steps"].tolist() == [1]


@pytest.mark.parametrize("options, message", [
    ({"run": "nope*"}, r"no run with activation data matches 'nope\*'; the runs with "
                       r"activation data are: .*plain"),
    ({"layers": "conv9*"}, r"no layer matches 'conv9\*'; the layers are: bn1, conv1, conv2"),
    ({"steps": "0,soon"}, r"steps must be"),
    ({"steps": [-1]}, r"steps must be"),
    ({"steps": [5, 7]}, r"none of the steps asked for was logged"),
    ({"sample": "first"}, r"sample must be"),
    ({"sample": 3, "run": HOSTILE_RUN}, r"sample 3 does not exist: layer 'conv1' has 2 probe"),
    ({"cmap": "jet"}, r"cmap must be one of viridis, magma, gray, diverging; got 'jet'"),
    ({"scale": "steps"}, r"scale must be one of channel, layer, global"),
    ({"formats": "png,mp4"}, r"formats must be some of png, gif, npz, html"),
    ({"formats": []}, r"formats must be some of"),
])
def test_bad_requests_are_refused_before_anything_is_written(logdir, tmp_path, options,
                                                             message):
    with pytest.raises(run_export.ExportError, match=message):
        tba.export(logdir[0], tmp_path / "out", progress=False, **options)
    assert not (tmp_path / "out").exists()


def test_a_logdir_without_activation_data(tmp_path):
    with tf.summary.create_file_writer(str(tmp_path / "scalars")).as_default():
        tf.summary.scalar("loss", 1.0, step=0)
    with pytest.raises(run_export.ExportError,
                       match=r"no activation data under .* \(runs with event files: scalars\)"):
        tba.export(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(run_export.ExportError, match=r"is not a directory"):
        tba.export(tmp_path / "missing", tmp_path / "out", progress=False)


def test_an_unwritable_out(logdir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(run_export.ExportError, match=r"cannot write to .*a_file"):
        tba.export(logdir[0], blocker / "out", run=PLAIN_RUN, progress=False)


def test_cli_exports_and_reports_errors_with_exit_code_2(logdir, tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli.main(["export", "--logdir", str(logdir[0]), "--out", str(out), "--run",
                     PLAIN_RUN, "--layers", "conv*", "--steps", "last", "--sample", "1",
                     "--cmap", "magma", "--scale", "global", "--format", "png,npz", "--values"])
    assert code == 0
    assert sorted(path.name for path in (out / PLAIN_RUN / "conv2").iterdir()) == [
        "statistics.npz", "step-000002_sample-1.png"]
    with np.load(out / PLAIN_RUN / "conv1" / "statistics.npz", allow_pickle=False) as arrays:
        assert arrays["values"].shape[:2] == (1, 1)
    assert "Wrote 4 files" in capsys.readouterr().out
    code = cli.main(["export", "--logdir", str(logdir[0]), "--out", str(out), "--cmap", "jet"])
    assert code == 2
    assert "cmap must be one of" in capsys.readouterr().out


def _leftovers(folder):
    return [path for path in pathlib.Path(folder).rglob("*")
            if path.name.startswith(".") or path.name.endswith(".part")]


@pytest.mark.parametrize("target, calls", [
    ("GifWriter.add", 5), ("Temporaries.finish", 7), ("NpzWriter.close", 1)])
def test_an_interrupted_export_leaves_no_partial_file(logdir, tmp_path, monkeypatch, target,
                                                      calls):
    owner_name, method_name = target.split(".")
    owner = getattr(files_lib, owner_name)
    original = getattr(owner, method_name)
    seen = []

    def interrupted(*args, **kwargs):
        seen.append(1)
        if len(seen) == calls:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, method_name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        tba.export(logdir[0], tmp_path, run=HOSTILE_RUN, progress=False)
    assert len(seen) == calls
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "index.csv").exists() and not (tmp_path / "activations.html").exists()
    for finished in [*tmp_path.rglob("*.png"), *tmp_path.rglob("*.gif")]:  # whole files
        with Image.open(finished) as image:
            assert getattr(image, "n_frames", 1) in (1, 3)
            image.seek(getattr(image, "n_frames", 1) - 1)
            image.load()


_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])$", re.I)


def _assert_safe(name):
    assert name and name not in (".", "..")
    assert len(name.encode("utf-8")) <= 96
    assert not set('<>:"/\\|?*\0') & set(name)
    assert not any(unicodedata.category(c).startswith("C") for c in name)
    assert name[0] not in ". " and name[-1] not in ". "
    assert not _RESERVED.match(name.split(".")[0].rstrip(" "))


@hypothesis.given(strategies.lists(strategies.text(), min_size=1, max_size=8))
def test_safe_names_are_safe_non_empty_and_unique(texts):
    taken = set()
    names = [files_lib.safe_name(text, taken) for text in texts]
    for name in names:
        _assert_safe(name)
    assert len({files_lib.name_key(name) for name in names}) == len(names)


@pytest.mark.parametrize("text, expected", [
    ("backbone/block_1", "backbone_block_1"), ("..", "__"), (".hidden", "_hidden"),
    ("CON", "_CON"), ("nul.tar.gz", "_nul.tar.gz"), ("conv1 ", "conv1_"),
    ("a\\b:c", "a_b_c"), ("é", "é"), ("", "_")])
def test_safe_name_examples(text, expected):
    assert files_lib.safe_name(text, set()) == expected


def test_safe_names_of_look_alikes_and_long_names_differ():
    taken = set()
    names = [files_lib.safe_name(text, taken)
             for text in ["Conv", "conv", "a/b", "a_b", "x" * 300, "x" * 301]]
    assert names[:4] == ["Conv", "conv~2", "a_b", "a_b~2"]
    assert names[4] != names[5] and all(len(n.encode()) <= 96 for n in names[4:])


@hypothesis.given(strategies.lists(strategies.text(), min_size=1, max_size=6))
def test_index_cells_never_start_a_formula_and_read_back_as_written(names):
    with tempfile.TemporaryDirectory() as folder:
        temporaries = files_lib.Temporaries()
        index = files_lib.CsvIndex(temporaries, os.path.join(folder, "index.csv"))
        for name in names:
            index.add(run=name, layer=name, layer_class="Dense", step=3, sample=0,
                      format="png", file="f.png")
        index.close()
        with open(os.path.join(folder, "index.csv"), newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    unquoted = [(row["run"][1:] if row["run"].startswith("'") else row["run"]) for row in rows]
    assert unquoted == names
    assert [row["layer"] for row in rows] == [row["run"] for row in rows]
    for row in rows:
        assert not row["run"].startswith(("=", "+", "-", "@", "\t", "\r"))
        assert row["step"] == "3"
