"""Which patch grids a Keras model's probe pass shows (the integer rules, and the user's
`token_grid=`, are tb_activations.capture.token_grids's, shared with PyTorch).

A Conv2D cutting its input into patches (strides equal to its kernel, larger than 1 x 1,
padding "valid", no dilation: how Keras ViTs, keras-hub's among them, embed patches) shows a
rows x columns grid in its output's static shape, known while the probe function is traced;
the (B, prefix + rows * columns, D) outputs after it are drawn over that grid.
"""

import keras

from tb_activations.capture import token_grids


def is_patch_conv(layer):
    if not isinstance(layer, keras.layers.Conv2D):
        return False
    kernel = tuple(layer.kernel_size)
    return (tuple(layer.strides) == kernel and max(kernel) > 1
            and str(layer.padding).lower() == "valid"
            and all(d == 1 for d in tuple(layer.dilation_rate)))


def observed_grid(path, layer, output):
    """The TokenGrid a layer's first output shows when the layer is a patch Conv2D, else
    None."""
    if not is_patch_conv(layer):
        return None
    tensors = [t for t in keras.tree.flatten(output) if keras.ops.is_tensor(t)]
    shape = tuple(tensors[0].shape) if tensors else ()
    if len(shape) != 4:
        return None
    grid = shape[2:] if layer.data_format == "channels_first" else shape[1:3]
    pair = token_grids.as_pair(tuple(grid)) if None not in grid else None
    if pair is None or pair[0] * pair[1] < token_grids.MIN_GRID_CELLS:
        return None
    return token_grids.TokenGrid(pair[0], pair[1], None, path)


def observed_grids(candidates, outputs):
    """[TokenGrid] the recorded first outputs ({path: output}) of `candidates` show, each
    size once, in call order."""
    layers = dict(candidates)
    grids = []
    for path, output in outputs.items():
        grid = observed_grid(path, layers[path], output)
        if grid is not None and all((g.rows, g.columns) != (grid.rows, grid.columns)
                                    for g in grids):
            grids.append(grid)
    return grids
