"""What each unit responds to over a reference set (issue 18), on Keras's TensorFlow backend:
units built by hand to fire on one class only or on nothing, top-k against a numpy brute force,
the pass's memory, the blob decoder against crafted blobs, and real event files read back with
TensorBoard's own loaders."""

import io
import itertools
import warnings
import weakref
import zipfile

import hypothesis
import keras
import numpy as np
import pytest
from hypothesis import strategies as st
from tensorboard.backend.event_processing import plugin_event_multiplexer

import tb_activations as tba
from tb_activations.format import metadata
from tb_activations.format import reference as reference_format
from tb_activations.keras import receptive_fields as keras_fields
from tb_activations.rendering import grid_images
from tb_activations.writing import destinations
from tb_activations.writing import events
from tests import models
from tests.full_disk import fill
from tests.reference_data import CLASSES, DETECTOR_BIASES, SIDE, brute_force, cross_digits
from tests.reference_data import field_box, plus_kernel

def plus_detector():
    """A conv layer of reference_data's detector units, and a head."""
    inputs = keras.Input((SIDE, SIDE, 1), name="image")
    conv = keras.layers.Conv2D(3, 3, activation="relu", name="detector")
    features = conv(inputs)
    outputs = keras.layers.Dense(CLASSES, name="head")(keras.layers.Flatten()(features))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((3, 3, 1, 3), np.float32)
    kernel[:, :, 0, 0] = plus_kernel()
    conv.set_weights([kernel, np.array(DETECTOR_BIASES, np.float32)])
    return model


def test_a_unit_built_to_fire_on_one_class_has_selectivity_one_and_its_top_inputs(tmp_path):
    x, y, centres = cross_digits(200)
    model = plus_detector()
    assert tba.log_reference(model, x, y, step=3, log_dir=tmp_path, k=9, batch_size=48,
                             layers=["detector"], class_names=["plus", "bar", "column", "slash"])
    run = tba.read_reference(tmp_path)["."]
    (step,) = run.layers["detector"]
    assert step.step == 3 and list(step.units) == [0, 1, 2]
    assert abs(step.selectivity[0] - 1.0) < 1e-6
    assert step.preferred[0] == 0 and run.class_names[0] == "plus"
    assert np.all(y[step.top_index[0]] == 0)
    # The maximum sits where the plus is: the valid conv's cell (r - 1, c - 1).
    assert np.array_equal(step.top_position[0], centres[step.top_index[0]] - 1)
    assert list(step.dead) == [False, True, False]
    assert np.isnan(step.selectivity[1]) and step.zero_fraction[1] == 1.0
    assert step.selectivity[2] < 0.2  # the always-on unit responds alike to every class
    assert np.array_equal(step.class_count, np.bincount(y, minlength=CLASSES))
    assert np.array_equal(run.labels, y)
    assert run.thumbnails.shape == (200, SIDE, SIDE) and run.thumbnails.dtype == np.uint8
    # One range over the whole set: the marks are white, the noise dark.
    assert run.thumbnails[0][tuple(centres[0])] == 255 and run.thumbnails.max() == 255
    assert step.content["map_shape"] == [SIDE - 2, SIDE - 2]
    assert step.content["receptive_field"] == {"stride": [1, 1], "size": [3, 3],
                                               "offset": [1.0, 1.0], "exact": True}


def test_the_callback_logs_reference_steps_of_a_trained_cnn_read_by_tensorboard(tmp_path):
    x = models.rng(1).normal(size=(96, 16, 16, 1)).astype(np.float32)
    y = models.rng(2).integers(0, 10, 96)
    model = models.small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    callback = tba.ActivationsCallback(tmp_path, probe=x[:4], reference=(x[:40], y[:40]),
                                       reference_every="epoch", reference_batch_size=16)
    model.fit(x, y, epochs=2, batch_size=32, callbacks=[callback], verbose=0)
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    contents = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)["."]
    kinds = {tag: metadata.parse_plugin_content(raw)["kind"] for tag, raw in contents.items()}
    assert kinds[metadata.REFERENCE_INPUTS_TAG] == metadata.KIND_REFERENCE_INPUTS
    assert kinds["activations_reference/conv2"] == metadata.KIND_REFERENCE
    steps = [event.step for event in multiplexer.Tensors(".", "activations_reference/conv2")]
    assert steps == [0, 3, 6]
    assert len(multiplexer.Tensors(".", metadata.REFERENCE_INPUTS_TAG)) == 1
    run = tba.read_reference(tmp_path)["."]
    assert list(run.layers) == models.SMALL_CNN_DRAWN
    conv2 = run.layers["conv2"]
    assert [s.step for s in conv2] == [0, 3, 6]
    assert conv2[0].top_index.shape == (12, 9) and conv2[0].top_position.shape == (12, 9, 2)
    assert not np.array_equal(conv2[0].top_value, conv2[-1].top_value)  # it trained
    assert run.layers["dense"][0].top_position.shape == (16, 9, 0)
    # Probe readers never see the reference steps.
    assert {record.layer for record in tba.read_activations(tmp_path)} == set(
        models.SMALL_CNN_DRAWN)


