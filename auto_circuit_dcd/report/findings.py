"""What a run found, in sentences generated from its report: the page's first paragraph.

:func:`findings` joins the sentences of each part of :data:`FINDINGS`, in order; a part
takes the :class:`~auto_circuit_dcd.report.records.RunReport` and returns its sentences
(none when the report lacks what it needs):

1. :func:`clustering_sentences`: how many training prompts fell into how many clusters,
   by which clusterer, and which criterion chose k;
2. :func:`cluster_sentences`: what each cluster is
   (:func:`~auto_circuit_dcd.explain.describe_in_words` on the report's descriptions);
3. :func:`quality_sentences`: agreement with the dataset's known groups;
4. :func:`faithfulness_sentences`: each cluster's own circuit against the single circuit at
   the size of the per-cluster numbers, and the CPR of DCD, the single circuit and the
   random split;
5. :func:`verdict_sentences`: the method's claims as verdicts, from the report's verdicts
   (``uncertainty.verdicts``): each claim's outcome at ``p`` and on CPR.

Sentences are plain text (prompts and field values as the dataset has them): the page
escapes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from auto_circuit_dcd.report.glossary import K_RULES
from auto_circuit_dcd.report.records import RunReport

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.metrics.uncertainty.families import Comparison

__all__ = ["FINDINGS", "LISTED", "OWN_PARAGRAPH", "findings", "clustering_sentences",
           "cluster_sentences", "quality_sentences", "faithfulness_sentences", "verdict_sentences"]


def _num(x: float) -> str:
    from auto_circuit_dcd.report.values import fmt

    return fmt(x)


def _used_clusterer(report: RunReport) -> str | None:
    return next((str(r.get("method")) for r in report.selection
                 if r.get("selected") and r.get("method") != "single-cluster test"), None)


def clustering_sentences(report: RunReport) -> list[str]:
    """How the training prompts were clustered and how k was chosen."""
    k = report.n_clusters
    head = (f"DCD grouped the {report.n_train} training prompts by their per-prompt "
            f"{report.method} edge attributions into k = {k} "
            f"{'cluster' if k == 1 else 'clusters'}")
    used = _used_clusterer(report)
    choice = (report.k_choices or {}).get(used or "", {})
    rule = choice.get("rule") or report.config.get("k_rule")
    if k == 1:
        test = next((r for r in report.selection if r.get("method") == "single-cluster test"),
                    None)
        why = f" ({test['reason']})" if test and test.get("reason") else ""
        return [head + why + "."]
    if used is None:
        return [head + "."]
    how = f" ({used}"
    if rule:
        how += f"; k {K_RULES.get(str(rule), 'chosen by ' + str(rule))}"
    return [head + how + ")."]


def cluster_sentences(report: RunReport) -> list[str]:
    """One sentence per cluster: its size, the field values that stand out in it, the
    nodes with more attribution in it than elsewhere, its most typical prompt."""
    from auto_circuit_dcd.explain import describe_in_words

    desc = report.cluster_descriptions
    return [] if desc is None else describe_in_words(desc)


def quality_sentences(report: RunReport) -> list[str]:
    """Agreement of the clusters with the dataset's known groups (not used to cluster)."""
    q = report.cluster_quality
    if q is None:
        return []
    return [f"Against the dataset's known groups, which the clustering never saw, the "
            f"clusters agree with ARI {_num(q.ari)} (1: the same partition, 0: chance) and "
            f"purity {_num(q.purity)}."]


def faithfulness_sentences(report: RunReport) -> list[str]:
    """Each cluster's own circuit against the single circuit on its routed test prompts
    at ``p``; CPR of DCD routed, the single circuit and the random split. With the run's
    intervals (``report.uncertainty``) each comparison is said as the summary prints it:
    both values, the edges each side held, the difference with its interval and its mark
    (:func:`compared_sentences`); a report without them gives the values alone."""
    if report.uncertainty is not None:
        return compared_sentences(report)
    j = report.p_index
    p = report.edge_fractions[j]
    parts = [f"{_num(c.faithfulness_own[j])} on cluster {c.label} (the single circuit "
             f"{_num(c.single_on_group[j])})" for c in report.dcd.clusters if c.n_test]
    out = []
    if parts:
        out.append(f"At {100 * p:.3g}% of edges, on the test prompts routed to each cluster, "
                   f"the cluster's own circuit keeps faithfulness {', '.join(parts)}.")
    sentence = (f"Over all circuit sizes, CPR is {_num(report.dcd.cpr.routed)} for DCD "
                f"(routed) against {_num(report.single.cpr)} for the single circuit")
    if report.k_random.faithfulness_routed is not None:
        sentence += (f" and {_num(report.k_random.cpr.routed)} for a random split into "
                     f"{report.n_clusters}")
    out.append(sentence + ".")
    return out


