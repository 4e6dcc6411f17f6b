"""Distributed training: MirroredStrategy `fit`, a MultiWorkerMirroredStrategy custom loop,
and who counts as the chief.

The strategies run in fresh subprocesses (tests/distributed_worker.py): logical devices must be
configured before TensorFlow initialises them, and a multi-worker job needs one process per
worker. Each worker prints `RESULT <json>`; the event files are read back here.
"""

import collections
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_file_loader
from tensorflow.python.distribute import multi_worker_util

import tb_activations as tba
from tb_activations.format import metadata
from tb_activations.keras import distribute
from tb_activations.keras import log as log_lib

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
REPO = os.path.dirname(os.path.dirname(WORKER))
# The worker's model (distributed_worker.build_model): its default layer selection, in order
# (Flatten is a pass-through layer, so it is skipped).
LAYERS = ["conv", "bn", "relu", "pool", "hidden", "logits"]
PROBE_SAMPLES = 2
TIMEOUT = 150


# ---------------------------------------------------------------------------------------------
# Subprocess helpers


def worker_env(**extra):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="-1",
               PYTHONHASHSEED="0", **extra)
    return env


def start_worker(mode, logdir, env):
    return subprocess.Popen([sys.executable, WORKER, mode, str(logdir)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_all(processes, timeout=TIMEOUT):
    """[(returncode, stdout, stderr)]; kills every process and fails if any outlives timeout."""
    deadline = time.monotonic() + timeout
    outputs = []
    try:
        for process in processes:
            remaining = max(deadline - time.monotonic(), 0.1)
            outputs.append(process.communicate(timeout=remaining))
    except subprocess.TimeoutExpired:
        tails = []
        for index, process in enumerate(processes):
            process.kill()
            out, err = process.communicate()
            tails.append("--- worker %d stdout:\n%s\n--- stderr (tail):\n%s"
                         % (index, out[-2000:], err[-4000:]))
        pytest.fail("distributed workers did not finish within %ds (killed):\n%s"
                    % (timeout, "\n".join(tails)))
    return [(process.returncode, out, err) for process, (out, err) in zip(processes, outputs)]


def parse_result(returncode, out, err, name):
    assert returncode == 0, "%s exited with %s:\n%s\n%s" % (name, returncode, out, err[-6000:])
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, "%s printed no RESULT line:\n%s\n%s" % (name, out, err[-4000:])
    return json.loads(lines[0][len("RESULT "):])


def free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def event_files(directory):
    return sorted(os.path.join(root, name) for root, _, names in os.walk(directory)
                  for name in names if name.startswith("events.out.tfevents"))


def activation_values(path):
    """Counter of (tag, step) for every activations value in one event file, read raw (the
    event multiplexer would hide a repeated step by purging, so count here)."""
    found = collections.Counter()
    for event in event_file_loader.EventFileLoader(path).Load():
        for value in event.summary.value:
            if value.tag.startswith((metadata.LAYER_TAG_PREFIX, metadata.PROBE_TAG_PREFIX)):
                found[(value.tag, event.step)] += 1
    return found


def check_records(records, layers, steps):
    """Every layer at exactly `steps`, each (layer, step, sample) once, decodable and finite."""
    seen = collections.Counter((r.layer, r.step, r.sample) for r in records)
    assert set(seen) == {(layer, step, sample) for layer in layers for step in steps
                         for sample in range(PROBE_SAMPLES)}
    assert set(seen.values()) == {1}, "a layer step was written more than once"
    for record in records:
        tiling = record.tiling
        assert record.image.dtype == np.uint8 and record.image.ndim == 2
        assert record.image.size > 0
        assert record.image.shape[0] == (tiling["rows"] * tiling["tile_height"]
                                         + (tiling["rows"] - 1) * tiling["gutter"])
        for field in ("min", "max", "mean", "std", "zero_fraction"):
            assert np.all(np.isfinite(record.statistics[field])), (record.layer, field)
        assert not np.any(record.statistics["nan_count"])
        assert not np.any(record.statistics["inf_count"])
        assert np.all(np.isfinite(record.ranges))
    # The model trains between the first and the last logged step, and the log follows it.
    first = [r for r in records if r.layer == "hidden" and r.step == steps[0]]
    last = [r for r in records if r.layer == "hidden" and r.step == steps[-1]]
    assert not np.allclose(first[0].statistics["mean"], last[0].statistics["mean"])


# ---------------------------------------------------------------------------------------------
# MirroredStrategy: `fit` with the callback unchanged.


@pytest.mark.slow
def test_mirrored_strategy_fit_logs_every_layer_at_global_steps(tmp_path):
    logdir = tmp_path / "logs"
    [(code, out, err)] = wait_all([start_worker("mirrored", logdir, worker_env())])
    result = parse_result(code, out, err, "mirrored worker")

    assert result["replicas"] == 2, result["devices"]
    per_epoch, epochs = result["steps_per_epoch"], result["epochs"]
    expected_steps = {
        # step 0 at train begin, then each epoch's global step (optimizer iterations).
        "epoch": [per_epoch * epoch for epoch in range(epochs + 1)],
        "batch": list(range(0, per_epoch * epochs + 1, result["batch_freq"])),
    }
    for run, steps in expected_steps.items():
        info = result["runs"][run]
        assert info["variables_distributed"], "the model was not built under the strategy"
        assert info["iterations"] == per_epoch * epochs  # one iteration per global batch
        assert info["layers"] == LAYERS
        records = list(tba.read_activations(logdir, run=run))
        assert {r.run for r in records} == {run}
        check_records(records, LAYERS, steps)
        files = event_files(logdir / run)
        assert len(files) == 1
        counts = activation_values(files[0])
        assert counts[(metadata.probe_tag("image"), 0)] == 1
        assert set(counts.values()) == {1}
    assert {r.run for r in tba.read_activations(logdir)} == set(expected_steps)


# ---------------------------------------------------------------------------------------------
# MultiWorkerMirroredStrategy: custom loop, log_activations, only the chief writes.
#
# Keras 3's `fit` does not work under MultiWorkerMirroredStrategy (keras-team/keras#20585), so
# both workers run a custom loop (strategy.run of a replica step that applies the gradients,
# strategy.reduce of the loss) and call log_activations every 2 steps outside strategy.run.
# Each has a default writer, chosen the way Keras's own callbacks choose it: the chief's in
# `logdir`, the non-chief's in `logdir/workertemp_1`, which the worker deletes at the end. So
# the non-chief's log_activations has a writer to write to and must still return False on its
# own is_chief() decision.


def run_multiworker(logdir, attempts=2):
    for attempt in range(attempts):
        ports = free_ports(2)
        cluster = {"worker": ["127.0.0.1:%d" % port for port in ports]}
        processes = []
        for index in range(2):
            config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            processes.append(start_worker("multiworker", logdir,
                                          worker_env(TF_CONFIG=json.dumps(config))))
        outputs = wait_all(processes)
        port_taken = any(code != 0 and "address already in use" in err.lower()
                         for code, _, err in outputs)
        if not port_taken or attempt == attempts - 1:
            return outputs
        for path in event_files(logdir):  # a clean slate for the retry
            os.remove(path)


@pytest.mark.slow
def test_multi_worker_custom_loop_only_the_chief_writes(tmp_path):
    logdir = tmp_path / "logs"
    outputs = run_multiworker(logdir)
    chief, other = [parse_result(code, out, err, "worker %d" % index)
                    for index, (code, out, err) in enumerate(outputs)]

    assert (chief["task_id"], other["task_id"]) == (0, 1)
    assert chief["replicas"] == other["replicas"] == 2
    # The package's chief decision agrees with TensorFlow's, inside and outside the scope.
    assert set(chief["is_chief"].values()) == {True}, chief["is_chief"]
    assert set(other["is_chief"].values()) == {False}, other["is_chief"]

    # Same data and seed on both workers, gradients all-reduced: the same training (checksum
    # of the trainable weights; Keras's BatchNormalization moving statistics are mirrored
    # variables with aggregation NONE, updated from each worker's own batches, so they differ).
    assert chief["iterations"] == other["iterations"] == 6
    assert chief["losses"] == pytest.approx(other["losses"], rel=1e-6)
    assert chief["checksum"] == pytest.approx(other["checksum"], rel=1e-6)

    steps = [0, 2, 4, 6]
    assert [(log["step"], log["returned"]) for log in chief["logs"]] == [(s, True) for s in steps]
    assert len(chief["captures"]) == len(steps) and chief["probe_traced"]
    # The non-chief: False every time, with no forward pass (no capture, probe never traced),
    # hence no collective op; had it run one, the chief would have hung on it.
    assert [(log["step"], log["returned"]) for log in other["logs"]] == [(s, False) for s in steps]
    assert {log["in_scope"] for log in other["logs"]} == {True, False}
    assert other["captures"] == [] and not other["probe_traced"]
    assert other["temp"]["records"] == 0 and len(other["temp"]["files"]) == 1
    assert not os.path.exists(other["writer_dir"])

    # Exactly one writer produced activation event files: the chief's, in logdir itself.
    files = event_files(logdir)
    assert [os.path.dirname(path) for path in files] == [str(logdir)], files
    counts = activation_values(files[0])
    expected = {(metadata.layer_tag(layer), step) for layer in LAYERS for step in steps}
    expected.add((metadata.probe_tag("image"), 0))
    assert set(counts) == expected
    assert set(counts.values()) == {1}, "some step was written twice"

    records = list(tba.read_activations(logdir))
    assert {r.run for r in records} == {"."}
    check_records(records, LAYERS, steps)


# ---------------------------------------------------------------------------------------------
# is_chief(): TensorFlow's rule, from TF_CONFIG or from the strategy in scope.

WORKERS_ONLY = {"worker": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]}
WITH_CHIEF = {"chief": ["127.0.0.1:0"], "worker": ["127.0.0.1:1", "127.0.0.1:2"]}
PS_CLUSTER = {"chief": ["127.0.0.1:0"], "worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:5"]}
WITH_EVALUATOR = {"worker": ["127.0.0.1:1", "127.0.0.1:2"], "evaluator": ["127.0.0.1:9"]}

