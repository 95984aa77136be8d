"""Build a dataset file for one task or a mixture: generate, filter, split, write.

1. resolve the components: one task with its prompt types (equal shares), a named
   mixture (``all-tasks``, ``entity-addition``) or ``mixture`` with explicit
   ``"task/prompt_type[:share]"`` components;
2. give each component its count (largest remainder) and its own seeded generator, so
   a component's prompts depend only on the seed and its name;
3. with ``only_correct``, score candidates with the model (mu > 0 kept), drawing more
   until the count is met or 16x the count has been tried;
4. assign train/val/test within each group, shuffle, write auto-circuit JSON.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from auto_circuit_dcd.tasks import arithmetic, entity_binding, ioi, sequence
from auto_circuit_dcd.tasks.common import (
    DEFAULT_SPLIT,
    GenerationError,
    GenStats,
    assign_splits,
    component_rng,
    write_dataset,
)
from auto_circuit_dcd.tasks.mixture import MIXTURES, Component, component_counts, parse_component

__all__ = ["make_dataset", "generate_prompts", "GENERATORS", "DEFAULT_PROMPT_TYPES", "TASKS"]

Generator = Callable[[str, Any, int, random.Random, GenStats], list[dict[str, Any]]]

GENERATORS: dict[str, Generator] = {
    ioi.TASK: ioi.generate,
    entity_binding.TASK: entity_binding.generate,
    arithmetic.TASK: arithmetic.generate,
    sequence.TASK: sequence.generate,
}
DEFAULT_PROMPT_TYPES: dict[str, tuple[str, ...]] = {
    ioi.TASK: ioi.DEFAULT_PROMPT_TYPES,
    entity_binding.TASK: entity_binding.DEFAULT_PROMPT_TYPES,
    arithmetic.TASK: arithmetic.DEFAULT_PROMPT_TYPES,
    sequence.TASK: sequence.DEFAULT_PROMPT_TYPES,
}
TASKS: tuple[str, ...] = tuple(GENERATORS) + ("mixture",) + tuple(MIXTURES)
_MAX_OVERDRAW = 16


def resolve_components(task: str, prompt_types: Sequence[str] | None) -> list[Component]:
    """The components a ``(task, prompt_types)`` request stands for."""
    if task in GENERATORS:
        types = list(prompt_types or DEFAULT_PROMPT_TYPES[task])
        comps = [parse_component(t if "/" in t else f"{task}/{t}") for t in types]
        wrong = [c.group for c in comps if c.task != task]
        if wrong:
            raise GenerationError(f"prompt types {wrong} are not of task {task!r}")
    elif task == "mixture":
        if not prompt_types:
            raise GenerationError("task 'mixture' needs prompt types 'task/prompt_type[:share]', "
                                  "e.g. entity_binding/2-comma:0.3,arithmetic/2-operand:0.7")
        comps = [parse_component(t) for t in prompt_types]
    elif task in MIXTURES:
        if prompt_types:
            raise GenerationError(f"{task!r} is a named mixture with fixed components; use "
                                  "task 'mixture' to choose components and shares")
        comps = list(MIXTURES[task])
    else:
        raise GenerationError(f"unknown task {task!r}; use one of {TASKS}")
    unknown = sorted({c.task for c in comps} - set(GENERATORS))
    if unknown:
        raise GenerationError(f"unknown task(s) {unknown} in components; use {tuple(GENERATORS)}")
    groups = [c.group for c in comps]
    if len(set(groups)) != len(groups):
        raise GenerationError(f"prompt types repeat in {groups}: give each one once")
    return comps


def generate_prompts(component: Component, tokenizer: Any, n: int, seed: int,
                     model: Any = None, only_correct: bool = False,
                     ) -> tuple[list[dict[str, Any]], GenStats]:
    """``n`` prompts of one component (ids set), and what was dropped on the way."""
    gen = GENERATORS[component.task]
    if not only_correct:
        stats = GenStats()
        prompts = gen(component.prompt_type, tokenizer, n, component_rng(seed, component.group),
                      stats)
    else:
        from auto_circuit_dcd.tasks.scoring import logit_margins

        factor, prompts, stats = 2, [], GenStats()
        while True:
            stats = GenStats()
            pool = gen(component.prompt_type, tokenizer, n * factor,
                       component_rng(seed, component.group), stats)
            ok = (logit_margins(model, tokenizer, pool) > 0).tolist()
            prompts = [p for p, good in zip(pool, ok) if good][:n]
            if len(prompts) == n or factor >= _MAX_OVERDRAW or stats.short:
                break
            factor *= 2
        # Count only what was scored before the n-th kept prompt.
        last = next((i for i, p in enumerate(pool) if p is prompts[-1]), -1) if prompts else -1
        scored = len(pool) if len(prompts) < n else last + 1
        stats.incorrect = scored - len(prompts)
        stats.short = n - len(prompts)
    for i, p in enumerate(prompts):
        p["id"] = f"{component.group}/{i}"
    return prompts, stats


def make_dataset(
    task: str,
    prompt_types: list[str] | None,
    tokenizer: Any,
    n: int,
    seed: int,
    out: str | Path,
    split: tuple[float, float, float] = DEFAULT_SPLIT,
    model: Any = None,
    only_correct: bool = False,
) -> dict[str, Any]:
    """Generate ``n`` prompts, write them to ``out`` (auto-circuit JSON) and summarise.

    Args:
        task: ``ioi``, ``entity_binding``, ``arithmetic``, ``sequence``, a named mixture
            (``all-tasks``, ``entity-addition``) or ``mixture``.
        prompt_types: the task's prompt types (``None``: its defaults), or for
            ``mixture`` the components ``"task/prompt_type[:share]"``.
        tokenizer: a Hugging Face tokenizer; ``None`` takes the model's.
        n: prompts in all, split over the components by share (equal by default).
        seed: makes the file reproducible.
        out: the JSON file to write.
        split: train/val/test shares, applied within each group (per-prompt ``split``).
        model: a model name, ``HookedTransformer`` or ``PatchableModel``; needed for
            ``only_correct``.
        only_correct: keep only prompts the model answers correctly (mu > 0).

    Returns:
        ``{"out", "n", "requested", "counts", "dropped"}``: per group the counts asked
        for, the counts written per split, and what was dropped and why (see
        :class:`~auto_circuit_dcd.tasks.common.GenStats`).
    """
    if n < 1:
        raise GenerationError(f"n must be at least 1, got {n}")
    comps = resolve_components(task, prompt_types)
    if only_correct:
        if model is None:
            raise GenerationError("only_correct needs a model (give model=...)")
        from auto_circuit_dcd.tasks.scoring import as_model

        model = as_model(model)
    if tokenizer is None:
        tokenizer = getattr(model, "tokenizer", None) if not isinstance(model, str) else None
        if tokenizer is None:
            raise GenerationError("give a tokenizer (or a model that has one)")
    counts = component_counts(comps, n)
    prompts: list[dict[str, Any]] = []
    requested, dropped = {}, {}
    for comp, count in zip(comps, counts):
        requested[comp.group] = count
        if count == 0:
            continue
        got, stats = generate_prompts(comp, tokenizer, count, seed, model, only_correct)
        prompts.extend(got)
        dropped[comp.group] = stats.as_dict()
    if not prompts:
        raise GenerationError("no prompt could be generated: see the dropped counts")
    assign_splits(prompts, split, seed)
    random.Random(seed).shuffle(prompts)
    per_group: dict[str, dict[str, int]] = {}
    for p in prompts:
        g = per_group.setdefault(p["group"], {"train": 0, "val": 0, "test": 0, "total": 0})
        g[p["split"]] += 1
        g["total"] += 1
    summary = {"out": str(out), "n": len(prompts), "requested": requested,
               "counts": dict(sorted(per_group.items())), "dropped": dropped}
    meta = {
        "task": task, "prompt_types": list(prompt_types or []),
        "components": [{"task": c.task, "prompt_type": c.prompt_type, "share": c.share}
                       for c in comps],
        "seed": seed, "split": list(split), "only_correct": only_correct,
        "tokenizer": str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__)),
        "summary": {k: v for k, v in summary.items() if k != "out"},
    }
    write_dataset(prompts, out, meta)
    return summary
