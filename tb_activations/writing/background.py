"""Rendering and writing off the training thread: the training loop pays for the probe's
forward pass only; the reduction, tiling, PNG encoding and writing happen on a thread of
their own behind a bounded queue (the Keras and the Lightning callbacks, and PyTorch's
log_activations through writing.destination_threads)."""

import logging
import queue
import threading

from tb_activations.writing import destinations as destinations_lib

logger = logging.getLogger(__name__)

_STOP = object()


class BackgroundWriter:
    """A thread that renders and writes captures to one writer (destinations_lib.write_rendered's
    destinations), in order; `close_writer`: close it too when closing; `thread_name` tells
    a callback's thread from log_activations's in a thread dump."""

    def __init__(self, writer, max_queue, close_writer=True, thread_name="tb-activations-writer"):
        self._writer = writer
        self._close_writer = close_writer
        self._queue = queue.Queue(maxsize=max_queue)
        self._failure = None
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                rendered, step = item
                if callable(rendered):
                    rendered = rendered()
                destinations_lib.write_rendered(rendered, step, self._writer)
            except Exception as error:  # reported on the training thread, see raise_failure
                logger.exception("tb-activations could not write step %s", item[1])
                self._failure = self._failure or error
            finally:
                self._queue.task_done()

    def take_failure(self):
        """The first failure of earlier work not reported yet (then forgotten), or None."""
        error, self._failure = self._failure, None
        return error

    def raise_failure(self):
        error = self.take_failure()
        if error is not None:
            raise RuntimeError("tb-activations failed to write activations: %s" % error) from error

    def wait(self):
        """Waits for everything queued to be written; the thread goes on taking work."""
        if self._thread.is_alive():  # not in a forked child, which has no copy of it
            self._queue.join()

    def put(self, rendered, step):
        """Queue work; `rendered` is a list or a function that returns it (run off-thread).
        Raises the failure of earlier work, if any."""
        self.raise_failure()
        self.enqueue(rendered, step)

    def enqueue(self, rendered, step):
        """Queue work as put does, whatever failed before (see take_failure); waits while the
        queue is full."""
        self._queue.put((rendered, step))

    def close(self):
        """Waits for everything queued to be written; raises the first failure, if any."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        try:
            if self._close_writer:
                self._writer.close()
        except Exception as error:  # e.g. an error the OS reports on closing the file
            self._failure = self._failure or error
        self.raise_failure()

    def abandon(self):
        """Closes after a failure that was reported already: waits for the thread, and only
        logs what closing raises (that failure again, or its consequences)."""
        try:
            self.close()
        except Exception:
            logger.debug("writer closed after a failure", exc_info=True)
