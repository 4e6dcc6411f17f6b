"""Steps into a torch SummaryWriter's own event file: framed by us on its queue (the fast path),
or through its public add_summary where TensorBoard's internals are not the known ones (the
fallback); both read back by TensorBoard's loaders as the log_dir= path's steps, in order with
the user's own events, every record's CRCs those of TensorBoard's reference implementation.
"""

import io
import struct

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as tensorboard_records
from tensorboard.summary.writer import record_writer
from torch.utils.tensorboard import SummaryWriter

import tb_activations.torch as tbat
from tb_activations.reading import reader
from tb_activations.rendering import steps
from tb_activations.writing import destinations
from tb_activations.writing import events
from tb_activations.writing import summary_writer
from tests.numpy_capture import numpy_capture

PATHS = ("framed", "fallback")


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    """Which way a step goes into a SummaryWriter: "fallback" makes record_queue find
    internals it does not know."""
    if request.param == "fallback":
        monkeypatch.setattr(summary_writer, "record_queue", lambda file_writer: None)
    return request.param


def event_file(directory):
    (path,) = [entry for entry in directory.iterdir() if "tfevents" in entry.name]
    return str(path)


def summaries(path):
    """(step, tags, summary) of every event with a summary, in file order."""
    return [(event.step, [value.tag for value in event.summary.value], event.summary)
            for event in event_file_loader.EventFileLoader(path).Load()
            if event.HasField("summary")]


