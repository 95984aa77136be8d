"""Areas under faithfulness curves: CPR (circuit performance ratio) and CMD (circuit-model
difference), trapezoid rule over the fractions of edges on a linear axis.

A curve is a :class:`~auto_circuit_dcd.evaluation.faithfulness.FaithfulnessResult`, a pair
``(fractions, f)`` or a mapping ``{fraction: f}``. Points are sorted by fraction first.
The area runs over the evaluated fractions only (the MIB grid starts at 0.001, not 0).

CMD has two forms (:data:`CMD_FORMS`): ``"one-sided"`` integrates ``max(0, 1 - f)`` (the
method's release: a circuit above the model costs nothing) and ``"two-sided"``
``|1 - f|`` (MIB's: any distance from the model's behaviour counts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["cpr", "cmd", "as_curve", "CMD_FORMS", "check_cmd_form"]

#: CMD form -> the gap to the model integrated over the curve, from ``f``
CMD_FORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "one-sided": lambda f: np.maximum(0.0, 1.0 - f),
    "two-sided": lambda f: np.abs(1.0 - f),
}


def check_cmd_form(form: str) -> str:
    """``form`` if it is a key of :data:`CMD_FORMS`, else a ``ValueError`` listing them."""
    if form not in CMD_FORMS:
        raise ValueError(f"CMD form must be one of {list(CMD_FORMS)}, got {form!r}")
    return form


def as_curve(curve: Any) -> tuple[np.ndarray, np.ndarray]:
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


def cmd(curve: Any, two_sided: bool = False, *, form: str | None = None) -> float:
    """Area of ``max(0, 1 - f(p))`` (``|1 - f(p)|`` if ``two_sided``: MIB's form); ``form``
    (a key of :data:`CMD_FORMS`) names the form instead. Lower is better."""
    form = check_cmd_form(form) if form is not None else (
        "two-sided" if two_sided else "one-sided")
    p, f = as_curve(curve)
    return _trapezoid(p, CMD_FORMS[form](f))
