"""Faithfulness of circuits: how much of the model's behaviour a subset of its edges keeps.

For a circuit C (a set of edges) and a test example i, ``mu_i(C)`` is the metric
(:data:`auto_circuit_dcd.task_metric.METRICS`) of the model run on the clean prompt with
every edge *outside* C patched (auto-circuit's TREE_PATCH): by default with the source's
output on the example's own corrupted prompt (RESAMPLE). Then

    f(C) = (mean_i mu_i(C) - mean_i mu_i(empty)) / (mean_i mu_i(full) - mean_i mu_i(empty))

a ratio of means over the test set. The circuit at size p is the top ``floor(p * n_edges)``
edges by ``|score|``, thresholded as auto-circuit's ``run_circuits`` does (edges tied with
the last one kept are all kept, so the achieved count can exceed the requested one).

How, per batch (shared by every circuit evaluated together):

1. the patch activations of every source (corrupted run, zeros or the dataset mean);
2. ``mu(full)`` (plain clean run) and ``mu(empty)`` (every edge patched);
3. for each distinct circuit (label, fraction): set the patch masks, one clean forward
   in patch mode.

Masks and patch mode are restored on exit, also on error.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, Hashable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple)

import numpy as np
import torch
from torch import Tensor

from ..task_metric import check_metric, metric_values

__all__ = [
    "MIB_GRID",
    "ABLATIONS",
    "FaithfulnessResult",
    "faithfulness",
    "evaluate_circuits",
    "score_vector",
    "edge_count",
    "circuit_mask",
]

#: fractions of edges of the MIB grid (0.1% .. 100%)
MIB_GRID: Tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class FaithfulnessResult:
    """Faithfulness curve of one circuit on one test set, with the per-example values.

    Attributes:
        fractions: ``[n_fractions]`` requested fractions of edges ``p``.
        requested_counts: ``[n_fractions]`` ``floor(p * n_edges)``.
        achieved_counts: ``[n_fractions]`` edges actually in the circuit (ties with the
            last kept edge are kept, as auto-circuit does).
        f: ``[n_fractions]`` faithfulness, ratio of means (NaN when the full model and the
            empty circuit have the same mean metric).
        mu_circuit: ``[n_examples, n_fractions]``; row ``i`` is example ``example_ids[i]``.
        mu_full: ``[n_examples]`` metric of the unpatched model.
        mu_empty: ``[n_examples]`` metric with every edge patched.
        example_ids: id of each row, in the loader's order.
        n_edges: edges in the model's graph.
        metric, ablation: how ``mu`` and the patch activations were computed.
    """

    fractions: np.ndarray
    requested_counts: np.ndarray
    achieved_counts: np.ndarray
    f: np.ndarray
    mu_circuit: np.ndarray
    mu_full: np.ndarray
    mu_empty: np.ndarray
    example_ids: List[Any]
    n_edges: int
    metric: str = "max_diff"
    ablation: str = "resample"
    groups: Optional[List[Optional[str]]] = field(default=None)

    @property
    def n_examples(self) -> int:
        return int(self.mu_circuit.shape[0])

    def at(self, p: float) -> float:
        """f at the fraction ``p`` (must be one of ``fractions``)."""
        hits = np.flatnonzero(np.isclose(self.fractions, p, rtol=0, atol=1e-12))
        if hits.size == 0:
            raise KeyError(f"fraction {p} was not evaluated; fractions are "
                           f"{self.fractions.tolist()}")
        return float(self.f[hits[0]])

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable form (lists of floats; NaN as None)."""
        def clean(a: np.ndarray) -> Any:
            return [None if (isinstance(x, float) and math.isnan(x)) else x
                    for x in a.tolist()] if a.ndim == 1 else [clean(r) for r in a]

        return {
            "fractions": self.fractions.tolist(),
            "requested_counts": self.requested_counts.tolist(),
            "achieved_counts": self.achieved_counts.tolist(),
            "f": clean(self.f),
            "mu_circuit": clean(self.mu_circuit),
            "mu_full": clean(self.mu_full),
            "mu_empty": clean(self.mu_empty),
            "example_ids": [x if isinstance(x, (int, str)) else str(x) for x in self.example_ids],
            "groups": self.groups,
            "n_edges": self.n_edges,
            "metric": self.metric,
            "ablation": self.ablation,
        }


