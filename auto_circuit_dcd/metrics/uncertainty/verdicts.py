"""The method's claims as verdicts, and warnings when a group is too small to judge.

Each :class:`Verdict` is ``"holds"``, ``"does not hold"`` or ``"not distinguishable"`` at the
run's level, with the numbers and intervals behind it (:class:`Evidence`):

- **(a) own beats single** (:func:`verdicts_from_comparisons` on the own-vs-single
  family), per size: *holds* when every cluster's own circuit is marked better than the
  single circuit on its group (each comparison at the level after the family's Holm
  correction: a claim that needs every part to hold is an intersection, and showing each
  part at level alpha shows the whole at level alpha: Berger's intersection-union test);
  *does not hold* when some cluster's own circuit is marked worse; else not
  distinguishable;
- **(c) DCD routed beats K-random routed**, per size and on CPR: *holds* when marked
  better, *does not hold* when marked worse;
- **(b) separate mechanisms** (:func:`separate_mechanisms`) at one size: every
  cross-faithfulness between two clusters low (interval wholly below ``Thresholds.low``)
  while the single circuit is faithful on every group (interval wholly at or above
  ``Thresholds.faithful``). *Holds* when every part does (intersection-union again: each
  part's interval at the level); *does not hold* when some part is shown on the wrong
  side, using intervals at level ``1 - alpha / m`` for the ``m`` parts (Bonferroni: any
  one of ``m`` parts could refute it, so each gets ``alpha / m``); else not
  distinguishable.

Thresholds (:class:`Thresholds`): *faithful* means f >= 0.8 (the circuit keeps at least
four fifths of the gap between the empty circuit and the full model) and *low* means
f < 0.2 (at most a fifth), symmetric about the middle so that no value is both and the
band between is called neither.

**Too few examples** (:func:`sample_size_warning`): a group's intervals mean little when it
has fewer than ``Thresholds.min_examples`` = 10 test examples (measured: with 5, nominal
95% intervals held the true ratio 92% of the time and the sign-flip test cannot reject at
all, its smallest p-value being 2/32; with 10, 95-96%; ``docs/uncertainty.md``), or when
its interval at the run's size is wider than ``+-Thresholds.target_half_width`` = 0.1 (too
wide to tell apart the differences the claims are about). A half-width shrinks as ``1 /
sqrt(n)``, so ``n * (half_width / target)^2`` examples would bring it to the target. The
warning gives the larger of that and the minimum, and the prompts to ask for: that number
divided by the group's share of the test split and by the test fraction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from auto_circuit_dcd.metrics.uncertainty.bootstrap import Interval
from auto_circuit_dcd.metrics.uncertainty.families import ComparisonFamily, CrossIntervals

__all__ = ["Thresholds", "Evidence", "Verdict", "SampleSizeWarning", "OUTCOMES",
           "verdicts_from_comparisons", "separate_mechanisms", "sample_size_warning"]

#: what a verdict can say
OUTCOMES = ("holds", "does not hold", "not distinguishable")


@dataclass(frozen=True)
class Thresholds:
    """What "faithful", "low" and "too few examples" mean (module docstring)."""

    faithful: float = 0.8
    low: float = 0.2
    min_examples: int = 10
    target_half_width: float = 0.1

    def __post_init__(self) -> None:
        if not self.low < self.faithful:
            raise ValueError(f"the 'low' threshold ({self.low}) must lie below the "
                             f"'faithful' one ({self.faithful})")
        if self.min_examples < 2 or self.target_half_width <= 0:
            raise ValueError("min_examples must be at least 2 and target_half_width positive")


@dataclass
class Evidence:
    """One part of a verdict: a value with its interval, the reference it is held against
    (0 for a difference, a threshold), the adjusted p-value where a test was made, and
    ``status``: ``"above"`` / ``"below"`` the reference, or ``"undecided"``."""

    what: str
    estimate: float
    low: float
    high: float
    reference: float
    p_adjusted: float | None
    status: str


@dataclass
class Verdict:
    """A claim of the method at a size (None: on CPR), and what the data say about it."""

    claim: str
    statement: str
    size: float | None
    outcome: str
    level: float
    rule: str
    evidence: list[Evidence]
    note: str


@dataclass
class SampleSizeWarning:
    """A group too small for its intervals to mean much, and how many prompts to ask for.

    ``n_needed``: test examples the group needs; ``prompts_needed``: dataset size to ask
    for (``None`` when it cannot be derived: no example of the group in the test split, or
    no test fraction given)."""

    label: int
    n_examples: int
    half_width: float
    n_needed: int
    prompts_needed: int | None
    message: str


_STATUS = {"better": "above", "worse": "below", "not distinguishable": "undecided"}


def verdicts_from_comparisons(family: ComparisonFamily, claim: str,
                              statement: str) -> list[Verdict]:
    """One verdict per size (and on CPR) of a family of ``a - b`` comparisons: holds when
    every comparison at that size is marked better, does not hold when one is marked
    worse, else not distinguishable."""
    sizes: dict[float | None, list] = {}
    for c in family.comparisons:
        sizes.setdefault(c.size, []).append(c)
    out = []
    for size, comps in sizes.items():
        marks = [c.mark for c in comps]
        outcome = ("holds" if marks and all(m == "better" for m in marks) else
                   "does not hold" if "worse" in marks else "not distinguishable")
        evidence = [Evidence(what=f"{c.a} - {c.b}", estimate=c.difference.estimate,
                             low=c.difference.low, high=c.difference.high, reference=0.0,
                             p_adjusted=c.p_adjusted, status=_STATUS[c.mark]) for c in comps]
        notes = [f"{c.a} vs {c.b}: {c.note}" for c in comps if c.note]
        out.append(Verdict(
            claim=claim, statement=statement, size=size, outcome=outcome, level=family.level,
            rule=(f"holds when every comparison is better (difference > 0: adjusted p < "
                  f"{1 - family.level:.3g} and its {family.level:.0%} interval above 0), does "
                  f"not hold when one is worse; {family.test}; {family.correction}"),
            evidence=evidence, note="; ".join(notes)))
    return out


def _status(low: float, high: float, reference: float) -> str:
    if low >= reference:
        return "above"
    if high < reference:
        return "below"
    return "undecided"


def separate_mechanisms(cross: CrossIntervals, single_on_group: Mapping[int, Interval],
                        thresholds: Thresholds, level: float,
                        strict_cross: CrossIntervals | None = None,
                        strict_single: Mapping[int, Interval] | None = None) -> Verdict:
    """Claim (b) at ``cross.p``: low cross-faithfulness between clusters while the single
    circuit is faithful on every group. ``cross``, ``single_on_group`` at ``level``;
    ``strict_*``: the same statistics at ``1 - (1 - level) / m`` (m = the number of parts),
    used to refute; without them the refuting side uses the level's intervals (noted)."""
    labels = cross.labels
    k = len(labels)
    parts = []  # (evidence, wanted status, strict low, strict high)
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            ev = Evidence(what=f"cross[{labels[i]}][{labels[j]}]: circuit of cluster "
                               f"{labels[i]} on cluster {labels[j]}'s examples",
                          estimate=cross.estimate[i][j], low=cross.low[i][j],
                          high=cross.high[i][j], reference=thresholds.low, p_adjusted=None,
                          status=_status(cross.low[i][j], cross.high[i][j], thresholds.low))
            src = strict_cross or cross
            parts.append((ev, "below", src.low[i][j], src.high[i][j]))
    for lab in labels:
        iv = single_on_group[lab]
        ev = Evidence(what=f"single circuit on cluster {lab}'s examples", estimate=iv.estimate,
                      low=iv.low, high=iv.high, reference=thresholds.faithful, p_adjusted=None,
                      status=_status(iv.low, iv.high, thresholds.faithful))
        s = (strict_single or single_on_group)[lab]
        parts.append((ev, "above", s.low, s.high))
    m = len(parts)
    holds = k > 1 and all(ev.status == want for ev, want, _, _ in parts)
    refuted = any(_status(lo, hi, ev.reference) not in (want, "undecided")
                  for ev, want, lo, hi in parts)
    notes = []
    if k < 2:
        notes.append("one cluster: there is no pair of clusters to compare")
    if strict_cross is None or strict_single is None:
        notes.append("refuting parts judged on the level's intervals, not Bonferroni's")
    nan = [ev.what for ev, *_ in parts if not np.isfinite([ev.low, ev.high]).all()]
    if nan:
        notes.append(f"no interval (no test examples?) for: {'; '.join(nan)}")
    return Verdict(
        claim="separate mechanisms",
        statement=(f"low cross-faithfulness between clusters (< {thresholds.low:g}) while the "
                   f"single circuit stays faithful (>= {thresholds.faithful:g}) on every group"),
        size=cross.p, level=level,
        outcome="holds" if holds else "does not hold" if refuted else "not distinguishable",
        rule=(f"holds when every cross-faithfulness interval ({level:.0%}) lies below "
              f"{thresholds.low:g} and every single-on-group interval at or above "
              f"{thresholds.faithful:g} (intersection-union: no correction); does not hold "
              f"when one of the {m} parts lies wholly on the wrong side of its threshold at "
              f"level 1 - {1 - level:.3g}/{m} (Bonferroni)"),
        evidence=[ev for ev, *_ in parts], note="; ".join(notes))


