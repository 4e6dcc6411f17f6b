"""The reference routes (docs/http_api.md "Reference steps") of a real TensorBoard, on both
loaders, over the demo run written by the real Keras callback: every answer held against
read_reference; bad queries and unreadable reference steps answered as JSON errors."""

import json
import math
import os
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

import tb_activations as tba
from tb_activations.format import metadata
from tb_activations.format import reference as reference_format
from tests import browser_helpers as helpers

RUN = "mnist_cnn"
BROKEN = "broken"


@pytest.fixture(scope="module")
def logdir(demo_run):
    """The demo's logdir plus run `broken`: a reference tag whose blob is not a reference
    step, and one holding a valid step beside it."""
    root = os.path.dirname(demo_run)
    content = {"kind": metadata.KIND_REFERENCE, "layer": "conv", "layer_class": "Conv2D",
               "order": 0, "units_total": 2, "units_kept": 2, "k": 1, "inputs": 3, "classes": 2,
               "map_shape": [2, 2], "receptive_field": None}
    arrays = {"units": [0, 1], "top_index": [[2], [0]], "top_value": [[1.5], [0.0]],
              "top_position": [[[1, 0]], [[0, 0]]], "zero_fraction": [0.0, 1.0],
              "class_mean": [[0.0, 2.0], [0.0, 0.0]], "class_count": [1, 2]}
    with tf.summary.create_file_writer(os.path.join(root, BROKEN)).as_default():
        good = metadata.create_summary_metadata(content)
        tf.summary.write(metadata.reference_tag("conv"), tf.constant(
            [reference_format.encode_reference(arrays, content)]), step=1, metadata=good)
        tf.summary.write(metadata.reference_tag("conv"), tf.constant([b"junk"]), step=2,
                         metadata=good)
    return root


@pytest.fixture(scope="module", params=[False, True], ids=["python_loader", "rust_loader"])
def served(request, logdir):
    process, url = helpers.start_tensorboard(logdir, load_fast=request.param)
    request.addfinalizer(lambda: helpers.stop(process))
    helpers.wait_loaded(url, logdir)
    return url


def get(url, route, code=200, **params):
    address = "%s/data/plugin/activations/%s?%s" % (url, route, urllib.parse.urlencode(params))
    try:
        with urllib.request.urlopen(address, timeout=30) as answer:
            status, body, kind = answer.status, answer.read(), answer.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        status, body, kind = error.code, error.read(), error.headers["Content-Type"]
    assert status == code, body[:400]
    return json.loads(body) if kind.startswith("application/json") else body


def nullable(values, missing):
    """`values` as the answers hold them: None where `missing(value)`."""
    return [None if missing(value) else value for value in np.asarray(values).tolist()]


def test_reference_answers_hold_what_read_reference_reads(served, logdir):
    read = tba.read_reference(logdir, run=RUN)[RUN]
    tags = get(served, "reference_tags", run=RUN)
    assert tags["inputs"] is True
    assert [entry["layer"] for entry in tags["layers"]] == list(read.layers)
    assert "conv2" in read.layers
    for entry in tags["layers"]:
        steps = read.layers[entry["layer"]]
        assert entry["steps"] == [step.step for step in steps]
        assert len(entry["steps"]) >= 2  # at the start and at each epoch's end
        for responses in (steps[0], steps[-1]):
            answer = get(served, "reference", run=RUN, layer=entry["layer"],
                         step=responses.step)
            assert answer["units"] == responses.units.tolist()
            assert answer["top_index"] == responses.top_index.tolist()
            assert answer["top_position"] == responses.top_position.tolist()
            assert np.array_equal(np.float32(answer["top_value"]), responses.top_value)
            assert np.array_equal(np.float32(answer["zero_fraction"]),
                                  responses.zero_fraction)
            assert answer["dead"] == responses.dead.tolist()
            assert answer["preferred"] == nullable(responses.preferred, lambda v: v < 0)
            assert answer["selectivity"] == pytest.approx(
                nullable(np.float32(responses.selectivity), math.isnan))
            assert answer["receptive_field"] == responses.content["receptive_field"]
    by_tag = get(served, "reference", run=RUN, tag=tags["layers"][0]["tag"],
                 step=tags["layers"][0]["steps"][0])
    assert by_tag["layer"] == tags["layers"][0]["layer"]


def test_reference_summary_is_the_mean_selectivity_and_dead_fraction(served, logdir):
    read = tba.read_reference(logdir, run=RUN)[RUN]
    summary = get(served, "reference_summary", run=RUN)
    assert summary["steps"] == sorted({step.step for steps in read.layers.values()
                                       for step in steps})
    for layer in summary["layers"]:
        steps = read.layers[layer["layer"]]
        assert layer["steps"] == [step.step for step in steps]
        expected = [float(np.mean(step.selectivity[np.isfinite(step.selectivity)]))
                    for step in steps]
        assert layer["mean_selectivity"] == pytest.approx(expected, rel=1e-6)
        assert layer["dead_fraction"] == [float(np.mean(step.dead)) for step in steps]


def test_reference_inputs_and_their_pages_are_the_stored_thumbnails(served, logdir):
    read = tba.read_reference(logdir, run=RUN)[RUN]
    inputs = get(served, "reference_inputs", run=RUN)
    assert inputs["labels"] == read.labels.tolist()
    assert inputs["class_names"] == [str(digit) for digit in range(10)]
    assert inputs["inputs"] == len(read.thumbnails) == len(read.labels)
    pages = [get(served, "reference_page", run=RUN, page=page)
             for page in range(inputs["pages"])]
    assert np.array_equal(reference_format.decode_atlas(pages, inputs), read.thumbnails)


@pytest.mark.parametrize("route, params, code, fragment", [
    ("reference", {"run": RUN, "step": 0}, 400, "'layer'"),
    ("reference", {"run": RUN, "layer": "conv2", "step": "x"}, 400, "integer"),
    ("reference", {"run": RUN, "layer": "conv2", "step": 7}, 404, "no step 7"),
    ("reference", {"run": RUN, "layer": "nope", "step": 0}, 404, "nope"),
    ("reference", {"run": RUN, "tag": "activations/conv2", "step": 0}, 404, "no reference tag"),
    ("reference", {"run": "nope", "layer": "conv2", "step": 0}, 404, "nope"),
    ("reference_page", {"run": RUN, "page": 99}, 404, "no reference page 99"),
    ("reference_page", {"run": RUN, "page": "-1"}, 400, "integer"),
    ("reference_page", {"run": RUN}, 400, "'page'"),
    ("reference_inputs", {"run": BROKEN}, 404, "stored no reference inputs"),
    ("reference", {"run": BROKEN, "layer": "conv", "step": 2}, 404,
     "not a readable reference step"),
])
def test_bad_reference_queries_get_json_errors(served, route, params, code, fragment):
    assert fragment in get(served, route, code=code, **params)["error"]


def test_an_unreadable_reference_step_leaves_the_others_readable(served):
    step = get(served, "reference", run=BROKEN, layer="conv", step=1)
    assert step["dead"] == [False, True] and step["preferred"] == [1, 0]
    assert step["selectivity"] == [1.0, None]  # all its response on class 1; zero on both
    summary = get(served, "reference_summary", run=BROKEN)
    (layer,) = summary["layers"]
    assert layer["steps"] == [1, 2]
    assert layer["mean_selectivity"] == [1.0, None]
    assert layer["dead_fraction"] == [0.5, None]
    assert get(served, "reference_tags", run=BROKEN)["inputs"] is False
