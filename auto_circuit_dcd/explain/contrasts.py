"""The edges and nodes that set a cluster apart: each cluster against the rest, and each
pair of clusters, tested on every edge and every node at once.

1. values compared (:data:`SCORES`): each prompt's ``|score|`` per edge (default: how much
   the edge matters, the quantity circuits are ranked by under the ``abs`` ranking) or its
   signed score;
2. node values (:data:`NODE_EDGES`): a node's value sums the values of its edges, by
   default the edges it *leaves*. An edge's score is the attribution of patching its
   source's output as one destination reads it; the source's output reaches every later
   destination, so summing over the edges a node leaves gives the effect of its whole
   output (with signed scores exactly the node's own attribution patching score), which
   is what ablating the node removes. ``"in"`` sums the edges a node enters (what it
   reads: a head's Q, K and V inputs), ``"both"`` counts each edge toward both ends;
   nodes that no counted edge touches (the logits under ``"out"``) are left out;
3. per contrast, :func:`~.permutation.two_group_test` on the edge and node columns
   together (the same label permutations for all), then the false discovery rate over
   the edges and, separately, over the nodes;
4. each table lists the significant units (q at most ``alpha``) larger in the cluster
   (``higher``, largest effect size first) and smaller in it (``lower``), at most ``top``
   of each. A contrast and its mirror image (cluster 0 against 1, 1 against 0, and with
   two clusters each against the rest) are tested once.

Names are MIB's (:mod:`auto_circuit_dcd.circuits.mib`). Noise rows (``-1``) are in no group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Literal

import numpy as np
import torch

from auto_circuit_dcd.circuits.graph import EdgeGraph
from auto_circuit_dcd.circuits.mib import eap_ig_edge_name, eap_ig_node_name
from auto_circuit_dcd.explain.inputs import FittedClusters
from auto_circuit_dcd.explain.permutation import TwoGroupTest, benjamini_hochberg, two_group_test
from auto_circuit_dcd.explain.records import Contrast, DifferenceTable, UnitDifference

__all__ = ["SCORES", "NODE_EDGES", "ScoreKind", "NodeEdges", "node_values", "mib_edge_name",
           "mib_node_name", "contrasts"]

ScoreKind = Literal["abs", "signed"]
NodeEdges = Literal["out", "in", "both"]

#: what is compared per edge: ``|score|`` or the signed score
SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "abs": torch.abs,
    "signed": lambda s: s,
}
#: which edges count toward a node: the node index of each counted edge end
NODE_EDGES: dict[str, Callable[[EdgeGraph], list[np.ndarray]]] = {
    "out": lambda g: [g.edge_src],
    "in": lambda g: [g.edge_dest],
    "both": lambda g: [g.edge_src, g.edge_dest],
}


def mib_edge_name(name: str) -> str:
    """MIB's name of an auto-circuit edge (the name itself where MIB has none)."""
    try:
        return eap_ig_edge_name(name)
    except ValueError:
        return name


def mib_node_name(name: str) -> str:
    """MIB's name of an auto-circuit node: ``input``, ``a{l}.h{h}``, ``m{l}``, ``logits``."""
    if name == "Resid End":
        return "logits"
    try:
        return eap_ig_node_name(name)
    except ValueError:
        return name


def node_values(values: torch.Tensor, graph: EdgeGraph,
                node_edges: NodeEdges = "out") -> tuple[torch.Tensor, list[str]]:
    """``([n, n_nodes_used], names)``: per row, each node's sum of its counted edges'
    values (:data:`NODE_EDGES`), for the nodes some counted edge touches (MIB names)."""
    ends = NODE_EDGES[node_edges](graph)
    used = np.unique(np.concatenate(ends))
    out = torch.zeros(values.shape[0], graph.n_nodes, dtype=values.dtype)
    for end in ends:
        out.index_add_(1, torch.as_tensor(end), values)
    return out[:, torch.as_tensor(used)], [mib_node_name(graph.node_names[i]) for i in used]


