"""``describe_clusters``: what each cluster is, from the attribution rows and the prompts.

No model pass: everything is computed from the attribution matrix, the fitted
clustering's documented attributes and the prompts.

1. check every input before any test runs (settings, the clustering against the rows, the
   prompts of every row, the edge graph, the circuits);
2. exemplars (:mod:`.exemplars`): each cluster's typical and ambiguous prompts;
3. fields (:mod:`.fields`): every per-prompt field and derived feature against the
   clusters, strongest first;
4. contrasts (:mod:`.contrasts`): edges and nodes that differ between each cluster and the
   rest, and between each pair, with effect sizes and FDR-corrected permutation tests;
5. circuit differences (:mod:`.circuit_diff`) of each pair at ``size``, when circuits or a
   size are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils import check_random_state

from auto_circuit_dcd.circuits.circuit import Circuit, check_selection
from auto_circuit_dcd.circuits.graph import EdgeGraph
from auto_circuit_dcd.circuits.selection import check_ranking
from auto_circuit_dcd.data import Example, ExampleLoader
from auto_circuit_dcd.explain.circuit_diff import circuit_differences
from auto_circuit_dcd.explain.contrasts import NODE_EDGES, SCORES, NodeEdges, ScoreKind, contrasts
from auto_circuit_dcd.explain.exemplars import exemplars
from auto_circuit_dcd.explain.fields import field_associations
from auto_circuit_dcd.explain.inputs import DescriptionError, FittedClusters, fitted_clusters
from auto_circuit_dcd.explain.prompts import Dataset, PromptTable, prompt_table
from auto_circuit_dcd.explain.records import ClusterDescriptions, DescriptionSettings

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.attribution.matrix import AttributionMatrix

__all__ = ["describe_clusters"]


def _check_settings(values: str, node_edges: str, alpha: float, n_permutations: int,
                    n_exemplars: int, top: int, n_bins: int, max_levels: int,
                    size: int | None, selection: str, ranking: str) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise DescriptionError(what)

    need(values in SCORES, f"scores must be one of {list(SCORES)}, got {values!r}")
    need(node_edges in NODE_EDGES, f"node_edges must be one of {list(NODE_EDGES)}, got "
         f"{node_edges!r}")
    need(0 < alpha < 1, f"alpha is a false discovery rate in (0, 1), got {alpha}")
    need(int(n_permutations) >= 1, f"n_permutations must be at least 1, got {n_permutations}")
    for name, v in (("n_exemplars", n_exemplars), ("top", top)):
        need(int(v) >= 0, f"{name} must be at least 0, got {v}")
    need(int(n_bins) >= 2, f"n_bins must be at least 2, got {n_bins}")
    need(int(max_levels) >= 1, f"max_levels must be at least 1, got {max_levels}")
    need(size is None or int(size) >= 0, f"size is an edge count (at least 0), got {size}")
    try:
        check_selection(selection)
        check_ranking(ranking)
    except ValueError as err:
        raise DescriptionError(str(err)) from None


def _graph(A: AttributionMatrix, graph: EdgeGraph | None,
           circuits: Mapping[int, Circuit] | None) -> EdgeGraph:
    """The edge graph of ``A``'s columns: given, from a circuit, or from ``A``'s layout."""
    if graph is None and circuits:
        graph = next(iter(circuits.values())).graph
    if graph is None and A.layout is not None:
        graph = EdgeGraph.from_layout(A.edge_names, A.layout)
    if graph is None:
        raise DescriptionError(
            "the attribution matrix has no edge layout (built from a plain tensor), so its "
            "edges' nodes are unknown: pass graph=edge_graph(pm) "
            "(auto_circuit_dcd.circuits.graph) for the model it was computed on")
    if graph.n_edges != A.n_edges:
        raise DescriptionError(f"the edge graph has {graph.n_edges} edges, the attribution "
                               f"matrix {A.n_edges}: use the graph of the same model")
    return graph


def _circuits(A: AttributionMatrix, fit: FittedClusters,
              circuits: Mapping[int, Circuit] | None,
              size: int | None) -> dict[int, Circuit] | None:
    """The clusters' circuits to compare: given, or (with a size) the mean of each
    cluster's rows (the EAP-family circuit, as ``GroupedDiscovery`` builds it)."""
    if circuits is not None:
        out = {int(c): circuit for c, circuit in circuits.items()}
        unknown = sorted(set(out) - set(fit.clusters))
        if unknown:
            raise DescriptionError(f"circuits are given for clusters {unknown} that the "
                                   f"clustering does not have (it has {list(fit.clusters)})")
        wrong = [c for c, circuit in out.items() if list(circuit.edge_names) != A.edge_names]
        if wrong:
            raise DescriptionError(f"the circuits of clusters {wrong} are over other edges "
                                   "than the attribution matrix's")
        return out
    if size is None:
        return None
    if A.layout is None:
        raise DescriptionError("circuits at a size need the matrix's edge layout: pass "
                               "circuits={cluster: Circuit} instead")
    return {c: Circuit.from_matrix(A, np.flatnonzero(fit.rows(c)), meta={"label": c})
            for c in fit.clusters}


