"""Attention rollout (Abnar & Zuidema 2020): what the whole model looked at, accumulated on
the device during the probe pass from each attention layer's full-resolution probabilities.

R <- normalise_rows(0.5 * mean_heads(A) + 0.5 * I) @ R over the attention layers in forward
order (the identity stands for the residual connection). Defined only for a ViT-style stack:
every attention layer self-attention over the same T tokens, a class (prefix) token first
and a patch grid after it, one map per probe sample. Any other attention in the pass
(windows folded into the batch axis, cross-attention, a token count that changes, a layer
computed twice, keys on no grid) leaves no rollout, quietly: it is not an error, the model
is simply not one rollout describes.
"""

import torch


def rollout_step(product, probabilities):
    """normalise_rows(0.5 * mean over heads + 0.5 * I) @ product, in float32, of (B, heads,
    T, T) probabilities; `product` (B, T, T) or None for the first layer (the identity)."""
    mixed = 0.5 * probabilities.to(torch.float32).mean(dim=1)
    mixed.diagonal(dim1=-2, dim2=-1).add_(0.5)
    mixed = mixed / mixed.sum(dim=-1, keepdim=True)
    return mixed if product is None else torch.matmul(mixed, product)


class Rollout:
    """The running product R (B, T, T) on the model's device over the attention layers of
    one pass of a `batch`-sample probe, and the (rows, columns, prefix) grid of its tokens."""

    def __init__(self, batch):
        self.batch = batch
        self.product = None
        self.grid = None
        self.layers = 0
        self.broken = False

    def spoil(self):
        """This pass has attention a rollout cannot follow: none is kept."""
        self.broken = True
        self.product = None

    def add(self, probabilities, grid):
        """One attention layer's (B, heads, Tq, Tk) full-resolution probabilities, `grid`
        the (rows, columns, prefix) its keys lie on (None: none)."""
        if self.broken:
            return
        samples, _, queries, keys = probabilities.shape
        if samples != self.batch or queries != keys:
            return self.spoil()
        if self.product is None:
            if grid is None or grid[2] < 1 or grid[2] + grid[0] * grid[1] != keys:
                return self.spoil()
            self.grid = tuple(grid)
        elif self.product.shape[-1] != keys:
            return self.spoil()
        with torch.no_grad():
            self.product = rollout_step(self.product, probabilities)
        self.layers += 1

    def class_token_map(self):
        """(B, rows, columns) float32: the class token's row of R over the patch tokens,
        folded onto the grid; None when there is no rollout."""
        if self.broken or self.product is None:
            return None
        rows, columns, prefix = self.grid
        return self.product[:, 0, prefix:].reshape(-1, rows, columns)
