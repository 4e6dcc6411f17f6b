"""Token labels (token_labels=): stored once per run, read back checked, served by the plugin.

A tiny Hugging Face BERT named by a BertTokenizer built from a vocab file written here (no
download), a Keras text model named by lists, bad values refused before anything is written,
and hostile stored blobs that become a reason, never a crash.
"""

import json
import os

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from tb_activations.format import metadata
from tb_activations.format import tokens
from tb_activations.plugin import backend
from tb_activations.reading import reader

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a",
         "dog", "ran"]
SENTENCES = ["the cat sat on the mat", "a dog ran"]
EXPECTED = [["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"],
            ["[CLS]", "a", "dog", "ran", "[SEP]", "[PAD]", "[PAD]", "[PAD]"]]


def bert_tokenizer(folder):
    transformers = pytest.importorskip("transformers")
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w") as file:
        file.write("\n".join(VOCAB) + "\n")
    try:  # transformers 5 names the vocab file `vocab`; 4 `vocab_file`
        tokenizer = transformers.BertTokenizer(vocab=path)
    except TypeError:
        tokenizer = transformers.BertTokenizer(vocab_file=path)
    assert tokenizer.convert_ids_to_tokens([5, 6]) == ["the", "cat"]
    return tokenizer


def tiny_bert():
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.BertConfig(attn_implementation="sdpa", vocab_size=len(VOCAB),
                                     hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=20)
    return transformers.BertModel(config).eval()


def log_bert_run(run_dir, vocab_folder):
    """A BERT run logged with token_labels=its tokenizer at steps 0 and 1; its layers."""
    import warnings

    import tb_activations.torch as tbat

    tokenizer = bert_tokenizer(vocab_folder)
    probe = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    model = tiny_bert()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # position embeddings of batch 1 are skipped
        for step in (0, 1):
            assert tbat.log_activations(model, probe, step=step, log_dir=str(run_dir),
                                        token_labels=tokenizer)
        tbat.flush()
    return model


def plugin_over(root):
    """Our plugin over `root` with TensorBoard's Python loader, loaded now."""
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins import base_plugin

    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(root))
    return backend.ActivationsPlugin(base_plugin.TBContext(data_provider=provider,
                                                           logdir=str(root)))


def tokens_answer(plugin, run):
    from werkzeug import test as werkzeug_test
    from werkzeug import wrappers

    request = wrappers.Request(werkzeug_test.EnvironBuilder().get_environ())
    tags = plugin._run_series(request, run)
    return plugin._tokens_impl(request, run, tags)


@pytest.fixture(scope="module")
def bert_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert_logs")
    log_bert_run(root / "bert", tmp_path_factory.mktemp("vocab"))
    return root


def test_a_bert_run_stores_its_tokenizers_labels_once_and_the_plugin_serves_them(bert_root):
    tmp_path = bert_root
    assert reader.read_token_labels(str(tmp_path / "bert")) == EXPECTED
    stored = [item.step for item in reader.read_run(str(tmp_path / "bert"))
              if isinstance(item, reader.TokensStep)]
    assert stored == [0]  # once per run, like the probe pictures
    answer = tokens_answer(plugin_over(tmp_path), "bert")
    assert answer == {"tokens": EXPECTED, "problem": None}
    # the layers they name: sequence layers and attention tiles of 8 tokens
    contents = [item.content for item in reader.read_run(str(tmp_path / "bert"))
                if isinstance(item, reader.LayerStep) and item.step == 0]
    attention = [c for c in contents if c.get("source") == "attention"]
    assert attention and attention[0]["output_shape"] == [None, 2, 8, 8]
    assert any(c["layout"] == "sequence" and c["output_shape"][1] == 8 for c in contents)


