"""A logdir that is a URL (s3://, gs://, hdfs://...): whether something can read it, and what to
install when nothing can.

URLs are read through TensorBoard's gfile, as `tensorboard --logdir` reads them: TensorFlow's
file systems when TensorFlow is installed (TensorFlow I/O adds s3:// and more, and TensorBoard
loads it when a scheme needs it), else TensorBoard's own: boto3 for s3://, fsspec for the rest.
Checked once per logdir before it is listed, so a scheme nothing reads is refused with the
package to install instead of a file system error from deep inside TensorBoard.
"""

import contextlib
import os
import posixpath

from tensorboard.backend.event_processing import io_wrapper

from tb_activations.writing import events


# The URL schemes TensorFlow I/O's file systems add to TensorFlow's.
_TENSORFLOW_IO_SCHEMES = ("s3", "az", "hdfs", "viewfs", "har", "http", "https")


class UnreadableLogdir(ValueError):
    """The logdir's URL cannot be read: no installed file system reads it (the message names
    what to install), or the store refused (credentials, endpoint: the message has its
    error)."""


def scheme(logdir):
    """The URL scheme of `logdir` ("s3" of "s3://bucket/runs"); "" for a local path."""
    logdir = os.fspath(logdir)
    return logdir.partition("://")[0] if events.is_url(logdir) else ""


def check_readable(logdir):
    """Nothing if `logdir` is local or a URL some installed file system reads; else
    UnreadableLogdir saying what to install."""
    if not scheme(logdir):
        return
    from tensorboard.compat import tf as tf_or_stub  # imports TensorFlow if installed

    if tf_or_stub.__version__ == "stub":
        _check_stub_reads(os.fspath(logdir))
    else:
        _check_tensorflow_reads(tf_or_stub, os.fspath(logdir))


def is_directory(logdir):
    """Whether `logdir` is a directory (a URL through TensorBoard's gfile, after
    check_readable; UnreadableLogdir if the store refuses)."""
    if not scheme(logdir):
        return os.path.isdir(logdir)
    check_readable(logdir)
    from tensorboard.compat import tf as tf_or_stub

    with _store_errors(logdir):
        return tf_or_stub.io.gfile.isdir(os.fspath(logdir))


def url_run_directories(logdir):
    """The directories holding event files under the URL `logdir`, listed by TensorBoard's
    walk (what `tensorboard --logdir` shows as runs); UnreadableLogdir if nothing installed
    reads the URL or the store refuses."""
    check_readable(logdir)
    with _store_errors(logdir):
        return list(io_wrapper.GetLogdirSubdirectories(os.fspath(logdir)))


@contextlib.contextmanager
def _store_errors(logdir):
    """Any error of the store's client (boto3's, fsspec's, TensorFlow's: no common base) as
    an UnreadableLogdir naming the logdir."""
    try:
        yield
    except UnreadableLogdir:
        raise
    except Exception as error:
        raise UnreadableLogdir(
            "logdir %s cannot be read: %s: %s. Check the store's credentials and endpoint "
            "(for s3://: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)"
            % (logdir, type(error).__name__, error)) from error


def own_name(logdir):
    """The logdir's own folder name ("runs" of "s3://bucket/runs/" and of "/data/runs")."""
    logdir = os.fspath(logdir)
    if scheme(logdir):
        return posixpath.basename(logdir.partition("://")[2].rstrip("/"))
    return os.path.basename(os.path.abspath(logdir))


def _check_tensorflow_reads(tf, logdir):
    """TensorFlow's file systems read the scheme, as TensorBoard checks it (importing
    TensorFlow I/O when the scheme needs it)."""
    wanted = scheme(logdir)
    if wanted in tf.io.gfile.get_registered_schemes():
        return
    try:
        import tensorflow_io  # noqa: F401  registers its file systems
    except ImportError:
        pass
    registered = sorted(name for name in tf.io.gfile.get_registered_schemes() if name)
    if wanted in registered:
        return
    why = ("TensorFlow is installed, so TensorBoard reads URLs through TensorFlow's file "
           "systems, which read %s here. (Where TensorFlow is not installed, TensorBoard reads "
           "s3:// with boto3 and other URLs with fsspec.)" % ", ".join(registered))
    if wanted in _TENSORFLOW_IO_SCHEMES:
        raise UnreadableLogdir("logdir %s: %s:// needs TensorFlow I/O: pip install "
                               "tensorflow-io. %s" % (logdir, wanted, why))
    raise UnreadableLogdir("logdir %s: no installed file system reads %s:// URLs. %s "
                           "TensorFlow I/O adds %s (pip install tensorflow-io)."
                           % (logdir, wanted, why, ", ".join(_TENSORFLOW_IO_SCHEMES)))


def _check_stub_reads(logdir):
    """TensorBoard's own gfile (no TensorFlow) reads the scheme: boto3 for s3://, else an
    fsspec file system."""
    from tensorboard.compat.tensorflow_stub.io import gfile

    wanted = scheme(logdir)
    try:
        file_system = gfile.get_filesystem(logdir)
    except (ImportError, ValueError) as error:  # fsspec's (a missing package), or no fsspec
        reason = error
    else:
        if isinstance(file_system, gfile.S3FileSystem) and not logdir[5:].strip("/").count("/"):
            raise UnreadableLogdir(
                "logdir %s: TensorBoard reads s3:// through boto3, which finds runs in a "
                "folder of a bucket (s3://bucket/runs), not at its root: keep them in a "
                "folder and give its URL" % logdir)
        return
    if wanted == "s3":
        raise UnreadableLogdir("logdir %s: s3:// needs boto3 (or s3fs): pip install boto3"
                               % logdir) from reason
    package = _fsspec_package(wanted)
    if package:
        raise UnreadableLogdir("logdir %s: %s:// needs %s: pip install %s"
                               % (logdir, wanted, package, package)) from reason
    raise UnreadableLogdir(
        "logdir %s: no installed file system reads %s:// URLs (%s). TensorBoard reads a "
        "logdir that is a local path, s3:// (boto3), or a URL of any fsspec file system "
        "(pip install fsspec and the one for the scheme: gcsfs for gs://, s3fs, adlfs...)"
        % (logdir, wanted, reason)) from reason


def _fsspec_package(wanted):
    """The package that brings fsspec's file system for the scheme, or None when fsspec is
    not installed or does not know it (or the file system is fsspec's own, with its own
    needs: its message is the reason then)."""
    try:
        from fsspec.registry import known_implementations
    except ImportError:
        return None
    implementation = known_implementations.get(wanted)
    if implementation is None:
        return None
    module = implementation["class"].partition(".")[0]
    return None if module == "fsspec" else module
