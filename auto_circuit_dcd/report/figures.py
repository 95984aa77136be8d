"""Plotly figures for the run report, one function per figure.

Every function takes the run's :class:`~auto_circuit_dcd.report.records.RunReport` (or the pieces
it needs) and returns a ``plotly.graph_objects.Figure``. Missing values (NaN, e.g. the
faithfulness of a
cluster with no test examples) are drawn as gaps and written as "n/a", rounding noise as 0
(:mod:`auto_circuit_dcd.report.values`); no function fails on them.
Figures use an explicit template so that the host library's global plotly template (set when
auto-circuit is imported) does not change how the page looks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from auto_circuit_dcd.report.values import finite, finite_list, fmt

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.report.records import RunReport

TEMPLATE = "plotly_white"
FONT = dict(size=13)
#: Largest circuit drawn as a Sankey diagram; bigger ones are unreadable and slow to render.
MAX_DRAWN_EDGES = 300

#: drawn in this order: the single circuit first as a wide, pale band, so that a K-random
#: (or DCD) curve equal to it runs visibly inside it instead of hiding it
CURVE_STYLES = {
    "single": dict(color="rgba(68,68,68,0.35)", dash="solid", width=9),
    "K-random oracle": dict(color="#ff7f0e", dash="solid", width=2),
    "K-random routed": dict(color="#ff7f0e", dash="dot", width=2),
    "DCD oracle": dict(color="#1f77b4", dash="solid", width=2.5),
    "DCD routed": dict(color="#1f77b4", dash="dash", width=2.5),
}
#: fewer training rows than this draw no projection (a few points in a plane show nothing)
MIN_PROJECTED_ROWS = 10
#: singular values below this share of the largest count as zero (a flat projection)
FLAT_PROJECTION = 1e-6
#: the label auto-circuit's drawing leaves empty on the logits node (``Resid End``)
LOGITS_LABEL = "logits"
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]


def _base_layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(template=TEMPLATE, font=FONT, height=height,
                      title=dict(text=title, x=0.0, xanchor="left"),
                      margin=dict(l=70, r=30, t=60, b=60))
    return fig


#: the curves' x axis titles: by share of the model's edges, or by edges held
FRACTION_AXIS = "edges kept (fraction of all edges)"
EDGES_AXIS = "edges held by the circuit (DCD, K-random: mean over their circuits)"


def _log_fraction_axis(fig: go.Figure, **where: Any) -> None:
    fig.update_xaxes(type="log", tickformat=".1~%", title_text=FRACTION_AXIS, **where)


def faithfulness_curves(report: RunReport) -> go.Figure:
    """Faithfulness vs edge fraction for the single circuit, DCD and K-random (oracle,
    routed), each with its interval band when the report has intervals, and a switch that
    draws the curves against the edges their circuits held (:func:`edges_held`)."""
    fractions = finite_list(report.edge_fractions)
    n = len(fractions)
    series = {
        "single": report.single.faithfulness,
        "K-random oracle": report.k_random.faithfulness_oracle,
        "K-random routed": report.k_random.faithfulness_routed,
        "DCD oracle": report.dcd.faithfulness_oracle,
        "DCD routed": report.dcd.faithfulness_routed,
    }
    legend_order = ["single", "DCD oracle", "DCD routed", "K-random oracle", "K-random routed"]
    bands = curve_bands(report)
    held = edges_held(report)
    fig = go.Figure()
    by_edges: list[list[float | None]] = []  # each trace's x on the "edges held" axis
    for name, ys in series.items():
        if ys is None:
            continue
        style = CURVE_STYLES[name]
        if name in bands:
            xs, poly = band_polygon(fractions, *bands[name])
            ex, _ = band_polygon(held[name], *bands[name])
            fig.add_trace(go.Scatter(
                x=xs, y=poly, name=f"{name}, {level_name(report)}", legendgroup=name,
                showlegend=False, fill="toself", fillcolor=_translucent(str(style["color"])),
                line=dict(width=0), hoverinfo="skip", mode="lines"))
            by_edges.append(ex)
        fig.add_trace(go.Scatter(
            x=fractions, y=finite_list(ys, n), name=name, mode="lines+markers",
            legendrank=100 + legend_order.index(name), legendgroup=name,
            line=dict(color=style["color"], dash=style["dash"], width=style["width"]),
            marker=dict(size=10 if name == "single" else 6),
            customdata=[[v] for v in held[name]],
            hovertemplate="%{x:.2%} of edges (%{customdata[0]:.0f} held): %{y:.3f}<extra>"
                          + name + "</extra>"))
        by_edges.append(held[name])
    fig.add_hline(y=1.0, line=dict(color="#bbbbbb", width=1, dash="dot"))
    _log_fraction_axis(fig)
    fig.update_yaxes(title_text="faithfulness")
    _edges_switch(fig, by_edges)
    title = "Faithfulness vs circuit size" + (f" ({level_name(report)} bands)" if bands else "")
    return _base_layout(fig, title, 450)


# ------------------------------------------------------------------- intervals
def curve_bands(report: RunReport) -> dict[str, tuple[list, list]]:
    """``{curve name: (low, high)}`` of :func:`faithfulness_curves`' curves, aligned with
    ``report.edge_fractions`` (None where a size has no interval); empty when the report
    has no intervals."""
    u = report.uncertainty
    if u is None:
        return {}
    curves = {"single": u.single, "DCD oracle": u.dcd_oracle, "DCD routed": u.dcd_routed,
              "K-random oracle": u.k_random_oracle, "K-random routed": u.k_random_routed}
    return {name: aligned_band(report, c.faithfulness) for name, c in curves.items()
            if c is not None}


def level_name(report: RunReport) -> str:
    """``"95% interval"``: how the page names the report's intervals ("" without them)."""
    u = report.uncertainty
    return "" if u is None else f"{u.settings.level:.0%} interval"


