"""Areas under faithfulness curves: CPR (circuit performance ratio) and CMD (circuit-model
difference), trapezoid rule over the fractions of edges on a linear axis.

A curve is a :class:`~auto_circuit_dcd.metrics.faithfulness.FaithfulnessResult`, a pair
``(fractions, f)`` or a mapping ``{fraction: f}``. Points are sorted by fraction first.
The area runs over the evaluated fractions only (the MIB grid starts at 0.001, not 0).
"""

from __future__ import annotations

from typing import Any, Mapping, Tuple

import numpy as np

__all__ = ["cpr", "cmd", "as_curve"]


def as_curve(curve: Any) -> Tuple[np.ndarray, np.ndarray]:
    """``(fractions, f)`` as float arrays sorted by fraction."""
    if hasattr(curve, "fractions") and hasattr(curve, "f"):
        p, f = curve.fractions, curve.f
    elif isinstance(curve, Mapping):
        p, f = list(curve.keys()), list(curve.values())
    else:
        try:
            p, f = curve
        except (TypeError, ValueError) as err:
            raise TypeError("a curve is a FaithfulnessResult, a (fractions, f) pair or a "
                            "{fraction: f} mapping") from err
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    f = np.asarray(f, dtype=np.float64).reshape(-1)
    if p.shape != f.shape:
        raise ValueError(f"{p.size} fractions for {f.size} faithfulness values")
    if p.size < 2:
        raise ValueError("an area needs at least two fractions")
    order = np.argsort(p, kind="stable")
    p, f = p[order], f[order]
    if np.any(np.diff(p) == 0):
        raise ValueError("fractions must be distinct")
    return p, f


def _trapezoid(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((p[1:] - p[:-1]) * (y[1:] + y[:-1]) / 2.0))


def cpr(curve: Any) -> float:
    """Area under f(p) (higher is better; 1 on [0, 1] for a curve at 1 everywhere)."""
    p, f = as_curve(curve)
    return _trapezoid(p, f)


def cmd(curve: Any, two_sided: bool = False) -> float:
    """Area of ``max(0, 1 - f(p))`` (``|1 - f(p)|`` if ``two_sided``: MIB's form).

    Lower is better.
    """
    p, f = as_curve(curve)
    gap = np.abs(1.0 - f) if two_sided else np.maximum(0.0, 1.0 - f)
    return _trapezoid(p, gap)
