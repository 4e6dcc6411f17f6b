"""Keras 3 on its JAX backend: the reduction in jax.numpy (`reduction`); the capture is
extraction's, compiled with jax.jit (`probe`)."""
