"""A run's `model.keras`, as the live probe reads it: saved atomically, with a record of its own.

The record (`tb_activations.json`, an extra entry in the `.keras` zip, which Keras ignores)
says which training step the weights are from, when they were saved, the class names and the
value range of each probe input. Keeping it inside the model file means one rename replaces
both together, so a reader never pairs a model with another save's record. Reading it needs
neither TensorFlow nor Keras, so the plugin can describe a run's model without loading it.
"""

import json
import os
import time
import zipfile

import numpy as np

MODEL_FILE = "model.keras"
RECORD_ENTRY = "tb_activations.json"
# A record larger than this is not one we wrote (class names of a 100k-class model fit).
_MAX_RECORD_BYTES = 4 << 20


def model_path(run_dir):
    return os.path.join(run_dir, MODEL_FILE)


def value_range(array):
    """{"dtype", "low", "high"} of one probe input: the range a drawn picture is mapped into."""
    array = np.asarray(array)
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array.ravel()
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return {"dtype": str(array.dtype), "low": low, "high": high}


def save_model(model, run_dir, record):
    """Saves `model` to run_dir/model.keras with `record` (JSON-able) inside, atomically.

    Keras writes a temporary file in the same directory, the record is appended to its zip,
    and a rename puts it in place: a reader sees the previous file or this one, never half.
    """
    target = model_path(run_dir)
    partial = os.path.join(run_dir, ".%s.%d.partial.keras" % (MODEL_FILE, os.getpid()))
    try:
        model.save(partial)
        with zipfile.ZipFile(partial, "a") as archive:
            archive.writestr(RECORD_ENTRY, json.dumps(dict(record, saved_at=time.time())))
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def read_record(archive):
    """The record inside an open `.keras` ZipFile; {} when it has none (a model the user
    saved there themselves). ValueError when the entry is not a JSON object."""
    try:
        info = archive.getinfo(RECORD_ENTRY)
    except KeyError:
        return {}
    if info.file_size > _MAX_RECORD_BYTES:
        raise ValueError("%s in the model file is %d bytes, more than the %d a record may hold"
                         % (RECORD_ENTRY, info.file_size, _MAX_RECORD_BYTES))
    try:
        record = json.loads(archive.read(RECORD_ENTRY).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError("%s in the model file is not JSON: %s" % (RECORD_ENTRY, error)) from None
    if not isinstance(record, dict):
        raise ValueError("%s in the model file is not a JSON object" % RECORD_ENTRY)
    return record


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def describe_record(record):
    """The live_info fields from a record alone (no TensorFlow), or None when the record
    does not describe the inputs (then the model must be loaded to know them).

    The record is read from a file in the logdir, so it is checked like any request.
    """
    inputs = record.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        return None
    described = []
    for entry in inputs:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("dtype"), str) and isinstance(entry.get("shape"), list)
                and all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
                        for d in entry["shape"])
                and is_number(entry.get("low")) and is_number(entry.get("high"))):
            raise ValueError("the model file's record describes an input as %r" % (entry,))
        described.append({"name": entry["name"], "shape": entry["shape"],
                          "dtype": entry["dtype"], "low": float(entry["low"]),
                          "high": float(entry["high"]), "range_known": True})
    return dict(record_facts(record), inputs=described,
                outputs=[entry for entry in record.get("outputs") or []
                         if isinstance(entry, dict) and isinstance(entry.get("name"), str)
                         and isinstance(entry.get("shape"), list)])


def record_facts(record):
    """Step, save time and class names of a record, each None unless well-formed."""
    names = record.get("class_names")
    step = record.get("step")
    saved_at = record.get("saved_at")
    return {
        "class_names": names if isinstance(names, list) and all(
            isinstance(name, str) for name in names) else None,
        "step": step if isinstance(step, int) and not isinstance(step, bool) else None,
        "saved_at": float(saved_at) if is_number(saved_at) else None,
    }
