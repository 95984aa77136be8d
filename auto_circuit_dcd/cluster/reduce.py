"""Dimension reduction of the preprocessed rows: TruncatedSVD (default) or PCA.

The number of components is ``min(n_components, n_examples - 1, n_features - 1)``
(at least 1) for SVD and ``min(n_components, n_examples - 1, n_features)`` for PCA,
because both need fewer components than examples to be meaningful. With a single
feature, or ``"none"``, the rows pass through unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np

__all__ = ["REDUCERS", "make_reducer", "effective_components", "Identity"]


class Identity:
    """A no-op reducer with the scikit-learn transformer interface."""

    n_components_: int = 0

    def fit(self, X: np.ndarray, y: Any = None) -> "Identity":
        self.n_components_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)

    def fit_transform(self, X: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(X).transform(X)


def effective_components(method: str, requested: int, n_examples: int, n_features: int) -> int:
    """How many components the reducer can give for this data (see module docstring)."""
    cap = n_features - 1 if method == "svd" else n_features
    return max(1, min(int(requested), n_examples - 1, cap))


def _svd(k: int, seed: int) -> Any:
    from sklearn.decomposition import TruncatedSVD

    return TruncatedSVD(n_components=k, algorithm="randomized", n_iter=7, random_state=seed)


def _pca(k: int, seed: int) -> Any:
    from sklearn.decomposition import PCA

    return PCA(n_components=k, svd_solver="full", random_state=seed)


def _none(k: int, seed: int) -> Any:
    return Identity()


REDUCERS: Dict[str, Callable[[int, int], Any]] = {"svd": _svd, "pca": _pca, "none": _none}


def make_reducer(method: str, n_components: int, n_examples: int, n_features: int,
                 seed: int) -> Any:
    """An unfitted reducer for ``[n_examples, n_features]`` data."""
    if method not in REDUCERS:
        raise ValueError(f"reduction must be one of {sorted(REDUCERS)}, got {method!r}")
    if n_components < 1:
        raise ValueError(f"n_components must be at least 1, got {n_components}")
    if method != "none" and n_features <= 1:
        return Identity()
    k = effective_components(method, n_components, n_examples, n_features)
    return REDUCERS[method](k, seed)
