"""Keras (TensorFlow, JAX or torch backend): the capture, the callback, `log_activations`,
the saved model the live probe answers with. The backend's own ops are in tensorflow/,
jax/ and torch/ (keras_probe, reduction).
"""
