"""What an activations summary is: plugin name, tag names, versioned plugin content.

Shared by the writer and the TensorBoard plugin, so it imports neither TensorFlow nor Keras.
The full stored format is described in docs/format.md.
"""

import json

from tensorboard.compat.proto import summary_pb2

from tb_activations.format import layout

PLUGIN_NAME = "activations"

# Bumped when the stored format changes in a way an older reader would misread. Version 2
# bounds the statistics blob by the caps (docs/format.md); version 1 logs are still read.
PROTOCOL_VERSION = 2

LAYER_TAG_PREFIX = "activations/"
PROBE_TAG_PREFIX = "activations_probe/"
OVERVIEW_TAG = "activations_overview"
EPOCH_TAG = "activations_epochs"
TOKENS_TAG = "activations_tokens"
# What units respond to over a reference set (format/reference.py): per layer and reference
# step, and the reference inputs' thumbnails and labels once per run.
REFERENCE_TAG_PREFIX = "activations_reference/"
REFERENCE_INPUTS_TAG = "activations_reference_inputs"

KIND_LAYER = "layer"
KIND_PROBE = "probe"
KIND_OVERVIEW = "overview"
KIND_EPOCH = "epoch"
KIND_TOKENS = "tokens"
KIND_REFERENCE = "reference"
KIND_REFERENCE_INPUTS = "reference_inputs"
KINDS = (KIND_LAYER, KIND_PROBE, KIND_OVERVIEW, KIND_EPOCH, KIND_TOKENS, KIND_REFERENCE,
         KIND_REFERENCE_INPUTS)

# Pixel codes in a grid PNG: finite values are scaled linearly onto 0..FINITE_MAX_CODE,
# NaN/Inf get their own code, gutters and padding another, so the viewer can recover
# real values and draw non-finite values as a marked colour.
FINITE_MAX_CODE = 253
NONFINITE_CODE = 254
GUTTER_CODE = 255

# Order of the per-channel statistics stored beside each grid (and, from version 2, of the
# layer-level ones over every unit of a sample).
STAT_FIELDS = ("min", "max", "mean", "std", "zero_fraction", "nan_count", "inf_count")

# The arrays of a statistics blob per format version: name -> (numpy dtype, what it holds).
# Version 1 took any float or integer dtype kind; version 2 is exact, so its size is known
# before it is read. Shapes follow from the tag's content (rendering.statistics_shapes).
STATISTICS_ARRAYS = {
    1: {"stats": ("f", "statistics"), "ranges": ("f", "tile ranges"),
        "channels": ("iu", "drawn channels")},
    2: {"stats": ("float32", "statistics"), "ranges": ("float32", "tile ranges"),
        "channels": ("int32", "kept units"), "layer": ("float32", "layer statistics"),
        "silent": ("uint8", "silent unit bits")},
}

# How a layer's output is laid out as a grid (layout.py; docs/format.md).
LAYOUTS = ("channels", "volume", "sequence", "vector")


def layer_tag(path):
    return LAYER_TAG_PREFIX + path


def probe_tag(input_name):
    return PROBE_TAG_PREFIX + input_name


def reference_tag(path):
    return REFERENCE_TAG_PREFIX + path


def create_summary_metadata(content):
    """Summary metadata carrying `content` (a JSON-able dict) for one tag.

    The data class must be set here: TensorBoard fills it in only for its own plugins, and the
    Rust data server drops series without it.
    """
    if content.get("kind") not in KINDS:
        raise ValueError("plugin content kind must be one of %s, got %r"
                         % (", ".join(KINDS), content.get("kind")))
    payload = dict(content, version=PROTOCOL_VERSION)
    return summary_pb2.SummaryMetadata(
        summary_description="",
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=json.dumps(payload, sort_keys=True).encode("utf-8"),
        ),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    )