def cluster_bands(report: RunReport) -> dict[Any, tuple[list, list]]:
    """``{(cluster label, "own circuit" | "single circuit"): (low, high)}`` on the cluster's
    test examples, aligned with ``report.edge_fractions`` (empty without intervals)."""
    u = report.uncertainty
    if u is None:
        return {}
    out: dict[Any, tuple[list, list]] = {}
    for c in u.clusters:
        out[(c.label, "own circuit")] = aligned_band(report, c.own.faithfulness)
        out[(c.label, "single circuit")] = aligned_band(report, c.single_on_group.faithfulness)
    return out


def aligned_band(report: RunReport, band: Any) -> tuple[list, list]:
    """``(low, high)`` of a :class:`~auto_circuit_dcd.metrics.uncertainty.Band` at each of
    ``report.edge_fractions`` (None where the band has no such size)."""
    grid = report.uncertainty.grid.fractions if report.uncertainty is not None else []
    low, high = [], []
    for p in report.edge_fractions:
        j = next((i for i, f in enumerate(grid) if math.isclose(f, p, abs_tol=1e-12)), None)
        low.append(None if j is None else finite(band.low[j]))
        high.append(None if j is None else finite(band.high[j]))
    return low, high


def band_polygon(xs: Sequence[float | None], low: Sequence[float | None],
                 high: Sequence[float | None]) -> tuple[list, list]:
    """The closed outline of a band (along ``high``, back along ``low``) over the points
    where ``x``, ``low`` and ``high`` all exist."""
    keep = [i for i, (x, lo, hi) in enumerate(zip(xs, low, high))
            if x is not None and lo is not None and hi is not None]
    x = [xs[i] for i in keep]
    return x + x[::-1], [high[i] for i in keep] + [low[i] for i in keep][::-1]


def _translucent(color: str, alpha: float = 0.15) -> str:
    """``color`` (``#rrggbb`` or ``rgba(...)``) at opacity ``alpha``."""
    if color.startswith("#") and len(color) == 7:
        r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
        return f"rgba({r},{g},{b},{alpha})"
    if color.startswith("rgba("):
        return color.rsplit(",", 1)[0] + f",{alpha})"
    return color


