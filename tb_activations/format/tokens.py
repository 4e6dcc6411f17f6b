"""Token labels: the names of a text model's sequence positions, per probe sample.

`token_labels=` (log_activations and the callbacks) is a list of lists of strings (one list
per probe sample), or a tokenizer (anything with `convert_ids_to_tokens`, as Hugging Face's
have) that names the probe's token ids. The labels are stored once per run, like the probe
pictures, as one JSON blob under the tag `activations_tokens` (docs/format.md "Token labels"),
bounded on write (a clear error) and checked on read (the blob is untrusted).
Imports no framework: the probe's arrays come in as numpy.
"""

import json

import numpy as np

from tb_activations.format import metadata

# Bounds of what is stored: per run at most MAX_SAMPLES lists of at most MAX_TOKENS labels of
# at most MAX_LABEL_CHARS characters, in a blob of at most MAX_BLOB_BYTES.
MAX_SAMPLES = 256
MAX_TOKENS = 4096
MAX_LABEL_CHARS = 64
MAX_BLOB_BYTES = 1 << 20
# The probe input a tokenizer's ids are taken from when the probe is named.
IDS_INPUT = "input_ids"


def is_tokenizer(value):
    return callable(getattr(value, "convert_ids_to_tokens", None))


def check_option(token_labels):
    """`token_labels` as given if it can be one (None, a tokenizer, or a list of lists of
    strings, checked but for the probe's sample count); TypeError or ValueError saying what
    is wrong. For callbacks, which see the probe's shape later."""
    if token_labels is None or is_tokenizer(token_labels):
        return token_labels
    return check_labels(token_labels)


def check_labels(labels, samples=None):
    """`labels` as a list (one per probe sample) of lists of str, checked against the bounds
    (and the probe's `samples` when given); TypeError or ValueError naming what is wrong."""
    if isinstance(labels, (str, bytes)) or not isinstance(labels, (list, tuple)):
        raise TypeError("token_labels must be a list (one per probe sample) of lists of "
                        "strings, or a tokenizer with convert_ids_to_tokens; got %s"
                        % type(labels).__name__)
    if samples is not None and len(labels) != samples:
        raise ValueError("token_labels has %d lists but the probe has %d samples: pass one "
                         "list of labels per probe sample" % (len(labels), samples))
    if not labels:
        raise ValueError("token_labels is empty: pass one list of labels per probe sample")
    if len(labels) > MAX_SAMPLES:
        raise ValueError("token_labels has %d lists, more than the %d stored: label at most "
                         "%d probe samples" % (len(labels), MAX_SAMPLES, MAX_SAMPLES))
    checked = []
    for sample, row in enumerate(labels):
        if isinstance(row, (str, bytes)) or not isinstance(row, (list, tuple)):
            raise TypeError("token_labels[%d] must be a list of strings (the sample's tokens), "
                            "got %s" % (sample, type(row).__name__))
        if len(row) > MAX_TOKENS:
            raise ValueError("token_labels[%d] has %d labels, more than the %d stored per "
                             "sample" % (sample, len(row), MAX_TOKENS))
        for position, label in enumerate(row):
            if not isinstance(label, str):
                raise TypeError("token_labels[%d][%d] must be a string, got %s %r"
                                % (sample, position, type(label).__name__, label))
            if len(label) > MAX_LABEL_CHARS:
                raise ValueError("token_labels[%d][%d] has %d characters, more than the %d "
                                 "stored per label: %r..." % (sample, position, len(label),
                                                              MAX_LABEL_CHARS, label[:20]))
        checked.append(list(row))
    return checked


def token_ids(named_arrays):
    """The probe's token ids: its `input_ids` input, else its first integer array; (name,
    array) or None. `named_arrays`: [(name, numpy array, batch first)]."""
    integer = [(name, array) for name, array in named_arrays
               if np.asarray(array).dtype.kind in "iu"]
    for name, array in integer:
        if name == IDS_INPUT:
            return name, np.asarray(array)
    return (integer[0][0], np.asarray(integer[0][1])) if integer else None