@hypothesis.settings(max_examples=12)
@hypothesis.given(data=st.data())
def test_top_inputs_equal_a_brute_force_over_the_reference_set(tmp_path_factory, data):
    shape = data.draw(st.sampled_from([(5, 4, 3), (7, 2), (6,), (3, 3, 2)]))
    count = data.draw(st.integers(1, 23))
    batch_size = data.draw(st.integers(1, 9))
    k = data.draw(st.integers(1, 12))
    # Few distinct values, so ties are common; some NaN and +-Inf.
    choices = st.sampled_from([0.0, 1.0, 2.0, -1.0, np.nan, np.inf, -np.inf])
    x = np.array(data.draw(st.lists(choices, min_size=count * int(np.prod(shape)),
                                    max_size=count * int(np.prod(shape)))),
                 np.float32).reshape((count,) + shape)
    inputs = keras.Input(shape, name="values")
    model = keras.Model(inputs, keras.layers.Identity(name="same")(inputs))
    log_dir = tmp_path_factory.mktemp("brute")
    assert tba.log_reference(model, x, step=0, log_dir=log_dir, k=k, batch_size=batch_size,
                             layers=["same"], max_channels=64)
    (step,) = tba.read_reference(log_dir)["."].layers["same"]
    expected = brute_force(x, k)
    map_shape = step.content["map_shape"]
    assert map_shape == list(shape[:-1])
    for row, unit in enumerate(step.units):
        indices, values, positions = expected[unit]
        assert list(step.top_index[row]) == indices
        np.testing.assert_array_equal(step.top_value[row], np.array(values, np.float32))
        flat = (np.ravel_multi_index(tuple(step.top_position[row].T), map_shape) if map_shape
                else np.zeros(len(indices), int))
        assert list(flat) == positions
        zero = np.mean([np.all(x[i, ..., unit] == 0) for i in range(count)])
        assert step.zero_fraction[row] == pytest.approx(zero)


def test_top_selection_keeps_the_units_of_largest_mean_magnitude(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 5, 5, 6)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)
    inputs = keras.Input((5, 5, 6))
    model = keras.Model(inputs, keras.layers.Identity(name="same")(inputs))
    tba.log_reference(model, x, step=0, log_dir=tmp_path, layers=["same"], max_channels=3,
                      channel_selection="top", batch_size=7)
    (step,) = tba.read_reference(tmp_path)["."].layers["same"]
    assert list(step.units) == [5, 4, 3]
    assert step.content["units_total"] == 6 and step.content["units_kept"] == 3
    expected = brute_force(x, 9)
    assert [expected[u][0] for u in step.units] == step.top_index.tolist()


def test_the_padding_of_a_short_last_batch_never_displaces_its_real_inputs(tmp_path):
    # Batches of 4: the last holds inputs 4 and 5, padded with copies of input 5, which ranks
    # above input 4 in each unit; inputs 0..3 rank below both (unit 2: NaN maps only).
    x = np.full((6, 3, 3), -9.0, np.float32)
    x[4, :, 0], x[5, :, 0] = [-3.0, -5.0, -2.0], [-4.0, -1.0, -6.0]
    x[:4, :, 2] = np.nan
    x[4, :, 2], x[5, :, 2] = [np.nan, -7.0, -8.0], [-5.0, np.nan, np.nan]
    # Unit 1: inputs 0 and 4 tie, at maxima of 0 met as 0.0 then -0.0 (the value stored is the
    # one found first, where a max over the map may give -0.0), and as -0.0 then 0.0 (Keras's
    # argmax on CPU ranks -0.0 below 0.0).
    x[0, :, 1], x[4, :, 1] = [0.0, -0.0, -1.0], [-0.0, -0.0, 0.0]
    # Without unit 2, no batch is reduced again with finite_only.
    for values, selection in itertools.product((x[..., :2], x), ("first", "top")):
        inputs = keras.Input(values.shape[1:])
        model = keras.Model(inputs, keras.layers.Identity(name="same")(inputs))
        log_dir = tmp_path / ("%d%s" % (values.shape[-1], selection))
        assert tba.log_reference(model, values, step=0, log_dir=log_dir, k=2, batch_size=4,
                                 layers=["same"], channel_selection=selection)
        (step,) = tba.read_reference(log_dir)["."].layers["same"]
        expected = brute_force(values, 2)
        expected[1][2][1] = 2
        for row, unit in enumerate(step.units):
            indices, tops, positions = expected[unit]
            assert list(step.top_index[row]) == indices, (selection, unit)
            assert list(step.top_position[row, :, 0]) == positions, (selection, unit)
            np.testing.assert_array_equal(step.top_value[row], tops)
        assert not np.signbit(step.top_value[list(step.units).index(1)]).any()


