"""Format version 1, as tb-activations wrote it before the statistics blob was bounded by the
caps: kept here, made by functions, so tests can check that v1 logs already on disk are still
read, served and exported. No TensorFlow at import."""

import io
import json

import numpy as np
from tensorboard.compat.proto import summary_pb2

from tb_activations.format import metadata


def statistics_blob(stats, ranges, channels):
    """A version 1 statistics blob: stats (samples, channels_total, 7) of every channel,
    ranges (samples, tiles, 2), channels (channels_shown,) drawn per tile."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, stats=np.asarray(stats, np.float32),
                        ranges=np.asarray(ranges, np.float32),
                        channels=np.asarray(channels, np.int32))
    return buffer.getvalue()


def summary_metadata(content):
    """SummaryMetadata of a version 1 tag: `content` without version 2's fields."""
    payload = {key: value for key, value in content.items() if key != "channels_kept"}
    payload["version"] = 1
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME,
            content=json.dumps(payload, sort_keys=True).encode("utf-8")),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE)


def write_run(logdir, model, probe, steps, **options):
    """Writes `model`'s activations for `probe` at each of `steps` as version 1 did: every
    layer tag with per-channel statistics of every channel, and a version 1 overview."""
    import tensorflow as tf

    from tb_activations.keras import capture
    from tb_activations.rendering import overview
    from tb_activations.tensorflow import reduction
    from tb_activations.rendering import grid_images
    from tb_activations.rendering import steps as steps_lib
    from tb_activations.keras import log

    settings = steps_lib.render_options(**options)
    arrays = capture.prepare_probe(model, probe)
    outputs = capture.get_activations(model, arrays)
    with tf.summary.create_file_writer(str(logdir)).as_default():
        for step in steps:
            captured = log.capture(model, arrays, None, settings)
            summaries = {}
            for record in captured.records:
                reduced = captured.reduce()[record.path]
                plan = record.layout
                full = reduction.channel_statistics(
                    reduction.canonical(tf.constant(outputs[record.path]), plan), True)
                drawn = (reduced["channels"] if plan.layout in ("channels", "volume")
                         else np.arange(plan.channels_total))
                blob = statistics_blob(full.numpy(), reduced["ranges"], drawn)
                content = steps_lib.layer_content(record, len(reduced["tiles"]), settings)
                pictures = grid_images.render_layer(reduced, plan, statistics=False)
                tf.summary.write(metadata.layer_tag(record.path),
                                 tf.constant(pictures + [blob], dtype=tf.string), step=step,
                                 metadata=summary_metadata(content))
                summaries[record.path] = overview.layer_summary(
                    grid_images.decode_statistics(blob, dict(content, version=1), plan))
            tf.summary.write(metadata.OVERVIEW_TAG,
                             tf.constant([overview.encode_overview(summaries)], dtype=tf.string),
                             step=step, metadata=summary_metadata({"kind": "overview"}))
