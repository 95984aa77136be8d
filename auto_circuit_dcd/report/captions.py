"""What the report page shows beside ``report.json``: each cluster's circuit drawn, the
caption that says what is drawn, and the 2-D projection of the training rows.

Each cluster's circuit is drawn at ``--draw-fraction`` (default ``--p-cross``, the size of
the page's per-cluster numbers):

1. the edge count is ``floor(p_draw * n_edges)`` and the drawing is the circuit's
   ``top(count)`` (edges tied with the last one kept, as the evaluation keeps them);
2. the caption gives the edges drawn, the share of all edges and why that size;
3. a circuit of more than :data:`~auto_circuit_dcd.report.figures.MAX_DRAWN_EDGES` edges
   (or of none) is not drawn, and its caption says which ``--draw-fraction`` to choose.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

from auto_circuit_dcd.report.records import RunReport

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go
    from auto_circuit.utils.patchable_model import PatchableModel

    from auto_circuit_dcd.attribution.matrix import AttributionMatrix
    from auto_circuit_dcd.circuits.circuit import Circuit

__all__ = ["draw_fraction", "circuit_caption", "page_extras"]


def draw_fraction(report: RunReport) -> float:
    """The edge fraction at which the page draws each cluster's circuit."""
    return report.config.get("draw_fraction") or report.cross_faithfulness.p


def circuit_caption(report: RunReport, drawn: int) -> str:
    """What a cluster's drawing shows: ``drawn`` edges (the top ones at the draw fraction)
    and, when it is not drawn, why and what to change."""
    from auto_circuit_dcd.report.figures import MAX_DRAWN_EDGES

    p_cross, p_draw = report.cross_faithfulness.p, draw_fraction(report)
    why = ("the size of the cross-faithfulness matrix and the per-cluster table"
           if math.isclose(p_draw, p_cross) else
           f"--draw-fraction; the per-cluster numbers are at {100 * p_cross:.3g}%")
    caption = (f"top {drawn} of {report.n_edges} edges by |score| "
               f"({100 * p_draw:.3g}% of all edges: {why})")
    if drawn > MAX_DRAWN_EDGES:
        caption += (f"; not drawn: more than {MAX_DRAWN_EDGES} edges do not draw legibly, "
                    "choose a smaller --draw-fraction")
    elif not drawn:
        caption += "; nothing to draw at this size, choose a larger --draw-fraction"
    return caption


def page_extras(report: RunReport, pm: "PatchableModel", rows: "AttributionMatrix",
                circuits: Mapping[str, "Circuit"]) -> Dict[str, Any]:
    """The page's figures beside the report (``write_html``'s ``extras``): each cluster's
    circuit (``circuits["cluster_<c>"]``) drawn with its caption, and the projection of
    the training ``rows`` (or the sentence saying why there is none)."""
    from auto_circuit_dcd.evaluation.faithfulness import edge_count
    from auto_circuit_dcd.report.figures import MAX_DRAWN_EDGES, circuit_figure, projection

    count = edge_count(draw_fraction(report), report.n_edges)
    figures: Dict[int, Optional["go.Figure"]] = {}
    captions: Dict[int, str] = {}
    for c in report.cross_faithfulness.labels:
        circuit = circuits[f"cluster_{c}"]
        drawn = circuit.top(count).size
        captions[c] = circuit_caption(report, drawn)
        figures[c] = circuit_figure(pm, circuit, count) if 0 < drawn <= MAX_DRAWN_EDGES \
            else None
    xy, note = projection(rows.to_numpy())
    extras: Dict[str, Any] = {"circuit_figures": figures, "circuit_captions": captions}
    if xy is not None:
        extras["projection"] = {**xy, "labels": report.labels, "groups": report.groups}
    else:
        extras["projection_note"] = note
    return extras
