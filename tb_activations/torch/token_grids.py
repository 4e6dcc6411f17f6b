"""Which rank-3 outputs (B, T, D) of a vision transformer are tokens on a patch grid.

A ViT block's output is k extra tokens (class, distillation, register tokens) then the
rows x columns patch grid in row-major order: drawn as D feature maps over the grid (the
`channels` layout) plus the k extra tokens beside it, not as one T x D strip.

Three sources say which grids a model has:
1. declared_token_grids(model): what the model's own attributes say (timm patch embeddings
   and their owner's num_prefix_tokens, torchvision's VisionTransformer, Hugging Face
   configs with image_size and patch_size, LeViT's attention resolutions).
2. observed_grid(module, output): what the probe pass shows, one module output at a time
   (a Conv2d whose stride equals its kernel and that pads nothing, nn.Unfold, a timm
   PatchEmbed, a Hugging Face *PatchEmbeddings): right for any input size.
3. split_tokens(tensor, grids): which of those grids a (B, T, D) output is on.

grid_for combines all with the user's `token_grid=`.
The integer rules (which grid fits T, option validation, conv arithmetic) take ints and
tuples only and live in tb_activations.capture.token_grids, which the Keras capture shares.
The torch parts are thin.
"""

from tb_activations.capture.token_grids import (
    MIN_GRID_CELLS, TokenGrid, TokenSplit, as_pair, choose_grid, conv_output_size,
    grid_choice, grid_of_image, is_count)


# --- torch: what a model declares ---------------------------------------------------------

def _owner_chain(path, modules):
    """The modules enclosing `path`, the nearest first, the model ("") last."""
    parts = path.split("/")
    return [modules[p] for p in ("/".join(parts[:i]) for i in range(len(parts) - 1, -1, -1))
            if p in modules]


def _attribute(module, name):
    """A plain attribute (not a submodule, parameter or buffer lookup that may raise)."""
    try:
        return getattr(module, name, None)
    except Exception:  # a property that raises on an unbuilt module
        return None


def _timm_style(path, module, modules):
    """A timm patch embedding (grid_size and patch_size attributes, or a *PatchEmbed* with
    img_size and patch_size): its grid, the prefix
    count of the nearest enclosing module having num_prefix_tokens, size-less when the grid
    follows the input (the owner's dynamic_img_size, or strict_img_size off)."""
    grid = as_pair(_attribute(module, "grid_size"))
    if grid is None and "PatchEmbed" in type(module).__name__:  # CrossViT's has none
        grid = grid_of_image(_attribute(module, "img_size"), _attribute(module, "patch_size"))
    if grid is None or as_pair(_attribute(module, "patch_size")) is None:
        return None
    prefix, dynamic = None, _attribute(module, "strict_img_size") is False
    for owner in _owner_chain(path, modules):
        count = _attribute(owner, "num_prefix_tokens")
        if is_count(count) and count >= 0:
            prefix = int(count)
            dynamic = dynamic or _attribute(owner, "dynamic_img_size") is True
            break
    if dynamic:
        return TokenGrid(None, None, prefix, path)
    return TokenGrid(grid[0], grid[1], prefix, path)


def _torchvision_style(path, module):
    """torchvision's VisionTransformer: image_size // patch_size squared, a class token."""
    if not type(module).__module__.startswith("torchvision") or \
            type(module).__name__ != "VisionTransformer":
        return None
    grid = grid_of_image(_attribute(module, "image_size"), _attribute(module, "patch_size"))
    return None if grid is None else TokenGrid(grid[0], grid[1], 1, path)


def _config_style(path, module):
    """A Hugging Face module whose `config` has image_size and patch_size: that grid; the
    prefix count only where the config says it (num_register_tokens: a class token and
    the registers)."""
    config = _attribute(module, "config")
    if config is None or isinstance(config, (dict, str)):
        return None
    grid = grid_of_image(_attribute(config, "image_size"), _attribute(config, "patch_size"))
    if grid is None:
        return None
    registers = _attribute(config, "num_register_tokens")
    prefix = 1 + int(registers) if is_count(registers) and registers > 0 else None
    return TokenGrid(grid[0], grid[1], prefix, path)


