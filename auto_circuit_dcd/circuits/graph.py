"""Which node each edge leaves and enters: the structure that connectivity rules need.

auto-circuit's factorized graph has source nodes (``Resid Start``, every head ``A{l}.{h}``,
every ``MLP {l}``) and destination nodes (a head's ``A{l}.{h}.Q/K/V`` inputs, ``MLP {l}``,
``Resid End``). A destination belongs to a node of the computation: a head's Q, K and V
inputs (modules ``hook_{q,k,v}_input``) are the head ``A{l}.{h}``, an MLP's input is the
MLP, and a destination that is no source (``Resid End``) is an output (the logits). A
source that is no destination (``Resid Start``) is an input. Built once from the edges
(names ``{src.name}->{dest.name}``, as auto-circuit's ``Edge.name`` is defined, and each
destination's module), stored as two node-index arrays in the package's edge order.

``on_paths(mask)``: the edges of ``mask`` on some input-to-output path of ``mask``:

1. forward: the input nodes are reached; repeat "the destination of a kept edge leaving a
   reached node is reached" until nothing changes;
2. backward: the output nodes reach the logits; repeat "the source of a kept edge entering
   a node that reaches the logits reaches them" until nothing changes;
3. keep an edge iff its source is reached and its destination reaches the logits.

This is the fixed point of EAP-IG's ``Graph.prune`` (drop nodes without an incoming edge
(inputs exempt) or an outgoing edge (outputs exempt), drop edges of dropped nodes, repeat
until nothing changes), computed without its early stop: in a finite acyclic graph the
nodes left by that fixed point are exactly those on an input-to-output path.

``grow(key, count)``: EAP-IG's ``apply_greedy``: start with the outputs in the circuit;
the candidates are the edges entering circuit nodes; take the best candidate (largest
``key``, ties by lower edge index), add it, and when its source node is new, add that
node and make the edges entering it candidates; stop after ``count`` edges (or when no
candidate is left).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.utils.patchable_model import PatchableModel

    from auto_circuit_dcd.model.edges import EdgeLayout

__all__ = ["EdgeGraph", "edge_graph", "HEAD_INPUT_MODULES"]

#: destination modules of a head's separate query / key / value inputs
HEAD_INPUT_MODULES = ("hook_q_input", "hook_k_input", "hook_v_input")


@dataclass(frozen=True, eq=False)
class EdgeGraph:
    """Nodes of the computation and, per edge, the node it leaves and the node it enters.

    Attributes:
        node_names: one name per node (a head's Q/K/V destinations share the head's node).
        edge_src: ``[n_edges]`` int, index into ``node_names`` of each edge's source.
        edge_dest: ``[n_edges]`` int, index of the node each edge enters.
        inputs: nodes no edge enters (``Resid Start``).
        outputs: nodes no edge leaves (``Resid End``, the logits).
    """

    node_names: tuple[str, ...]
    edge_src: np.ndarray
    edge_dest: np.ndarray
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def __post_init__(self) -> None:
        src = np.asarray(self.edge_src, dtype=np.int64)
        dest = np.asarray(self.edge_dest, dtype=np.int64)
        object.__setattr__(self, "edge_src", src)
        object.__setattr__(self, "edge_dest", dest)
        object.__setattr__(self, "node_names", tuple(self.node_names))
        object.__setattr__(self, "inputs", tuple(int(i) for i in self.inputs))
        object.__setattr__(self, "outputs", tuple(int(i) for i in self.outputs))
        n = len(self.node_names)
        if src.ndim != 1 or src.shape != dest.shape:
            raise ValueError(f"edge_src {src.shape} and edge_dest {dest.shape} must be equal 1-D")
        if src.size and (min(src.min(), dest.min()) < 0 or max(src.max(), dest.max()) >= n):
            raise ValueError(f"edge endpoints must index the {n} nodes")
        if not self.inputs or not self.outputs:
            raise ValueError("a graph needs at least one input and one output node")

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.shape[0])

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    # --------------------------------------------------------------- building
    @classmethod
    def from_names(cls, edge_names: Sequence[str], dest_modules: Sequence[str]) -> EdgeGraph:
        """The graph of edges named ``{src}->{dest}`` entering the given modules."""
        if len(edge_names) != len(dest_modules):
            raise ValueError(f"{len(edge_names)} edge names for {len(dest_modules)} modules")
        pairs = []
        for name in edge_names:
            parts = name.split("->")
            if len(parts) != 2:
                raise ValueError(f"edge name {name!r} is not of the form 'src->dest'")
            pairs.append(parts)
        sources = list(dict.fromkeys(s for s, _ in pairs))
        known = set(sources)
        dest_nodes = [_dest_node(d, m, known) for (_, d), m in zip(pairs, dest_modules)]
        outputs = [d for d in dict.fromkeys(dest_nodes) if d not in known]
        names = sources + outputs
        index = {n: i for i, n in enumerate(names)}
        entered = set(dest_nodes)
        return cls(node_names=tuple(names),
                   edge_src=np.array([index[s] for s, _ in pairs], dtype=np.int64),
                   edge_dest=np.array([index[d] for d in dest_nodes], dtype=np.int64),
                   inputs=tuple(index[s] for s in sources if s not in entered),
                   outputs=tuple(index[d] for d in outputs))

    @classmethod
    def from_layout(cls, edge_names: Sequence[str], layout: EdgeLayout) -> EdgeGraph:
        """The graph of edges in the package's order, their modules read from ``layout``."""
        modules: list[str] = []
        for module, _, start, stop in layout.blocks:
            modules.extend([module] * (stop - start))
        return cls.from_names(edge_names, modules)

    def to_json(self) -> dict[str, Any]:
        return {"node_names": list(self.node_names), "edge_src": self.edge_src.tolist(),
                "edge_dest": self.edge_dest.tolist(), "inputs": list(self.inputs),
                "outputs": list(self.outputs)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EdgeGraph:
        return cls(node_names=tuple(data["node_names"]), edge_src=np.asarray(data["edge_src"]),
                   edge_dest=np.asarray(data["edge_dest"]), inputs=tuple(data["inputs"]),
                   outputs=tuple(data["outputs"]))

    def same_as(self, other: EdgeGraph) -> bool:
        """Same nodes, inputs, outputs and edge endpoints."""
        return (self.node_names == other.node_names and self.inputs == other.inputs
                and self.outputs == other.outputs
                and np.array_equal(self.edge_src, other.edge_src)
                and np.array_equal(self.edge_dest, other.edge_dest))

    # ------------------------------------------------------------ algorithms
    def on_paths(self, mask: np.ndarray) -> np.ndarray:
        """Bool ``[n_edges]``: the edges of ``mask`` that lie on an input-to-output path of
        ``mask``'s edges (see the module docstring)."""
        mask = self._check_mask(mask)
        src, dest = self.edge_src[mask], self.edge_dest[mask]
        reached = _closure(self.n_nodes, self.inputs, src, dest)
        reaches_out = _closure(self.n_nodes, self.outputs, dest, src)
        return mask & reached[self.edge_src] & reaches_out[self.edge_dest]

    def grow(self, key: np.ndarray, count: int,
             candidates: np.ndarray | None = None) -> np.ndarray:
        """Bool ``[n_edges]``: ``count`` edges grown from the outputs by largest ``key``
        (EAP-IG's greedy rule, ties by edge index), among ``candidates`` (all by default)."""
        key = np.asarray(key, dtype=np.float64)
        if key.shape != (self.n_edges,):
            raise ValueError(f"expected {self.n_edges} edge keys, got shape {key.shape}")
        allowed = (np.ones(self.n_edges, dtype=bool) if candidates is None
                   else self._check_mask(candidates))
        chosen = np.zeros(self.n_edges, dtype=bool)
        in_circuit = np.zeros(self.n_nodes, dtype=bool)
        heap: list[tuple[float, int]] = []

        def open_node(node: int) -> None:
            in_circuit[node] = True
            for e in self._edges_into[node]:
                if allowed[e]:
                    heapq.heappush(heap, (-float(key[e]), int(e)))

        for node in self.outputs:
            open_node(node)
        left = int(count)
        while left > 0 and heap:
            _, e = heapq.heappop(heap)
            chosen[e] = True
            left -= 1
            parent = int(self.edge_src[e])
            if not in_circuit[parent]:
                open_node(parent)
        return chosen

    @cached_property
    def _edges_into(self) -> list[np.ndarray]:
        """Per node, the indices of the edges entering it (increasing)."""
        order = np.argsort(self.edge_dest, kind="stable")
        bounds = np.searchsorted(self.edge_dest[order], np.arange(self.n_nodes + 1))
        return [order[bounds[i]:bounds[i + 1]] for i in range(self.n_nodes)]

    def _check_mask(self, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != (self.n_edges,) or mask.dtype != np.bool_:
            raise ValueError(f"expected a bool mask of {self.n_edges} edges, got "
                             f"{mask.dtype} {mask.shape}")
        return mask


def _dest_node(dest: str, module: str, sources: set) -> str:
    """The node a destination belongs to: a head for its Q/K/V inputs, else itself."""
    if module.rsplit(".", 1)[-1] in HEAD_INPUT_MODULES:
        head = dest.rpartition(".")[0]
        if head not in sources:
            raise ValueError(f"destination {dest!r} of {module} belongs to no source head "
                             f"({head!r} is not a source node)")
        return head
    return dest


def _closure(n_nodes: int, start: Sequence[int], frm: np.ndarray, to: np.ndarray) -> np.ndarray:
    """Nodes reachable from ``start`` along edges ``frm[i] -> to[i]`` (to a fixed point)."""
    hit = np.zeros(n_nodes, dtype=bool)
    hit[list(start)] = True
    while True:
        new = hit.copy()
        new[to[hit[frm]]] = True
        if np.array_equal(new, hit):
            return hit
        hit = new


def edge_graph(model: PatchableModel) -> EdgeGraph:
    """The graph of ``model``'s edges in the package's order (from auto-circuit's ``Edge``s)."""
    from auto_circuit_dcd.model.edges import sorted_edges

    edges = sorted_edges(model)
    return EdgeGraph.from_names([f"{e.src.name}->{e.dest.name}" for e in edges],
                                [e.dest.module_name for e in edges])
