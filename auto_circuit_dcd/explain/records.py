"""What :func:`~auto_circuit_dcd.explain.describe.describe_clusters` finds, as typed records.

Every record is a dataclass of JSON types (:mod:`auto_circuit_dcd.schema` writes and reads
them; a number that does not exist is NaN here and ``null`` in JSON), so a report can embed
:class:`ClusterDescriptions` as it is. Clusters are named by their labels (0 = largest; the
noise label ``-1`` of HDBSCAN is no cluster and is described by nothing here). Edge and
node names are MIB's (EAP-IG's): ``input``, ``a{layer}.h{head}``, ``m{layer}``, ``logits``;
edges ``parent->child`` with ``<q>``, ``<k>``, ``<v>`` after a head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from auto_circuit_dcd.schema import from_jsonable, json_schema, to_jsonable

__all__ = ["Id", "Exemplar", "ClusterExemplars", "CategoryShare", "FieldAssociation",
           "UnitDifference", "DifferenceTable", "Contrast", "CircuitDifference",
           "DescriptionSettings", "ClusterDescriptions"]

#: an example id as the dataset gives it (its ``id`` field, else its index)
Id = str | int


@dataclass
class Exemplar:
    """One prompt of a cluster, where it lies in the clustering space.

    ``distance``: Euclidean distance of its row (``gd.embedding_``) to its cluster's centre
    (``gd.centroids_``); ``margin``: the distance to the nearest other centre
    (``other_cluster``'s) minus that distance (near 0: between the two; negative: nearer
    the other cluster's centre; NaN when there is no other cluster); ``silhouette``: its
    silhouette value in the clustering space (NaN with one cluster)."""

    id: Id
    cluster: int
    clean: str
    corrupt: str
    answers: list[str]
    wrong_answers: list[str]
    distance: float
    margin: float
    other_cluster: int | None
    silhouette: float


@dataclass
class ClusterExemplars:
    """A cluster's most typical prompts (nearest its centre, nearest first) and its most
    ambiguous ones (smallest margin to another centre, smallest first)."""

    cluster: int
    size: int
    typical: list[Exemplar]
    ambiguous: list[Exemplar]


@dataclass
class CategoryShare:
    """A cluster's most frequent value of a field: ``count`` of the cluster's ``n`` prompts
    carrying the field have it (``share``), against ``overall_share`` of all such prompts."""

    cluster: int
    category: str
    count: int
    n: int
    share: float
    overall_share: float


@dataclass
class FieldAssociation:
    """How one per-prompt field is distributed over the clusters.

    ``counts[i][j]``: prompts of cluster ``clusters[i]`` whose value is ``categories[j]``
    (numeric fields with many values: quantile bins, named by their ranges), over the
    ``n_rows`` prompts that carry the field. ``cramers_v``: bias-corrected Cramér's V
    (Bergsma 2013; 0 = independent, 1 = the field and the clusters determine each other);
    ``adjusted_mutual_info``: scikit-learn's chance-corrected mutual information of the
    same table. ``test``: ``"chi-square"``, ``"chi-square permutation"`` (some expected
    count below 5) or ``"kruskal-wallis"`` (numeric values); ``q_value``: its p-value
    corrected over all fields tested (Benjamini-Hochberg); ``associated``: ``q_value`` at or
    below the run's ``alpha``. ``source``: ``"dataset"`` (a key of the prompt JSON) or
    ``"derived"`` (computed from the tokens)."""

    field: str
    source: str
    kind: str
    n_rows: int
    clusters: list[int]
    categories: list[str]
    counts: list[list[int]]
    cramers_v: float
    adjusted_mutual_info: float
    test: str
    statistic: float
    p_value: float
    q_value: float
    associated: bool
    typical: list[CategoryShare]


@dataclass
class UnitDifference:
    """One edge or node compared between two groups of prompts (``a``: the cluster, ``b``:
    the other cluster or the rest). Values are the scores compared (``|score|`` or signed
    score; a node's value sums those of its edges), in the attribution metric's units.
    ``effect_size``: standardised mean difference (Cohen's d, pooled standard deviation;
    NaN when both groups are constant); ``p_value``: two-sided permutation test of the
    Welch t statistic; ``q_value``: Benjamini-Hochberg over all units of the table."""

    name: str
    mean_a: float
    mean_b: float
    difference: float
    effect_size: float
    p_value: float
    q_value: float


@dataclass
class DifferenceTable:
    """Edges (or nodes) that differ between two groups at false discovery rate ``alpha``.

    ``higher``: the significant units whose value is larger in ``a``, largest effect size
    first (at most ``top`` of the run's settings); ``lower``: those smaller in ``a``, most
    negative first. ``n_higher`` / ``n_lower`` count all significant ones, of ``n_tested``
    (units constant over both groups are not tested)."""

    n_tested: int
    n_higher: int
    n_lower: int
    higher: list[UnitDifference]
    lower: list[UnitDifference]


@dataclass
class Contrast:
    """Cluster ``cluster`` against ``other`` (a cluster, or ``None``: all other clustered
    prompts): the edges and the nodes that set it apart."""

    cluster: int
    other: int | None
    n_cluster: int
    n_other: int
    edges: DifferenceTable
    nodes: DifferenceTable


@dataclass
class CircuitDifference:
    """The circuits of clusters ``a`` and ``b`` at one size: edges in ``a``'s only, in
    ``b``'s only, and in both (``n_*`` count them all; the lists hold at most the run's
    ``max_listed`` of each, largest ``|score|`` first: ``a``'s score for ``only_a``, ``b``'s
    for ``only_b``, the larger of the two for ``shared``). ``size``: edges asked for
    (``None``: the circuits' own edge sets were used); ``jaccard``: shared / union."""

    a: int
    b: int
    size: int | None
    selection: str
    ranking: str
    n_a: int
    n_b: int
    n_only_a: int
    n_only_b: int
    n_shared: int
    jaccard: float
    only_a: list[str]
    only_b: list[str]
    shared: list[str]


@dataclass
class DescriptionSettings:
    """How the descriptions were computed. ``min_p_value``: the smallest p-value the
    permutation tests can give, ``1 / (n_permutations + 1)``: with ``m`` units tested, the
    Benjamini-Hochberg procedure finds nothing unless about ``m * min_p_value / alpha``
    units reach it."""

    alpha: float
    n_permutations: int
    min_p_value: float
    scores: str
    node_edges: str
    pairs: bool
    n_exemplars: int
    top: int
    n_bins: int
    random_state: int | None


@dataclass
class ClusterDescriptions:
    """What each cluster is: its exemplars, the per-prompt fields associated with the
    clusters (strongest first), the edges and nodes that set each cluster apart (each
    cluster against the rest, then each pair), and the circuit differences of each pair.

    ``skipped_fields``: fields not tested, with the reason (constant, an identifier, ...).
    """

    n_examples: int
    n_noise: int
    clusters: list[int]
    sizes: list[int]
    exemplars: list[ClusterExemplars]
    fields: list[FieldAssociation]
    skipped_fields: dict[str, str]
    contrasts: list[Contrast]
    circuit_differences: list[CircuitDifference]
    settings: DescriptionSettings

    def contrast(self, cluster: int, other: int | None = None) -> Contrast:
        """The contrast of ``cluster`` against ``other`` (``None``: the rest)."""
        for c in self.contrasts:
            if c.cluster == cluster and c.other == other:
                return c
        raise KeyError(f"no contrast of cluster {cluster} against "
                       f"{'the rest' if other is None else other}; clusters: {self.clusters}")

    def field(self, name: str) -> FieldAssociation:
        """The association of field ``name`` with the clusters."""
        for f in self.fields:
            if f.field == name:
                return f
        why = self.skipped_fields.get(name)
        raise KeyError(f"field {name!r} was not tested" + (f": {why}" if why else ""))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form as Python data (NaN as None)."""
        return to_jsonable(self)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterDescriptions:
        """Descriptions from parsed JSON, every key and type checked (``SchemaError``)."""
        return from_jsonable(cls, data, where="descriptions")

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return json_schema(cls, title="auto-circuit-dcd cluster descriptions")