def _effect_key(test: TwoGroupTest, idx: np.ndarray) -> np.ndarray:
    """Effect sizes for ranking; NaN (both groups constant) as an infinite effect in the
    direction of the difference."""
    d, diff = test.effect_size[idx], test.difference[idx]
    unbounded = np.where(diff > 0, np.inf, np.where(diff < 0, -np.inf, 0.0))
    return np.where(np.isnan(d), unbounded, d)


def _table(test: TwoGroupTest, cols: slice, names: Sequence[str], alpha: float,
           top: int) -> DifferenceTable:
    p = test.p_value[cols]
    q = benjamini_hochberg(p)
    idx = np.arange(cols.start, cols.stop)
    diff = test.difference[idx]
    significant = np.nan_to_num(q, nan=np.inf) <= alpha
    key = _effect_key(test, idx)

    def rows(mask: np.ndarray, sign: float) -> list[UnitDifference]:
        chosen = np.flatnonzero(mask)
        chosen = chosen[np.argsort(-sign * key[chosen], kind="stable")][:top]
        return [UnitDifference(name=names[j], mean_a=float(test.mean_a[idx[j]]),
                               mean_b=float(test.mean_b[idx[j]]), difference=float(diff[j]),
                               effect_size=float(test.effect_size[idx[j]]),
                               p_value=float(p[j]), q_value=float(q[j])) for j in chosen]

    up, down = significant & (diff > 0), significant & (diff < 0)
    return DifferenceTable(n_tested=int(test.tested[idx].sum()), n_higher=int(up.sum()),
                           n_lower=int(down.sum()), higher=rows(up, 1.0),
                           lower=rows(down, -1.0))


def contrasts(scores: torch.Tensor, edge_names: Sequence[str], graph: EdgeGraph,
              fit: FittedClusters, *, values: ScoreKind = "abs", node_edges: NodeEdges = "out",
              n_permutations: int = 1000, alpha: float = 0.05, top: int = 20,
              pairs: bool = True,
              rng: np.random.RandomState | None = None) -> list[Contrast]:
    """Each cluster against the rest, then (``pairs``) each pair ``(a, b)``, ``a < b``, on
    the edge columns of ``scores`` (``[n, n_edges]``, rows as ``fit``'s) and the node
    values derived from them (see the module docstring). One cluster: no contrast."""
    rng = rng if rng is not None else np.random.RandomState(0)
    clusters = list(fit.clusters)
    if len(clusters) < 2:
        return []
    V = SCORES[values](torch.as_tensor(scores).to(torch.float64))
    N, node_names = node_values(V, graph, node_edges)
    columns = torch.cat([V, N], dim=1)
    n_edges = V.shape[1]
    edge_cols, node_cols = slice(0, n_edges), slice(n_edges, n_edges + N.shape[1])
    edges = [mib_edge_name(e) for e in edge_names]
    clustered = fit.labels >= 0
    done: dict[tuple[bytes, bytes], TwoGroupTest] = {}

    def contrast(a: int, b: int | None) -> Contrast:
        in_a = fit.rows(a)
        in_b = fit.rows(b) if b is not None else clustered & ~in_a
        key = (in_a.tobytes(), in_b.tobytes())
        if key not in done:
            mirror = done.get((key[1], key[0]))
            done[key] = (mirror.swapped() if mirror is not None else
                         two_group_test(columns, in_a, in_b, n_permutations=n_permutations,
                                        rng=rng))
        test = done[key]
        return Contrast(cluster=a, other=b, n_cluster=test.n_a, n_other=test.n_b,
                        edges=_table(test, edge_cols, edges, alpha, top),
                        nodes=_table(test, node_cols, node_names, alpha, top))

    return ([contrast(c, None) for c in clusters]
            + [contrast(a, b) for a, b in combinations(clusters, 2) if pairs])
