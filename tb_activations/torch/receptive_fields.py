"""Exact receptive fields of a torch model's 2-D (N, C, H, W) module outputs, from one
forward pass of one sample with forward hooks: each output's field follows from its input
tensor's (by identity, starting at the tensor passed in) and the module's kernel, stride,
dilation and padding. What happens between modules in `forward` (a residual `x + y`, a
`torch.flatten`) makes new tensors no hook saw, so fields are exact along nn.Sequential-like
chains of convolutions, poolings, paddings and the pointwise modules below, and unknown (the
size ratio is used) after anything else."""

import weakref

import torch
from torch import nn

from tb_activations.rendering import receptive_fields as fields_lib
from tb_activations.torch import capture as capture_lib

POINTWISE_MODULES = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.ReLU, nn.ReLU6,
                     nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
                     nn.LeakyReLU, nn.PReLU, nn.ELU, nn.Mish, nn.Dropout, nn.Dropout2d,
                     nn.Identity)
_PADDINGS = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)
_found = weakref.WeakKeyDictionary()


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def output_field(module, tensor, field):
    """The Field of `module`'s output called on `tensor` of Field `field` (None: unknown)."""
    if field is None or tensor.ndim != 4:
        return None
    if isinstance(module, POINTWISE_MODULES):
        return field
    if isinstance(module, _PADDINGS):
        left, _, top, _ = module.padding
        return fields_lib.shifted(field, (top, left))
    if not isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return None
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride or module.kernel_size)
    dilation = _pair(getattr(module, "dilation", 1))
    padding = module.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return fields_lib.through_window(field, kernel, stride, dilation, _pair(padding))


def receptive_fields(model, sample):
    """{module path: receptive_field content} of the modules whose output is a 2-D map with an
    exact field, for `sample` (a batch of one (1, C, H, W) of the model's one input). Found
    once per model."""
    if model in _found:
        return _found[model]
    args, kwargs, _ = capture_lib.prepare_probe(model, sample)
    by_tensor = {id(args[0]): fields_lib.INPUT}
    by_path, kept = {}, list(args)

    def after(path, module, inputs, output):
        if not isinstance(output, torch.Tensor) or id(output) in by_tensor:
            return
        called_on = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
        field = (None if called_on is None else
                 output_field(module, called_on, by_tensor.get(id(called_on))))
        kept.append(output)  # alive, so its id stays its own
        by_tensor[id(output)] = field
        if field is not None and output.ndim == 4:
            by_path.setdefault(path, field)

    handles = [module.register_forward_hook(
        lambda module, inputs, output, _path=path: after(_path, module, inputs, output))
        for path, module in capture_lib.walk_modules(model)]
    try:
        with capture_lib.inference_pass(model):
            model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    _found[model] = {path: field.to_content() for path, field in by_path.items()}
    return _found[model]
