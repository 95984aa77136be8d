"""Edge sets drawn as Sankey diagrams from MIB edge names alone (no model needed).

A drawn edge (:class:`DrawnEdge`) is a MIB edge name (``parent->child``, ``<q>``, ``<k>``,
``<v>`` after a head), a width, a colour and the text its hover shows.
:func:`edge_diagram` draws a list of them:

1. nodes are MIB's (``input``, ``a{layer}.h{head}``, ``m{layer}``, ``logits``), placed left
   to right as the computation runs: the input, each layer's heads, that layer's MLP, ...,
   the logits; the nodes of one column are stacked in head order;
2. a node's colour says its kind (:data:`NODE_KINDS`; :func:`node_legend` gives the legend
   the page shows beside the diagram) and its hover its name and kind;
3. a link per edge, its width proportional to the edge's value; its hover is the edge's own
   text (names escaped: plotly reads ``<q>`` as markup otherwise).

Two builders make the edges: :func:`circuit_edges` (one circuit's edges, width
``|score|`` scaled so the largest is 1, blue positive and red negative, as auto-circuit
draws them) and :func:`distinguishing_edges` (the edges that set each cluster apart, in the
cluster's colour, over the union of the clusters' evaluated circuits in grey).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from auto_circuit_dcd.report.figures import FONT, MAX_DRAWN_EDGES, PALETTE, TEMPLATE

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.explain.records import ClusterDescriptions

__all__ = ["DrawnEdge", "NODE_KINDS", "KIND_NAMES", "POSITIVE", "NEGATIVE", "SHARED",
           "edge_diagram", "node_legend", "circuit_edges", "distinguishing_edges", "node_kind",
           "cluster_colour"]

#: node kind -> (colour, what the legend says)
NODE_KINDS: dict[str, tuple[str, str]] = {
    "input": ("#7f7f7f", "input (token and position embeddings)"),
    "head": ("#2ca02c", "attention head a{layer}.h{head}"),
    "mlp": ("#9467bd", "MLP m{layer}"),
    "logits": ("#222222", "logits (the model's output)"),
    "other": ("#bcbd22", "other node"),
}
#: diagrams of more node columns than this are drawn ``PX_PER_COLUMN`` wide per column
WIDE_COLUMNS = 24
PX_PER_COLUMN = 48
#: node kind -> what a node's hover calls it
KIND_NAMES: dict[str, str] = {"input": "input (embeddings)", "head": "attention head",
                              "mlp": "MLP", "logits": "logits", "other": "node"}
#: link colours of a circuit's edges by the sign of their score, and of the grey base
POSITIVE = "rgba(31,119,180,0.45)"
NEGATIVE = "rgba(214,39,40,0.45)"
SHARED = "rgba(127,127,127,0.30)"

_EDGE = re.compile(r"^(?P<src>[^<>]+?)->(?P<dst>[^<>]+?)(?:<(?P<qkv>[qkv])>)?$")
_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_MLP = re.compile(r"^m(\d+)$")


@dataclass(frozen=True)
class DrawnEdge:
    """One link of a diagram: a MIB edge ``name``, its width ``value`` (> 0), ``colour`` and
    the plain ``hover`` text (escaped when drawn)."""

    name: str
    value: float
    colour: str
    hover: str


def node_kind(node: str) -> str:
    """``input``, ``head``, ``mlp``, ``logits`` or ``other`` (a name MIB does not use)."""
    if node == "input":
        return "input"
    if node == "logits":
        return "logits"
    if _HEAD.match(node):
        return "head"
    if _MLP.match(node):
        return "mlp"
    return "other"


def _ends(name: str) -> tuple[str, str]:
    m = _EDGE.match(name)
    if m is None:
        src, _, dst = name.partition("->")
        return src, dst
    return m["src"], m["dst"]


def _place(node: str, last: int) -> tuple[float, float]:
    """(column, order in the column): input, then per layer its heads and its MLP, then
    the logits; a name MIB does not use sits in the middle."""
    head, mlp = _HEAD.match(node), _MLP.match(node)
    if node == "input":
        return 0.0, 0.0
    if head:
        return 2.0 * int(head[1]) + 1, float(head[2])
    if mlp:
        return 2.0 * int(mlp[1]) + 2, 0.0
    if node == "logits":
        return 2.0 * last + 3, 0.0
    return last + 1.5, 0.0


def _positions(nodes: Sequence[str]) -> tuple[list[float], list[float]]:
    layers = [int(m[1]) for n in nodes for m in [_HEAD.match(n) or _MLP.match(n)] if m]
    last = max(layers, default=0)
    places = {n: _place(n, last) for n in nodes}
    columns = sorted({c for c, _ in places.values()})
    x_of = {c: 0.01 + 0.98 * i / max(len(columns) - 1, 1) for i, c in enumerate(columns)}
    rank = {c: i for i, c in enumerate(columns)}
    xs, ys = [], []
    for n in nodes:
        column = places[n][0]
        stack = sorted((o, m) for m, (c, o) in places.items() if c == column)
        j = stack.index((places[n][1], n))
        xs.append(x_of[column])
        # neighbouring columns' nodes are staggered up and down, so their labels do not meet
        shift = 0.3 * (rank[column] % 3 - 1) / (len(stack) + 1)
        ys.append(min(0.97, max(0.03, (j + 1) / (len(stack) + 1) + shift)))
    return xs, ys


def _hover(text: str) -> str:
    return html.escape(text, quote=False).replace("\n", "<br>")


def edge_diagram(edges: Sequence[DrawnEdge], title: str = "",
                 height: int | None = None) -> go.Figure | None:
    """A Sankey diagram of ``edges`` (see the module docstring); ``None`` when there is
    nothing to draw or more than :data:`~auto_circuit_dcd.report.figures.MAX_DRAWN_EDGES`."""
    edges = [e for e in edges if e.value > 0 and np.isfinite(e.value)]
    if not edges or len(edges) > MAX_DRAWN_EDGES:
        return None
    ends = [_ends(e.name) for e in edges]
    nodes = list(dict.fromkeys(n for pair in ends for n in pair))
    index = {n: i for i, n in enumerate(nodes)}
    xs, ys = _positions(nodes)
    kinds = [node_kind(n) for n in nodes]
    fig = go.Figure(go.Sankey(
        arrangement="snap", valueformat=".3g",
        node=dict(label=nodes, x=xs, y=ys, pad=12, thickness=14,
                  color=[NODE_KINDS[k][0] for k in kinds],
                  customdata=[f"{n}: {KIND_NAMES[k]}" for n, k in zip(nodes, kinds)],
                  hovertemplate="%{customdata}<extra></extra>"),
        link=dict(source=[index[s] for s, _ in ends], target=[index[d] for _, d in ends],
                  value=[float(e.value) for e in edges], color=[e.colour for e in edges],
                  customdata=[_hover(e.hover) for e in edges],
                  hovertemplate="%{customdata}<extra></extra>")))
    tallest = max(xs.count(x) for x in set(xs))
    columns = len(set(xs))
    fig.update_layout(template=TEMPLATE, font=FONT, plot_bgcolor="white",
                      height=height or max(360, min(900, 120 + 45 * tallest)),
                      margin=dict(l=30, r=30, t=50 if title else 20, b=20))
    if columns > WIDE_COLUMNS:  # wider than the page: it scrolls rather than crowds
        fig.update_layout(width=PX_PER_COLUMN * columns + 60)
    if title:
        fig.update_layout(title=dict(text=title, x=0.0, xanchor="left"))
    return fig


def cluster_colour(cluster: int, alpha: float = 0.6) -> str:
    """Cluster ``cluster``'s colour (the page's palette) as ``rgba`` with ``alpha``."""
    hex_ = PALETTE[cluster % len(PALETTE)].lstrip("#")
    r, g, b = (int(hex_[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def node_legend(colours: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """(colour, text) pairs of the node kinds, then ``colours`` (the links')."""
    kinds = [v for k, v in NODE_KINDS.items() if k != "other"]
    return list(kinds) + list(colours)


def _mib(names: Sequence[str]) -> list[str]:
    from auto_circuit_dcd.circuits.mib import eap_ig_edge_name

    out = []
    for n in names:
        try:
            out.append(eap_ig_edge_name(n))
        except ValueError:
            out.append(n)
    return out


def circuit_edges(edge_names: Sequence[str], scores: np.ndarray,
                  mask: np.ndarray) -> list[DrawnEdge]:
    """The edges of ``mask`` (auto-circuit names, the package's order), width ``|score|``
    over the largest ``|score|`` among them, blue positive, red negative."""
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))
    scores = np.asarray(scores, dtype=np.float64)
    peak = float(np.abs(scores[idx]).max()) if idx.size else 0.0
    if not peak > 0:
        return []
    names = _mib([edge_names[i] for i in idx])
    return [DrawnEdge(name, abs(float(scores[i])) / peak,
                      POSITIVE if scores[i] > 0 else NEGATIVE,
                      f"{name}\nscore {scores[i]:.3g} ({abs(scores[i]) / peak:.0%} of the "
                      "largest drawn)")
            for name, i in zip(names, idx)]


