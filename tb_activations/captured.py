"""What any framework's capture hands to the render stage (step_rendering.render_capture):
one LayerRecord per drawn output, in call order (a namedtuple: the render stage caches by it),
and the error for a selected output no grid can show. Framework-free, so every capture shares
them."""

import collections

LayerRecord = collections.namedtuple("LayerRecord", "path layer_class order layout")


class UndrawableLayerError(ValueError):
    """A selected layer output that no grid can show (named in the message)."""