def test_class_means_and_zeros_of_relu_layers_with_and_without_negative_outputs(tmp_path):
    # A ReLU layer's outputs are never negative, so its mean of max(a, 0) is its plain mean;
    # a leaky one's are.
    x = models.rng(3).normal(size=(40, 4, 4, 3)).astype(np.float32)
    x[::5, :, :, 1] = -1.0
    y = np.arange(40) % 3
    inputs = keras.Input((4, 4, 3))
    layers = {"relu": keras.layers.ReLU(6.0), "leaky": keras.layers.ReLU(negative_slope=0.5),
              "above": keras.layers.ReLU(threshold=0.5), "act": keras.layers.Activation("relu")}
    model = keras.Model(inputs, [layer(inputs) for layer in layers.values()])
    for name, layer in layers.items():
        layer.name = name
    assert tba.log_reference(model, x, y, step=0, log_dir=tmp_path, batch_size=16)
    run = tba.read_reference(tmp_path)["."]
    for name, layer in layers.items():
        (step,) = run.layers[name]
        outputs = keras.ops.convert_to_numpy(layer(x))
        maps = np.maximum(outputs, 0).reshape(40, 16, 3).mean(axis=1)
        expected = np.stack([maps[y == c].mean(axis=0) for c in range(3)], axis=1)
        np.testing.assert_allclose(step.class_mean, expected, rtol=1e-5, err_msg=name)
        zero = np.all(outputs == 0, axis=(1, 2)).mean(axis=0)
        np.testing.assert_allclose(step.zero_fraction, zero, rtol=1e-6, err_msg=name)


def test_a_reference_generator_is_read_once_a_batch_at_a_time(tmp_path):
    model = models.small_cnn()
    alive, most = [], [0]
    rng = np.random.default_rng(0)

    def batches():
        for _ in range(12):
            most[0] = max(most[0], sum(ref() is not None for ref in alive))
            batch = rng.normal(size=(10, 16, 16, 1)).astype(np.float32)
            alive.append(weakref.ref(batch))
            yield batch, rng.integers(0, 10, 10)

    generator = batches()
    assert tba.log_reference(model, generator, step=1, log_dir=tmp_path, batch_size=10)
    assert next(generator, None) is None and len(alive) == 12
    assert most[0] <= 2, "%d reference batches were held at once" % most[0]
    run = tba.read_reference(tmp_path)["."]
    assert run.inputs["inputs"] == 120 and len(run.labels) == 120
    with pytest.raises(ValueError, match="read at every reference step.*can be read once"):
        tba.ActivationsCallback(tmp_path, probe=np.zeros((1, 16, 16, 1)), reference=iter([]))


def test_a_pass_that_fails_midway_writes_nothing(tmp_path):
    model = models.small_cnn()

    def batches():
        yield np.zeros((8, 16, 16, 1), np.float32)
        yield np.zeros((8, 16, 16, 1), np.float32)
        raise OSError("the data went away")

    with pytest.raises(OSError, match="the data went away"):
        tba.log_reference(model, batches(), step=0, log_dir=tmp_path)
    assert tba.read_reference(tmp_path) == {}
    with pytest.raises(ValueError, match="expects"):
        tba.log_reference(model, np.zeros((4, 8, 8, 1)), step=0, log_dir=tmp_path)
    assert tba.read_reference(tmp_path) == {}


