"""What the report page shows beside ``report.json``: each cluster's circuit drawn, the
caption that says what is drawn, the diagram of the edges that set the clusters apart, and
the 2-D projection of the training rows.

Each cluster's circuit is drawn at ``--draw-fraction`` (default ``--p-cross``, the size of
the page's per-cluster numbers):

1. at an evaluated size, the drawing is the edge set the run evaluated there (the run's
   selection rule and CPR ranking applied to ``floor(p_draw * n_edges)`` edges asked:
   ``topn-prune`` keeps only those on an input-to-logits path, so it can draw fewer than
   asked); at another size, the edge set that rule makes;
2. the caption says which circuit is drawn, how many edges it holds of how many asked,
   how the rule chose them and why that size;
3. a circuit of more than :data:`~auto_circuit_dcd.report.figures.MAX_DRAWN_EDGES` edges
   (or of none) is not drawn, and its caption says which ``--draw-fraction`` to choose.

Diagrams are drawn from the edge names alone (:mod:`auto_circuit_dcd.report.diagram`), in
MIB's names, with node colours by kind and a legend on the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from auto_circuit_dcd.report.records import RunReport

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from auto_circuit_dcd.attribution.matrix import AttributionMatrix
    from auto_circuit_dcd.circuits.circuit import Circuit
    from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult

__all__ = ["draw_fraction", "circuit_caption", "distinguishing_caption", "page_extras",
           "RULE_WORDS", "RANKING_WORDS"]

#: how each selection rule makes a circuit of ``{n}`` edges asked, ranked by ``{key}``
RULE_WORDS = {
    "topn": "the top {n} by {key}, ties kept",
    "topn-prune": "of the top {n} by {key}, those on an input-to-logits path",
    "topn-fill": "the top edges by {key} on input-to-logits paths, refilled down the ranking "
                 "until {n} lie on paths",
    "greedy": "{n} grown from the logits by {key}, those on an input-to-logits path",
}
RANKING_WORDS = {"abs": "|score|", "signed": "signed score"}
#: edges drawn per cluster, and of the clusters' circuits, in the distinguishing diagram
DISTINGUISHING_PER_CLUSTER = 8
DISTINGUISHING_BASE = 30


def draw_fraction(report: RunReport) -> float:
    """The edge fraction at which the page draws each cluster's circuit."""
    return report.config.get("draw_fraction") or report.cross_faithfulness.p


def _rule(report: RunReport, asked: int) -> str:
    sel = report.circuit_selection
    words = RULE_WORDS.get(sel.rule, sel.rule + " of {n} edges by {key}")
    return words.format(n=asked, key=RANKING_WORDS.get(sel.ranking, sel.ranking))


def circuit_caption(report: RunReport, drawn: int, evaluated: bool = True) -> str:
    """What a cluster's drawing shows: its ``drawn`` edges, the circuit evaluated at the
    draw fraction (``evaluated``) or the one the run's rule makes there, how they were
    chosen and, when it is not drawn, why and what to change."""
    from auto_circuit_dcd.evaluation.faithfulness import edge_count
    from auto_circuit_dcd.report.figures import MAX_DRAWN_EDGES

    p_cross, p_draw = report.cross_faithfulness.p, draw_fraction(report)
    why = ("the size of the cross-faithfulness matrix and the per-cluster table"
           if math.isclose(p_draw, p_cross) else
           f"--draw-fraction; the per-cluster numbers are at {100 * p_cross:.3g}%")
    which = ("the circuit evaluated at" if evaluated else
             "not an evaluated size; the circuit the run's selection rule makes at")
    caption = (f"{which} {100 * p_draw:.3g}% of all edges: {drawn} of {report.n_edges} edges "
               f"({_rule(report, edge_count(p_draw, report.n_edges))}; {why})")
    if drawn > MAX_DRAWN_EDGES:
        caption += (f"; not drawn: more than {MAX_DRAWN_EDGES} edges do not draw legibly, "
                    "choose a smaller --draw-fraction")
    elif not drawn:
        caption += "; nothing to draw at this size, choose a larger --draw-fraction"
    return caption


def distinguishing_caption(report: RunReport) -> str:
    """What the diagram of distinguishing edges shows."""
    desc = report.cluster_descriptions
    alpha = desc.settings.alpha if desc is not None else 0.05
    value = ("|score|" if desc is None or desc.settings.scores == "abs" else "signed score")
    return (f"Coloured (the cluster's colour): each cluster's {DISTINGUISHING_PER_CLUSTER} "
            "edges most clearly higher in its prompts than in the other clusters' (largest "
            f"Cohen's d among those with q <= {alpha:g}). Grey: the other edges of the "
            f"clusters' circuits evaluated at {100 * report.cross_faithfulness.p:.3g}% of "
            f"all edges (at most {DISTINGUISHING_BASE}, largest first). Width: the edge's "
            f"mean {value} over the training prompts of the cluster where it is largest; "
            "hover an edge for its effect size, q-value and means.")


