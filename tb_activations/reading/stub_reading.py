"""Runs at a URL that TensorBoard's own loaders cannot read because TensorFlow is installed
without the URL's scheme (s3://: writing/url_files.py), listed and read through TensorBoard's
stub gfile and stub record reader, which TensorBoard itself reads them with where TensorFlow
is not installed.

TensorBoard's loaders (io_wrapper, DirectoryWatcher, EventFileLoader) are bound to
`tensorboard.compat.tf`, TensorFlow when it is installed; these read the same files through the
stub, in the same order, with TensorBoard's own event migrations.
"""

import posixpath

from tensorboard import data_compat
from tensorboard import dataclass_compat
from tensorboard.backend.event_processing import io_wrapper
from tensorboard.compat.proto import event_pb2


def run_directories(logdir):
    """The directories under the URL `logdir` holding an event file, sorted: the boto3 file
    system's glob of "folder/*" lists every key under the folder in one paginated listing (as
    TensorBoard lists s3:// without TensorFlow); other file systems are walked."""
    from tensorboard.compat.tensorflow_stub.io import gfile

    logdir = logdir.rstrip("/")
    if isinstance(gfile.get_filesystem(logdir), gfile.S3FileSystem):
        paths = gfile.glob(logdir + "/*")
    else:
        paths = [posixpath.join(directory, name)
                 for directory, _, names in gfile.walk(logdir) for name in names]
    return sorted({posixpath.dirname(path) for path in paths
                   if io_wrapper.IsTensorFlowEventsFile(path)})


def load_run(directory):
    """Yields the Events of every event file in `directory`, files in name order (as
    TensorBoard's DirectoryWatcher loads them), each up to its end or its first torn or
    corrupt record (where TensorBoard's loader stops), migrated as TensorBoard's
    EventFileLoader migrates them."""
    from tensorboard.compat.tensorflow_stub.io import gfile

    paths = sorted(posixpath.join(directory, name) for name in gfile.listdir(directory))
    for path in filter(io_wrapper.IsSummaryEventsFile, paths):
        initial_metadata = {}
        for record in _records(path):
            event = data_compat.migrate_event(event_pb2.Event.FromString(record))
            yield from dataclass_compat.migrate_event(event, initial_metadata)


def _records(path):
    """The records of one event file, through the stub's record reader."""
    from tensorboard.compat.tensorflow_stub import errors
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow

    reader = pywrap_tensorflow.PyRecordReader_New(path, 0, None, None)
    while True:
        try:
            reader.GetNext()
        except (errors.OutOfRangeError, errors.DataLossError):
            return
        yield reader.record()