TASKS = [
    (WORKERS_ONLY, "worker", 0, True),
    (WORKERS_ONLY, "worker", 1, False),
    (WORKERS_ONLY, "worker", 2, False),
    (WITH_CHIEF, "chief", 0, True),
    (WITH_CHIEF, "worker", 0, False),
    (WITH_CHIEF, "worker", 1, False),
    (PS_CLUSTER, "chief", 0, True),
    (PS_CLUSTER, "worker", 0, False),
    (PS_CLUSTER, "ps", 0, False),
    (WITH_EVALUATOR, "worker", 0, True),
    (WITH_EVALUATOR, "evaluator", 0, False),
]


def set_tf_config(monkeypatch, cluster, task_type, index):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": cluster, "task": {"type": task_type, "index": index}}))


@pytest.mark.parametrize("cluster,task_type,index,expected", TASKS)
def test_is_chief_from_tf_config(monkeypatch, cluster, task_type, index, expected):
    set_tf_config(monkeypatch, cluster, task_type, index)
    assert tba.is_chief() is expected  # the public name, as the README's multi-worker loop uses
    if task_type != "evaluator":
        # TensorFlow's own rule. It calls the evaluator a chief "of its own" job (it trains
        # nothing); log_activations does not log from it, as the issue specifies.
        assert multi_worker_util.is_chief(cluster, task_type, index) is expected


