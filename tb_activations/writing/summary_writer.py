"""A step into a torch SummaryWriter's own event file, as a record framed by us.

A SummaryWriter's FileWriter hands each event to TensorBoard's EventFileWriter, whose
_AsyncWriter queues the serialized event for a thread that frames it (RecordWriter) with
TensorBoard's pure-Python CRC-32C: 1.2 s for an 11 MiB MobileNetV2 step, holding the GIL.
The public way in (FileWriter.add_summary) also parses our serialized step back into a
Summary for that thread to serialize again. So we frame the step ourselves (events.tf_record,
google-crc32c) and queue the record on the same queue, in order with the user's add_scalar
calls; the writer's RecordWriter becomes a FramingRecordWriter, which writes such a record as
it is and frames every other event with the same fast CRC (the same bytes as before).

These are TensorBoard's internals (EventFileWriter._async_writer, _AsyncWriter._writer and
._worker._record_writer, RecordWriter._writer), checked against tensorboard 2.21: record_queue
checks each before use, and where one differs the public path writes the same events.
"""

from tensorboard.summary.writer import event_file_writer
from tensorboard.summary.writer import record_writer

from tb_activations.writing import events


class FramedRecord:
    """Serialized events framed as TFRecords already, queued to be written as they are (not
    a bytes subclass, which would copy a step's megabytes)."""

    __slots__ = ("data",)

    def __init__(self, serialized_event):
        self.data = events.tf_record(serialized_event)


class FramingRecordWriter(record_writer.RecordWriter):
    """TensorBoard's RecordWriter, framing with google-crc32c, and writing a FramedRecord as
    it is."""

    def write(self, data):
        self._writer.write(data.data if isinstance(data, FramedRecord)
                           else events.tf_record(data))


def record_queue(file_writer):
    """The _AsyncWriter of a torch FileWriter, its RecordWriter made a FramingRecordWriter, so
    that its `write` takes a FramedRecord and queues it after the events added before; None if
    TensorBoard's internals are not the ones this module knows (then the public
    FileWriter.add_summary is the way in)."""
    event_writer = getattr(file_writer, "event_writer", None)
    if not isinstance(event_writer, event_file_writer.EventFileWriter):
        return None
    queue = getattr(event_writer, "_async_writer", None)
    if type(queue) is not event_file_writer._AsyncWriter:
        return None
    records = getattr(queue, "_writer", None)
    if (type(records) not in (record_writer.RecordWriter, FramingRecordWriter)
            or not hasattr(records, "_writer")
            or getattr(getattr(queue, "_worker", None), "_record_writer", None) is not records):
        return None
    records.__class__ = FramingRecordWriter  # no state of its own: the same file, framed fast
    return queue
