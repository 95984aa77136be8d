"""Circuits in EAP-IG's graph JSON, the format the MIB benchmark's circuit tools read.

EAP-IG names nodes ``input``, ``a{layer}.h{head}``, ``m{layer}`` and ``logits``, and edges
``parent->child``, with ``<q>``, ``<k>`` or ``<v>`` after a child that is an attention
head. auto-circuit's factorized graph has the same nodes and edges under other names
(``Resid Start``, ``A{layer}.{head}``, ``MLP {layer}``, ``Resid End``; destinations
``A{layer}.{head}.Q``...), so a circuit converts name by name:

1. every edge name of the package's edge order is renamed (:func:`eap_ig_edge_name`);
2. the JSON holds ``cfg`` (``n_layers``, ``n_heads``, ``parallel_attn_mlp``, ``d_model``:
   what EAP-IG's ``Graph.from_model`` needs), ``edges`` (``{name: {score, in_graph}}``) and
   ``nodes`` (``{name: {in_graph}}``, a node being in the graph when, as after EAP-IG's
   ``prune()``, it has an edge out in the graph and is the input or has one in);
3. reading a graph back (:func:`from_eap_ig_graph`) renames its edges the other way and
   puts scores and membership in the package's edge order; EAP-IG edges that the
   package's graph lacks (the MLPs of an attention-only model) must be out of the graph.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Sequence, Tuple

import numpy as np

__all__ = ["eap_ig_node_name", "eap_ig_edge_name", "package_edge_name", "graph_config",
           "to_eap_ig_graph", "from_eap_ig_graph"]

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


def _rename(name: str, table: Sequence[Tuple[re.Pattern, Any]], what: str) -> str:
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


def graph_config(cfg: Any) -> Dict[str, Any]:
    """The ``cfg`` block EAP-IG's ``Graph.from_model`` needs, from a TransformerLens config."""
    return {"n_layers": int(cfg.n_layers), "n_heads": int(cfg.n_heads),
            "parallel_attn_mlp": bool(getattr(cfg, "parallel_attn_mlp", False)),
            "d_model": int(cfg.d_model)}


def _nodes_in_graph(edge_names: Sequence[str], in_graph: np.ndarray) -> Dict[str, bool]:
    """EAP-IG's node rule after ``prune()``: an edge out, and the input or an edge in;
    the logits are always in."""
    out_of, into = set(), {"input", "logits"}
    nodes = set()
    for name, kept in zip(edge_names, in_graph):
        parent, child = name.split("->")
        child = child.split("<")[0]
        nodes.update((parent, child))
        if kept:
            out_of.add(parent)
            into.add(child)
    return {n: n == "logits" or (n in out_of and n in into) for n in sorted(nodes)}


def to_eap_ig_graph(edge_names: Sequence[str], scores: Any, in_graph: Any,
                    cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """EAP-IG graph JSON (a dict) of one circuit.

    Args:
        edge_names: auto-circuit edge names in the package's edge order.
        scores: ``[n_edges]`` edge scores in that order.
        in_graph: ``[n_edges]`` bools, the edges of the circuit.
        cfg: :func:`graph_config` of the model.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    in_graph = np.asarray(in_graph, dtype=bool).reshape(-1)
    if not len(edge_names) == scores.size == in_graph.size:
        raise ValueError(f"{len(edge_names)} edge names, {scores.size} scores and "
                         f"{in_graph.size} membership flags: give one of each per edge")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf: map them to finite values first")
    names = [eap_ig_edge_name(n) for n in edge_names]
    return {"cfg": dict(cfg),
            "nodes": {n: {"in_graph": v} for n, v in _nodes_in_graph(names, in_graph).items()},
            "edges": {n: {"score": float(s), "in_graph": bool(k)}
                      for n, s, k in zip(names, scores, in_graph)}}


def from_eap_ig_graph(data: Mapping[str, Any],
                      edge_names: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
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
