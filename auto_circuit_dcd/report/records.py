"""The main job's report as typed records: what ``report.json`` holds, field by field.

:class:`RunReport` is written by :func:`auto_circuit_dcd.job.pipeline.run` and read by the
HTML page, the printed summary and the notebooks. It holds the records the computations
return (:class:`~auto_circuit_dcd.metrics.quality.ClusterQuality`,
:class:`~auto_circuit_dcd.cluster.stability.ClusterStability`,
:class:`~auto_circuit_dcd.cluster.space_search.SpaceCandidate`), not copies of them. Its
JSON form is :meth:`RunReport.to_json` (one writer, NaN as ``null``); :meth:`RunReport.load`
reads ``report.json`` back, checking every key and type (:mod:`auto_circuit_dcd.schema`);
:meth:`RunReport.json_schema` gives the JSON Schema of the file. :data:`SCHEMA_VERSION`
rises when a key changes meaning or goes away; adding a key keeps it.

Curves are lists with one value per edge fraction (``edge_fractions``); a value that does
not exist (a cluster with no test examples, a zero denominator) is NaN here and ``null``
in the file.

Every faithfulness number has its interval in ``uncertainty``
(:class:`~auto_circuit_dcd.metrics.uncertainty.RunUncertainty`, the record
:func:`~auto_circuit_dcd.metrics.uncertainty.run_uncertainty` returns), under the same
name: ``single`` -> ``uncertainty.single``, ``dcd.faithfulness_routed`` and ``dcd.cpr.routed``
-> ``uncertainty.dcd_routed``, ``dcd.clusters[i]`` -> ``uncertainty.clusters[i]`` (``own``,
``single_on_group``), ``k_random`` -> ``uncertainty.k_random_routed`` / ``_oracle``,
``cross_faithfulness.matrix`` -> ``uncertainty.cross``; beside them the paired
comparisons, the verdicts, the too-few-examples warnings and the size grid
(``docs/report.md`` lists the correspondence).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auto_circuit_dcd.cluster.space_search import SpaceCandidate
from auto_circuit_dcd.cluster.stability import ClusterStability
from auto_circuit_dcd.explain.records import ClusterDescriptions
from auto_circuit_dcd.metrics.quality import ClusterQuality
from auto_circuit_dcd.metrics.uncertainty import RunUncertainty
from auto_circuit_dcd.schema import Record, from_jsonable, json_schema

__all__ = ["SCHEMA_VERSION", "REPORT_FILE", "RunReport", "CurveScores", "ClusterResult",
           "DcdResult", "DcdScores", "KRandomResult", "OracleRouted", "Routing",
           "DroppedExamples", "CircuitSelection", "ClusteringSpace", "SpaceCandidate",
           "CrossFaithfulnessTable", "EdgeOverlapTable",
           "ClusterQuality", "ClusterStability", "RunUncertainty", "ClusterDescriptions"]

#: version of report.json's keys
SCHEMA_VERSION = 1
#: the report's file in a run folder (:class:`~auto_circuit_dcd.job.run_folder.RunFolder`)
REPORT_FILE = "report.json"
#: an example id as the dataset gives it (its ``id`` field, else its index)
Id = str | int
Curve = list[float]


@dataclass
class CurveScores:
    """One circuit's faithfulness curve with its CPR and CMD (``faithfulness_cmd``: the
    curve CMD was taken on, when the run's convention ranks edges differently for CMD)."""

    faithfulness: Curve
    cpr: float
    cmd: float
    faithfulness_cmd: Curve | None = None


@dataclass
class OracleRouted:
    """A score (CPR or CMD) of a set of circuits, oracle and routed."""

    oracle: float
    routed: float


@dataclass
class DcdScores:
    """A score of DCD's circuits: oracle, routed (noise to the fallback circuit) and routed
    with the noise examples left out."""

    oracle: float
    routed: float
    routed_excluding_noise: float


@dataclass
class ClusterResult:
    """One cluster: its training size and composition by known group, its routed test
    examples, and on them its own circuit's curve beside the single circuit's."""

    label: int
    size: int
    n_test: int
    composition: dict[str, int]
    faithfulness_own: Curve
    single_on_group: Curve
    cpr_own: float


@dataclass
class DcdResult:
    """DCD's circuits used together, and per cluster."""

    faithfulness_oracle: Curve
    faithfulness_routed: Curve
    faithfulness_routed_excluding_noise: Curve
    cpr: DcdScores
    cmd: DcdScores
    clusters: list[ClusterResult]


@dataclass
class KRandomResult:
    """k circuits of a random equal split of the training examples (None and NaN when
    k = 1: there is nothing to split)."""

    faithfulness_oracle: Curve | None
    faithfulness_routed: Curve | None
    cpr: OracleRouted
    cmd: OracleRouted
    #: each test example's K-random circuit (``k_random_<c>``, drawn at random with the
    #: run's seed) in ``test_example_ids``' order: what "K-random, routed" uses
    test_routing: list[str] | None = None


@dataclass
class Routing:
    """How test examples were sent to clusters."""

    rule: str
    train_agreement: float
    n_test_noise: int
    n_train_noise: int
    noise_fallback: int
    note: str


@dataclass
class DroppedExamples:
    """Ids of examples whose attribution rows were not finite (left out of everything)."""

    train: list[Id]
    test: list[Id]


