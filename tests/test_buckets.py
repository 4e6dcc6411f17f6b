"""Runs kept in object storage, end to end against a real S3 protocol server (moto's server
mode, started here): PyTorch, and Keras's fit with TensorFlow installed, write runs straight
into the bucket, a TensorBoard with only the core install serves them, and read_activations,
read_reference, tba.export and `tb-activations export` read them, giving what a local copy of
the run gives. The core install's side runs in tests/bucket_worker.py, where TensorFlow cannot
be imported (TensorBoard's own gfile reads the bucket); this process has TensorFlow, which has
no s3://, so the stub gfile (boto3) writes and reads it here (writing/url_files.py)."""

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

import tb_activations as tba
from tb_activations import cli
from tb_activations.exporting import run_export
from tb_activations.reading import logdirs
from tb_activations.rendering import grid_images
from tests import browser_helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "bucket_worker.py")
BUCKET = "bucket"
# A run at the logdir's top and one nested, as TensorBoard lists them (by subdirectory).
RUNS = {"a": (0, 1), "b/c": (2,)}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(environment for the core install's processes, boto3 client) of a moto S3 server on a
    free port holding an empty bucket; the endpoint is given as AWS_ENDPOINT_URL, which boto3
    (TensorBoard's s3://) and s3fs (fsspec's) both read. Fails, with the server's output, if
    the server does not start."""
    import boto3

    port = browser_helpers.free_port()
    endpoint = "http://127.0.0.1:%d" % port
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as output:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                   "-p", str(port)], stdout=output, stderr=subprocess.STDOUT)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    deadline = time.monotonic() + 60
    try:
        while True:
            if server.poll() is not None:
                pytest.fail("moto's S3 server exited (%d): %s" % (server.returncode,
                                                                  log.read_text()[-3000:]))
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception as error:  # not listening yet
                if time.monotonic() > deadline:
                    pytest.fail("moto's S3 server did not answer within 60 s (%s): %s"
                                % (error, log.read_text()[-3000:]))
                time.sleep(0.2)
        env = dict(os.environ, PYTHONPATH=REPO, AWS_ENDPOINT_URL=endpoint, **CREDENTIALS)
        env.pop("S3_ENDPOINT", None)
        yield env, client
    finally:
        browser_helpers.stop(server)


def worker(env, *args, blocked=()):
    """The JSON answer of tests/bucket_worker.py (the core install) for `args`."""
    result = subprocess.run([sys.executable, WORKER, *args], capture_output=True, text=True,
                            cwd=REPO, timeout=300,
                            env=dict(env, BLOCKED_MODULES=",".join(blocked)))
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def download(client, prefix, folder):
    """Every object under `prefix` of the bucket, as files under `folder`: a local copy."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):  # the folder markers gfile's makedirs puts
                path = os.path.join(folder, os.path.relpath(item["Key"], prefix))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                client.download_file(BUCKET, item["Key"], path)


def tree(folder):
    """{relative path: bytes} of every file under `folder`."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                files[os.path.relpath(path, folder)] = file.read()
    return files


@pytest.fixture(scope="module")
def bucket_runs(s3, tmp_path_factory):
    """(logdir URL, local copy, layer paths) of RUNS written by PyTorch into the bucket with
    log_dir="s3://..." (each a process of its own, as training jobs are)."""
    env, client = s3
    url = "s3://%s/runs" % BUCKET
    layers = [worker(env, "write", "%s/%s" % (url, run), *map(str, steps))
              for run, steps in RUNS.items()]
    assert layers[0] == layers[1]
    copy = tmp_path_factory.mktemp("copy") / "runs"
    download(client, "runs/", str(copy))
    return url, str(copy), layers[0]


def test_pytorch_writes_a_run_into_a_bucket_that_reads_as_its_local_copy(s3, bucket_runs):
    env, _ = s3
    url, copy, layers = bucket_runs
    local = [[record.run, record.layer, record.step, record.sample, record.wall_time]
             for record in tba.read_activations(copy)]
    remote = worker(env, "read", url)
    assert [row[:5] for row in remote] == local
    assert sorted({(row[0], row[2]) for row in remote}) == [
        (run, step) for run, steps in sorted(RUNS.items()) for step in steps]
    assert sorted({row[1] for row in remote}) == layers
    through_s3fs = worker(env, "read", url, blocked=["boto3"])  # fsspec's s3:// instead
    assert through_s3fs == remote
    images = {(r.run, r.layer, r.step, r.sample): r.image for r in tba.read_activations(copy)}
    assert len(images) == len(remote)
    for run, layer, step, sample, _, digest in remote:
        assert hashlib.sha256(images[(run, layer, step, sample)].tobytes()).hexdigest() == digest


def test_export_of_a_bucket_equals_the_export_of_its_local_copy(s3, bucket_runs, tmp_path):
    env, _ = s3
    url, copy, _ = bucket_runs
    expected = run_export.export(copy, tmp_path / "local", progress=False)
    files = worker(env, "export", url, str(tmp_path / "api"))
    assert files == expected.files
    local = tree(tmp_path / "local")
    assert tree(tmp_path / "api") == local
    assert {path.split(os.sep)[0] for path in local} == {"a", "b_c", "index.csv",
                                                         "activations.html"}
    command = subprocess.run([sys.executable, WORKER, "cli", "export", "--logdir", url,
                              "--out", str(tmp_path / "cli")], capture_output=True, text=True,
                             cwd=REPO, env=env, timeout=300)
    assert command.returncode == 0, command.stderr[-4000:] + command.stdout[-4000:]
    assert "Wrote %d files" % expected.files in " ".join(command.stdout.split())
    assert tree(tmp_path / "cli") == local


def served_layers(env, url, runs, last_step, copy, run):
    """{run: its layer paths} that a TensorBoard with only the core install (--load_fast=false)
    serves from the bucket `url` once `runs` are loaded up to `last_step` ({run: step}); asserts
    that the grid of `run` at its last step is the same as in the local `copy`."""
    process, address = browser_helpers.start_tensorboard(
        url, load_fast=False, command=[sys.executable, WORKER, "tensorboard"], env=env,
        timeout=120)
    try:
        route = address + "/data/plugin/activations/"
        deadline = time.monotonic() + 60
        while True:  # the runs load in the background
            with urllib.request.urlopen(route + "layers", timeout=30) as answer:
                served = {entry["run"]: entry for entry in json.load(answer)["runs"]}
            if (sorted(served) == sorted(runs) and all(
                    entry["layers"] and entry["layers"][0]["max_step"] == last_step[name]
                    for name, entry in served.items())) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sorted(served) == sorted(runs)
        record = next(r for r in tba.read_activations(copy, run=run)
                      if r.step == last_step[run])
        query = urllib.parse.urlencode(dict(run=run, layer=record.layer, step=record.step,
                                            sample=record.sample))
        with urllib.request.urlopen(route + "grid?" + query, timeout=30) as answer:
            assert answer.headers["Content-Type"] == "image/png"
            np.testing.assert_array_equal(grid_images.decode_png(answer.read()), record.image)
        return {name: sorted(layer["layer"] for layer in entry["layers"])
                for name, entry in served.items()}
    finally:
        browser_helpers.stop(process)


def test_tensorboard_without_tensorflow_serves_a_bucket_in_the_tab(s3, bucket_runs):
    env, _ = s3
    url, copy, layers = bucket_runs
    served = served_layers(env, url, RUNS, {run: steps[-1] for run, steps in RUNS.items()},
                           copy, "a")
    assert served == {run: layers for run in RUNS}


def record_row(record, wall_time=True):
    """Every field of an ActivationRecord as comparable values (the wall time if asked)."""
    return (record.run, record.layer, record.step, record.sample,
            record.wall_time if wall_time else None, record.image.tobytes(),
            {name: value.tobytes() for name, value in record.statistics.items()},
            record.ranges.tobytes(), record.channels.tobytes(), record.units.tobytes(),
            np.array(list(record.layer_statistics.values())).tobytes(),
            record.silent.tobytes(), json.dumps(record.tiling, sort_keys=True))


def reference_rows(runs):
    """read_reference's answer as comparable values."""
    return {name: ([(path, step.step, step.wall_time, step.units.tobytes(),
                     step.top_index.tobytes(), step.top_value.tobytes(),
                     step.class_mean.tobytes(), step.selectivity.tobytes())
                    for path, steps in found.layers.items() for step in steps],
                   found.thumbnails.tobytes(), found.labels.tobytes())
            for name, found in runs.items()}


@pytest.fixture(scope="module")
def keras_runs(s3, tmp_path_factory):
    """(logdir URL, local copy of it, local twin): one Keras fit in this process, where
    TensorFlow is installed, with two ActivationsCallbacks (probe and reference set alike):
    one into the bucket, one into a local folder."""
    import keras

    env, client = s3
    saved = {name: os.environ.get(name) for name in ("AWS_ENDPOINT_URL", *CREDENTIALS)}
    os.environ.update({name: env[name] for name in saved})
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(), keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        x = rng.random((32, 8, 8, 1), np.float32)
        y = rng.integers(0, 3, 32)
        twin = tmp_path_factory.mktemp("twin") / "keras"
        url = "s3://%s/keras" % BUCKET
        callbacks = [tba.ActivationsCallback(log_dir + "/run", probe=x[:2], reference=(x, y))
                     for log_dir in (url, str(twin))]
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=callbacks)
        copy = tmp_path_factory.mktemp("keras-copy") / "keras"
        download(client, "keras/", str(copy))
        yield url, str(copy), str(twin)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_keras_fit_with_tensorflow_installed_writes_a_bucket_that_reads_as_a_local_run(
        keras_runs):
    import tensorflow as tf

    url, copy, twin = keras_runs
    assert logdirs.read_by_stub(url) == ("s3" not in tf.io.gfile.get_registered_schemes())
    remote = [record_row(record) for record in tba.read_activations(url)]
    assert remote == [record_row(record) for record in tba.read_activations(copy)]
    assert [row[:4] + row[5:] for row in remote] == [
        row[:4] + row[5:] for row in map(lambda r: record_row(r, False),
                                         tba.read_activations(twin))]
    assert sorted({(row[0], row[2]) for row in remote}) == [("run", 0), ("run", 2), ("run", 4)]
    assert [row for row in remote if row[1] == "conv"] == [
        record_row(record) for record in tba.read_activations(url, run="run", layer="conv")]
    references = tba.read_reference(url)
    assert reference_rows(references) == reference_rows(tba.read_reference(copy))
    assert [step.step for step in references["run"].layers["conv"]] == [0, 2, 4]


