"""What export writes of the reference steps (docs/export.md): reference.npz held against
read_reference, a montage per kept unit whose crops are the stored thumbnails, and both in
the HTML page; `tb-activations export` writes them by default."""

import csv
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import tb_activations as tba
from tb_activations.exporting import montage
from tb_activations.exporting import reference_export

RUN = "mnist_cnn"
LAYER = "conv2"


@pytest.fixture(scope="module")
def exported(demo_run, tmp_path_factory):
    """The demo run's conv2 exported by the command line with its defaults (every format)."""
    logdir = os.path.dirname(demo_run)
    out = tmp_path_factory.mktemp("reference_export")
    command = os.path.join(os.path.dirname(sys.executable), "tb-activations")
    done = subprocess.run([command, "export", "--logdir", logdir, "--out", str(out),
                           "--layers", LAYER, "--steps", "last"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "index.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return out, rows, tba.read_reference(logdir, run=RUN)[RUN]


def test_reference_npz_holds_every_reference_step_as_read(exported):
    out, rows, read = exported
    steps = read.layers[LAYER]
    with np.load(out / RUN / LAYER / reference_export.REFERENCE_NAME,
                 allow_pickle=False) as arrays:
        assert arrays["steps"].tolist() == [step.step for step in steps]
        for name in ("units", "top_index", "top_value", "top_position", "zero_fraction",
                     "dead", "class_mean", "class_count", "preferred"):
            assert np.array_equal(arrays[name], np.stack([getattr(step, name)
                                                          for step in steps])), name
        assert np.array_equal(arrays["selectivity"], np.stack(
            [step.selectivity for step in steps]).astype(np.float32), equal_nan=True)
        assert np.array_equal(arrays["labels"], read.labels)
        assert arrays["class_names"].tolist() == read.class_names
    assert [row["file"] for row in rows if row["format"] == "npz"] == [
        "%s/%s/statistics.npz" % (RUN, LAYER), "%s/%s/%s" % (RUN, LAYER,
                                                           reference_export.REFERENCE_NAME)]


def test_a_montage_per_kept_unit_shows_its_top_inputs_cropped(exported):
    out, rows, read = exported
    last = read.layers[LAYER][-1]
    montages = [row for row in rows if row["format"] == "montage"]
    digits = len(str(last.content["units_total"] - 1))
    assert [row["file"] for row in montages] == [
        "%s/%s/%s/%s" % (RUN, LAYER, reference_export.MONTAGE_FOLDER,
                         reference_export.montage_name(unit, digits)) for unit in last.units]
    assert {row["step"] for row in montages} == {str(last.step)}
    row = int(np.nanargmax(last.selectivity))
    picture = np.asarray(Image.open(out / montages[row]["file"]).convert("L"))
    # The first crop: pixel (1, 1) of what the unit's maximum sees in its best input, enlarged
    # to the montage's cell.
    index, position = last.top_index[row][0], last.top_position[row][0]
    (top, left, bottom, right), _ = montage.receptive_box(
        last.content["receptive_field"], list(position), 28, 28)
    thumbnail = read.thumbnails[index]
    zoom = montage._CELL / max(math.ceil(bottom) - math.floor(top),
                               math.ceil(right) - math.floor(left))
    y0 = montage._MARGIN + montage._TITLE_SIZE + montage._TEXT_SIZE + 3 * montage._GAP
    x0 = montage._MARGIN
    assert picture[int(y0 + 1.5 * zoom), int(x0 + 1.5 * zoom)] == thumbnail[
        math.floor(top) + 1, math.floor(left) + 1]


def test_the_page_shows_the_montages_under_their_layer(exported):
    out, _, read = exported
    page = (out / "activations.html").read_text(encoding="utf-8")
    last = read.layers[LAYER][-1]
    assert len(re.findall(r'data-kind="montage"', page)) == len(last.units)
    manifest = page.split('id="manifest">', 1)[1].split("</script>", 1)[0]
    assert '"references": [[0, 0, {"step": %d' % last.step in manifest
    assert "responds most to: " in manifest or "dead on the reference set" in manifest