def framed_records(path):
    """Every record's data, its CRCs checked with TensorBoard's pure-Python reference."""
    data, records, at = open(path, "rb").read(), [], 0
    while at < len(data):
        header = data[at:at + 8]
        (length,), (header_crc,) = struct.unpack("<Q", header), struct.unpack(
            "<I", data[at + 8:at + 12])
        record = data[at + 12:at + 12 + length]
        (record_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
        assert header_crc == tensorboard_records.masked_crc32c(header)
        assert record_crc == tensorboard_records.masked_crc32c(record)
        records.append(record)
        at += 16 + length
    return records


def record_writer_class(writer):
    return type(writer.file_writer.event_writer._async_writer._writer)


def same_activations(first, second):
    """read_activations of two log dirs, compared field by field."""
    a, b = list(reader.read_activations(first)), list(reader.read_activations(second))
    assert len(a) == len(b) > 0
    for left, right in zip(a, b):
        assert (left.layer, left.step, left.sample, left.tiling) == (
            right.layer, right.step, right.sample, right.tiling)
        for name in ("image", "ranges", "channels", "units", "silent"):
            np.testing.assert_array_equal(getattr(left, name), getattr(right, name))
        assert left.statistics.keys() == right.statistics.keys()
        for name, values in left.statistics.items():
            np.testing.assert_array_equal(values, right.statistics[name])


def test_a_step_reads_back_as_the_log_dir_one_between_the_users_scalars(tmp_path, path):
    rendered = steps.render_capture(numpy_capture())
    with events.EventFileWriter(tmp_path / "log_dir") as own:
        destinations.write_rendered(rendered, 7, own)
    user = SummaryWriter(str(tmp_path / "writer"))
    user.add_scalar("loss", 0.25, 7)
    assert destinations.write_rendered(rendered, 7, user)
    user.add_scalar("loss", 0.125, 8)
    assert record_writer_class(user) is (summary_writer.FramingRecordWriter if path == "framed"
                                         else record_writer.RecordWriter)
    user.close()
    written = summaries(event_file(tmp_path / "writer"))
    (step, tags, summary), = summaries(own.path)
    assert [(step, tags) for step, tags, _ in written] == [(7, ["loss"]), (7, tags), (8, ["loss"])]
    assert written[1][2] == summary
    same_activations(str(tmp_path / "writer"), str(tmp_path / "log_dir"))
    assert len(framed_records(event_file(tmp_path / "writer"))) == 4  # file_version first


@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(st.lists(st.sampled_from(["step", "scalar", "text"]), min_size=1, max_size=14))
def test_steps_land_in_call_order_with_the_users_events(tmp_path_factory, calls):
    directory = tmp_path_factory.mktemp("run")
    rendered = steps.render_capture(numpy_capture(samples=1, shape=(4, 4, 2)))
    user = SummaryWriter(str(directory), max_queue=2)  # a full queue makes calls wait
    for step, call in enumerate(calls):
        if call == "step":
            destinations.write_rendered(rendered, step, user)
        elif call == "scalar":
            user.add_scalar("loss", float(step), step)
        else:
            user.add_text("note", "at %d" % step, step)
    user.close()
    path = event_file(directory)
    kinds = [(step, "step" if len(tags) > 1 else {"loss": "scalar"}.get(tags[0], "text"))
             for step, tags, _ in summaries(path)]
    assert kinds == list(enumerate(calls))
    assert len(framed_records(path)) == len(calls) + 1


@hypothesis.given(st.lists(st.binary(max_size=2000), max_size=5))
def test_the_writers_own_events_are_framed_to_the_same_bytes_as_before(payloads):
    theirs, ours = io.BytesIO(), io.BytesIO()
    for data in payloads:
        record_writer.RecordWriter(theirs).write(data)
        summary_writer.FramingRecordWriter(ours).write(data)
    assert ours.getvalue() == theirs.getvalue()
    summary_writer.FramingRecordWriter(ours).write(summary_writer.FramedRecord(b"step"))
    assert ours.getvalue()[len(theirs.getvalue()):] == events.tf_record(b"step")


def test_a_closed_file_writer_refuses_the_step_naming_the_log_dir(tmp_path, path):
    user = SummaryWriter(str(tmp_path))
    user.file_writer.close()
    with pytest.raises(events.EventFileError) as raised:
        destinations.write_rendered(steps.render_capture(numpy_capture()), 1, user)
    assert raised.value.filename == str(tmp_path) and "closed" in str(raised.value)


def test_a_closed_summary_writer_opens_a_new_event_file_for_the_step(tmp_path, path):
    user = SummaryWriter(str(tmp_path))
    user.add_scalar("loss", 1.0, 0)
    user.close()
    assert destinations.write_rendered(steps.render_capture(numpy_capture()), 1, user)
    user.close()
    assert sorted([step for step, _, _ in summaries(str(file))]
                  for file in tmp_path.iterdir()) == [[0], [1]]


def test_internals_it_does_not_know_are_left_to_the_public_path(tmp_path):
    assert summary_writer.record_queue(object()) is None
    user = SummaryWriter(str(tmp_path))
    file_writer = user._get_file_writer()

    class UsersRecordWriter(record_writer.RecordWriter):
        """A record writer someone else installed: not ours to change."""

    file_writer.event_writer._async_writer._writer.__class__ = UsersRecordWriter
    assert summary_writer.record_queue(file_writer) is None
    assert destinations.write_rendered(steps.render_capture(numpy_capture()), 3, user)
    assert record_writer_class(user) is UsersRecordWriter
    user.close()
    assert [step for step, _, _ in summaries(event_file(tmp_path))] == [3]


def test_log_activations_writes_the_same_activations_to_a_writer_as_to_a_log_dir(tmp_path,
                                                                                   path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 2, 3)).eval()
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    user = SummaryWriter(str(tmp_path / "writer"))
    for step in (0, 5):
        user.add_scalar("loss", 1.0 / (step + 1), step)
        assert tbat.log_activations(model, x, step, writer=user, background=False)
        assert tbat.log_activations(model, x, step, log_dir=tmp_path / "log_dir",
                                    background=False)
    user.close()
    same_activations(str(tmp_path / "writer"), str(tmp_path / "log_dir"))
    written = summaries(event_file(tmp_path / "writer"))
    assert [(step, tags[0] == "loss") for step, tags, _ in written] == [
        (0, True), (0, False), (5, True), (5, False)]
