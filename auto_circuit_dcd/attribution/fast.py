"""The fast attribution backend: per-example rows at about the cost of the plain model.

Same numbers as the hooks backend (:mod:`.hooks_attribution`), with TransformerLens'
per-head flags off (:func:`auto_circuit_dcd.model.forward.plain_forward`) and every quantity
rebuilt from the plain model:

1. sources, stored as ``diff [B, n_src, pos*d_model]`` in auto-circuit's ``src_idx``
   order: the embedding and each MLP output are read from their wrappers; head ``h``'s
   clean - corrupt difference is ``(z_clean - z_corrupt)_h @ W_O[h]``, one batched
   product per layer from ``hook_z`` (:func:`auto_circuit_dcd.model.forward.head_outputs`);
2. head ``h``'s Q input is its own copy ``x`` of the attention block's input
   (``resid_pre``) and ``q_h = ln1(x) @ W_Q[h] + b_Q[h]``, so
   ``d mu / d x = J_ln1(x)^T (W_Q[h] g_h)`` with ``g = d mu / d hook_q`` (taken before
   rotary; :func:`auto_circuit_dcd.model.forward.norm_vjp`). Likewise for K and V;
3. an MLP's input gradient is read from a view of ``ln2``'s input (the MLP is its only
   reader); the final residual's from its wrapper, as in the hooks backend;
4. each destination block is one batched contraction ``[B, heads, pos*d] @ [B, pos*d,
   n_src]`` done as its gradient arrives (:func:`auto_circuit_dcd.attribution.passes.accumulate`);
   the passes themselves are :func:`auto_circuit_dcd.attribution.passes.run_passes`.

A float16 / bfloat16 model runs in its dtype; steps 1-4 upcast what they read (``z``,
``W_O``, ``W_Q/K/V``, ``ln1``'s input, every gradient) to float32 first
(:func:`auto_circuit_dcd.model.forward.accumulation_dtype`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from auto_circuit_dcd.model.forward import (DEST_NODE, NORM_KINDS, SRC_NODE, WrapperGraph, accumulation_dtype,
                      head_outputs, norm_vjp, plain_forward, unsupported_reason)
from auto_circuit_dcd.attribution.passes import SourceDiffs, accumulate, run_passes

__all__ = ["fast_attribute_batch"]


# ----------------------------------------------------------------------------- one batch
def fast_attribute_batch(
    model: Any, graph: WrapperGraph, batch: Any, metric: Callable, alphas: Sequence[float],
) -> Tuple[Tensor, Tensor]:
    """Rows ``[B, n_edges]`` (float32) and clean metric ``[B]``; equal to the hooks backend's.

    ``graph`` is the :class:`~auto_circuit_dcd.model.forward.WrapperGraph` of ``model``. Raises
    ``ValueError`` (with the reason) for models
    :func:`~auto_circuit_dcd.model.forward.unsupported_reason` rejects.
    """
    why = unsupported_reason(model)
    if why is not None:
        raise ValueError(f"fast attribution does not support this model: {why}; "
                         "use the hooks backend")
    tl = model.wrapped_model
    head_src = {int(SRC_NODE.match(w.module_name).group(1)): w.src_idxs
                for w in graph.srcs if w.module_name.endswith("attn.hook_result")}
    plain_srcs = [w for w in graph.srcs if not w.module_name.endswith("attn.hook_result")]
    diffs = SourceDiffs(batch.clean.shape[0], graph.n_src)
    z_corrupt: Dict[int, Tensor] = {}
    acc = accumulation_dtype(tl.cfg.dtype)

    def record_z(layer: int, sign: int) -> Callable:
        W_O = tl.blocks[layer].attn.W_O  # [H, d_head, d_model]

        def hook(module: Any, args: Any, z: Tensor) -> None:
            z = z.detach()
            if sign < 0:
                z_corrupt[layer] = z
                return
            dz = z.to(acc) - z_corrupt.pop(layer).to(acc)
            out = head_outputs(dz, W_O)  # [B, H, pos, d_model], in acc
            # the embedding (recorded first in every forward) has allocated diffs.d
            diffs.d[:, head_src[layer]] = out.flatten(2).to(diffs.d.device)
        return hook

    def source_hooks(sign: int) -> List[Any]:
        return ([w.register_forward_hook(diffs.recorder(sign)) for w in plain_srcs]
                + [tl.blocks[l].attn.hook_z.register_forward_hook(record_z(l, sign))
                   for l in head_src])

    def dest_hooks(rows: Tensor, n_steps: int) -> List[Any]:
        return _dest_hooks(tl, graph, diffs, rows, n_steps)

    with plain_forward(tl):
        return run_passes(model, graph, batch, metric, alphas, source_hooks, dest_hooks)


def _dest_hooks(tl: Any, graph: WrapperGraph, diffs: SourceDiffs, rows: Tensor,
                n_steps: int) -> List[Any]:
    """Forward hooks that attach, per destination, a gradient hook doing its contraction."""
    handles: List[Any] = []
    ln1_in: Dict[int, Tensor] = {}
    acc = accumulation_dtype(tl.cfg.dtype)
    for wrapper, _shape, start, stop in graph.dests:
        layer_s, kind = DEST_NODE.match(wrapper.module_name).groups()
        layer = int(layer_s)
        block = tl.blocks[layer]
        in_srcs = wrapper.in_srcs

        if kind == "hook_resid_post":
            def on_grad(grad: Tensor, start=start, stop=stop, in_srcs=in_srcs) -> None:
                accumulate(rows, start, stop, grad.reshape(grad.shape[0], 1, -1),
                           diffs.d[:, in_srcs], n_steps)

            def fwd(module: Any, args: Any, out: Tensor, on_grad=on_grad) -> None:
                if out.requires_grad:
                    out.register_hook(on_grad)
            handles.append(wrapper.register_forward_hook(fwd))

        elif kind == "hook_mlp_in":
            def on_grad(grad: Tensor, start=start, stop=stop, in_srcs=in_srcs) -> None:
                accumulate(rows, start, stop, grad.reshape(grad.shape[0], 1, -1),
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
            norm_kind = NORM_KINDS[type(block.ln1).__name__]
            if layer not in ln1_in:
                def keep_x(module: Any, args: Tuple[Any, ...], layer=layer) -> None:
                    ln1_in[layer] = args[0].detach().to(acc)
                handles.append(block.ln1.register_forward_pre_hook(keep_x))

            def on_grad(grad: Tensor, start=start, stop=stop, in_srcs=in_srcs, W=W,
                        ln=block.ln1, norm_kind=norm_kind, layer=layer) -> None:
                # grad: [B, pos, H, d_head] -> d mu / d (ln1 output) per head
                v = torch.einsum("bphe,hde->bhpd", grad.to(acc), W.detach().to(acc))
                x = ln1_in[layer][:, None]  # [B, 1, pos, d_model]
                g = norm_vjp(norm_kind, ln, x, v)
                accumulate(rows, start, stop, g.reshape(g.shape[0], g.shape[1], -1),
                           diffs.d[:, in_srcs], n_steps)

            def fwd(module: Any, args: Any, out: Tensor, on_grad=on_grad) -> None:
                if out.requires_grad:
                    out.register_hook(on_grad)
            handles.append(getattr(attn, f"hook_{letter}").register_forward_hook(fwd))
    return handles
