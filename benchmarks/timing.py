"""Timing and bookkeeping shared by the benchmarks, free of any framework.

A method's runs are interleaved with forward passes and its ratio is taken against the
forward passes timed next to it, so slow drifts of a shared machine cancel out.
"""

import glob
import json
import os
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def now():
    return time.perf_counter()


def timed(fn):
    start = now()
    fn()
    return now() - start


def median(values):
    return float(statistics.median(values)) if values else None


def loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def event_bytes(directory):
    return sum(os.path.getsize(path) for path in
               glob.glob(os.path.join(directory, "**", "events.out.tfevents.*"), recursive=True))


def interleaved(forward, fn, repeats, warmup=1):
    """(method samples, forward samples): forward, method, forward, method, ...; `forward`
    returns the seconds its pass took."""
    for _ in range(warmup):
        fn()
    method, base = [], []
    for _ in range(repeats):
        base.append(forward())
        method.append(timed(fn))
    return method, base


def stat(method, base, note=""):
    return {"median_s": median(method), "min_s": min(method), "runs": len(method),
            "forward_median_s": median(base), "ratio": median(method) / median(base),
            "note": note}


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return None


def save_results(console, output, payload, seconds, load_start, load_end):
    """Says how long a benchmark took and under what load, and writes its JSON to `output`."""
    console.print("total %.0f s; load average at start %s, at end %s; JSON: %s"
                  % (seconds, load_start, load_end, os.path.relpath(output)))
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as handle:
        json.dump(payload, handle, indent=1)
