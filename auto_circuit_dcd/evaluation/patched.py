"""The flag-free patched forward: a circuit's faithfulness at about a plain forward's cost.

auto-circuit's TREE_PATCH gives each destination ``d`` (a head's Q, K or V input, an MLP's
input, the final residual) the input

    x_d = x_cur + sum_{s -> d not in C} (patch_s - out_s)

with ``x_cur`` the input ``d`` has in the current (patched) run, ``out_s`` source ``s``'s
output in that run and ``patch_s`` its ablation value. With ``D_s = out_s - patch_s`` and
``S_d`` the sum of ``D_s`` over all of ``d``'s input sources, this is also
``x_d = (x_cur - S_d) + sum_{s -> d in C} D_s``. Per destination module and circuit, the
form with fewer edges is used: *sparse* (circuit edges, base ``x_cur - S_d``) or
*complement* (edges outside the circuit, base ``x_cur``). A circuit's plan
(:meth:`PatchedForward.plan`) holds, per layer, the rows (heads) that get a correction, the
source columns they read and their 0/+-1 weights.

One patched pass evaluates a stack of circuits (copies of the batch along the batch
dimension, copy ``c`` patched by circuit ``c``) with the plain model (TransformerLens'
per-head flags off) and hooks:

1. sources: ``D_s`` for the sources some plan of the stack reads (a head's output
   ``z_h @ W_O[h]`` from ``hook_z``, one batched product per layer), and the running sum
   of ``D`` over all sources (a layer's heads together, from ``hook_attn_out - b_O``);
2. attention of layer ``l``: its normalised Q/K/V inputs become ``ln1(base)`` per copy;
   each head with a correction gets its own input ``base + W @ D`` (one matrix product
   per copy over its rows and source columns, the MLP's row from the same sources
   included, so ``D`` is read once per layer), normalised and projected with its own
   ``W_Q``/``W_K``/``W_V``; the attention's Q/K/V projection (TransformerLens'
   ``calculate_qkv_matrices``, replaced for the pass) projects the shared input only for
   the heads of each copy without an input of their own, so no head is projected twice
   (then ``hook_q``/``hook_k``/``hook_v``, rotary and the rest of the attention as usual);
3. an MLP's input: ``ln2``'s input replaced per copy (the row from step 2 plus its own
   layer's heads);
4. the final residual: its last position only (the metric reads nothing else), corrected;
   ``ln_final`` and the unembedding then run on one position.

Corrections are accumulated in float32 (float64 for float64 models) and cast to the
model's dtype. :func:`fast_metrics` is the evaluation backend built on it: per batch the
fixed work (patch activations, the clean run, the empty circuit) once, then the distinct
circuits in stacks bounded by a memory cap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from auto_circuit_dcd.evaluation.ablation import Sources, dataset_mean, patch_values
from auto_circuit_dcd.evaluation.mask_metrics import MaskMetrics, progress_bar
from auto_circuit_dcd.model.forward import (
    DEST_NODE,
    SRC_NODE,
    WrapperGraph,
    head_outputs,
    last_position_only,
    node_match,
    plain_forward,
    removing,
    source_outputs,
    stack_cap_bytes,
    unsupported_reason,
)
from auto_circuit_dcd.model.task_metric import metric_values

__all__ = ["PatchedForward", "CircuitPlan", "BatchPatch", "fast_metrics",
           "fast_unsupported_reason", "DEFAULT_CPU_STACK_GIB"]

_LETTERS = ("q", "k", "v")
#: sources whose slots span at most this many times their number are read as one slice
_PAD_RATIO = 2.0
#: default memory cap of one stacked pass on the CPU (GiB); on a GPU a quarter of the free
#: memory is used
DEFAULT_CPU_STACK_GIB = 1.0


def fast_unsupported_reason(model: Any) -> str | None:
    """Why the flag-free patched forward cannot evaluate ``model``, or ``None``."""
    why = unsupported_reason(model)
    if why is not None:
        return why
    if getattr(model, "kv_caches", None) is not None:
        return "the model carries auto-circuit KV caches (tail_divergence)"
    if any(w.in_srcs.start != 0 for w in model.dest_wrappers):
        return "a destination does not read every earlier source (not a factorized graph)"
    from transformer_lens.components.abstract_attention import AbstractAttention

    for block in model.wrapped_model.blocks:
        if type(block.attn).calculate_qkv_matrices is not AbstractAttention.calculate_qkv_matrices:
            return (f"the attention class {type(block.attn).__name__} computes Q/K/V its own "
                    "way")
    return None


class _Override:
    """``setattr(obj, name, fn)`` (an instance attribute shadowing the class's method)
    until :meth:`remove`: a hook handle for :func:`removing`."""

    def __init__(self, obj: Any, name: str, fn: Any):
        self.obj, self.name = obj, name
        setattr(obj, name, fn)

    def remove(self) -> None:
        if self.name in vars(self.obj):
            delattr(self.obj, self.name)


# ----------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class _Block:
    """One layer's destinations of one kind (Q/K/V together, an MLP, the final residual).

    ``sparse[j]``: form of destination module ``j`` (Q, K, V, or the only one); its rows
    come ``counts[j]`` at a time, in module order; row ``r`` is head ``head[r]`` and gets
    the input ``base + weight[r] @ D[srcs]``.
    """

    sparse: tuple[bool, ...]
    counts: tuple[int, ...]
    head: Tensor     # long [r], CPU
    srcs: Tensor     # long [u] source indices (sorted), on the model's device
    srcs_cpu: Tensor
    weight: Tensor   # [r, u], +1 (sparse form) / -1 (complement form) where an edge is used

    @property
    def n_rows(self) -> int:
        return int(self.head.shape[0])


def _block(masks: Sequence[Tensor], in_start: int, dtype: torch.dtype,
           device: torch.device, forms: Sequence[bool | None] | None = None) -> _Block:
    """The plan of destination modules whose circuit masks are ``masks[j] [rows, n_in]``
    (columns = sources ``in_start ..``); ``forms[j]`` imposes module ``j``'s form."""
    sparse: list[bool] = []
    used: list[Tensor] = []
    head: list[Tensor] = []
    sign: list[Tensor] = []
    for j, m in enumerate(masks):
        form = forms[j] if forms is not None else None
        sp = form if form is not None else 2 * int(m.sum()) <= m.numel()
        u = m if sp else ~m
        rows = u.any(1).nonzero().flatten()
        sparse.append(sp)
        used.append(u[rows])
        head.append(rows)
        sign.append(torch.full((len(rows),), 1.0 if sp else -1.0, dtype=torch.float64))
    rows_used = torch.cat(used)
    cols = rows_used.any(0).nonzero().flatten()
    weight = rows_used[:, cols].to(torch.float64) * torch.cat(sign)[:, None]
    srcs, heads = cols + in_start, torch.cat(head)
    return _Block(tuple(sparse), tuple(len(h) for h in head), heads, srcs.to(device), srcs,
                  weight.to(dtype=dtype, device=device))


@dataclass(frozen=True)
class CircuitPlan:
    """How one circuit's patched inputs are built: per layer the attention block and the
    MLP block, the final residual's block, and every source index they read."""

    attn: tuple[_Block, ...]           # Q, K, V and the MLP's edges from earlier layers
    mlp: tuple[_Block | None, ...]  # the MLP's edges from its own layer's heads
    out: _Block
    needed: Tensor  # long, sorted


@dataclass(frozen=True)
class BatchPatch:
    """A batch's patch activations ``flat [n_src, B*pos*d]`` (accumulation dtype) and the
    sum of each layer's head rows, shared by every pass over that batch."""

    flat: Tensor
    head_sum: tuple[Tensor, ...]
    batch: int
    pos: int


class PatchedForward:
    """auto-circuit's TREE_PATCH forward of one ``PatchableModel``, without the flags.

    Raises ``ValueError`` for models :func:`fast_unsupported_reason` rejects.
    """

    def __init__(self, model: Any, graph: WrapperGraph | None = None):
        why = fast_unsupported_reason(model)
        if why is not None:
            raise ValueError(f"the flag-free patched forward does not support this model: "
                             f"{why}; use backend='patch-mode'")
        self.model = model
        self.graph = graph or WrapperGraph(model)
        self.tl = model.wrapped_model
        cfg = self.tl.cfg
        self.n_layers, self.n_heads, self.d = cfg.n_layers, cfg.n_heads, cfg.d_model
        self.dtype = cfg.dtype
        self.acc = torch.promote_types(cfg.dtype, torch.float32)
        self.device = next(self.tl.parameters()).device
        self.n_src = self.graph.n_src
        self.heads: list[slice] = [slice(0, 0)] * self.n_layers
        self.mlp_src: list[int | None] = [None] * self.n_layers
        self.embed_src = self.graph.input_wrapper.src_idxs.start
        for w in self.graph.srcs:
            layer, kind = node_match(SRC_NODE, w.module_name).groups()
            if kind == "attn.hook_result":
                self.heads[int(layer)] = w.src_idxs
            elif kind == "hook_mlp_out":
                self.mlp_src[int(layer)] = w.src_idxs.start
        # destination blocks: name -> (edge columns start, stop, mask shape, sources read)
        self.dest: dict[tuple[str, int], tuple[int, int, tuple[int, ...], slice]] = {}
        for w, shape, a, b in self.graph.dests:
            layer, kind = node_match(DEST_NODE, w.module_name).groups()
            self.dest[(kind, int(layer))] = (a, b, tuple(shape), w.in_srcs)
        self.attn_stop = [self.dest[("hook_q_input", l)][3].stop for l in range(self.n_layers)]
        self.mlp_stop = [self.dest[("hook_mlp_in", l)][3].stop if ("hook_mlp_in", l) in self.dest
                         else None for l in range(self.n_layers)]
        self.n_edges = self.graph.layout.n_edges

    # --------------------------------------------------------------------- plans
    def plan(self, in_circuit: Tensor) -> CircuitPlan:
        """The plan of the circuit whose edges are ``in_circuit [n_edges]`` (bool, package
        order)."""
        in_circuit = torch.as_tensor(in_circuit).to(torch.bool).cpu()
        if in_circuit.shape != (self.n_edges,):
            raise ValueError(f"a circuit needs {self.n_edges} booleans (one per edge in "
                             f"sorted_edges order); got shape {tuple(in_circuit.shape)}")

        def masks(kind: str, layer: int) -> tuple[Tensor, int]:
            a, b, shape, in_srcs = self.dest[(kind, layer)]
            return in_circuit[a:b].reshape(-1, shape[-1]), in_srcs.start

        attn: list[_Block] = []
        mlp: list[_Block | None] = []
        for l in range(self.n_layers):
            parts = [masks(f"hook_{x}_input", l) for x in _LETTERS]
            ms = [m for m, _ in parts]
            forms: list[bool | None] = [None, None, None]
            start = parts[0][1]
            if ("hook_mlp_in", l) in self.dest:
                # the MLP's edges from sources before the attention join the attention's
                # product (one read of D per layer); those from the layer's own heads
                # (absent in parallel blocks) are added at the MLP
                m, m_start = masks("hook_mlp_in", l)
                split = self.attn_stop[l] - m_start
                form = 2 * int(m.sum()) <= m.numel()
                ms.append(m[:, :split])
                forms.append(form)
                mlp.append(_block([m[:, split:]], self.attn_stop[l], self.acc, self.device,
                                  forms=[form]))
            else:
                mlp.append(None)
            attn.append(_block(ms, start, self.acc, self.device, forms=forms))
        m, start = masks("hook_resid_post", self.n_layers - 1)
        out = _block([m], start, self.acc, self.device)
        blocks = attn + [b for b in mlp if b is not None] + [out]
        needed = torch.unique(torch.cat([b.srcs_cpu for b in blocks]))
        return CircuitPlan(tuple(attn), tuple(mlp), out, needed)

    def batch_patch(self, patch: Tensor) -> BatchPatch:
        """The per-batch fixed part of every pass from patch activations ``[n_src, B, pos, d]``."""
        n_src, b, pos, d = patch.shape
        flat = patch.to(device=self.device, dtype=self.acc).reshape(n_src, b * pos * d)
        head_sum = tuple(flat[s].sum(0) for s in self.heads)
        return BatchPatch(flat, head_sum, b, pos)

    # --------------------------------------------------------------------- passes
    def clean_logits(self, tokens: Tensor) -> Tensor:
        """Last-position logits ``[B, vocab]`` of the unpatched model (flags off)."""
        with plain_forward(self.tl), removing([last_position_only(self.graph)]), \
                torch.inference_mode():
            return self.tl(tokens.to(self.device))[:, -1]

    def sources(self) -> Sources:
        """The flag-free reader of every source's output (:func:`source_outputs`)."""
        return Sources(read=lambda t: source_outputs(self.model, self.graph, t.to(self.device)),
                       n_src=self.n_src, d_model=self.d, dtype=self.dtype, device=self.device)

    def logits(self, tokens: Tensor, patch: BatchPatch, plans: Sequence[CircuitPlan]) -> Tensor:
        """Last-position logits ``[len(plans) * B, vocab]`` of the stack of circuits ``plans``
        (copy ``c`` = rows ``c*B .. (c+1)*B``) on the clean ``tokens [B, pos]``."""
        if tuple(tokens.shape) != (patch.batch, patch.pos):
            raise ValueError(f"tokens {tuple(tokens.shape)} do not match the patch "
                             f"activations' batch ({patch.batch}, {patch.pos})")
        n_c = len(plans)
        stacked = tokens.to(self.device).repeat(n_c, 1)
        run = _Pass(self, list(plans), patch)
        with plain_forward(self.tl), removing(run.hooks()), torch.inference_mode():
            return self.tl(stacked)[:, -1]

    def stack_bytes(self, n_copies: int, n_needed: int, batch: int, pos: int) -> int:
        """Estimated working memory of one pass: ``D`` of the needed sources, the running
        sum and per-head inputs, one layer's activations, last-position logits."""
        cfg = self.tl.cfg
        acc = torch.finfo(self.acc).bits // 8
        elem = torch.finfo(self.dtype).bits // 8
        d_mlp = cfg.d_mlp or 0
        per_token = (acc * (n_needed + 4 + 6 * self.n_heads) * self.d
                     + elem * (8 * self.d + 3 * d_mlp + 2 * self.n_heads * pos
                               + 5 * self.n_heads * cfg.d_head))
        return int(n_copies * (batch * pos * per_token + batch * cfg.d_vocab * 4))


def _cap_bytes(pf: PatchedForward, max_stack_gib: float | None) -> int:
    return stack_cap_bytes(pf.device, max_stack_gib, DEFAULT_CPU_STACK_GIB)


def stacks(pf: PatchedForward, plans: Sequence[CircuitPlan], batch: int, pos: int,
           cap: int) -> list[list[int]]:
    """Consecutive groups of plan indices whose pass fits ``cap`` bytes (at least one each)."""
    out: list[list[int]] = []
    cur: list[int] = []
    needed: Tensor | None = None
    for i, p in enumerate(plans):
        union = p.needed if needed is None else torch.unique(torch.cat([needed, p.needed]))
        if cur and pf.stack_bytes(len(cur) + 1, len(union), batch, pos) > cap:
            out.append(cur)
            cur, union = [], p.needed
        cur.append(i)
        needed = union
    if cur:
        out.append(cur)
    return out


# ----------------------------------------------------------------------------- one pass
class _Pass:
    """The state of one stacked patched forward, filled by its hooks as the model runs."""

    def __init__(self, pf: PatchedForward, plans: list[CircuitPlan], patch: BatchPatch):
        self.pf, self.plans, self.patch = pf, plans, patch
        self.n_c, self.b, self.pos = len(plans), patch.batch, patch.pos
        needed = torch.unique(torch.cat([p.needed for p in plans]))
        self.slot_of = torch.full((pf.n_src,), -1, dtype=torch.long)
        self.slot_of[needed] = torch.arange(len(needed))
        self.needed = needed
        bpd = self.b * self.pos * pf.d
        self.D = torch.empty(self.n_c, len(needed), bpd, dtype=pf.acc, device=pf.device)
        self.S = torch.zeros(self.n_c * self.b, self.pos, pf.d, dtype=pf.acc, device=pf.device)
        self.added = 0
        self.pending: deque[tuple[int, int, Tensor]] = deque()
        self.x_attn: Tensor | None = None
        #: per letter: the copies, heads, own-input mask and normed inputs of the rows with
        #: an input of their own
        self.head_inputs: dict[int, tuple[Tensor, Tensor, Tensor, Tensor]] = {}
        self.mlp_early: dict[int, Tensor] = {}

    # ------------------------------------------------------------------ helpers
    def rows(self, c: int) -> slice:
        return slice(c * self.b, (c + 1) * self.b)

    def prefix(self, stop: int) -> Tensor:
        """The running sum of ``D`` over sources ``0 .. stop-1``."""
        while self.pending and self.pending[0][1] <= stop:
            a, b, chunk = self.pending.popleft()
            assert a == self.added, (a, self.added)
            self.S += chunk
            self.added = b
        if self.added != stop:
            raise RuntimeError(f"sources 0..{stop - 1} expected before this destination; "
                               f"{self.added} recorded")
        return self.S

    def source(self, idx: int, dv: Tensor) -> None:
        """Record ``D`` of source ``idx`` (``dv [n_c, 1, B*pos*d]``) if a plan reads it."""
        slot = int(self.slot_of[idx])
        if slot >= 0:
            self.D[:, slot:slot + 1] = dv

    def correction(self, c: int, blk: _Block, last_only: bool = False) -> Tensor:
        """``weight @ D[srcs]`` of copy ``c``: ``[r, B, pos, d]`` (``[r, B, d]`` if last_only).

        The sources are read as one slice of ``D`` when their slots are (nearly) one range,
        the weights padded with zeros: a copy of the rows costs about as much as the product.
        """
        slots = self.slot_of[blk.srcs_cpu]
        lo, hi = int(slots[0]), int(slots[-1]) + 1
        if hi - lo <= _PAD_RATIO * len(slots):
            w = blk.weight
            if hi - lo > len(slots):
                w = torch.zeros(blk.n_rows, hi - lo, dtype=w.dtype, device=w.device)
                w[:, (slots - lo).to(w.device)] = blk.weight
            d = self.D[c, lo:hi]
            if last_only:
                d = d.view(hi - lo, self.b, self.pos, -1)[:, :, -1]
        else:
            w = blk.weight
            d = self.D[c]
            if last_only:
                d = d.view(d.shape[0], self.b, self.pos, -1)[:, :, -1]
            d = d.index_select(0, slots.to(self.pf.device))
        out = w @ d.reshape(d.shape[0], -1)
        if last_only:
            return out.view(-1, self.b, self.pf.d)
        return out.view(-1, self.b, self.pos, self.pf.d)

    # ------------------------------------------------------------------ hooks
    def hooks(self) -> list[Any]:
        pf, tl = self.pf, self.pf.tl
        handles = []
        for l in range(pf.n_layers):
            block = tl.blocks[l]
            handles.append(block.hook_resid_pre.register_forward_hook(self._resid_pre(l)))
            handles.append(block.attn.register_forward_pre_hook(self._attn_in(l), with_kwargs=True))
            handles.append(_Override(block.attn, "calculate_qkv_matrices", self._qkv(l)))
            if pf.heads[l].stop > pf.heads[l].start:
                handles.append(block.attn.hook_z.register_forward_hook(self._z(l)))
                handles.append(block.hook_attn_out.register_forward_hook(self._attn_out(l)))
            if self.plans[0].mlp[l] is not None:
                handles.append(block.ln2.register_forward_pre_hook(self._mlp_in(l)))
                handles.append(block.hook_mlp_out.register_forward_hook(self._mlp_out(l)))
        handles.append(pf.graph.final_wrapper().register_forward_pre_hook(self._final))
        return handles

    def _plain_source(self, idx: int, out: Tensor) -> None:
        dv = out.to(self.pf.acc).reshape(self.n_c, 1, -1) - self.patch.flat[idx][None, None]
        self.source(idx, dv)
        self.pending.append((idx, idx + 1, dv.view(self.n_c * self.b, self.pos, self.pf.d)))

    def _resid_pre(self, l: int) -> Any:
        def hook(module: Any, args: Any, out: Tensor) -> None:
            if l == 0:  # the embedding wrapper: the first source
                self._plain_source(self.pf.embed_src, out)
            self.x_attn = out
        return hook

    def _bases(self, x_cur: Tensor, stop: int, sparse: Tensor) -> tuple[Tensor, Tensor | None]:
        """``x_cur`` and, if any copy uses the sparse form, ``x_cur - S`` (accumulation dtype)."""
        S = self.prefix(stop)
        x = x_cur.to(self.pf.acc)
        return x, (x - S) if bool(sparse.any()) else None

    def _attn_in(self, l: int) -> Any:
        pf = self.pf
        ln1 = pf.tl.blocks[l].ln1

        def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
            blocks = [p.attn[l] for p in self.plans]
            sparse = torch.tensor([blk.sparse[:3] for blk in blocks])  # [n_c, 3]
            if self.x_attn is None:
                raise RuntimeError(f"blocks.{l}.hook_resid_pre did not run before the attention")
            x, x_ap = self._bases(self.x_attn, pf.attn_stop[l], sparse)
            if x_ap is not None:
                ln_ap = ln1(x_ap.to(pf.dtype))
                for j, name in enumerate(("query_input", "key_input", "value_input")):
                    if bool(sparse[:, j].any()):
                        sel = sparse[:, j].repeat_interleave(self.b).to(pf.device)
                        kwargs[name] = torch.where(sel[:, None, None], ln_ap, kwargs[name])
            self.mlp_early = {}
            # per letter: (copy, head) of each row with its own input, and that input
            xs: list[list[Tensor]] = [[], [], []]
            copies: list[list[Tensor]] = [[], [], []]
            heads: list[list[Tensor]] = [[], [], []]
            for c, blk in enumerate(blocks):
                if blk.n_rows == 0:
                    continue
                rows = self.rows(c)
                corr = self.correction(c, blk)
                start = 0
                for j, n in enumerate(blk.counts):
                    if n and j == 3:  # the MLP's share, added at the MLP
                        self.mlp_early[c] = corr[start]
                    elif n:
                        if blk.sparse[j]:
                            assert x_ap is not None, "a sparse-form row makes _bases give x - S"
                            base = x_ap[rows]
                        else:
                            base = x[rows]
                        xs[j].append(base[None] + corr[start:start + n])
                        heads[j].append(blk.head[start:start + n])
                        copies[j].append(torch.full((n,), c, dtype=torch.long))
                    start += n
            self.head_inputs = {}
            for j in range(3):
                if xs[j]:
                    cs, hs = torch.cat(copies[j]), torch.cat(heads[j])
                    own = torch.zeros(self.n_c, pf.n_heads, dtype=torch.bool)
                    own[cs, hs] = True
                    self.head_inputs[j] = (cs.to(pf.device), hs.to(pf.device), own,
                                           ln1(torch.cat(xs[j]).to(pf.dtype)))
            return args, kwargs
        return hook

    def _qkv(self, l: int) -> Any:
        """TransformerLens' ``calculate_qkv_matrices`` of layer ``l`` for this pass: per
        letter, the shared input projected for the (copy, head) pairs without an input of
        their own, each own input with its head's weights."""
        from transformer_lens.utilities.attention import simple_attn_linear

        pf = self.pf
        attn = pf.tl.blocks[l].attn
        hooks = (attn.hook_q, attn.hook_k, attn.hook_v)

        def calc(query_input: Tensor, key_input: Tensor, value_input: Tensor) -> tuple[Tensor, ...]:
            outs = []
            for j, inp in enumerate((query_input, key_input, value_input)):
                letter = _LETTERS[j].upper()
                W, bias = getattr(attn, f"W_{letter}"), getattr(attn, f"b_{letter}")
                own_rows = self.head_inputs.pop(j, None)
                if own_rows is None:
                    outs.append(hooks[j](simple_attn_linear(inp, W, bias)))
                    continue
                cs, hs, own, normed = own_rows
                n_heads, d_head, pos = W.shape[0], W.shape[2], inp.shape[1]
                out = inp.new_empty(inp.shape[0], pos, n_heads, d_head)
                view = out.view(self.n_c, self.b, pos, n_heads, d_head)
                for c in range(self.n_c):
                    keep = (~own[c]).nonzero().flatten()
                    if len(keep) == n_heads:
                        view[c] = simple_attn_linear(inp[self.rows(c)], W, bias)
                    elif len(keep):
                        kd = keep.to(pf.device)
                        view[c][:, :, kd] = simple_attn_linear(inp[self.rows(c)], W[kd], bias[kd])
                n = len(hs)
                proj = torch.bmm(normed.reshape(n, -1, W.shape[1]), W[hs]) + bias[hs][:, None]
                view[cs, :, :, hs] = proj.view(n, self.b, pos, -1).to(out.dtype)
                outs.append(hooks[j](out))
            q, k, v = outs
            if attn.cfg.use_qk_norm:
                q = attn._apply_qk_norm(q, attn.q_norm)
                k = attn._apply_qk_norm(k, attn.k_norm)
            return q, k, v
        return calc

    def _z(self, l: int) -> Any:
        pf = self.pf
        hs_slice = pf.heads[l]
        W_O = pf.tl.blocks[l].attn.W_O

        def hook(module: Any, args: Any, z: Tensor) -> None:
            slots = self.slot_of[hs_slice]
            heads = (slots >= 0).nonzero().flatten()
            n = len(heads)
            if not n:
                return
            h0, h1 = int(heads[0]), int(heads[-1]) + 1
            if h1 - h0 == n:  # one range of heads: slices, no copies
                out = head_outputs(z[:, :, h0:h1], W_O[h0:h1])
                patch = self.patch.flat[hs_slice.start + h0:hs_slice.start + h1]
            else:
                hd = heads.to(pf.device)
                out = head_outputs(z[:, :, hd], W_O[hd])
                patch = self.patch.flat[hd + hs_slice.start]
            out = out.transpose(0, 1)  # [h, n_c*B, pos, d], contiguous
            a = int(slots[heads[0]])
            out = out.to(pf.acc).reshape(n, self.n_c, -1).transpose(0, 1)
            self.D[:, a:a + n] = out - patch[None]
        return hook

    def _attn_out(self, l: int) -> Any:
        pf = self.pf
        sl = pf.heads[l]
        b_O = pf.tl.blocks[l].attn.b_O

        def hook(module: Any, args: Any, out: Tensor) -> None:
            heads = (out.to(pf.acc) - b_O.to(pf.acc)).reshape(self.n_c, -1)
            chunk = (heads - self.patch.head_sum[l][None]).view(self.n_c * self.b, self.pos, pf.d)
            self.pending.append((sl.start, sl.stop, chunk))
        return hook

    def _mlp_in(self, l: int) -> Any:
        pf = self.pf
        stop = pf.mlp_stop[l]
        planned = [p.mlp[l] for p in self.plans]
        blocks = [blk for blk in planned if blk is not None]
        if stop is None or len(blocks) != len(planned):
            raise ValueError(f"layer {l} has no MLP destination (hook_mlp_in) to hook")

        def hook(module: Any, args: tuple[Any, ...]) -> Any:
            sparse = torch.tensor([blk.sparse[0] for blk in blocks])
            early, self.mlp_early = self.mlp_early, {}
            if not bool(sparse.any()) and not early and all(blk.n_rows == 0 for blk in blocks):
                self.prefix(stop)
                return None
            x, x_ap = self._bases(args[0], stop, sparse)
            new = x.clone() if x_ap is None else torch.where(
                sparse.repeat_interleave(self.b).to(pf.device)[:, None, None], x_ap, x)
            for c, blk in enumerate(blocks):
                if c in early:
                    new[self.rows(c)] += early[c]
                if blk.n_rows:
                    new[self.rows(c)] += self.correction(c, blk)[0]
            return (new.to(pf.dtype),) + tuple(args[1:])
        return hook

    def _mlp_out(self, l: int) -> Any:
        idx = self.pf.mlp_src[l]
        if idx is None:
            raise ValueError(f"layer {l} has no MLP source (hook_mlp_out) to hook")

        def hook(module: Any, args: Any, out: Tensor) -> None:
            self._plain_source(idx, out)
        return hook

    def _final(self, module: Any, args: tuple[Any, ...]) -> Any:
        pf = self.pf
        blocks = [p.out for p in self.plans]
        sparse = torch.tensor([blk.sparse[0] for blk in blocks])
        S = self.prefix(pf.n_src)[:, -1:]
        x = args[0][:, -1:].to(pf.acc)
        new = torch.where(sparse.repeat_interleave(self.b).to(pf.device)[:, None, None],
                          x - S, x)
        for c, blk in enumerate(blocks):
            if blk.n_rows:
                new[self.rows(c)] += self.correction(c, blk, last_only=True)[0][:, None]
        return (new.to(pf.dtype),) + tuple(args[1:])


# ----------------------------------------------------------------------------- backend
def fast_metrics(model: Any, batches: Sequence[Any], in_circuit: Tensor, *,
                 ablation: str, metric: str, progress: bool = False,
                 max_stack_gib: float | None = None) -> MaskMetrics:
    """``mu`` of each circuit (row of ``in_circuit [n_circuits, n_edges]``) on each example.

    Per batch: the patch activations (for ``resample`` the corrupted run, whose logits are
    the empty circuit's), the clean run, then the circuits (and for ``zero``/``mean`` the
    empty one) in stacks of at most ``max_stack_gib`` GiB of working memory each (default
    :data:`DEFAULT_CPU_STACK_GIB` on the CPU, a quarter of the free memory on a GPU).
    """
    pf = PatchedForward(model)
    cap = _cap_bytes(pf, max_stack_gib)
    sources = pf.sources()
    mean = dataset_mean(sources, batches) if ablation == "mean" else None
    plans = [pf.plan(m) for m in in_circuit]
    empty_plan = pf.plan(torch.zeros(pf.n_edges, dtype=torch.bool))
    n_c = len(plans)
    per_batch = n_c + 2 + (ablation != "resample")
    bar = progress_bar(len(batches) * per_batch, progress)
    mu_full: list[Tensor] = []
    mu_empty: list[Tensor] = []
    mu: list[Tensor] = []
    with torch.inference_mode():
        for batch in batches:
            tokens = batch.clean.to(pf.device)
            mu_full.append(metric_values(pf.clean_logits(tokens), batch, metric))
            bar.update(1)
            patch, empty_logits = patch_values(ablation, sources, batch, mean)
            bp = pf.batch_patch(patch)
            del patch
            bar.update(1)
            todo = plans if empty_logits is not None else plans + [empty_plan]
            cols: list[Tensor] = []
            b, pos = tokens.shape
            for group in stacks(pf, todo, b, pos, cap):
                logits = pf.logits(tokens, bp, [todo[i] for i in group]).view(len(group), b, -1)
                cols += [metric_values(lg, batch, metric) for lg in logits]
                bar.update(len(group))
            if empty_logits is None:
                empty_logits_mu = cols.pop()
            else:
                empty_logits_mu = metric_values(empty_logits, batch, metric)
            mu_empty.append(empty_logits_mu)
            mu.append(torch.stack(cols, 1) if cols else torch.empty(b, 0, dtype=torch.float64))
    bar.close()
    return MaskMetrics(mu=torch.cat(mu).numpy(), mu_full=torch.cat(mu_full).numpy(),
                       mu_empty=torch.cat(mu_empty).numpy())
