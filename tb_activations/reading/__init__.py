"""What was written, read back through TensorBoard's own event loading: one validated reader
for `read_activations`, the plugin and export. Imports no framework.
"""