def edges_held(report: RunReport) -> dict[str, list[float | None]]:
    """Per curve of :func:`faithfulness_curves`, the edges its circuits held at each size
    (``achieved_edge_counts``; a combined curve: the mean over its circuits; None where
    a circuit held none, which a log axis cannot place)."""
    counts = report.achieved_edge_counts
    n = len(report.edge_fractions)
    clusters = [f"cluster_{c}" for c in report.cross_faithfulness.labels]
    k_random = [name for name in counts if name.startswith("k_random_")]

    def mean_of(names: Sequence[str]) -> list[float | None]:
        rows = [counts[c] for c in names if c in counts]
        if not rows:
            return [None] * n
        means = [sum(r[j] for r in rows) / len(rows) for j in range(n)]
        return [m if m > 0 else None for m in means]

    return {"single": mean_of(["single"]), "DCD oracle": mean_of(clusters),
            "DCD routed": mean_of(clusters), "K-random oracle": mean_of(k_random),
            "K-random routed": mean_of(k_random)}


def _edges_switch(fig: go.Figure, by_edges: list[list[float | None]]) -> None:
    """Buttons that draw every trace against the edge fraction or against the edges its
    circuits held (``by_edges``: each trace's x on that axis, in trace order)."""
    by_fraction = [list(t.x) for t in fig.data]
    fig.update_layout(updatemenus=[dict(
        type="buttons", direction="right", x=0.0, xanchor="left", y=-0.32, yanchor="top",
        showactive=True, font=dict(size=11), buttons=[
            dict(label="x: share of edges", method="update",
                 args=[{"x": by_fraction}, {"xaxis.title.text": FRACTION_AXIS,
                                            "xaxis.tickformat": ".1~%"}]),
            dict(label="x: edges held", method="update",
                 args=[{"x": by_edges}, {"xaxis.title.text": EDGES_AXIS,
                                         "xaxis.tickformat": ""}]),
        ])])


def cluster_faithfulness(report: RunReport) -> go.Figure:
    """Per cluster: faithfulness of its own circuit vs the single circuit on its test examples."""
    fractions = finite_list(report.edge_fractions)
    n = len(fractions)
    clusters = report.dcd.clusters
    if not clusters:
        return _empty("Per-cluster faithfulness", "no clusters in this report")
    cols = min(len(clusters), 3)
    rows = math.ceil(len(clusters) / cols)
    titles = [f"cluster {c.label} (size {fmt(c.size)}, {fmt(c.n_test)} test)"
              for c in clusters]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.06, vertical_spacing=0.5 / max(rows, 1) / 2)
    bands = cluster_bands(report)
    for i, c in enumerate(clusters):
        r, col = i // cols + 1, i % cols + 1
        curves = (("own circuit", c.faithfulness_own, "#1f77b4", "solid"),
                  ("single circuit", c.single_on_group, "#444444", "dash"))
        for name, ys, color, dash in curves:
            if (c.label, name) in bands:
                xs, poly = band_polygon(fractions, *bands[(c.label, name)])
                fig.add_trace(go.Scatter(
                    x=xs, y=poly, name=f"{name}, interval", legendgroup=name,
                    showlegend=False, fill="toself", fillcolor=_translucent(color),
                    line=dict(width=0), hoverinfo="skip", mode="lines"), row=r, col=col)
            fig.add_trace(go.Scatter(
                x=fractions, y=finite_list(ys, n), name=name, legendgroup=name,
                showlegend=(i == 0), mode="lines+markers",
                line=dict(color=color, dash=dash, width=2),
                hovertemplate="%{x:.2%} of edges: %{y:.3f}<extra>" + name + "</extra>"),
                row=r, col=col)
        if all(v is None for _, ys, _, _ in curves for v in finite_list(ys, n)):
            ref = "" if i == 0 else str(i + 1)
            fig.add_annotation(text="no test examples", showarrow=False, x=0.5, y=0.5,
                               xref=f"x{ref} domain", yref=f"y{ref} domain")
    _log_fraction_axis(fig)
    fig.update_xaxes(title_text="", tickvals=[0.001, 0.01, 0.1, 1.0])
    fig.update_xaxes(title_text="edges kept", row=rows)
    fig.update_yaxes(title_text="faithfulness", col=1)
    for a in fig.layout.annotations:
        a.font = dict(size=12)
    return _base_layout(fig, "Per-cluster faithfulness: own circuit vs single circuit on the "
                             "cluster's test examples", 330 * rows + 80)


