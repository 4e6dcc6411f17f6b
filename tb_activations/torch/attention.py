"""Attention probabilities (B, heads, Tq, Tk) of every attention module, from the probe pass.

No module returns its attention probabilities as an output the capture's hooks would see,
so `recording_attention` catches them where they are computed, for the duration of one pass,
and attributes them to the innermost module whose forward is running (the model itself is
path ""). Three sources, checked against torch 2.14, timm 1.0 and transformers 5:

- `torch.nn.functional.scaled_dot_product_attention` (timm's fused attention, Hugging Face's
  attn_implementation="sdpa", and nn.MultiheadAttention's own need_weights=False Python path,
  which looks the name up in torch.nn.functional's globals at call time). The attribute is
  replaced by a wrapper that returns the original function's result untouched (the output is
  bit-identical) and recomputes the probabilities from the same arguments
  (`attention_reference`). Code that bound the function to another name before the pass
  (`from torch.nn.functional import scaled_dot_product_attention` at import time) is not
  seen; none of timm, transformers or torchvision does that.
- `torch.Tensor.softmax` (through which `F.softmax` and `nn.Softmax` go), taken only over the
  last axis of a 4-D tensor while the innermost running module (an nn.Softmax's parent) has
  "Attention" in its class name: Hugging Face's attn_implementation="eager" (its
  eager_attention_forward is called by a *Attention module in 463 of 469 model classes of
  transformers 5.25), and timm's non-fused path (`attn.softmax(dim=-1)`). `torch.softmax`,
  the free function, is not patched.
- `nn.MultiheadAttention`: its weights are torch's own. A call with need_weights=True is made
  with average_attn_weights=False and the head average, if asked for, is taken after
  (the same `mean` torch takes: bit-identical, and attn_output does not depend on the flag).
  A call with need_weights=False is left alone: its Python path goes through the SDPA
  wrapper, and its native fast path (batch_first self-attention at inference) is recomputed
  by calling the module's forward once more with need_weights=True; forcing need_weights on
  the user's call would move the Python path from SDPA to matmuls, changing output bits.

Each recorded module's full-resolution probabilities also feed the pass's attention rollout
(torch/rollout.py), when one is asked for, before they are area-averaged.

Attribution, thread and memory rules: a module that computes attention several times in
one forward keeps its first; patched functions called from any thread but the recording one
go straight to the originals; everything is restored when the context ends, also when the
pass raises; only one recording at a time. Rows whose every key is masked get probability 0
(as torch's SDPA, whose output row is then 0), not NaN.
"""

import contextlib
import dataclasses
import inspect
import math
import threading
import warnings

import torch

from tb_activations.format import layout as layout_lib
from tb_activations.torch import reduction

SDPA_PARAMETERS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
                   "enable_gqa")


@dataclasses.dataclass
class AttentionProbabilities:
    """One attention module's probabilities from its first call in the pass.

    `probabilities` (B, heads, Tq', Tk') float32 on the model's device, area-averaged by
    `downscale` (query factor, key factor; (1, 1) when not) where Tq or Tk exceeded
    max_side; `queries`, `keys`: the full Tq, Tk; `first_query` (B, heads, Tk) the row of
    query 0 (a class token) and `mean_query` (B, heads, Tk) the mean over queries, both at
    full key resolution. `heads`: head_numbers of the full-resolution probabilities
    ({"entropy", "peak", "distance"}: (B, heads) float32 on the device, distance None
    without a grid) and `grid` the (rows, columns, prefix) the distance was measured on."""
    module_path: str
    module_class: str
    probabilities: torch.Tensor
    downscale: tuple
    queries: int
    keys: int
    first_query: torch.Tensor
    mean_query: torch.Tensor
    heads: dict = None
    grid: tuple = None


