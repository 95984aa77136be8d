"""A fixed, documented order of auto-circuit's edges, and conversion to ``PruneScores``.

auto-circuit keeps its edges in a ``set`` whose iteration order changes between
processes. This module sorts them once by a key built only from the graph itself:

    (dest.layer, dest.module_name, dest.head_idx, src.src_idx)

so that the edges entering one destination module form one contiguous block of columns,
laid out exactly like that module's patch mask flattened in row-major order
(``[head, src]``). A column block therefore converts to auto-circuit's ``PruneScores``
with a reshape, and back with a flatten.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.types import Edge
    from auto_circuit.utils.patchable_model import PatchableModel

__all__ = ["EdgeLayout", "edge_sort_key", "sorted_edges", "edge_layout"]


def edge_sort_key(edge: Edge) -> tuple[int, str, int, int]:
    """The documented sort key of an edge: (dest layer, dest module, dest head, src index)."""
    head = -1 if edge.dest.head_idx is None else int(edge.dest.head_idx)
    return (int(edge.dest.layer), edge.dest.module_name, head, int(edge.src.src_idx))


def sorted_edges(model: PatchableModel) -> list[Edge]:
    """All edges of ``model`` in the package's fixed order.

    Raises ``ValueError`` for graphs this package does not score: position-specific
    graphs (``patchable_model(..., seq_len=N)``) and non-factorized graphs.
    """
    if not model.is_factorized:
        raise ValueError(
            "auto-circuit-dcd needs a factorized graph: build the model with "
            "patchable_model(model, factorized=True, ...) (dcd.make_patchable does)."
        )
    if model.seq_len is not None:
        raise ValueError(
            "auto-circuit-dcd scores edges summed over positions; this model was made "
            f"patchable with seq_len={model.seq_len}. Rebuild it with seq_len=None."
        )
    return sorted(model.edges, key=edge_sort_key)


@dataclass(frozen=True)
class EdgeLayout:
    """Where each destination module's patch mask lives among the sorted edge columns.

    ``blocks[i] = (module_name, mask_shape, start, stop)``: columns ``start:stop`` hold
    that module's mask flattened row-major.
    """

    blocks: tuple[tuple[str, tuple[int, ...], int, int], ...]

    @property
    def n_edges(self) -> int:
        return self.blocks[-1][3] if self.blocks else 0

    def to_prune_scores(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a ``[n_edges]`` vector into auto-circuit ``PruneScores``."""
        if vector.ndim != 1 or vector.shape[0] != self.n_edges:
            raise ValueError(
                f"expected a vector of {self.n_edges} edge scores, got shape "
                f"{tuple(vector.shape)}"
            )
        return {
            name: vector[start:stop].reshape(shape).clone()
            for name, shape, start, stop in self.blocks
        }

    def from_prune_scores(self, prune_scores: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Flatten auto-circuit ``PruneScores`` into a ``[n_edges]`` vector in this order."""
        missing = [name for name, *_ in self.blocks if name not in prune_scores]
        if missing:
            raise KeyError(f"PruneScores lack destination modules {missing[:3]}...")
        parts = []
        for name, shape, _, _ in self.blocks:
            scores = prune_scores[name]
            if tuple(scores.shape) != tuple(shape):
                raise ValueError(
                    f"PruneScores[{name!r}] has shape {tuple(scores.shape)}, "
                    f"expected {tuple(shape)}"
                )
            parts.append(scores.detach().reshape(-1).float().cpu())
        return torch.cat(parts)

    def to_json(self) -> list[list]:
        return [[name, list(shape), start, stop] for name, shape, start, stop in self.blocks]

    @classmethod
    def from_json(cls, data: Sequence[Sequence]) -> EdgeLayout:
        return cls(tuple((str(n), tuple(int(s) for s in shape), int(a), int(b))
                         for n, shape, a, b in data))


#: model -> (its edge set, names, layout): the layout of a graph is computed once
_LAYOUTS: weakref.WeakKeyDictionary[Any, tuple[Any, list[str], EdgeLayout]] = \
    weakref.WeakKeyDictionary()


def edge_layout(model: PatchableModel) -> tuple[list[str], EdgeLayout]:
    """Edge names in the fixed order, and the layout of each module's mask among them.

    Checks that every module's block is exactly its mask flattened (true for the
    factorized graphs auto-circuit builds), so conversion needs no index tables. The
    result is kept per model (for as long as the model lives and its edge set is the
    same object): sorting and checking SmolLM2's 123,211 edges takes seconds.
    """
    try:
        hit = _LAYOUTS.get(model)
    except TypeError:  # not weak-referenceable
        hit = None
    if hit is not None and hit[0] is model.edges:
        return list(hit[1]), hit[2]
    names, layout = _edge_layout(model)
    try:
        _LAYOUTS[model] = (model.edges, names, layout)
    except TypeError:
        pass
    return list(names), layout


def _edge_layout(model: PatchableModel) -> tuple[list[str], EdgeLayout]:
    edges = sorted_edges(model)
    names: list[str] = []
    blocks = []
    start = 0
    masks = {w.module_name: w.patch_mask for w in model.dest_wrappers}
    i = 0
    while i < len(edges):
        module = edges[i].dest.module_name
        j = i
        while j < len(edges) and edges[j].dest.module_name == module:
            j += 1
        block = edges[i:j]
        shape = tuple(masks[module].shape)
        expected = torch.tensor([[int(x) for x in edge.patch_idx] for edge in block],
                                dtype=torch.long).reshape(len(block), -1)
        flat = torch.cartesian_prod(*[torch.arange(s) for s in shape]).reshape(-1, len(shape))
        if expected.shape != flat.shape or not bool(torch.equal(expected, flat)):
            raise ValueError(
                f"the edges into {module} do not fill its patch mask in row-major order; "
                "this graph layout is not supported"
            )
        names.extend(edge.name for edge in block)
        blocks.append((module, shape, start, start + len(block)))
        start += len(block)
        i = j
    return names, EdgeLayout(tuple(blocks))
