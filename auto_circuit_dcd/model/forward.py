"""The plain-model machinery shared by attribution and faithfulness evaluation.

auto-circuit's factorized graph needs three TransformerLens flags: ``use_attn_result``
(per-head outputs, which TransformerLens 2.18 builds through a
``[batch, pos, heads, d_head, d_model]`` product), ``use_split_qkv_input`` (one copy of
the residual stream per head and per Q/K/V) and ``use_hook_mlp_in``. They make every
forward about 5-10x the plain model's cost. The fast paths switch them off and rebuild
what they need from the plain model, exactly:

1. :func:`plain_forward`: the flags off (restored on exit, also on error); auto-circuit's
   wrappers on ``hook_result``, ``hook_{q,k,v}_input`` and ``hook_mlp_in`` are then not
   called, those on ``blocks.0.hook_resid_pre``, ``hook_mlp_out`` and the last
   ``hook_resid_post`` are (they pass through outside patch mode);
2. a head's output ``z_h @ W_O[h]`` (what ``hook_result`` holds, without ``b_O``) from
   ``hook_z`` as one batched product per layer (:func:`head_outputs`);
3. a head's Q/K/V input is its own copy of the attention block's input, read through
   ``ln1``: :func:`norm_vjp` gives ``J_norm(x)^T v`` in closed form for TransformerLens'
   normalisations;
4. :func:`unsupported_reason` says which models these paths take (and why not);
5. :class:`WrapperGraph` orders a ``PatchableModel``'s wrappers with the package's edge
   layout; :func:`frozen` and :func:`removing` scope model state and hook handles;
6. :func:`source_outputs`: every source's output on a batch in one plain forward (what
   auto-circuit's ``src_ablations`` gives with the flags on), and the logits at the last
   position only (:func:`last_position_only`: the final residual is cut to its last
   position before ``ln_final`` and the unembedding, which then cost ``1/pos``);
7. :func:`stack_cap_bytes`: the working memory one stacked pass (copies of a batch along
   the batch dimension) may use.

Half precision: a float16 / bfloat16 model runs in its dtype, while everything rebuilt
from it (source differences, head outputs, destination gradients, norm Jacobians,
contractions) is computed in :func:`accumulation_dtype` (float32; float64 for a float64
model), so rounding comes from the model's own forward and backward only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from auto_circuit_dcd.model.edges import edge_layout

__all__ = [
    "NORM_KINDS", "SRC_NODE", "DEST_NODE", "node_match", "WrapperGraph", "frozen", "removing",
    "src_block", "plain_forward", "unsupported_reason", "supports_fast", "norm_vjp",
    "head_outputs", "accumulation_dtype", "HALF_DTYPES", "source_outputs",
    "last_position_only", "choose_backend", "stack_cap_bytes",
]

#: TransformerLens normalisation module -> the kind :func:`norm_vjp` takes
NORM_KINDS = {"LayerNorm": "ln", "LayerNormPre": "ln_pre", "RMSNorm": "rms",
              "RMSNormPre": "rms_pre", "Identity": "none"}
#: source and destination hook points of auto-circuit's factorized TransformerLens graph
SRC_NODE = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|attn\.hook_result|hook_mlp_out)$")
DEST_NODE = re.compile(r"^blocks\.(\d+)\.(hook_[qkv]_input|hook_mlp_in|hook_resid_post)$")


def node_match(pattern: re.Pattern[str], module_name: str) -> re.Match[str]:
    """``pattern`` (:data:`SRC_NODE` or :data:`DEST_NODE`) matched against a wrapper's module
    name; a ``ValueError`` naming the module when it does not match."""
    m = pattern.match(module_name)
    if m is None:
        raise ValueError(f"module {module_name!r} is not a node of the TransformerLens graph "
                         f"({pattern.pattern})")
    return m
#: model dtypes run in half precision, with float32 accumulation
HALF_DTYPES = (torch.float16, torch.bfloat16)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype quantities rebuilt from a model of ``dtype`` are computed in: float32 for
    float32 and half-precision models, float64 for float64 ones."""
    return torch.promote_types(dtype, torch.float32)


