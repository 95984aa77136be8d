"""``Circuit``: edge scores with their names, layout and graph, and the edges chosen from them.

A circuit is a score per edge in the package's fixed edge order (:mod:`.edges`), the edge
names, the layout that turns the scores into auto-circuit ``PruneScores``, the graph of
which node each edge leaves and enters (:mod:`.graph`), and ``mask``: the edges in the
circuit (all of them for a circuit fresh from scores). Selection rules return a new
circuit whose edges are a subset of this one's, so rules chain
(``c.top(100).pruned()``):

- ``top(count, ranking)``: the ``count`` best edges by ``|score|`` or signed score, edges
  tied with the last one kept (auto-circuit's ``prune_scores_threshold`` rule, as
  ``run_circuits`` applies it; see :mod:`.selection`);
- ``mass(gamma)``: the smallest edge set holding ``gamma`` of the total ``|score|``;
- ``pruned()``: only the edges on an input-to-logits path of the circuit's edges (EAP-IG's
  ``prune``, iterated to its fixed point);
- ``greedy(count, ranking)``: grown from the logits through the best-scoring parent edges
  (EAP-IG's ``apply_greedy``), then pruned.
- ``top_connected(count, ranking)``: ``top(m).pruned()`` for the smallest ``m`` that keeps at
  least ``count`` edges (the pruned top edges refilled down the ranking to the asked size).

:data:`SELECTIONS` names the rules that make a circuit of a given size (``"topn"``,
``"topn-prune"``, ``"topn-fill"``, ``"greedy"``); :meth:`Circuit.select` applies one, and
the evaluation and the main job choose edge sets through it.

``top(n).pruned()`` is EAP-IG's ``apply_topn(n, absolute, prune=True)``, the rule of the
method's release and of MIB's circuit track, up to ties (EAP-IG takes exactly ``n`` edges
in its sort's order; ``top`` keeps every edge tied with the ``n``-th). Everything needed is
stored with the circuit, so no rule needs the model.

Files: :func:`save_circuits` writes named circuits of one model's edges as one safetensors
file (each circuit's scores as ``NAME``, its edge set as ``NAME.mask`` when it is not every
edge, and any tensors the caller adds) and one JSON file (format version, edge names,
layout, graph, each circuit's ``meta``, anything the caller adds, the tensors' checksum);
:func:`load_circuits` reads them back. ``Circuit.save`` / ``Circuit.load`` are one circuit
named ``circuit`` in that format, and a run folder's ``circuits.safetensors`` is the same
format (:class:`~auto_circuit_dcd.job.run_folder.RunFolder`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
)

import numpy as np
import torch
from torch import Tensor

from auto_circuit_dcd.arrays import Indices
from auto_circuit_dcd.circuits.graph import EdgeGraph, edge_graph
from auto_circuit_dcd.circuits.selection import mass_mask, rank_key, top_mask
from auto_circuit_dcd.files import load_bundle, save_bundle
from auto_circuit_dcd.model.edges import EdgeLayout, edge_layout

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.utils.patchable_model import PatchableModel

    from auto_circuit_dcd.attribution.matrix import AttributionMatrix

__all__ = ["Circuit", "CircuitLike", "SELECTIONS", "check_selection", "save_circuits",
           "load_circuits", "CircuitFiles"]

TENSORS_FILE = "circuit.safetensors"
META_FILE = "circuit.json"
#: 2: named circuits (``NAME``, ``NAME.mask``) and their meta under ``circuits``;
#: 1: one circuit as ``scores`` and ``mask`` (still read)
FORMAT_VERSION = 2
#: the name of the one circuit ``Circuit.save`` writes
_ONE = "circuit"


@dataclass(frozen=True, eq=False, init=False)
class Circuit:
    """Edge scores, the edges chosen from them, and what the selection rules need.

    Attributes:
        scores: float64 ``[n_edges]`` in :func:`auto_circuit_dcd.model.edges.sorted_edges` order
            (auto-circuit's sign: positive supports the clean behaviour); finite.
        edge_names: auto-circuit ``Edge.name`` of each column.
        layout: where each destination module's block lies (``PruneScores`` conversion).
        graph: each edge's source and destination node; derived from the names and the
            layout when not given.
        mask: bool ``[n_edges]``, the edges in the circuit; all edges when not given.
        meta: JSON-serialisable notes (label, method), kept through selections and saved.
    """

    scores: Tensor
    edge_names: tuple[str, ...]
    layout: EdgeLayout
    graph: EdgeGraph
    mask: Tensor
    meta: dict[str, Any]

    def __init__(self, scores: Tensor | np.ndarray, edge_names: Sequence[str],
                 layout: EdgeLayout, graph: EdgeGraph | None = None,
                 mask: Tensor | np.ndarray | None = None,
                 meta: Mapping[str, Any] | None = None) -> None:
        # a hand-written __init__ so that ``graph`` and ``mask`` are optional arguments but
        # always-set attributes (derived here when not given)
        scores = _cpu_copy(scores).to(torch.float64)
        if scores.ndim != 1:
            raise ValueError(f"circuit scores are one vector [n_edges], got {tuple(scores.shape)}")
        n = int(scores.shape[0])
        bad = torch.nonzero(~torch.isfinite(scores)).flatten()
        if bad.numel():
            raise ValueError(
                f"circuit scores contain NaN or inf at {bad.numel()} edge(s) (first: "
                f"{bad[:5].tolist()}); ACDC keeps inf for the edges it never removed: map them "
                "with auto_circuit_dcd.cluster.circuits.finite_scores first")
        names = tuple(edge_names)
        if len(names) != n:
            raise ValueError(f"{len(names)} edge names for {n} scores")
        if layout.n_edges != n:
            raise ValueError(f"layout covers {layout.n_edges} edges, scores have {n}")
        if graph is None:
            graph = EdgeGraph.from_layout(names, layout)
        if graph.n_edges != n:
            raise ValueError(f"graph has {graph.n_edges} edges, scores have {n}")
        mask_t = torch.ones(n, dtype=torch.bool) if mask is None else _cpu_copy(mask)
        if mask_t.dtype != torch.bool or tuple(mask_t.shape) != (n,):
            raise ValueError(f"mask must be bool [{n}], got {mask_t.dtype} "
                             f"{tuple(mask_t.shape)}")
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "edge_names", names)
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "graph", graph)
        object.__setattr__(self, "mask", mask_t)
        object.__setattr__(self, "meta", dict(meta or {}))

    # ------------------------------------------------------------------ basics
    @property
    def n_edges(self) -> int:
        """Edges in the model's graph (the length of ``scores``)."""
        return int(self.scores.shape[0])

    @property
    def size(self) -> int:
        """Edges in the circuit."""
        return int(self.mask.sum())

    @property
    def edges(self) -> list[str]:
        """Names of the edges in the circuit, in the package's edge order."""
        return [self.edge_names[i] for i in torch.nonzero(self.mask).flatten().tolist()]

    def masked_scores(self) -> Tensor:
        """``scores`` on the circuit's edges, 0 elsewhere."""
        return torch.where(self.mask, self.scores, torch.zeros_like(self.scores))

    def with_mask(self, mask: Tensor | np.ndarray) -> Circuit:
        """The same scores with another edge set (bool ``[n_edges]``, torch or numpy)."""
        return Circuit(self.scores, self.edge_names, self.layout, self.graph, mask, self.meta)

    def __repr__(self) -> str:
        label = f" {self.meta['label']!r}" if "label" in self.meta else ""
        return f"Circuit{label}({self.size} of {self.n_edges} edges)"

    # ------------------------------------------------------------- selection
    def top(self, count: int, ranking: str = "abs") -> Circuit:
        """The ``count`` best edges of this circuit by ``ranking`` (``"abs"`` or ``"signed"``);
        edges tied with the ``count``-th are kept too (auto-circuit's rule)."""
        return self.with_mask(top_mask(self.scores.numpy(), count, ranking,
                                       candidates=self.mask.numpy()))

    def mass(self, gamma: float = 0.99) -> Circuit:
        """The smallest set of this circuit's edges holding ``gamma`` of its total ``|score|``
        (ties by edge index; zero-score edges never)."""
        return self.with_mask(mass_mask(self.masked_scores().numpy(), gamma))

    def pruned(self) -> Circuit:
        """Only the edges on an input-to-logits path of this circuit's edges."""
        return self.with_mask(self.graph.on_paths(self.mask.numpy()))

    def greedy(self, count: int, ranking: str = "abs", prune: bool = True) -> Circuit:
        """``count`` edges grown from the logits through the best-scoring parent edges
        (EAP-IG's ``apply_greedy``; ties by edge index), then pruned unless ``prune=False``."""
        if int(count) != count or count < 0:
            raise ValueError(f"count must be a non-negative integer, got {count}")
        grown = self.with_mask(self.graph.grow(rank_key(self.scores.numpy(), ranking),
                                               int(count), candidates=self.mask.numpy()))
        return grown.pruned() if prune else grown

    def top_connected(self, count: int, ranking: str = "abs") -> Circuit:
        """At least ``count`` edges on input-to-logits paths: ``top(m, ranking).pruned()``
        for the smallest ``m >= count`` that keeps ``count`` edges or more.

        ``top(count).pruned()`` can keep fewer edges than asked, and different circuits
        lose different numbers; this rule goes on down the ranking, past edges on no path,
        until ``count`` edges lie on paths, so circuits compared at one size hold (about)
        the same number of edges. It can hold a few more than ``count`` (the edge that
        completes a path can bring others onto it) and holds every on-path edge of this
        circuit when there are fewer than ``count``. Each ``top(m).pruned()`` is EAP-IG's
        ``apply_topn(m, prune=True)``; ``m`` is found by bisection, since the on-path
        edges of ``top(m)`` only grow with ``m``."""
        if int(count) != count or count < 0:
            raise ValueError(f"count must be a non-negative integer, got {count}")
        key = rank_key(self.scores.numpy(), ranking)
        candidates = self.mask.numpy()
        pool = np.sort(key[candidates])[::-1]  # the m-th best key is pool[m - 1]

        def on_paths(m: int) -> np.ndarray:
            if m == 0:
                return np.zeros_like(candidates)
            return self.graph.on_paths(candidates & (key >= pool[m - 1]))

        if count == 0:
            return self.with_mask(np.zeros_like(candidates))
        lo, hi = min(int(count), pool.size), pool.size
        while lo < hi:
            mid = (lo + hi) // 2
            if int(on_paths(mid).sum()) >= count:
                hi = mid
            else:
                lo = mid + 1
        return self.with_mask(on_paths(lo))

    def select(self, rule: str, count: int, ranking: str = "abs") -> Circuit:
        """The circuit of about ``count`` edges that selection ``rule`` (a key of
        :data:`SELECTIONS`) makes from this one, edges ranked by ``ranking``."""
        return SELECTIONS[check_selection(rule)](self, int(count), ranking)

    # ------------------------------------------------------------ auto-circuit
    def to_prune_scores(self, device: str | torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
        """auto-circuit ``PruneScores`` on ``device``: the scores of the circuit's edges, 0 on
        the others (a fresh circuit gives all its scores)."""
        parts = self.layout.to_prune_scores(self.masked_scores().to(dtype))
        return {name: t.to(device) for name, t in parts.items()} if device is not None else parts

    @classmethod
    def from_prune_scores(cls, prune_scores: Mapping[str, Tensor], model: PatchableModel,
                          meta: dict[str, Any] | None = None) -> Circuit:
        """A circuit of all edges from auto-circuit ``PruneScores`` of ``model``'s graph."""
        names, layout = edge_layout(model)
        return cls(layout.from_prune_scores(prune_scores), names, layout,
                   graph=edge_graph(model), meta=meta or {})

    @classmethod
    def from_matrix(cls, A: AttributionMatrix, rows: Indices | None = None,
                    model: PatchableModel | None = None,
                    meta: dict[str, Any] | None = None) -> Circuit:
        """The circuit of the mean of ``rows`` of an attribution matrix (all rows by default);
        ``model`` only for a matrix built without a layout."""
        return cls(A.mean(rows), A.edge_names, A.layout_for(model), meta=meta or {})

    # ---------------------------------------------------------------- storage
    def save(self, path: str | Path) -> Path:
        """Write ``path/circuit.safetensors`` (scores, mask) and ``path/circuit.json`` (names,
        layout, graph, meta): :func:`save_circuits` of this one circuit."""
        return save_circuits(path, {_ONE: self}, TENSORS_FILE, META_FILE)

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        """Read a circuit written by :meth:`save`."""
        return load_circuits(path, TENSORS_FILE, META_FILE, "Circuit").one()


#: what the evaluation and the metrics take as a circuit: a ``Circuit``, auto-circuit
#: ``PruneScores`` of the model (``{module name: scores}``) or an ``[n_edges]`` vector in the
#: package's edge order
CircuitLike = Circuit | Mapping[str, Tensor] | Tensor | np.ndarray


#: selection rule -> ``f(circuit, count, ranking)``, the circuit of about ``count`` edges:
#: ``"topn"`` the top ``count`` edges (ties kept); ``"topn-prune"`` those of them on an
#: input-to-logits path (EAP-IG's ``apply_topn(prune=True)``; can hold fewer than
#: ``count``); ``"topn-fill"`` the pruned top edges refilled down the ranking until at
#: least ``count`` lie on paths (:meth:`Circuit.top_connected`: circuits compared at one
#: size hold about as many edges); ``"greedy"`` ``count`` edges grown from the logits, then
#: pruned.
SELECTIONS: dict[str, Callable[[Circuit, int, str], Circuit]] = {
    "topn": lambda c, n, ranking: c.top(n, ranking),
    "topn-prune": lambda c, n, ranking: c.top(n, ranking).pruned(),
    "topn-fill": lambda c, n, ranking: c.top_connected(n, ranking),
    "greedy": lambda c, n, ranking: c.greedy(n, ranking),
}


def check_selection(rule: str) -> str:
    """``rule`` if it names a selection rule, else a ``ValueError`` listing them."""
    if rule not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {rule!r}")
    return rule


def _cpu_copy(values: Tensor | np.ndarray | Sequence[float]) -> Tensor:
    """A CPU tensor of ``values`` (torch or array-like) that shares no memory with them."""
    if isinstance(values, Tensor):
        return values.detach().cpu().clone()
    return torch.as_tensor(np.array(values))


# ----------------------------------------------------------------------------- files
@dataclass(frozen=True)
class CircuitFiles:
    """What :func:`load_circuits` read: the circuits by name, the caller's other tensors
    and the JSON (its own keys and the caller's)."""

    circuits: dict[str, Circuit]
    tensors: dict[str, Tensor]
    meta: dict[str, Any]

    def one(self) -> Circuit:
        """The only circuit (a file of ``Circuit.save``)."""
        if len(self.circuits) != 1:
            raise ValueError(f"the file holds {len(self.circuits)} circuits "
                             f"({sorted(self.circuits)}), not one")
        return next(iter(self.circuits.values()))


def save_circuits(path: str | Path, circuits: Mapping[str, Circuit], tensors_file: str,
                  meta_file: str, *, extra_tensors: Mapping[str, Tensor] | None = None,
                  extra_meta: Mapping[str, Any] | None = None,
                  dtype: torch.dtype = torch.float64) -> Path:
    """Write named circuits of one model's edges into folder ``path``: ``tensors_file``
    (``NAME``: scores in ``dtype``; ``NAME.mask``: the edge set, when not every edge; then
    ``extra_tensors``) and, after it, ``meta_file`` (see the module docstring). Every file
    whole or not at all; the old JSON is removed first."""
    if not circuits:
        raise ValueError("no circuits to save")
    first = next(iter(circuits.values()))
    tensors: dict[str, Tensor] = {}
    for name, c in circuits.items():
        if c.edge_names != first.edge_names or not c.graph.same_as(first.graph):
            raise ValueError(f"circuit {name!r} is over other edges than {next(iter(circuits))!r}"
                             ": one file holds circuits of one model's edges")
        tensors[name] = c.scores.to(dtype)
        if not bool(c.mask.all()):
            tensors[f"{name}.mask"] = c.mask
    clash = sorted(set(tensors) & set(extra_tensors or {}))
    if clash:
        raise ValueError(f"extra tensors {clash} clash with the circuits' own")
    meta = {"format_version": FORMAT_VERSION, "n_edges": first.n_edges,
            "edge_names": list(first.edge_names), "layout": first.layout.to_json(),
            "graph": first.graph.to_json(),
            "circuits": {name: c.meta for name, c in circuits.items()}, **(extra_meta or {})}
    return save_bundle(path, {**tensors, **(extra_tensors or {})}, meta, tensors_file,
                       meta_file)


def load_circuits(path: str | Path, tensors_file: str, meta_file: str,
                  what: str = "circuits") -> CircuitFiles:
    """Read what :func:`save_circuits` wrote (checksum verified) and, for a file of the
    first format (one circuit as ``scores`` and ``mask``), that circuit."""
    tensors, meta = load_bundle(path, tensors_file, meta_file, what)
    version = meta.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise ValueError(f"{path} holds {what} of format version {version}; this package "
                         f"reads 1 and {FORMAT_VERSION}")
    names = meta["edge_names"]
    layout = EdgeLayout.from_json(meta["layout"])
    graph = EdgeGraph.from_json(meta["graph"])
    if version == 1:
        return CircuitFiles({_ONE: Circuit(tensors["scores"], names, layout, graph=graph,
                                           mask=tensors["mask"], meta=meta.get("meta", {}))},
                            {}, meta)
    listed: dict[str, Any] = meta["circuits"]
    circuits = {name: Circuit(tensors[name], names, layout, graph=graph,
                              mask=tensors.get(f"{name}.mask"), meta=note)
                for name, note in listed.items()}
    own = set(listed) | {f"{name}.mask" for name in listed}
    return CircuitFiles(circuits, {k: v for k, v in tensors.items() if k not in own}, meta)
