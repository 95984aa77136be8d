"""Circuits in EAP-IG's graph JSON, the format the MIB benchmark's circuit tools read.

EAP-IG names nodes ``input``, ``a{layer}.h{head}``, ``m{layer}`` and ``logits``, and edges
``parent->child``, with ``<q>``, ``<k>`` or ``<v>`` after a child that is an attention
head. auto-circuit's factorized graph has the same nodes and edges under other names
(``Resid Start``, ``A{layer}.{head}``, ``MLP {layer}``, ``Resid End``; destinations
``A{layer}.{head}.Q``...), so a circuit converts name by name:

1. every edge name of the package's edge order is renamed (:func:`eap_ig_edge_name`);
2. EAP-IG's graph always has an MLP per layer (:func:`eap_ig_edge_names` lists its edges
   for a config), so a model without MLPs lacks some of its edges. EAP-IG reads an edge
   missing from the file as score 0, which its signed top-n ranks above every negative
   real edge; so missing edges are written, out of the graph, with a score that ranks
   them below every real edge under the ranking the file is read with
   (:func:`missing_edge_score`: ``abs``: 0, the least ``|score|``, and real edges of score
   exactly 0, common where a source's activation is the same on both prompts, are
   written as :data:`ZERO_LIFT` so that they rank above it; ``signed``: below the lowest
   real score). No one score does both when a real score is negative, so such a circuit
   needs one file per ranking;
3. the JSON holds ``cfg`` (``n_layers``, ``n_heads``, ``parallel_attn_mlp``, ``d_model``:
   what EAP-IG's ``Graph.from_model`` needs), ``edges`` (``{name: {score, in_graph}}``),
   ``nodes`` (``{name: {in_graph}}``, a node being in the graph when, as after EAP-IG's
   ``prune()``, it has an edge out in the graph and is the input or has one in) and
   ``meta`` (what the file holds, in words and numbers; EAP-IG ignores it);
4. reading a graph back (:func:`from_eap_ig_graph`) renames its edges the other way and
   puts scores and membership in the package's edge order; EAP-IG edges that the
   package's graph lacks (the MLPs of an attention-only model) must be out of the graph.

:func:`circuit_files` makes the files of one circuit of a run: its importances (every
edge in the graph, one file per ranking where the ranking matters) and, per size, the
edges the run evaluated there, each with the entry ``mib/index.json`` lists for it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from auto_circuit_dcd.circuits.selection import Ranking

__all__ = ["eap_ig_node_name", "eap_ig_edge_name", "package_edge_name", "graph_config",
           "eap_ig_edge_names", "missing_edge_score", "to_eap_ig_graph", "from_eap_ig_graph",
           "describe_selection", "describe_missing", "circuit_files", "MibFile", "Ranking",
           "ZERO_LIFT"]

#: the score a real edge of score exactly 0 is written with in a file ranked by ``|score|``
#: where missing edges score 0: the least normal float32 (EAP-IG's scores are float32)
ZERO_LIFT = float(np.finfo(np.float32).tiny)
#: the file of a circuit's importances (every edge, all in the graph)
IMPORTANCES_FILE = "importances.json"

_SRC = [(re.compile(r"^Resid Start$"), lambda m: "input"),
        (re.compile(r"^A(\d+)\.(\d+)$"), lambda m: f"a{m[1]}.h{m[2]}"),
        (re.compile(r"^MLP (\d+)$"), lambda m: f"m{m[1]}")]
_DEST = [(re.compile(r"^A(\d+)\.(\d+)\.([QKV])$"), lambda m: f"a{m[1]}.h{m[2]}<{m[3].lower()}>"),
         (re.compile(r"^MLP (\d+)$"), lambda m: f"m{m[1]}"),
         (re.compile(r"^Resid End$"), lambda m: "logits")]
_EAP_NODE = [(re.compile(r"^input$"), lambda m: "Resid Start"),
             (re.compile(r"^a(\d+)\.h(\d+)$"), lambda m: f"A{m[1]}.{m[2]}"),
             (re.compile(r"^m(\d+)$"), lambda m: f"MLP {m[1]}"),
             (re.compile(r"^logits$"), lambda m: "Resid End")]
_EAP_EDGE = re.compile(r"^(?P<parent>[^<>]+)->(?P<child>[^<>]+?)(?:<(?P<qkv>[qkv])>)?$")


def _rename(name: str, table: Sequence[tuple[re.Pattern, Any]], what: str) -> str:
    for pattern, build in table:
        m = pattern.match(name)
        if m:
            return build(m)
    raise ValueError(f"{what} {name!r} has no EAP-IG counterpart (a factorized "
                     "TransformerLens graph built with separate_qkv=True is needed)")


def eap_ig_node_name(src_name: str) -> str:
    """EAP-IG's name of an auto-circuit source node (``"A1.0"`` -> ``"a1.h0"``)."""
    return _rename(src_name, _SRC, "source node")