def _compared(c: Comparison) -> str:
    """``0.673 against 0.347 (4 and 4 edges), +0.326 [+0.238, +0.407], better``."""
    from auto_circuit_dcd.report.summary import interval_text, size_flag
    from auto_circuit_dcd.report.values import fixed

    edges = (f" ({'/'.join(map(str, c.edges_a.values()))} and "
             f"{'/'.join(map(str, c.edges_b.values()))} edges)" if c.edges_a else "")
    flag = size_flag([c])
    return (f"{fixed(c.a_value)} against {fixed(c.b_value)}{edges}, "
            f"{interval_text(c.difference, signed=True)}, {c.mark}"
            + (f" ({flag})" if flag else ""))


def compared_sentences(report: RunReport) -> list[str]:
    """The first paragraph's comparisons from the run's paired tests: each cluster's own
    circuit against the single circuit at ``p`` on the test prompts routed to it, then DCD
    routed against the single circuit and the random split on CPR; values, edge counts,
    the difference with its interval and the mark (level and correction as the summary)."""
    from auto_circuit_dcd.report.summary import same_size

    u = report.uncertainty
    assert u is not None, "compared_sentences reads report.uncertainty"
    p = report.edge_fractions[report.p_index]

    def at(family: str, size: float | None) -> list[Comparison]:
        fam = u.comparisons.get(family)
        return [] if fam is None else [c for c in fam.comparisons if same_size(c.size, size)]

    out = []
    own = at("own_vs_single", p)
    if own:
        out.append(f"At {100 * p:.3g}% of edges, on the test prompts routed to each cluster, "
                   "each cluster's own circuit against the single circuit (difference with "
                   f"its {u.settings.level:.0%} interval, mark after correction): "
                   + "; ".join(f"{c.a.replace(' own', '')}: {_compared(c)}" for c in own)
                   + ".")
    cpr = [(f"the single circuit: {_compared(c)}", c)
           for c in at("dcd_routed_vs_single", None)]
    cpr += [(f"a random split into {report.n_clusters}: {_compared(c)}", c)
            for c in at("dcd_routed_vs_k_random_routed", None)]
    if cpr:
        out.append("Over all circuit sizes (CPR), DCD routed against "
                   + "; against ".join(text for text, _ in cpr) + ".")
    return out


def verdict_sentences(report: RunReport) -> list[str]:
    """The verdicts on the method's claims (``report.uncertainty.verdicts``), one sentence
    per claim: its outcome at the size of the per-cluster numbers and on CPR, flagged where
    the circuits compared hold different edge counts; none without verdicts."""
    from auto_circuit_dcd.report.summary import same_size, verdict_text

    u = report.uncertainty
    if u is None or not u.verdicts:
        return []
    p = report.cross_faithfulness.p
    out = []
    for claim in dict.fromkeys(v.claim for v in u.verdicts):
        of = [v for v in u.verdicts if v.claim == claim]
        at_p = next((v for v in of if same_size(v.size, p)), None)
        on_cpr = next((v for v in of if v.size is None), None)
        parts = ([f"{verdict_text(u, at_p)} at {100 * p:.3g}% of edges"] if at_p else []) + \
                ([f"{verdict_text(u, on_cpr)} on CPR"] if on_cpr else [])
        if parts:
            out.append(f'Verdict on "{of[0].statement}" (level {1 - u.settings.level:.2g}): '
                       + ", ".join(parts) + ".")
    return out


#: the parts of the first paragraph, in order (each: report -> its sentences)
FINDINGS: list[Callable[[RunReport], list[str]]] = [
    clustering_sentences,
    cluster_sentences,
    quality_sentences,
    faithfulness_sentences,
    verdict_sentences,
]


#: parts whose sentences are items of a list on the page (one per cluster)
LISTED: tuple[Callable[[RunReport], list[str]], ...] = (cluster_sentences,)
#: parts that start a paragraph of their own on the page
OWN_PARAGRAPH: tuple[Callable[[RunReport], list[str]], ...] = (verdict_sentences,)


def findings(report: RunReport) -> list[str]:
    """What the run found, in sentences (see the module docstring)."""
    return [s for part in FINDINGS for s in part(report)]
