"""Faithfulness of circuits: how much of the model's behaviour a subset of its edges keeps.

For a circuit C (a set of edges) and a test example i, ``mu_i(C)`` is the metric
(:data:`auto_circuit_dcd.model.task_metric.METRICS`) of the model run on the clean prompt with
every edge *outside* C patched (auto-circuit's TREE_PATCH): by default with the source's
output on the example's own corrupted prompt (RESAMPLE). Then

    f(C) = (mean_i mu_i(C) - mean_i mu_i(empty)) / (mean_i mu_i(full) - mean_i mu_i(empty))

a ratio of means over the test set. The circuit at size p is the edge set a selection rule
(:data:`auto_circuit_dcd.circuits.circuit.SELECTIONS`) makes for ``floor(p * n_edges)`` edges:
``"topn"`` (default) the top edges by ``ranking`` (``"abs"``: ``|score|``; ``"signed"``),
thresholded as auto-circuit's ``run_circuits`` does (edges tied with the last one kept
are all kept, so the achieved count can exceed the requested one); ``"topn-prune"`` those
of them on an input-to-logits path; ``"topn-fill"`` the pruned top edges refilled down the
ranking to the asked count; ``"greedy"`` edges grown from the logits. The edges
achieved per size are in ``FaithfulnessResult.achieved_counts`` and ``edge_sets``.

How:

1. each circuit's edge set: a boolean "edge in circuit" vector per (label, fraction), in
   the package's edge order (:meth:`Circuit.select`); identical sets are evaluated once,
   the full set is the clean run and the empty set the fully patched one;
2. a backend (:data:`BACKENDS`) gives ``mu`` per example for each distinct set, with the
   per-batch fixed work (patch activations, ``mu(full)``, ``mu(empty)``) done once:
   ``"fast"`` (default where supported) runs the flag-free patched forward of
   :mod:`.patched`, several circuits per pass; ``"patch-mode"`` runs auto-circuit's patch
   mode, one forward per circuit; inside an initialised process group
   (:mod:`auto_circuit_dcd.distributed`) the test batches are split over the ranks by
   size (examples x tokens) and every rank gets every example's values;
3. the curves: ratio of means per fraction.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from auto_circuit_dcd.circuits.circuit import Circuit, check_selection
from auto_circuit_dcd.circuits.graph import EdgeGraph, edge_graph
from auto_circuit_dcd.circuits.selection import check_ranking
from auto_circuit_dcd.evaluation.ablation import ABLATIONS, check_ablation
from auto_circuit_dcd.evaluation.mask_metrics import MaskMetrics
from auto_circuit_dcd.evaluation.patch_mode import patch_mode_metrics
from auto_circuit_dcd.evaluation.patched import fast_metrics, fast_unsupported_reason
from auto_circuit_dcd.model.edges import edge_layout
from auto_circuit_dcd.model.forward import choose_backend
from auto_circuit_dcd.model.task_metric import check_metric

#: a circuit label: ``evaluate_circuits`` keys its results as its circuits are keyed
_Label = TypeVar("_Label", bound=Hashable)

__all__ = [
    "MIB_GRID",
    "ABLATIONS",
    "BACKENDS",
    "FaithfulnessResult",
    "faithfulness",
    "evaluate_circuits",
    "edge_set_metrics",
    "score_vector",
    "as_circuit",
    "edge_count",
]

#: fractions of edges of the MIB grid (0.1% .. 100%)
MIB_GRID: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


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
        selection, ranking: how each size's edges were chosen (:meth:`Circuit.select`).
        edge_sets: bool ``[n_fractions, n_edges]``, the edges evaluated at each size
            (package edge order); not in :meth:`to_dict` (one row per edge).
    """

    fractions: np.ndarray
    requested_counts: np.ndarray
    achieved_counts: np.ndarray
    f: np.ndarray
    mu_circuit: np.ndarray
    mu_full: np.ndarray
    mu_empty: np.ndarray
    example_ids: list[Any]
    n_edges: int
    metric: str = "max_diff"
    ablation: str = "resample"
    groups: list[str | None] | None = field(default=None)
    selection: str = "topn"
    ranking: str = "abs"
    edge_sets: np.ndarray | None = field(default=None, repr=False)

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (lists of floats; NaN as None)."""
        from auto_circuit_dcd.schema import jsonable

        return jsonable({
            "fractions": self.fractions,
            "requested_counts": self.requested_counts,
            "achieved_counts": self.achieved_counts,
            "f": self.f,
            "mu_circuit": self.mu_circuit,
            "mu_full": self.mu_full,
            "mu_empty": self.mu_empty,
            "example_ids": [x if isinstance(x, (int, str)) else str(x) for x in self.example_ids],
            "groups": self.groups,
            "n_edges": self.n_edges,
            "metric": self.metric,
            "ablation": self.ablation,
            "selection": self.selection,
            "ranking": self.ranking,
        })


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
    (torch or numpy) already in :func:`auto_circuit_dcd.model.edges.sorted_edges` order.
    """
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


