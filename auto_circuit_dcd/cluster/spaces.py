"""Clustering spaces: where examples are compared, a row preprocessing then the reduction.

A space is named by its preprocessing (:data:`.preprocess.PREPROCESSORS`). ``embed``:

1. transform every row on its own (:func:`.preprocess.preprocess`);
2. reduce to ``n_components`` (:func:`.reduce.make_reducer`; three or more rows that are
   not all equal, otherwise the rows pass unchanged);
3. keep the fitted reducer (new rows are projected with it, :meth:`Embedding.project`) and
   the pairwise Euclidean distances of the reduced rows (every silhouette and every
   stability refit in this space reads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from auto_circuit_dcd.cluster.preprocess import preprocess
from auto_circuit_dcd.cluster.reduce import Identity, make_reducer
from auto_circuit_dcd.cluster.select_k import euclidean_distances

__all__ = ["Embedding", "embed"]


@dataclass(frozen=True)
class Embedding:
    """Rows placed in one space.

    Attributes:
        space: the preprocessing's name.
        gamma: its cumulative-mass share (``sparse`` / ``binary``).
        reducer: the fitted reducer (``transform`` takes preprocessed rows).
        points: ``[n, d]`` the reduced rows.
        distances: ``[n, n]`` their Euclidean distances.
    """

    space: str
    gamma: float
    reducer: Any
    points: np.ndarray
    distances: np.ndarray

    def project(self, X: np.ndarray) -> np.ndarray:
        """New rows in this space: preprocessed the same way, then reduced."""
        return self.reducer.transform(preprocess(X, self.space, self.gamma))


def embed(X: np.ndarray, space: str, *, gamma: float, reduction: str, n_components: int,
          seed: int) -> Embedding:
    """``X``'s rows in ``space`` (module docstring); ``seed`` for a randomized reducer."""
    Xp = preprocess(X, space, gamma)
    n = len(Xp)
    if n >= 3 and not np.all(Xp == Xp[0]):
        reducer = make_reducer(reduction, n_components, n, Xp.shape[1], seed)
    else:
        reducer = Identity()
    Z = np.asarray(reducer.fit_transform(Xp), dtype=np.float64)
    return Embedding(space, gamma, reducer, Z, euclidean_distances(Z))