def test_the_callback_warns_once_and_training_goes_on_when_a_later_pass_fails(tmp_path):
    model = models.small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(32, 16, 16, 1)).astype(np.float32)

    class Flaky(keras.utils.PyDataset):
        calls = 0

        def __len__(self):
            return 2

        def __getitem__(self, index):
            Flaky.calls += 1
            if Flaky.calls > 2:
                raise OSError("the reference data went away")
            return x[index * 8:(index + 1) * 8], np.arange(8) % 10

    callback = tba.ActivationsCallback(tmp_path, probe=x[:2], reference=Flaky())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, np.arange(32) % 10, epochs=2, batch_size=16, verbose=0,
                            callbacks=[callback])
    assert len(history.history["loss"]) == 2
    stops = [w for w in caught if "stops logging activations" in str(w.message)]
    assert len(stops) == 1 and "the reference data went away" in str(stops[0].message)
    assert [s.step for s in tba.read_reference(tmp_path)["."].layers["conv1"]] == [0]


def test_log_reference_on_a_full_disk_warns_or_raises(tiny_disk):
    model = models.small_cnn()
    x = np.zeros((8, 16, 16, 1), np.float32)
    fill(tiny_disk, leaving=0)
    with pytest.raises(OSError, match="No space left on device"):
        tba.log_reference(model, x, step=0, log_dir=tiny_disk / "a", on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not tba.log_reference(model, x, step=0, log_dir=tiny_disk / "b")
        assert not tba.log_reference(model, x, step=1, log_dir=tiny_disk / "b")
    assert len([w for w in caught if "stops logging" in str(w.message)]) == 1


def test_bad_reference_arguments_are_refused_clearly(tmp_path):
    model = models.small_cnn()
    x = np.zeros((8, 16, 16, 1), np.float32)
    with pytest.raises(ValueError, match="reference_k must be an int in 1..100, got 0"):
        tba.log_reference(model, x, step=0, log_dir=tmp_path, k=0)
    with pytest.raises(ValueError, match="class ids in 0..1 .one per class name., got 0..7"):
        tba.log_reference(model, x, np.arange(8), step=0, log_dir=tmp_path,
                          class_names=["a", "b"])
    with pytest.raises(ValueError, match="at most 1000 strings of at most 64 characters"):
        tba.log_reference(model, x, np.zeros(8), step=0, log_dir=tmp_path,
                          class_names=["x" * 65])
    with pytest.raises(ValueError, match="batch size must be a positive int"):
        tba.log_reference(model, x, step=0, log_dir=tmp_path, batch_size=0)
    with pytest.raises(ValueError, match='reference_every must be "epoch", "end"'):
        tba.ActivationsCallback(tmp_path, probe=x, reference=x, reference_every="often")
    with pytest.raises(ValueError, match="y= goes with arrays x"):
        tba.log_reference(model, iter([x]), np.zeros(8), step=0, log_dir=tmp_path)
    with pytest.raises(ValueError, match="8 inputs but 3 labels"):
        tba.log_reference(model, x, np.zeros(3), step=0, log_dir=tmp_path)
    assert tba.read_reference(tmp_path) == {}


def test_more_than_65536_reference_inputs_are_refused(tmp_path):
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="one")(inputs))
    with pytest.raises(ValueError, match="more than 65536 inputs"):
        tba.log_reference(model, np.zeros((65537, 1), np.float32), step=0, log_dir=tmp_path,
                          batch_size=8192)


@hypothesis.settings(max_examples=15)
@hypothesis.given(st.lists(st.tuples(st.sampled_from(["conv", "max", "avg", "pad", "crop"]),
                                     st.integers(1, 4), st.integers(1, 2),
                                     st.sampled_from(["valid", "same"]), st.integers(1, 2)),
                           min_size=1, max_size=3))