def parse_plugin_content(content):
    """The dict stored in a tag's plugin content; ValueError if it is not ours or too new."""
    try:
        payload = json.loads(content.decode("utf-8") if isinstance(content, bytes) else content)
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError("activations plugin content is not JSON: %s" % error) from None
    if not isinstance(payload, dict):
        raise ValueError("activations plugin content must be a JSON object, got %s"
                         % type(payload).__name__)
    version = payload.get("version")
    if not isinstance(version, int) or version < 1:
        raise ValueError("activations plugin content has no valid version: %r" % (version,))
    if version > PROTOCOL_VERSION:
        raise ValueError("activations data of format version %d needs a newer tb-activations "
                         "(this one reads up to %d)" % (version, PROTOCOL_VERSION))
    if payload.get("kind") not in KINDS:
        raise ValueError("activations plugin content has unknown kind %r" % (payload.get("kind"),))
    schema = _SCHEMAS[payload["kind"]]
    if payload["kind"] == KIND_LAYER and version >= 2:
        schema = _LAYER_SCHEMA_V2
    for field, (check, expected) in schema.items():
        if field not in payload or not check(payload[field]):
            raise ValueError("activations plugin content field %r is %s, expected %s"
                             % (field, "missing" if field not in payload
                                else _shown(payload[field]), expected))
    if payload["kind"] == KIND_LAYER:
        for field, (check, expected) in _OPTIONAL_LAYER_FIELDS.items():
            if field in payload and not check(payload[field]):
                raise ValueError("activations plugin content field %r is %s, expected %s"
                                 % (field, _shown(payload[field]), expected))
    for fields, (check, expected) in _CROSS_CHECKS.get(payload["kind"], ()):
        if not check(*(payload[field] for field in fields)):
            raise ValueError("activations plugin content fields %s are %s, expected %s"
                             % (", ".join(fields), _shown([payload[f] for f in fields]),
                                expected))
    return payload


def json_blob(blob, max_bytes, what):
    """The JSON value a blob of an event file holds (untrusted): ValueError naming `what` if
    it is over `max_bytes` (refused before it is parsed) or not JSON."""
    if len(blob) > max_bytes:
        raise ValueError("%s of %d bytes, more than the %d one may hold"
                         % (what, len(blob), max_bytes))
    try:
        return json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError("%s is not JSON: %s" % (what, error)) from None


# The plugin content schema (docs/format.md), checked wherever content is parsed: event files
# are untrusted, and a field of the wrong type must become a reason, not a crash downstream.
# Sizes are bounded so no reader allocates more than a real grid would need.
_MAX_SIDE = 1 << 16
_MAX_COUNT = 1 << 24


def _shown(value):
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value, low=0, high=_MAX_COUNT):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_text(value):
    return isinstance(value, str) and 0 < len(value) <= 4096


def _is_shape(value):
    return (isinstance(value, list) and 1 <= len(value) <= 16
            and all(v is None or _is_int(v, 1, 1 << 31) for v in value))


def _is_int_list(length_low, length_high, low, high):
    return lambda value: (isinstance(value, list) and length_low <= len(value) <= length_high
                          and all(_is_int(v, low, high) for v in value))


_LAYER_SCHEMA = {
    "layer": (_is_text, "a non-empty layer path"),
    "layer_class": (_is_text, "a class name"),
    "order": (_is_int, "an integer position >= 0"),
    "samples": (lambda v: _is_int(v, 1, 1 << 16), "a probe sample count >= 1"),
    "output_shape": (_is_shape, "a list of sizes (null for unknown)"),
    "layout": (lambda v: v in LAYOUTS, "one of %s" % ", ".join(LAYOUTS)),
    "rows": (lambda v: _is_int(v, 1, _MAX_SIDE), "a row count >= 1"),
    "columns": (lambda v: _is_int(v, 1, _MAX_SIDE), "a column count >= 1"),
    "tile_height": (lambda v: _is_int(v, 1, _MAX_SIDE), "a tile height >= 1"),
    "tile_width": (lambda v: _is_int(v, 1, _MAX_SIDE), "a tile width >= 1"),
    "gutter": (lambda v: _is_int(v, 0, 64), "a gutter width 0..64"),
    "downscale": (_is_int_list(1, 2, 1, _MAX_COUNT), "one or two factors >= 1"),
    "channels_total": (lambda v: _is_int(v, 1), "a channel count >= 1"),
    "channels_shown": (lambda v: _is_int(v, 1), "a channel count >= 1"),
    "depth_slices": (_is_int_list(0, 4096, 0, _MAX_COUNT), "a list of depth indices"),
}
# Version 2 stores per-unit statistics for at most channels_kept units (the caps' max_channels).
_LAYER_SCHEMA_V2 = dict(_LAYER_SCHEMA, channels_kept=(lambda v: _is_int(v, 1),
                                                      "a kept unit count >= 1"))
