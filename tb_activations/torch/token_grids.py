"""Which rank-3 outputs (B, T, D) of a vision transformer are tokens on a patch grid.

A ViT block's output is k extra tokens (class, distillation, register tokens) then the
rows x columns patch grid in row-major order: drawn as D feature maps over the grid (the
`channels` layout) plus the k extra tokens beside it, not as one T x D strip.

Three sources say which grids a model has:
1. declared_token_grids(model): what the model's own attributes say (timm patch embeddings
   and their owner's num_prefix_tokens, torchvision's VisionTransformer, Hugging Face
   configs with image_size and patch_size).
2. observed_grid(module, output): what the probe pass shows, one module output at a time
   (a Conv2d whose stride equals its kernel and that pads nothing, nn.Unfold, a timm
   PatchEmbed, a Hugging Face *PatchEmbeddings): right for any input size.
3. split_tokens(tensor, grids): which of those grids a (B, T, D) output is on.

resolve_token_grid_option validates the user's `token_grid=` and grid_for combines all.
The integer rules (which grid fits T, option validation, conv arithmetic) take ints and
tuples only, so another framework's capture can reuse them; the torch parts are thin.
"""

import dataclasses
import numbers

from tb_activations.capture import path_selection

# Extra tokens (class, distillation, registers...) ahead of the grid that a grid may have
# when nothing declares how many.
MAX_PREFIX_TOKENS = 8
# Grids with fewer cells are never candidates: a 1 x 1 grid would claim every short sequence.
MIN_GRID_CELLS = 4

OPTION_EXPECTED = "token_grid must be None, False, (rows, columns) or {path: (rows, columns)}"


@dataclasses.dataclass(frozen=True)
class TokenGrid:
    """A rows x columns patch grid; `prefix_tokens` extra tokens precede it (None: not
    known, any count up to MAX_PREFIX_TOKENS fits). `source` says where it comes from: the
    module path of the patch embedding (or of the module whose config or attributes
    declare it), or a description. rows and columns are None for a declaration whose grid
    depends on the input size (timm's dynamic_img_size): it only lends its prefix count to
    the grids observed under `source`."""

    rows: int | None
    columns: int | None
    prefix_tokens: int | None = None
    source: str = ""

    @property
    def sized(self):
        return self.rows is not None and self.columns is not None

    @property
    def cells(self):
        return self.rows * self.columns


@dataclasses.dataclass(frozen=True)
class TokenSplit:
    """One (B, T, D) output split: `grid_tokens` (B, rows, columns, D), channels last, a
    view of the output where it can be; `extra_tokens` (B, prefix, D), None when there are
    none; the `grid` it is on and the `prefix` count."""

    grid_tokens: object
    extra_tokens: object
    grid: TokenGrid
    prefix: int


# --- pure integer rules ------------------------------------------------------------------

def as_pair(value):
    """(a, b) of positive ints from an int or a pair of ints, None for anything else."""
    if _is_int(value):
        value = (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_int, value)):
        pair = (int(value[0]), int(value[1]))
        return pair if min(pair) >= 1 else None
    return None


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def grid_of_image(image_size, patch_size):
    """(rows, columns) of patches an image of `image_size` cut into `patch_size` patches
    has (each an int or a pair), None when either is not a positive size or the grid would
    be empty."""
    image, patch = as_pair(image_size), as_pair(patch_size)
    if image is None or patch is None:
        return None
    grid = (image[0] // patch[0], image[1] // patch[1])
    return grid if min(grid) >= 1 else None


def conv_output_size(size, kernel, stride, padding=0, dilation=1):
    """Positions a convolution (or unfold) with these per-axis parameters (ints or tuples)
    produces along each axis of `size` (a tuple)."""
    axes = len(size)

    def per_axis(value):
        return tuple(value) if isinstance(value, (tuple, list)) else (value,) * axes

    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in zip(
        size, per_axis(kernel), per_axis(stride), per_axis(padding), per_axis(dilation)))


def fitting_prefix(tokens, grid, min_cells=MIN_GRID_CELLS):
    """The extra-token count k = tokens - grid cells when `tokens` fit `grid` (of at least
    `min_cells` cells): k is its prefix_tokens or 0 (the patches alone, as the patch
    embedding gives them) when it declares a count, else 0 <= k <= MAX_PREFIX_TOKENS (and
    fewer extra tokens than grid cells); None when they do not fit."""
    if not grid.sized or grid.cells < min_cells:
        return None
    extra = tokens - grid.cells
    if grid.prefix_tokens is not None:
        return extra if extra in (0, grid.prefix_tokens) else None
    return extra if 0 <= extra <= MAX_PREFIX_TOKENS and extra < grid.cells else None


def choose_grid(tokens, features, grids, guard=True):
    """(grid, prefix) of the first of `grids` a (tokens, features) sample is on: a grid
    whose declared prefix count is k first, then the fewest extra tokens, then list order;
    None
    when none fits. `guard` (automatic grids) refuses square samples (features == tokens:
    an attention map over the tokens, not features of them) and grids under MIN_GRID_CELLS
    cells."""
    if guard and features == tokens:
        return None
    fits = []
    for order, grid in enumerate(grids):
        extra = fitting_prefix(tokens, grid, MIN_GRID_CELLS if guard else 1)
        if extra is not None:
            fits.append((grid.prefix_tokens in (None, 0) or extra != grid.prefix_tokens,
                         extra, order, grid))
    if not fits:
        return None
    _, extra, _, grid = min(fits, key=lambda fit: fit[:3])
    return grid, extra


def _is_under(path, ancestor):
    """Whether module `path` is `ancestor` or inside it ("" is the model itself)."""
    return ancestor == "" or path == ancestor or path.startswith(ancestor + "/")