def eap_ig_edge_name(edge_name: str) -> str:
    """EAP-IG's name of an auto-circuit edge (``"A0.1->A1.0.Q"`` -> ``"a0.h1->a1.h0<q>"``)."""
    src, sep, dest = edge_name.partition("->")
    if not sep:
        raise ValueError(f"edge name {edge_name!r} is not 'source->destination'")
    return f"{eap_ig_node_name(src)}->{_rename(dest, _DEST, 'destination node')}"


def package_edge_name(eap_name: str) -> str:
    """The auto-circuit edge name of an EAP-IG edge name (inverse of :func:`eap_ig_edge_name`)."""
    m = _EAP_EDGE.match(eap_name)
    if m is None:
        raise ValueError(f"{eap_name!r} is not an EAP-IG edge name ('parent->child<q>')")
    parent = _rename(m["parent"], _EAP_NODE, "EAP-IG node")
    child = _rename(m["child"], _EAP_NODE, "EAP-IG node")
    if m["qkv"]:
        return f"{parent}->{child}.{m['qkv'].upper()}"
    return f"{parent}->{child}"


def graph_config(cfg: Any) -> dict[str, Any]:
    """The ``cfg`` block EAP-IG's ``Graph.from_model`` needs, from a TransformerLens config."""
    return {"n_layers": int(cfg.n_layers), "n_heads": int(cfg.n_heads),
            "parallel_attn_mlp": bool(getattr(cfg, "parallel_attn_mlp", False)),
            "d_model": int(cfg.d_model)}


def eap_ig_edge_names(cfg: Mapping[str, Any]) -> list[str]:
    """The edges of EAP-IG's graph of a model with config ``cfg`` (:func:`graph_config`).

    EAP-IG's graph has, per layer, the heads ``a{l}.h{h}`` (each read at ``<q>``, ``<k>``,
    ``<v>``) and one MLP ``m{l}``; every node feeds the nodes after it that read the
    residual stream: a layer's heads read all earlier nodes; its MLP reads them and,
    unless attention and MLP run in parallel, the layer's own heads; the logits read every
    node.
    """
    n_layers, n_heads = int(cfg["n_layers"]), int(cfg["n_heads"])
    parallel = bool(cfg.get("parallel_attn_mlp", False))
    upstream, names = ["input"], []
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        names += [f"{u}->{h}<{x}>" for u in upstream for h in heads for x in "qkv"]
        mlp_reads = upstream if parallel else upstream + heads
        names += [f"{u}->m{layer}" for u in mlp_reads]
        upstream = upstream + heads + [f"m{layer}"]
    return names + [f"{u}->logits" for u in upstream]