def sample_size_warning(label: int, n_examples: int, half_width: float, n_test: int,
                        thresholds: Thresholds,
                        test_fraction: float | None = None) -> SampleSizeWarning | None:
    """A warning when ``n_examples`` (the group's test examples, of ``n_test``) is below
    ``thresholds.min_examples`` or its interval's ``half_width`` exceeds the target; None
    otherwise."""
    target = thresholds.target_half_width
    wide = np.isfinite(half_width) and half_width > target
    if n_examples >= thresholds.min_examples and not wide and np.isfinite(half_width):
        return None
    by_width = math.ceil(n_examples * (half_width / target) ** 2) if wide else 0
    n_needed = max(thresholds.min_examples, by_width)
    prompts = None
    if n_examples > 0 and n_test > 0 and test_fraction:
        prompts = math.ceil(n_needed * n_test / n_examples / test_fraction)
    why = (f"fewer than {thresholds.min_examples} test examples"
           if n_examples < thresholds.min_examples else
           f"interval half-width {half_width:.3f} above {target:g}" if wide else
           "no interval could be computed")
    ask = (f"ask for about {prompts} prompts (so that about {n_needed} of this cluster's land "
           f"in the test split at its share {n_examples}/{n_test} and test fraction "
           f"{test_fraction:g})" if prompts is not None else
           f"it needs about {n_needed} test examples")
    return SampleSizeWarning(
        label=int(label), n_examples=int(n_examples),
        half_width=float(half_width), n_needed=int(n_needed), prompts_needed=prompts,
        message=f"cluster {label}: {n_examples} test examples, {why}: its intervals mean "
                f"little; {ask}")
