"""Per-example edge attribution at about the cost of the plain model, same numbers.

auto-circuit's factorized graph needs three TransformerLens flags: ``use_attn_result``
(per-head outputs, which TransformerLens 2.18 builds through a
``[batch, pos, heads, d_head, d_model]`` product), ``use_split_qkv_input`` (one copy of
the residual stream per head and per Q/K/V) and ``use_hook_mlp_in``. They are most of
the cost of :func:`auto_circuit_dcd.attribution._attribute_batch`. Here they are
switched off for the duration of a batch and every quantity the attribution needs is
rebuilt from the plain model, exactly:

1. inside :func:`plain_forward`, the three flags are off (restored on exit, also on
   error); auto-circuit's wrappers on ``hook_result``, ``hook_{q,k,v}_input`` and
   ``hook_mlp_in`` are then not called, those on ``blocks.0.hook_resid_pre``,
   ``hook_mlp_out`` and the last ``hook_resid_post`` are (they pass through outside
   patch mode);
2. sources, stored as ``diff [B, n_src, pos*d_model]`` in auto-circuit's ``src_idx``
   order: the embedding and each MLP output are read from their wrappers; head ``h``'s
   output is ``z_h @ W_O[h]`` (``hook_result`` in TransformerLens 2.18 holds exactly this,
   without ``b_O``), so its clean - corrupt difference is ``(z_clean - z_corrupt)_h @
   W_O[h]``, one batched product per layer from ``hook_z`` (detached);
3. head ``h``'s Q input is its own copy ``x`` of the attention block's input
   (``resid_pre``) and ``q_h = ln1(x) @ W_Q[h] + b_Q[h]``, so
   ``d mu / d x = J_ln1(x)^T (W_Q[h] g_h)`` with ``g = d mu / d hook_q`` (taken before
   rotary). Likewise for K (``hook_k``) and V (``hook_v``);
4. ``J^T`` of the normalisation, with ``u = v * w`` (``w = 1`` for LNPre / RMSPre),
   ``s = sqrt(mean(c^2) + eps)`` and ``xhat = c / s``: LayerNorm (``c = x - mean(x)``)
   ``(u - mean(u) - xhat * mean(xhat * u)) / s``; RMSNorm (``c = x``)
   ``(u - xhat * mean(xhat * u)) / s``; no normalisation: ``v``;
5. an MLP's input gradient is read from a view of ``ln2``'s input (the MLP is its only
   reader); the final residual's from its wrapper, as in the exact path;
6. each destination block is one batched contraction ``[B, heads, pos*d] @ [B, pos*d,
   n_src]`` done as its gradient arrives in the backward pass; EAP-IG interpolates the
   input embedding and averages over ``alphas`` (1 first: that pass records the clean
   sources), exactly as the exact path.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .attribution import _accumulate, _run_passes, _SourceDiffs

__all__ = ["fast_attribute_batch", "supports_fast", "unsupported_reason", "plain_forward"]

_NORMS = {"LayerNorm": "ln", "LayerNormPre": "ln_pre", "RMSNorm": "rms",
          "RMSNormPre": "rms_pre", "Identity": "none"}
_SRC = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|attn\.hook_result|hook_mlp_out)$")
_DEST = re.compile(r"^blocks\.(\d+)\.(hook_[qkv]_input|hook_mlp_in|hook_resid_post)$")


# ----------------------------------------------------------------------------- support
def unsupported_reason(model: Any) -> Optional[str]:
    """Why :func:`fast_attribute_batch` cannot score ``model``, or ``None`` if it can."""
    tl = getattr(model, "wrapped_model", None)
    try:
        from transformer_lens import HookedTransformer
    except ImportError:  # pragma: no cover
        return "transformer_lens is not installed"
    if not isinstance(tl, HookedTransformer):
        return "the model does not wrap a TransformerLens HookedTransformer"
    cfg = tl.cfg
    checks = [
        (cfg.n_key_value_heads is not None,
         "grouped-query attention: repeat the K/V heads first (n_key_value_heads=None)"),
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
        (cfg.dtype not in (torch.float32, torch.float64),
         f"dtype {cfg.dtype} (supported: float32, float64)"),
        (not cfg.use_split_qkv_input or not cfg.use_attn_result,
         "auto-circuit's flags are not set (use dcd.make_patchable)"),
    ]
    for bad, why in checks:
        if bad:
            return why
    for block in tl.blocks:
        for name in ("ln1", "ln2"):
            ln = getattr(block, name, None)
            if ln is not None and type(ln).__name__ not in _NORMS:
                return f"unknown normalisation module {type(ln).__name__}"
    if any(w.patch_mode for w in model.wrappers):
        return "the model is in auto-circuit patch mode"
    for w in model.src_wrappers:
        if not _SRC.match(w.module_name):
            return f"unexpected source node {w.module_name}"
    for w in model.dest_wrappers:
        m = _DEST.match(w.module_name)
        if not m:
            return (f"unexpected destination node {w.module_name} (build the graph with "
                    "separate_qkv=True)")
        if m.group(2) == "hook_resid_post" and int(m.group(1)) != cfg.n_layers - 1:
            return f"unexpected destination node {w.module_name}"
    return None


def supports_fast(model: Any) -> bool:
    """Whether :func:`fast_attribute_batch` can score ``model`` (see :func:`unsupported_reason`)."""
    return unsupported_reason(model) is None


@contextmanager
def plain_forward(tl_model: Any) -> Iterator[Any]:
    """TransformerLens' per-head flags off (auto-circuit's wrappers bypassed), restored on exit."""
    cfg = tl_model.cfg
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


# ----------------------------------------------------------------------------- maths
def norm_vjp(kind: str, ln: Any, x: Tensor, v: Tensor) -> Tensor:
    """``J_norm(x)^T v`` for TransformerLens' normalisations; ``x`` broadcasts against ``v``.

    ``kind`` is ``"ln"``, ``"ln_pre"``, ``"rms"``, ``"rms_pre"`` or ``"none"``.
    """
    if kind == "none":
        return v
    u = v * ln.w.detach() if kind in ("ln", "rms") else v
    c = x - x.mean(-1, keepdim=True) if kind in ("ln", "ln_pre") else x
    s = (c.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()
    xhat = c / s
    g = (u - xhat * (xhat * u).mean(-1, keepdim=True)) / s
    if kind in ("ln", "ln_pre"):
        g = g - g.mean(-1, keepdim=True)
    return g


# ----------------------------------------------------------------------------- one batch
def fast_attribute_batch(
    model: Any, graph: Any, batch: Any, metric: Callable, alphas: Sequence[float],
) -> Tuple[Tensor, Tensor]:
    """Rows ``[B, n_edges]`` (float32) and clean metric ``[B]``; equal to ``_attribute_batch``.

    ``graph`` is an ``attribution._Graph`` of ``model``. Raises ``ValueError`` (with the
    reason) for models :func:`supports_fast` rejects.
    """
    why = unsupported_reason(model)
    if why is not None:
        raise ValueError(f"fast attribution does not support this model: {why}; "
                         "use the hooks backend")
    tl = model.wrapped_model
    head_src = {int(_SRC.match(w.module_name).group(1)): w.src_idxs
                for w in graph.srcs if w.module_name.endswith("attn.hook_result")}
    plain_srcs = [w for w in graph.srcs if not w.module_name.endswith("attn.hook_result")]
    diffs = _SourceDiffs(batch.clean.shape[0], graph.n_src)
    z_corrupt: Dict[int, Tensor] = {}

    def record_z(layer: int, sign: int) -> Callable:
        W_O = tl.blocks[layer].attn.W_O  # [H, d_head, d_model]

        def hook(module: Any, args: Any, z: Tensor) -> None:
            z = z.detach()
            if sign < 0:
                z_corrupt[layer] = z
                return
            dz = (z - z_corrupt.pop(layer)).permute(2, 0, 1, 3)  # [H, B, pos, d_head]
            h, b, p, e = dz.shape
            res = torch.bmm(dz.reshape(h, b * p, e), W_O.detach())  # [H, B*pos, d_model]
            # the embedding (recorded first in every forward) has allocated diffs.d
            diffs.d[:, head_src[layer]] = res.reshape(h, b, -1).transpose(0, 1)
        return hook

    def source_hooks(sign: int) -> List[Any]:
        return ([w.register_forward_hook(diffs.recorder(sign)) for w in plain_srcs]
                + [tl.blocks[l].attn.hook_z.register_forward_hook(record_z(l, sign))
                   for l in head_src])

    def dest_hooks(rows: Tensor, n_steps: int) -> List[Any]:
        return _dest_hooks(tl, graph, diffs, rows, n_steps)

    with plain_forward(tl):
        return _run_passes(model, graph, batch, metric, alphas, source_hooks, dest_hooks)


def _dest_hooks(tl: Any, graph: Any, diffs: _SourceDiffs, rows: Tensor,
                n_steps: int) -> List[Any]:
    """Forward hooks that attach, per destination, a gradient hook doing its contraction."""
    handles: List[Any] = []
    ln1_in: Dict[int, Tensor] = {}
    for wrapper, _shape, start, stop in graph.dests:
        layer_s, kind = _DEST.match(wrapper.module_name).groups()
        layer = int(layer_s)
        block = tl.blocks[layer]
        in_srcs = wrapper.in_srcs

        if kind == "hook_resid_post":
            def on_grad(grad: Tensor, start=start, stop=stop, in_srcs=in_srcs) -> None:
                _accumulate(rows, start, stop, grad.reshape(grad.shape[0], 1, -1),
                            diffs.d[:, in_srcs], n_steps)

            def fwd(module: Any, args: Any, out: Tensor, on_grad=on_grad) -> None:
                if out.requires_grad:
                    out.register_hook(on_grad)
            handles.append(wrapper.register_forward_hook(fwd))

        elif kind == "hook_mlp_in":
            def on_grad(grad: Tensor, start=start, stop=stop, in_srcs=in_srcs) -> None:
                _accumulate(rows, start, stop, grad.reshape(grad.shape[0], 1, -1),
                            diffs.d[:, in_srcs], n_steps)

            def pre(module: Any, args: Tuple[Any, ...], on_grad=on_grad) -> Any:
                x = args[0]
                if not x.requires_grad:
                    return None
                x = x.view_as(x)  # its gradient is the one through ln2 -> MLP only
                x.register_hook(on_grad)
                return (x,) + tuple(args[1:])
            handles.append(block.ln2.register_forward_pre_hook(pre))

        else:  # hook_q_input / hook_k_input / hook_v_input
            letter = kind[len("hook_")]
            attn = block.attn
            W = getattr(attn, f"W_{letter.upper()}")  # [H, d_model, d_head]
            norm_kind = _NORMS[type(block.ln1).__name__]
            if layer not in ln1_in:
                def keep_x(module: Any, args: Tuple[Any, ...], layer=layer) -> None:
                    ln1_in[layer] = args[0].detach()
                handles.append(block.ln1.register_forward_pre_hook(keep_x))

            def on_grad(grad: Tensor, start=start, stop=stop, in_srcs=in_srcs, W=W,
                        ln=block.ln1, norm_kind=norm_kind, layer=layer) -> None:
                # grad: [B, pos, H, d_head] -> d mu / d (ln1 output) per head
                v = torch.einsum("bphe,hde->bhpd", grad, W.detach())
                x = ln1_in[layer][:, None]  # [B, 1, pos, d_model]
                g = norm_vjp(norm_kind, ln, x, v)
                _accumulate(rows, start, stop, g.reshape(g.shape[0], g.shape[1], -1),
                            diffs.d[:, in_srcs], n_steps)

            def fwd(module: Any, args: Any, out: Tensor, on_grad=on_grad) -> None:
                if out.requires_grad:
                    out.register_hook(on_grad)
            handles.append(getattr(attn, f"hook_{letter}").register_forward_hook(fwd))
    return handles