def ratio_of_means(mu_circuit: np.ndarray, mu_full: np.ndarray, mu_empty: np.ndarray) -> np.ndarray:
    """``(mean mu(C) - mean mu(empty)) / (mean mu(full) - mean mu(empty))`` per column.

    ``mu_circuit`` is ``[n_examples]`` or ``[n_examples, n_fractions]``; NaN where the
    denominator is zero.
    """
    full, empty = float(np.mean(mu_full)), float(np.mean(mu_empty))
    denom = full - empty
    num = np.mean(mu_circuit, axis=0) - empty
    if denom == 0.0:
        return np.full(np.shape(num), np.nan)
    return np.asarray(num / denom, dtype=np.float64)


# ----------------------------------------------------------------------------- circuits
def score_vector(model: Any, prune_scores: Any) -> Tensor:
    """``[n_edges]`` float64 scores in the package's edge order.

    Accepts auto-circuit ``PruneScores`` (``{module_name: tensor}``) or a vector
    (torch or numpy) already in :func:`auto_circuit_dcd.edges.sorted_edges` order.
    """
    from ..edges import edge_layout

    _, layout = edge_layout(model)
    if isinstance(prune_scores, Mapping):
        vec = layout.from_prune_scores(prune_scores).double()
    else:
        vec = torch.as_tensor(np.asarray(prune_scores.detach().cpu() if isinstance(
            prune_scores, Tensor) else prune_scores, dtype=np.float64))
        if vec.ndim != 1 or vec.shape[0] != layout.n_edges:
            raise ValueError(
                f"a circuit given as a vector needs {layout.n_edges} scores (one per edge, "
                f"in sorted_edges order); got shape {tuple(vec.shape)}")
    if not bool(torch.isfinite(vec).all()):
        raise ValueError("circuit scores contain NaN or inf; replace them before evaluating")
    return vec


def edge_count(fraction: float, n_edges: int) -> int:
    """``floor(fraction * n_edges)``, robust to float noise (0.29 * 100 is 28.999...)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"edge fractions must lie in [0, 1]; got {fraction}")
    return int(math.floor(round(fraction * n_edges, 9)))


def circuit_mask(scores: Tensor, count: int) -> Tensor:
    """Bool ``[n_edges]``: the top ``count`` edges by ``|score|``, ties with the last one kept.

    Same rule as auto-circuit's ``prune_scores_threshold`` (threshold = the ``count``-th
    largest ``|score|``; every edge at or above it is in the circuit).
    """
    if count <= 0:
        return torch.zeros(scores.shape[0], dtype=torch.bool)
    mag = scores.abs()
    threshold = mag.sort(descending=True).values[min(count, mag.shape[0]) - 1]
    return mag >= threshold


# ----------------------------------------------------------------------------- ablations
def _resample(model: Any, batch: Any, dataset_mean: Optional[Tensor]) -> Tensor:
    from auto_circuit.types import AblationType
    from auto_circuit.utils.ablation_activations import src_ablations

    return src_ablations(model, batch.corrupt, AblationType.RESAMPLE)


def _zero(model: Any, batch: Any, dataset_mean: Optional[Tensor]) -> Tensor:
    from auto_circuit.types import AblationType
    from auto_circuit.utils.ablation_activations import src_ablations

    return src_ablations(model, batch.corrupt, AblationType.ZERO)


def _mean(model: Any, batch: Any, dataset_mean: Optional[Tensor]) -> Tensor:
    assert dataset_mean is not None
    n_src, pos, d = dataset_mean.shape
    return dataset_mean[:, None].expand(n_src, batch.clean.shape[0], pos, d).contiguous()


#: ablation name -> patch activations ``[n_src, batch, pos, d_model]`` of one batch.
#: "resample": each source's output on the example's own corrupted prompt;
#: "zero": zeros; "mean": per-position mean of the corrupted outputs over the loader.
ABLATIONS: Dict[str, Callable[[Any, Any, Optional[Tensor]], Tensor]] = {
    "resample": _resample,
    "zero": _zero,
    "mean": _mean,
}


def _dataset_mean(model: Any, batches: Sequence[Any]) -> Tensor:
    """Per-position mean over all examples of every source's output on the corrupted prompts."""
    from auto_circuit.types import AblationType
    from auto_circuit.utils.ablation_activations import src_ablations

    lengths = {int(b.corrupt.shape[1]) for b in batches}
    if len(lengths) != 1:
        raise ValueError(
            f"ablation='mean' needs one token length; this loader has lengths {sorted(lengths)}. "
            "Use ablation='resample', or one loader per length (loader.subset(ids)).")
    total: Optional[Tensor] = None
    n = 0
    for b in batches:  # float32 on the model's device (Apple MPS has no float64)
        outs = src_ablations(model, b.corrupt, AblationType.RESAMPLE).float().sum(1)
        total = outs if total is None else total + outs
        n += int(b.corrupt.shape[0])
    assert total is not None
    return (total / n).to(next(model.parameters()).dtype)