def test_keras_bucket_exports_as_its_local_copy_and_tensorboard_serves_it(
        s3, keras_runs, tmp_path, capsys):
    env, _ = s3
    url, copy, twin = keras_runs
    expected = run_export.export(copy, tmp_path / "local", progress=False)
    assert tba.export(url, tmp_path / "api", progress=False).files == expected.files
    local = tree(tmp_path / "local")
    assert tree(tmp_path / "api") == local and "run" in {path.split(os.sep)[0] for path in local}
    assert cli.main(["export", "--logdir", url, "--out", str(tmp_path / "cli")]) == 0
    assert "Wrote %d files" % expected.files in " ".join(capsys.readouterr().out.split())
    assert tree(tmp_path / "cli") == local
    layers = sorted({record.layer for record in tba.read_activations(twin)})
    assert served_layers(env, url, ["run"], {"run": 4}, copy, "run") == {"run": layers}


def test_keras_log_activations_with_tensorflow_installed_writes_a_log_dir_url(
        s3, tmp_path, monkeypatch):
    """Into s3:// (boto3) and memory:// (fsspec), neither of which TensorFlow has."""
    import keras

    env, _ = s3
    for name in ("AWS_ENDPOINT_URL", *CREDENTIALS):
        monkeypatch.setenv(name, env[name])
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, name="conv"),
                              keras.layers.GlobalAveragePooling2D(name="pool")])
    probe = np.random.default_rng(1).random((2, 8, 8, 1), np.float32)
    url, in_memory = "s3://%s/loop" % BUCKET, "memory://keras-loop"  # fsspec's, in memory
    for log_dir in (url, in_memory, str(tmp_path)):
        for step in (3, 7):
            assert tba.log_activations(model, probe, step=step, log_dir=log_dir + "/run",
                                       on_error="raise")
    assert logdirs.read_by_stub(in_memory)
    remote = [record_row(record, False) for record in tba.read_activations(url)]
    assert remote == [record_row(record, False) for record in tba.read_activations(tmp_path)]
    assert remote == [record_row(record, False) for record in tba.read_activations(in_memory)]
    assert sorted({(row[1], row[2]) for row in remote}) == [
        (layer, step) for layer in ("conv", "pool") for step in (3, 7)]


