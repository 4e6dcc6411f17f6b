"""Runs kept in object storage, end to end against a real S3 protocol server (moto's server
mode, started here): PyTorch writes a run straight into the bucket, a TensorBoard with only the
core install serves it, and read_activations, tba.export and `tb-activations export` read it,
giving what a local copy of the run gives. The core install's side runs in
tests/bucket_worker.py, where TensorFlow cannot be imported (TensorBoard's own gfile reads the
bucket); this process has TensorFlow, whose file systems read s3:// only with TensorFlow I/O."""

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


def test_tensorboard_without_tensorflow_serves_a_bucket_in_the_tab(s3, bucket_runs):
    env, _ = s3
    url, copy, layers = bucket_runs
    process, address = browser_helpers.start_tensorboard(
        url, load_fast=False, command=[sys.executable, WORKER, "tensorboard"], env=env,
        timeout=120)
    try:
        route = address + "/data/plugin/activations/"
        deadline = time.monotonic() + 60
        while True:  # the runs load in the background
            with urllib.request.urlopen(route + "layers", timeout=30) as answer:
                runs = {entry["run"]: entry for entry in json.load(answer)["runs"]}
            if (sorted(runs) == sorted(RUNS) and all(
                    entry["layers"] and entry["layers"][0]["max_step"] == RUNS[run][-1]
                    for run, entry in runs.items())) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sorted(runs) == sorted(RUNS)
        for entry in runs.values():
            assert sorted(layer["layer"] for layer in entry["layers"]) == layers
        record = next(r for r in tba.read_activations(copy, run="a") if r.step == 1)
        query = urllib.parse.urlencode(dict(run="a", layer=record.layer, step=1,
                                            sample=record.sample))
        with urllib.request.urlopen(route + "grid?" + query, timeout=30) as answer:
            assert answer.headers["Content-Type"] == "image/png"
            np.testing.assert_array_equal(grid_images.decode_png(answer.read()), record.image)
    finally:
        browser_helpers.stop(process)


def test_where_tensorflow_is_installed_s3_goes_through_tensorflow_io(s3, monkeypatch):
    """TensorFlow (and TensorBoard beside it) reach s3:// through TensorFlow I/O: without it
    the Keras callback refuses the log_dir at train begin, saying so, and writes nothing, and
    read_activations names the package."""
    import keras
    import tensorflow as tf

    env, client = s3
    for name in ("AWS_ENDPOINT_URL", *CREDENTIALS):
        monkeypatch.setenv(name, env[name])
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)])
    model.compile(loss="mse")
    x = np.random.default_rng(0).random((4, 8, 8, 1), np.float32)
    callback = tba.ActivationsCallback("s3://%s/keras/run" % BUCKET, probe=x[:1])
    try:
        import tensorflow_io  # noqa: F401
    except ImportError:
        pass
    if "s3" in tf.io.gfile.get_registered_schemes():
        model.fit(x, model.predict(x, verbose=0), epochs=1, verbose=0, callbacks=[callback])
        written = client.list_objects_v2(Bucket=BUCKET, Prefix="keras/run/")
        assert any("tfevents" in item["Key"] for item in written.get("Contents", []))
        return
    with pytest.raises(ValueError, match=r"log_dir 's3://bucket/keras/run' is a URL that no "
                                         r"installed file system writes.*tensorflow-io"):
        model.fit(x, model.predict(x, verbose=0), epochs=1, verbose=0, callbacks=[callback])
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix="keras/")
    with pytest.raises(logdirs.UnreadableLogdir, match="s3:// needs TensorFlow I/O: pip "
                                                       "install tensorflow-io"):
        list(tba.read_activations("s3://%s/runs" % BUCKET))


def test_any_fsspec_url_is_written_read_and_exported_as_a_local_folder(s3, tmp_path):
    """fsspec's in-memory file system (memory://), written and read in one process."""
    env, _ = s3
    local, url = worker(env, "roundtrip", "memory://logs", str(tmp_path / "logs"),
                        str(tmp_path / "out-url"), str(tmp_path / "out-local"))
    assert url == local and len(url["records"]) == 2 * 5 * 2  # steps x layers x samples
    assert url["files"] == local["files"] and "a/0/step-000001_sample-1.png" in url["files"]


def test_a_url_nothing_reads_is_refused_naming_what_to_install(s3, tmp_path, capsys):
    env, _ = s3
    with pytest.raises(logdirs.UnreadableLogdir, match="no installed file system reads foo://"):
        list(tba.read_activations("foo://x/runs"))
    with pytest.raises(run_export.ExportError, match="foo://"):
        run_export.export("foo://x/runs", tmp_path / "out", progress=False)
    assert cli.main(["export", "--logdir", "foo://x/runs", "--out", str(tmp_path / "out")]) == 2
    assert "no installed file system reads foo:// URLs" in " ".join(capsys.readouterr().out.split())
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