def _resolution_style(path, module):
    """An attention module with a (rows, columns) `resolution` (LeViT's Attention and
    AttentionDownsample, which attend over the flattened rows x columns tokens of their
    stage; no class token): that grid."""
    if "Attention" not in type(module).__name__:
        return None
    resolution = _attribute(module, "resolution")
    grid = as_pair(resolution) if isinstance(resolution, (tuple, list)) else None
    return None if grid is None else TokenGrid(grid[0], grid[1], 0, path)


def declared_token_grids(model):
    """[TokenGrid] the model's modules declare (the model included, path ""), parents first,
    each size once (a declared prefix count kept over an unknown one)."""
    modules = {name.replace(".", "/"): module for name, module in model.named_modules()}
    grids = []
    for path, module in modules.items():
        for rule in (lambda: _timm_style(path, module, modules),
                     lambda: _torchvision_style(path, module),
                     lambda: _config_style(path, module),
                     lambda: _resolution_style(path, module)):
            grid = rule()
            if grid is not None:
                grids.append(grid)
    kept = []
    for grid in grids:
        twin = next((i for i, other in enumerate(kept) if grid.sized and other.sized and
                     (other.rows, other.columns) == (grid.rows, grid.columns)), None)
        if twin is None:
            kept.append(grid)
        elif kept[twin].prefix_tokens is None and grid.prefix_tokens is not None:
            kept[twin] = grid
    return kept


# --- torch: what the pass shows -----------------------------------------------------------

def _shape(value):
    shape = getattr(value, "shape", None)
    return tuple(int(n) for n in shape) if shape is not None else None


def _first_tensor_shape(value):
    if isinstance(value, (tuple, list)):
        for item in value:
            shape = _first_tensor_shape(item)
            if shape is not None:
                return shape
        return None
    return _shape(value)


def _is_patch_conv(module):
    """A Conv2d cutting its input into patches: stride equal to its kernel (larger than
    1 x 1: a pointwise conv embeds no patches), no padding, no dilation."""
    import torch

    if not isinstance(module, torch.nn.Conv2d):
        return False
    padding = module.padding
    unpadded = padding == "valid" or (not isinstance(padding, str) and not any(padding))
    return (tuple(module.stride) == tuple(module.kernel_size)
            and max(module.kernel_size) > 1 and unpadded
            and all(d == 1 for d in module.dilation))