def test_where_nothing_reaches_s3_the_error_names_boto3_not_tensorflow_io(s3):
    """With TensorFlow installed and neither boto3 nor s3fs: writing and reading refuse the
    URL naming what works, before anything is written."""
    env, client = s3
    written, read = worker(dict(env, WITH_TENSORFLOW="1"), "refusals",
                           "s3://%s/refused/run" % BUCKET, "s3://%s/refused" % BUCKET,
                           blocked=["boto3", "s3fs"])
    assert written == ("log_dir 's3://bucket/refused/run' is a URL that no installed file "
                       "system writes: s3:// needs boto3 (or s3fs): pip install boto3; or log "
                       "to a local directory")
    assert read == "logdir s3://bucket/refused: s3:// needs boto3 (or s3fs): pip install boto3"
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix="refused/")


def test_any_fsspec_url_is_written_read_and_exported_as_a_local_folder(s3, tmp_path):
    """fsspec's in-memory file system (memory://), written and read in one process."""
    env, _ = s3
    local, url = worker(env, "roundtrip", "memory://logs", str(tmp_path / "logs"),
                        str(tmp_path / "out-url"), str(tmp_path / "out-local"))
    assert url == local and len(url["records"]) == 2 * 5 * 2  # steps x layers x samples
    assert url["files"] == local["files"] and "a/0/step-000001_sample-1.png" in url["files"]