def as_circuit(model: Any, circuit: Any, graph: EdgeGraph | None = None) -> Circuit:
    """A :class:`Circuit` over ``model``'s edges from a ``Circuit`` (checked against them),
    auto-circuit ``PruneScores`` or an ``[n_edges]`` vector (see :func:`score_vector`);
    ``graph``: ``edge_graph(model)`` if already built."""
    names, layout = edge_layout(model)
    if isinstance(circuit, Circuit):
        if circuit.edge_names != tuple(names):
            raise ValueError("the circuit's edge names are not this model's edges (a circuit "
                             "of another model?)")
        return circuit
    return Circuit(score_vector(model, circuit), names, layout,
                   graph=graph if graph is not None else edge_graph(model))


# ----------------------------------------------------------------------------- backends
#: backend name -> ``f(model, batches, in_circuit [n_circuits, n_edges] bool, *, ablation,
#: metric, progress, max_stack_gib) -> MaskMetrics``. "fast": the flag-free patched
#: forward (patched.py, stacked circuits); "patch-mode": auto-circuit's own patch mode
#: (patch_mode.py), the reference. "auto" takes "fast" where the model is supported.
BACKENDS: dict[str, Callable[..., MaskMetrics]] = {
    "fast": fast_metrics,
    "patch-mode": patch_mode_metrics,
}


def _check(model: Any, dataloader: Any) -> list[Any]:
    """The loader's batches, on the model's device, after checking model and batches."""
    from auto_circuit.utils.patchable_model import PatchableModel

    from auto_circuit_dcd.data import batch_to
    from auto_circuit_dcd.model.devices import model_device

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


def _example_ids(dataloader: Any, batches: Sequence[Any]) -> list[Any]:
    ids = getattr(dataloader, "batch_example_ids", None)
    if ids is not None:
        return [i for b in ids for i in b]
    return list(range(sum(int(b.clean.shape[0]) for b in batches)))


