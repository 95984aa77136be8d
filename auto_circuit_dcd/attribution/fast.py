"""The fast attribution backend: per-example rows at about the cost of the plain model.

Same numbers as the hooks backend (:mod:`.hooks`), with TransformerLens' per-head flags
off (:func:`auto_circuit_dcd.model.forward.plain_forward`) and every quantity rebuilt from
the plain model. The passes are :func:`auto_circuit_dcd.attribution.passes.run_passes`
(EAP-IG's steps stacked along the batch dimension: every gradient hook below sees all the
steps of a stack at once):

1. sources, stored as ``diff [B, n_src, pos*d_model]`` in auto-circuit's ``src_idx``
   order: the embedding and each MLP output are read from their wrappers; head ``h``'s
   clean - corrupt difference is ``(z_clean - z_corrupt)_h @ W_O[h]``, one batched
   product per layer from ``hook_z`` (:func:`auto_circuit_dcd.model.forward.head_outputs`);
2. head ``h``'s Q input is its own copy ``x`` of the attention block's input
   (``resid_pre``) and ``q_h = ln1(x) @ W_Q[h] + b_Q[h]``, so
   ``d mu / d x = J_ln1(x)^T (W_Q[h] g_h)`` with ``g = d mu / d hook_q`` (taken before
   rotary). Summed over the steps in closed form (:class:`_HeadPullback`): one
   ``W_Q[h]`` product on ``sum_k g_k / s_k`` and two scalar-per-position corrections,
   instead of the norm's Jacobian applied per head and per step. Likewise for K and V;
3. an MLP's input gradient is read from a view of ``ln2``'s input (the MLP is its only
   reader); the final residual's (at the last position) from its wrapper;
4. each destination's gradient, summed over the steps, is contracted once with the
   source differences (:func:`auto_circuit_dcd.attribution.passes.contract`); a layer's
   Q, K and V, which read the same sources, in one product ``[B, 3 heads, pos*d] @
   [B, pos*d, n_src]`` (:class:`_LayerHeads`).

A float16 / bfloat16 model runs in its dtype; steps 1-4 upcast what they read (``z``,
``W_O``, ``W_Q/K/V``, ``ln1``'s input, ``hook_q``, every gradient) to float32 first
(:func:`auto_circuit_dcd.model.forward.accumulation_dtype`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.profiler import record_function

from auto_circuit_dcd.attribution.passes import SourceDiffs, accumulate, contract, run_passes
from auto_circuit_dcd.model.forward import (
    DEST_NODE,
    NORM_KINDS,
    SRC_NODE,
    WrapperGraph,
    accumulation_dtype,
    head_outputs,
    node_match,
    plain_forward,
    unsupported_reason,
)

__all__ = ["fast_attribute_batch"]


# ----------------------------------------------------------------------------- one batch
def fast_attribute_batch(
    model: Any, graph: WrapperGraph, batch: Any, metric: Callable, alphas: Sequence[float],
    max_stack_gib: float | None = None,
) -> tuple[Tensor, Tensor]:
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
    head_src = {int(node_match(SRC_NODE, w.module_name).group(1)): w.src_idxs
                for w in graph.srcs if w.module_name.endswith("attn.hook_result")}
    plain_srcs = [w for w in graph.srcs if not w.module_name.endswith("attn.hook_result")]
    diffs = SourceDiffs(batch.clean.shape[0], graph.n_src)
    z_corrupt: dict[int, Tensor] = {}
    acc = accumulation_dtype(tl.cfg.dtype)

    def record_z(layer: int, sign: int) -> Callable:
        W_O = tl.blocks[layer].attn.W_O  # [H, d_head, d_model]

        @record_function("attribution.source_diffs")
        def hook(module: Any, args: Any, z: Tensor) -> None:
            z = z.detach()
            if sign < 0:
                z_corrupt[layer] = z
                return
            dz = z[: diffs.bsz].to(acc) - z_corrupt.pop(layer).to(acc)
            out = head_outputs(dz, W_O)  # [B, H, pos, d_model], in acc
            # the embedding (recorded first in every forward) has allocated diffs.d
            d = diffs.recorded()
            d[:, head_src[layer]] = out.flatten(2).to(d.device)
        return hook

    def source_hooks(sign: int) -> list[Any]:
        return ([w.register_forward_hook(diffs.recorder(sign)) for w in plain_srcs]
                + [tl.blocks[l].attn.hook_z.register_forward_hook(record_z(l, sign))
                   for l in head_src])

    layers: list[_LayerHeads] = []

    def dest_hooks(rows: Tensor, n_steps: int) -> list[Any]:
        return _dest_hooks(tl, graph, diffs, rows, n_steps, layers)

    with plain_forward(tl):
        out = run_passes(model, graph, batch, metric, alphas, source_hooks, dest_hooks,
                         max_stack_gib)
    if any(layer.arrived for layer in layers):  # never expected: q, k and v all reach mu
        raise RuntimeError("a layer's Q/K/V gradients arrived only in part; its rows "
                           "would be incomplete")
    return out


def _dest_hooks(tl: Any, graph: WrapperGraph, diffs: SourceDiffs, rows: Tensor,
                n_steps: int, layers: list[_LayerHeads]) -> list[Any]:
    """Forward hooks that attach, per destination, a gradient hook doing its contraction
    (a layer's Q, K and V one together: ``layers`` gets their :class:`_LayerHeads`)."""
    handles: list[Any] = []
    heads: dict[int, _LayerHeads] = {}
    for wrapper, _shape, start, stop in graph.dests:
        layer_s, kind = node_match(DEST_NODE, wrapper.module_name).groups()
        layer = int(layer_s)
        block = tl.blocks[layer]
        in_srcs = wrapper.in_srcs

        if kind == "hook_resid_post":
            def on_grad(grad: Tensor, start=start, stop=stop, in_srcs=in_srcs) -> None:
                accumulate(rows, start, stop, grad.reshape(grad.shape[0], 1, -1),
                           diffs.recorded()[:, in_srcs], n_steps)

            def fwd(module: Any, args: Any, out: Tensor, on_grad=on_grad) -> None:
                if out.requires_grad:
                    out.register_hook(on_grad)
            handles.append(wrapper.register_forward_hook(fwd))

        elif kind == "hook_mlp_in":
            def on_grad(grad: Tensor, start=start, stop=stop, in_srcs=in_srcs) -> None:
                accumulate(rows, start, stop, grad.reshape(grad.shape[0], 1, -1),
                           diffs.recorded()[:, in_srcs], n_steps)

            def pre(module: Any, args: tuple[Any, ...], on_grad=on_grad) -> Any:
                x = args[0]
                if not x.requires_grad:
                    return None
                x = x.view_as(x)  # its gradient is the one through ln2 -> MLP only
                x.register_hook(on_grad)
                return (x,) + tuple(args[1:])
            handles.append(block.ln2.register_forward_pre_hook(pre))

        else:  # hook_q_input / hook_k_input / hook_v_input
            if layer not in heads:
                heads[layer] = _LayerHeads(block.ln1, diffs, in_srcs, rows, n_steps)
                layers.append(heads[layer])
                handles.append(block.ln1.register_forward_pre_hook(heads[layer].keep))
            letter = kind[len("hook_")]
            on_grad = heads[layer].add(letter, _HeadPullback(heads[layer], block, letter),
                                       start, stop)

            def fwd(module: Any, args: Any, out: Tensor, on_grad=on_grad) -> None:
                if out.requires_grad:
                    proj = out.detach()
                    out.register_hook(lambda grad: on_grad(grad, proj))
            handles.append(getattr(block.attn, f"hook_{letter}").register_forward_hook(fwd))
    return handles


class _LayerHeads:
    """A layer's Q/K/V destinations in one stacked pass.

    Keeps ``ln1``'s input (a forward pre-hook) and, computed once in the backward for the
    layer's Q, K and V, ``1 / s`` and ``xhat``: ``s = sqrt(mean(c^2) + eps)``,
    ``xhat = c / s``, ``c = x - mean(x)`` (LayerNorm kinds) or ``x`` (RMSNorm kinds), in
    the accumulation dtype; ``xhat`` laid out ``[B*pos, S (+1), d_model]`` (copy ``k`` of
    the stack in row ``k``; a row of ones last for the LayerNorm kinds, whose mean term it
    carries). Each letter's pulled-back gradient (summed over the steps) is written into
    one buffer ``[B, letters*H, pos*d_model]``; when the last arrives, the three share one
    contraction with the layer's source differences (same sources for Q, K and V).
    """

    def __init__(self, ln: Any, diffs: SourceDiffs, in_srcs: slice, rows: Tensor,
                 n_steps: int):
        self.ln, self.diffs, self.in_srcs = ln, diffs, in_srcs
        self.rows, self.n_steps = rows, n_steps
        self.bsz = diffs.bsz
        self.kind = NORM_KINDS[type(ln).__name__]
        self.centred = self.kind in ("ln", "ln_pre")
        self.x: Tensor | None = None
        self.stats: tuple[Tensor, Tensor] | None = None
        self.spans: list[tuple[int, int]] = []
        self.buf: Tensor | None = None
        self.arrived = 0

    def keep(self, module: Any, args: tuple[Any, ...]) -> None:
        """Forward pre-hook on ``ln1`` (TransformerLens calls it once per Q/K/V input)."""
        self.x, self.stats = args[0].detach(), None

    def add(self, letter: str, pull: _HeadPullback, start: int, stop: int) -> Callable:
        """A gradient hook ``(grad, proj)`` for ``letter``'s ``hook_q``/``k``/``v``."""
        i = len(self.spans)
        self.spans.append((start, stop))

        def on_grad(grad: Tensor, proj: Tensor) -> None:
            n, pos, heads, _ = grad.shape
            if self.buf is None:
                self.buf = torch.empty(self.bsz, len(self.spans) * heads, pos * pull.d_model,
                                       dtype=pull.acc, device=grad.device)
            out = self.buf[:, i * heads:(i + 1) * heads].view(self.bsz, heads, pos, -1)
            with record_function("attribution.head_pullback"):
                pull(grad, proj, out)
            self.arrived += 1
            if self.arrived == len(self.spans):
                self._contract(heads)
        return on_grad

    def _contract(self, heads: int) -> None:
        assert self.buf is not None, "the first letter's gradient allocates buf"
        # [B, letters*H, n_in]
        block = contract(self.buf, self.diffs.recorded()[:, self.in_srcs])
        block = block.to(self.rows.device, self.rows.dtype)
        for i, (start, stop) in enumerate(self.spans):
            part = block[:, i * heads:(i + 1) * heads].reshape(self.bsz, -1)
            self.rows[:, start:stop] += part / self.n_steps
        self.buf, self.arrived, self.x, self.stats = None, 0, None, None

    @record_function("attribution.norm_stats")
    def inv_s_and_xhat(self, acc: torch.dtype) -> tuple[Tensor, Tensor]:
        if self.stats is None:
            assert self.x is not None
            x = self.x.to(acc)
            n, pos, d = x.shape
            copies = n // self.bsz
            c = x - x.mean(-1, keepdim=True) if self.centred else x
            inv_s = torch.rsqrt(c.pow(2).mean(-1, keepdim=True) + self.ln.eps)  # [n, pos, 1]
            xhat = (c * inv_s).view(copies, self.bsz * pos, d).transpose(0, 1)
            if self.centred:
                ones = torch.ones(self.bsz * pos, 1, d, dtype=acc, device=x.device)
                xhat = torch.cat([xhat, ones], dim=1)
            self.stats = (inv_s.view(copies, self.bsz, pos, 1, 1), xhat.contiguous())
        return self.stats


class _HeadPullback:
    """``sum_k d mu / d x_h`` at the steps ``k`` of a stack, for every head ``h`` of one of a
    layer's Q, K or V: the destination gradient summed over the steps, built once.

    Head ``h``'s input ``x`` (its own copy of the attention block's input) enters through
    ``q_h = ln1(x) @ W[h] + b[h]``. With ``g_k`` the gradient at ``hook_q`` (before rotary)
    at step ``k``, ``W' = w * W`` (``ln1``'s weight folded in; ``W`` for the ``_pre`` norms)
    and ``u_k = W' g_k``, the norm's Jacobian gives
    ``d mu / d x = (u_k - mean(u_k) - xhat_k mean(xhat_k * u_k)) / s_k`` (no ``mean(u_k)``
    for RMSNorm, ``W g_k`` without a norm). Summed over ``k``:

    - ``sum_k u_k / s_k = W' (sum_k g_k / s_k)``: one product per stack, not per step;
    - ``mean(u_k) = g_k . mean_d(W')`` and ``mean(xhat_k * u_k) = g_k . (q_k - c) / d_model``
      (``xhat_k @ W' = q_k - c``, ``c = b + b_ln @ W``), scalars per position: the two
      correction terms are one small product ``[heads, S+1] @ [S+1, d_model]`` per position.

    The same numbers as :func:`~auto_circuit_dcd.model.forward.norm_vjp` applied to every
    step and summed, at a fraction of its cost.
    """

    def __init__(self, norm: _LayerHeads, block: Any, letter: str):
        attn = block.attn
        self.norm = norm
        self.acc = acc = accumulation_dtype(attn.W_Q.dtype)
        self.d_model = attn.W_Q.shape[1]
        W = getattr(attn, f"W_{letter.upper()}").detach().to(acc)  # [H, d_model, d_head]
        b = getattr(attn, f"b_{letter.upper()}").detach().to(acc)  # [H, d_head]
        kind = norm.kind
        if kind in ("ln", "rms"):
            w = norm.ln.w.detach().to(acc)
            self.W = W * w[None, :, None]
        else:
            self.W = W
        if kind == "ln":
            b = b + torch.einsum("d,hde->he", norm.ln.b.detach().to(acc), W)
        self.c = b
        self.W_mean = self.W.mean(1) if norm.centred else None  # [H, d_head]

    def __call__(self, grad: Tensor, proj: Tensor, out: Tensor) -> None:
        """Writes ``out [B, H, pos, d_model]`` from ``grad`` and ``proj`` (``hook_q``'s
        output), both ``[S*B, pos, H, d_head]``."""
        bsz = self.norm.bsz
        n, pos, heads, e = grad.shape
        copies = n // bsz
        g = grad.to(self.acc).reshape(copies, bsz, pos, heads, e)
        if self.norm.kind == "none":
            out.copy_(torch.einsum("bphe,hde->bhpd", g.sum(0), self.W))
            return
        inv_s, xhat = self.norm.inv_s_and_xhat(self.acc)
        d = xhat.shape[-1]
        gs = g * inv_s
        G = gs.sum(0)  # [B, pos, H, e]
        q = proj.to(self.acc).reshape(copies, bsz, pos, heads, e) - self.c
        coef = (gs * q).sum(-1).div_(-d)  # [S, B, pos, H]
        if self.W_mean is not None:
            coef = torch.cat([coef, -(G * self.W_mean).sum(-1)[None]])
        coef = coef.permute(1, 2, 3, 0).reshape(bsz * pos, heads, -1)
        corr = torch.bmm(coef, xhat).view(bsz, pos, heads, d)
        U = torch.einsum("bphe,hde->bphd", G, self.W)
        torch.add(U.transpose(1, 2), corr.transpose(1, 2), out=out)