# Fields a layer's content has only where they say something (layout.LayerLayout.to_content).
_OPTIONAL_LAYER_FIELDS = {
    "source": (lambda v: v in layout.SOURCES, "one of %s" % ", ".join(layout.SOURCES)),
    "token_grid": (lambda v: isinstance(v, dict) and set(v) == {"rows", "columns",
                                                                "prefix_tokens"}
                   and _is_int(v["rows"], 1, _MAX_SIDE) and _is_int(v["columns"], 1, _MAX_SIDE)
                   and _is_int(v["prefix_tokens"], 0, _MAX_SIDE),
                   "{rows, columns, prefix_tokens} as counts"),
    "attention_query": (lambda v: v in layout.ATTENTION_QUERIES,
                        "one of %s" % ", ".join(layout.ATTENTION_QUERIES)),
    "windows": (lambda v: isinstance(v, dict) and set(v) == {"count", "partition"}
                and _is_int(v["count"], 2)
                and v["partition"] in layout.WINDOW_PARTITIONS,
                "{count, partition} with count >= 2 and partition one of %s"
                % ", ".join(layout.WINDOW_PARTITIONS)),
}
# Bounds of a reference step (docs/format.md): a reader allocates no more than these allow.
MAX_REFERENCE_INPUTS = 1 << 16
MAX_REFERENCE_K = 100
MAX_REFERENCE_UNITS = 4096
MAX_CLASSES = 1000
MAX_CLASS_NAME = 64
MAX_THUMBNAIL_SIDE = 64


def _is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and abs(value) < _MAX_COUNT)


def _is_pair(check):
    return lambda value: isinstance(value, list) and len(value) == 2 and all(map(check, value))


def _is_receptive_field(value):
    return value is None or (
        isinstance(value, dict) and set(value) == {"stride", "size", "offset", "exact"}
        and _is_pair(lambda v: _is_number(v) and v > 0)(value["stride"])
        and _is_pair(lambda v: _is_number(v) and v > 0)(value["size"])
        and _is_pair(_is_number)(value["offset"]) and isinstance(value["exact"], bool))


def _is_class_names(value):
    return value is None or (isinstance(value, list) and len(value) <= MAX_CLASSES and all(
        isinstance(name, str) and len(name) <= MAX_CLASS_NAME for name in value))