# ----------------------------------------------------------------------------- public
def evaluate_circuits(
    model: Any,
    dataloader: Any,
    circuits: Mapping[_Label, Any],
    edge_fractions: Sequence[float] = MIB_GRID,
    ablation: str = "resample",
    metric: str = "max_diff",
    progress: bool = False,
    *,
    backend: str = "auto",
    max_stack_gib: float | None = None,
    selection: str = "topn",
    ranking: str = "abs",
) -> dict[_Label, FaithfulnessResult]:
    """Faithfulness curves of several circuits on one test set, sharing the common work.

    Patch activations, ``mu(full)`` and ``mu(empty)`` are computed once per batch; then
    each distinct (circuit, fraction) edge set is evaluated once per batch.

    Args:
        model: an auto-circuit ``PatchableModel`` (see :func:`auto_circuit_dcd.make_patchable`).
        dataloader: any ``PromptDataLoader``; an ``ExampleLoader`` also gives example ids.
        circuits: ``{label: circuit}``; a circuit is a :class:`Circuit`, ``PruneScores``
            or an ``[n_edges]`` vector in the package's edge order. The circuit at size p
            is ``circuit.select(selection, floor(p * n_edges), ranking)`` (a ``Circuit``
            that already has a subset of the edges selects among them).
        edge_fractions: fractions of edges p in [0, 1].
        ablation: a key of :data:`ABLATIONS` (``"resample"``, ``"zero"``, ``"mean"``).
        metric: a key of :data:`auto_circuit_dcd.model.task_metric.METRICS`.
        progress: show a bar that moves per patched forward, with the time left.
        backend: ``"auto"`` (default: ``"fast"`` where the model is supported, else
            ``"patch-mode"``), ``"fast"`` or ``"patch-mode"``; see :data:`BACKENDS`.
        max_stack_gib: ``"fast"`` only: working memory (GiB) of one pass over a stack of
            circuits; more circuits are split over several passes. Default: 1 GiB on the
            CPU, a quarter of the free memory on a GPU.
        selection: ``"topn"``, ``"topn-prune"``, ``"topn-fill"`` or ``"greedy"``
            (:data:`auto_circuit_dcd.circuits.circuit.SELECTIONS`).
        ranking: ``"abs"`` (by ``|score|``) or ``"signed"`` (most positive first, MIB's
            ranking for CPR).

    Returns:
        ``{label: FaithfulnessResult}`` in the order of ``circuits``.
    """
    check_ablation(ablation)
    check_metric(metric)
    check_selection(selection)
    check_ranking(ranking)
    if not circuits:
        raise ValueError("no circuits to evaluate")
    fractions = np.asarray(list(edge_fractions), dtype=np.float64)
    if fractions.ndim != 1 or fractions.size == 0:
        raise ValueError("edge_fractions must be a non-empty list of fractions")
    _, layout = edge_layout(model)
    n_edges = layout.n_edges
    requested = np.array([edge_count(float(p), n_edges) for p in fractions], dtype=np.int64)
    labels = list(circuits)
    graph = None if all(isinstance(c, Circuit) for c in circuits.values()) else edge_graph(model)
    chosen = {lab: as_circuit(model, circuits[lab], graph) for lab in labels}
    # one "edge in circuit" row per (label, fraction), label-major
    in_circuit = torch.stack([chosen[lab].select(selection, int(c), ranking).mask
                              for lab in labels for c in requested])
    res = edge_set_metrics(model, dataloader, in_circuit, ablation=ablation, metric=metric,
                           progress=progress, backend=backend, max_stack_gib=max_stack_gib)
    full, empty = res.mu_full, res.mu_empty
    if float(full.mean()) == float(empty.mean()):
        warnings.warn("the full model and the empty circuit have the same mean metric on this "
                      "test set: faithfulness is undefined (NaN)", stacklevel=2)
    batches = list(dataloader)
    ids = _example_ids(dataloader, batches)
    groups = getattr(dataloader, "groups", None)
    n_f = len(fractions)
    out: dict[_Label, FaithfulnessResult] = {}
    for i, lab in enumerate(labels):
        mu = res.mu[:, i * n_f:(i + 1) * n_f]
        sets = in_circuit[i * n_f:(i + 1) * n_f].numpy()
        achieved = sets.sum(1).astype(np.int64)
        out[lab] = FaithfulnessResult(
            fractions=fractions.copy(), requested_counts=requested.copy(),
            achieved_counts=achieved, f=ratio_of_means(mu, full, empty),
            mu_circuit=mu, mu_full=full.copy(), mu_empty=empty.copy(),
            example_ids=list(ids), n_edges=n_edges, metric=metric, ablation=ablation,
            groups=None if groups is None else list(groups), selection=selection,
            ranking=ranking, edge_sets=sets)
    return out