def attention_reference(query, key, value=None, attn_mask=None, is_causal=False, scale=None,
                        enable_gqa=False):
    """softmax(query @ key^T * scale + mask) in float32, shaped (*batch, heads, Tq, Tk) as the
    scores broadcast, with the arguments of F.scaled_dot_product_attention: a boolean
    `attn_mask` is True where a query attends, a float one is added; `is_causal` keeps the
    lower triangle aligned top left; `scale` defaults to 1/sqrt(head dim); `enable_gqa`
    repeats each key head for its group of query heads. Rows with every key masked are 0.
    `value` is not needed (taken so the wrapper can pass SDPA's arguments through)."""
    query, key = query.to(torch.float32), key.to(torch.float32)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    queries, keys = scores.shape[-2:]
    if is_causal:
        causal = torch.ones(queries, keys, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = torch.where(attn_mask, scores, float("-inf"))
        else:
            scores = scores + attn_mask.to(torch.float32)
    all_masked = torch.isneginf(scores).all(dim=-1, keepdim=True)
    return torch.softmax(scores, dim=-1).masked_fill(all_masked, 0.0)


def as_batch_heads(probabilities):
    """(B, heads, Tq, Tk): a 2-D map gets batch and head axes of 1, a 3-D one (N, Tq, Tk) a
    head axis of 1, axes before the heads of a 5-D or larger one are folded into the batch."""
    if probabilities.ndim == 2:
        return probabilities[None, None]
    if probabilities.ndim == 3:
        return probabilities[:, None]
    return probabilities.reshape((-1,) + tuple(probabilities.shape[-3:]))


_distance_tables = {}  # (rows, columns, device) -> (cells, cells) distances in patches


def _patch_distances(rows, columns, device):
    key = (rows, columns, str(device))
    table = _distance_tables.get(key)
    if table is None:
        row = torch.arange(rows * columns, device=device) // columns
        column = torch.arange(rows * columns, device=device) % columns
        table = torch.hypot((row[:, None] - row[None, :]).to(torch.float32),
                            (column[:, None] - column[None, :]).to(torch.float32))
        if len(_distance_tables) > 8:
            _distance_tables.clear()
        _distance_tables[key] = table
    return table


def head_numbers(probabilities, grid=None):
    """Per sample and head, from full-resolution (B, heads, Tq, Tk) float32 probabilities,
    on their device: `entropy` the mean over queries of -sum_k p log p (nats, 0 log 0 = 0);
    `peak` the mean over queries of the largest probability; `distance` (only when `grid`,
    (rows, columns, prefix), puts the queries and the keys on a rows x columns patch grid
    after `prefix` tokens; else None) the mean over grid queries of sum_k p(q,k) |pos(q) -
    pos(k)| in patches over grid keys, each query's mass renormalised over the grid keys
    (Dosovitskiy et al. 2020, Fig. 7); a query with no mass on the grid is left out. Each
    (B, heads) float32. One sample at a time: the temporaries are one sample's maps."""
    queries, keys = probabilities.shape[-2:]
    table = None
    if grid is not None:
        rows, columns, prefix = grid
        if queries == keys == prefix + rows * columns:
            table = _patch_distances(rows, columns, probabilities.device)
    entropy, peak, distance = [], [], []
    for sample in probabilities:
        logs = torch.where(sample > 0, torch.log(sample.clamp_min(1e-38)), 0.0)
        entropy.append(-(sample * logs).sum(dim=-1).mean(dim=-1))
        del logs
        peak.append(sample.amax(dim=-1).mean(dim=-1))
        if table is not None:
            on_grid = sample[..., prefix:, prefix:]
            mass = on_grid.sum(dim=-1)
            spread = (on_grid * table).sum(dim=-1)
            kept = mass > 0
            per_query = torch.where(kept, spread / mass.clamp_min(1e-30), 0.0)
            distance.append(per_query.sum(dim=-1) / kept.sum(dim=-1).clamp_min(1))
    empty = probabilities.new_zeros(probabilities.shape[:2])
    stack = (lambda parts: torch.stack(parts) if parts else empty)
    return {"entropy": stack(entropy), "peak": stack(peak),
            "distance": stack(distance) if table is not None else None}


def summarise(path, module_class, probabilities, max_side=None, grid=None):
    """An AttentionProbabilities of (B, heads, Tq, Tk) probabilities, area-averaged on their
    device by layout.downscale_factor of each side over `max_side` (reduction.area_downscale,
    as the grids are: the last partial blocks mirrored), with head_numbers of the whole ones
    (`grid`: (rows, columns, prefix) of the keys, or None)."""
    probabilities = probabilities.detach().to(torch.float32)
    queries, keys = probabilities.shape[-2:]
    factors = (1, 1) if max_side is None else (layout_lib.downscale_factor(queries, max_side),
                                               layout_lib.downscale_factor(keys, max_side))
    return AttentionProbabilities(
        module_path=path, module_class=module_class,
        probabilities=reduction.area_downscale(probabilities, *factors),
        downscale=factors, queries=queries, keys=keys,
        first_query=probabilities[:, :, 0, :].clone(),
        mean_query=probabilities.mean(dim=2),
        heads=head_numbers(probabilities, grid), grid=grid)


_lock = threading.Lock()
_active = None  # the _Session recording now, None when none is


def _active_session():
    """The session that records the calling thread's attention, None for any other thread."""
    session = _active
    if session is None or session.thread != threading.get_ident():
        return None
    return session


def _bound_sdpa_arguments(args, kwargs):
    named = dict(zip(SDPA_PARAMETERS, args))
    named.update(kwargs)
    return named


def _recording_sdpa(original):
    def scaled_dot_product_attention(*args, **kwargs):
        output = original(*args, **kwargs)
        session = _active_session()
        if session is not None:
            session.record_sdpa(_bound_sdpa_arguments(args, kwargs))
        return output
    scaled_dot_product_attention.__doc__ = original.__doc__
    scaled_dot_product_attention.__wrapped__ = original
    return scaled_dot_product_attention


def _recording_softmax(original):
    def softmax(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        session = _active_session()
        if session is not None:
            dim = args[0] if args else kwargs.get("dim")
            session.record_softmax(output, dim)
        return output
    softmax.__doc__ = original.__doc__
    softmax.__wrapped__ = original
    return softmax


def _batched_mha_weights(weights):
    """MultiheadAttention's per-head weights are (B, heads, L, S) whatever batch_first says,
    (heads, L, S) for an unbatched call."""
    return weights[None] if weights.ndim == 3 else weights


def _forward_signature(module):
    try:
        return inspect.signature(module.forward)
    except (TypeError, ValueError):
        return None


class _Session:
    """The hooks' state for one recording: the stack of running modules, the modules
    already recorded, and each running MultiheadAttention call's requested flags."""

    def __init__(self, model, max_side, grid_of=None, wanted=None, rollout=None):
        self.thread = threading.get_ident()
        self.max_side = max_side
        self.grid_of = grid_of
        self.paths = {id(module): name.replace(".", "/")
                      for name, module in model.named_modules(remove_duplicate=True)}
        self.running = []
        # ids of the modules already recorded, and of those not wanted: nothing is computed
        # for either
        self.recorded = {key for key, path in self.paths.items()
                         if wanted is not None and not wanted(path)}
        self.results = []
        self.rollout = rollout
        self._mha_calls = []  # (module, its BoundArguments, need_weights, average) per call

    def _keep(self, module, probabilities, borrowed=False):
        """Records `module`'s first probabilities; `borrowed` ones are the model's own tensor
        (eager softmax, MultiheadAttention's weights), copied so that a later in-place
        change of the model's cannot alter them."""
        if id(module) in self.recorded:
            return self._again()
        self.recorded.add(id(module))
        with torch.no_grad():
            if borrowed:
                probabilities = probabilities.detach().to(torch.float32, copy=True)
            probabilities = as_batch_heads(probabilities)
            path = self.paths[id(module)]
            grid = None
            if self.grid_of is not None:
                try:
                    grid = self.grid_of(path, probabilities.shape[-1], probabilities.shape[1])
                except Exception:  # noqa: BLE001: no grid is no distance, never a failure
                    grid = None
            if self.rollout is not None:
                self.rollout.add(probabilities, grid)
            self.results.append(summarise(path, type(module).__name__, probabilities,
                                          self.max_side, grid))

    def _again(self):
        """A module computed attention a second time in the pass (or its attention could not
        be recorded): the rollout, one step per module, cannot say what the model did."""
        if self.rollout is not None:
            self.rollout.spoil()

    def _guarded(self, what, action):
        """Runs a recording step; a failure there becomes a warning: the user's pass goes on."""
        try:
            action()
        except Exception as error:  # noqa: BLE001: recording must never break the pass
            self._again()  # a layer the rollout misses
            warnings.warn("tb-activations could not record the attention of %s: %s: %s"
                          % (what, type(error).__name__, error), stacklevel=3)

    def record_sdpa(self, named):
        if not self.running:
            return
        module = self.running[-1]

        def compute():
            with torch.no_grad():
                probabilities = attention_reference(
                    named["query"], named["key"], attn_mask=named.get("attn_mask"),
                    is_causal=bool(named.get("is_causal", False)), scale=named.get("scale"),
                    enable_gqa=bool(named.get("enable_gqa", False)))
            self._keep(module, probabilities)
        if id(module) in self.recorded:
            return self._again()
        self._guarded(self.paths[id(module)] or type(module).__name__, compute)

    def record_softmax(self, output, dim):
        if output.ndim != 4 or dim not in (-1, 3) or not output.dtype.is_floating_point:
            return
        running = self.running[:-1] if (self.running and isinstance(
            self.running[-1], torch.nn.Softmax)) else self.running
        if not running or "Attention" not in type(running[-1]).__name__:
            return
        module = running[-1]
        if id(module) in self.recorded:
            return self._again()
        self._guarded(self.paths[id(module)], lambda: self._keep(module, output, borrowed=True))

    def before(self, module, args):
        self.running.append(module)

    def after(self, module, args, output):
        if self.running and self.running[-1] is module:
            self.running.pop()

    def before_mha(self, module, args, kwargs):
        """Asks a need_weights=True call for per-head weights; remembers what was asked."""
        signature = _forward_signature(module)
        try:
            bound = signature.bind(*args, **kwargs)
        except (AttributeError, TypeError):
            self._mha_calls.append((module, None, None, None))
            return None
        bound.apply_defaults()
        named = bound.arguments
        if "need_weights" not in named or "average_attn_weights" not in named:
            self._mha_calls.append((module, None, None, None))
            return None
        need_weights, average = named["need_weights"], named["average_attn_weights"]
        self._mha_calls.append((module, inspect.BoundArguments(signature, dict(named)),
                                need_weights, average))
        if not need_weights or not average:
            return None
        named["average_attn_weights"] = False
        return bound.args, bound.kwargs

    def after_mha(self, module, args, kwargs, output):
        """The output as the caller asked for it, the per-head weights kept."""
        # The last entry of this module: one left by a call that raised is skipped over.
        index = max(i for i, call in enumerate(self._mha_calls) if call[0] is module)
        _, bound, need_weights, average = self._mha_calls.pop(index)
        del self._mha_calls[index:]
        if bound is None:
            return None
        if need_weights:
            weights = output[1]
            self._guarded(self.paths[id(module)], lambda: self._keep(
                module, _batched_mha_weights(weights), borrowed=True))
            if average:
                return output[0], weights.mean(dim=-3)
            return None
        if id(module) in self.recorded:
            return self._again()

        def recompute():
            bound.arguments.update(need_weights=True, average_attn_weights=False)
            with torch.no_grad():  # forward, not the call: no hook sees this repeat
                _, weights = module.forward(*bound.args, **bound.kwargs)
            self._keep(module, _batched_mha_weights(weights))
        self._guarded(self.paths[id(module)], recompute)
        return None

    @contextlib.contextmanager
    def hooked(self, model):
        handles = []
        try:
            for module in model.modules():
                if isinstance(module, torch.nn.MultiheadAttention):
                    handles.append(module.register_forward_pre_hook(
                        self.before_mha, with_kwargs=True))
                    # First of the forward hooks: the others see the output the caller asked for.
                    handles.append(module.register_forward_hook(
                        self.after_mha, with_kwargs=True, prepend=True))
                handles.append(module.register_forward_pre_hook(self.before))
                handles.append(module.register_forward_hook(self.after, always_call=True))
            yield
        finally:
            for handle in handles:
                handle.remove()


@contextlib.contextmanager
def _patched(owner, name, replacement):
    """owner.name replaced for the context; put back as it was (an inherited attribute by
    deleting the override)."""
    own = name in vars(owner)
    original = vars(owner)[name] if own else None
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


@contextlib.contextmanager
def recording_attention(model, max_side=None, grid_of=None, wanted=None, rollout=None):
    """Yields a list that fills, in call order, with one AttentionProbabilities per module of
    `model` that computes attention during the context (run one forward pass in it).

    Patches torch.nn.functional.scaled_dot_product_attention and torch.Tensor.softmax
    (process-global, so one recording at a time: a second raises RuntimeError) and hooks
    every module of `model`; all undone on exit. `max_side`: probabilities with more than
    that many queries or keys are area-averaged before they are kept. `grid_of(path, keys,
    heads)`: the (rows, columns, prefix) grid a module's keys lie on, or None (asked while
    the pass runs; the mean attention distance is measured on it). `wanted(path)`: whether a
    module's attention is recorded (None: every module's). `rollout`: a rollout.Rollout fed
    each recorded module's full-resolution probabilities in forward order (None: none)."""
    global _active
    if not isinstance(model, torch.nn.Module):
        raise TypeError("expected a torch.nn.Module, got %s" % type(model).__name__)
    if max_side is not None and (not isinstance(max_side, int) or max_side < 1):
        raise ValueError("max_side must be a positive int or None, got %r" % (max_side,))
    session = _Session(model, max_side, grid_of, wanted, rollout)
    with _lock:
        if _active is not None:
            raise RuntimeError("recording_attention is already recording (patching torch's "
                               "attention functions is process-wide): one at a time")
        _active = session
    try:
        functional = torch.nn.functional
        with contextlib.ExitStack() as stack:
            stack.enter_context(_patched(functional, "scaled_dot_product_attention",
                                         _recording_sdpa(functional.scaled_dot_product_attention)))
            stack.enter_context(_patched(torch.Tensor, "softmax",
                                         _recording_softmax(torch.Tensor.softmax)))
            stack.enter_context(session.hooked(model))
            yield session.results
    finally:
        with _lock:
            _active = None
