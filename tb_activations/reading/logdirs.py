"""A logdir that is a URL (s3://, gs://, hdfs://...): whether something can read it, what to
install when nothing can, and its runs.

A URL is read through the gfile that reaches it (writing/url_files.py): where that is
TensorBoard's own (`tensorboard.compat.tf`: TensorFlow's, or the stub's without TensorFlow),
through TensorBoard's loaders, as `tensorboard --logdir` reads it; where TensorFlow is installed
but lacks the scheme (s3://), through TensorBoard's stub gfile (reading/stub_reading.py).
Checked once per logdir before it is listed, so a scheme nothing reads is refused with the
package to install instead of a file system error from deep inside TensorBoard.
"""

import contextlib
import os
import posixpath

from tensorboard.backend.event_processing import io_wrapper

from tb_activations.reading import stub_reading
from tb_activations.writing import url_files

scheme = url_files.scheme


class UnreadableLogdir(ValueError):
    """The logdir's URL cannot be read: no installed file system reads it (the message names
    what to install), or the store refused (credentials, endpoint: the message has its
    error)."""


def file_layer(logdir):
    """The url_files.FileLayer that reads the URL `logdir`; UnreadableLogdir saying what to
    install when none does, or when it is the root of a bucket, which the stub's boto3 reader
    cannot list."""
    try:
        layer = url_files.file_layer(logdir)
    except url_files.UnreachableUrl as error:
        raise UnreadableLogdir("logdir %s: %s" % (logdir, error)) from error
    logdir = os.fspath(logdir)
    if (layer.stub and isinstance(layer.gfile.get_filesystem(logdir), layer.gfile.S3FileSystem)
            and not logdir[5:].strip("/").count("/")):
        raise UnreadableLogdir(
            "logdir %s: TensorBoard reads s3:// through boto3, which finds runs in a "
            "folder of a bucket (s3://bucket/runs), not at its root: keep them in a "
            "folder and give its URL" % logdir)
    return layer


def check_readable(logdir):
    """Nothing if `logdir` is local or a URL some installed file system reads; else
    UnreadableLogdir saying what to install."""
    if scheme(logdir):
        file_layer(logdir)


def read_by_stub(path):
    """Whether `path` is a URL that TensorBoard's own loaders cannot read, because TensorFlow
    is installed without its scheme, so it is read through the stub (after check_readable)."""
    return bool(scheme(path)) and not file_layer(path).tensorboards_own


def is_directory(logdir):
    """Whether `logdir` is a directory (a URL through the gfile that reaches it;
    UnreadableLogdir if nothing does or the store refuses)."""
    if not scheme(logdir):
        return os.path.isdir(logdir)
    layer = file_layer(logdir)
    with _store_errors(logdir):
        return layer.gfile.isdir(os.fspath(logdir))


def url_run_directories(logdir):
    """The directories holding event files under the URL `logdir`, listed by TensorBoard's
    walk (what `tensorboard --logdir` shows as runs), or by the stub's listing where
    TensorBoard's own loaders cannot read it; UnreadableLogdir if nothing installed reads the
    URL or the store refuses."""
    layer = file_layer(logdir)
    with _store_errors(logdir):
        if not layer.tensorboards_own:
            return stub_reading.run_directories(os.fspath(logdir))
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
