"""Outputs whose batch axis holds windows or patches of each sample, drawn per probe sample.

Window attention folds each sample's windows into the batch axis: an output inside it has
B·n entries on axis 0 where the probe has B samples. Where the model's partition is known
from its modules' attributes (windows_of), the n entries of a sample are put back into the
sample's map (B, H, W, C), drawn over that token grid like any token output:

- "window", "shifted_window": timm Swin's blocks (window_size, shift_size,
  input_resolution or feat_size; the map padded up to whole windows) and MaxViT's block attention
  (partition_size, partition_block True): entry w of sample b is window w in row-major
  order, its tokens row-major inside. A shifted block rolls its map by -shift_size before
  partitioning; the put-back map is rolled back and its padding cropped, so it lies in the
  image frame, pixel for pixel over the block's input and the probe picture. torchvision's
  ShiftedWindowAttention (its own input's size) pads first and rolls the padded map.
- "grid": MaxViT's grid attention (partition_block False): entry w holds the tokens
  (i·H/g + w // (W/g), j·W/g + w % (W/g)) of a g x g grid strided over the map.
- "unfold": MobileViT's blocks (patch_size, patch_area): entry p of sample b holds pixel p
  (row-major inside a patch) of every patch, the patches row-major.
- "tokens": one token per entry, (B·N, C) (LeViT's BatchNorm1d over flattened tokens): put
  back to (B, N, C), then on the R x C grid of a `resolution` attribute (LeViT's stages) or
  of a patch grid the token grids know, when one has N cells.

Every merge is one view, permute and reshape on the output's device: no loop over windows.
Entries are taken batch major (sample b's entries are b·n .. b·n + n - 1), as every
reshape-based partition leaves them. An output whose entries fit no known partition is drawn
stacked (stack_windows): the sample's n entries one after the other along its first axis.
"""

import dataclasses
import numbers

import torch

WINDOW_KINDS = ("window", "shifted_window", "grid", "unfold", "tokens")


