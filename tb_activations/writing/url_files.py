"""Which file layer reaches a URL log_dir or logdir (s3://, gs://, hdfs://...), for writing and
reading alike, and what to install when none does.

TensorBoard reaches URLs through `tensorboard.compat.tf`: TensorFlow's gfile when TensorFlow is
installed, else its own stub gfile (boto3 for s3://, fsspec for other schemes). TensorFlow has
no s3:// of its own, and TensorFlow I/O, which added it, no longer loads on current TensorFlow
(docs/buckets.md). So where TensorFlow is installed but lacks the scheme, the stub reaches the
URL instead, and TensorBoard's own loaders (bound to TensorFlow) cannot read it: the reader
then reads through the stub itself (reading/stub_reading.py).
"""

import dataclasses
import os
import types


class UnreachableUrl(ValueError):
    """No installed file system reaches the URL; the message says what to install."""


@dataclasses.dataclass(frozen=True)
class FileLayer:
    """The gfile module that reaches a URL (makedirs, GFile, listdir, isdir, glob, walk...),
    whether it is TensorBoard's stub gfile, and whether it is `tensorboard.compat.tf`'s, which
    TensorBoard's own loaders (io_wrapper, DirectoryWatcher, the multiplexer) read through."""

    gfile: types.ModuleType
    stub: bool
    tensorboards_own: bool


def scheme(url):
    """The URL scheme of `url` ("s3" of "s3://bucket/runs"); "" for a local path."""
    url = os.fspath(url)
    return url.partition("://")[0] if "://" in url else ""


def file_layer(url):
    """The FileLayer that reaches the URL: TensorFlow's gfile where TensorFlow is installed and
    has the scheme (with TensorFlow I/O's schemes where it loads, as TensorBoard tries it), else
    TensorBoard's stub gfile; UnreachableUrl saying what to install if neither does."""
    from tensorboard.compat import tf as tf_or_stub  # imports TensorFlow if installed

    url = os.fspath(url)
    tensorflow_schemes = None
    if tf_or_stub.__version__ != "stub":
        tensorflow_schemes = _tensorflow_schemes(tf_or_stub, scheme(url))
        if scheme(url) in tensorflow_schemes:
            return FileLayer(tf_or_stub.io.gfile, False, True)
    from tensorboard.compat.tensorflow_stub.io import gfile

    try:
        gfile.get_filesystem(url)
    except (ImportError, ValueError) as error:  # fsspec's (a missing package), or no fsspec
        raise UnreachableUrl(_missing(url, error, tensorflow_schemes)) from error
    return FileLayer(gfile, True, tensorflow_schemes is None)


def _tensorflow_schemes(tf, wanted):
    """The schemes TensorFlow's file systems reach, after importing TensorFlow I/O (which
    registers more) when `wanted` is not among them, as TensorBoard does."""
    if wanted not in tf.io.gfile.get_registered_schemes():
        try:
            import tensorflow_io  # noqa: F401
        except Exception:  # absent, or built for another TensorFlow: its .so does not load
            pass
    return sorted(name for name in tf.io.gfile.get_registered_schemes() if name)


def _missing(url, reason, tensorflow_schemes):
    """What to install to reach `url`, which no installed file system reaches."""
    wanted = scheme(url)
    if wanted == "s3":
        return "s3:// needs boto3 (or s3fs): pip install boto3"
    package = _fsspec_package(wanted)
    if package:
        return "%s:// needs %s: pip install %s" % (wanted, package, package)
    tensorflow = ("; TensorFlow's file systems here reach %s" % ", ".join(
        name + "://" for name in tensorflow_schemes) if tensorflow_schemes else "")
    return ("no installed file system knows %s:// URLs (%s). Readable and writable: a local "
            "path, s3:// (boto3 or s3fs), or a URL of any fsspec file system (pip install "
            "fsspec and the one for the scheme: gcsfs for gs://, adlfs for az://...)%s"
            % (wanted, reason, tensorflow))


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