# ----------------------------------------------------------------------------- scoping
@contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Weights without gradients (they cost ~60% of a backward) and eval mode, restored."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@contextmanager
def removing(handles: list[Any]) -> Iterator[list[Any]]:
    """Hook handles removed on exit, also on error."""
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


@contextmanager
def plain_forward(tl_model: Any) -> Iterator[Any]:
    """TransformerLens' per-head flags off (auto-circuit's wrappers bypassed), restored on exit.

    A module without a TransformerLens config runs as it is.
    """
    cfg = getattr(tl_model, "cfg", None)
    if cfg is None:
        yield tl_model
        return
    saved = (cfg.use_attn_result, cfg.use_split_qkv_input, cfg.use_hook_mlp_in)
    try:
        tl_model.set_use_attn_result(False)
        tl_model.set_use_split_qkv_input(False)
        if not cfg.attn_only:
            tl_model.set_use_hook_mlp_in(False)
        yield tl_model
    finally:
        tl_model.set_use_attn_result(saved[0])
        tl_model.set_use_split_qkv_input(saved[1])
        if not cfg.attn_only:
            tl_model.set_use_hook_mlp_in(saved[2])


# ----------------------------------------------------------------------------- graph
class WrapperGraph:
    """The wrappers of a PatchableModel, ordered, with the package's edge layout.

    ``srcs``: source wrappers by ``src_idx``; ``dests``: ``(wrapper, mask shape, start,
    stop)`` per destination, in column order; ``input_wrapper``: the embedding source.
    """

    def __init__(self, model: Any):
        self.names, self.layout = edge_layout(model)
        self.srcs = sorted(model.src_wrappers, key=lambda w: w.src_idxs.start)
        self.n_src = max(w.src_idxs.stop for w in self.srcs)
        dests = {w.module_name: w for w in model.dest_wrappers}
        self.dests = [(dests[name], shape, a, b) for name, shape, a, b in self.layout.blocks]
        starts = [w for w in self.srcs if w.src_idxs.start == 0]
        self.input_wrapper = starts[0]
        if self.input_wrapper.head_dim is not None:
            raise ValueError("the first source node must be the input embedding")
        ends = [w for w, *_ in self.dests if w.module_name.endswith("hook_resid_post")]
        #: the final residual's destination wrapper (``None`` outside TransformerLens graphs)
        self.output_wrapper = ends[0] if ends else None

    def final_wrapper(self) -> Any:
        """``output_wrapper``, or a ``ValueError`` for a graph without one."""
        if self.output_wrapper is None:
            raise ValueError("the graph has no final residual destination (hook_resid_post)")
        return self.output_wrapper


def src_block(out: Tensor, wrapper: Any) -> Tensor:
    """A source wrapper's output as ``[B, n_nodes, pos*d]`` (heads split like auto-circuit)."""
    b = out.shape[0]
    if wrapper.head_dim is None:
        return out.reshape(b, 1, -1)
    return out.movedim(wrapper.head_dim, 1).reshape(b, out.shape[wrapper.head_dim], -1)