def resolve(token_labels, named_arrays, samples):
    """The labels to store for a probe of `samples` samples whose inputs are `named_arrays`
    ([(name, numpy array)], batch first): None, the lists checked, or a tokenizer's tokens of
    the probe's ids. Raises naming what is wrong, before anything is written."""
    if token_labels is None:
        return None
    if not is_tokenizer(token_labels):
        return check_labels(token_labels, samples)
    found = token_ids(named_arrays)
    if found is None:
        raise ValueError("token_labels is a tokenizer, but the probe has no integer input "
                         "(its input_ids) to name the tokens of")
    name, ids = found
    if ids.ndim != 2:
        raise ValueError("token_labels is a tokenizer, and the probe's token ids (%s) are of "
                         "shape %s, not (samples, tokens)" % (name, ids.shape))
    labels = []
    for sample, row in enumerate(ids):
        tokens = token_labels.convert_ids_to_tokens([int(i) for i in row])
        if not isinstance(tokens, (list, tuple)):
            raise TypeError("the tokenizer's convert_ids_to_tokens gave a %s, not a list of "
                            "strings" % type(tokens).__name__)
        labels.append(["" if token is None else token for token in tokens])
    return check_labels(labels, samples)


def encode(labels):
    """The stored blob of checked labels; ValueError past MAX_BLOB_BYTES."""
    blob = json.dumps({"tokens": labels}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")
    if len(blob) > MAX_BLOB_BYTES:
        raise ValueError("token_labels take %d bytes as stored, more than the %d allowed: "
                         "pass fewer or shorter labels" % (len(blob), MAX_BLOB_BYTES))
    return blob


def render(labels):
    """[(tag, SummaryMetadata, [blob])] storing `labels` (none for None)."""
    if labels is None:
        return []
    content = {"kind": metadata.KIND_TOKENS, "samples": len(labels)}
    return [(metadata.TOKENS_TAG, metadata.create_summary_metadata(content), [encode(labels)])]


def check_tag(tag):
    """ValueError unless `tag` is the token labels' tag (a tokens kind under another name is
    unreadable, as an epoch record's is)."""
    if tag != metadata.TOKENS_TAG:
        raise ValueError("token labels are read from the tag %r only" % metadata.TOKENS_TAG)


def decode(values, content):
    """The labels stored in a tokens tag's values (a list of one blob), checked: a list per
    sample (as many as `content["samples"]`) of lists of strings within the bounds;
    ValueError saying why not."""
    if len(values) != 1:
        raise ValueError("a token labels value holds %d blobs, expected 1" % len(values))
    stored = metadata.json_blob(values[0], MAX_BLOB_BYTES, "the token labels blob")
    if not isinstance(stored, dict) or set(stored) != {"tokens"}:
        raise ValueError('the token labels blob is not {"tokens": [...]}')
    try:
        return check_labels(stored["tokens"], content["samples"])
    except TypeError as error:
        raise ValueError(str(error)) from None


def matching(labels, length):
    """`labels` if there are exactly `length` of them, else None (a layer of another
    sequence length gets no labels)."""
    return labels if labels is not None and len(labels) == length else None


def token_axes(content):
    """(query tokens, key tokens) a layer's grid spans by its plugin content, as counts of the
    tokens whose labels name them: an attention layer's (Tq, Tk), a (B, T, F) sequence's
    (T, None), prefix tokens' (their whole output's tokens, None); (None, None) otherwise."""
    shape, source = content.get("output_shape") or [], content.get("source")
    if source == "attention" and len(shape) == 4:
        return shape[2], shape[3]
    if source == "prefix_tokens" and isinstance(content.get("token_grid"), dict):
        grid = content["token_grid"]
        return grid["prefix_tokens"] + grid["rows"] * grid["columns"], None
    if source is None and content.get("layout") == "sequence" and len(shape) == 3:
        return shape[1], None
    return None, None


def layer_text(labels, content):
    """What a figure's subtitle says of the tokens of one sample's layer ("tokens [CLS] the
    cat ..."), or None where the labels are not as many as the layer's token axis."""
    if labels is None:
        return None
    queries, keys = token_axes(content)
    if queries is not None and len(labels) == queries and (keys is None or keys == queries):
        return "tokens " + " ".join(labels)
    if keys is not None and len(labels) == keys:
        return "keys " + " ".join(labels)
    return None