# ----------------------------------------------------------------------------- model state
@contextmanager
def _restored_masks(model: Any) -> Iterator[Dict[str, Any]]:
    """The dest wrappers by module name; their mask values are put back on exit."""
    wrappers = {w.module_name: w for w in model.dest_wrappers}
    saved = {name: w.patch_mask.data.clone() for name, w in wrappers.items()}
    try:
        yield wrappers
    finally:
        for name, w in wrappers.items():
            w.patch_mask.data = saved[name]


def _set_masks(wrappers: Dict[str, Any], layout: Any, patched: Tensor) -> None:
    """Mask 1 (patch) on the edges where ``patched`` is True, 0 elsewhere."""
    for name, shape, start, stop in layout.blocks:
        mask = wrappers[name].patch_mask
        mask.data = patched[start:stop].reshape(shape).to(dtype=mask.dtype, device=mask.device)


def _check(model: Any, dataloader: Any) -> List[Any]:
    """The loader's batches, on the model's device, after checking model and batches."""
    from auto_circuit.utils.patchable_model import PatchableModel

    from ..data import batch_to
    from ..devices import model_device

    if not isinstance(model, PatchableModel):
        raise TypeError("faithfulness needs an auto-circuit PatchableModel: wrap the model "
                        "with dcd.make_patchable(model)")
    if any(w.patch_mode for w in model.wrappers):
        raise RuntimeError("the model is already in auto-circuit patch mode; leave it first")
    device = model_device(model)
    batches = [batch_to(b, device) for b in dataloader]
    if not batches:
        raise ValueError("the dataloader yields no batches (empty test set?)")
    for b in batches:
        if b.clean.shape != b.corrupt.shape:
            raise ValueError(f"clean {tuple(b.clean.shape)} and corrupt "
                             f"{tuple(b.corrupt.shape)} batches differ in shape")
    return batches


def _example_ids(dataloader: Any, batches: Sequence[Any]) -> List[Any]:
    ids = getattr(dataloader, "batch_example_ids", None)
    if ids is not None:
        return [i for b in ids for i in b]
    return list(range(sum(int(b.clean.shape[0]) for b in batches)))


