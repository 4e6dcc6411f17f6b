"""Which Keras epoch a logged step belongs to, from a run's epoch records (the
`activations_epochs` tag: `{"epoch": E}` at the step epoch E ended at; docs/format.md).

Shared by the plugin (/steps) and the export, so the tab and the exported files agree. The
records are untrusted: each is checked here, and a bad one is left out by its caller with the
reason this module gives.
"""

import bisect
import json

from tb_activations.format import metadata

# A record is `{"epoch": E}`, a few bytes: a longer one is refused before it is parsed.
_MAX_RECORD_BYTES = 256
_MAX_EPOCH = 2**31 - 1
# Records read per run at most: the plugin reads each as one blob, ~1.8 ms apiece on the Rust
# data server (32 at once), so a run's first /layers takes up to ~4 s at this bound
# (benchmarks/bench_epochs.py). A run with more gets no epochs rather than wrong ones.
MAX_RECORDS = 2_000


def check_tag(tag):
    """ValueError unless `tag`, whose content is of kind epoch, is the one epoch tag: a run
    has one list of epoch ends, and a foreign tag must not change it."""
    if tag != metadata.EPOCH_TAG:
        raise ValueError("epoch records belong under tag %r only" % metadata.EPOCH_TAG)


def parse_record(values, read=None):
    """The epoch index one step of the epoch tag holds. `values`: the step's values (one
    blob); `read`, if given, turns one into its bytes (the plugin passes a blob read).
    ValueError saying what is wrong and what was expected."""
    if len(values) != 1:
        raise ValueError("%d values, expected one JSON blob" % len(values))
    blob = values[0] if read is None else read(values[0])
    if not isinstance(blob, bytes):
        raise ValueError("the value is a %s, not a blob of bytes" % type(blob).__name__)
    payload = metadata.json_blob(blob, _MAX_RECORD_BYTES, "the record")
    epoch = payload.get("epoch") if isinstance(payload, dict) else None
    if not (isinstance(epoch, int) and not isinstance(epoch, bool) and 0 <= epoch <= _MAX_EPOCH):
        raise ValueError("the record is %s, expected {\"epoch\": E} with E an integer "
                         "0..%d" % (json.dumps(payload)[:60], _MAX_EPOCH))
    return epoch


def epochs_of(steps, ends):
    """The epoch index (Keras's, 0-based) of each of `steps`, from `ends`, [(step, epoch)] of
    the run's records: a step is in the epoch of the first record at or after it (logged at
    or before that epoch's end, after the previous one's); a step after the last record is
    in the epoch after it (under way when the step was logged, or cut short). None per step
    when there are no records."""
    ends = sorted(ends)
    if not ends:
        return [None] * len(steps)
    boundaries = [step for step, _ in ends]
    result = []
    for step in steps:
        index = bisect.bisect_left(boundaries, step)
        result.append(ends[index][1] if index < len(ends) else ends[-1][1] + 1)
    return result


def step_text(step, epoch):
    """"epoch E · step S" as exports print it, E counted from 1 as Keras's console does
    ("Epoch 1/3" is index 0); "step S" when the epoch is not known."""
    return "step %d" % step if epoch is None else "epoch %d · step %d" % (epoch + 1, step)
