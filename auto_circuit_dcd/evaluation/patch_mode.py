"""The reference evaluation backend: auto-circuit's own patch mode.

Per batch:

1. the patch activations of every source (:mod:`.ablation`, read with auto-circuit's
   ``src_ablations``, TransformerLens' per-head flags on);
2. ``mu(full)``: the clean run;
3. for the empty circuit and each circuit: the patch masks set (1 = edge patched), one
   clean forward in auto-circuit's patch mode.

Masks and patch mode are restored on exit, also on error. Each patched forward pays the
per-head flags (about 10x a plain forward); :mod:`.patched` computes the same numbers
without them and is tested against this backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from auto_circuit_dcd.evaluation.ablation import Sources, dataset_mean, patch_values
from auto_circuit_dcd.evaluation.mask_metrics import MaskMetrics, progress_bar
from auto_circuit_dcd.model.edges import edge_layout
from auto_circuit_dcd.model.task_metric import metric_values

__all__ = ["patch_mode_metrics"]


def _src_ablations(model: Any) -> Sources:
    from auto_circuit.types import AblationType
    from auto_circuit.utils.ablation_activations import src_ablations

    p = next(model.parameters())
    n_src = max(w.src_idxs.stop for w in model.src_wrappers)
    return Sources(read=lambda tokens: (src_ablations(model, tokens, AblationType.RESAMPLE), None),
                   n_src=n_src, d_model=int(model.wrapped_model.cfg.d_model), dtype=p.dtype,
                   device=p.device)


@contextmanager
def restored_masks(model: Any) -> Iterator[dict[str, Any]]:
    """The dest wrappers by module name; their mask values are put back on exit."""
    wrappers = {w.module_name: w for w in model.dest_wrappers}
    saved = {name: w.patch_mask.data.clone() for name, w in wrappers.items()}
    try:
        yield wrappers
    finally:
        for name, w in wrappers.items():
            w.patch_mask.data = saved[name]


def _set_masks(wrappers: dict[str, Any], layout: Any, patched: Tensor) -> None:
    """Mask 1 (patch) on the edges where ``patched`` is True, 0 elsewhere."""
    for name, shape, start, stop in layout.blocks:
        mask = wrappers[name].patch_mask
        mask.data = patched[start:stop].reshape(shape).to(dtype=mask.dtype, device=mask.device)


def patch_mode_metrics(model: Any, batches: Sequence[Any], in_circuit: Tensor, *,
                       ablation: str, metric: str, progress: bool = False,
                       max_stack_gib: float | None = None) -> MaskMetrics:
    """``mu`` of each circuit (row of ``in_circuit [n_circuits, n_edges]``) on each example.

    ``max_stack_gib`` is unused (one circuit per forward).
    """
    from auto_circuit.utils.graph_utils import patch_mode

    _, layout = edge_layout(model)
    sources = _src_ablations(model)
    mean = dataset_mean(sources, batches) if ablation == "mean" else None
    n_c = int(in_circuit.shape[0])
    all_patched = torch.ones(layout.n_edges, dtype=torch.bool)
    mu_full: list[Tensor] = []
    mu_empty: list[Tensor] = []
    mu: list[Tensor] = []
    out_slice = model.out_slice
    bar = progress_bar(len(batches) * (n_c + 2), progress)

    def mu_of(tokens: Tensor, batch: Any) -> Tensor:
        out = metric_values(model(tokens)[out_slice], batch, metric)
        bar.update(1)
        return out

    with restored_masks(model) as wrappers, torch.inference_mode():
        for batch in batches:
            mu_full.append(mu_of(batch.clean, batch))
            patch, _ = patch_values(ablation, sources, batch, mean)
            bar.update(1)
            with patch_mode(model, patch.contiguous()):
                _set_masks(wrappers, layout, all_patched)
                mu_empty.append(mu_of(batch.clean, batch))
                cols = []
                for c in range(n_c):
                    _set_masks(wrappers, layout, ~in_circuit[c])
                    cols.append(mu_of(batch.clean, batch))
            mu.append(torch.stack(cols, 1) if cols else torch.empty(len(mu_full[-1]), 0,
                                                                    dtype=torch.float64))
            del patch
    bar.close()
    return MaskMetrics(mu=torch.cat(mu).numpy(), mu_full=torch.cat(mu_full).numpy(),
                       mu_empty=torch.cat(mu_empty).numpy())
