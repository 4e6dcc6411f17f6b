"""Our event file writer and the write stage, read back by TensorBoard's own readers.

TensorFlow's TFRecordDataset and TensorBoard's pure-Python record reader both verify the
CRCs; the subprocess tests run where `import tensorflow` fails, as the PyTorch path must.
"""

import contextlib
import errno
import os
import re
import socket
import subprocess
import sys

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as tensorboard_records
from tensorboard.util import tensor_util

from tb_activations.format import metadata
from tb_activations.reading import reader
from tb_activations.rendering import steps
from tb_activations.writing import destinations
from tb_activations.writing import events
from tests.full_disk import fill
from tests.numpy_capture import numpy_capture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def event_files(directory):
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if "tfevents" in name)


def loaded(path):
    return list(event_file_loader.EventFileLoader(path).Load())


def test_a_step_reads_back_through_tensorboards_loader(tmp_path):
    rendered = steps.render_capture(numpy_capture())
    with events.EventFileWriter(tmp_path) as writer:
        assert destinations.write_rendered(rendered, 5, writer)
        assert destinations.write_rendered(steps.render_epoch_end(0), 6, writer)
    (path,) = event_files(tmp_path)
    assert path == writer.path
    assert re.fullmatch(r"events\.out\.tfevents\.\d+\.%s\.%d\.\d+\.activations"
                        % (re.escape(socket.gethostname()), os.getpid()),
                        os.path.basename(path))
    first, step, epoch = loaded(path)
    assert first.file_version == "brain.Event:2"
    assert step.step == 5 and epoch.step == 6
    assert [value.tag for value in step.summary.value] == [tag for tag, _, _ in rendered]
    for value, (tag, summary_metadata, blobs) in zip(step.summary.value, rendered):
        assert value.metadata == summary_metadata
        assert tensor_util.make_ndarray(value.tensor).tolist() == blobs
    records = reader.read_activations(str(tmp_path))
    assert [(r.layer, r.step, r.sample) for r in records] == [("block/conv", 5, 0),
                                                              ("block/conv", 5, 1)]


def test_tf_record_dataset_verifies_our_crcs(tmp_path):
    with events.EventFileWriter(tmp_path) as writer:
        destinations.write_rendered(steps.render_capture(numpy_capture()), 1, writer)
    records = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(writer.path)]
    assert [event_pb2.Event.FromString(r).step for r in records] == [0, 1]
    data = bytearray(open(writer.path, "rb").read())
    data[-10] ^= 1  # inside the step's data
    with open(writer.path, "wb") as file:
        file.write(data)
    with pytest.raises(tf.errors.DataLossError, match="corrupted record"):
        list(tf.data.TFRecordDataset(writer.path))


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(st.lists(st.binary(max_size=3000), max_size=6))
def test_records_read_back_by_tensorboards_record_reader(tmp_path_factory, payloads):
    path = str(tmp_path_factory.mktemp("records") / "records")
    with open(path, "wb") as file:
        file.write(b"".join(events.tf_record(data) for data in payloads))
    records = tensorboard_records.PyRecordReader_New(path)
    read = []
    with contextlib.suppress(tensorboard_records.errors.OutOfRangeError):
        while True:
            records.GetNext()
            read.append(records.record())
    assert read == payloads
    for data in payloads:
        assert events.masked_crc32c(data) == tensorboard_records.masked_crc32c(data)


_TAGS = st.text(min_size=1, max_size=20)
_STEPS = st.integers(-2**63, 2**63 - 1)


@hypothesis.given(
    st.lists(st.tuples(_TAGS, st.binary(max_size=40), st.lists(st.binary(max_size=300),
                                                                 max_size=4)), max_size=5),
    st.one_of(st.just(0), _STEPS), st.one_of(st.just(0.0), st.floats(min_value=0.0)))
def test_a_step_is_encoded_as_protobuf_serializes_it(entries, step, wall_time):
    rendered = [(tag, summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata
                                                  .PluginData(plugin_name="p", content=content)),
                 values) for tag, content, values in entries]
    expected = event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, metadata=summary_metadata,
                                         tensor=tensor_util.make_tensor_proto(
                                             np.array(values, dtype=object), shape=[len(values)]))
               for tag, summary_metadata, values in rendered]))
    encoded = destinations.step_event_bytes(rendered, step, wall_time)
    assert encoded == expected.SerializeToString()
    assert destinations.step_summary_bytes(rendered) == expected.summary.SerializeToString()


def test_a_closed_writer_refuses_writes_naming_its_file(tmp_path):
    writer = events.EventFileWriter(tmp_path)
    writer.close()
    writer.close()
    with pytest.raises(events.EventFileError, match="closed") as raised:
        destinations.write_rendered(steps.render_epoch_end(0), 1, writer)
    assert raised.value.errno == errno.EBADF and raised.value.filename == writer.path


def test_a_log_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(events.EventFileError) as raised:
        events.EventFileWriter(tmp_path / "taken")
    assert str(tmp_path / "taken") in str(raised.value)