# ----------------------------------------------------------------------------- public
def evaluate_circuits(
    model: Any,
    dataloader: Any,
    circuits: Mapping[Hashable, Any],
    edge_fractions: Sequence[float] = MIB_GRID,
    ablation: str = "resample",
    metric: str = "max_diff",
    progress: bool = False,
) -> Dict[Hashable, FaithfulnessResult]:
    """Faithfulness curves of several circuits on one test set, sharing the common work.

    Patch activations, ``mu(full)`` and ``mu(empty)`` are computed once per batch; then
    one patched forward per (circuit, fraction, batch).

    Args:
        model: an auto-circuit ``PatchableModel`` (see :func:`auto_circuit_dcd.make_patchable`).
        dataloader: any ``PromptDataLoader``; an ``ExampleLoader`` also gives example ids.
        circuits: ``{label: scores}``; scores are ``PruneScores`` or an ``[n_edges]``
            vector in the package's edge order. The circuit at size p is the top
            ``floor(p * n_edges)`` edges by ``|score|``.
        edge_fractions: fractions of edges p in [0, 1].
        ablation: a key of :data:`ABLATIONS` (``"resample"``, ``"zero"``, ``"mean"``).
        metric: a key of :data:`auto_circuit_dcd.task_metric.METRICS`.

    Returns:
        ``{label: FaithfulnessResult}`` in the order of ``circuits``.
    """
    from auto_circuit.utils.custom_tqdm import tqdm
    from auto_circuit.utils.graph_utils import patch_mode

    from ..edges import edge_layout

    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {sorted(ABLATIONS)}, got {ablation!r}")
    check_metric(metric)
    if not circuits:
        raise ValueError("no circuits to evaluate")
    fractions = np.asarray(list(edge_fractions), dtype=np.float64)
    if fractions.ndim != 1 or fractions.size == 0:
        raise ValueError("edge_fractions must be a non-empty list of fractions")
    batches = _check(model, dataloader)
    _, layout = edge_layout(model)
    n_edges = layout.n_edges
    requested = np.array([edge_count(float(p), n_edges) for p in fractions], dtype=np.int64)
    labels = list(circuits)
    vectors = {lab: score_vector(model, circuits[lab]) for lab in labels}
    # patched[lab][j]: edges outside the circuit at fraction j
    keep = {lab: [circuit_mask(vectors[lab], int(c)) for c in requested] for lab in labels}
    achieved = {lab: np.array([int(m.sum()) for m in keep[lab]], dtype=np.int64) for lab in labels}
    dataset_mean = _dataset_mean(model, batches) if ablation == "mean" else None
    all_patched = torch.ones(n_edges, dtype=torch.bool)

    mu_full: List[Tensor] = []
    mu_empty: List[Tensor] = []
    mu_circ: Dict[Hashable, List[Tensor]] = {lab: [] for lab in labels}
    out_slice = model.out_slice

    def mu_of(logits: Tensor, batch: Any) -> Tensor:
        return metric_values(logits, batch, metric)

    with _restored_masks(model) as wrappers, torch.inference_mode():
        for batch in tqdm(batches, desc="faithfulness", disable=not progress):
            mu_full.append(mu_of(model(batch.clean)[out_slice], batch))
            patch_outs = ABLATIONS[ablation](model, batch, dataset_mean)
            # identical circuits run once per batch; nothing patched is the clean run
            seen: Dict[bytes, Tensor] = {(~all_patched).numpy().tobytes(): mu_full[-1]}

            def run(patched: Tensor) -> Tensor:
                key = patched.numpy().tobytes()
                if key not in seen:
                    _set_masks(wrappers, layout, patched)
                    seen[key] = mu_of(model(batch.clean)[out_slice], batch)
                return seen[key]

            with patch_mode(model, patch_outs):
                mu_empty.append(run(all_patched))
                for lab in labels:
                    cols = [run(~in_circuit) for in_circuit in keep[lab]]
                    mu_circ[lab].append(torch.stack(cols, dim=1))
            del patch_outs

    full = torch.cat(mu_full).numpy()
    empty = torch.cat(mu_empty).numpy()
    if float(full.mean()) == float(empty.mean()):
        warnings.warn("the full model and the empty circuit have the same mean metric on this "
                      "test set: faithfulness is undefined (NaN)", stacklevel=2)
    ids = _example_ids(dataloader, batches)
    groups = getattr(dataloader, "groups", None)
    out: Dict[Hashable, FaithfulnessResult] = {}
    for lab in labels:
        mu = torch.cat(mu_circ[lab]).numpy()
        out[lab] = FaithfulnessResult(
            fractions=fractions.copy(), requested_counts=requested.copy(),
            achieved_counts=achieved[lab], f=ratio_of_means(mu, full, empty),
            mu_circuit=mu, mu_full=full.copy(), mu_empty=empty.copy(),
            example_ids=list(ids), n_edges=n_edges, metric=metric, ablation=ablation,
            groups=None if groups is None else list(groups))
    return out


def faithfulness(
    model: Any,
    dataloader: Any,
    prune_scores: Any,
    edge_fractions: Sequence[float] = MIB_GRID,
    ablation: str = "resample",
    metric: str = "max_diff",
    progress: bool = False,
) -> FaithfulnessResult:
    """Faithfulness curve f(p) of one circuit; see :func:`evaluate_circuits`."""
    return evaluate_circuits(model, dataloader, {"circuit": prune_scores}, edge_fractions,
                             ablation=ablation, metric=metric, progress=progress)["circuit"]