def downsampled_grids(grid, smallest=3):
    """The grids a hierarchical model (Swin, PVT...) shrinks `grid` to: each side halved,
    rounded up, while both sides stay at least `smallest`; no extra tokens."""
    rows, columns = grid.rows, grid.columns
    grids, step = [], 1
    while True:
        rows, columns = -(-rows // 2), -(-columns // 2)
        if min(rows, columns) < smallest or (rows, columns) == (grid.rows, grid.columns):
            return grids
        grids.append(TokenGrid(rows, columns, 0, "%s/%d" % (grid.source, 2 ** step)))
        step += 1


def candidate_grids(declared, observed, downsampled=True):
    """The grids an output may be on, the likelier first: observed ones (each taking the
    prefix count of a declaration on its size, or, for the dynamic ones, of the declaration
    of an enclosing module), then declared ones not observed, then (`downsampled`) the
    halvings of those that have no extra tokens."""
    declared, observed = list(declared), list(observed)
    chosen, sizes = [], set()

    def add(grid):
        if grid.sized and (grid.rows, grid.columns) not in sizes:
            sizes.add((grid.rows, grid.columns))
            chosen.append(grid)

    for grid in observed:
        if grid.prefix_tokens is None:
            lenders = [d for d in declared if d.prefix_tokens is not None and (
                (d.rows, d.columns) == (grid.rows, grid.columns)
                or (not d.sized and _is_under(grid.source, d.source)))]
            if lenders:
                grid = dataclasses.replace(grid, prefix_tokens=lenders[0].prefix_tokens)
        add(grid)
    for grid in declared:
        add(grid)
    if downsampled:
        for grid in list(chosen):
            if grid.prefix_tokens in (0, None):
                for smaller in downsampled_grids(grid):
                    add(smaller)
    return chosen


def resolve_token_grid_option(value):
    """`token_grid=` checked and normalized: None (automatic), False (never), (rows,
    columns) (every rank-3 output with rows*columns + k tokens, 0 <= k <= MAX_PREFIX_TOKENS,
    is on that grid) or {layer path or glob: (rows, columns), False or None (automatic)}.
    Raises TypeError or ValueError naming the value and what is expected."""
    if value is None or value is False:
        return value
    if isinstance(value, dict):
        resolved = {}
        for key, entry in value.items():
            if not isinstance(key, str) or not key:
                raise TypeError("%s; its keys must be layer paths or globs (non-empty "
                                "strings), got key %r" % (OPTION_EXPECTED, key))
            if entry is None or entry is False:
                resolved[key] = entry
            else:
                resolved[key] = _grid_pair(entry, "token_grid[%r]" % key,
                                           "(rows, columns), False or None")
        return resolved
    return _grid_pair(value, "token_grid", None)


def _grid_pair(value, what, expected):
    """(rows, columns) of positive ints from a pair; raises naming `what` otherwise."""
    message = ("%s must be %s, got %r" % (what, expected, value) if expected
               else "%s, got %r" % (OPTION_EXPECTED, value))
    if not isinstance(value, (tuple, list)):
        raise TypeError(message)
    if len(value) != 2:
        raise ValueError("%s (a pair has 2 entries, this has %d)" % (message, len(value)))
    if not all(map(_is_int, value)):
        raise TypeError("%s (rows and columns must be ints)" % message)
    if min(value) < 1:
        raise ValueError("%s (rows and columns must be positive)" % message)
    return int(value[0]), int(value[1])


def option_for_path(path, option):
    """What a resolved `token_grid=` says for the output at `path` (an output past a
    module's first is `path:i`): None (automatic), False or (rows, columns). Dict keys: the
    exact path first, then the first key in order that path_selection would match (a glob,
    or a module's own name); an output `path:i` falls back to its module's path."""
    if not isinstance(option, dict):
        return option
    for candidate in dict.fromkeys((path, path.partition(":")[0])):
        if candidate in option:
            return option[candidate]
        for key, entry in option.items():
            if path_selection.matches(key, candidate, None):
                return entry
    return None


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
        if _is_int(count) and count >= 0:
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
    prefix = 1 + int(registers) if _is_int(registers) and registers > 0 else None
    return TokenGrid(grid[0], grid[1], prefix, path)


def declared_token_grids(model):
    """[TokenGrid] the model's modules declare (the model included, path ""), parents first,
    each size once (a declared prefix count kept over an unknown one)."""
    modules = {name.replace(".", "/"): module for name, module in model.named_modules()}
    grids = []
    for path, module in modules.items():
        for rule in (lambda: _timm_style(path, module, modules),
                     lambda: _torchvision_style(path, module),
                     lambda: _config_style(path, module)):
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
    batch, tokens, features = shape
    chosen = choose_grid(tokens, features, grids, guard)
    if chosen is None:
        return None
    grid, prefix = chosen
    grid_tokens = tensor[:, prefix:, :].reshape(batch, grid.rows, grid.columns, features)
    extra = tensor[:, :prefix, :] if prefix else None
    return TokenSplit(grid_tokens, extra, grid, prefix)


def grid_for(path, tensor, option, declared, observed, downsampled=True):
    """TokenSplit of the batch-first output at `path`, or None when it stays as it is:
    `option` is token_grid= (raw or resolved): False never splits, (rows, columns) splits
    on that grid alone (square outputs too), a dict says it per path (no entry, or None:
    automatic); automatic splits on candidate_grids(declared, observed, downsampled)."""
    option = option_for_path(path, resolve_token_grid_option(option))
    if option is False:
        return None
    if option is not None:
        return split_tokens(tensor, [TokenGrid(option[0], option[1], None, "token_grid")],
                            guard=False)
    return split_tokens(tensor, candidate_grids(declared, observed, downsampled))