def _heatmap(labels: Sequence[Any], values: Sequence[Sequence[float]], title: str,
             colorbar: str, zmin: float | None, zmax: float | None,
             colorscale: str, text: list[list[str]] | None = None) -> go.Figure:
    labels = [str(x) for x in labels]
    matrix = [finite_list(row, len(labels)) for row in values]
    if not labels or not matrix:
        return _empty(title, "no matrix in this report")
    text = text or [[fmt(v) for v in row] for row in matrix]
    fig = go.Figure(go.Heatmap(
        z=matrix, x=labels, y=labels[:len(matrix)], text=text, texttemplate="%{text}",
        textfont=dict(size=14), colorscale=colorscale, zmin=zmin, zmax=zmax,
        colorbar=dict(title=dict(text=colorbar)), hoverongaps=False,
        hovertemplate="row %{y}, column %{x}: %{text}<extra></extra>",  # the shown value
        xgap=2, ygap=2))
    fig.update_xaxes(type="category", side="bottom")
    fig.update_yaxes(type="category", autorange="reversed")
    side = min(700, 160 + 70 * len(labels))
    fig = _base_layout(fig, title, side + 80)
    fig.update_layout(width=max(side + 160, 560), margin=dict(t=80))
    return fig


def cross_faithfulness_heatmap(report: RunReport) -> go.Figure:
    """``matrix[i][j]``: faithfulness of cluster i's circuit on cluster j's test examples."""
    block = report.cross_faithfulness
    p = finite(block.p)
    at = f" at {p:.1%} of edges" if p is not None else ""
    fig = _heatmap(block.labels, block.matrix, "Cross-faithfulness" + at
                   + (f" ({level_name(report)} in brackets)" if report.uncertainty else ""),
                   "faithfulness", 0.0, 1.0, "Blues", text=cross_text(report))
    fig.update_xaxes(title_text="data of cluster (test examples)")
    fig.update_yaxes(title_text="circuit of cluster")
    return fig


def cross_text(report: RunReport) -> list[list[str]] | None:
    """Each cross-faithfulness cell as shown: its value and, when the report has them, its
    interval (``report.uncertainty.cross``, matched by cluster label); None without."""
    u = report.uncertainty
    block = report.cross_faithfulness
    if u is None or list(u.cross.labels) != list(block.labels):
        return None
    return [[fmt(v) if finite(lo) is None or finite(hi) is None else
             f"{fmt(v)}<br>[{fmt(lo)}, {fmt(hi)}]"
             for v, lo, hi in zip(row, lows, highs)]
            for row, lows, highs in zip(block.matrix, u.cross.low, u.cross.high)]


def edge_overlap_heatmap(report: RunReport) -> go.Figure:
    """Jaccard overlap of the clusters' cumulative-mass edge sets."""
    block = report.edge_overlap
    gamma = finite(block.gamma)
    at = f", gamma = {gamma:g}" if gamma is not None else ""
    fig = _heatmap(block.labels, block.matrix, "Edge overlap (Jaccard" + at + ")", "Jaccard",
                   0.0, 1.0, "Greens")
    fig.update_xaxes(title_text="circuit of cluster")
    fig.update_yaxes(title_text="circuit of cluster")
    return fig


def composition_bars(report: RunReport) -> go.Figure:
    """Stacked bars: how many training examples of each known group fall in each cluster."""
    clusters = report.dcd.clusters
    if not clusters:
        return _empty("Cluster composition", "no clusters in this report")
    xs = [str(c.label) for c in clusters]
    groups = sorted({str(g) for c in clusters for g in c.composition})
    fig = go.Figure()
    if groups:
        for gi, g in enumerate(groups):
            counts = [int(c.composition.get(g, 0)) for c in clusters]
            fig.add_trace(go.Bar(x=xs, y=counts, name=g, marker_color=PALETTE[gi % len(PALETTE)],
                                 hovertemplate="cluster %{x}: %{y}<extra>" + g + "</extra>"))
        title = "Cluster composition by known group"
    else:
        fig.add_trace(go.Bar(x=xs, y=[c.size for c in clusters], name="examples",
                             marker_color="#7f7f7f"))
        title = "Cluster sizes (no known groups in this dataset)"
    fig.update_layout(barmode="stack", legend_title_text="group")
    fig.update_xaxes(type="category", title_text="cluster")
    fig.update_yaxes(title_text="training examples")
    return _base_layout(fig, title, 420)


