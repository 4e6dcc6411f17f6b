"""log_activations off the training thread (PyTorch's, and Keras's with background=True): one
writing.background.BackgroundWriter per destination (a log_dir, or a torch SummaryWriter),
so a destination's steps are written in
the order they were logged, one step queued at most (the callbacks' rule: a killed process
loses the step being written and the one queued). Drained by flush() and close(), at
interpreter exit, and before a call that writes in the foreground to the same destination.
A failure of the background work is reported by the next call to that destination and by
flush() and close(), as that destination's `on_error` says (failures.fail)."""

import atexit
import contextlib
import threading

from tb_activations.writing import events
from tb_activations.writing import failures
from tb_activations.writing.background import BackgroundWriter


class _Worker:
    """A destination's writer, its thread, the name its failures are reported under, and the
    `on_error` of the latest call (the one flush() and close() follow)."""

    def __init__(self, writer, name):
        self.writer = writer
        self.thread = BackgroundWriter(writer, max_queue=1, close_writer=False,
                                       thread_name="tb-activations-log-writer")
        self.name = name
        self.on_error = "warn"


def check_background_flag(background):
    if not isinstance(background, bool):
        raise TypeError("background must be True (reduce, render and write on a thread of "
                        "their own) or False (on the calling thread), got %r" % (background,))
    return background


# place (events.shared_writer_key of a log_dir, or a SummaryWriter) -> its _Worker
_workers = {}
_workers_lock = threading.Lock()


def queue(place, writer, name, on_error, render, step):
    """Queues `render()` (a rendered step, made on the writer thread) at `step` for
    `writer`, on `place`'s thread, started on first use; waits while a step is queued."""
    with _workers_lock:
        worker = _workers.get(place)
        if worker is None:
            worker = _workers[place] = _Worker(writer, name)
    worker.on_error = on_error
    worker.thread.enqueue(render, step)


def report_failure(place, on_error, stacklevel, wait=False):
    """Whether `place`'s thread failed since the last report (after writing all it holds, if
    `wait`): the failure warns, and logging to `place` stops ("warn"), or is raised
    ("raise"). `stacklevel` counts from the caller, as failures.fail's."""
    worker = _workers.get(place)
    if worker is None:
        return False
    if wait:
        worker.thread.wait()
    error = worker.thread.take_failure()
    if error is None:
        return False
    _report(place, worker, error, on_error, stacklevel + 1)
    return True


def _report(place, worker, error, on_error, stacklevel):
    failures.fail(on_error, error, "%s (later calls return False at once)" % worker.name,
                  stacklevel + 1)
    failures.stop(place)
    with _workers_lock:
        _workers.pop(place, None)
    worker.thread.abandon()


def flush():
    """Waits until every step log_activations queued is written. A failure is reported as
    its destination's latest call's `on_error` says: warned about (logging there stops), or
    raised (the first, after every destination was drained)."""
    for worker in list(_workers.values()):
        worker.thread.wait()
    first = None
    for place, worker in list(_workers.items()):
        error = worker.thread.take_failure()
        if error is not None:
            try:
                _report(place, worker, error, worker.on_error, stacklevel=2)
            except Exception as raised:  # noqa: BLE001: raised once all are reported
                first = first or raised
    if first is not None:
        raise first


def close():
    """flush(), then ends the writer threads (a later log_activations starts new ones);
    the event files stay open: each step is written to the file system whole."""
    try:
        flush()
    finally:
        with _workers_lock:
            ended = list(_workers.values())
            _workers.clear()
        for worker in ended:
            worker.thread.abandon()


def _close_at_exit():
    """close() at interpreter exit, every failure a warning: the program is ending. A torch
    SummaryWriter is flushed after, as its own thread would not be waited for."""
    writers = [worker.writer for worker in _workers.values()]
    for worker in _workers.values():
        worker.on_error = "warn"
    close()
    for writer in writers:
        if not isinstance(writer, events.EventFileWriter):  # ours writes through at once
            with contextlib.suppress(Exception):  # a closed writer, a full disk: said above
                writer.flush()


atexit.register(_close_at_exit)
