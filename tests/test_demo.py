"""The README's first command, as a newcomer runs it (without the serving part)."""

import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import tb_activations as tba
from tb_activations import demo
from tb_activations.format import model_file
from tb_activations.reading import reader


@pytest.mark.slow
def test_demo_trains_logs_and_saves_a_model_the_tab_can_run(tmp_path):
    command = shutil.which("tb-activations", path=os.path.dirname(sys.executable))
    assert command, "the tb-activations console script is not installed next to python"
    done = subprocess.run([command, "demo", "--no-serve", "--epochs", "1", "--probes", "3",
                           "--logdir", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "validation accuracy" in done.stdout
    run_dir = tmp_path / "mnist_cnn"
    records = list(reader.read_activations(str(run_dir), layer="conv1"))
    assert {record.sample for record in records} == {0, 1, 2}
    assert records[0].step == 0 and records[-1].step > 0
    with zipfile.ZipFile(model_file.model_path(str(run_dir))) as archive:
        record = model_file.read_record(archive)
    assert record["class_names"] == [str(digit) for digit in range(10)]
    assert record["inputs"][0]["name"] == "digit" and record["inputs"][0]["shape"] == [28, 28, 1]
    # Its reference set: the validation digits, labelled, passed at the start and each epoch's
    # end, so the tab can say which digits each conv2 channel responds to.
    reference = tba.read_reference(str(tmp_path), run="mnist_cnn")["mnist_cnn"]
    _, labels = demo.load_digits_28()
    validation = len(labels) - int(0.85 * len(labels))
    assert len(reference.labels) == len(reference.thumbnails) == validation
    assert reference.class_names == [str(digit) for digit in range(10)]
    assert np.array_equal(np.bincount(reference.labels, minlength=10),
                          np.bincount(labels[np.random.default_rng(0).permutation(len(labels))]
                                      [int(0.85 * len(labels)):], minlength=10))
    conv2 = reference.layers["conv2"]
    assert [step.step for step in conv2][0] == 0 and len(conv2) == 2  # start, end of epoch 1
    assert conv2[-1].content["receptive_field"]["exact"] is True
    assert np.all(np.isfinite(conv2[-1].selectivity[~conv2[-1].dead]))