def test_a_url_log_dir_is_written_through_tensorflows_file_systems():
    rendered = steps.render_capture(numpy_capture())
    writer = events.shared_writer("ram://events_test/run")
    assert events.shared_writer("ram://events_test/run") is writer  # keyed by the URL itself
    assert writer.path.startswith("ram://events_test/run/events.out.tfevents.")
    for step in (1, 2):
        assert destinations.write_rendered(rendered, step, writer)
    assert tf.io.gfile.listdir("ram://events_test/run") == [os.path.basename(writer.path)]
    read = loaded(writer.path)  # TensorBoard's loader reads it through tf.io.gfile
    assert [event.step for event in read] == [0, 1, 2]
    tag, _, values = rendered[0]
    (value,) = [value for value in read[2].summary.value if value.tag == tag]
    assert value.tensor.string_val == values


def test_a_url_no_file_system_writes_is_named_with_what_to_install():
    with pytest.raises(ValueError, match=r"log_dir 'bogus://bucket/run' is a URL that no "
                       r"installed file system writes: no installed file system knows "
                       r"bogus:// URLs \(Protocol not known: bogus\)\. .*s3:// \(boto3 or "
                       r"s3fs\).*fsspec.*TensorFlow's file systems here reach .*gs://") as raised:
        events.EventFileWriter("bogus://bucket/run")
    assert "tensorflow-io" not in str(raised.value)


def test_a_full_disk_raises_naming_the_file_and_keeps_whole_steps_only(tiny_disk):
    writer = events.EventFileWriter(tiny_disk / "run")
    small = steps.render_capture(numpy_capture())
    assert destinations.write_rendered(small, 1, writer)
    written = os.path.getsize(writer.path)
    filler = fill(tiny_disk, leaving=300_000)
    noise = [np.random.default_rng(1).bytes(600_000)]  # incompressible, larger than what's left
    with pytest.raises(events.EventFileError, match="No space left on device") as raised:
        destinations.write_rendered([("activations/big", small[0][1], noise)], 2, writer)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == writer.path
    assert os.path.getsize(writer.path) == written  # the torn step is cut off
    assert [event.step for event in loaded(writer.path)] == [0, 1]
    os.unlink(filler)
    with pytest.raises(events.EventFileError, match="earlier write failed"):
        destinations.write_rendered(small, 3, writer)  # room again, but the writer stays stopped
    assert [event.step for event in loaded(writer.path)] == [0, 1]
    writer.close()


def test_a_writer_on_a_full_disk_raises_and_leaves_no_file(tiny_disk):
    fill(tiny_disk, leaving=0)
    with pytest.raises(events.EventFileError, match="No space left on device") as raised:
        events.EventFileWriter(tiny_disk / "run")
    assert os.path.dirname(raised.value.filename) == str(tiny_disk / "run")
    assert event_files(tiny_disk / "run") == []


_WITHOUT_TENSORFLOW = r"""
import sys
sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError
sys.path.insert(0, %(root)r)
from tensorboard.backend.event_processing import event_file_loader
from torch.utils.tensorboard import SummaryWriter
from tb_activations.reading import reader
from tb_activations.rendering import steps
from tb_activations.writing import destinations, events
from tests.full_disk import fill
from tests.numpy_capture import numpy_capture

rendered = steps.render_capture(numpy_capture())
with events.EventFileWriter(%(own)r) as writer:
    destinations.write_rendered(rendered, 3, writer)
print([event.step for event in event_file_loader.EventFileLoader(writer.path).Load()])
user = SummaryWriter(%(torch)r)
user.add_scalar("loss", 0.5, 3)
destinations.write_rendered(rendered, 3, user)
user.close()
for directory in (%(own)r, %(torch)r):
    print(sorted({(r.layer, r.step) for r in reader.read_activations(directory)}))
with events.EventFileWriter("memory://own") as writer:  # fsspec's file system, in memory
    destinations.write_rendered(rendered, 4, writer)
print([event.step for event in event_file_loader.EventFileLoader(writer.path).Load()])
try:
    events.EventFileWriter("gs://bucket/run")
except ValueError as error:
    print("gs:// needs gcsfs: pip install gcsfs" in str(error), "tensorflow" not in str(error))
print(sorted(name for name, module in sys.modules.items()
             if name.split(".")[0] in ("tensorflow", "keras") and module is not None))
"""


@pytest.mark.slow
def test_writing_without_tensorflow(tmp_path):
    script = _WITHOUT_TENSORFLOW % {"root": ROOT, "own": str(tmp_path / "own"),
                                    "torch": str(tmp_path / "torch")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[0, 3]", "[('block/conv', 3)]", "[('block/conv', 3)]", "[0, 4]", "True True", "[]"]


@pytest.mark.slow
def test_a_torch_summary_writer_gets_the_step_in_its_own_event_file(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    user = SummaryWriter(str(tmp_path))
    user.add_scalar("loss", 0.25, 7)
    rendered = steps.render_capture(numpy_capture())
    assert destinations.write_rendered(rendered, 7, user)
    user.add_scalar("loss", 0.125, 8)
    user.close()
    (path,) = event_files(tmp_path)
    tags = [(event.step, [value.tag for value in event.summary.value])
            for event in loaded(path) if event.HasField("summary")]
    assert tags == [(7, ["loss"]), (7, [tag for tag, _, _ in rendered]), (8, ["loss"])]
    assert [(r.layer, r.step) for r in reader.read_activations(str(tmp_path))] == [
        ("block/conv", 7)] * 2
    assert metadata.OVERVIEW_TAG in tags[1][1]
