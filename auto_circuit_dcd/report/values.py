"""Numbers as a reader sees them, one rule for the page, its figures and the printed summary.

1. a missing value (``None``, NaN, not a number) is ``None``, shown "n/a";
2. a value closer to 0 than :data:`ROUNDING_NOISE` is 0: faithfulness, CPR/CMD, ARI and
   overlap are of order 1 and read to 0.001, and float32 logits leave tiny residues where
   the exact value is 0 (a circuit with no path to the logits gave ``-9.68e-09``), which
   would read as a sign and a magnitude;
3. shown with 3 significant digits (whole numbers as they are).

:func:`score_rows` lists the CPR/CMD of each circuit family of a
:class:`~auto_circuit_dcd.report.records.RunReport`, for the page and the summary, and
:func:`score_intervals` their intervals (from the report's ``uncertainty``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.metrics.uncertainty import Interval
    from auto_circuit_dcd.report.records import RunReport

__all__ = ["ROUNDING_NOISE", "finite", "shown", "finite_list", "fmt", "fixed", "score_rows",
           "score_intervals", "FAMILY_CURVES", "percent", "p_value"]

#: |x| below this is shown as 0: half the last decimal (0.001) an order-1 quantity is
#: read to, so nothing shown as 0 would read differently at that precision
ROUNDING_NOISE = 5e-4


def finite(x: Any) -> float | None:
    """``x`` as a float, or ``None`` when it is missing, NaN or not a number (for plotting:
    positions, colours, axes)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def shown(x: Any) -> float | None:
    """``x`` as a number is read: :func:`finite`, and 0 when it is rounding noise
    (``|x| < ROUNDING_NOISE``). Every number printed in a table, a heatmap cell or the
    summary goes through this."""
    v = finite(x)
    return None if v is None else (0.0 if abs(v) < ROUNDING_NOISE else v)


def finite_list(xs: Sequence[Any] | None, n: int | None = None) -> list[float | None]:
    """``xs`` with missing values as ``None``, padded or cut to ``n`` entries when given."""
    out = [finite(x) for x in (xs or [])]
    if n is not None:
        out = (out + [None] * n)[:n]
    return out


def fmt(x: Any, digits: int = 3) -> str:
    """A number for display (:func:`shown`): ``digits`` significant digits, "n/a" when
    missing."""
    v = shown(x)
    if v is None:
        return "n/a"
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.{digits}g}"


def fixed(x: Any, decimals: int = 3) -> str:
    """A number for a column of aligned figures (:func:`shown`): ``decimals`` decimals,
    "n/a" when missing."""
    v = shown(x)
    return "n/a" if v is None else f"{v:.{decimals}f}"


#: a family of :func:`score_rows` -> the curve of ``RunReport.uncertainty`` with its intervals
FAMILY_CURVES = {
    "single circuit": "single",
    "DCD, routed (each example to its cluster's circuit)": "dcd_routed",
    "DCD, oracle (best circuit per example)": "dcd_oracle",
    "DCD, routed, noise examples left out": "dcd_routed_excluding_noise",
    "K-random, routed (same k, random split)": "k_random_routed",
    "K-random, oracle": "k_random_oracle",
}


def score_intervals(report: RunReport) -> dict[str, tuple[Interval, Interval]]:
    """``{family: (CPR interval, CMD interval)}`` for the families of :func:`score_rows`
    (empty when the report has no intervals)."""
    u = report.uncertainty
    if u is None:
        return {}
    out = {}
    for family, attr in FAMILY_CURVES.items():
        curve = getattr(u, attr)
        if curve is not None:
            out[family] = (curve.cpr, curve.cmd)
    return out


def score_rows(report: RunReport) -> list[tuple[str, float, float]]:
    """``(family, CPR, CMD)`` per circuit family of a run report: the single circuit, DCD
    routed and oracle (and routed without the noise examples, when there are any),
    K-random routed and oracle (when the run has K-random circuits, k > 1)."""
    single, dcd, krand = report.single, report.dcd, report.k_random
    rows = [("single circuit", single.cpr, single.cmd),
            ("DCD, routed (each example to its cluster's circuit)", dcd.cpr.routed,
             dcd.cmd.routed),
            ("DCD, oracle (best circuit per example)", dcd.cpr.oracle, dcd.cmd.oracle)]
    if report.routing.n_test_noise:
        rows.append(("DCD, routed, noise examples left out", dcd.cpr.routed_excluding_noise,
                     dcd.cmd.routed_excluding_noise))
    if krand.faithfulness_oracle is not None:
        rows += [("K-random, routed (same k, random split)", krand.cpr.routed,
                  krand.cmd.routed),
                 ("K-random, oracle", krand.cpr.oracle, krand.cmd.oracle)]
    return rows


def percent(x: Any) -> str:
    """A share (0 to 1) as a percentage with 3 significant digits, "n/a" when missing."""
    v = finite(x)
    return "n/a" if v is None else f"{100 * v:.3g}%"


def p_value(x: Any) -> str:
    """A p- or q-value: 2 significant digits, small ones in scientific notation, never
    rounded to 0 (a q of 1e-56 is not rounding noise), "n/a" when missing."""
    v = finite(x)
    return "n/a" if v is None else f"{v:.2g}"