def test_a_url_nothing_reads_is_refused_naming_what_to_install(s3, tmp_path, capsys):
    env, _ = s3
    with pytest.raises(logdirs.UnreadableLogdir, match="no installed file system knows foo://"):
        list(tba.read_activations("foo://x/runs"))
    with pytest.raises(run_export.ExportError, match="foo://"):
        run_export.export("foo://x/runs", tmp_path / "out", progress=False)
    assert cli.main(["export", "--logdir", "foo://x/runs", "--out", str(tmp_path / "out")]) == 2
    message = " ".join(capsys.readouterr().out.split())
    assert "no installed file system knows foo:// URLs" in message
    assert "s3:// (boto3 or s3fs)" in message and "tensorflow-io" not in message
    assert not (tmp_path / "out").exists()
    # Where TensorFlow is not installed: TensorBoard's own gfile (boto3 or fsspec).
    assert "Protocol not known: foo" in worker(env, "check", "foo://x/runs")
    assert worker(env, "check", "s3://bucket/runs", blocked=["boto3", "s3fs"]) == (
        "logdir s3://bucket/runs: s3:// needs boto3 (or s3fs): pip install boto3")
    assert worker(env, "check", "gs://bucket/runs", blocked=["gcsfs"]) == (
        "logdir gs://bucket/runs: gs:// needs gcsfs: pip install gcsfs")
    assert worker(env, "check", "s3://bucket/runs") is None
    assert "not at its root" in worker(env, "check", "s3://bucket/")


def test_a_store_that_refuses_is_an_error_naming_the_logdir(s3, tmp_path):
    env, _ = s3
    closed = dict(env, AWS_ENDPOINT_URL="http://127.0.0.1:%d" % browser_helpers.free_port(),
                  AWS_MAX_ATTEMPTS="1")
    command = subprocess.run([sys.executable, WORKER, "cli", "export", "--logdir",
                              "s3://bucket/runs", "--out", str(tmp_path / "out")],
                             capture_output=True, text=True, cwd=REPO, env=closed, timeout=300)
    output = " ".join(command.stdout.split())
    assert command.returncode == 2, command.stderr[-4000:]
    assert "error: logdir s3://bucket/runs cannot be read: EndpointConnectionError" in output
    assert "AWS_ENDPOINT_URL" in output and not (tmp_path / "out").exists()

