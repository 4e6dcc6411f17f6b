"""Event files without TensorFlow: serialized `Event` protos in TFRecord framing, every write
checked.

A record is the data's length, the masked CRC32C of the length, the data, and the masked
CRC32C of the data. TensorBoard's readers stop at a torn record and never read a record after
it, so a write that fails part way is cut back to the last whole write, and the writer then
refuses every further write: a reader sees whole writes only. A write returns once the OS has
the bytes (no buffer of ours to flush); nothing is fsynced.
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
        if "://" in log_dir:
            raise ValueError("log_dir %r is a URL; tb-activations writes event files to local "
                             "(or mounted) directories only" % log_dir)
        self.path = os.path.join(log_dir, "events.out.tfevents.%d.%s.%d.%d%s" % (
            time.time(), socket.gethostname(), os.getpid(), next(_files_opened), suffix))
        self._lock = threading.Lock()
        self._fd = None
        self._written = 0
        self._failure = None
        try:
            os.makedirs(log_dir, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as error:
            raise EventFileError(error.errno, error.strerror, self.path) from error
        try:
            self.write([event_pb2.Event(wall_time=time.time(),
                                        file_version=FILE_VERSION).SerializeToString()])
        except EventFileError:
            os.close(self._fd)
            self._fd = None
            os.unlink(self.path)  # ours (O_EXCL), and holds nothing
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
            if self._fd is None:
                raise EventFileError(errno.EBADF, "the writer is closed", self.path)
            try:
                done = 0
                while done < len(data):
                    done += os.write(self._fd, memoryview(data)[done:])
            except OSError as error:
                self._failure = error
                self._cut_back()
                raise EventFileError(error.errno, error.strerror, self.path) from error
            self._written += len(data)

    def _cut_back(self):
        """Removes a torn write's bytes, so readers can go on to the end of the file."""
        with contextlib.suppress(OSError):  # else the file ends in a torn record
            os.ftruncate(self._fd, self._written)

    def close(self):
        """Closes the file (again is fine); raises EventFileError if the OS reports an error."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as error:
                raise EventFileError(error.errno, error.strerror, self.path) from error

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# The writers of shared_writer: one per directory (absolute) for the life of the process.
_shared_writers = {}
_shared_writers_lock = threading.Lock()


def shared_writer(log_dir):
    """The EventFileWriter into `log_dir` that every `log_activations(log_dir=...)` of this
    process uses (opened on first use), so a run's steps go to one event file."""
    key = os.path.abspath(os.fspath(log_dir))
    with _shared_writers_lock:
        if key not in _shared_writers:
            _shared_writers[key] = EventFileWriter(key)
        return _shared_writers[key]