def edge_set_metrics(
    model: Any,
    dataloader: Any,
    in_circuit: Tensor,
    *,
    ablation: str = "resample",
    metric: str = "max_diff",
    progress: bool = False,
    backend: str = "auto",
    max_stack_gib: float | None = None,
) -> MaskMetrics:
    """``mu`` per (example, edge set) for edge sets given as booleans, however chosen.

    ``in_circuit [n_sets, n_edges]`` (bool, the package's edge order): True = edge in the
    circuit (not patched). Identical rows are evaluated once, the full set is the clean
    run and the empty set the fully patched one. Returns :class:`MaskMetrics` with
    ``mu [n_examples, n_sets]`` in the rows' order; arguments as :func:`evaluate_circuits`.
    """
    check_ablation(ablation)
    check_metric(metric)
    batches = _check(model, dataloader)
    check_ablation(ablation, batches)
    backend_name = choose_backend(model, backend, BACKENDS, fallback="patch-mode",
                                  why_not=fast_unsupported_reason)
    n_edges = edge_layout(model)[1].n_edges
    in_circuit = torch.as_tensor(in_circuit)
    if in_circuit.dtype != torch.bool or in_circuit.ndim != 2 or in_circuit.shape[1] != n_edges:
        raise ValueError(f"in_circuit must be a bool tensor [n_sets, {n_edges}] (one column "
                         f"per edge, sorted_edges order); got {in_circuit.dtype} "
                         f"{tuple(in_circuit.shape)}")
    in_circuit = in_circuit.cpu()
    # distinct edge sets; FULL: the clean run, EMPTY: every edge patched
    full_col, empty_col = -1, -2
    column: dict[bytes, int] = {}
    distinct: list[Tensor] = []
    where: list[int] = []
    for m in in_circuit:
        n_in = int(m.sum())
        if n_in in (0, n_edges):
            where.append(full_col if n_in else empty_col)
            continue
        key = m.numpy().tobytes()
        if key not in column:
            column[key] = len(distinct)
            distinct.append(m)
        where.append(column[key])
    todo = torch.stack(distinct) if distinct else torch.zeros(0, n_edges, dtype=torch.bool)
    res = _sharded(BACKENDS[backend_name], model, batches, todo, ablation=ablation,
                   metric=metric, progress=progress, max_stack_gib=max_stack_gib)
    n_dist = res.mu.shape[1]
    table = np.concatenate([res.mu, res.mu_full[:, None], res.mu_empty[:, None]], axis=1)
    cols = [j if j >= 0 else n_dist + (0 if j == full_col else 1) for j in where]
    return MaskMetrics(mu=table[:, cols], mu_full=res.mu_full, mu_empty=res.mu_empty)


def _sharded(backend: Callable[..., MaskMetrics], model: Any, batches: list[Any],
             todo: Tensor, *, ablation: str, progress: bool, **kw: Any) -> MaskMetrics:
    """``backend`` on the batches, split by batch over the ranks of a process group
    (:func:`~auto_circuit_dcd.distributed.map_shards`) and gathered in batch order.

    ``mean`` ablation patches with the mean over the whole loader: every rank evaluates
    every batch then (the result is the same).
    """
    from auto_circuit_dcd.distributed import is_main, map_shards

    sizes = [int(b.clean.shape[0]) for b in batches]

    def metrics_of(idx: list[int]) -> dict[int, MaskMetrics]:
        if not idx:
            return {}
        res = backend(model, [batches[i] for i in idx], todo, ablation=ablation,
                      progress=progress and is_main(), **kw)
        out, start = {}, 0
        for i in idx:
            rows = slice(start, start + sizes[i])
            out[i] = MaskMetrics(mu=res.mu[rows], mu_full=res.mu_full[rows],
                                 mu_empty=res.mu_empty[rows])
            start += sizes[i]
        return out

    parts = list(map_shards(len(batches), metrics_of, split=ablation != "mean",
                            weights=[b.clean.numel() for b in batches]).values())
    return MaskMetrics(mu=np.concatenate([p.mu for p in parts]),
                       mu_full=np.concatenate([p.mu_full for p in parts]),
                       mu_empty=np.concatenate([p.mu_empty for p in parts]))


def faithfulness(
    model: Any,
    dataloader: Any,
    prune_scores: Any,
    edge_fractions: Sequence[float] = MIB_GRID,
    ablation: str = "resample",
    metric: str = "max_diff",
    progress: bool = False,
    *,
    backend: str = "auto",
    max_stack_gib: float | None = None,
    selection: str = "topn",
    ranking: str = "abs",
) -> FaithfulnessResult:
    """Faithfulness curve f(p) of one circuit; see :func:`evaluate_circuits`."""
    return evaluate_circuits(model, dataloader, {"circuit": prune_scores}, edge_fractions,
                             ablation=ablation, metric=metric, progress=progress,
                             backend=backend, max_stack_gib=max_stack_gib,
                             selection=selection, ranking=ranking)["circuit"]