@dataclass
class CircuitSelection:
    """How each size's edges were chosen and CPR/CMD computed; edges asked and achieved
    per size (``achieved_edge_counts[ranking][circuit]``)."""

    convention: str
    rule: str
    ranking: str
    cmd_ranking: str
    cmd: str
    #: what built the circuits (the same as ``circuit_method``; the name earlier reports read)
    base_algo: str
    requested_edge_counts: list[int]
    achieved_edge_counts: dict[str, dict[str, list[int]]]
    note: str
    #: the attribution method whose rows made the clusters (``--method``; None in reports
    #: written before it was recorded)
    cluster_method: str | None = None
    #: what built every circuit, the single and K-random baselines included, from the same
    #: training examples (``--circuit-method``: ``eap``, ``eap-ig`` or an auto-circuit
    #: algorithm)
    circuit_method: str | None = None
    #: clustered training examples left out of the circuits: their circuit-method row was not
    #: finite (the other rows keep the cluster of their example id)
    circuit_rows_missing: list[Id] | None = None


@dataclass
class ClusteringSpace:
    """The space the training rows were clustered in and, under ``--preprocessing auto``,
    the search that chose it (:class:`~auto_circuit_dcd.cluster.space_search.SpaceSelection`
    as JSON: every (space, clusterer) candidate and the criterion's choice)."""

    #: ``--preprocessing`` as given (``auto`` or a space)
    asked: str
    #: the space used (``GroupedDiscovery.preprocessing_``) and the clusterer kept
    space: str
    clusterer: str
    #: every candidate of the search, in the order tried (empty for a named space)
    candidates: list[SpaceCandidate]
    #: no candidate was admissible: one cluster
    one_cluster: bool
    #: another space's candidate, with different labels, came within the tie rule
    near_tie: bool
    #: that candidate's space and clusterer (None when no other space's candidate was
    #: admissible with different labels)
    runner_up_space: str | None
    runner_up_clusterer: str | None
    #: chosen stability minus the runner-up's, and its standard error over the resamples
    margin: float | None
    margin_se: float | None
    criterion: str
    near_tie_rule: str
    n_resamples: int
    fraction: float


@dataclass
class CrossFaithfulnessTable:
    """``matrix[i][j]``: f at ``p`` of cluster ``labels[i]``'s circuit on the test examples
    routed to cluster ``labels[j]``."""

    p: float
    labels: list[int]
    matrix: list[list[float]]
    orientation: str


@dataclass
class EdgeOverlapTable:
    """Jaccard overlap of the clusters' edge sets holding ``gamma`` of their |score|."""

    gamma: float
    labels: list[int]
    matrix: list[list[float]]


@dataclass
class RunReport(Record):
    """Everything the main job measured (``report.json``)."""

    schema_version: int
    model: str
    dataset: str
    method: str
    metric: str
    config: dict[str, Any]
    n_train: int
    n_test: int
    n_edges: int
    n_clusters: int
    labels: list[int]
    example_ids: list[Id]
    groups: list[str | None] | None
    test_example_ids: list[Id]
    test_routing: list[int]
    dropped_examples: DroppedExamples
    routing: Routing
    edge_fractions: list[float]
    achieved_edge_counts: dict[str, list[int]]
    circuit_selection: CircuitSelection
    single: CurveScores
    dcd: DcdResult
    k_random: KRandomResult
    cross_faithfulness: CrossFaithfulnessTable
    edge_overlap: EdgeOverlapTable
    cluster_quality: ClusterQuality | None
    stability: ClusterStability | None
    #: the k-selection rows of every clusterer tried (their criteria differ by clusterer)
    selection: list[dict[str, Any]]
    world_size: int
    timings: dict[str, float]
    versions: dict[str, str]
    #: every faithfulness number above with its interval over the test examples, the paired
    #: comparisons, the verdicts, too-few-examples warnings and the size grid (None only in
    #: a report assembled without per-example values)
    uncertainty: RunUncertainty | None = None
    #: what each cluster is: exemplars, associated fields, distinguishing edges and nodes,
    #: circuit differences (:func:`~auto_circuit_dcd.explain.describe_clusters`; None in
    #: reports written before it was computed)
    cluster_descriptions: ClusterDescriptions | None = None
    #: per clusterer tried, the k each criterion chose (``silhouette``, ``elbow``, ``gap``)
    #: and the k its rule took (``combined``, ``rule``): ``GroupedDiscovery.k_choices_``
    k_choices: dict[str, dict[str, Any]] | None = None
    #: the space the rows were clustered in and the search that chose it (None in reports
    #: written before it was recorded)
    clustering_space: ClusteringSpace | None = None

    @property
    def p_index(self) -> int:
        """Index in ``edge_fractions`` of the cross-faithfulness size ``p``."""
        p = self.cross_faithfulness.p
        return min(range(len(self.edge_fractions)), key=lambda i: abs(self.edge_fractions[i] - p))

    def to_json(self, indent: int | None = 1) -> str:
        """``report.json``'s text (the one writer: NaN and infinities as ``null``)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "report") -> RunReport:
        """A report from parsed JSON, every key and type checked (``SchemaError``)."""
        return from_jsonable(cls, data, where)

    @classmethod
    def load(cls, path: str | Path) -> RunReport:
        """Read ``report.json`` (or a run folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_FILE
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of ``report.json``."""
        return json_schema(cls, title="auto-circuit-dcd report.json, schema version "
                                      f"{SCHEMA_VERSION}")
