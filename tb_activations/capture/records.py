"""What any framework's capture hands to the render stage (rendering.steps.render_capture):
one LayerRecord per drawn output, in call order (a namedtuple: the render stage caches by it),
and the error for a selected output no grid can show. Framework-free, so every capture shares
them."""

import collections

import numpy as np

from tb_activations.format import metadata

LayerRecord = collections.namedtuple("LayerRecord", "path layer_class order layout")


def reduce_finite_if_needed(reduce_all):
    """reduce_all(finite_only=False), the plain statistics; again with finite_only=True, the
    NaN/Inf-safe ones, only if some layer's came out non-finite (its layer-level mean, over
    every unit, is then non-finite)."""
    reduced = reduce_all(finite_only=False)
    mean = metadata.STAT_FIELDS.index("mean")
    if all(np.isfinite(output["layer"][..., mean]).all() for output in reduced.values()):
        return reduced
    return reduce_all(finite_only=True)


def check_attention_flag(attention):
    """`attention=` of every capture: whether attention modules' probabilities are drawn."""
    if not isinstance(attention, bool):
        raise TypeError("attention must be True (draw every attention module's heads) or "
                        "False, got %r" % (attention,))
    return attention


class UndrawableLayerError(ValueError):
    """A selected layer output that no grid can show (named in the message)."""