def projection_scatter(projection: Mapping[str, Any]) -> go.Figure:
    """2-D projection of the attribution rows: coloured by cluster, and by known group if any."""
    x = finite_list(projection.get("x"))
    y = finite_list(projection.get("y"), len(x))
    labels = [str(v) for v in (projection.get("labels") or [])]
    groups = projection.get("groups")
    panels = [("cluster", labels)]
    if groups is not None:
        panels.append(("known group", [str(g) for g in groups]))
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.18,
                        subplot_titles=[f"coloured by {name}" for name, _ in panels])
    for pi, (name, colours) in enumerate(panels):
        legend = "legend" if pi == 0 else "legend2"
        for ci, value in enumerate(sorted(set(colours), key=natural_key)):
            idx = [i for i, v in enumerate(colours) if v == value and i < len(x)]
            fig.add_trace(go.Scattergl(
                x=[x[i] for i in idx], y=[y[i] for i in idx], mode="markers", name=value,
                legend=legend, marker=dict(size=6, opacity=0.75,
                                           color=PALETTE[ci % len(PALETTE)]),
                hovertemplate=f"{name} " + "%{fullData.name}<extra></extra>"),
                row=1, col=pi + 1)
    fig.update_xaxes(title_text="SVD component 1")
    fig.update_yaxes(title_text="SVD component 2", col=1)
    two = len(panels) == 2
    fig.update_layout(
        legend=dict(title=dict(text="cluster"), x=0.41 if two else 1.02, y=1, xanchor="left"),
        legend2=dict(title=dict(text="group"), x=1.02, y=1, xanchor="left"))
    return _base_layout(fig, "Training examples, 2-D projection of their attribution rows", 480)


def projection(rows: Any) -> tuple[dict[str, list[float]] | None, str]:
    """The rows' first two SVD components (centred), or ``None`` and why not: fewer than
    :data:`MIN_PROJECTED_ROWS` rows, or rows spanning fewer than two dimensions."""
    import numpy as np

    x = np.asarray(rows, dtype=np.float64)
    n = x.shape[0]
    if n < MIN_PROJECTED_ROWS:
        return None, (f"Not drawn: {n} training example(s); a 2-D projection of fewer than "
                      f"{MIN_PROJECTED_ROWS} rows shows no structure.")
    x = x - x.mean(0, keepdims=True)
    try:
        u, s, _ = np.linalg.svd(x, full_matrices=False)
    except np.linalg.LinAlgError as err:
        return None, f"Not drawn: the SVD of the attribution rows failed ({err})."
    if s.size < 2 or not s[0] > 0 or s[1] <= FLAT_PROJECTION * s[0]:
        return None, ("Not drawn: the attribution rows span fewer than two dimensions "
                      "(all rows equal, or on one line).")
    xy = u[:, :2] * s[:2]
    return {"x": xy[:, 0].tolist(), "y": xy[:, 1].tolist()}, ""


