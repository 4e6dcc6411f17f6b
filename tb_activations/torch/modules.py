"""What the capture assumes about torch.nn modules, in one place (checked against torch 2.13
and 2.14).

Public torch.nn classes and `nn.Module` hooks: `named_modules`,
`register_forward_pre_hook`/`register_forward_hook` (hooks run when a module is called, not
when its `forward` is called directly), the `training` flag of each module. One private
attribute: torch.compile's wrapper keeps the compiled module as `_orig_mod`.

Which outputs are channels first (layout.plan_layout's `channels_first`):
- torch.nn's spatial modules take and give (N, C, *spatial): convolutions, pooling, batch /
  instance / group norm, upsampling, pixel and channel shuffles, padding, channel dropout.
  Their outputs are channels first.
- Feature-last modules give (N, ..., F): Linear, Bilinear, LayerNorm, RMSNorm, Embedding,
  recurrent layers, attention and transformers. Their outputs are channels last ((B, T, F) is
  a sequence).
- A module whose output has the shape of the output it was called on keeps its layout
  (torchvision's LayerNorm2d, a LayerNorm over (N, C, H, W), stays channels first).
- Every other module (activations, custom and container modules) follows the module whose
  output it was called on (a ReLU after a Conv1d is (N, C, L), after a Linear (B, T, F)),
  unless the channel axis moved: an output whose last axis, not its second, has as many
  entries as the channels it was called on is channels last, and the other way round
  (torchvision's Permute in Swin and ConvNeXt); called on a model input, its output is
  channels first from rank 4 (N, C, H, W) up.

Which axis holds the batch (batch_axes):
- A module says which with a bool `batch_first`: RNN, LSTM, GRU, MultiheadAttention and
  Transformer have one (False by default), an encoder or decoder layer reads its `self_attn`'s
  and an encoder or decoder stack its first layer's, as torch does; a module of your own may
  have one too. False is sequence first: (T, B, F).
- Fixed whatever it says: an RNN's, LSTM's or GRU's hidden states (h_n, c_n) are
  (layers * directions, B, H); MultiheadAttention's weights are (B, [heads,] L, S); the spatial
  modules above are (N, C, ...).
- A module saying nothing follows its nearest ancestor that says something (a Linear inside a
  sequence-first encoder layer sees (T, B, F)), else the output it was called on, else batch
  first. Sequence first means axis 1 when it holds the probe batch (also when axis 0 does:
  T == B), else axis 0 (a batch-first tensor inside).
"""

import torch
from torch import nn


def _classes(*names):
    return tuple(getattr(nn, name) for name in names if hasattr(nn, name))


def _numbered(*stems):
    return tuple(stem + "%dd" % rank for stem in stems for rank in (1, 2, 3))


# Outputs that are a copy, reshape or pad of the input at inference: drawn again they show
# nothing new, so the default selection skips them (as selection.PASS_THROUGH_LAYERS in Keras).
PASS_THROUGH_MODULES = _classes(
    "Identity", "Flatten", "Unflatten", "Dropout", "AlphaDropout", "FeatureAlphaDropout",
    *_numbered("Dropout", "ZeroPad", "ConstantPad", "ReflectionPad", "ReplicationPad",
               "CircularPad"))

CHANNELS_FIRST_MODULES = _classes(
    "SyncBatchNorm", "GroupNorm", "LocalResponseNorm", "Upsample", "UpsamplingNearest2d",
    "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle", "ChannelShuffle", "Fold",
    "Unfold", "FractionalMaxPool2d", "FractionalMaxPool3d",
    *_numbered("Conv", "ConvTranspose", "MaxPool", "AvgPool", "AdaptiveMaxPool",
               "AdaptiveAvgPool", "LPPool", "MaxUnpool", "BatchNorm", "InstanceNorm",
               "Dropout", "ZeroPad", "ConstantPad", "ReflectionPad", "ReplicationPad",
               "CircularPad"))

CHANNELS_LAST_MODULES = _classes(
    "Linear", "Bilinear", "LayerNorm", "RMSNorm", "Embedding", "EmbeddingBag", "RNN", "LSTM",
    "GRU", "RNNCell", "LSTMCell", "GRUCell", "MultiheadAttention", "Transformer",
    "TransformerEncoder", "TransformerDecoder", "TransformerEncoderLayer",
    "TransformerDecoderLayer")

# The dtypes a grid can draw besides floating point ones.
INTEGER_DTYPES = frozenset(getattr(torch, name) for name in (
    "bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")
    if hasattr(torch, name))


def channels_first(module, output, called_on=None, input_channels_first=None):
    """Whether `module`'s tensor `output` is channels first; `called_on` is the recorded
    output the module was called on and `input_channels_first` its flag (None if it was
    called on something else)."""
    if isinstance(module, CHANNELS_FIRST_MODULES):
        return True
    known = input_channels_first is not None
    if known and called_on.shape == output.shape:
        return input_channels_first
    if isinstance(module, CHANNELS_LAST_MODULES):
        return False
    if known and output.ndim >= 2:
        channels = called_on.shape[1 if input_channels_first else -1]
        first, last = output.shape[1] == channels, output.shape[-1] == channels
        return first if first != last else input_channels_first
    return output.ndim >= 4


RECURRENT_MODULES = _classes("RNN", "LSTM", "GRU")
TRANSFORMER_LAYERS = _classes("TransformerEncoderLayer", "TransformerDecoderLayer")
TRANSFORMER_STACKS = _classes("TransformerEncoder", "TransformerDecoder")
SEQUENCE_MODULES = (RECURRENT_MODULES + TRANSFORMER_LAYERS + TRANSFORMER_STACKS
                    + _classes("MultiheadAttention", "Transformer"))


def declared_batch_first(module):
    """The module's own `batch_first` (an encoder or decoder layer: its self-attention's; a
    stack: its first layer's), None where it has none."""
    if isinstance(module, TRANSFORMER_STACKS) and len(module.layers):
        return declared_batch_first(module.layers[0])
    if isinstance(module, TRANSFORMER_LAYERS):
        return declared_batch_first(module.self_attn)
    flag = getattr(module, "batch_first", None)
    return flag if isinstance(flag, bool) else None


def batch_axes(module, index, batch_first, input_axis):
    """The axes that may hold the probe batch in `module`'s index-th output tensor, the
    likelier first. `batch_first`: declared_batch_first of the module or else of its nearest
    ancestor having one (None if none has); `input_axis`: the batch axis of the output the
    module was called on (None if unknown)."""
    if isinstance(module, CHANNELS_FIRST_MODULES):
        return (0,)
    if index > 0 and isinstance(module, RECURRENT_MODULES):
        return (1,)
    if index > 0 and isinstance(module, nn.MultiheadAttention):
        return (0,)
    if isinstance(module, SEQUENCE_MODULES) and batch_first is not None:
        return (0,) if batch_first else (1,)
    if batch_first is None:
        return (1, 0) if input_axis == 1 else (0,)
    return (0,) if batch_first else (1, 0)


def is_default_module(module, ran_submodules):
    """The default selection: modules that computed their output themselves (no submodule
    ran inside their call: leaf modules, and containers whose forward takes a fast path or
    uses its parameters directly, as nn.MultiheadAttention does), except pass-through ones."""
    return not ran_submodules and not isinstance(module, PASS_THROUGH_MODULES)


def unwrap(model):
    """The module inside DataParallel / DistributedDataParallel (calling the wrapper would
    scatter or broadcast, a collective op that hangs when only one rank probes) and inside
    torch.compile's wrapper (its `_orig_mod`, run eagerly: a probe pass with hooks would
    recompile the graph)."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model
