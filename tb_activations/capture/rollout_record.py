"""The attention rollout's record, alike for every framework: its name and its grid layout.
The rollout itself is computed in the framework's ops during the probe pass
(torch/rollout.py, keras/attention.py)."""

import dataclasses

from tb_activations.format import layout as layout_lib

SUFFIX = ":attention_rollout"
LAYER_CLASS = "AttentionRollout"  # what the layer list says the record's "layer" is


def rollout_name(model_name):
    """`<model>:attention_rollout`: no module path holds a colon, so no output shares it."""
    return model_name + SUFFIX


def rollout_plan(grid, options):
    """The layout of the class token's rollout over the (rows, columns, prefix) `grid`: one
    tile per probe sample, drawn over its picture as an attention map is."""
    rows, columns, prefix = grid
    return dataclasses.replace(layout_lib.plan_layout((rows, columns, 1), options),
                               source="attention_rollout", token_grid=(rows, columns, prefix),
                               attention_query="class_token")
