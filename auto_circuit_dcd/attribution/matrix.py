"""The per-example attribution matrix: scores with their edge names, example ids and groups.

An ``AttributionMatrix`` is a dense ``[n_examples, n_edges]`` float tensor whose columns
follow :mod:`auto_circuit_dcd.model.edges`' fixed order. It is never separated from its column
names: ``save`` writes the scores (safetensors) and a JSON sidecar with edge names,
example ids, groups, the model name and the method's parameters; no pickles.

Saving: 1. the old JSON (if any) is removed, so the folder never pairs new scores with an
old description; 2. the scores, 3. the JSON (with the scores' shape, dtype and checksum),
each written whole or not at all (:mod:`auto_circuit_dcd.files`). Loading checks the
scores against all three and refuses non-float scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from auto_circuit_dcd.arrays import Indices
from auto_circuit_dcd.errors import DamagedFileError
from auto_circuit_dcd.files import load_bundle, save_bundle
from auto_circuit_dcd.model.edges import EdgeLayout, edge_layout

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.utils.patchable_model import PatchableModel

__all__ = ["AttributionMatrix"]

SCORES_FILE = "scores.safetensors"
META_FILE = "attribution.json"
FORMAT_VERSION = 1


@dataclass
class AttributionMatrix:
    """Per-example edge attribution scores.

    Attributes:
        scores: float tensor ``[n_examples, n_edges]``; row ``i`` is example
            ``example_ids[i]``; column ``j`` is edge ``edge_names[j]``. Sign convention of
            auto-circuit's mask gradients: positive means patching the edge to its
            corrupted value lowers the metric (the edge supports the clean behaviour).
        edge_names: auto-circuit ``Edge.name`` strings in the fixed order of
            :func:`auto_circuit_dcd.model.edges.sorted_edges`.
        example_ids: the dataset index (or id) of the prompt of each row.
        groups: the dataset's per-prompt label of each row, or ``None``.
        meta: model name, method and its parameters (JSON-serialisable).
        layout: where each destination module's mask lives among the columns; needed
            to turn scores into auto-circuit ``PruneScores`` without the model.
    """

    scores: torch.Tensor
    edge_names: list[str]
    example_ids: list[Any] = field(default_factory=list)
    groups: list[str | None] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    layout: EdgeLayout | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.scores, torch.Tensor):
            self.scores = torch.as_tensor(np.asarray(self.scores))
        if self.scores.ndim != 2:
            raise ValueError("scores must be 2-D [n_examples, n_edges], got "
                             f"{tuple(self.scores.shape)}")
        n, e = self.scores.shape
        self.edge_names = list(self.edge_names)
        if len(self.edge_names) != e:
            raise ValueError(f"{len(self.edge_names)} edge names for {e} score columns")
        if len(set(self.edge_names)) != e:
            raise ValueError("edge names must be unique")
        if not self.example_ids:
            self.example_ids = list(range(n))
        self.example_ids = list(self.example_ids)
        if len(self.example_ids) != n:
            raise ValueError(f"{len(self.example_ids)} example ids for {n} rows")
        if self.groups is not None:
            self.groups = list(self.groups)
            if len(self.groups) != n:
                raise ValueError(f"{len(self.groups)} groups for {n} rows")
        if self.layout is not None and self.layout.n_edges != e:
            raise ValueError(f"layout covers {self.layout.n_edges} edges, scores have {e}")

    # ------------------------------------------------------------------ basics
    @property
    def n_examples(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.scores.shape[1])

    @property
    def shape(self) -> tuple:
        return tuple(self.scores.shape)

    def __len__(self) -> int:
        return self.n_examples

    def __repr__(self) -> str:
        groups = "none" if self.groups is None else f"{len(set(self.groups))} distinct"
        method = self.meta.get("method", "?")
        return (f"AttributionMatrix({self.n_examples} examples x {self.n_edges} edges, "
                f"method={method}, groups: {groups})")

    def to_numpy(self) -> np.ndarray:
        """Scores as a float64 numpy array (for scikit-learn)."""
        return self.scores.detach().cpu().double().numpy()

    def subset(self, rows: Indices | torch.Tensor) -> AttributionMatrix:
        """A new matrix with only the given row positions (not example ids)."""
        idx = _as_positions(rows, self.n_examples)
        return AttributionMatrix(
            scores=self.scores[idx],
            edge_names=self.edge_names,
            example_ids=[self.example_ids[i] for i in idx.tolist()],
            groups=None if self.groups is None else [self.groups[i] for i in idx.tolist()],
            meta=dict(self.meta),
            layout=self.layout,
        )

    def mean(self, rows: Indices | None = None) -> torch.Tensor:
        """Mean score vector ``[n_edges]`` over the chosen row positions (all by default)."""
        idx = None if rows is None else _as_positions(rows, self.n_examples)
        block = self.scores if idx is None else self.scores[idx]
        if block.shape[0] == 0:
            raise ValueError("cannot take the mean of zero rows (empty cluster?)")
        return block.cpu().double().mean(0).to(torch.float32)

    # ------------------------------------------------------------ auto-circuit
    def prune_scores(
        self,
        rows: Indices | None = None,
        model: PatchableModel | None = None,
    ) -> dict[str, torch.Tensor]:
        """auto-circuit ``PruneScores`` of the mean over ``rows`` (all rows by default).

        Usable directly in ``auto_circuit.prune.run_circuits``. With ``model`` (the
        ``PatchableModel`` the matrix was computed on) the scores are on its device, as
        auto-circuit's algorithms need; without, on the CPU. A matrix built from a plain
        tensor has no layout: then ``model`` is required.
        """
        scores = self.layout_for(model).to_prune_scores(self.mean(rows))
        if model is None:
            return scores
        from auto_circuit_dcd.model.devices import model_device

        device = model_device(model)
        return {name: t.to(device) for name, t in scores.items()}

    def layout_for(self, model: PatchableModel | None = None) -> EdgeLayout:
        """The column layout, from the matrix itself or derived from ``model``."""
        if model is not None:
            names, layout = edge_layout(model)
            if names != self.edge_names:
                raise ValueError(
                    "this matrix's edge names do not match the model's graph "
                    f"({self.n_edges} columns vs {len(names)} edges)"
                )
            return layout
        if self.layout is None:
            raise ValueError(
                "this AttributionMatrix has no edge layout (built from a plain tensor): "
                "call prune_scores(rows, model=pm) with the PatchableModel it belongs to"
            )
        return self.layout

    # ---------------------------------------------------------------- storage
    def save(self, path: str | Path) -> Path:
        """Write ``path/scores.safetensors`` and ``path/attribution.json``; returns ``path``.

        The JSON describing the scores is written last; an interrupted save leaves a
        folder that ``load`` refuses, never one whose rows do not match its ids.
        """
        meta = {
            "format_version": FORMAT_VERSION,
            "shape": list(self.shape),
            "dtype": str(self.scores.dtype).replace("torch.", ""),
            "edge_names": self.edge_names,
            "example_ids": [_jsonable(x) for x in self.example_ids],
            "groups": self.groups,
            "meta": self.meta,
            "layout": None if self.layout is None else self.layout.to_json(),
        }
        return save_bundle(path, {"scores": self.scores}, meta, SCORES_FILE, META_FILE)

    @classmethod
    def load(cls, path: str | Path) -> AttributionMatrix:
        """Read a matrix written by :meth:`save`, checking the scores against the JSON."""
        path = Path(path)
        tensors, meta = load_bundle(path, SCORES_FILE, META_FILE, "AttributionMatrix",
                                    check=lambda t, m: _check_scores(path, t.get("scores"), m))
        scores = tensors["scores"]
        layout = meta.get("layout")
        return cls(
            scores=scores,
            edge_names=meta["edge_names"],
            example_ids=meta["example_ids"],
            groups=meta.get("groups"),
            meta=meta.get("meta", {}),
            layout=None if layout is None else EdgeLayout.from_json(layout),
        )

    @classmethod
    def from_prune_scores(
        cls, rows: Sequence[dict[str, torch.Tensor]], model: PatchableModel, **kwargs: Any
    ) -> AttributionMatrix:
        """Stack auto-circuit ``PruneScores`` (one per example) into a matrix."""
        names, layout = edge_layout(model)
        scores = torch.stack([layout.from_prune_scores(ps) for ps in rows])
        return cls(scores=scores, edge_names=names, layout=layout, **kwargs)


def _check_scores(path: Path, scores: torch.Tensor | None, meta: dict[str, Any]) -> None:
    """The scores must be float and have the dtype and shape the JSON gives."""
    if scores is None:
        raise DamagedFileError(f"{path / SCORES_FILE} holds no 'scores' tensor: save the "
                               "matrix again")
    if not scores.is_floating_point():
        raise DamagedFileError(f"{path / SCORES_FILE} holds {scores.dtype} scores: an "
                               "AttributionMatrix holds float scores")
    dtype = str(scores.dtype).replace("torch.", "")
    problems = []
    if "dtype" in meta and meta["dtype"] != dtype:
        problems.append(f"dtype {dtype}, the JSON says {meta['dtype']}")
    if "shape" in meta and list(meta["shape"]) != list(scores.shape):
        problems.append(f"shape {list(scores.shape)}, the JSON says {meta['shape']}")
    names, ids = meta.get("edge_names", []), meta.get("example_ids", [])
    if scores.ndim != 2 or len(names) != scores.shape[-1] or len(ids) != scores.shape[0]:
        problems.append(f"shape {list(scores.shape)} for {len(ids)} example ids and "
                        f"{len(names)} edge names")
    if problems:
        raise DamagedFileError(f"{path / SCORES_FILE} does not match {path / META_FILE}: it "
                               f"has {'; '.join(problems)}. Save the matrix again.")


def _as_positions(rows: Any, n: int) -> torch.Tensor:
    idx = torch.as_tensor(np.asarray(rows))
    if idx.dtype == torch.bool:
        if idx.numel() != n:
            raise ValueError(f"boolean row mask of length {idx.numel()} for {n} rows")
        idx = idx.nonzero().flatten()
    idx = idx.long().flatten()
    if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise IndexError(f"row positions out of range for {n} rows")
    return idx


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, float) and math.isnan(x):
        return None
    return x
