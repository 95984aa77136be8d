"""What the page's numbers mean, said where each first appears.

:data:`TERMS` defines each term once; :data:`FIRST_USE` names the page section (its anchor)
where a term's numbers first appear, so the page defines it there and nowhere else.
:data:`K_RULES` and :data:`ELBOW_CRITERIA` say in words how k was chosen and what each
clusterer's elbow value is (their scales differ by clusterer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.report.records import RunReport

__all__ = ["TERMS", "FIRST_USE", "SHOWN_IF", "K_RULES", "ELBOW_CRITERIA", "definitions"]

TERMS: dict[str, str] = {
    "faithfulness": (
        "f(C) = (mean mu(C) - mean mu(empty)) / (mean mu(full) - mean mu(empty)) over test "
        "prompts, mu = the run's task metric (max_diff: the answer's logit minus the largest "
        "wrong logit), "
        "every edge outside the circuit C patched with its value on the corrupted prompt. "
        "1: the circuit does what the whole model does; 0: no better than no edge at all."),
    "edge fraction": (
        "circuit size as the share of all the model's edges kept (5% = the top 5% of edges "
        "by the run's selection rule)."),
    "CPR": "area under faithfulness against the edge fraction, over the run's sizes; higher "
           "is better.",
    "CMD": "area of the shortfall max(0, 1 - f) (two-sided: |1 - f|) over the run's sizes; "
           "lower is better.",
    "routed": "each test prompt scored with the circuit of the cluster its own attribution "
              "row is assigned to (what a user of the clusters would do).",
    "oracle": "each test prompt scored with whichever circuit does best on it (an upper "
              "bound that flatters larger k).",
    "single circuit": "one circuit found on all training prompts, the usual practice.",
    "K-random": "the same number of circuits, found on a random equal split of the training "
                "prompts: what clustering adds over splitting at random.",
    "ARI": "adjusted Rand index between clusters and known groups: 1 = the same partition, "
           "0 = chance agreement.",
    "NMI": "normalised mutual information between clusters and known groups (0 to 1).",
    "purity": "share of training prompts in their cluster's most common known group.",
    "own circuit": "a cluster's circuit, found on its training prompts, scored on the test "
                   "prompts routed to the cluster.",
    "Jaccard": "shared edges over all edges of two edge sets (1: identical, 0: disjoint).",
    "Cramér's V": "association of a field with the clusters (bias-corrected; 0: "
                  "independent, 1: each determines the other).",
    "AMI": "adjusted mutual information of a field and the clusters (0: chance, 1: equal).",
    "q-value": "p-value corrected for testing many fields, edges or nodes at once "
               "(Benjamini-Hochberg): a list cut at q <= 0.05 holds about 5% false "
               "discoveries.",
    "Cohen's d": "difference of the means of two groups of prompts over their pooled "
                 "standard deviation (d = 2: means two standard deviations apart).",
    "margin": "distance of a prompt to the nearest other cluster's centre minus its "
              "distance to its own (near 0: between two clusters).",
    "silhouette": "per prompt, how much nearer it is to its own cluster than to the next "
                  "(-1 to 1); the mean over prompts rates a clustering.",
}

#: section anchor -> the terms whose numbers first appear there, in the order defined
FIRST_USE: dict[str, list[str]] = {
    "summary": ["faithfulness", "edge fraction", "CPR", "CMD", "single circuit", "routed",
                "oracle", "K-random", "ARI", "NMI", "purity"],
    "clusters": ["own circuit"],
    "overlap": ["Jaccard"],
    "described": ["Cramér's V", "AMI", "q-value", "Cohen's d", "margin", "silhouette"],
}

#: ``--k-rule`` (or ``clusterer's own``) -> how k was chosen, in words
K_RULES: dict[str, str] = {
    "silhouette": "chosen as the k with the largest mean silhouette",
    "elbow": "chosen at the elbow of the clusterer's elbow curve",
    "gap": "chosen by the gap statistic (the smallest k with Gap(k) >= Gap(k+1) - s(k+1))",
    "largest": "chosen as the largest of the silhouette, elbow and gap choices",
    "smallest": "chosen as the smallest of the silhouette, elbow and gap choices",
    "median": "chosen as the median of the silhouette, elbow and gap choices",
    "clusterer's own": "found by the clusterer itself",
}

#: a clusterer's elbow value (its key in the k-selection rows) -> (name, what it is)
ELBOW_CRITERIA: dict[str, tuple[str, str]] = {
    "merge_gap": ("merge gap", "how much higher the next merge of the dendrogram is (its "
                               "elbow: the k with the largest jump)"),
    "within_distance": ("within distance", "summed distance of rows to their cluster's "
                                           "centre (its elbow: the bend of the curve over k)"),
    "inertia": ("inertia", "summed squared distance of rows to their cluster's centre (its "
                           "elbow: the bend of the curve over k)"),
}


#: terms whose numbers a report may lack -> whether ``report`` shows them
SHOWN_IF: dict[str, Callable[[RunReport], bool]] = {
    "K-random": lambda r: r.k_random.faithfulness_oracle is not None,
    "ARI": lambda r: r.cluster_quality is not None,
    "NMI": lambda r: r.cluster_quality is not None,
    "purity": lambda r: r.cluster_quality is not None,
}


def definitions(anchor: str, report: RunReport | None = None) -> list[tuple[str, str]]:
    """(term, definition) of the terms first used in section ``anchor`` (of ``report``:
    those whose numbers it shows)."""
    return [(t, TERMS[t]) for t in FIRST_USE.get(anchor, [])
            if report is None or SHOWN_IF.get(t, lambda r: True)(report)]
