"""The write stage: a rendered step, as events, to whichever writer the activations go to.

A rendered step is [(tag, SummaryMetadata, [bytes per value])] (see `step_rendering`); it
becomes one event whose summary holds, per tag, a string tensor of shape [n] with the tag's
metadata: the value tf.summary.write makes. One event, so a step is one record, which a
reader sees whole or not at all. Where it goes is decided here only:
  * an `events.EventFileWriter` (ours: the callback's, or a `log_dir=`): one checked write;
  * a `torch.utils.tensorboard.SummaryWriter`: its event file, beside the user's scalars;
  * None: the default tf.summary writer (Keras code under `with writer.as_default()`).
Imports neither TensorFlow nor torch: each is used only when its writer is given.
"""

import sys
import time

from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.proto import tensor_pb2
from tensorboard.compat.proto import tensor_shape_pb2
from tensorboard.compat.proto import types_pb2

from tb_activations import events


def step_summary(rendered):
    """The Summary of a rendered step: per tag, its values as a string tensor of shape [n]
    with the tag's metadata."""
    return summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=tag, metadata=summary_metadata, tensor=_strings(values))
        for tag, summary_metadata, values in rendered])


def _strings(values):
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=values,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]))


def step_event(rendered, step, wall_time=None):
    """The event of a rendered step, at `step` and `wall_time` (default now)."""
    return event_pb2.Event(wall_time=time.time() if wall_time is None else wall_time,
                           step=int(step), summary=step_summary(rendered))


def write_rendered(rendered, step, writer=None):
    """Writes a rendered step to `writer` (see the module docstring); True if it was written
    (False only for the default tf.summary writer: none set, or not recording). Raises
    EventFileError (an OSError) if our own writer could not write it."""
    if isinstance(writer, events.EventFileWriter):
        writer.write([step_event(rendered, step)])
        return True
    if _is_torch_summary_writer(writer):
        torch_file_writer(writer).add_summary(step_summary(rendered), int(step))
        return True
    if writer is None:
        from tb_activations import summary  # TensorFlow: only the default writer needs it
        return summary.write_to_default_writer(step_summary(rendered).SerializeToString(), step)
    raise TypeError("activations are written to a tb_activations.events.EventFileWriter, a "
                    "torch.utils.tensorboard.SummaryWriter or (None) the default tf.summary "
                    "writer, not a %s" % type(writer).__name__)


def _is_torch_summary_writer(writer):
    torch_tensorboard = sys.modules.get("torch.utils.tensorboard")  # loaded if one exists
    return torch_tensorboard is not None and isinstance(writer, torch_tensorboard.SummaryWriter)


def torch_file_writer(writer):
    """The FileWriter of a torch SummaryWriter (its event file; reopened if closed), whose
    add_summary(summary, global_step) takes a ready Summary proto. The one private torch API
    we use: `SummaryWriter._get_file_writer`, checked against torch 2.13."""
    return writer._get_file_writer()