@pytest.mark.parametrize("tf_config", [
    None, "", "{}", json.dumps({"cluster": WORKERS_ONLY}), "not json",
])
def test_is_chief_without_a_cluster_task(monkeypatch, tf_config):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert distribute.is_chief() is True


class FakeStrategy:
    """Stands in for a multi-worker strategy: what is_chief reads is its cluster resolver."""

    def __init__(self, cluster, task_type, task_id):
        self.cluster_resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)


@pytest.mark.parametrize("cluster,task_type,index,expected", TASKS)
def test_is_chief_from_the_strategy_resolver_over_tf_config(monkeypatch, cluster, task_type,
                                                            index, expected):
    # TF_CONFIG says the opposite; the strategy in scope wins.
    set_tf_config(monkeypatch, WORKERS_ONLY, "worker", 1 if expected else 0)
    strategy = FakeStrategy(cluster, task_type, index)
    monkeypatch.setattr(tf.distribute, "has_strategy", lambda: True)
    monkeypatch.setattr(tf.distribute, "get_strategy", lambda: strategy)
    assert distribute.is_chief() is expected


@pytest.mark.parametrize("make_strategy", [
    lambda: tf.distribute.MirroredStrategy(["/cpu:0"]),
    lambda: tf.distribute.OneDeviceStrategy("/cpu:0"),
], ids=["mirrored", "one_device"])
def test_single_worker_strategy_is_chief_whatever_tf_config_says(monkeypatch, make_strategy):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = make_strategy()
    set_tf_config(monkeypatch, WORKERS_ONLY, "worker", 1)
    assert distribute.is_chief() is False  # no strategy in scope: TF_CONFIG decides
    with strategy.scope():
        # MirroredStrategy ignores TF_CONFIG: this process is a job of its own.
        assert strategy.extended.should_checkpoint
        assert distribute.is_chief() is True


def tiny_model():
    import keras
    inputs = keras.Input((4, 4, 1), name="image")
    hidden = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    outputs = keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(hidden))
    return keras.Model(inputs, outputs)


def test_log_activations_on_a_non_chief_does_nothing(monkeypatch, tmp_path):
    model = tiny_model()
    probe = np.random.RandomState(0).normal(size=(2, 4, 4, 1)).astype(np.float32)
    captures = []
    real_capture = log_lib.capture

    def counting_capture(*args, **kwargs):
        captures.append(args)
        return real_capture(*args, **kwargs)

    monkeypatch.setattr(log_lib, "capture", counting_capture)

    set_tf_config(monkeypatch, WORKERS_ONLY, "worker", 1)
    writer = tf.summary.create_file_writer(str(tmp_path / "worker1"))
    with writer.as_default():
        assert tba.log_activations(model, probe, step=0) is False
    writer.close()
    assert captures == [] and "_tb_activations_probes" not in model.__dict__
    assert list(tba.read_activations(tmp_path / "worker1")) == []

    set_tf_config(monkeypatch, WORKERS_ONLY, "worker", 0)
    writer = tf.summary.create_file_writer(str(tmp_path / "worker0"))
    with writer.as_default():
        assert tba.log_activations(model, probe, step=0) is True
    writer.close()
    assert len(captures) == 1
    assert {r.layer for r in tba.read_activations(tmp_path / "worker0")} == {"conv", "logits"}