# ----------------------------------------------------------------------------- support
def unsupported_reason(model: Any) -> str | None:
    """Why the flag-free paths cannot run ``model``, or ``None`` if they can."""
    tl = getattr(model, "wrapped_model", None)
    try:
        from transformer_lens import HookedTransformer
    except ImportError:  # pragma: no cover
        return "transformer_lens is not installed"
    if not isinstance(tl, HookedTransformer):
        return "the model does not wrap a TransformerLens HookedTransformer"
    cfg = tl.cfg
    param_dtype = next(tl.parameters()).dtype
    checks = [
        (cfg.n_key_value_heads is not None,
         f"grouped-query attention (n_key_value_heads={cfg.n_key_value_heads}), which "
         "auto-circuit cannot patch per head: wrap the HookedTransformer with "
         "dcd.make_patchable, which repeats the K/V heads first"),
        (cfg.positional_embedding_type not in ("standard", "rotary"),
         f"positional_embedding_type={cfg.positional_embedding_type!r} "
         "(supported: standard, rotary)"),
        (cfg.normalization_type not in ("LN", "LNPre", "RMS", "RMSPre", None),
         f"normalization_type={cfg.normalization_type!r}"),
        (bool(getattr(cfg, "use_normalization_before_and_after", False)),
         "use_normalization_before_and_after"),
        (bool(getattr(cfg, "load_in_4bit", False)), "load_in_4bit"),
        (bool(getattr(cfg, "use_attn_in", False)),
         "use_attn_in (a graph built with separate_qkv=False; use separate_qkv=True)"),
        (cfg.dtype not in (torch.float32, torch.float64, *HALF_DTYPES),
         f"dtype {cfg.dtype} (supported: float32, float64, float16, bfloat16)"),
        (param_dtype != cfg.dtype,
         f"the weights are {param_dtype} but cfg.dtype is {cfg.dtype} (cast the model "
         "with model.to(dtype), which sets both, or dcd.load_model(..., dtype=...))"),
        (not cfg.use_split_qkv_input or not cfg.use_attn_result,
         "auto-circuit's flags are not set (use dcd.make_patchable)"),
    ]
    for bad, why in checks:
        if bad:
            return why
    for block in tl.blocks:
        for name in ("ln1", "ln2"):
            ln = getattr(block, name, None)
            if ln is not None and type(ln).__name__ not in NORM_KINDS:
                return f"unknown normalisation module {type(ln).__name__}"
    if any(w.patch_mode for w in model.wrappers):
        return "the model is in auto-circuit patch mode"
    for w in model.src_wrappers:
        if not SRC_NODE.match(w.module_name):
            return f"unexpected source node {w.module_name}"
    for w in model.dest_wrappers:
        m = DEST_NODE.match(w.module_name)
        if not m:
            return (f"unexpected destination node {w.module_name} (build the graph with "
                    "separate_qkv=True)")
        if m.group(2) == "hook_resid_post" and int(m.group(1)) != cfg.n_layers - 1:
            return f"unexpected destination node {w.module_name}"
    return None


def supports_fast(model: Any) -> bool:
    """Whether the flag-free paths can run ``model`` (see :func:`unsupported_reason`)."""
    return unsupported_reason(model) is None


# ----------------------------------------------------------------------------- maths
def norm_vjp(kind: str, ln: Any, x: Tensor, v: Tensor) -> Tensor:
    """``J_norm(x)^T v`` for TransformerLens' normalisations; ``x`` broadcasts against ``v``.

    ``kind`` is ``"ln"``, ``"ln_pre"``, ``"rms"``, ``"rms_pre"`` or ``"none"``. With
    ``u = v * w`` (``w = 1`` for the ``_pre`` kinds), ``s = sqrt(mean(c^2) + eps)`` and
    ``xhat = c / s``: LayerNorm (``c = x - mean(x)``) gives
    ``(u - mean(u) - xhat * mean(xhat * u)) / s``; RMSNorm (``c = x``)
    ``(u - xhat * mean(xhat * u)) / s``; no normalisation ``v``. Computed in the dtype
    of ``x`` and ``v`` (the norm's weight is cast to it).
    """
    if kind == "none":
        return v
    u = v * ln.w.detach().to(v.dtype) if kind in ("ln", "rms") else v
    c = x - x.mean(-1, keepdim=True) if kind in ("ln", "ln_pre") else x
    s = (c.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()
    xhat = c / s
    g = (u - xhat * (xhat * u).mean(-1, keepdim=True)) / s
    if kind in ("ln", "ln_pre"):
        g = g - g.mean(-1, keepdim=True)
    return g


def head_outputs(z: Tensor, W_O: Tensor) -> Tensor:
    """Per-head outputs ``[B, H, pos, d_model]`` (a view) from ``z [B, pos, H, d_head]``.

    ``out[:, h] = z[:, :, h] @ W_O[h]``: TransformerLens' ``hook_result`` without
    ``b_O``, as one batched matrix product instead of its element-wise broadcast.
    ``W_O`` is cast to ``z``'s dtype (pass float32 ``z`` for a half-precision model).
    """
    b, p, h, e = z.shape
    res = torch.bmm(z.permute(2, 0, 1, 3).reshape(h, b * p, e), W_O.detach().to(z.dtype))
    return res.reshape(h, b, p, -1).transpose(0, 1)


# ----------------------------------------------------------------------------- passes
def last_position_only(graph: WrapperGraph) -> Any:
    """A forward pre-hook handle on the final residual's wrapper keeping its last position.

    The model then returns logits ``[B, 1, vocab]``; the metric reads nothing else.
    """
    def keep_last(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0][:, -1:],) + tuple(args[1:])

    return graph.final_wrapper().register_forward_pre_hook(keep_last)


