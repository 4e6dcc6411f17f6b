"""The render stage, pure numpy: a captured, reduced step to tiled 8-bit PNGs and statistics,
and the overview's numbers. The live probe renders with it too.
"""
