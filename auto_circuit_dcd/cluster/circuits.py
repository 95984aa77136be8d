"""From a cluster's rows to its :class:`~auto_circuit_dcd.circuits.circuit.Circuit`: the mean
of its attribution rows (EAP family), or any auto-circuit prune algorithm run on a loader of
that cluster's examples only.

``cluster_circuits(A, labels)`` gives one circuit per cluster (noise, label ``-1``, gets
none); the baselines (:mod:`.baselines`) build theirs by the same rule
(:class:`CircuitBuilder`), so DCD is compared with the same method without clustering:

1. check the rows (2-D, finite) and find their edges: names, layout and graph from the
   :class:`~auto_circuit_dcd.attribution.matrix.AttributionMatrix` (which carries its
   layout) or from ``model``;
2. EAP family (``"eap"``, ``"eap-ig"``): the mean of the rows. Up to scale this is what EAP /
   EAP-IG would find on those examples (auto-circuit sums batch means), so no model pass
   runs;
3. any other base algorithm (a key of auto-circuit's ``PRUNE_ALGO_DICT`` such as ``"ACDC"``,
   or a ``PruneAlgo``): run on an :class:`~auto_circuit_dcd.data.ExampleLoader` of the rows'
   examples (rows map to examples through ``A.example_ids``); its ``PruneScores``, the
   hand-off from auto-circuit, become the circuit's scores.

ACDC uses only the first batch of its loader, so it gets one batch per cluster; a
cluster whose examples have several token lengths still splits into one batch per length,
and a warning says that only the first is used.

ACDC scores the edges it never removed ``inf``. Ranking, mass and faithfulness need finite
scores, so :func:`finite_scores` maps ``+inf`` to ``M`` and ``-inf`` to ``-M``, with ``M``
twice the largest finite ``|score|`` (1 when there is none): every order among the edges,
by ``|score|`` or signed, stays as it was (infinite edges stay tied with each other and
above every finite one). Every base algorithm's scores pass through it.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

from auto_circuit_dcd.arrays import Indices
from auto_circuit_dcd.circuits.circuit import Circuit
from auto_circuit_dcd.circuits.graph import EdgeGraph, edge_graph
from auto_circuit_dcd.model.edges import EdgeLayout, edge_layout

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.prune_algos.prune_algos import PruneAlgo
    from auto_circuit.utils.patchable_model import PatchableModel

    from auto_circuit_dcd.attribution.matrix import AttributionMatrix
    from auto_circuit_dcd.data import ExampleLoader

__all__ = ["EAP_FAMILY", "BaseAlgo", "Rows", "CircuitBuilder", "cluster_circuits",
           "as_rows", "check_base_algo", "base_algo_name",
           "resolve_base_algo", "run_base_algo", "finite_scores"]

#: base algorithms whose per-cluster circuit is the mean of the cluster's rows
EAP_FAMILY = ("eap", "eap-ig")
#: a base algorithm: a key of :data:`EAP_FAMILY` or of auto-circuit's ``PRUNE_ALGO_DICT``,
#: or a ``PruneAlgo``
BaseAlgo = Union[str, "PruneAlgo"]
#: attribution rows: an ``AttributionMatrix`` or an ``[n_examples, n_edges]`` array
Rows = Union["AttributionMatrix", np.ndarray, torch.Tensor]


def cluster_circuits(A: Rows, labels: Indices, *, base_algo: BaseAlgo = "eap",
                     model: PatchableModel | None = None,
                     dataloader: ExampleLoader | None = None,
                     batch_size: int | None = None) -> dict[int, Circuit]:
    """``{cluster label: its Circuit}`` for every cluster of ``labels`` (one label per row of
    ``A``, e.g. ``GroupedDiscovery.labels_``; noise ``-1`` gets none), in label order.

    EAP family: the mean of the cluster's rows, no model needed when ``A`` is an
    ``AttributionMatrix`` with its layout (else ``model`` gives the edges). Other base
    algorithms run on a loader of the cluster's examples: pass ``model`` and
    ``dataloader`` (an ``ExampleLoader`` holding them); ``batch_size`` sets the per-cluster
    loaders' batch size (ACDC always gets one batch per cluster).
    """
    build = CircuitBuilder.of(A, base_algo=base_algo, model=model, dataloader=dataloader,
                              batch_size=batch_size)
    lab = np.asarray(labels)
    if lab.shape != (build.n_rows,):
        raise ValueError(f"{lab.size} labels for {build.n_rows} rows: give one per row")
    kept = sorted(int(c) for c in set(lab.tolist()) if c >= 0)
    return {c: build(np.flatnonzero(lab == c), f"cluster_{c}") for c in kept}


def check_base_algo(base_algo: BaseAlgo) -> BaseAlgo:
    """``base_algo`` if it names a base algorithm, else a ``ValueError`` listing them."""
    if base_algo not in EAP_FAMILY:
        resolve_base_algo(base_algo)
    return base_algo


def base_algo_name(base_algo: BaseAlgo) -> str:
    """The name a circuit's ``meta`` and the report give ``base_algo``."""
    return base_algo if isinstance(base_algo, str) else str(getattr(base_algo, "key", base_algo))