def _flattened_grid(module, input_shape, tokens):
    """(rows, columns) of a patch embedding that flattens its grid: from its input's height
    and width through its patch projection (or its patch_size), else its grid_size; None
    unless rows * columns == tokens."""
    grid = None
    if input_shape is not None and len(input_shape) == 4:
        projection = next((m for m in module.modules() if _is_patch_conv(m)), None)
        if projection is not None:
            grid = conv_output_size(input_shape[2:], projection.kernel_size, projection.stride)
            if _attribute(module, "dynamic_img_pad"):
                grid = tuple(-(-n // k) for n, k in zip(input_shape[2:],
                                                        projection.kernel_size))
        else:
            patch = as_pair(_attribute(module, "patch_size"))
            grid = patch and (input_shape[2] // patch[0], input_shape[3] // patch[1])
    if grid is None:
        grid = as_pair(_attribute(module, "grid_size"))
    return grid if grid is not None and grid[0] * grid[1] == tokens else None


def observed_grid(module, output, inputs=None, path=None):
    """The TokenGrid a module's output shows when the module is a patch embedding, else
    None. `inputs`: the module's positional arguments (nn.Unfold and embeddings that
    flatten need their input's size); `path`: its module path, the grid's source.

    - Conv2d with stride == kernel (> 1 x 1), no padding: output (B, D, h, w).
    - nn.Unfold: its sliding positions over the input's height and width.
    - a patch-embedding module (a class named *PatchEmbed*: timm's PatchEmbed and its
      kin, PVT-v2's OverlapPatchEmbed, Hugging Face's *PatchEmbeddings; or any module with
      grid_size and patch_size attributes): an output (embeddings, (h, w)) (Swin, Twins,
      MViTv2, XCiT), rank 4 NCHW or NHWC (its output_fmt, else where its projection's
      channels are), or flattened (B, h*w, D) (size from its input through its patch
      projection, else its grid_size).
    """
    import torch

    source = path if path is not None else type(module).__name__
    shape = _first_tensor_shape(output)
    input_shape = _first_tensor_shape(inputs) if inputs is not None else None
    grid = None
    if _is_patch_conv(module):
        if shape is not None and len(shape) == 4:
            grid = shape[2:]
    elif isinstance(module, torch.nn.Unfold):
        if input_shape is not None and len(input_shape) == 4:
            grid = conv_output_size(input_shape[2:], module.kernel_size, module.stride,
                                    module.padding, module.dilation)
    elif "PatchEmbed" in type(module).__name__ or (
            as_pair(_attribute(module, "grid_size")) is not None
            and as_pair(_attribute(module, "patch_size")) is not None):
        grid = _embedding_grid(module, output, shape, input_shape)
    pair = as_pair(tuple(grid)) if grid is not None else None
    if pair is None or pair[0] * pair[1] < MIN_GRID_CELLS:
        return None
    return TokenGrid(pair[0], pair[1], None, source)


def _embedding_grid(module, output, shape, input_shape):
    """(rows, columns) of a patch-embedding module's output, None if it does not show."""
    if isinstance(output, (tuple, list)) and len(output) >= 2:
        dimensions = as_pair(output[1]) if not hasattr(output[1], "shape") else None
        if dimensions is not None:
            return dimensions
    if shape is None:
        return None
    fmt = _attribute(module, "output_fmt")
    fmt = str(getattr(fmt, "value", fmt) or "")
    if len(shape) == 4:
        if not fmt:
            convolutions = [m for m in module.modules() if hasattr(m, "out_channels")]
            channels = convolutions[-1].out_channels if convolutions else None
            fmt = "NHWC" if shape[3] == channels != shape[1] else "NCHW"
        return shape[1:3] if fmt == "NHWC" else shape[2:]
    if len(shape) == 3:
        tokens = shape[2] if fmt == "NCL" else shape[1]
        return _flattened_grid(module, input_shape, tokens)
    return None


# --- torch: splitting an output -----------------------------------------------------------

def split_tokens(tensor, grids, guard=True):
    """TokenSplit of a batch-first (B, T, D) tensor on the first of `grids` it fits
    (choose_grid's order), None for any other rank or when none fits."""
    shape = _shape(tensor)
    if shape is None or len(shape) != 3:
        return None
    _, tokens, features = shape
    chosen = choose_grid(tokens, features, grids, guard)
    if chosen is None:
        return None
    return _split(tensor, *chosen)


def _split(tensor, grid, prefix):
    batch, _, features = _shape(tensor)
    grid_tokens = tensor[:, prefix:, :].reshape(batch, grid.rows, grid.columns, features)
    extra = tensor[:, :prefix, :] if prefix else None
    return TokenSplit(grid_tokens, extra, grid, prefix)


def grid_for(path, tensor, option, declared, observed, downsampled=True):
    """TokenSplit of the batch-first output at `path`, or None when it stays as it is: the
    grid grid_choice picks (`option` is token_grid=, raw or resolved)."""
    shape = _shape(tensor)
    if shape is None or len(shape) != 3:
        return None
    chosen = grid_choice(path, shape[1], shape[2], option, declared, observed, downsampled)
    return None if chosen is None else _split(tensor, *chosen)