def _fields(prompts: PromptTable) -> dict[str, tuple[str, Sequence[Any]]]:
    out: dict[str, tuple[str, Sequence[Any]]] = {k: ("dataset", v)
                                                for k, v in prompts.fields.items()}
    for k, v in prompts.derived.items():
        out[k if k not in out else f"{k} (derived)"] = ("derived", v)
    return out


def describe_clusters(
    A: AttributionMatrix,
    gd: Any,
    examples: ExampleLoader | Sequence[Example],
    *,
    dataset: Dataset | None = None,
    tokenizer: Any = None,
    circuits: Mapping[int, Circuit] | None = None,
    size: int | None = None,
    selection: str = "topn-prune",
    ranking: str = "abs",
    graph: EdgeGraph | None = None,
    scores: ScoreKind = "abs",
    node_edges: NodeEdges = "out",
    pairs: bool = True,
    n_exemplars: int = 3,
    top: int = 20,
    max_listed: int | None = 100,
    n_bins: int = 5,
    max_levels: int = 10,
    alpha: float = 0.05,
    n_permutations: int = 1000,
    random_state: int | None = 0,
) -> ClusterDescriptions:
    """What each cluster of ``gd`` is: exemplars, associated fields, the edges and nodes
    that set it apart, and the circuits' differences.

    Args:
        A: the attribution matrix ``gd`` was fitted on.
        gd: a fitted ``GroupedDiscovery`` (read: ``labels_``, ``embedding_``,
            ``centroids_``, ``example_ids_``).
        examples: the tokenized examples of ``A``'s rows (e.g. the train loader of
            :func:`auto_circuit_dcd.data.prepare`): derived features, and the prompts'
            text when no ``dataset`` is given.
        dataset: the JSON dataset they came from (path, dict or list of prompt dicts):
            prompt text and every per-prompt field.
        tokenizer: decodes token ids where the text is not in the dataset.
        circuits: ``{cluster: Circuit}`` to compare (e.g. the main job's ``cluster_<c>``
            circuits); without, with a ``size``, each cluster's mean row.
        size: edge count of the compared circuits (the evaluation's
            ``floor(p * n_edges)``), chosen by ``selection`` and ``ranking``; ``None``: the
            given circuits' own edges, or no circuit comparison.
        graph: the edge graph (``circuits.graph.edge_graph(pm)``); by default from the
            circuits or ``A``'s layout.
        scores: compare ``|score|`` (``"abs"``) or signed scores per edge.
        node_edges: the edges whose values a node sums: those it leaves (``"out"``: its
            output's effect), enters (``"in"``) or both.
        pairs: also contrast each pair of clusters (``k (k - 1) / 2`` more tests; with
            two clusters the pair is the cluster-against-rest test, computed once).
        n_exemplars: typical and ambiguous prompts per cluster.
        top: distinguishing units listed per direction and table.
        max_listed: edges listed per circuit-difference set (``None``: all).
        n_bins: quantile bins of numeric fields; ``max_levels``: numbers with at most
            this many values are categories.
        alpha: false discovery rate of the edge, node and field tests.
        n_permutations: label permutations of each test.
        random_state: seed of the permutations.
    """
    _check_settings(scores, node_edges, alpha, n_permutations, n_exemplars, top, n_bins,
                    max_levels, size, selection, ranking)
    fit = fitted_clusters(A, gd)
    edge_graph = _graph(A, graph, circuits)
    chosen = _circuits(A, fit, circuits, size)
    prompts = prompt_table(fit.ids, examples, dataset=dataset, tokenizer=tokenizer)
    rng = check_random_state(random_state)

    fields, skipped = field_associations(_fields(prompts), fit.labels, alpha=alpha,
                                         n_bins=n_bins, max_levels=max_levels,
                                         n_permutations=n_permutations, rng=rng)
    tables = contrasts(A.scores, A.edge_names, edge_graph, fit, values=scores,
                       node_edges=node_edges, n_permutations=n_permutations, alpha=alpha,
                       top=top, pairs=pairs, rng=rng)
    differences = ([] if chosen is None else
                   circuit_differences(chosen, size=size, selection=selection, ranking=ranking,
                                       max_listed=max_listed))
    return ClusterDescriptions(
        n_examples=fit.n, n_noise=int((fit.labels < 0).sum()), clusters=list(fit.clusters),
        sizes=[int(fit.rows(c).sum()) for c in fit.clusters],
        exemplars=exemplars(fit, prompts, n=n_exemplars), fields=fields,
        skipped_fields=skipped, contrasts=tables, circuit_differences=differences,
        settings=DescriptionSettings(
            alpha=float(alpha), n_permutations=int(n_permutations),
            min_p_value=1.0 / (int(n_permutations) + 1), scores=scores,
            node_edges=node_edges, pairs=bool(pairs), n_exemplars=int(n_exemplars),
            top=int(top),
            n_bins=int(n_bins),
            random_state=random_state if isinstance(random_state, int) else None))
