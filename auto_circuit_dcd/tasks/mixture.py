"""Mixtures of (task, prompt type) components with shares, and the named ones.

A component is written ``"task/prompt_type[:share]"`` (e.g. ``"entity_binding/2-comma:0.3"``);
shares are normalised and turned into whole counts by largest remainder, so a mixture
of ``n`` prompts has exactly ``n`` asked for. Named mixtures:

- ``entity-addition``: entity binding ``2-comma`` + addition ``2-operand``, half each
  (:func:`entity_addition` gives any entity share, for sweeps from 0 to 1);
- ``all-tasks``: IOI ``mixed``, ``letter``, ``3-person`` + sequence completion
  ``2-gram``, ``3-gram``, ``4-gram``, equal shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Component", "parse_component", "component_counts", "entity_addition", "MIXTURES"]


@dataclass(frozen=True)
class Component:
    """One (task, prompt type) of a dataset and its share of the prompts."""

    task: str
    prompt_type: str
    share: float = 1.0

    @property
    def group(self) -> str:
        return f"{self.task}/{self.prompt_type}"


def parse_component(spec: str) -> Component:
    """``"entity_binding/2-comma:0.3"`` -> Component("entity_binding", "2-comma", 0.3)."""
    body, _, share = spec.partition(":")
    task, sep, prompt_type = body.partition("/")
    if not sep or not task or not prompt_type:
        raise ValueError(f"mixture component {spec!r} must read 'task/prompt_type[:share]', "
                         "e.g. 'entity_binding/2-comma:0.3'")
    try:
        value = float(share) if share else 1.0
    except ValueError:
        raise ValueError(f"share {share!r} of component {spec!r} is not a number") from None
    if value < 0:
        raise ValueError(f"share of component {spec!r} must be >= 0")
    return Component(task.strip(), prompt_type.strip(), value)


def component_counts(components: Sequence[Component], n: int) -> list[int]:
    """Whole prompt counts summing to ``n`` in proportion to the shares (largest remainder)."""
    total = sum(c.share for c in components)
    if total <= 0:
        raise ValueError("mixture shares sum to 0: give at least one positive share")
    exact = [n * c.share / total for c in components]
    counts = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def entity_addition(entity_share: float) -> tuple[Component, Component]:
    """Entity binding 2-comma (share ``entity_share``) + 2-operand addition (the rest)."""
    if not 0.0 <= entity_share <= 1.0:
        raise ValueError(f"entity_share must be in [0, 1], got {entity_share}")
    return (Component("entity_binding", "2-comma", entity_share),
            Component("arithmetic", "2-operand", 1.0 - entity_share))


MIXTURES: dict[str, tuple[Component, ...]] = {
    "entity-addition": entity_addition(0.5),
    "all-tasks": tuple(Component("ioi", t) for t in ("mixed", "letter", "3-person"))
    + tuple(Component("sequence", t) for t in ("2-gram", "3-gram", "4-gram")),
}
