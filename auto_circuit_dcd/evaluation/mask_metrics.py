"""What an evaluation backend returns: the metric of every circuit on every test example.

A backend takes circuits as boolean "edge in circuit" vectors in the package's edge order
(:func:`auto_circuit_dcd.model.edges.sorted_edges`), distinct, none empty or full, and gives
``mu`` per (example, circuit) plus the unpatched and the fully patched run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MaskMetrics", "progress_bar"]


@dataclass(frozen=True)
class MaskMetrics:
    """``mu [n_examples, n_circuits]``, ``mu_full [n_examples]`` (nothing patched) and
    ``mu_empty [n_examples]`` (every edge patched), float64, rows in the loader's order."""

    mu: np.ndarray
    mu_full: np.ndarray
    mu_empty: np.ndarray


def progress_bar(total: int, enabled: bool) -> Any:
    """A bar counting forwards (one per batch and circuit, plus the fixed ones), with the
    time left."""
    from auto_circuit.utils.custom_tqdm import tqdm

    return tqdm(total=total, desc="faithfulness", unit="forward", disable=not enabled)