def source_outputs(model: Any, graph: WrapperGraph, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Every source's output on ``tokens`` and the last-position logits, one plain forward.

    Returns ``outs [n_src, B, pos, d_model]`` in ``src_idx`` order (the embedding, each
    head's ``z_h @ W_O[h]`` without ``b_O``, each MLP's output: auto-circuit's
    ``src_ablations(model, tokens, RESAMPLE)``) and logits ``[B, vocab]``. The model must
    pass :func:`unsupported_reason`.
    """
    tl = model.wrapped_model
    outs: Tensor | None = None

    def put(sl: slice, block: Tensor) -> None:
        nonlocal outs
        if outs is None:
            outs = torch.empty((graph.n_src,) + tuple(block.shape[1:]), dtype=block.dtype,
                               device=block.device)
        outs[sl] = block

    def record(module: Any, args: Any, out: Tensor) -> None:
        put(module.src_idxs, out.detach()[None])

    def record_z(layer: int, sl: slice) -> Any:
        W_O = tl.blocks[layer].attn.W_O

        def hook(module: Any, args: Any, z: Tensor) -> None:
            put(sl, head_outputs(z.detach(), W_O).transpose(0, 1))
        return hook

    handles = [last_position_only(graph)]
    for w in graph.srcs:
        m = SRC_NODE.match(w.module_name)
        if m is not None and m.group(2) == "attn.hook_result":
            layer = int(m.group(1))
            handles.append(tl.blocks[layer].attn.hook_z.register_forward_hook(
                record_z(layer, w.src_idxs)))
        else:
            handles.append(w.register_forward_hook(record))
    with plain_forward(tl), removing(handles), torch.inference_mode():
        logits = tl(tokens)
    assert outs is not None
    return outs, logits[:, -1]


def stack_cap_bytes(device: Any, max_stack_gib: float | None, cpu_default_gib: float) -> int:
    """The working memory (bytes) one stacked pass may use: ``max_stack_gib`` if given (it
    must be positive), else ``cpu_default_gib`` on the CPU and a quarter of the free memory
    on a CUDA device."""
    if max_stack_gib is not None:
        if not max_stack_gib > 0:
            raise ValueError(f"max_stack_gib must be positive; got {max_stack_gib}")
        return int(max_stack_gib * 2 ** 30)
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free // 4)
    return int(cpu_default_gib * 2 ** 30)


# ----------------------------------------------------------------------------- backends
def choose_backend(model: Any, backend: str, names: Collection[str], fallback: str,
                   why_not: Callable[[Any], str | None] = unsupported_reason) -> str:
    """The backend to run: ``"auto"`` gives ``"fast"`` where ``why_not(model)`` is None and
    ``fallback`` elsewhere; ``"fast"`` on a model it cannot take is refused with the reason."""
    if backend != "auto" and backend not in names:
        raise ValueError(f"backend must be one of {['auto', *sorted(names)]}, got {backend!r}")
    if backend not in ("auto", "fast"):
        return backend
    why = why_not(model)
    if why is None:
        return "fast"
    if backend == "fast":
        raise ValueError(f"backend='fast' does not support this model: {why}; "
                         f"use backend={fallback!r}")
    return fallback