def test_export_titles_name_the_tokens_and_the_npz_carries_them(bert_root, tmp_path):
    import glob

    from PIL import Image

    import tb_activations as tba

    tba.export(str(bert_root), str(tmp_path / "out"), steps=[1], sample=1,
               formats=["png", "npz"], progress=False,
               layers=["encoder/layer/0/attention/self:attention",
                       "encoder/layer/0/output/LayerNorm", "pooler/dense"])
    npz = sorted(glob.glob(str(tmp_path / "out" / "**" / "statistics.npz"), recursive=True))
    assert len(npz) == 3
    for path in npz:
        with np.load(path, allow_pickle=False) as arrays:
            assert arrays["token_labels"].tolist() == [EXPECTED[1]]
    subtitles = {}
    for path in glob.glob(str(tmp_path / "out" / "**" / "*.png"), recursive=True):
        with Image.open(path) as image:
            subtitles[image.text["Title"].split(" · ")[0]] = image.text["Description"]
    named = "tokens " + " ".join(EXPECTED[1])
    assert subtitles["encoder/layer/0/attention/self:attention"].endswith(named)
    assert subtitles["encoder/layer/0/output/LayerNorm"].endswith(named)
    assert "tokens" not in subtitles["pooler/dense"]  # a vector names no tokens


def test_a_run_without_labels_answers_none(tmp_path):
    import torch

    import tb_activations.torch as tbat

    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    assert tbat.log_activations(model, torch.ones(2, 3), step=0, log_dir=str(tmp_path / "plain"))
    tbat.flush()
    assert tokens_answer(plugin_over(tmp_path), "plain") == {"tokens": None, "problem": None}


def keras_text_model():
    import keras

    inputs = keras.Input((5,), dtype="int32", name="words")
    x = keras.layers.Embedding(20, 8, name="embed")(inputs)
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = keras.layers.Dense(6, name="dense")(x)
    return keras.Model(inputs, x)


KERAS_LABELS = [["i", "like", "green", "tea", "."], ["you", "do", "not", "<pad>", "<pad>"]]


def test_keras_log_activations_and_the_callback_store_lists_of_labels(tmp_path):
    import keras

    import tb_activations as tba

    model = keras_text_model()
    ids = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]], np.int32)
    assert tba.log_activations(model, ids, step=3, log_dir=str(tmp_path / "log"),
                               token_labels=KERAS_LABELS)
    assert reader.read_token_labels(str(tmp_path / "log")) == KERAS_LABELS

    model.compile("sgd", "mse")
    callback = tba.ActivationsCallback(str(tmp_path / "fit"), ids, token_labels=KERAS_LABELS)
    model.fit(ids, np.zeros((2, 5, 6), np.float32), epochs=1, verbose=0, callbacks=[callback])
    assert reader.read_token_labels(str(tmp_path / "fit")) == KERAS_LABELS
    shapes = {item.content["layer"]: item.content["output_shape"]
              for item in reader.read_run(str(tmp_path / "fit"))
              if isinstance(item, reader.LayerStep)}
    assert shapes["mha:attention"] == [None, 2, 5, 5]
    assert keras.backend.backend()  # whichever backend the suite runs on


BAD = [
    ("not a list", TypeError, r"list \(one per probe sample\)"),
    ([["a", "b"]], ValueError, "1 lists but the probe has 2 samples"),
    ([["a", 3], ["b", "c"]], TypeError, r"token_labels\[0\]\[1\] must be a string"),
    (["ab", "cd"], TypeError, r"token_labels\[0\] must be a list of strings"),
    ([["x" * 65], ["y"]], ValueError, r"token_labels\[0\]\[0\] has 65 characters"),
    ([["t"] * 4097, ["t"]], ValueError, r"token_labels\[0\] has 4097 labels"),
    ([[]] * 257, ValueError, "257 lists but the probe has 2"),
]


@pytest.mark.parametrize("labels, error, message", BAD)
def test_bad_labels_raise_naming_what_is_wrong_before_anything_is_written(
        tmp_path, labels, error, message):
    import torch

    import tb_activations.torch as tbat

    model = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    with pytest.raises(error, match=message):
        tbat.log_activations(model, torch.zeros(2, 3, dtype=torch.long), step=0,
                             log_dir=str(tmp_path / "bad"), token_labels=labels)
    assert not (tmp_path / "bad").exists() or not os.listdir(tmp_path / "bad")


def test_the_bounds_themselves():
    with pytest.raises(ValueError, match="257 lists, more than the 256"):
        tokens.check_labels([["a"]] * 257)
    with pytest.raises(ValueError, match="bytes as stored, more than"):
        tokens.encode([["\u2603" * 64] * 4096] * 2)
    assert tokens.check_option(None) is None
    with pytest.raises(TypeError):
        tokens.check_option({"a": 1})


