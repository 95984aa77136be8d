"""The task metric ``mu``: how strongly the model prefers the right answers, per example.

One definition for attribution, faithfulness evaluation, auto-circuit's prune metric and
the task scorer:

- ``max_diff`` (the method's): mean logit of the correct answers - max logit of the
  wrong answers;
- ``avg_diff`` (auto-circuit's answer difference): mean correct - mean wrong;

both read the logits at the last position (:func:`last_position`). ``answers`` and
``wrong_answers`` are what auto-circuit's ``PromptPairBatch`` carries: a ``[B, n]`` id
tensor, or a list of 1-D id tensors (one per example, lengths may differ).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["METRICS", "max_diff", "avg_diff", "last_position", "check_metric", "metric_values"]


def _gather(logits: Tensor, ids: Tensor | Sequence[Tensor]) -> list[Tensor]:
    if isinstance(ids, Tensor):
        return list(torch.gather(logits, 1, ids.to(logits.device)))
    return [logits[b, a.to(logits.device)] for b, a in enumerate(ids)]


def max_diff(logits: Tensor, batch: Any) -> Tensor:
    """mu = mean logit of the correct answers - max logit of the wrong answers, per example."""
    good = _gather(logits, batch.answers)
    bad = _gather(logits, batch.wrong_answers)
    return torch.stack([g.mean() - b.max() for g, b in zip(good, bad)])


def avg_diff(logits: Tensor, batch: Any) -> Tensor:
    """auto-circuit's answer difference: mean correct logit - mean wrong logit, per example."""
    good = _gather(logits, batch.answers)
    bad = _gather(logits, batch.wrong_answers)
    return torch.stack([g.mean() - b.mean() for g, b in zip(good, bad)])


def last_position(logits: Tensor) -> Tensor:
    """Logits ``[B, vocab]`` at the last position, whether or not the model was made
    patchable with ``slice_output="last_seq"`` (then they already are)."""
    return logits[:, -1] if logits.ndim == 3 else logits


#: metric name -> ``f(last-position logits [B, vocab], batch) -> mu [B]``
METRICS: dict[str, Callable[[Tensor, Any], Tensor]] = {
    "max_diff": max_diff,
    "avg_diff": avg_diff,
}


def check_metric(metric: str) -> Callable[[Tensor, Any], Tensor]:
    """The metric function of a name; a ``ValueError`` listing the names otherwise."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    return METRICS[metric]


def metric_values(logits: Tensor, batch: Any, metric: str = "max_diff") -> Tensor:
    """``mu [B]`` as float64 on the CPU from a model's output (any position layout)."""
    mu = check_metric(metric)(last_position(logits).float(), batch).detach()
    return mu.cpu().double()  # float64 only on the CPU (Apple MPS has none)
