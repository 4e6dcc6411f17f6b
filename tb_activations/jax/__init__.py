"""Keras 3 on its JAX backend: the reduction in jax.numpy (`reduction`), and the tracing of
keras/capture.py's capture with jax.jit (`keras_probe`)."""
