"""Which rank-3 outputs (B, T, D) of a vision transformer are tokens on a patch grid: the
integer rules every framework's capture shares (they take ints and tuples only).

A ViT block's output is k extra tokens (class, distillation, register tokens) then the
rows x columns patch grid in row-major order: drawn as D feature maps over the grid (the
`channels` layout) plus the k extra tokens beside it, not as one T x D strip. Which grids a
model has (declared by its attributes, or observed in the probe pass from its patch
embeddings) is the framework's part (torch/token_grids.py, keras/token_grids.py);
`grid_choice` says which of them an output of T tokens of D features is on, with the
user's `token_grid=` (resolve_token_grid_option validates it) taking precedence.
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


def as_pair(value):
    """(a, b) of positive ints from an int or a pair of ints, None for anything else."""
    if is_count(value):
        value = (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(map(is_count, value)):
        pair = (int(value[0]), int(value[1]))
        return pair if min(pair) >= 1 else None
    return None


def is_count(value):
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
    if not all(map(is_count, value)):
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


def grid_choice(path, tokens, features, option, declared, observed, downsampled=True):
    """(TokenGrid, prefix count) of a batch-first (B, tokens, features) output at `path`,
    or None when it stays as it is: `option` is token_grid= (raw or resolved): False never
    splits, (rows, columns) splits on that grid alone (square outputs too), a dict says it
    per path (no entry, or None: automatic); automatic chooses among
    candidate_grids(declared, observed, downsampled)."""
    option = option_for_path(path, resolve_token_grid_option(option))
    if option is False:
        return None
    if option is not None:
        return choose_grid(tokens, features,
                           [TokenGrid(option[0], option[1], None, "token_grid")], guard=False)
    return choose_grid(tokens, features, candidate_grids(declared, observed, downsampled))
