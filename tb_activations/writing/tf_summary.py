"""The default tf.summary writer (Keras code under `with writer.as_default()`): TensorFlow is
imported on first use only, so nothing else of writing/ needs it."""


def default_writer():
    """The tf.summary writer set as default on this thread, None if there is none. The one
    private TensorFlow API used: `summary_ops_v2._summary_state`, checked against 2.21."""
    from tensorflow.python.ops import summary_ops_v2

    return getattr(summary_ops_v2._summary_state, "writer", None)


def write_summary(serialized_summary, step):
    """Writes a serialized Summary proto to the default tf.summary writer as one event, in
    one op (tf.summary.write's checks and conversions, repeated per tag, took as long as the
    writes themselves); True if it was recorded."""
    import tensorflow as tf

    if default_writer() is None or not bool(tf.summary.should_record_summaries()):
        return False
    with tf.device("cpu:0"):
        return bool(tf.summary.experimental.write_raw_pb(
            tf.constant(serialized_summary, tf.string), step=step))