@dataclass(frozen=True)
class _Edges:
    """The edges the rows' columns are: names, layout and graph."""

    names: tuple[str, ...]
    layout: EdgeLayout
    graph: EdgeGraph


def _edges(X: np.ndarray, matrix: AttributionMatrix | None,
           model: PatchableModel | None) -> _Edges:
    if model is not None:
        names, layout = edge_layout(model)
        if matrix is not None:
            layout = matrix.layout_for(model)  # checks the names against the model's
        elif X.shape[1] != layout.n_edges:
            raise ValueError(f"rows have {X.shape[1]} columns; the model has {layout.n_edges} "
                             "edges")
        return _Edges(tuple(names), layout, edge_graph(model))
    if matrix is None or matrix.layout is None:
        raise ValueError("these rows have no edge layout, so they make no circuit: pass an "
                         "AttributionMatrix from dcd.attribute (it carries its layout) or "
                         "model=pm")
    return _Edges(tuple(matrix.edge_names), matrix.layout,
                  EdgeGraph.from_layout(matrix.edge_names, matrix.layout))


@dataclass(frozen=True)
class CircuitBuilder:
    """Circuits of sets of rows of one attribution matrix, all by one base algorithm (the
    rule shared by :func:`cluster_circuits` and the baselines). ``CircuitBuilder.of(A, ...)``
    checks everything once; ``builder(rows, label)`` is the circuit of the rows at those
    positions, ``builder.from_scores(vector, label)`` a circuit of given scores."""

    X: np.ndarray
    matrix: AttributionMatrix | None
    edges: _Edges
    base_algo: BaseAlgo = "eap"
    model: PatchableModel | None = None
    dataloader: ExampleLoader | None = None
    batch_size: int | None = None

    @classmethod
    def of(cls, A: Rows, *, base_algo: BaseAlgo = "eap",
           model: PatchableModel | None = None,
           dataloader: ExampleLoader | None = None,
           batch_size: int | None = None) -> CircuitBuilder:
        X, matrix = as_rows(A)
        check_base_algo(base_algo)
        if base_algo not in EAP_FAMILY:
            if model is None or dataloader is None:
                raise ValueError(f"base_algo={base_algo_name(base_algo)!r} runs on the examples "
                                 "themselves: pass model= and dataloader=")
            if matrix is None:
                raise ValueError("a non-EAP base algorithm needs the rows' example ids: pass "
                                 "the AttributionMatrix")
        return cls(X, matrix, _edges(X, matrix, model), base_algo, model, dataloader,
                   batch_size)

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    def from_scores(self, scores: np.ndarray | torch.Tensor, label: str) -> Circuit:
        """A circuit of ``scores`` (``[n_edges]``) over the rows' edges."""
        e = self.edges
        return Circuit(scores, e.names, e.layout, graph=e.graph,
                       meta={"label": label, "base_algo": base_algo_name(self.base_algo)})

    def __call__(self, rows: Indices, label: str) -> Circuit:
        """The circuit of the rows at positions ``rows``, by the base algorithm."""
        idx = np.asarray(rows, dtype=int)
        if idx.size == 0:
            raise ValueError(f"{label}: a set of no rows has no circuit")
        if self.base_algo in EAP_FAMILY:
            mean = (self.matrix.mean(idx) if self.matrix is not None  # as A.prune_scores
                    else torch.as_tensor(self.X[idx].mean(0)))
            return self.from_scores(mean, label)
        if self.matrix is None or self.model is None or self.dataloader is None:
            raise ValueError(f"base_algo={base_algo_name(self.base_algo)!r} runs on the "
                             "examples themselves: build with CircuitBuilder.of(A, model=, "
                             "dataloader=) from the AttributionMatrix")
        ids = [self.matrix.example_ids[int(i)] for i in idx]
        ps = run_base_algo(resolve_base_algo(self.base_algo), self.model, self.dataloader, ids,
                           batch_size=self.batch_size, label=label)
        return self.from_scores(self.edges.layout.from_prune_scores(ps), label)


