"""What an activations summary is: plugin name, tag names, versioned plugin content.

Shared by the writer and the TensorBoard plugin, so it imports neither TensorFlow nor Keras.
The full stored format is described in docs/format.md.
"""

import json

from tensorboard.compat.proto import summary_pb2

PLUGIN_NAME = "activations"

# Bumped when the stored format changes in a way an older reader would misread.
PROTOCOL_VERSION = 1

LAYER_TAG_PREFIX = "activations/"
PROBE_TAG_PREFIX = "activations_probe/"
OVERVIEW_TAG = "activations_overview"

KIND_LAYER = "layer"
KIND_PROBE = "probe"
KIND_OVERVIEW = "overview"
KINDS = (KIND_LAYER, KIND_PROBE, KIND_OVERVIEW)

# Pixel codes in a grid PNG: finite values are scaled linearly onto 0..FINITE_MAX_CODE,
# NaN/Inf get their own code, gutters and padding another, so the viewer can recover
# real values and draw non-finite values as a marked colour.
FINITE_MAX_CODE = 253
NONFINITE_CODE = 254
GUTTER_CODE = 255

# Order of the per-channel statistics stored beside each grid.
STAT_FIELDS = ("min", "max", "mean", "std", "zero_fraction", "nan_count", "inf_count")


def layer_tag(path):
    return LAYER_TAG_PREFIX + path


def probe_tag(input_name):
    return PROBE_TAG_PREFIX + input_name


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
    return payload
