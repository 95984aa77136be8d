"""The passes every attribution backend shares, for one batch of equal-length examples.

1. corrupt forward (no grad): every source's output is recorded;
2. for each ``alpha`` (1 first): forward with the input embedding interpolated from
   corrupt to clean, the clean source outputs recorded in the ``alpha = 1`` pass (they
   replace the corrupt ones by the difference clean - corrupt), then one backward of
   ``sum_i mu_i``: examples do not interact, so each row of each destination gradient is
   that example's own gradient;
3. as each destination's gradient arrives, a backend's hook contracts it with the
   source differences in one batched matrix product (:func:`accumulate`).

A backend supplies only where sources and destination gradients are read. Source
differences, gradients and rows are kept in float32 (float64 for a float64 model:
:func:`auto_circuit_dcd.model.forward.accumulation_dtype`), on the model's device; the rows
come back to the CPU once per batch.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from auto_circuit_dcd.model.forward import WrapperGraph, accumulation_dtype, removing, src_block
from auto_circuit_dcd.model.task_metric import last_position

__all__ = ["SourceDiffs", "accumulate", "run_passes"]


class SourceDiffs:
    """Source outputs ``[B, n_src, pos*d]`` in ``src_idx`` order, filled by forward hooks:
    the corrupt outputs first (``sign=-1``), then replaced by clean - corrupt (``+1``).

    Stored in the accumulation dtype (float32 for a half-precision model), so the
    difference of two half-precision outputs is exact."""

    def __init__(self, bsz: int, n_src: int):
        self.bsz, self.n_src = bsz, n_src
        self.d: Optional[Tensor] = None

    def store(self, sl: slice, block: Tensor, sign: int) -> None:
        if self.d is None:
            self.d = torch.empty(self.bsz, self.n_src, block.shape[-1],
                                 dtype=accumulation_dtype(block.dtype), device=block.device)
        block = block.to(self.d.device, self.d.dtype)  # layers may sit on other devices
        self.d[:, sl] = block if sign < 0 else block - self.d[:, sl]

    def recorder(self, sign: int) -> Callable:
        """A forward hook for a source wrapper."""
        def hook(module: Any, args: Any, out: Tensor) -> None:
            self.store(module.src_idxs, src_block(out.detach(), module), sign)
        return hook


def accumulate(rows: Tensor, start: int, stop: int, g: Tensor, d: Tensor,
               n_steps: int) -> None:
    """``rows[:, start:stop] += (g @ d^T) / n_steps``; ``g [B, heads, P]``, ``d [B, n_in, P]``.

    ``g`` is cast to ``d``'s dtype (the accumulation dtype) before the product."""
    block = torch.matmul(g.to(d.device, d.dtype), d.transpose(1, 2))  # [B, heads, n_in]
    block = block.reshape(block.shape[0], -1).to(rows.device, rows.dtype)
    rows[:, start:stop] += block / n_steps


def run_passes(
    model: Any, graph: WrapperGraph, batch: Any, metric: Callable, alphas: Sequence[float],
    source_hooks: Callable[[int], List[Any]],
    dest_hooks: Callable[[Tensor, int], List[Any]],
) -> Tuple[Tensor, Tensor]:
    """The corrupt forward, then one forward + backward per ``alpha`` (1 first).

    ``source_hooks(sign)`` installs hooks recording source outputs (corrupt: ``-1``; the
    clean pass: ``+1``); ``dest_hooks(rows, n_steps)`` installs hooks that add each
    destination's block to ``rows`` as its gradient arrives. Returns rows ``[B, n_edges]``
    (float32, on the CPU) and the clean metric ``[B]``. The batch's tensors must be on
    the model's device (:func:`auto_circuit_dcd.data.batch_to`).
    """
    clean, corrupt = batch.clean, batch.corrupt
    if clean.shape != corrupt.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and corrupt {tuple(corrupt.shape)} "
                         "token tensors differ in shape")
    bsz = clean.shape[0]
    corrupt_input: List[Tensor] = []
    rows = torch.zeros(bsz, graph.layout.n_edges, dtype=torch.float32, device=clean.device)

    with removing(source_hooks(-1) + [graph.input_wrapper.register_forward_hook(
            lambda m, a, out: corrupt_input.append(out.detach()))]), torch.no_grad():
        model(corrupt)

    clean_metric = torch.empty(bsz)
    for step, alpha in enumerate(alphas):
        handles: List[Any] = source_hooks(+1) if step == 0 else []

        def set_input(module: Any, args: Any, out: Tensor, alpha: float = alpha) -> Tensor:
            if alpha == 1.0:
                return out.detach().clone().requires_grad_(True)
            base = corrupt_input[0]
            return (base + alpha * (out.detach() - base)).requires_grad_(True)

        handles.append(graph.input_wrapper.register_forward_hook(set_input))
        handles += dest_hooks(rows, len(alphas))
        with removing(handles), torch.enable_grad():
            mu = metric(last_position(model(clean)[model.out_slice]).float(), batch)
            if step == 0:
                clean_metric = mu.detach().float().cpu()
            mu.sum().backward()
    return rows.cpu(), clean_metric