def natural_key(s: str) -> tuple:
    """Sort key putting numeric labels in numeric order ("2" before "10")."""
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def _empty(title: str, note: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=note, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base_layout(fig, title, 200)


@contextmanager
def preserved_masks(pm: Any) -> Iterator[None]:
    """Restore each destination wrapper's patch-mask Parameter and values on exit, even on error."""
    saved = [(w, w.patch_mask, w.patch_mask.data.clone()) for w in pm.dest_wrappers]
    try:
        yield
    finally:
        for w, param, data in saved:
            if w.patch_mask is not param:
                w.patch_mask = param
            if param.data.shape != data.shape or not bool((param.data == data).all()):
                param.data = data


def circuit_figure(pm: Any, circuit: Any, n_edges: int) -> go.Figure | None:
    """The top ``n_edges`` edges by |score| of ``circuit`` (a ``dcd.Circuit`` or auto-circuit
    ``PruneScores`` of ``pm``), drawn with auto-circuit's Sankey.

    The edges are ``Circuit.top(n_edges)``: those the evaluation uses at that size (edges
    tied with the last one kept). Scores are scaled so the largest |score| is 1 (link width
    is proportional to |score|, hover shows the scaled value). The model's patch masks are
    left exactly as they were; nothing is shown or written. Returns ``None`` with a warning
    when the circuit cannot be drawn (too many edges, all-zero scores, or a drawing error).
    """
    import torch as t

    from auto_circuit_dcd.circuits.circuit import Circuit

    if not isinstance(circuit, Circuit):
        if missing := sorted(set(pm.patch_masks) - set(circuit)):
            raise ValueError(f"prune_scores lacks destination modules {missing[:3]}...: build "
                             "it with pm.new_prune_scores() or A.prune_scores(model=pm)")
        circuit = Circuit.from_prune_scores(circuit, pm)
    n_edges = int(n_edges)
    if n_edges <= 0:
        warnings.warn(f"circuit_figure: n_edges={n_edges}; nothing to draw", stacklevel=2)
        return None
    drawn = circuit.top(n_edges) if n_edges <= MAX_DRAWN_EDGES else None
    if drawn is None or drawn.size > MAX_DRAWN_EDGES:  # asked for too many, or ties added them
        size = n_edges if drawn is None else drawn.size
        warnings.warn(f"circuit_figure: {size} edges is too many to draw legibly "
                      f"(limit {MAX_DRAWN_EDGES}); pass a smaller n_edges", stacklevel=2)
        return None
    scores = drawn.to_prune_scores()
    peak = max(float(v.abs().max()) for v in scores.values())
    if not math.isfinite(peak) or peak == 0.0:
        warnings.warn("circuit_figure: the top edges all score zero or non-finite; nothing to draw",
                      stacklevel=2)
        return None
    scores = {k: v / peak for k, v in scores.items()}
    smallest = min(float(v[v != 0].abs().min()) for v in scores.values() if bool((v != 0).any()))
    try:
        from auto_circuit.visualize import draw_seq_graph

        with preserved_masks(pm), t.no_grad():
            fig = draw_seq_graph(pm, prune_scores=scores, score_threshold=smallest / 2,
                                 display_ipython=False, file_path=None)
    except Exception as err:  # drawing is a nice-to-have in a report: never fail the run on it
        warnings.warn(f"circuit_figure: auto-circuit could not draw the circuit ({err!r})",
                      stacklevel=2)
        return None
    _label_logits(fig, pm)
    _drop_missing_activations(fig)
    fig.update_layout(template=TEMPLATE, font=FONT, plot_bgcolor="white", width=None,
                      margin=dict(l=30, r=30, t=50, b=30))
    return fig


def _label_logits(fig: go.Figure, pm: Any) -> None:
    """Name the logits node, which auto-circuit's horizontal drawing leaves unlabelled.

    Its Sankey nodes are auto-circuit's ``node_name`` of each model node, in the order of
    ``pm.nodes``, one per distinct name; ``Resid End`` is the one named ``""``.
    """
    from auto_circuit.visualize import node_name

    names = list(dict.fromkeys(node_name(n.name) for n in pm.nodes))
    if "" not in names:
        return
    i = names.index("")
    for trace in fig.data:
        if isinstance(trace, go.Sankey) and trace.node.label is not None \
                and i < len(trace.node.label):
            labels = list(trace.node.label)
            labels[i] = LOGITS_LABEL
            trace.node.label = labels


def _drop_missing_activations(fig: go.Figure) -> None:
    """Link hovers without the ``None`` auto-circuit writes where a drawing from scores has
    no activation to show (``"A0.1->A1.0.Q<br>None<br>0.52"`` -> ``"A0.1->A1.0.Q<br>0.52"``)."""
    for trace in fig.data:
        if isinstance(trace, go.Sankey) and trace.link.label is not None:
            trace.link.label = [str(lbl).replace("<br>None<br>", "<br>") for lbl in
                                trace.link.label]
