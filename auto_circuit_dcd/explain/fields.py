"""What the prompts of a cluster share: every per-prompt field against the clusters.

For each field (the dataset's keys and the derived features of :mod:`.prompts`):

1. the rows that carry it and belong to a cluster are kept (noise rows and prompts
   without the field are left out);
2. not tested, with the reason in ``skipped``: a field with one value, a categorical
   field whose values are all different (an identifier), a field that only one cluster's
   prompts carry;
3. values: numbers with more than ``max_levels`` distinct values are numeric, binned at
   quantiles into at most ``n_bins`` bins for the table; anything else is categorical
   (numbers with few values too; lists and objects by their JSON text);
4. the contingency table clusters x categories, bias-corrected Cramér's V (Bergsma 2013)
   from its chi-square statistic, and scikit-learn's adjusted mutual information;
5. the test: numeric fields Kruskal-Wallis on the values (``scipy.stats.kruskal``);
   categorical fields the chi-square test of independence
   (``scipy.stats.chi2_contingency``), or, when an expected count is below 5 (the
   chi-square approximation's usual condition), a permutation test of the same statistic
   (cluster labels permuted over the rows, ``n_permutations`` times);
6. Benjamini-Hochberg over the fields tested; a field is ``associated`` when its q-value
   is at most ``alpha``. Fields come out associated first, then by Cramér's V.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from auto_circuit_dcd.explain.permutation import benjamini_hochberg
from auto_circuit_dcd.explain.records import CategoryShare, FieldAssociation

__all__ = ["cramers_v", "field_associations"]

#: smallest expected count for the chi-square approximation
_MIN_EXPECTED = 5.0


def cramers_v(table: np.ndarray, chi2: float) -> float:
    """Bias-corrected Cramér's V of an ``r x c`` table with chi-square statistic ``chi2``
    (Bergsma 2013, J. Korean Stat. Soc. 42: 323-328); NaN for a table of one row or
    column."""
    n = float(table.sum())
    r, c = table.shape
    if n <= 1 or r < 2 or c < 2:
        return math.nan
    phi2 = max(0.0, chi2 / n - (r - 1) * (c - 1) / (n - 1))
    rc, cc = r - (r - 1) ** 2 / (n - 1), c - (c - 1) ** 2 / (n - 1)
    denom = min(rc - 1, cc - 1)
    return math.sqrt(phi2 / denom) if denom > 0 else math.nan


def _chi2_statistics(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int],
                     expected: np.ndarray) -> np.ndarray:
    """Chi-square statistics of the tables ``rows[b]`` x ``cols`` (``rows``: ``[B, n]``)."""
    r, c = shape
    B = rows.shape[0]
    flat = (rows * c + cols[None, :]) + (np.arange(B) * r * c)[:, None]
    counts = np.bincount(flat.ravel(), minlength=B * r * c).reshape(B, r, c)
    return (((counts - expected) ** 2) / expected).sum(axis=(1, 2))


def _categorical(values: Sequence[Any]) -> list[str]:
    return [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in values]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _bins(x: np.ndarray, n_bins: int) -> tuple[np.ndarray, list[str]]:
    """Codes of quantile bins of ``x`` and their labels ``[lo, hi)`` (the last closed)."""
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)))
    codes = np.clip(np.searchsorted(edges[1:-1], x, side="right"), 0, len(edges) - 2)
    labels = [f"[{lo:g}, {hi:g}{']' if i == len(edges) - 2 else ')'}"
              for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]
    used = np.unique(codes)
    remap = np.full(len(labels), -1)
    remap[used] = np.arange(len(used))
    return remap[codes], [labels[i] for i in used]


class _Skip(Exception):
    """A field that is not tested; the message says why."""


def _one_field(name: str, source: str, values: Sequence[Any], labels: np.ndarray, *,
               n_bins: int, max_levels: int, n_permutations: int,
               rng: np.random.RandomState) -> FieldAssociation:
    from scipy.stats import chi2_contingency, kruskal
    from sklearn.metrics import adjusted_mutual_info_score

    keep = [i for i, v in enumerate(values) if labels[i] >= 0 and v is not None
            and not (isinstance(v, float) and math.isnan(v))]
    vals = [values[i] for i in keep]
    lab = labels[keep]
    present = np.unique(lab)
    if len(vals) == 0:
        raise _Skip("no clustered prompt carries it")
    if len(present) < 2:
        raise _Skip(f"only prompts of cluster {int(present[0])} carry it")
    numeric_values = all(_is_number(v) for v in vals)
    distinct = len(set(_categorical(vals))) if not numeric_values else len(set(vals))
    if distinct < 2:
        raise _Skip("one value")
    numeric = numeric_values and distinct > max_levels
    if numeric:
        x = np.asarray(vals, dtype=np.float64)
        codes, categories = _bins(x, n_bins)
    else:
        if distinct == len(vals):
            raise _Skip("every value different (an identifier)")
        if numeric_values:
            levels = sorted(set(vals))
            categories = [f"{v:g}" if isinstance(v, float) else str(v) for v in levels]
            codes = np.searchsorted(np.asarray(levels, dtype=np.float64),
                                    np.asarray(vals, dtype=np.float64))
        else:
            text = _categorical(vals)
            categories, codes = np.unique(np.asarray(text, dtype=object), return_inverse=True)
            categories = [str(c) for c in categories]
    clusters = [int(c) for c in present]
    rows = np.searchsorted(present, lab)
    table = np.zeros((len(clusters), len(categories)), dtype=np.int64)
    np.add.at(table, (rows, codes), 1)
    chi2, p_chi2, _, expected = chi2_contingency(table, correction=False)
    if numeric:
        test = "kruskal-wallis"
        statistic, p = kruskal(*[x[rows == i] for i in range(len(clusters))])
    elif expected.min() >= _MIN_EXPECTED:
        test, statistic, p = "chi-square", chi2, p_chi2
    else:
        test, statistic = "chi-square permutation", chi2
        perms = np.argsort(rng.random_sample((n_permutations, len(rows))), axis=1)
        null = _chi2_statistics(rows[perms], codes, (len(clusters), len(categories)), expected)
        p = (1.0 + np.sum(null >= chi2 * (1 - 1e-9))) / (n_permutations + 1.0)
    overall = table.sum(0) / table.sum()
    typical = []
    for i, c in enumerate(clusters):
        j = int(np.argmax(table[i]))
        typical.append(CategoryShare(cluster=c, category=categories[j], count=int(table[i, j]),
                                     n=int(table[i].sum()),
                                     share=float(table[i, j] / table[i].sum()),
                                     overall_share=float(overall[j])))
    return FieldAssociation(
        field=name, source=source, kind="numeric" if numeric else "categorical",
        n_rows=len(vals), clusters=clusters, categories=list(categories),
        counts=table.tolist(), cramers_v=cramers_v(table, float(chi2)),
        adjusted_mutual_info=float(adjusted_mutual_info_score(rows, codes)), test=test,
        statistic=float(statistic), p_value=float(p), q_value=math.nan, associated=False,
        typical=typical)


def field_associations(fields: dict[str, tuple[str, Sequence[Any]]], labels: np.ndarray, *,
                       alpha: float = 0.05, n_bins: int = 5, max_levels: int = 10,
                       n_permutations: int = 1000,
                       rng: np.random.RandomState | None = None,
                       ) -> tuple[list[FieldAssociation], dict[str, str]]:
    """Every field's association with the clusters (see the module docstring).

    Args:
        fields: name -> (source, one value per row; ``None`` where a prompt lacks it).
        labels: cluster of each row (``-1``: noise, left out).

    Returns:
        ``(associations, skipped)``: associated fields first, then by Cramér's V; and the
        fields not tested, with the reason.
    """
    rng = rng if rng is not None else np.random.RandomState(0)
    labels = np.asarray(labels)
    out: list[FieldAssociation] = []
    skipped: dict[str, str] = {}
    for name, (source, values) in fields.items():
        try:
            out.append(_one_field(name, source, values, labels, n_bins=n_bins,
                                  max_levels=max_levels, n_permutations=n_permutations,
                                  rng=rng))
        except _Skip as why:
            skipped[name] = str(why)
    q = benjamini_hochberg(np.array([f.p_value for f in out]))
    for f, qv in zip(out, q):
        f.q_value = float(qv)
        f.associated = bool(qv <= alpha)
    out.sort(key=lambda f: (not f.associated,
                            -(f.cramers_v if math.isfinite(f.cramers_v) else -1.0), f.field))
    return out, skipped