def missing_edge_score(scores: Any, ranking: Ranking) -> float:
    """The score that ranks an edge below every one of ``scores`` under ``ranking``:
    ``abs``: 0 (no ``|score|`` is less; :func:`to_eap_ig_graph` writes real edges of score
    exactly 0 as :data:`ZERO_LIFT` beside it);
    ``signed``: below the lowest score by at least 1 and at least its size, so it stays
    below in float32 too (EAP-IG's scores are float32)."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if ranking == "abs":
        return 0.0
    if ranking != "signed":
        raise ValueError(f"ranking must be 'abs' or 'signed', got {ranking!r}")
    low = float(values.min()) if values.size else 0.0
    return low - max(1.0, abs(low))


def _nodes_in_graph(edge_names: Sequence[str], in_graph: np.ndarray) -> dict[str, bool]:
    """EAP-IG's node rule after ``prune()``: an edge out, and the input or an edge in;
    the logits are always in."""
    out_of, into = set(), {"input", "logits"}
    nodes: set = set()
    for name, kept in zip(edge_names, in_graph):
        parent, child = name.split("->")
        child = child.split("<")[0]
        nodes.update((parent, child))
        if kept:
            out_of.add(parent)
            into.add(child)
    return {n: n == "logits" or (n in out_of and n in into) for n in sorted(nodes)}


def to_eap_ig_graph(edge_names: Sequence[str], scores: Any, in_graph: Any,
                    cfg: Mapping[str, Any], ranking: Ranking | None = None,
                    meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """EAP-IG graph JSON (a dict) of one circuit.

    Args:
        edge_names: auto-circuit edge names in the package's edge order.
        scores: ``[n_edges]`` edge scores in that order.
        in_graph: ``[n_edges]`` bools, the edges of the circuit.
        cfg: :func:`graph_config` of the model.
        ranking: the ranking the file will be read with; needed when the model lacks
            edges of EAP-IG's graph (no MLPs): they are written out of the graph with
            :func:`missing_edge_score` under it (and, under ``abs``, real edges of score
            exactly 0 with :data:`ZERO_LIFT`).
        meta: written as the file's ``meta`` entry (what it holds).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    in_graph = np.asarray(in_graph, dtype=bool).reshape(-1)
    if not len(edge_names) == scores.size == in_graph.size:
        raise ValueError(f"{len(edge_names)} edge names, {scores.size} scores and "
                         f"{in_graph.size} membership flags: give one of each per edge")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf: map them to finite values first")
    names = [eap_ig_edge_name(n) for n in edge_names]
    everything = eap_ig_edge_names(cfg)
    foreign = sorted(set(names) - set(everything))
    if foreign:
        raise ValueError(f"{len(foreign)} edge(s) are not in EAP-IG's graph of config "
                         f"{dict(cfg)} (e.g. {foreign[0]}): another architecture?")
    edges = {n: {"score": float(v), "in_graph": bool(k)}
             for n, v, k in zip(names, scores, in_graph)}
    missing = [n for n in everything if n not in edges]
    if missing:
        if ranking is None:
            raise ValueError(f"this model lacks {len(missing)} of EAP-IG's edges (e.g. "
                             f"{missing[0]}): give the ranking the file is read with "
                             "('abs' or 'signed'), so they rank below every real edge")
        low = missing_edge_score(scores, ranking)
        if ranking == "abs":
            for n, v in zip(names, scores):
                if v == 0.0:
                    edges[n]["score"] = ZERO_LIFT
        edges.update({n: {"score": low, "in_graph": False} for n in missing})
    listed = list(edges)
    kept = np.array([edges[n]["in_graph"] for n in listed], dtype=bool)
    graph = {"cfg": dict(cfg),
             "nodes": {n: {"in_graph": v} for n, v in _nodes_in_graph(listed, kept).items()},
             "edges": edges}
    if meta is not None:
        graph["meta"] = dict(meta)
    return graph


