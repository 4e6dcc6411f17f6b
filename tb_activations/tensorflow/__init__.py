"""Keras 3 on its TensorFlow backend: the reduction in TensorFlow ops (`reduction`), and the
tracing of keras/capture.py's capture with tf.function (`keras_probe`)."""