def distinguishing_edges(desc: ClusterDescriptions, edge_names: Sequence[str],
                         means: Mapping[int, np.ndarray], circuits: Mapping[int, np.ndarray],
                         per_cluster: int = 8, base: int = 30) -> list[DrawnEdge]:
    """The edges that set each cluster apart, over the clusters' circuits.

    ``edge_names``: auto-circuit names in the package's order; ``means[c]``: each edge's mean
    value over cluster ``c``'s rows (the descriptions' scores, ``|score|`` by default);
    ``circuits[c]``: bool mask of cluster ``c``'s evaluated circuit. Drawn: each cluster's
    ``per_cluster`` edges most clearly higher in it than in the rest (its contrast's
    ``higher`` list, largest effect size first) in the cluster's colour, and in grey the
    ``base`` edges of the union of the circuits with the largest mean value that are not
    among them. Width: the edge's largest mean over the clusters.
    """
    names = _mib(edge_names)
    position = {n: i for i, n in enumerate(names)}
    clusters = [c for c in desc.clusters if c in means]
    peak = np.max(np.stack([np.asarray(means[c], dtype=np.float64) for c in clusters]), axis=0)

    def about(i: int) -> str:
        held = [str(c) for c in clusters if c in circuits and bool(circuits[c][i])]
        lines = [f"mean in cluster {c}: {float(means[c][i]):.3g}" for c in clusters]
        lines.append("in the circuits of clusters " + ", ".join(held) if held else
                     "in no cluster's circuit at this size")
        return "\n".join(lines)

    drawn: dict[int, DrawnEdge] = {}
    if len(clusters) > 1:
        for c in clusters:
            colour = cluster_colour(c)
            for u in desc.contrast(c).edges.higher[:per_cluster]:
                i = position.get(u.name)
                if i is None or i in drawn or not peak[i] > 0:
                    continue
                drawn[i] = DrawnEdge(u.name, float(peak[i]), colour, (
                    f"{u.name}\nhigher in cluster {c} than elsewhere: d = {u.effect_size:.2f}, "
                    f"q = {u.q_value:.2g}\n" + about(i)))
    union = np.zeros(len(names), dtype=bool)
    for mask in circuits.values():
        union |= np.asarray(mask, dtype=bool)
    rest = [int(i) for i in np.flatnonzero(union) if int(i) not in drawn and peak[i] > 0]
    for i in sorted(rest, key=lambda j: (-peak[j], j))[:base]:
        drawn[i] = DrawnEdge(names[i], float(peak[i]), SHARED, f"{names[i]}\n" + about(i))
    return [drawn[i] for i in sorted(drawn)]
