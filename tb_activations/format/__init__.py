"""The stored format, shared by every writer and reader: tag names, versioned plugin
content, pixel codes (metadata) and how a layer's output is laid out as a grid (layout).
Imports no framework.
"""
