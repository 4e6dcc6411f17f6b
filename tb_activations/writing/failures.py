"""`on_error`, one rule for the callback and the direct `log_activations` calls: a failure to
write activations (a full disk, say) does not end the user's training run. With "warn" it
warns once and logging to that place stops for the rest of the run; with "raise" the error
is raised. Errors in the arguments raise either way, before anything is written."""

import warnings
import weakref

ON_ERROR = ("warn", "raise")
# Where the direct calls stopped logging after a failure: log_dirs by name, writers weakly.
_stopped_dirs = set()
_stopped_writers = weakref.WeakSet()


def check_on_error(on_error):
    if on_error not in ON_ERROR:
        raise ValueError('on_error must be "warn" or "raise", got %r' % (on_error,))
    return on_error


def fail(on_error, error, destination, stacklevel):
    """Raises `error` ("raise"), or warns that logging activations to `destination` stops
    for the rest of the run, which goes on. `stacklevel` counts from the caller."""
    if on_error == "raise":
        raise error
    warnings.warn("tb-activations stops logging activations to %s for the rest of this "
                  "training run, which goes on: %s" % (destination, error),
                  stacklevel=stacklevel + 1)


def is_stopped(place):
    """Whether logging to `place` (a log_dir's shared_writer key, or a writer) stopped."""
    return place in (_stopped_dirs if isinstance(place, str) else _stopped_writers)


def stop(place):
    """Stops logging to `place` for the life of the process."""
    (_stopped_dirs if isinstance(place, str) else _stopped_writers).add(place)


def write_or_stop(on_error, place, destination, write):
    """`write()`'s result, or False when its EventFileError was warned about ("warn"), after
    which `place` takes no more writes (is_stopped). Its warning points at the caller's
    caller (the user's call of log_activations)."""
    try:
        return write()
    except OSError as error:  # destinations.write_rendered raises an EventFileError, an OSError
        fail(on_error, error, "%s (later calls return False at once)" % destination,
             stacklevel=3)
        stop(place)
        return False
