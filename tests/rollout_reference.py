"""Attention rollout (Abnar & Zuidema 2020) by hand, in float64 numpy, for tests to check the
captured one against: a plain loop over the layers' (B, heads, T, T) probabilities."""

import numpy as np


def reference_rollout(layers, grid):
    """(B, rows, columns): the class token's row of prod_l normalise_rows(0.5 * mean_heads(A_l)
    + 0.5 * I) (last layer leftmost) over the patch tokens of `grid` (rows, columns, prefix),
    from `layers` [(B, heads, T, T)] in forward order."""
    rows, columns, prefix = grid
    product = None
    for probabilities in layers:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        tokens = probabilities.shape[-1]
        mixed = 0.5 * probabilities.mean(axis=1) + 0.5 * np.eye(tokens)
        mixed /= mixed.sum(axis=-1, keepdims=True)
        product = mixed if product is None else np.einsum("bij,bjk->bik", mixed, product)
    return product[:, 0, prefix:].reshape(-1, rows, columns)