def from_eap_ig_graph(data: Mapping[str, Any],
                      edge_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, in_graph)`` in the order of ``edge_names`` from an EAP-IG graph JSON.

    Edges of ``edge_names`` missing from the file score 0 and are out of the graph (EAP-IG's
    own default); an edge of the file that ``edge_names`` lacks must be out of the graph.
    """
    if "edges" not in data:
        raise ValueError("not an EAP-IG graph: no 'edges' entry")
    pos = {name: i for i, name in enumerate(edge_names)}
    scores = np.zeros(len(edge_names))
    in_graph = np.zeros(len(edge_names), dtype=bool)
    for eap_name, info in data["edges"].items():
        j = pos.get(package_edge_name(eap_name))
        if j is None:
            if info.get("in_graph"):
                raise ValueError(f"edge {eap_name} is in the graph but not in this model's "
                                 "graph (another architecture?)")
            continue
        scores[j] = float(info.get("score", 0.0))
        in_graph[j] = bool(info.get("in_graph", False))
    return scores, in_graph


#: each selection rule in words, with ``{count}`` and ``{key}`` to fill in
_RULE_WORDS = {
    "topn": "the top {count} edges by {key}, edges tied with the last one kept",
    "topn-prune": "the top {count} edges by {key} (edges tied with the last one kept), then "
                  "only those on an input-to-logits path (EAP-IG's apply_topn(n, prune=True))",
    "topn-fill": "the edges on an input-to-logits path among the top m by {key} (EAP-IG's "
                 "apply_topn(m, prune=True)), for the smallest m that keeps at least {count}: "
                 "at least {count} edges, a few more where the edge that completes a path "
                 "brings others onto it",
    "greedy": "{count} edges grown from the logits through the best parent edges by {key} "
              "(EAP-IG's apply_greedy), then only those on an input-to-logits path",
}
_KEYS = {"abs": "|score|", "signed": "signed score (most positive first)"}


def describe_selection(rule: str, ranking: str, count: str = "floor(p * n_edges)") -> str:
    """In words, the edges selection ``rule`` keeps at ``count`` edges under ``ranking``."""
    if rule not in _RULE_WORDS:
        raise ValueError(f"unknown selection rule {rule!r}; known: {sorted(_RULE_WORDS)}")
    return _RULE_WORDS[rule].format(count=count, key=_KEYS[ranking])


def describe_missing(cfg: Mapping[str, Any], n_edges: int) -> str:
    """In words, how the files write the edges of EAP-IG's graph a model of ``n_edges``
    edges lacks (none for a model with MLPs)."""
    lacks = len(eap_ig_edge_names(cfg)) - int(n_edges)
    if not lacks:
        return "none: the model's graph has every edge of EAP-IG's"
    return (f"{lacks} edges of EAP-IG's graph (its MLPs) are not in this model: written out "
            "of the graph, scored below every real edge under the ranking each file is read "
            f"with (abs: 0, real edges of score 0 written as {ZERO_LIFT:.3g}; signed: below "
            "the lowest real score); hence one importances file per ranking")


class MibFile(TypedDict):
    """One written file: its circuit, its size (None: importances of every edge), the
    ranking it is read with (``"abs and signed"`` where either serves), the selection rule
    and the edges it asked for (None for importances), and the edges in its graph."""

    circuit: str
    file: str
    edge_fraction: float | None
    ranking: str
    selection: str | None
    requested_edges: int | None
    n_edges: int


def circuit_files(name: str, circuit: Any, edge_sets: Any, fractions: Sequence[float],
                  cfg: Mapping[str, Any], rule: str,
                  ranking: Ranking) -> list[tuple[str, dict[str, Any], MibFile]]:
    """``(file, graph JSON, index entry)`` of each file of one circuit of a run.

    Args:
        name: the circuit's name (its folder).
        circuit: a :class:`~auto_circuit_dcd.circuits.circuit.Circuit` of all edges.
        edge_sets: bool ``[n_fractions, n_edges]``, the edges the run evaluated at each
            of ``fractions`` (selection ``rule`` under ``ranking``).
        cfg: the model's :func:`graph_config`.

    Importances hold every edge, all in the graph: ``importances.json``, or, for a model
    lacking edges of EAP-IG's graph, ``importances-abs.json`` and
    ``importances-signed.json`` (one per ranking: see the module docstring). The file of
    size ``p`` holds the run's edge set there as ``in_graph`` flags, its missing edges
    ranked below the real ones under ``ranking``.
    """
    names, scores = list(circuit.edge_names), circuit.scores.numpy()
    lacks = len(eap_ig_edge_names(cfg)) - len(names)
    everything = np.ones(len(names), dtype=bool)
    files: list[tuple[str, dict[str, Any], MibFile]] = []
    meta: dict[str, Any]
    importances: list[tuple[str, Ranking | None, str]] = (
        [(IMPORTANCES_FILE, None, "abs and signed")] if not lacks else
        [(f"importances-{r}.json", r, r) for r in ("abs", "signed")])
    for file_name, file_ranking, read_with in importances:
        meta = {"circuit": name, "holds": "every edge with its score, all in the graph; "
                "cut it at a size with EAP-IG's apply_topn", "read_with_ranking": read_with,
                "edges_lacking": lacks}
        files.append((f"{name}/{file_name}",
                      to_eap_ig_graph(names, scores, everything, cfg, file_ranking, meta),
                      MibFile(circuit=name, file=f"{name}/{file_name}", edge_fraction=None,
                              ranking=read_with, selection=None, requested_edges=None,
                              n_edges=len(names))))
    sets = np.asarray(edge_sets, dtype=bool)
    for j, p in enumerate(fractions):
        chosen = sets[j]
        count = int(math.floor(round(p * len(names), 9)))
        file = f"{name}/{size_file_name(p)}"
        meta = {"circuit": name, "edge_fraction": p, "selection": rule, "ranking": ranking,
                "requested_edges": count, "n_edges": int(chosen.sum()),
                "holds": "the edges the run evaluated at this size: "
                         + describe_selection(rule, ranking, str(count)),
                "edges_lacking": lacks}
        entry = MibFile(circuit=name, file=file, edge_fraction=p, selection=rule,
                        ranking=ranking, requested_edges=count, n_edges=int(chosen.sum()))
        files.append((file, to_eap_ig_graph(names, scores, chosen, cfg, ranking, meta), entry))
    return files


def size_file_name(fraction: float) -> str:
    """The file of a circuit at edge fraction ``fraction`` (``0.05`` -> ``edges-5pct.json``)."""
    return f"edges-{round(100 * fraction, 9):g}pct.json"