def test_a_tokenizer_needs_integer_ids_of_samples_by_tokens():
    class Tokenizer:
        def convert_ids_to_tokens(self, ids):
            return ["w%d" % i for i in ids]

    with pytest.raises(ValueError, match="no integer input"):
        tokens.resolve(Tokenizer(), [("x", np.zeros((2, 3), np.float32))], 2)
    with pytest.raises(ValueError, match="not \\(samples, tokens\\)"):
        tokens.resolve(Tokenizer(), [("x", np.zeros((2, 3, 4), np.int64))], 2)
    named = [("mask", np.ones((2, 2), np.int64)), ("input_ids", np.array([[1, 2], [3, 4]]))]
    assert tokens.resolve(Tokenizer(), named, 2) == [["w1", "w2"], ["w3", "w4"]]


def test_the_lightning_callback_checks_labels_when_made():
    from tb_activations.torch import lightning_logging

    with pytest.raises(TypeError, match=r"token_labels\[1\]\[0\] must be a string"):
        lightning_logging.ActivationsLogging(np.zeros((2, 3)), token_labels=[["a"], [None]])


# Hostile stored blobs: anything at all, and the content's sample count.
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=80),
                     lambda inner: st.lists(inner, max_size=6)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(value=_JSON | st.fixed_dictionaries({"tokens": _JSON}),
                  samples=st.integers(1, 1 << 16))
def test_any_stored_json_decodes_to_checked_labels_or_a_value_error(value, samples):
    blob = json.dumps(value).encode("utf-8")
    try:
        labels = tokens.decode([blob], {"samples": samples})
    except ValueError:
        return
    assert len(labels) == samples
    assert all(isinstance(label, str) and len(label) <= tokens.MAX_LABEL_CHARS
               for row in labels for label in row)


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(blob=st.binary(max_size=200))
def test_any_bytes_are_a_value_error_or_labels(blob):
    try:
        tokens.decode([blob], {"samples": 1})
    except ValueError:
        pass


def test_an_oversized_blob_is_refused_before_it_is_parsed():
    blob = b'{"tokens": [[' + b'"a",' * (tokens.MAX_BLOB_BYTES // 4) + b'"a"]]}'
    with pytest.raises(ValueError, match="more than the %d" % tokens.MAX_BLOB_BYTES):
        tokens.decode([blob], {"samples": 1})


def _write_tokens(run_dir, content, values, tag=metadata.TOKENS_TAG):
    from tb_activations.writing import destinations
    from tb_activations.writing import events

    summary = metadata.create_summary_metadata(content)
    writer = events.EventFileWriter(str(run_dir))
    try:
        destinations.write_rendered([(tag, summary, values)], 0, writer)
    finally:
        writer.close()


def test_hostile_token_tags_become_reasons_in_the_route_and_the_reader(tmp_path):
    cases = {
        "not_json": ({"kind": "tokens", "samples": 1}, [b"\xff{"]),
        "wrong_shape": ({"kind": "tokens", "samples": 1}, [b'{"tokens": "abc"}']),
        "wrong_count": ({"kind": "tokens", "samples": 2}, [b'{"tokens": [["a"]]}']),
        "numbers": ({"kind": "tokens", "samples": 1}, [b'{"tokens": [[1, 2]]}']),
        "two_blobs": ({"kind": "tokens", "samples": 1}, [b'{"tokens": [["a"]]}'] * 2),
        "huge": ({"kind": "tokens", "samples": 1},
                 [b'{"tokens": [["' + b"a" * (tokens.MAX_BLOB_BYTES + 1) + b'"]]}']),
    }
    for name, (content, values) in cases.items():
        _write_tokens(tmp_path / name, content, values)
    _write_tokens(tmp_path / "elsewhere", {"kind": "tokens", "samples": 1},
                  [b'{"tokens": [["a"]]}'], tag="activations_tokens_2")
    plugin = plugin_over(tmp_path)
    for name in cases:
        answer = tokens_answer(plugin, name)
        assert answer["tokens"] is None and answer["problem"].startswith(metadata.TOKENS_TAG), \
            (name, answer)
        with pytest.warns(UserWarning, match="skipping"):
            assert reader.read_token_labels(str(tmp_path / name)) is None
    # a tokens tag under another name is unreadable: listed as a problem, never served
    assert tokens_answer(plugin, "elsewhere") == {"tokens": None, "problem": None}
    assert any("activations_tokens_2" in problem
               for problem in plugin._problems[""].get("elsewhere", []))
