"""The reduction's own CUDA stream: a capture marks where the training stream stood when
its outputs were copied (an event per device), and the reduction, run later on any thread,
waits for that mark on a stream of its own, so it neither waits for the training steps
queued since nor holds them up."""

import contextlib
import functools

import torch


def mark_ready(tensors):
    """{CUDA device: an event recorded on its current stream} for the devices `tensors` lie
    on (none for CPU tensors, which are ready once computed)."""
    ready = {}
    for tensor in tensors:
        if tensor.is_cuda and tensor.device not in ready:
            ready[tensor.device] = torch.cuda.Event()
            ready[tensor.device].record(torch.cuda.current_stream(tensor.device))
    return ready


@functools.lru_cache(maxsize=None)
def reduction_stream(device):
    """The one side stream the reductions on `device` run on."""
    return torch.cuda.Stream(device=device)


@contextlib.contextmanager
def on_reduction_streams(ready):
    """Makes the reduction streams of `ready`'s devices current (for this thread), each
    waiting for its device's event first."""
    with contextlib.ExitStack() as streams:
        for device, event in ready.items():
            stream = reduction_stream(device)
            stream.wait_event(event)
            streams.enter_context(torch.cuda.stream(stream))
        yield
