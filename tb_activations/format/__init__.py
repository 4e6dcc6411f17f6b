"""The stored format, shared by every writer and reader: tag names, versioned plugin
content, pixel codes (metadata), how a layer's output is laid out as a grid (layout), the
run's model.keras and its record (model_file). Imports no framework.
"""
