"""get_activations on real Keras models: structure, paths, values, selection and probe errors."""

import keras
import numpy as np
import pytest

from tests import models
from tb_activations import get_activations
from tb_activations.keras import capture


def reference(model, x, names):
    """{name: array} from a hand-built multi-output keras.Model over the layers' outputs."""
    tensors = []
    for name in names:
        path, _, index = name.partition(":")
        output = model.get_layer(path).output
        tensors.append(output[int(index or 0)] if isinstance(output, (list, tuple)) else output)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    values = keras.Model(inputs, tensors)(x, training=False)
    values = values if isinstance(values, (list, tuple)) else [values]
    return {name: keras.ops.convert_to_numpy(value) for name, value in zip(names, values)}


def assert_same(actual, expected, rtol=1e-5, atol=1e-6):
    assert set(expected) <= set(actual)
    for name, value in expected.items():
        assert actual[name].shape == value.shape, name
        np.testing.assert_allclose(actual[name], value, rtol=rtol, atol=atol, err_msg=name)


def test_sequential_paths_order_and_values():
    model = keras.Sequential([
        keras.Input((9, 9, 2), name="grid"),
        keras.layers.Conv2D(3, 3, activation="relu", name="conv"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dropout(0.5, name="drop"),
        keras.layers.Dense(4, activation="tanh", name="dense"),
    ], name="seq")
    x = models.rng(1).normal(size=(5, 9, 9, 2)).astype("float32")
    acts = get_activations(model, x)
    assert list(acts) == ["conv", "dense"]
    assert all(isinstance(value, np.ndarray) and value.shape[0] == 5 for value in acts.values())
    assert_same(acts, reference(model, x, ["conv", "dense"]))
    np.testing.assert_allclose(acts["dense"], model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_functional_branches_add_concatenate():
    model = models.branchy()
    x = models.rng(2).normal(size=(3, 12, 12, 3)).astype("float32")
    acts = get_activations(model, x)
    names = ["stem", "left", "right", "add", "concat", "gap", "head"]
    assert sorted(acts) == sorted(names)
    order = list(acts)
    # Call order: a layer comes after every layer it reads from.
    assert order.index("stem") < order.index("left") < order.index("add")
    assert order.index("right") < order.index("add") < order.index("concat") < order.index("gap")
    assert_same(acts, reference(model, x, names))
    np.testing.assert_allclose(acts["add"], acts["left"] + acts["right"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(acts["concat"][..., 4:], acts["stem"])


@pytest.mark.parametrize("as_dict", [False, True], ids=["list", "dict"])
def test_several_inputs_and_outputs(as_dict):
    model = models.multi_io(dict_inputs=as_dict)
    image, meta = models.multi_io_probe()
    probe = {"image": image, "meta": meta} if as_dict else [image, meta]
    acts = get_activations(model, probe)
    names = ["conv", "gmp", "meta_dense", "joined", "label", "score"]
    assert sorted(acts) == sorted(names)
    assert_same(acts, reference(model, probe, names))
    label, score = model(probe)
    np.testing.assert_allclose(acts["label"], label, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["score"], score, rtol=1e-5, atol=1e-6)


def test_list_model_takes_a_dict_probe_by_input_name():
    model = models.multi_io(dict_inputs=False)
    image, meta = models.multi_io_probe()
    from_list = get_activations(model, [image, meta])
    from_dict = get_activations(model, {"meta": meta, "image": image})
    assert list(from_dict) == list(from_list)
    for name in from_list:
        np.testing.assert_array_equal(from_dict[name], from_list[name])


@pytest.fixture(scope="module")
def mobilenet():
    keras.utils.set_random_seed(3)
    model = models.nested_mobilenet()
    x = models.rng(3).uniform(-1, 1, size=(2, 96, 96, 3)).astype("float32")
    return model, model.layers[0], x


def test_nested_model_paths_and_values(mobilenet):
    model, backbone, x = mobilenet
    acts = get_activations(model, x)
    prefix = backbone.name + "/"
    assert backbone.name.startswith("mobilenetv2_")
    assert prefix + "block_1_expand" in acts
    assert backbone.name not in acts  # the container itself is drawn as its last layer
    assert prefix + "block_1_pad" not in acts  # ZeroPadding2D
    assert list(acts)[-2:] == ["gap", "head"]
    inner = [path for path in acts if path.startswith(prefix)]
    assert len(inner) > 100 and inner[0] == prefix + "Conv1"
    probe_model = keras.Model(backbone.input, [backbone.get_layer("block_1_expand").output,
                                               backbone.get_layer("out_relu").output])
    expand, last = probe_model(x, training=False)
    np.testing.assert_allclose(acts[prefix + "block_1_expand"], expand, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(acts[prefix + "out_relu"], last, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(acts["head"], model(x, training=False), rtol=1e-4, atol=1e-4)


def test_nested_selection_by_glob_name_and_class(mobilenet):
    model, backbone, x = mobilenet
    prefix = backbone.name + "/"
    acts = get_activations(model, x, layers=backbone.name + "/block_1_*")
    assert list(acts) and all(path.startswith(prefix + "block_1_") for path in acts)
    assert prefix + "block_1_pad" in acts  # explicitly selected pass-through layers are drawn
    assert list(get_activations(model, x, layers="block_2_add")) == [prefix + "block_2_add"]
    both = get_activations(model, x, layers=["head", prefix + "Conv1"])
    assert list(both) == [prefix + "Conv1", "head"]  # call order, not the order asked
    adds = get_activations(model, x, layers=keras.layers.Add)
    assert list(adds) and all(path.rsplit("/", 1)[-1].endswith("_add") for path in adds)


def test_subclassed_model_with_composite_sublayer():
    model = models.subclassed()
    x = models.rng(4).normal(size=(3, 8, 8, 3)).astype("float32")
    acts = get_activations(model, x)
    assert sorted(acts) == sorted(["conv", "gap", "block/inner", "block/norm", "block", "out"])
    conv = model.conv(x)
    pooled = model.pool(conv)
    inner = model.block.inner(pooled)
    expected = {"conv": conv, "gap": pooled, "block/inner": inner,
                "block/norm": model.block.norm(inner), "block": model.block(pooled),
                "out": model(x)}
    assert_same(acts, {key: keras.ops.convert_to_numpy(value) for key, value in expected.items()})


def test_shared_layer_reports_its_first_call():
    model = models.shared_layer()
    x = models.rng(5).normal(size=(4, 6)).astype("float32")
    acts = get_activations(model, x)
    assert list(acts) == ["shared", "relu", "out"]
    shared = model.get_layer("shared")
    first = keras.ops.convert_to_numpy(shared(x))
    second = keras.ops.convert_to_numpy(shared(np.maximum(first, 0)))
    assert not np.allclose(first, second)
    np.testing.assert_allclose(acts["shared"], first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["relu"], np.maximum(first, 0), rtol=1e-5, atol=1e-6)


def test_integer_inputs_lstm_and_attention_with_several_outputs():
    model = models.sequence_attention()
    tokens = models.sequence_probe(batch=3)
    acts = get_activations(model, tokens)
    assert {"embed", "lstm", "attention", "attention:1", "gap", "joined", "out"} <= set(acts)
    order = list(acts)
    assert order.index("attention:1") == order.index("attention") + 1
    assert acts["attention"].shape == (3, 7, 6) and acts["attention:1"].shape == (3, 2, 7, 7)
    table = keras.ops.convert_to_numpy(model.get_layer("embed").embeddings)
    np.testing.assert_allclose(acts["embed"], table[tokens], rtol=1e-6)
    np.testing.assert_allclose(acts["attention:1"].sum(-1), 1.0, rtol=1e-5)  # softmax scores
    assert_same(acts, reference(model, tokens,
                                ["embed", "lstm", "attention", "attention:1", "gap", "out"]),
                rtol=1e-4, atol=1e-5)
    # The LSTM's cell is one time step, not the sequence: left out unless asked for, and then
    # its first call is the first step (output, then its two states).
    assert not [path for path in acts if path.startswith("lstm/")]
    cell = get_activations(model, tokens, layers="lstm/*")
    assert list(cell) == ["lstm/lstm_cell", "lstm/lstm_cell:1", "lstm/lstm_cell:2"]
    np.testing.assert_allclose(cell["lstm/lstm_cell"], acts["lstm"][:, 0], rtol=1e-5, atol=1e-6)
    # Whole-number floats are accepted for integer inputs.
    as_float = get_activations(model, tokens.astype("float64"))
    np.testing.assert_array_equal(as_float["embed"], acts["embed"])


def test_conv3d_model():
    model = models.conv3d()
    x = models.rng(6).normal(size=(2, 6, 10, 10, 2)).astype("float32")
    acts = get_activations(model, x)
    assert list(acts) == ["conv3d", "pool3d", "gap3d", "out"]
    assert acts["conv3d"].shape == (2, 6, 10, 10, 3) and acts["pool3d"].shape == (2, 3, 5, 5, 3)
    assert_same(acts, reference(model, x, list(acts)))


def test_values_follow_weight_changes_and_wrappers_are_removed():
    model = models.small_cnn()
    x = models.digits(3)[0]
    before = get_activations(model, x)
    conv = model.get_layer("conv1")
    kernel, bias = conv.get_weights()
    conv.set_weights([np.zeros_like(kernel), np.full_like(bias, 0.5)])
    after = get_activations(model, x)
    np.testing.assert_allclose(after["conv1"], 0.5)
    assert not np.allclose(before["conv1"], after["conv1"])
    # The recording wrappers are gone: no layer keeps an instance-level `call`.
    assert not [layer.name for layer in model._flatten_layers() if "call" in layer.__dict__]
    np.testing.assert_allclose(after["logits"], model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)


def test_default_selection_skips_pass_through_layers():
    model = models.small_cnn()
    acts = get_activations(model, models.digits(2)[0])
    assert list(acts) == models.SMALL_CNN_DRAWN  # no image, pad, flatten, dropout, reshape


@pytest.mark.parametrize("layers, expected", [
    ("conv2", ["conv2"]),
    ("flatten", ["flatten"]),
    ("conv*", ["conv1", "conv2"]),
    (keras.layers.Dense, ["dense", "logits"]),
    (lambda layer: layer.name.endswith("1"), ["conv1", "bn1"]),
    (["logits", "conv?", keras.layers.MaxPooling2D, "logits"], ["conv1", "conv2", "pool",
                                                                "logits"]),
    (("dropout", "pad"), ["pad", "dropout"]),
], ids=["name", "skipped-by-default", "glob", "class", "predicate", "list", "tuple"])
def test_layer_selection(layers, expected):
    acts = get_activations(models.small_cnn(), models.digits(2)[0], layers=layers)
    assert list(acts) == expected


def test_selection_matching_nothing_lists_the_layers():
    model = models.small_cnn()
    with pytest.raises(ValueError, match="matches no layer") as error:
        get_activations(model, models.digits(2)[0], layers=["conv1", "nonexistent*"])
    for name in ("conv1", "pad", "flatten", "logits"):
        assert name in str(error.value)
    with pytest.raises(ValueError, match="empty"):
        get_activations(model, models.digits(2)[0], layers=[])
    with pytest.raises(TypeError, match="names, path globs"):
        get_activations(model, models.digits(2)[0], layers=[3])


def test_selecting_a_layer_the_forward_pass_never_calls():
    with pytest.raises(ValueError, match="never called"):
        get_activations(models.small_cnn(), models.digits(2)[0], layers="image")


def embedding_sequential():
    return keras.Sequential([keras.Input((4,), dtype="int32", name="ids"),
                             keras.layers.Embedding(10, 2, name="embed")])


@pytest.mark.parametrize("build, probe, error, words", [
    (models.small_cnn, np.zeros((2, 8, 8, 1)), ValueError, ["(2, 8, 8, 1)", "(None, 16, 16, 1)"]),
    (models.small_cnn, np.zeros((16, 16, 1)), ValueError, ["(16, 16, 1)", "batch first"]),
    (lambda: keras.Sequential([keras.Input((4,), name="v"), keras.layers.Dense(2)]),
     np.zeros((2, 5)), ValueError, ["(2, 5)", "(None, 4)"]),
    (models.sequence_attention, np.full((2, 7), 1.5), ValueError, ["non-integer", "int32"]),
    (models.sequence_attention, np.full((2, 7), np.nan), ValueError, ["non-integer", "int32"]),
    (embedding_sequential, np.full((2, 4), 1.7), ValueError, ["non-integer", "int32"]),
    (lambda: keras.Sequential([keras.layers.Dense(2)]), np.zeros((2, 3)), ValueError,
     ["not built", "build"]),
    (models.Subclassed, np.zeros((2, 8, 8, 3)), ValueError, ["not built"]),
    (lambda: keras.layers.Dense(2), np.zeros((2, 3)), TypeError, ["keras.Model", "Dense"]),
    (lambda: (lambda x: x), np.zeros((2, 3)), TypeError, ["keras.Model", "function"]),
    (lambda: models.multi_io(), models.multi_io_probe()[0], ValueError,
     ["takes 2 inputs", "image, meta", "list or dict"]),
    (lambda: models.multi_io(), list(models.multi_io_probe()) * 2, ValueError,
     ["takes 2 inputs", "4 arrays"]),
    (lambda: models.multi_io(), [models.multi_io_probe()[0], np.zeros((2, 5))], ValueError,
     ["same non-zero batch size", "(3, 10, 10, 1)", "(2, 5)"]),
    (lambda: models.multi_io(True), {"image": models.multi_io_probe()[0], "metadata": 0},
     ValueError, ["'image', 'meta'", "'metadata'"]),
    (lambda: models.multi_io(), {"image": models.multi_io_probe()[0], "metadata": 0},
     ValueError, ["'image', 'meta'", "'metadata'"]),
    (lambda: models.multi_io(True), {"image": np.zeros((3, 10, 9, 1)),
                                     "meta": np.zeros((3, 5))},
     ValueError, ["probe['image']", "(None, 10, 10, 1)"]),
    (models.small_cnn, np.zeros((0, 16, 16, 1)), ValueError, ["non-zero batch size"]),
    (models.small_cnn, None, ValueError, ["probe is None"]),
    (models.small_cnn, np.array([["a"]]), TypeError, ["numeric"]),
], ids=["shape", "rank", "sequential-shape", "non-integer-tokens", "nan-tokens",
        "sequential-non-integer-tokens", "unbuilt-sequential", "unbuilt-subclassed",
        "a-layer", "a-function", "one-array-for-two-inputs", "four-arrays-for-two-inputs",
        "batch-sizes", "dict-keys", "dict-keys-list-model", "dict-shape", "empty-batch",
        "none", "strings"])
def test_bad_input_errors_name_what_was_expected(build, probe, error, words):
    model = build()
    with pytest.raises(error) as raised:
        get_activations(model, probe)
    for word in words:
        assert word in str(raised.value)


def test_a_probe_a_subclassed_model_rejects_gets_the_model_s_own_message():
    model = models.subclassed((8, 8, 3))
    with pytest.raises(ValueError) as raised:
        get_activations(model, np.zeros((2, 8, 8, 1), "float32"))
    message = str(raised.value)
    assert message.startswith("the probe (2, 8, 8, 1) could not pass through model 'subclassed'")
    assert "expected axis -1 of input shape to have value 3" in message
    assert "in user code" not in message and "\x1b" not in message


def test_an_unsupported_keras_backend_is_named_in_the_error(monkeypatch):
    # Keras picks its backend once per process: what the guard reads is swapped instead.
    model = models.small_cnn()
    monkeypatch.setattr(keras.backend, "backend", lambda: "openvino")
    with pytest.raises(RuntimeError, match=r"on the jax, tensorflow, torch backends, but Keras "
                                           r"runs on its 'openvino' backend.*KERAS_BACKEND"):
        get_activations(model, models.digits(1)[0])


def test_a_dataset_probe_uses_the_inputs_of_its_first_batch():
    import tensorflow as tf

    model = models.multi_io(True)
    image, meta = models.multi_io_probe()
    expected = get_activations(model, {"image": image, "meta": meta})
    labels = np.arange(len(image))
    dataset = tf.data.Dataset.from_tensor_slices(({"image": image, "meta": meta}, labels))
    assert_same(get_activations(model, dataset.batch(len(image))), expected)
    assert_same(get_activations(model, dataset.map(lambda x, y: x).batch(len(image))), expected)
    with pytest.raises(ValueError, match="dataset is empty"):
        get_activations(model, dataset.batch(2).take(0))


def test_probe_traced_once_per_signature_and_cached_on_the_model():
    model = models.small_cnn()
    x = models.digits(3)[0]
    get_activations(model, x)
    get_activations(model, x * 2)
    get_activations(model, x, layers="conv1")
    cache = model.__dict__["_tb_activations_probes"]
    assert len(cache) == 2
    get_activations(model, x[:2])  # another batch size is another signature
    assert len(cache) == 3
    assert not isinstance(capture.prepare_probe(model, x.astype("float64")), list)
    assert capture.prepare_probe(model, x.astype("float64")).dtype == np.float32
