"""Which edges two clusters' circuits share at one size, and which only one of them has.

For each pair of clusters ``a < b``:

1. each circuit at the size: with ``size`` (an edge count), the circuit the selection rule
   makes (``Circuit.select(selection, size, ranking)``, the rule the evaluation applies:
   the evaluated circuit); without, the circuit's own edge set (``Circuit.mask``);
2. edges only in ``a``'s, only in ``b``'s, in both; their Jaccard index;
3. the lists ordered by ``|score|`` (``a``'s for ``only_a``, ``b``'s for ``only_b``, the
   larger for ``shared``), ties by edge order, at most ``max_listed`` each (the counts are
   always whole).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np

from auto_circuit_dcd.circuits.circuit import Circuit
from auto_circuit_dcd.explain.contrasts import mib_edge_name
from auto_circuit_dcd.explain.records import CircuitDifference

__all__ = ["circuit_difference", "circuit_differences"]


def _listed(mask: np.ndarray, key: np.ndarray, names: list[str],
            max_listed: int | None) -> list[str]:
    idx = np.flatnonzero(mask)
    idx = idx[np.argsort(-key[idx], kind="stable")]
    if max_listed is not None:
        idx = idx[:max_listed]
    return [names[i] for i in idx]


def circuit_difference(a: int, b: int, circuit_a: Circuit, circuit_b: Circuit, *,
                       size: int | None = None, selection: str = "topn-prune",
                       ranking: str = "abs",
                       max_listed: int | None = 100) -> CircuitDifference:
    """The edges of cluster ``a``'s and ``b``'s circuits at ``size`` (see the module
    docstring); ``size=None`` compares the circuits' own edge sets."""
    if circuit_a.edge_names != circuit_b.edge_names:
        raise ValueError(f"the circuits of clusters {a} and {b} are over different edges "
                         f"({circuit_a.n_edges} vs {circuit_b.n_edges}): compare circuits "
                         "of one model")
    if size is not None:
        circuit_a = circuit_a.select(selection, size, ranking)
        circuit_b = circuit_b.select(selection, size, ranking)
    ma, mb = circuit_a.mask.numpy(), circuit_b.mask.numpy()
    sa, sb = np.abs(circuit_a.scores.numpy()), np.abs(circuit_b.scores.numpy())
    names = [mib_edge_name(n) for n in circuit_a.edge_names]
    union = int((ma | mb).sum())
    shared = ma & mb
    return CircuitDifference(
        a=a, b=b, size=size, selection=selection if size is not None else "given",
        ranking=ranking if size is not None else "given",
        n_a=int(ma.sum()), n_b=int(mb.sum()), n_only_a=int((ma & ~mb).sum()),
        n_only_b=int((mb & ~ma).sum()), n_shared=int(shared.sum()),
        jaccard=float(shared.sum() / union) if union else float("nan"),
        only_a=_listed(ma & ~mb, sa, names, max_listed),
        only_b=_listed(mb & ~ma, sb, names, max_listed),
        shared=_listed(shared, np.maximum(sa, sb), names, max_listed))


def circuit_differences(circuits: Mapping[int, Circuit], *, size: int | None = None,
                        selection: str = "topn-prune", ranking: str = "abs",
                        max_listed: int | None = 100) -> list[CircuitDifference]:
    """:func:`circuit_difference` of every pair of clusters ``a < b`` in ``circuits``
    (cluster label -> circuit)."""
    labels = sorted(int(c) for c in circuits)
    return [circuit_difference(a, b, circuits[a], circuits[b], size=size, selection=selection,
                               ranking=ranking, max_listed=max_listed)
            for a, b in combinations(labels, 2)]
