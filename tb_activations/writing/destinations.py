"""The write stage: a rendered step, as events, to whichever writer the activations go to.

A rendered step is [(tag, SummaryMetadata, [bytes per value])] (see rendering/steps.py); it
becomes one event whose summary holds, per tag, a string tensor of shape [n] with the tag's
metadata: the value tf.summary.write makes. One event, so a step is one record, which a
reader sees whole or not at all. Where it goes is decided here only:
  * an `events.EventFileWriter` (ours: the callback's, or a `log_dir=`): one checked write;
  * a `torch.utils.tensorboard.SummaryWriter`: its event file, beside the user's scalars;
  * None: the default tf.summary writer (Keras code under `with writer.as_default()`).
Imports neither TensorFlow nor torch: each is used only when its writer is given.
"""

import operator
import struct
import sys
import time
import weakref

import numpy as np

from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.proto import types_pb2

from tb_activations.writing import events
from tb_activations.writing import tf_summary

# Field numbers of the protos a step is made of (tensorboard/compat/proto/*.proto).
_EVENT_WALL_TIME, _EVENT_STEP, _EVENT_SUMMARY = 1, 2, 5
_SUMMARY_VALUE = 1
_VALUE_TAG, _VALUE_TENSOR, _VALUE_METADATA = 1, 8, 9
_TENSOR_DTYPE, _TENSOR_SHAPE, _TENSOR_STRING_VAL = 1, 2, 8
_SHAPE_DIM, _DIM_SIZE = 2, 1
_VARINT, _FIXED64, _LENGTH_DELIMITED = 0, 1, 2
# What a writer stores once per model and run: the probe pictures, the reference inputs.
PROBE = "probe"
REFERENCE_INPUTS = "reference_inputs"
# Writers that already hold those of a model: {writer: {what: models}}.
_writers_with_probe = weakref.WeakKeyDictionary()


def step_number(step):
    """`step` as an int of 0 or more: an int, or an integer scalar of numpy, TensorFlow or
    torch (a float or bool step is refused rather than rounded)."""
    if not isinstance(step, bool):
        try:
            step = operator.index(step)
        except (TypeError, AttributeError):  # a float TF tensor's __index__ raises the latter
            array = np.asarray(step) if hasattr(step, "__array__") else None
            if array is not None and array.ndim == 0 and array.dtype.kind in "iu":
                step = int(array)
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError("step must be an int (or an integer scalar of one value), got %r"
                        % (step,))
    if step < 0:
        raise ValueError("step must be 0 or more, got %d" % step)
    return step


def holds_probe(writer, model, what=PROBE):
    """Whether `writer` has stored `model`'s probe pictures (or `what` else it stores once)
    already (never for None)."""
    return writer is not None and model in _writers_with_probe.get(writer, {}).get(what, ())


def record_probe(writer, model, what=PROBE):
    """Notes that `writer` now holds `model`'s probe pictures (or `what`)."""
    if writer is not None:
        _writers_with_probe.setdefault(writer, {}).setdefault(what, weakref.WeakSet()).add(model)


def write_with_probe(rendered, step, writer, model, render_probe, holder=None):
    """write_rendered of `rendered`, after the probe pictures (`render_probe()`) the first
    time `model` is written to `writer`'s run, so they are stored once; `holder` keeps that
    record where `writer` is None (the default tf.summary writer's object)."""
    holder = writer if holder is None else holder
    if not holds_probe(holder, model):
        rendered = render_probe() + rendered
    written = write_rendered(rendered, step, writer)
    if written:
        record_probe(holder, model)
    return written


def step_summary_bytes(rendered):
    """The serialized Summary of a rendered step: per tag, its values as a string tensor of
    shape [n] with the tag's metadata. Encoded here, to the bytes protobuf's serializer gives
    (a test checks it): building the message and serializing it took half of our write of a
    MobileNetV2 step (3 MB: 17.7 -> 9.3 ms)."""
    return b"".join(_length_delimited(_SUMMARY_VALUE, _value(tag, summary_metadata, values))
                    for tag, summary_metadata, values in rendered)


def step_event_bytes(rendered, step, wall_time=None):
    """The serialized Event of a rendered step, at `step` and `wall_time` (default now)."""
    wall_time = time.time() if wall_time is None else wall_time
    return b"".join((_key(_EVENT_WALL_TIME, _FIXED64) + struct.pack("<d", wall_time)
                     if wall_time else b"",
                     _key(_EVENT_STEP, _VARINT) + _varint(step) if step else b"",
                     _length_delimited(_EVENT_SUMMARY, step_summary_bytes(rendered))))


def _value(tag, summary_metadata, values):
    dim = _key(_DIM_SIZE, _VARINT) + _varint(len(values)) if values else b""
    tensor = b"".join([_key(_TENSOR_DTYPE, _VARINT), _varint(types_pb2.DT_STRING),
                       _length_delimited(_TENSOR_SHAPE, _length_delimited(_SHAPE_DIM, dim))]
                      + [_length_delimited(_TENSOR_STRING_VAL, value) for value in values])
    return b"".join((_length_delimited(_VALUE_TAG, tag.encode("utf-8")),
                     _length_delimited(_VALUE_TENSOR, tensor),
                     _length_delimited(_VALUE_METADATA, summary_metadata.SerializeToString())))


def _key(field, wire_type):
    return _varint(field << 3 | wire_type)


def _length_delimited(field, payload):
    return b"".join((_key(field, _LENGTH_DELIMITED), _varint(len(payload)), payload))


def _varint(number):
    number &= 0xFFFFFFFFFFFFFFFF  # a negative int64 as protobuf encodes it
    encoded = bytearray()
    while number >= 0x80:
        encoded.append(number & 0x7F | 0x80)
        number >>= 7
    encoded.append(number)
    return bytes(encoded)


def write_rendered(rendered, step, writer=None):
    """Writes a rendered step to `writer` (see the module docstring); True if it was written
    (False only for the default tf.summary writer: none set, or not recording). Raises
    EventFileError (an OSError) naming the file, or the torch writer's log dir, if the writer
    could not write it (a torch or tf.summary writer may report an earlier step's failure)."""
    if isinstance(writer, events.EventFileWriter):
        writer.write([step_event_bytes(rendered, int(step))])
        return True
    if _is_torch_summary_writer(writer):
        with events.as_event_file_error(writer.get_logdir()):
            torch_file_writer(writer).add_summary(
                summary_pb2.Summary.FromString(step_summary_bytes(rendered)), int(step))
        return True
    if writer is None:
        with events.as_event_file_error("the default tf.summary writer"):
            return tf_summary.write_summary(step_summary_bytes(rendered), step)
    raise TypeError("activations are written to a tb_activations.writing.events.EventFileWriter, "
                    "a torch.utils.tensorboard.SummaryWriter or (None) the default tf.summary "
                    "writer, not a %s" % type(writer).__name__)


def _is_torch_summary_writer(writer):
    torch_tensorboard = sys.modules.get("torch.utils.tensorboard")  # loaded if one exists
    return torch_tensorboard is not None and isinstance(writer, torch_tensorboard.SummaryWriter)


def torch_file_writer(writer):
    """The FileWriter of a torch SummaryWriter (its event file; reopened if closed), whose
    add_summary(summary, global_step) takes a ready Summary proto. The one private torch API
    we use: `SummaryWriter._get_file_writer`, checked against torch 2.13."""
    return writer._get_file_writer()
