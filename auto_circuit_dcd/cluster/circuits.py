"""From a cluster's rows to its circuit: the mean of its attribution rows (EAP family), or
any auto-circuit prune algorithm run on a loader of that cluster's examples only.

The EAP-family circuit of a cluster is, up to scale, what EAP / EAP-IG would find on the
cluster's examples (auto-circuit sums batch means), so no model pass is needed.
Other algorithms (ACDC, ...) need the model and an :class:`~auto_circuit_dcd.data.ExampleLoader`
holding the examples (rows map to examples through ``A.example_ids``).
ACDC uses only the first batch of its loader, so it gets one batch per cluster; a
cluster whose examples have several token lengths still splits into one batch per length,
and a warning says that only the first is used.

ACDC scores the edges it never removed ``inf``. Ranking, mass and faithfulness need finite
scores, so :func:`finite_scores` maps ``+inf`` to ``M`` and ``-inf`` to ``-M``, with ``M``
twice the largest finite ``|score|`` (1 when there is none): every order among the edges,
by ``|score|`` or signed, stays as it was (infinite edges stay tied with each other and
above every finite one). Every base algorithm's scores pass through it.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["EAP_FAMILY", "as_rows", "mean_circuit", "rows_circuit", "resolve_base_algo",
           "run_base_algo", "finite_scores"]

#: base algorithms whose per-cluster circuit is the mean of the cluster's rows
EAP_FAMILY = ("eap", "eap-ig")


def as_rows(A: Any) -> Tuple[np.ndarray, Optional[Any]]:
    """``(float64 [n, f] array, AttributionMatrix or None)``; checks shape and finiteness."""
    from auto_circuit_dcd.attribution.matrix import AttributionMatrix

    matrix = A if isinstance(A, AttributionMatrix) else None
    if matrix is not None:
        X = matrix.to_numpy()
    elif isinstance(A, torch.Tensor):
        X = A.detach().cpu().double().numpy()
    else:
        X = np.asarray(A, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected attribution rows [n_examples, n_features], got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"no data to cluster: shape {X.shape}")
    bad = np.flatnonzero(~np.isfinite(X).all(1))
    if bad.size:
        raise ValueError(
            f"{bad.size} row(s) contain NaN or inf (positions {bad[:10].tolist()}); drop them "
            "first, e.g. A.subset(rows_to_keep) (dcd.attribute drops such rows itself)")
    return X, matrix


def mean_circuit(X: np.ndarray, matrix: Optional[Any], rows: Sequence[int],
                 model: Any = None) -> Any:
    """The mean of ``rows``: auto-circuit ``PruneScores`` when the matrix knows its layout
    (or ``model`` is given), else the mean vector (numpy for plain arrays, torch otherwise)."""
    rows = np.asarray(rows, dtype=int)
    if rows.size == 0:
        raise ValueError("a cluster with no rows has no circuit")
    if matrix is None:
        return X[rows].mean(0)
    if matrix.layout is None and model is None:
        return matrix.mean(rows)
    return matrix.prune_scores(rows, model=model)


def rows_circuit(base_algo: Any, X: np.ndarray, matrix: Optional[Any], rows: Sequence[int],
                 *, example_ids: Optional[Sequence[Any]] = None, model: Any = None,
                 dataloader: Any = None, batch_size: Optional[int] = None,
                 label: Any = None) -> Any:
    """The circuit of the examples at ``rows`` by ``base_algo``: their mean row (EAP family,
    :func:`mean_circuit`) or the algorithm run on a loader of those examples only
    (:func:`run_base_algo`; needs ``model``, an ``ExampleLoader`` and the rows' example ids,
    ``matrix.example_ids`` by default). Clusters and baselines are built by this one rule."""
    if base_algo in EAP_FAMILY:
        return mean_circuit(X, matrix, rows, model)
    algo = resolve_base_algo(base_algo)
    if model is None or dataloader is None:
        raise ValueError(f"base_algo={getattr(algo, 'key', algo)!r} runs on the examples "
                         "themselves: pass model= and dataloader=")
    if example_ids is None:
        if matrix is None:
            raise ValueError("a non-EAP base algorithm needs the rows' example ids: pass an "
                             "AttributionMatrix or example_ids=")
        example_ids = matrix.example_ids
    ids = [example_ids[int(i)] for i in rows]
    return run_base_algo(algo, model, dataloader, ids, batch_size=batch_size, label=label)


def resolve_base_algo(base_algo: Any) -> Any:
    """An auto-circuit ``PruneAlgo`` from a ``PRUNE_ALGO_DICT`` key or a ``PruneAlgo``."""
    from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT, PruneAlgo

    if isinstance(base_algo, PruneAlgo):
        return base_algo
    if isinstance(base_algo, str) and base_algo in PRUNE_ALGO_DICT:
        return PRUNE_ALGO_DICT[base_algo]
    raise ValueError(
        f"base_algo must be one of {list(EAP_FAMILY)}, a key of auto-circuit's "
        f"PRUNE_ALGO_DICT (e.g. 'ACDC') or a PruneAlgo; got {base_algo!r}")


def _first_batch_only(algo: Any) -> bool:
    from auto_circuit.prune_algos.ACDC import acdc_prune_scores

    func = algo.func
    while isinstance(func, functools.partial):
        func = func.func
    return func is acdc_prune_scores


def run_base_algo(algo: Any, model: Any, dataloader: Any, ids: Sequence[Any],
                  batch_size: Optional[int] = None, label: Any = None) -> Dict[str, torch.Tensor]:
    """Run ``algo`` on a loader of the examples ``ids`` only; returns its ``PruneScores``."""
    if not hasattr(dataloader, "subset"):
        raise TypeError(
            "a non-EAP base algorithm needs an ExampleLoader (dcd.prepare / dcd.data.make_loader) "
            "to build one loader per cluster; got " + type(dataloader).__name__)
    from auto_circuit_dcd.model.devices import model_device

    one_batch = _first_batch_only(algo)
    loader = dataloader.subset(list(ids), batch_size=len(ids) if one_batch else batch_size,
                               device=model_device(model))  # auto-circuit indexes with it
    if one_batch and len(loader.batch_positions) > 1:
        warnings.warn(
            f"cluster {label}: its {len(ids)} examples have {len(loader.batch_positions)} "
            f"token lengths; {algo.key} uses only the first batch "
            f"({len(loader.batch_positions[0])} examples)", stacklevel=3)
    return finite_scores(algo.func(model, loader, None), label=f"{algo.key}, cluster {label}")


def finite_scores(prune_scores: Mapping[str, torch.Tensor],
                  label: str = "prune scores") -> Dict[str, torch.Tensor]:
    """``prune_scores`` with ``+-inf`` replaced by ``+-M`` (order-preserving; see the module
    docstring). NaN is an error: it has no place in an order."""
    values = [t.detach() for t in prune_scores.values()]
    if any(bool(torch.isnan(t).any()) for t in values):
        raise ValueError(f"{label}: scores contain NaN; the algorithm failed on these examples")
    finite = [t[torch.isfinite(t)].abs() for t in values]
    largest = max((float(f.max()) for f in finite if f.numel()), default=0.0)
    big = 2.0 * largest if largest > 0 else 1.0
    out = {}
    for name, t in prune_scores.items():
        if torch.isinf(t).any():  # only float tensors hold inf
            if big > torch.finfo(t.dtype).max:
                raise ValueError(f"{label}: finite scores up to {largest:g} leave no room "
                                 "below the dtype's largest value for the infinite ones")
            t = torch.where(torch.isinf(t), torch.sign(t) * big, t)
        out[name] = t
    return out
