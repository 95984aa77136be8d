"""The hooks attribution backend: sources and destinations read at auto-circuit's own
hook points (TransformerLens' per-head flags on). Slower than the fast backend, and
independent of its closed forms: it is the reference the fast backend is tested against,
and the path for models the fast backend does not take.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from auto_circuit_dcd.attribution.passes import SourceDiffs, accumulate, run_passes
from auto_circuit_dcd.model.forward import WrapperGraph

__all__ = ["hooks_attribute_batch"]


def hooks_attribute_batch(
    model: Any, graph: WrapperGraph, batch: Any, metric: Callable, alphas: Sequence[float],
    max_stack_gib: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Rows ``[B, n_edges]`` (float32) and clean metric ``[B]`` of one batch."""
    diffs = SourceDiffs(batch.clean.shape[0], graph.n_src)

    def source_hooks(sign: int) -> list[Any]:
        return [w.register_forward_hook(diffs.recorder(sign)) for w in graph.srcs]

    def dest_hooks(rows: Tensor, n_steps: int) -> list[Any]:
        return [w.register_forward_hook(_dest_hook(w, start, stop, diffs, rows, n_steps))
                for w, _shape, start, stop in graph.dests]

    return run_passes(model, graph, batch, metric, alphas, source_hooks, dest_hooks,
                      max_stack_gib)


def _dest_hook(wrapper: Any, start: int, stop: int, diffs: SourceDiffs, rows: Tensor,
               n_steps: int) -> Callable:
    in_srcs = wrapper.in_srcs

    def on_grad(grad: Tensor) -> None:
        bsz = grad.shape[0]
        if wrapper.head_dim is None:
            g = grad.reshape(bsz, 1, -1)
        else:
            g = grad.movedim(wrapper.head_dim, 1).reshape(bsz, grad.shape[wrapper.head_dim], -1)
        accumulate(rows, start, stop, g, diffs.recorded()[:, in_srcs], n_steps)

    def hook(module: Any, args: Any, out: Tensor) -> None:
        if out.requires_grad:
            out.register_hook(on_grad)

    return hook
