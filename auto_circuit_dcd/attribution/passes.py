"""The passes every attribution backend shares, for one batch of equal-length examples.

1. corrupt forward (no grad): every source's output is recorded;
2. the steps ``alpha`` (1 first) in stacks that fit ``max_stack_gib`` (:func:`step_stacks`):
   one forward of the stack, copy ``k`` of the batch (rows ``k*B .. (k+1)*B``) with the
   input embedding interpolated from corrupt to clean at its ``alpha``; the first copy of
   the first stack (``alpha = 1``) is the clean run, whose source outputs replace the
   corrupt ones by the difference clean - corrupt; then one backward of ``sum mu``:
   examples and copies do not interact, so each row of each destination gradient is that
   example's own gradient at that step;
3. as each destination's gradient arrives (every copy of the stack at once), a backend's
   hook sums it over the copies and contracts the sum with the source differences in one
   batched matrix product (:func:`accumulate`): the source differences do not change
   across steps, so there is one contraction per destination and stack, not per step.

The final residual and the logits are cut to the last position (the metric reads nothing
else), so the unembedding costs one position per pass, forward and backward.

A backend supplies only where sources and destination gradients are read. Source
differences, gradients and rows are kept in float32 (float64 for a float64 model:
:func:`auto_circuit_dcd.model.forward.accumulation_dtype`), on the model's device; the rows
come back to the CPU once per batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor
from torch.profiler import record_function

from auto_circuit_dcd.model.forward import (
    WrapperGraph,
    accumulation_dtype,
    last_position_only,
    removing,
    src_block,
    stack_cap_bytes,
)
from auto_circuit_dcd.model.task_metric import last_position

__all__ = ["SourceDiffs", "accumulate", "contract", "run_passes", "step_stacks", "step_bytes",
           "DEFAULT_CPU_STACK_GIB"]

#: default working memory of one stacked pass on the CPU (GiB): five steps of 16 SmolLM2
#: prompts of 19 tokens (:func:`step_bytes`); a GPU's is a quarter of its free memory
DEFAULT_CPU_STACK_GIB = 3.0


class SourceDiffs:
    """Source outputs ``[B, n_src, pos*d]`` in ``src_idx`` order, filled by forward hooks:
    the corrupt outputs first (``sign=-1``), then replaced by clean - corrupt (``+1``).

    Only the first ``B`` rows of what a hook sees are read: in a stacked pass they are
    the clean copy. Stored in the accumulation dtype (float32 for a half-precision model),
    so the difference of two half-precision outputs is exact."""

    def __init__(self, bsz: int, n_src: int):
        self.bsz, self.n_src = bsz, n_src
        self.d: Tensor | None = None

    def store(self, sl: slice, block: Tensor, sign: int) -> None:
        block = block[: self.bsz]
        if self.d is None:
            self.d = torch.empty(self.bsz, self.n_src, block.shape[-1],
                                 dtype=accumulation_dtype(block.dtype), device=block.device)
        block = block.to(self.d.device, self.d.dtype)  # layers may sit on other devices
        self.d[:, sl] = block if sign < 0 else block - self.d[:, sl]

    def recorded(self) -> Tensor:
        """``d``, once a source has been stored (the embedding's, first in every forward)."""
        if self.d is None:
            raise RuntimeError("no source output recorded before a destination read the "
                               "source differences")
        return self.d

    def recorder(self, sign: int) -> Callable:
        """A forward hook for a source wrapper."""
        @record_function("attribution.source_diffs")
        def hook(module: Any, args: Any, out: Tensor) -> None:
            self.store(module.src_idxs, src_block(out.detach()[: self.bsz], module), sign)
        return hook


def accumulate(rows: Tensor, start: int, stop: int, g: Tensor, d: Tensor,
               n_steps: int) -> None:
    """``rows[:, start:stop] += (sum_k g_k @ d^T) / n_steps``: :func:`contract`, added."""
    block = contract(g, d)
    rows[:, start:stop] += block.reshape(block.shape[0], -1).to(rows.device, rows.dtype) / n_steps


@record_function("attribution.contract")
def contract(g: Tensor, d: Tensor) -> Tensor:
    """``sum_k g_k @ d^T`` ``[B, heads, n_in]``: one product for all copies of the batch.

    ``g [S*B, heads, P]`` holds ``S`` stacked copies (steps) of the batch's gradients,
    ``d [B, n_in, pos*d_model]`` the source differences. ``P`` is ``pos*d_model``, or
    ``d_model`` for a gradient read at the last position only (then ``d``'s last position
    is used). ``g`` is summed over the copies and cast to ``d``'s dtype (the accumulation
    dtype) before the product.
    """
    bsz = d.shape[0]
    g = g.to(d.device, d.dtype)
    if g.shape[0] != bsz:
        g = g.reshape(g.shape[0] // bsz, bsz, *g.shape[1:]).sum(0)
    if g.shape[-1] != d.shape[-1]:
        d = d[..., -g.shape[-1]:]  # pos-major flattening: the last position's d_model entries
    return torch.matmul(g, d.transpose(1, 2))


# ----------------------------------------------------------------------------- stacks
def step_bytes(model: Any, bsz: int, pos: int) -> int:
    """Estimated memory one copy of the batch adds to a stacked forward + backward.

    What autograd keeps per layer and token (TransformerLens, weights frozen): about
    ``16 d_model + 4 d_mlp + 3 heads * pos`` values in the model's dtype (the residual,
    norms, Q/K/V, z and the MLP's hidden activations; attention patterns), plus the
    backend's float32 copies (``ln1``'s input, the gradients it reads); with
    auto-circuit's per-head flags on (the hooks backend) ``10 heads * d_model`` more (the
    per-head Q/K/V inputs, their norms and the per-head outputs) and TransformerLens'
    transient per-head output product ``heads * d_head * d_model`` (one layer at a time).
    The embedding and last-position logits are small. An estimate, used only to split
    steps into stacks: on GPT-2 small's and SmolLM2's shapes (fast backend) and a 12-layer
    d_model-384 model (both backends) it was within 5% and 20% of the measured peak.
    """
    cfg = model.cfg
    elem = torch.finfo(cfg.dtype).bits // 8
    acc = torch.finfo(accumulation_dtype(cfg.dtype)).bits // 8
    d, heads = cfg.d_model, cfg.n_heads
    d_mlp = 0 if getattr(cfg, "attn_only", False) else int(cfg.d_mlp or 0)
    per_layer = elem * (16 * d + 4 * d_mlp + 3 * heads * pos) + acc * 2 * d
    transient = 0
    if getattr(cfg, "use_split_qkv_input", False) or getattr(cfg, "use_attn_result", False):
        per_layer += elem * 10 * heads * d
        transient = elem * heads * cfg.d_head * d
    return int(bsz * pos * (cfg.n_layers * per_layer + transient))


def step_stacks(n_steps: int, one_step: int, cap: int) -> list[range]:
    """Consecutive groups of step indices, each at most ``cap // one_step`` steps (at least
    one), as few as that allows and even in size (sizes differ by one at most)."""
    per = max(1, min(n_steps, cap // max(one_step, 1)))
    n_stacks = -(-n_steps // per)
    small, extra = divmod(n_steps, n_stacks)
    out, start = [], 0
    for i in range(n_stacks):
        size = small + (1 if i < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def _repeated(batch: Any, copies: int) -> Any:
    """``batch`` with its answers repeated for ``copies`` stacked copies (what the metric reads)."""
    if copies == 1:
        return batch

    def rep(x: Any) -> Any:
        if isinstance(x, Tensor):
            return x.repeat(copies, *([1] * (x.ndim - 1)))
        return list(x) * copies

    fields = {"answers": rep(batch.answers), "wrong_answers": rep(batch.wrong_answers)}
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **fields)
    return SimpleNamespace(**{**vars(batch), **fields})


# ----------------------------------------------------------------------------- passes
def run_passes(
    model: Any, graph: WrapperGraph, batch: Any, metric: Callable, alphas: Sequence[float],
    source_hooks: Callable[[int], list[Any]],
    dest_hooks: Callable[[Tensor, int], list[Any]],
    max_stack_gib: float | None = None,
) -> tuple[Tensor, Tensor]:
    """The corrupt forward, then one forward + backward per stack of ``alphas`` (1 first).

    ``source_hooks(sign)`` installs hooks recording source outputs (corrupt: ``-1``; the
    clean copy: ``+1``); ``dest_hooks(rows, n_steps)`` installs hooks that add each
    destination's block to ``rows`` as its gradient arrives (a stack's copies together:
    :func:`accumulate`). ``max_stack_gib`` caps a stack's estimated working memory
    (:func:`step_bytes`; default :data:`DEFAULT_CPU_STACK_GIB` on the CPU, a quarter of
    the free memory on a GPU). Returns rows ``[B, n_edges]`` (float32, on the CPU) and the
    clean metric ``[B]``. The batch's tensors must be on the model's device
    (:func:`auto_circuit_dcd.data.batch_to`).
    """
    clean, corrupt = batch.clean, batch.corrupt
    if clean.shape != corrupt.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and corrupt {tuple(corrupt.shape)} "
                         "token tensors differ in shape")
    if not alphas or alphas[0] != 1.0:
        raise ValueError(f"alphas must start with 1.0 (the clean run); got {list(alphas)}")
    bsz, pos = clean.shape[0], clean.shape[1]
    cap = stack_cap_bytes(clean.device, max_stack_gib, DEFAULT_CPU_STACK_GIB)
    stacks = step_stacks(len(alphas), step_bytes(model, bsz, pos), cap)
    corrupt_input: list[Tensor] = []
    rows = torch.zeros(bsz, graph.layout.n_edges, dtype=torch.float32, device=clean.device)

    def last() -> list[Any]:
        return [last_position_only(graph)] if graph.output_wrapper is not None else []

    with removing(last() + source_hooks(-1) + [graph.input_wrapper.register_forward_hook(
            lambda m, a, out: corrupt_input.append(out.detach()))]), torch.no_grad(), \
            record_function("attribution.corrupt_forward"):
        model(corrupt)

    clean_metric = torch.empty(bsz)
    for n, stack in enumerate(stacks):
        stack_alphas = [alphas[k] for k in stack]

        def set_input(module: Any, args: Any, out: Tensor,
                      stack_alphas: list[float] = stack_alphas) -> Tensor:
            base, x = corrupt_input[0], out.detach()[:bsz]
            copies = [x.clone() if a == 1.0 else base + a * (x - base) for a in stack_alphas]
            return torch.cat(copies).requires_grad_(True)

        handles: list[Any] = source_hooks(+1) if n == 0 else []
        handles.append(graph.input_wrapper.register_forward_hook(set_input))
        handles += dest_hooks(rows, len(alphas))
        tokens = clean.repeat(len(stack), 1)
        with removing(last() + handles), torch.enable_grad():
            with record_function("attribution.forward"):
                logits = model(tokens)[model.out_slice]
                mu = metric(last_position(logits).float(), _repeated(batch, len(stack)))
            if n == 0:
                clean_metric = mu[:bsz].detach().float().cpu()
            with record_function("attribution.backward"):
                mu.sum().backward()
    return rows.cpu(), clean_metric
