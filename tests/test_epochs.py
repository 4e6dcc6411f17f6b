"""Epoch records (docs/format.md "Epochs and steps"): the rule that puts a logged step in an
epoch, the check of an untrusted record, what read_run gives the export, and a run directory
that cannot be read."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import hypothesis
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import strategies as st

import tb_activations as tba
from tb_activations.format import metadata
from tb_activations.reading import epochs
from tb_activations.reading import reader
from tb_activations.rendering import steps as steps_lib
from tests import models


@hypothesis.given(st.dictionaries(st.integers(0, 10_000), st.integers(0, 50), max_size=8),
                  st.lists(st.integers(0, 11_000), max_size=30))
def test_a_step_is_in_the_epoch_whose_end_comes_first_at_or_after_it(records, steps):
    ends = sorted(records.items())
    found = epochs.epochs_of(steps, list(reversed(ends)))
    assert len(found) == len(steps)
    for step, epoch in zip(steps, found):
        if not ends:
            assert epoch is None
            continue
        before = [end for end in ends if end[0] < step]
        after = [end for end in ends if end[0] >= step]
        if after:  # logged at or before this epoch's end, after the previous one's
            assert epoch == after[0][1]
        else:  # past the last recorded end: the next epoch, under way or cut short
            assert epoch == before[-1][1] + 1


def test_keras_fit_records_each_epoch_end_at_its_optimizer_step(trained_run):
    """conftest's fit: 2 epochs of 4 batches, update_freq="epoch"."""
    found = [item for item in reader.read_run(trained_run.log_dir)
             if isinstance(item, reader.EpochStep)]
    assert [(item.step, item.epoch) for item in found] == [(4, 0), (8, 1)]
    assert epochs.epochs_of(trained_run.steps, [(4, 0), (8, 1)]) == [0, 0, 1]
    assert epochs.step_text(8, 1) == "epoch 2 · step 8" and epochs.step_text(8, None) == "step 8"


GOOD = json.dumps({"epoch": 3}).encode()
BAD_RECORDS = {
    "not JSON": [b"{epoch"],
    "expected {\"epoch\": E}": [json.dumps({"epoch": -1}).encode()],
    "an integer": [json.dumps({"epoch": True}).encode()],
    "0..2147483647": [json.dumps({"epoch": 2**40}).encode()],
    "not a blob": ["text"],
    "2 values": [GOOD, GOOD],
    "more than the 256": [json.dumps({"epoch": 1, "pad": "x" * 300}).encode()],
}


@pytest.mark.parametrize("reason", sorted(BAD_RECORDS))
def test_a_bad_record_is_refused_saying_what_was_expected(reason):
    with pytest.raises(ValueError, match=reason.replace("{", r"\{").replace("(", r"\(")):
        epochs.parse_record(BAD_RECORDS[reason])
    assert epochs.parse_record([GOOD]) == 3


@hypothesis.given(st.binary(max_size=300))
def test_any_bytes_are_an_epoch_or_a_value_error(blob):
    try:
        epoch = epochs.parse_record([blob])
    except ValueError:
        return
    assert isinstance(epoch, int) and 0 <= epoch < 2**31


def _write_epoch(tag, values, step, dtype=tf.string):
    ((_, summary_metadata, _),) = steps_lib.render_epoch_end(0)
    tf.summary.write(tag, tf.constant(values, dtype=dtype), step=step, metadata=summary_metadata)


def write_hostile_epochs(run_dir):
    """A run whose epoch tag holds one good record (epoch 3 ended at step 5), every bad
    record of BAD_RECORDS that a string tensor can hold, and a foreign tag of kind epoch."""
    model = models.small_cnn((8, 8, 1))
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        assert tba.log_activations(model, np.ones((1, 8, 8, 1), np.float32), step=1)
        _write_epoch(metadata.EPOCH_TAG, [GOOD], step=5)
        for step, values in enumerate(BAD_RECORDS.values(), start=10):
            if all(isinstance(value, bytes) for value in values):
                _write_epoch(metadata.EPOCH_TAG, values, step=step)
        _write_epoch("activations_epochs_foreign", [json.dumps({"epoch": 0}).encode()], step=1)


def test_read_run_leaves_bad_records_out_naming_them(tmp_path):
    write_hostile_epochs(tmp_path)
    with pytest.warns(UserWarning) as caught:
        found = [(item.step, item.epoch) for item in reader.read_run(tmp_path)
                 if isinstance(item, reader.EpochStep)]
    assert found == [(5, 3)]
    warned = "\n".join(str(warning.message) for warning in caught)
    assert "activations_epochs_foreign" in warned and "belong under tag" in warned
    for step in (10, 11, 12, 13, 15, 16):
        assert "step %d of activations tag 'activations_epochs'" % step in warned


_READ_AS_UNPRIVILEGED = textwrap.dedent("""
    import sys, warnings
    from tb_activations.reading import reader
    import tb_activations as tba
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = [name for name, _ in reader.run_directories(sys.argv[1])]
        records = {record.run for record in tba.read_activations(sys.argv[1])}
    print(runs, sorted(records))
    print([str(warning.message) for warning in caught])
""")


def test_an_unreadable_run_directory_is_skipped_with_a_warning(tmp_path):
    """Root reads any directory, so the reader runs in a child without the capabilities
    that bypass file permissions (setpriv drops them), as any other user would."""
    model = models.small_cnn((8, 8, 1))
    for run in ("kept", "locked"):
        with tf.summary.create_file_writer(str(tmp_path / run)).as_default():
            assert tba.log_activations(model, np.ones((1, 8, 8, 1), np.float32), step=0)
    (tmp_path / "locked").chmod(0)
    command = [sys.executable, "-c", _READ_AS_UNPRIVILEGED, str(tmp_path)]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] + command
    try:
        if os.access(tmp_path / "locked", os.R_OK) and os.geteuid() != 0:
            pytest.skip("this file system lets the user read a directory of mode 000")
        done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    except FileNotFoundError:
        pytest.skip("needs setpriv (util-linux) to read as a user without root's capabilities")
    finally:
        (tmp_path / "locked").chmod(0o755)
    if "setpriv" in done.stderr and done.returncode:
        pytest.skip("setpriv may not drop capabilities here: %s" % done.stderr.strip())
    assert done.returncode == 0, done.stderr
    runs, warned = done.stdout.strip().splitlines()[-2:]
    assert runs == "['kept'] ['kept']"
    assert "skipping directory %s of the logdir: it cannot be read (Permission denied)" % (
        pathlib.Path(tmp_path) / "locked") in warned