def _evaluated_mask(report: RunReport, evaluated: Mapping[str, Mapping[str, Any]] | None,
                    name: str, fraction: float) -> np.ndarray | None:
    """The edges circuit ``name`` was evaluated with at ``fraction`` under the run's CPR
    ranking, or None when that size was not evaluated."""
    results = (evaluated or {}).get(report.circuit_selection.ranking, {})
    result = results.get(name)
    hits = [j for j, f in enumerate(report.edge_fractions) if math.isclose(f, fraction)]
    if result is None or getattr(result, "edge_sets", None) is None or not hits:
        return None
    return np.asarray(result.edge_sets[hits[0]], dtype=bool)


def page_extras(report: RunReport, rows: AttributionMatrix,
                circuits: Mapping[str, Circuit],
                evaluated: Mapping[str, Mapping[str, FaithfulnessResult]] | None = None
                ) -> dict[str, Any]:
    """The page's figures beside the report (``write_html``'s ``extras``): each cluster's
    circuit (``circuits["cluster_<c>"]``) drawn with its caption, the edges that set the
    clusters apart, and the projection of the training ``rows`` (or the sentence saying why
    there is none). ``evaluated``: ``{ranking: {circuit name: FaithfulnessResult}}``, whose
    ``edge_sets`` are the circuits drawn."""
    from auto_circuit_dcd.evaluation.faithfulness import edge_count
    from auto_circuit_dcd.report.diagram import circuit_edges, edge_diagram
    from auto_circuit_dcd.report.figures import MAX_DRAWN_EDGES, projection

    sel = report.circuit_selection
    p_draw = draw_fraction(report)
    count = edge_count(p_draw, report.n_edges)
    figures: dict[int, go.Figure | None] = {}
    captions: dict[int, str] = {}
    for c in report.cross_faithfulness.labels:
        name = f"cluster_{c}"
        circuit = circuits[name]
        mask = _evaluated_mask(report, evaluated, name, p_draw)
        was_evaluated = mask is not None
        if mask is None:
            mask = circuit.select(sel.rule, count, sel.ranking).mask.numpy()
        drawn = int(mask.sum())
        captions[c] = circuit_caption(report, drawn, was_evaluated)
        figures[c] = (edge_diagram(circuit_edges(circuit.edge_names, circuit.scores.numpy(),
                                                 mask))
                      if 0 < drawn <= MAX_DRAWN_EDGES else None)
    x = rows.to_numpy()
    extras: dict[str, Any] = {"circuit_figures": figures, "circuit_captions": captions}
    extras.update(_distinguishing(report, x, rows.edge_names, circuits, evaluated))
    xy, note = projection(x)
    if xy is not None:
        extras["projection"] = {**xy, "labels": report.labels, "groups": report.groups}
    else:
        extras["projection_note"] = note
    return extras


def _distinguishing(report: RunReport, x: np.ndarray, edge_names: Any,
                    circuits: Mapping[str, Circuit],
                    evaluated: Mapping[str, Mapping[str, FaithfulnessResult]] | None
                    ) -> dict[str, Any]:
    """``distinguishing_figure`` and its caption: the edges that set each cluster apart over
    the clusters' circuits evaluated at ``--p-cross`` (nothing without descriptions)."""
    from auto_circuit_dcd.report.diagram import distinguishing_edges, edge_diagram

    desc = report.cluster_descriptions
    if desc is None or len(desc.clusters) < 2:
        return {}
    labels = np.asarray(report.labels)
    values = np.abs(x) if desc.settings.scores == "abs" else x
    means = {c: values[labels == c].mean(0) for c in desc.clusters}
    p = report.cross_faithfulness.p
    masks = {}
    for c in desc.clusters:
        mask = _evaluated_mask(report, evaluated, f"cluster_{c}", p)
        masks[c] = mask if mask is not None else circuits[f"cluster_{c}"].mask.numpy()
    edges = distinguishing_edges(desc, list(edge_names), means, masks,
                                 per_cluster=DISTINGUISHING_PER_CLUSTER,
                                 base=DISTINGUISHING_BASE)
    return {"distinguishing_figure": edge_diagram(edges),
            "distinguishing_caption": distinguishing_caption(report)}