def as_rows(A: Rows) -> tuple[np.ndarray, AttributionMatrix | None]:
    """``(float64 [n, f] array, AttributionMatrix or None)``; checks shape and finiteness."""
    from auto_circuit_dcd.attribution.matrix import AttributionMatrix

    matrix = A if isinstance(A, AttributionMatrix) else None
    if matrix is not None:
        X = matrix.to_numpy()
    elif isinstance(A, torch.Tensor):
        X = A.detach().cpu().double().numpy()
    else:
        X = np.asarray(A, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected attribution rows [n_examples, n_features], got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"no data to cluster: shape {X.shape}")
    bad = np.flatnonzero(~np.isfinite(X).all(1))
    if bad.size:
        raise ValueError(
            f"{bad.size} row(s) contain NaN or inf (positions {bad[:10].tolist()}); drop them "
            "first, e.g. A.subset(rows_to_keep) (dcd.attribute drops such rows itself)")
    return X, matrix


def resolve_base_algo(base_algo: BaseAlgo) -> PruneAlgo:
    """An auto-circuit ``PruneAlgo`` from a ``PRUNE_ALGO_DICT`` key or a ``PruneAlgo``."""
    from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT, PruneAlgo

    if isinstance(base_algo, PruneAlgo):
        return base_algo
    if isinstance(base_algo, str) and base_algo in PRUNE_ALGO_DICT:
        return PRUNE_ALGO_DICT[base_algo]
    raise ValueError(
        f"base_algo must be one of {list(EAP_FAMILY)}, a key of auto-circuit's "
        f"PRUNE_ALGO_DICT (e.g. 'ACDC') or a PruneAlgo; got {base_algo!r}")


def _first_batch_only(algo: PruneAlgo) -> bool:
    from auto_circuit.prune_algos.ACDC import acdc_prune_scores

    func = algo.func
    while isinstance(func, functools.partial):
        func = func.func
    return func is acdc_prune_scores


def run_base_algo(algo: PruneAlgo, model: PatchableModel, dataloader: ExampleLoader,
                  ids: Sequence[Hashable], batch_size: int | None = None,
                  label: Hashable = None) -> dict[str, torch.Tensor]:
    """Run ``algo`` on a loader of the examples ``ids`` only; returns its ``PruneScores``
    (auto-circuit's form, finite: :func:`finite_scores`)."""
    if not hasattr(dataloader, "subset"):
        raise TypeError(
            "a non-EAP base algorithm needs an ExampleLoader (dcd.prepare / dcd.data.make_loader) "
            "to build one loader per cluster; got " + type(dataloader).__name__)
    from auto_circuit_dcd.model.devices import model_device

    one_batch = _first_batch_only(algo)
    loader = dataloader.subset(list(ids), batch_size=len(ids) if one_batch else batch_size,
                               device=model_device(model))  # auto-circuit indexes with it
    if one_batch and len(loader.batch_positions) > 1:
        warnings.warn(
            f"cluster {label}: its {len(ids)} examples have {len(loader.batch_positions)} "
            f"token lengths; {algo.key} uses only the first batch "
            f"({len(loader.batch_positions[0])} examples)", stacklevel=3)
    return finite_scores(algo.func(model, loader, None), label=f"{algo.key}, cluster {label}")


def finite_scores(prune_scores: Mapping[str, torch.Tensor],
                  label: str = "prune scores") -> dict[str, torch.Tensor]:
    """``prune_scores`` with ``+-inf`` replaced by ``+-M`` (order-preserving; see the module
    docstring). NaN is an error: it has no place in an order."""
    values = [t.detach() for t in prune_scores.values()]
    if any(bool(torch.isnan(t).any()) for t in values):
        raise ValueError(f"{label}: scores contain NaN; the algorithm failed on these examples")
    finite = [t[torch.isfinite(t)].abs() for t in values]
    largest = max((float(f.max()) for f in finite if f.numel()), default=0.0)
    big = 2.0 * largest if largest > 0 else 1.0
    out = {}
    for name, t in prune_scores.items():
        if torch.isinf(t).any():  # only float tensors hold inf
            if big > torch.finfo(t.dtype).max:
                raise ValueError(f"{label}: finite scores up to {largest:g} leave no room "
                                 "below the dtype's largest value for the infinite ones")
            t = torch.where(torch.isinf(t), torch.sign(t) * big, t)
        out[name] = t
    return out