_REFERENCE_SCHEMA = {
    "layer": (_is_text, "a non-empty layer path"),
    "layer_class": (_is_text, "a class name"),
    "order": (_is_int, "an integer position >= 0"),
    "units_total": (lambda v: _is_int(v, 1), "a unit count >= 1"),
    "units_kept": (lambda v: _is_int(v, 1, MAX_REFERENCE_UNITS),
                   "a kept unit count 1..%d" % MAX_REFERENCE_UNITS),
    "k": (lambda v: _is_int(v, 1, MAX_REFERENCE_K), "a top input count 1..%d" % MAX_REFERENCE_K),
    "inputs": (lambda v: _is_int(v, 1, MAX_REFERENCE_INPUTS),
               "a reference input count 1..%d" % MAX_REFERENCE_INPUTS),
    "classes": (lambda v: _is_int(v, 0, MAX_CLASSES), "a class count 0..%d" % MAX_CLASSES),
    "map_shape": (_is_int_list(0, 3, 1, _MAX_SIDE), "a list of 0 to 3 map sizes"),
    "receptive_field": (_is_receptive_field,
                        "null or {stride, size, offset: [y, x] numbers, exact: bool}"),
}
_REFERENCE_INPUTS_SCHEMA = {
    "inputs": (lambda v: _is_int(v, 1, MAX_REFERENCE_INPUTS),
               "a reference input count 1..%d" % MAX_REFERENCE_INPUTS),
    "pictures": (lambda v: isinstance(v, bool), "a bool"),
    "thumb_height": (lambda v: _is_int(v, 0, MAX_THUMBNAIL_SIDE),
                     "a thumbnail height 0..%d" % MAX_THUMBNAIL_SIDE),
    "thumb_width": (lambda v: _is_int(v, 0, MAX_THUMBNAIL_SIDE),
                    "a thumbnail width 0..%d" % MAX_THUMBNAIL_SIDE),
    "thumb_channels": (lambda v: v in (0, 1, 3), "0, 1 or 3"),
    "input_height": (lambda v: _is_int(v, 0, _MAX_SIDE), "an input height 0..%d" % _MAX_SIDE),
    "input_width": (lambda v: _is_int(v, 0, _MAX_SIDE), "an input width 0..%d" % _MAX_SIDE),
    "per_page": (lambda v: _is_int(v, 0, MAX_REFERENCE_INPUTS), "a thumbnail count per page"),
    "page_columns": (lambda v: _is_int(v, 0, MAX_REFERENCE_INPUTS), "a column count"),
    "pages": (lambda v: _is_int(v, 0, MAX_REFERENCE_INPUTS), "a page count"),
    "classes": (lambda v: _is_int(v, 0, MAX_CLASSES), "a class count 0..%d" % MAX_CLASSES),
    "class_names": (_is_class_names, "null or a list of at most %d names of at most %d "
                    "characters" % (MAX_CLASSES, MAX_CLASS_NAME)),
}
# Checks between fields of one content: [((field, ...), (check, expected))].
_CROSS_CHECKS = {
    KIND_REFERENCE: [
        (("units_kept", "units_total"), (lambda kept, total: kept <= total,
                                         "units_kept <= units_total")),
        (("k", "inputs"), (lambda k, inputs: k <= inputs, "k <= inputs")),
    ],
    KIND_REFERENCE_INPUTS: [
        (("pictures", "thumb_height", "thumb_width", "thumb_channels", "input_height",
          "input_width", "per_page", "page_columns", "pages", "inputs"),
         (lambda pictures, height, width, channels, input_height, input_width, per_page,
          columns, pages, inputs: all(v > 0 for v in (
              height, width, channels, input_height, input_width, per_page, columns))
          and columns <= per_page and pages == -(-inputs // per_page) if pictures
          else not any((height, width, channels, per_page, columns, pages)),
          "pictures with every thumbnail size and pages == ceil(inputs / per_page), or no "
          "pictures with those 0")),
        (("class_names", "classes"), (lambda names, classes: names is None
                                      or len(names) == classes,
                                      "as many class names as classes")),
    ],
}
_SCHEMAS = {
    KIND_LAYER: _LAYER_SCHEMA,
    KIND_PROBE: {
        "input": (_is_text, "an input name"),
        "shape": (_is_shape, "a list of sizes (null for unknown)"),
        "samples": (lambda v: _is_int(v, 1, 1 << 16), "a probe sample count >= 1"),
    },
    KIND_OVERVIEW: {},
    KIND_EPOCH: {},
    # The token labels' samples (tokens.py; at most 256 are written, more is refused on read).
    KIND_TOKENS: {"samples": (lambda v: _is_int(v, 1, 1 << 16), "a probe sample count >= 1")},
    KIND_REFERENCE: _REFERENCE_SCHEMA,
    KIND_REFERENCE_INPUTS: _REFERENCE_INPUTS_SCHEMA,
}
