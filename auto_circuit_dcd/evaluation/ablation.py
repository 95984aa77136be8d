"""Patch activations: the value each source takes on an edge outside the circuit.

Both evaluation backends read the same definitions; they differ only in how a source's
output on a batch is read (:class:`Sources`: auto-circuit's ``src_ablations`` with the
per-head flags on, or one plain forward, :func:`auto_circuit_dcd.model.forward.source_outputs`).

1. ``resample``: each source's output on the example's own corrupted prompt; the
   corrupted run's logits are then the empty circuit's (every destination's input is the
   corrupted one), when the reader gives them;
2. ``zero``: zeros;
3. ``mean``: the per-position mean of the corrupted outputs over the whole loader
   (:func:`dataset_mean`, one token length needed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Sources", "ABLATIONS", "check_ablation", "dataset_mean", "patch_values"]


@dataclass(frozen=True)
class Sources:
    """How a backend reads every source's output on a token batch.

    ``read(tokens) -> (outs [n_src, B, pos, d_model], last-position logits or None)``.
    """

    read: Callable[[Tensor], tuple[Tensor, Tensor | None]]
    n_src: int
    d_model: int
    dtype: torch.dtype
    device: torch.device


def _resample(sources: Sources, batch: Any, mean: Tensor | None) -> tuple[Tensor, Tensor | None]:
    return sources.read(batch.corrupt.to(sources.device))


def _zero(sources: Sources, batch: Any, mean: Tensor | None) -> tuple[Tensor, Tensor | None]:
    b, pos = batch.clean.shape
    return torch.zeros(sources.n_src, b, pos, sources.d_model, dtype=sources.dtype,
                       device=sources.device), None


def _mean(sources: Sources, batch: Any, mean: Tensor | None) -> tuple[Tensor, Tensor | None]:
    assert mean is not None
    n_src, pos, d = mean.shape
    return mean[:, None].expand(n_src, batch.clean.shape[0], pos, d), None


#: ablation name -> ``f(sources, batch, dataset mean) -> (patch activations
#: [n_src, B, pos, d_model], the empty circuit's last-position logits or None)``
ABLATIONS: dict[str, Callable[[Sources, Any, Tensor | None], tuple[Tensor, Tensor | None]]] = {
    "resample": _resample,
    "zero": _zero,
    "mean": _mean,
}


def check_ablation(ablation: str, batches: Sequence[Any] | None = None) -> None:
    """A ``ValueError`` unless ``ablation`` is a known name and fits ``batches`` (``mean``
    needs one token length)."""
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {sorted(ABLATIONS)}, got {ablation!r}")
    if ablation == "mean" and batches is not None:
        lengths = {int(b.corrupt.shape[1]) for b in batches}
        if len(lengths) != 1:
            raise ValueError(
                f"ablation='mean' needs one token length; this loader has lengths "
                f"{sorted(lengths)}. Use ablation='resample', or one loader per length "
                "(loader.subset(ids)).")


def dataset_mean(sources: Sources, batches: Sequence[Any]) -> Tensor:
    """Per-position mean ``[n_src, pos, d_model]`` over every example of each source's
    output on the corrupted prompts (accumulated in float32 on the model's device: Apple
    MPS has no float64)."""
    check_ablation("mean", batches)
    total: Tensor | None = None
    n = 0
    for b in batches:
        outs = sources.read(b.corrupt.to(sources.device))[0].float().sum(1)
        total = outs if total is None else total + outs
        n += int(b.corrupt.shape[0])
    assert total is not None
    return (total / n).to(sources.dtype)


def patch_values(ablation: str, sources: Sources, batch: Any,
                 mean: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The patch activations of one batch and, where free, the empty circuit's logits."""
    return ABLATIONS[ablation](sources, batch, mean)
