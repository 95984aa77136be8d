"""Type aliases for the sequences of numbers the package takes: a Python sequence or a
numpy array, each read with ``np.asarray``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np

__all__ = ["Indices", "Floats"]

#: integers: one per example (cluster labels, ``-1`` for noise) or row positions
Indices: TypeAlias = Sequence[int] | np.ndarray
#: real numbers: edge fractions, weights
Floats: TypeAlias = Sequence[float] | np.ndarray
