"""The page's section on what each cluster is, from the report's cluster descriptions.

From :attr:`RunReport.cluster_descriptions
<auto_circuit_dcd.report.records.RunReport.cluster_descriptions>`
(:func:`~auto_circuit_dcd.explain.describe_clusters`):

1. the per-prompt fields against the clusters, strongest first (Cramér's V, AMI, the test,
   its q-value, each cluster's most frequent value beside its share over all prompts);
2. per cluster: its sentence (:func:`~auto_circuit_dcd.explain.describe_in_words`), its
   typical and ambiguous prompts with their answers, and the nodes (heads, MLPs) and edges
   with more and less attribution in it than in the other clusters, with effect size and
   q-value;
3. the diagram of the distinguishing edges over the clusters' circuits (``extras``), with
   its legend;
4. the circuits' differences at the report's size (edges only in one, in both).

Prompts and field values are the dataset's text: every one is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auto_circuit_dcd.explain.records import (
    ClusterDescriptions,
    ClusterExemplars,
    DifferenceTable,
    UnitDifference,
)
from auto_circuit_dcd.report.html import esc, figure_div, legend_html, table
from auto_circuit_dcd.report.records import RunReport
from auto_circuit_dcd.report.values import fmt, p_value, percent

__all__ = ["described_section", "NODES_SHOWN", "EDGES_SHOWN", "LOWER_SHOWN",
           "DIFFERENCE_LISTED"]

#: rows of each cluster's tables: nodes and edges higher in it, and lower
NODES_SHOWN = 10
EDGES_SHOWN = 10
LOWER_SHOWN = 5
#: edges listed per set of a circuit difference
DIFFERENCE_LISTED = 15

#: the input of a head an edge enters, by MIB's suffix
_HEAD_INPUTS = {"q": "query", "k": "key", "v": "value"}


def _unit_kind(name: str) -> str:
    """What a node is, or where an edge goes (MIB names)."""
    import re

    from auto_circuit_dcd.report.diagram import node_kind

    m = re.match(r"^[^<>]+->(?P<dst>[^<>]+?)(?:<(?P<qkv>[qkv])>)?$", name)
    if m is None:
        return {"head": "attention head", "mlp": "MLP"}.get(node_kind(name), node_kind(name))
    if m["qkv"]:
        return f"{_HEAD_INPUTS[m['qkv']]} input of {m['dst']}"
    return "the logits" if m["dst"] == "logits" else f"{m['dst']}'s input"


def _fields(desc: ClusterDescriptions) -> str:
    if not desc.fields:
        body = '<p class="note">No per-prompt field could be tested.</p>'
    else:
        header = ["field", "source", "kind", "prompts", "Cramér's V", "AMI", "test",
                  "q-value", "associated",
                  *(f"cluster {c}: most frequent value" for c in desc.clusters)]
        rows = []
        for f in desc.fields:
            by = {t.cluster: t for t in f.typical}
            rows.append([f.field, f.source, f.kind, f.n_rows, f.cramers_v,
                         f.adjusted_mutual_info, f.test, p_value(f.q_value),
                         "yes" if f.associated else "no",
                         *(f"{by[c].category}: {by[c].count} of {by[c].n} ({percent(by[c].share)}"
                           f"; {percent(by[c].overall_share)} of all)" if c in by else "-"
                           for c in desc.clusters)])
        body = table(header, rows)
    if desc.skipped_fields:
        body += '<p class="note">Not tested: ' + esc("; ".join(
            f"{k} ({v})" for k, v in desc.skipped_fields.items())) + ".</p>"
    return body


def _exemplars(ex: ClusterExemplars) -> str:
    rows = []
    for kind, items in (("typical", ex.typical), ("ambiguous", ex.ambiguous)):
        for e in items:
            near = ("-" if e.other_cluster is None else
                    f"{fmt(e.margin)} (cluster {e.other_cluster})")
            rows.append([kind, str(e.id), e.clean, " | ".join(e.answers),
                         " | ".join(e.wrong_answers), e.distance, near, e.silhouette])
    if not rows:
        return '<p class="note">No exemplar (every prompt of this cluster is noise).</p>'
    return ('<div class="exemplars">' + table(
        ["", "id", "prompt", "answer", "wrong answers", "distance to centre",
         "margin (nearest other cluster)", "silhouette"], rows) + "</div>")


def _units(tab: DifferenceTable, shown: int, what: str, alpha: float) -> str:
    def row(direction: str, u: UnitDifference) -> list[Any]:
        return [direction, u.name, _unit_kind(u.name), u.mean_a, u.mean_b, u.difference,
                u.effect_size, p_value(u.q_value)]

    rows = ([row("higher here", u) for u in tab.higher[:shown]]
            + [row("lower here", u) for u in tab.lower[:LOWER_SHOWN]])
    count = '<p class="note">' + esc(
        f"{tab.n_higher} {what} higher and {tab.n_lower} lower in this cluster than elsewhere "
        f"(q <= {alpha:g}) of {tab.n_tested} tested; the {min(shown, len(tab.higher))} and "
        f"{min(LOWER_SHOWN, len(tab.lower))} with the largest effect sizes shown.") + "</p>"
    if not rows:
        return count
    return count + table(["", what[:-1] if what.endswith("s") else what,
                          "kind" if what == "nodes" else "enters",
                          "mean here", "mean elsewhere", "difference", "Cohen's d",
                          "q-value"], rows)


def _cluster_block(desc: ClusterDescriptions, ex: ClusterExemplars, sentence: str) -> str:
    c = ex.cluster
    body = (f'<div class="cluster-described" id="described-{c}"><h3>Cluster {c} '
            f"({ex.size} training prompts)</h3><p>{esc(sentence)}</p>"
            "<h4>Exemplars</h4>" + _exemplars(ex))
    if len(desc.clusters) > 1:
        contrast = desc.contrast(c)
        alpha = desc.settings.alpha
        body += ("<h4>Heads and MLPs that set it apart</h4>"
                 + _units(contrast.nodes, NODES_SHOWN, "nodes", alpha)
                 + "<h4>Edges that set it apart</h4>"
                 + _units(contrast.edges, EDGES_SHOWN, "edges", alpha))
    return body + "</div>"


def _differences(report: RunReport, desc: ClusterDescriptions) -> str:
    diffs = desc.circuit_differences
    if not diffs:
        return ""
    rows = [[f"{d.a} and {d.b}", "own edge sets" if d.size is None else d.size, d.n_a, d.n_b,
             d.n_only_a, d.n_only_b, d.n_shared, d.jaccard] for d in diffs]
    lists = ""
    for d in diffs:
        for what, names, n in ((f"only in cluster {d.a}'s circuit", d.only_a, d.n_only_a),
                               (f"only in cluster {d.b}'s circuit", d.only_b, d.n_only_b),
                               ("in both circuits", d.shared, d.n_shared)):
            shown = names[:DIFFERENCE_LISTED]
            more = f" (and {n - len(shown)} more)" if n > len(shown) else ""
            listed = ", ".join(shown) or "-"
            lists += ('<p class="note">'
                      + esc(f"Clusters {d.a} and {d.b}, {what} ({n}): {listed}{more}") + "</p>")
    size = desc.circuit_differences[0]
    how = ("" if size.size is None else
           f" at {size.size} edges asked ({100 * report.cross_faithfulness.p:.3g}% of all "
           f"edges), chosen by {size.selection} ranked by {size.ranking}: the circuits "
           "evaluated at that size")
    return ('<h3>Circuit differences</h3><p class="note">'
            + esc(f"Each pair of clusters' circuits{how}; lists ordered by |score|, largest "
                  "first.") + "</p>"
            + table(["clusters", "edges asked", "edges in first", "edges in second",
                     "only in first", "only in second", "in both", "Jaccard"], rows) + lists)


def described_section(report: RunReport, extras: Mapping[str, Any] | None = None) -> str:
    """The section's HTML (see the module docstring); a sentence when the report holds no
    descriptions."""
    from auto_circuit_dcd.explain import describe_in_words
    from auto_circuit_dcd.report.diagram import SHARED, cluster_colour, node_legend

    desc = report.cluster_descriptions
    if desc is None:
        return ('<p class="note">This report holds no cluster descriptions (written before '
                "they were computed): run the job again.</p>")
    extras = extras or {}
    body = "<h3>What the prompts share</h3>" + _fields(desc)
    words = describe_in_words(desc)
    for ex, sentence in zip(desc.exemplars, words):
        body += _cluster_block(desc, ex, sentence)
    fig = extras.get("distinguishing_figure")
    if fig is not None:
        body += ("<h3>The distinguishing edges on the clusters' circuits</h3>"
                 f'<p class="note">{esc(extras.get("distinguishing_caption", ""))}</p>'
                 + legend_html(node_legend(
                     [(cluster_colour(c), f"higher in cluster {c}") for c in desc.clusters]
                     + [(SHARED, "in a cluster's circuit, not among the distinguishing")]))
                 + figure_div(fig))
    return body + _differences(report, desc)
