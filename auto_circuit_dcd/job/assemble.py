"""The main job's measurements as a :class:`~auto_circuit_dcd.report.records.RunReport`.

From the circuits evaluated once on the whole test split (``{ranking: {name:
FaithfulnessResult}}``) and the test examples' routing, without more model passes:

1. DCD oracle and routed curves (noise to the largest cluster's circuit, and with noise
   left out), K-random routed on a random equal split (:mod:`auto_circuit_dcd.metrics.multi`);
2. per cluster, its own circuit and the single circuit on the examples routed to it, and
   every cluster's circuit on every cluster's examples at ``p``
   (:mod:`auto_circuit_dcd.metrics.aggregate`);
3. CPR of the curves ranked for CPR, CMD of those ranked for CMD, by the run's convention;
4. every one of those numbers with its bootstrap interval over the test examples, the
   paired comparisons (own vs single per cluster, DCD routed vs single and vs K-random),
   the method's claims as verdicts and too-few-examples warnings
   (:func:`~auto_circuit_dcd.metrics.uncertainty.run_uncertainty` on the same results and
   routings);
5. the records of :mod:`auto_circuit_dcd.report.records`.
"""

from __future__ import annotations

import dataclasses
import platform
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from auto_circuit_dcd.report.records import (
    SCHEMA_VERSION,
    CircuitSelection,
    ClusteringSpace,
    ClusterResult,
    CrossFaithfulnessTable,
    CurveScores,
    DcdResult,
    DcdScores,
    DroppedExamples,
    EdgeOverlapTable,
    KRandomResult,
    OracleRouted,
    Routing,
    RunReport,
)
from auto_circuit_dcd.schema import jsonable

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.attribution.matrix import AttributionMatrix
    from auto_circuit_dcd.circuits.circuit import Circuit
    from auto_circuit_dcd.cluster.discovery import GroupedDiscovery
    from auto_circuit_dcd.cluster.stability import ClusterStability
    from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult
    from auto_circuit_dcd.explain.records import ClusterDescriptions
    from auto_circuit_dcd.job.config import RunConfig
    from auto_circuit_dcd.metrics.convention import Convention
    from auto_circuit_dcd.metrics.multi import CrossFaithfulness, MultiCircuitResult
    from auto_circuit_dcd.metrics.quality import ClusterQuality
    from auto_circuit_dcd.metrics.uncertainty import RunUncertainty, SizeGrid

__all__ = ["assemble_report", "clustering_space", "ROUTING_NOTE", "UNLABELLED"]

#: the composition entry of training examples without a group label
UNLABELLED = "(no group)"
ROUTING_NOTE = ("each test example is routed by its own attribution row, which needs its "
                "answers and its corrupted prompt; examples without them cannot be routed")
#: the share of |score| each cluster's edge set holds in the report's edge overlap
OVERLAP_GAMMA = 0.99
Results = Mapping[str, "FaithfulnessResult"]
#: an example id as the report holds it
Id = str | int


