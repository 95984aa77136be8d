"""Faithfulness as auto-circuit ``PruneMetric`` objects, so it shows in auto-circuit's plots.

auto-circuit calls ``metric_func(model, test_loader, circuit_outs)`` with the outputs of
``run_circuits`` (``{edge count: {batch key: logits}}``) and expects
``[(edge count, value), ...]``. Here the value is

    f = (mean mu(circuit) - mean mu(corrupt)) / (mean mu(clean) - mean mu(corrupt))

over all test examples, with ``mu`` from :data:`auto_circuit_dcd.model.task_metric.METRICS`.
The clean and corrupted runs stand for the full model and the empty circuit: exact for
TREE_PATCH with RESAMPLE ablation (the setting of the method); with other ablations the
empty circuit differs from the corrupted run (use :func:`faithfulness` there).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from auto_circuit_dcd.model.task_metric import check_metric, metric_values

__all__ = ["measure_faithfulness", "faithfulness_prune_metric"]


def measure_faithfulness(model: Any, test_loader: Any,
                         circuit_outs: dict[int, dict[Any, torch.Tensor]],
                         metric: str = "max_diff") -> list[tuple[int, float]]:
    """``[(edge count, f), ...]`` sorted by edge count; NaN when clean and corrupt tie."""
    from auto_circuit_dcd.data import batch_to
    from auto_circuit_dcd.model.devices import model_device

    full, empty = [], []
    device = model_device(model)
    batches = [batch_to(b, device) for b in test_loader]
    with torch.inference_mode():
        for batch in batches:
            full.append(metric_values(model(batch.clean)[model.out_slice], batch, metric))
            empty.append(metric_values(model(batch.corrupt)[model.out_slice], batch, metric))
    mean_full = float(torch.cat(full).mean())
    mean_empty = float(torch.cat(empty).mean())
    denom = mean_full - mean_empty
    out: list[tuple[int, float]] = []
    for count in sorted(circuit_outs):
        outs = circuit_outs[count]
        mu = torch.cat([metric_values(outs[b.key], b, metric) for b in batches])
        f = float("nan") if denom == 0.0 else (float(mu.mean()) - mean_empty) / denom
        out.append((int(count), f))
    return out


def faithfulness_prune_metric(key: str, metric: str = "max_diff") -> Any:
    """A ``PruneMetric`` under ``key`` computing :func:`measure_faithfulness` with ``metric``."""
    from auto_circuit.metrics.prune_metrics.prune_metrics import PruneMetric

    check_metric(metric)
    label = {"max_diff": "max wrong", "avg_diff": "avg wrong"}.get(metric, metric)
    return PruneMetric(key=key, name=f"Faithfulness ({label})",
                       metric_func=partial(measure_faithfulness, metric=metric),
                       log_x=True, log_y=False, lower_better=False, y_axes_match=True)