def test_exact_receptive_fields_are_the_pixels_that_reach_a_cell(layers):
    """All-positive weights, one lit pixel per input, TensorFlow's own "same" padding: a cell
    of a Functional chain responds exactly to the pixels inside its receptive field."""
    side = 13
    inputs = keras.Input((side, side, 1))
    x = inputs
    for number, (kind, kernel, stride, padding, dilation) in enumerate(layers):
        name = "layer%d" % number
        if kind == "pad":
            layer = keras.layers.ZeroPadding2D(((kernel - 1, 0), (0, kernel - 1)), name=name)
        elif kind == "crop":
            layer = keras.layers.Cropping2D(((kernel - 1, 0), (0, 0)), name=name)
        elif kind == "conv":
            layer = keras.layers.Conv2D(1, kernel, 1 if dilation > 1 else stride, padding,
                                        dilation_rate=dilation, use_bias=False, name=name,
                                        kernel_initializer="ones")
        else:
            pool = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
            layer = pool(kernel, stride, padding, name=name)
        try:
            x = layer(x)
        except ValueError:  # Keras refuses a map the chain has shrunk below the layer's window
            hypothesis.reject()
        if min(x.shape[1:3]) < 1:
            hypothesis.reject()
    model = keras.Model(inputs, x)
    lit = np.eye(side * side, dtype=np.float32).reshape(side * side, side, side, 1)
    out = np.asarray(model(lit))
    fields = keras_fields.receptive_fields(model, lit[:1])
    field = fields["layer%d" % (len(layers) - 1)]
    rows, columns = out.shape[1:3]
    for row, column in {(0, 0), (rows - 1, columns - 1), (rows // 2, columns // 2)}:
        reached = (out[:, row, column, 0] > 0).reshape(side, side)
        box = field_box(field, row, column, side)
        assert not np.any(reached & ~box), (row, column, field)
        # Cells over padding see less than their box: the equality holds where none is added.
        if all(kind == "crop" or (kind != "pad" and padding == "valid" and dilation == 1
                                  and kernel >= stride)
               for kind, kernel, stride, padding, dilation in layers):
            assert np.array_equal(reached, box), (row, column, field)


# The blob decoder, on crafted blobs.

def content(**fields):
    base = {"kind": "reference", "layer": "conv", "layer_class": "Conv2D", "order": 0,
            "units_total": 8, "units_kept": 2, "k": 3, "inputs": 10, "classes": 2,
            "map_shape": [4, 5], "receptive_field": None, "version": 2}
    base.update(fields)
    return base


def good_arrays():
    return {"units": np.array([0, 5]), "top_index": np.array([[3, 1, 9], [0, 2, 4]]),
            "top_value": np.ones((2, 3)), "top_position": np.zeros((2, 3, 2), int),
            "zero_fraction": np.array([0.0, 1.0]), "class_mean": np.ones((2, 2)),
            "class_count": np.array([4, 6])}


def blob_of(arrays):
    return grid_images.encode_arrays({name: np.asarray(array) for name, array in arrays.items()})


def test_a_good_blob_round_trips():
    blob = reference_format.encode_reference(good_arrays(), content())
    decoded = reference_format.decode_reference(blob, content())
    assert decoded["units"].dtype == np.int32 and list(decoded["units"]) == [0, 5]
    assert len(blob) < 64 << 10


@pytest.mark.parametrize("change, message", [
    (dict(units=np.array([0, 8], np.int32)), "units outside 0..7"),
    (dict(units=np.array([3, 3], np.int32)), "repeat a unit"),
    (dict(top_index=np.array([[3, 1, 10], [0, 2, 4]], np.int32)), "top inputs outside 0..9"),
    (dict(top_index=np.array([[3, 3, 1], [0, 2, 4]], np.int32)), "repeat an input"),
    (dict(top_position=np.full((2, 3, 2), 4, np.int32)), "positions outside the map"),
    (dict(zero_fraction=np.array([0.0, 1.5], np.float32)), "zero fractions outside"),
    (dict(class_count=np.array([4, 7], np.int32)), "do not sum to the 10 inputs"),
    (dict(top_value=np.ones((2, 4), np.float32)), r"top_value of shape \(2, 4\)"),
    (dict(top_value=np.ones((2, 3), np.float64)), "dtype float64, expected .* float32"),
])
def test_the_decoder_refuses_crafted_blobs(change, message):
    arrays = {name: np.asarray(array, reference_format.reference_arrays(content())[name][0])
              for name, array in good_arrays().items()}
    arrays.update(change)
    with pytest.raises(ValueError, match=message):
        reference_format.decode_reference(blob_of(arrays), content())


def test_the_decoder_refuses_missing_arrays_bombs_and_junk():
    arrays = dict(good_arrays())
    del arrays["class_count"]
    with pytest.raises(ValueError, match="holds .* expected"):
        reference_format.decode_reference(blob_of(arrays), content())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in reference_format.reference_arrays(content()):
            archive.writestr(name + ".npy", b"\0" * (64 << 20))
    bomb = buffer.getvalue()
    assert len(bomb) < 1 << 20
    with pytest.raises(ValueError, match="would decompress to .* more than"):
        reference_format.decode_reference(bomb, content())
    with pytest.raises(ValueError, match="unreadable reference blob"):
        reference_format.decode_reference(b"not a zip", content())
    with pytest.raises(ValueError, match="units_kept <= units_total"):
        metadata.parse_plugin_content(metadata.create_summary_metadata(
            content(units_kept=9)).plugin_data.content)
    with pytest.raises(ValueError, match="k <= inputs"):
        metadata.parse_plugin_content(metadata.create_summary_metadata(
            content(k=11)).plugin_data.content)


def test_the_writer_refuses_a_step_past_the_bound():
    big = content(units_total=4096, units_kept=4096, classes=1000, k=9)
    with pytest.raises(ValueError, match="lower max_channels, reference_k or the number"):
        reference_format.encode_reference({}, big)
    # At the defaults (64 units, k = 9) with up to 100 classes a step stays under 64 KiB.
    assert reference_format.reference_bytes(content(units_total=64, units_kept=64, k=9,
                                                    classes=100)) < 64 << 10


def test_an_atlas_page_bomb_is_refused_before_it_is_inflated():
    inputs = {"pictures": True, "thumb_height": 4, "thumb_width": 4, "thumb_channels": 1,
              "per_page": 4, "page_columns": 2, "pages": 1, "inputs": 3}
    page = grid_images.encode_png(np.zeros((4000, 4000), np.uint8))
    with pytest.raises(ValueError, match="more than the 64 expected"):
        reference_format.decode_atlas([page], inputs)


@hypothesis.given(count=st.integers(1, 300), height=st.integers(1, 7),
                  width=st.integers(1, 7), colour=st.booleans())
def test_the_atlas_round_trips(count, height, width, colour):
    shape = (count, height, width) + ((3,) if colour else ())
    thumbnails = np.random.default_rng(count).integers(0, 256, shape).astype(np.uint8)
    per_page, columns, pages = reference_format.atlas_plan(count)
    decoded = reference_format.decode_atlas(reference_format.encode_atlas(thumbnails), {
        "pictures": True, "thumb_height": height, "thumb_width": width,
        "thumb_channels": 3 if colour else 1, "per_page": per_page, "page_columns": columns,
        "pages": pages, "inputs": count})
    assert np.array_equal(decoded, thumbnails)


@hypothesis.given(st.lists(st.lists(st.floats(0, 1e6, allow_subnormal=False), min_size=3,
                                    max_size=3), min_size=1,
                           max_size=6), st.floats(0.1, 100))
def test_selectivity_is_the_morcos_index_and_scale_free(means, scale):
    means = np.array(means)
    count = np.ones(3, int)
    index = reference_format.selectivity_index(means, count)
    for row, value in zip(means, index):
        top = row.max()
        rest = (row.sum() - top) / 2
        if top + rest == 0:
            assert np.isnan(value)
        else:
            assert value == pytest.approx((top - rest) / (top + rest), abs=1e-12)
            assert 0 <= value <= 1
    np.testing.assert_allclose(reference_format.selectivity_index(means * scale, count), index,
                               rtol=1e-9, atol=1e-12)
    assert np.all(np.isnan(reference_format.selectivity_index(means, np.array([5, 0, 0]))))
    preferred = reference_format.preferred_class(means, np.array([1, 0, 1]))
    assert np.all(preferred == np.where(means[:, 2] > means[:, 0], 2, 0))



def test_a_reader_skips_malformed_reference_tags_with_a_warning(tmp_path):
    """Event files are untrusted: a reference tag whose content or blob does not fit is
    skipped, naming why, and the rest is read."""
    good = content(units_total=8, units_kept=2, k=3, inputs=10, classes=2)
    del good["version"]
    bad_content = dict(good, layer="broken", k=0)
    rendered = [
        ("activations_reference/conv", metadata.create_summary_metadata(good),
         [reference_format.encode_reference(good_arrays(), good)]),
        ("activations_reference/broken", metadata.create_summary_metadata(bad_content),
         [b"junk"]),
        ("activations_reference/short", metadata.create_summary_metadata(
            dict(good, layer="short", order=1)), [b"not a zip"]),
    ]
    with events.EventFileWriter(str(tmp_path)) as writer:
        destinations.write_rendered(rendered, 5, writer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = tba.read_reference(tmp_path)["."]
    assert list(run.layers) == ["conv"] and run.layers["conv"][0].step == 5
    reasons = " ".join(str(w.message) for w in caught)
    assert "'k' is 0, expected a top input count 1..100" in reasons
    assert "unreadable reference blob" in reasons