def versions() -> dict[str, str]:
    """Versions of Python and the packages a run's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("auto-circuit-dcd", "auto-circuit", "transformer-lens", "torch",
                "transformers", "scikit-learn", "hdbscan", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class _Scorer:
    """CPR/CMD by the run's convention over the run's edge fractions."""

    def __init__(self, conv: Convention, fractions: Sequence[float]) -> None:
        self.conv, self.fractions = conv, np.asarray(fractions, dtype=float)

    def cpr(self, f: np.ndarray) -> float:
        return float(self.conv.cpr((self.fractions, f)))

    def cmd(self, f: np.ndarray) -> float:
        return float(self.conv.cmd((self.fractions, f)))

    def curve(self, f: np.ndarray, f_cmd: np.ndarray) -> CurveScores:
        return CurveScores(list(f), self.cpr(f), self.cmd(f_cmd),
                           None if f_cmd is f else list(f_cmd))

#: a circuit label of the combined circuits (a cluster, a K-random split)
_Label = TypeVar("_Label", bound=Hashable)


def _combined(results: Results, cmd_results: Results, names: Mapping[_Label, str],
              routing: list[Hashable], fallback: Hashable | None = None,
              exclude: Sequence[Hashable] = ()
              ) -> tuple[MultiCircuitResult, MultiCircuitResult]:
    """The circuits ``names`` (``{routing label: circuit name}``) combined under ``routing``,
    ranked for CPR and for CMD."""
    from auto_circuit_dcd.metrics import combine_circuits

    def combined(res: Results) -> MultiCircuitResult:
        return combine_circuits({lab: res[n] for lab, n in names.items()}, routing,
                                fallback=fallback, exclude=exclude)

    a = combined(results)
    return a, a if cmd_results is results else combined(cmd_results)


def _routed_f(combined: MultiCircuitResult) -> np.ndarray:
    """The routed faithfulness of circuits combined under a routing."""
    if combined.routed_f is None:
        raise ValueError("the circuits were combined without a routing: no routed faithfulness")
    return combined.routed_f


def _ids(ids: Sequence[object]) -> list[Id]:
    """Example ids as the report holds them: strings and whole numbers as they are, any other
    id (a dataset's float or list ``id`` field) as its text."""
    return [i if isinstance(i, (str, int)) and not isinstance(i, bool) else str(i) for i in ids]


def _k_random_routing(results: Results, seed: int) -> list[str] | None:
    """Each test example's K-random circuit, drawn with the run's seed (None: no K-random
    circuits, k = 1)."""
    from auto_circuit_dcd.metrics.aggregate import random_routing

    labels = [name for name in results if name.startswith("k_random_")]
    if not labels:
        return None
    return [str(x) for x in random_routing(results["single"].n_examples, labels, seed)]


def _k_random(results: Results, cmd_results: Results, score: _Scorer,
              routing: list[str] | None) -> KRandomResult:
    if routing is None:
        nan = float("nan")
        return KRandomResult(None, None, OracleRouted(nan, nan), OracleRouted(nan, nan))
    labels = [name for name in results if name.startswith("k_random_")]
    kr, kr_cmd = _combined(results, cmd_results, {lab: lab for lab in labels},
                           list(routing))
    return KRandomResult(list(kr.oracle_f), list(_routed_f(kr)),
                         OracleRouted(score.cpr(kr.oracle_f), score.cpr(_routed_f(kr))),
                         OracleRouted(score.cmd(kr_cmd.oracle_f), score.cmd(_routed_f(kr_cmd))),
                         test_routing=list(routing))


def _dcd(results: Results, cmd_results: Results, score: _Scorer, cluster_labels: list[int],
         route: np.ndarray, cross: CrossFaithfulness, train_labels: np.ndarray,
         train_groups: list[str | None] | None) -> DcdResult:
    """DCD's curves and scores, and per cluster its own circuit (``cross``'s diagonal: the
    cluster's circuit on its routed examples) beside the single circuit there."""
    from auto_circuit_dcd.metrics.aggregate import per_group

    names = {c: f"cluster_{c}" for c in cluster_labels}
    routing = route.tolist()
    routed, routed_cmd = _combined(results, cmd_results, names, routing,
                                   fallback=cluster_labels[0])
    known, known_cmd = _combined(results, cmd_results, names, routing, exclude=(-1,))
    single_on = per_group(results["single"], route, cluster_labels)
    clusters = []
    for c in names:
        members = np.flatnonzero(train_labels == c)
        comp = {} if train_groups is None else dict(Counter(
            UNLABELLED if train_groups[i] is None else str(train_groups[i]) for i in members))
        own = cross.results[(c, c)]
        clusters.append(ClusterResult(
            label=c, size=int(members.size), n_test=own.n_examples,
            composition=comp, faithfulness_own=list(own.f),
            single_on_group=list(single_on[c].f), cpr_own=score.cpr(own.f)))
    pairs = {"oracle": (routed.oracle_f, routed_cmd.oracle_f),
             "routed": (_routed_f(routed), _routed_f(routed_cmd)),
             "routed_excluding_noise": (_routed_f(known), _routed_f(known_cmd))}
    return DcdResult(
        faithfulness_oracle=list(routed.oracle_f), faithfulness_routed=list(_routed_f(routed)),
        faithfulness_routed_excluding_noise=list(_routed_f(known)),
        cpr=DcdScores(**{k: score.cpr(a) for k, (a, _) in pairs.items()}),
        cmd=DcdScores(**{k: score.cmd(b) for k, (_, b) in pairs.items()}),
        clusters=clusters)


def _quality(groups: list[str | None] | None,
             labels: np.ndarray) -> ClusterQuality | None:
    """Cluster quality on the rows that carry a group label, and how many do not."""
    from auto_circuit_dcd.metrics import cluster_quality

    rows = [] if groups is None else [i for i, g in enumerate(groups) if g is not None]
    if groups is None or not rows:
        return None
    q = cluster_quality([groups[i] for i in rows], [int(labels[i]) for i in rows])
    return dataclasses.replace(q, n_unlabelled=len(groups) - len(rows))


def _selection(conv: Convention, by_ranking: Mapping[str, Results], config: RunConfig,
               missing: Sequence[object]) -> CircuitSelection:
    """The convention, the methods that made the clusters and the circuits, and the edges
    achieved per size and ranking (a rule can keep fewer edges than asked: pruning, or
    more: ties)."""
    first = next(iter(by_ranking.values()))["single"]
    return CircuitSelection(
        **conv.to_dict(), base_algo=config.circuit_method,
        cluster_method=config.method, circuit_method=config.circuit_method,
        circuit_rows_missing=_ids(missing),
        requested_edge_counts=[int(n) for n in first.requested_counts],
        achieved_edge_counts={rank: {name: [int(n) for n in r.achieved_counts]
                                     for name, r in res.items()}
                              for rank, res in by_ranking.items()},
        note=(f"each size's edges: {conv.selection} of the circuit's scores ranked by "
              f"{conv.cpr_ranking} for the curves and CPR, by {conv.cmd_ranking} for "
              f"CMD ({conv.cmd_form})"))


def assemble_report(*, config: RunConfig, dataset: str, A: AttributionMatrix,
                    A_test: AttributionMatrix, gd: GroupedDiscovery, routed: np.ndarray,
                    circuits: Mapping[str, Circuit], by_ranking: Mapping[str, Results],
                    dropped: dict[str, list[object]],
                    stability: ClusterStability | None, world_size: int,
                    timings: dict[str, float], grid: SizeGrid | None = None,
                    test_share: float | None = None,
                    descriptions: ClusterDescriptions | None = None,
                    circuit_rows_missing: Sequence[object] = ()) -> RunReport:
    """The report of one run. ``routed``: each test row's cluster (``A_test``'s order);
    ``circuits``: ``single``, ``cluster_<c>`` per cluster and ``k_random_<c>``;
    ``stability``: None when switched off; ``grid``: the sizes asked for and those left out
    (default: the evaluated ones, none left out); ``test_share``: the share of the dataset's
    prompts in the test split (default ``config.test_fraction``); ``descriptions``: what
    each cluster is (:func:`~auto_circuit_dcd.explain.describe_clusters`);
    ``circuit_rows_missing``: clustered training examples the circuits left out (no finite
    row under the circuit method)."""
    from auto_circuit_dcd.metrics import overlap_matrix
    from auto_circuit_dcd.metrics.aggregate import routed_cross_faithfulness

    conv = config.convention()
    results, cmd_results = by_ranking[conv.cpr_ranking], by_ranking[conv.cmd_ranking]
    single = results["single"]
    fractions = [float(f) for f in single.fractions]
    score = _Scorer(conv, fractions)
    pos_of = {i: j for j, i in enumerate(A_test.example_ids)}
    route = np.array([routed[pos_of[i]] for i in single.example_ids], dtype=int)
    train_labels = np.asarray(gd.labels_)
    cluster_labels = sorted(int(c) for c in set(train_labels.tolist()) if c >= 0)
    cross = routed_cross_faithfulness({c: results[f"cluster_{c}"] for c in cluster_labels},
                                      route, config.p_cross)
    overlap = overlap_matrix({c: circuits[f"cluster_{c}"] for c in cluster_labels},
                             gamma=OVERLAP_GAMMA)
    kr_routing = _k_random_routing(results, config.seed)
    return RunReport(
        schema_version=SCHEMA_VERSION, model=config.model, dataset=dataset,
        method=config.method, metric=config.metric, config=dataclasses.asdict(config),
        n_train=A.n_examples, n_test=A_test.n_examples, n_edges=A.n_edges,
        n_clusters=int(gd.n_clusters_), labels=[int(x) for x in train_labels],
        example_ids=_ids(A.example_ids), groups=A.groups,
        test_example_ids=_ids(single.example_ids), test_routing=[int(x) for x in route],
        dropped_examples=DroppedExamples(train=_ids(dropped["train"]),
                                         test=_ids(dropped["test"])),
        routing=Routing(rule=gd.routing_rule_, train_agreement=float(gd.train_agreement_),
                        n_test_noise=int((route == -1).sum()),
                        n_train_noise=int((train_labels == -1).sum()),
                        noise_fallback=cluster_labels[0], note=ROUTING_NOTE),
        edge_fractions=fractions,
        achieved_edge_counts={name: [int(n) for n in r.achieved_counts]
                              for name, r in results.items()},
        circuit_selection=_selection(conv, by_ranking, config, circuit_rows_missing),
        single=score.curve(single.f, cmd_results["single"].f),
        dcd=_dcd(results, cmd_results, score, cluster_labels, route, cross, train_labels,
                 A.groups),
        k_random=_k_random(results, cmd_results, score, kr_routing),
        cross_faithfulness=CrossFaithfulnessTable(
            p=config.p_cross, labels=cluster_labels, matrix=cross.matrix.tolist(),
            orientation="matrix[i][j] = circuit of cluster i on the test examples routed to "
                        "cluster j"),
        edge_overlap=EdgeOverlapTable(gamma=OVERLAP_GAMMA, labels=cluster_labels,
                                      matrix=np.asarray(overlap.matrix).tolist()),
        cluster_quality=_quality(A.groups, train_labels),
        stability=None if stability is None else dataclasses.replace(
            stability, clusterer=gd.method_),
        selection=[jsonable(dict(r)) for r in getattr(gd, "selection_", [])],
        world_size=world_size, timings=dict(timings), versions=versions(),
        uncertainty=_uncertainty(by_ranking, conv, cluster_labels, route, kr_routing,
                                 config.p_cross, grid, config.test_fraction
                                 if test_share is None else test_share),
        cluster_descriptions=descriptions, k_choices=_k_choices(gd),
        clustering_space=clustering_space(gd))


def clustering_space(gd: GroupedDiscovery) -> ClusteringSpace:
    """The space ``gd`` clustered in and, when it chose it (``preprocessing="auto"``), its
    search's table and choice (``gd.space_selection_``)."""
    sel = getattr(gd, "space_selection_", None)
    asked = str(gd.get_params().get("preprocessing", gd.preprocessing_))
    if sel is None:
        return ClusteringSpace(
            asked=asked, space=str(gd.preprocessing_), clusterer=str(gd.method_),
            candidates=[], one_cluster=int(gd.n_clusters_) == 1, near_tie=False,
            runner_up_space=None, runner_up_clusterer=None, margin=None, margin_se=None,
            criterion=f"the space was given (preprocessing={asked!r}): no search",
            near_tie_rule="", n_resamples=0, fraction=0.0)
    runner = sel.runner_up or (None, None)
    return ClusteringSpace(
        asked=asked, space=str(gd.preprocessing_), clusterer=str(gd.method_),
        candidates=list(sel.candidates), one_cluster=bool(sel.one_cluster),
        near_tie=bool(sel.near_tie), runner_up_space=runner[0], runner_up_clusterer=runner[1],
        margin=sel.margin, margin_se=sel.margin_se, criterion=sel.criterion,
        near_tie_rule=sel.near_tie_rule, n_resamples=int(sel.n_resamples),
        fraction=float(sel.fraction))


def _k_choices(gd: GroupedDiscovery) -> dict[str, dict[str, object]]:
    """Per clusterer tried, the k each criterion chose and the k its rule took."""
    return {str(name): jsonable(dict(choice))
            for name, choice in getattr(gd, "k_choices_", {}).items()}


# ------------------------------------------------------------------------ uncertainty
def _uncertainty(by_ranking: Mapping[str, Results], conv: Convention,
                 cluster_labels: list[int], route: np.ndarray,
                 kr_routing: list[str] | None, p: float, grid: SizeGrid | None,
                 test_share: float) -> RunUncertainty:
    """Intervals, comparisons, verdicts and warnings of the run's numbers, on the same
    results and routings as the report's estimates (noise examples to the first cluster's
    circuit, as in "DCD routed"); ``grid``, when given, records the sizes asked for."""
    from auto_circuit_dcd.metrics.uncertainty import run_uncertainty

    u = run_uncertainty(
        by_ranking, conv, single="single",
        clusters={c: f"cluster_{c}" for c in cluster_labels}, routing=route.tolist(), p=p,
        k_random=[] if kr_routing is None else
        [n for n in by_ranking[conv.cpr_ranking] if n.startswith("k_random_")],
        k_random_routing=kr_routing, noise_fallback=cluster_labels[0],
        test_fraction=test_share)
    return u if grid is None else dataclasses.replace(u, grid=grid)
