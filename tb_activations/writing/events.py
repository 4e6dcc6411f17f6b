"""Event files without TensorFlow: serialized `Event` protos in TFRecord framing, every write
checked.

A record is the data's length, the masked CRC32C of the length, the data, and the masked
CRC32C of the data. TensorBoard's readers stop at a torn record and never read a record after
it, so a write that fails part way is cut back to the last whole write, and the writer then
refuses every further write: a reader sees whole writes only. A write returns once the OS has
the bytes (no buffer of ours to flush); nothing is fsynced.

A log_dir that is a URL (gs://, s3://, hdfs://...) is written through the gfile that reaches it
(url_files.py): TensorFlow's where TensorFlow is installed and has the scheme, as tf.summary
writes them, else TensorBoard's own (boto3 for s3://, fsspec's for the rest, as torch's
SummaryWriter writes them). Each write is flushed there, so the file system (a bucket: the whole
file again) has every whole write; one that failed cannot be cut back.
"""

import contextlib
import errno
import itertools
import os
import socket
import struct
import threading
import time

import google_crc32c
from tensorboard.compat.proto import event_pb2

from tb_activations.writing import url_files

# The file_version TensorFlow's writers put first in every event file.
FILE_VERSION = "brain.Event:2"
# Ends the names of our event files (TensorBoard's loaders only need "tfevents" in the name).
FILE_SUFFIX = ".activations"
_CRC_MASK_DELTA = 0xA282EAD8
_files_opened = itertools.count()


class EventFileError(OSError):
    """An event file could not be written (its name is the error's `filename`)."""


def masked_crc32c(data):
    """The CRC32C of `data`, masked as TFRecord stores it (rotated, plus a constant)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def tf_record(data):
    """`data` framed as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return b"".join((length, struct.pack("<I", masked_crc32c(length)), data,
                     struct.pack("<I", masked_crc32c(data))))


class EventFileWriter:
    """One new event file in `log_dir`, named as TensorBoard's writers name theirs
    (events.out.tfevents.<time>.<host>.<pid>.<n>) plus `suffix`; it starts with the
    file_version event. `write` is thread-safe; raises EventFileError naming the file."""

    def __init__(self, log_dir, suffix=FILE_SUFFIX):
        log_dir = os.fspath(log_dir)
        self.path = os.path.join(log_dir, "events.out.tfevents.%d.%s.%d.%d%s" % (
            time.time(), socket.gethostname(), os.getpid(), next(_files_opened), suffix))
        self._lock = threading.Lock()
        self._written = 0
        self._failure = None
        with as_event_file_error(self.path):
            self._file = (_UrlFile if is_url(log_dir) else _LocalFile)(log_dir, self.path)
        try:
            self.write([event_pb2.Event(wall_time=time.time(),
                                        file_version=FILE_VERSION).SerializeToString()])
        except EventFileError:
            self._file.remove()  # ours (new), and holds nothing
            self._file = None
            raise

    def write(self, serialized_events):
        """Appends the events (each a serialized Event) in one write; raises EventFileError if
        they are not all written (the file is then cut back to what was written before, and
        takes no more writes)."""
        data = b"".join(tf_record(event) for event in serialized_events)
        with self._lock:
            if self._failure is not None:
                raise EventFileError(self._failure.errno, "an earlier write failed (%s), so "
                                     "nothing more is written" % self._failure.strerror,
                                     self.path)
            if self._file is None:
                raise EventFileError(errno.EBADF, "the writer is closed", self.path)
            try:
                with as_event_file_error(self.path):
                    self._file.append(data)
            except EventFileError as error:
                self._failure = error
                self._file.cut_back(self._written)
                raise
            self._written += len(data)

    def close(self):
        """Closes the file (again is fine); raises EventFileError if the OS reports an error."""
        with self._lock:
            file, self._file = self._file, None
        if file is not None:
            with as_event_file_error(self.path):
                file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _LocalFile:
    """A new file on a local (or mounted) file system, written with os.write."""

    def __init__(self, log_dir, path):
        os.makedirs(log_dir, exist_ok=True)
        self._path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)

    def append(self, data):
        done = 0
        while done < len(data):
            done += os.write(self._fd, memoryview(data)[done:])

    def cut_back(self, size):
        """Removes a torn write's bytes, so readers can go on to the end of the file."""
        with contextlib.suppress(OSError):  # else the file ends in a torn record
            os.ftruncate(self._fd, size)

    def close(self):
        os.close(self._fd)

    def remove(self):
        os.close(self._fd)
        os.unlink(self._path)


class _UrlFile:
    """A new file at a URL, through the gfile that reaches it (url_files.file_layer)."""

    def __init__(self, log_dir, path):
        try:
            self._gfile = url_files.file_layer(log_dir).gfile
        except url_files.UnreachableUrl as error:
            raise ValueError("log_dir %r is a URL that no installed file system writes: %s; "
                             "or log to a local directory" % (log_dir, error)) from error
        self._path = path
        self._gfile.makedirs(log_dir)
        self._file = self._gfile.GFile(path, "wb")

    def append(self, data):
        self._file.write(data)
        self._file.flush()

    def cut_back(self, size):
        """Not possible through gfile: the file may end in a torn write."""

    def close(self):
        self._file.close()

    def remove(self):
        with contextlib.suppress(Exception):
            self._file.close()
            self._gfile.remove(self._path)


def is_url(log_dir):
    return "://" in os.fspath(log_dir)


@contextlib.contextmanager
def as_event_file_error(path):
    """Raises what writing to a file system raises (an OSError, TensorFlow's or gfile's
    errors) as an EventFileError naming `path` (a file, or what is written to); a URL that
    nothing can write stays a ValueError."""
    try:
        yield
    except (EventFileError, ValueError):
        raise
    except OSError as error:
        raise EventFileError(error.errno, error.strerror or str(error), path) from error
    except Exception as error:  # gfile's own errors; refused URLs are ValueErrors, above
        raise EventFileError(errno.EIO, str(error), path) from error


# The writers of shared_writer: one per directory (absolute, or its URL) for the process.
_shared_writers = {}
_shared_writers_lock = threading.Lock()


def shared_writer(log_dir):
    """The EventFileWriter into `log_dir` that every `log_activations(log_dir=...)` of this
    process uses (opened on first use), so a run's steps go to one event file."""
    key = shared_writer_key(log_dir)
    with _shared_writers_lock:
        if key not in _shared_writers:
            _shared_writers[key] = EventFileWriter(key)
        return _shared_writers[key]


def shared_writer_key(log_dir):
    """How shared_writer names `log_dir`: its URL, or its absolute path."""
    log_dir = os.fspath(log_dir)
    return log_dir if is_url(log_dir) else os.path.abspath(log_dir)
