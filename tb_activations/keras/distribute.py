"""Who writes in a multi-worker job: the chief only, decided without any collective op."""

import json
import os
import sys


def _task_from_strategy():
    tf = sys.modules.get("tensorflow")  # no strategy without TensorFlow imported
    if tf is None or not tf.distribute.has_strategy():
        return None
    resolver = getattr(tf.distribute.get_strategy(), "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        # A strategy with no cluster (Mirrored, OneDevice...) is a single-worker job of its
        # own, even where TF_CONFIG describes a cluster (MirroredStrategy ignores it).
        return "chief", 0, {}
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def _task_from_environment():
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError:
        return None
    task = config.get("task") or {}
    if not isinstance(task, dict) or not task.get("type"):
        return None
    return task["type"], int(task.get("index", 0)), config.get("cluster") or {}


def is_chief():
    """True unless this process is a non-chief worker of a multi-worker cluster.

    Follows TensorFlow's rule: the "chief" task if the cluster has one, else worker 0.
    The task comes from the current strategy's cluster resolver (a strategy without one is a
    single-worker job: chief), else, outside any strategy scope, from TF_CONFIG.
    """
    task = _task_from_strategy() or _task_from_environment()
    if task is None:
        return True
    task_type, task_id, cluster = task
    if task_type == "chief":
        return True
    if task_type == "worker":
        return "chief" not in cluster and task_id == 0
    return task_type not in ("ps", "evaluator")