@dataclasses.dataclass(frozen=True)
class Partition:
    """How a model folds each sample's (H, W) map into batch entries.

    `kind`: one of WINDOW_KINDS; `cell`: the (rows, columns) of tokens one entry holds (a
    window's size, the grid's size, the patch count of an unfold, (1, 1) for tokens);
    `image`: the (H, W) map that was partitioned (padding included); `crop`: the sample's
    map inside it; `shift`: the roll the model applied before partitioning (undone);
    `patch`: the unfold's patch size; `padded_roll`: the model rolled the padded map
    (torchvision) rather than padding the rolled one (timm)."""

    kind: str
    cell: tuple
    image: tuple
    crop: tuple
    shift: tuple = (0, 0)
    patch: tuple = ()
    padded_roll: bool = False

    @property
    def count(self):
        """Entries per sample."""
        if self.kind == "unfold":
            return self.patch[0] * self.patch[1]
        return (self.image[0] // self.cell[0]) * (self.image[1] // self.cell[1])

    @property
    def tokens(self):
        """Tokens per entry."""
        return self.cell[0] * self.cell[1]


# --- pure merges (torch ops, on the tensor's device) --------------------------------------

def merge_windows(windows, batch, window, image):
    """(B·nW, wh, ww, C) or (B·nW, wh·ww, C) windows, row-major over the map, back to the
    (B, H, W, C) map: timm's window_reverse (Swin, MaxViT)."""
    (wh, ww), (height, width) = window, image
    x = windows.reshape(batch, height // wh, width // ww, wh, ww, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, x.shape[-1])


def merge_grid(windows, batch, grid, image):
    """(B·n, gh, gw, C) or (B·n, gh·gw, C) grid partitions (MaxViT's grid_partition: a
    gh x gw grid strided H/gh, W/gw over the map) back to the (B, H, W, C) map."""
    (gh, gw), (height, width) = grid, image
    x = windows.reshape(batch, height // gh, width // gw, gh, gw, -1)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(batch, height, width, x.shape[-1])


def merge_unfold(patches, batch, patch, image):
    """(B·P, N, C) unfolded patches (MobileViT: entry p holds pixel p of each of the N
    patches, P = ph·pw) back to the (B, H, W, C) map."""
    (ph, pw), (height, width) = patch, image
    x = patches.reshape(batch, ph, pw, height // ph, width // pw, -1)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(batch, height, width, x.shape[-1])


def unshift(image_map, crop, shift, padded_roll=False):
    """A (B, Hp, Wp, C) map cropped to `crop` and rolled by `shift` (a shifted-window
    block's roll undone), as the model does after window_reverse: timm crops then rolls,
    torchvision (`padded_roll`) rolls the padded map then crops."""
    if padded_roll and any(shift):
        image_map = torch.roll(image_map, shifts=tuple(shift), dims=(1, 2))
    image_map = image_map[:, :crop[0], :crop[1]]
    if not padded_roll and any(shift):
        image_map = torch.roll(image_map, shifts=tuple(shift), dims=(1, 2))
    return image_map


def stack_windows(entries, batch):
    """(B·n, d0, *rest) -> (B, n·d0, *rest): each sample's n entries one after the other
    along its first axis; (B·n, C) -> (B, n, C), one row per entry."""
    count = entries.shape[0] // batch
    if entries.ndim == 2:
        return entries.reshape(batch, count, entries.shape[1])
    return entries.reshape((batch, count * entries.shape[1]) + tuple(entries.shape[2:]))


def mean_over_windows(entries, batch):
    """(B·n, ...) -> (B, ...): the mean over each sample's n entries."""
    return entries.reshape((batch, entries.shape[0] // batch) + tuple(entries.shape[1:])).mean(1)


def put_back(entries, batch, partition, channels_first=False):
    """The (B, H, W, C) map of batch-major entries under `partition`, None when one entry's
    shape is not its cell's tokens: (cell rows, cell columns, C), (cell tokens, C), (C, cell
    rows, cell columns) when `channels_first`, or (C,) for one token per entry."""
    rest = tuple(entries.shape[1:])
    if entries.shape[0] != batch * partition.count:
        return None
    if channels_first and len(rest) == 3 and rest[1:] == tuple(partition.cell):
        entries, rest = entries.movedim(1, -1), rest[1:] + rest[:1]
    fits = (rest[:2] == tuple(partition.cell) and len(rest) == 3) or (
        len(rest) == 2 and rest[0] == partition.tokens) or (
        len(rest) == 1 and partition.tokens == 1)
    if not fits:
        return None
    if partition.kind == "grid":
        merged = merge_grid(entries, batch, partition.cell, partition.image)
    elif partition.kind == "unfold":
        merged = merge_unfold(entries, batch, partition.patch, partition.image)
    else:
        merged = merge_windows(entries, batch, partition.cell, partition.image)
    return unshift(merged, partition.crop, partition.shift, partition.padded_roll)


# --- which partition: the modules' attributes ---------------------------------------------

def _is_int(value, low=1):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


def _pair(value, low=1):
    """(a, b) of ints >= low from an int or a pair, None otherwise."""
    if _is_int(value, low):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            _is_int(v, low) for v in value):
        return (int(value[0]), int(value[1]))
    return None


def _attribute(module, name):
    try:
        return getattr(module, name, None)
    except Exception:  # noqa: BLE001: a property that raises is no attribute
        return None


def _owners(path):
    """`path` and the paths enclosing it, the nearest first ("" the model, last)."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _swin(module, shape):
    """A Swin block (window_size, shift_size, input_resolution; Swin V2 CR's feat_size): its
    windows over the block's input (B, H, W, C), else over that resolution."""
    window = _pair(_attribute(module, "window_size"))
    shift = _pair(_attribute(module, "shift_size"), low=0)
    resolution = _pair(_attribute(module, "input_resolution")) or _pair(
        _attribute(module, "feat_size"))
    if window is None or shift is None or resolution is None:
        return None
    if shape is not None and len(shape) == 4:
        resolution = (shape[1], shape[2])
    padded = tuple(-(-n // w) * w for n, w in zip(resolution, window))
    return Partition("shifted_window" if any(shift) else "window", window, padded, resolution,
                     shift)


def _torchvision_swin(module, shape):
    """torchvision's ShiftedWindowAttention(V2): windows over its own input (B, H, W, C),
    padded, then rolled (no shift along a side one window covers)."""
    if not type(module).__module__.startswith("torchvision"):
        return None
    window = _pair(_attribute(module, "window_size"))
    shift = _pair(_attribute(module, "shift_size"), low=0)
    if window is None or shift is None or shape is None or len(shape) != 4:
        return None
    size = (shape[1], shape[2])
    padded = tuple(-(-n // w) * w for n, w in zip(size, window))
    shift = tuple(0 if w >= p else s for w, p, s in zip(window, padded, shift))
    return Partition("shifted_window" if any(shift) else "window", window, padded, size,
                     shift, padded_roll=True)


def _maxvit(module, shape, child):
    """MaxViT's block or grid attention (partition_size; partition_block, or the child
    attn_block / attn_grid of a parallel one) over its input, NHWC (a *2d module: NCHW)."""
    size = _pair(_attribute(module, "partition_size"))
    block = _attribute(module, "partition_block")
    if not isinstance(block, bool):
        block = {"attn_block": True, "attn_grid": False}.get(child)
    if size is None or block is None or shape is None or len(shape) != 4:
        return None
    image = tuple(shape[2:]) if type(module).__name__.endswith("2d") else tuple(shape[1:3])
    if image[0] % size[0] or image[1] % size[1]:
        return None
    return Partition("window" if block else "grid", size, image, image)


def _mobilevit(module, shape):
    """A MobileViT block (patch_size, patch_area): its unfold of the map its conv_1x1 gives,
    the size rounded up to whole patches."""
    patch = _pair(_attribute(module, "patch_size"))
    area = _attribute(module, "patch_area")
    if patch is None or not _is_int(area) or area != patch[0] * patch[1]:
        return None
    if shape is None or len(shape) != 4:
        return None
    image = tuple(-(-n // p) * p for n, p in zip(shape[2:], patch))
    return Partition("unfold", (image[0] // patch[0], image[1] // patch[1]), image, image,
                     patch=patch)


def windows_of(path, modules, input_shapes, entries, batch):
    """The Partition of an output at module `path` with `entries` on its batch axis where
    the probe has `batch` samples: from the nearest enclosing module (itself included) that
    partitions (Swin, MaxViT, MobileViT attributes; sizes from its input as the pass saw
    it, `input_shapes` {path: shape}) whose entry count is entries // batch. None when
    none does."""
    if batch < 1 or entries % batch or entries <= batch:
        return None
    per_sample = entries // batch
    for owner in _owners(path):
        module = modules.get(owner)
        if module is None:
            continue
        child = path[len(owner):].lstrip("/").split("/")[0]
        candidates = (
            lambda: _swin(module, input_shapes.get(owner)),
            lambda: _torchvision_swin(module, input_shapes.get(owner)),
            lambda: _maxvit(module, input_shapes.get(owner), child),
            lambda: _mobilevit(module, input_shapes.get(owner + "/conv_1x1",
                                                        input_shapes.get(owner))))
        for candidate in candidates:
            partition = candidate()
            if partition is not None and partition.count == per_sample:
                return partition
    return None


def resolution_grids(path, modules):
    """(rows, columns) of the `resolution` attributes (LeViT's attention modules), and
    their strided ones (ceil(r / stride) of a module with a stride), those enclosing `path`
    first, then every other module's."""
    grids = []
    near = [p for p in _owners(path) if p in modules]
    for owner in near + [p for p in modules if p not in near]:
        resolution = _pair(_attribute(modules[owner], "resolution"))
        if resolution is None:
            continue
        found = [resolution]
        stride = _attribute(modules[owner], "stride")
        if _is_int(stride, 2):
            found.append(tuple(-(-r // stride) for r in resolution))
        grids.extend(grid for grid in found if grid not in grids)
    return grids


def tokens_partition(count, grids):
    """Partition "tokens" of the first (rows, columns) in `grids` with `count` cells (one
    token per batch entry), None when none has."""
    grid = next((tuple(g) for g in grids if g[0] * g[1] == count), None)
    return None if grid is None else Partition("tokens", (1, 1), grid, grid)


def describe(partition, count):
    """(count, kind) for the layout's `windows` field ("unknown" without a partition)."""
    return (count, partition.kind if partition is not None else "unknown")

