"""Entity binding prompts: which entity is in the box the query names?

"The egg is in box A, the fan is in box B. Box A contains the" -> " egg". The corrupted
prompt asks for a box that is not in the prompt ("Box C contains the"), so nothing
binds. Wrong answers are the other entities of the prompt.

Prompt types are ``"{k}-{sep}"`` with an optional ``"-colour"`` and ``"-q{j}"`` suffix:

- ``k`` in 2..8 entities;
- ``sep``: ``comma`` ("..., the fan is in box B.") or ``period`` ("... The fan is in box B.");
- ``-colour``: coloured boxes ("the egg is in the red box ... The red box contains the");
- ``-q{j}``: always query the j-th entity (1-based, j <= k); otherwise a random one.

Examples: ``2-comma``, ``3-period``, ``2-comma-colour``, ``8-comma-q3``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

from auto_circuit_dcd.tasks.common import (
    GenStats,
    check_pair,
    collect,
    make_prompt,
    one_token_words,
)
from auto_circuit_dcd.tasks.words import COLOURS, ENTITIES, LETTERS

__all__ = ["TASK", "PROMPT_TYPES", "DEFAULT_PROMPT_TYPES", "generate", "parse_prompt_type"]

TASK = "entity_binding"
_PATTERN = re.compile(r"^([2-8])-(comma|period)(-colour)?(?:-q([1-8]))?$")
PROMPT_TYPES = tuple(f"{k}-{sep}{c}" for k in range(2, 9) for sep in ("comma", "period")
                     for c in ("", "-colour"))  # plus "-q{j}" forms, see parse_prompt_type
DEFAULT_PROMPT_TYPES = ("2-comma",)


def parse_prompt_type(prompt_type: str) -> tuple[int, str, bool, int | None]:
    """``"8-comma-colour-q3"`` -> (8, "comma", True, 3)."""
    m = _PATTERN.match(prompt_type)
    if m is None:
        raise ValueError(f"unknown entity binding prompt type {prompt_type!r}: use "
                         "'{k}-{comma|period}[-colour][-q{j}]' with 2 <= k <= 8, e.g. "
                         "'2-comma', '3-period-colour', '8-comma-q3'")
    k, sep, colour, q = int(m.group(1)), m.group(2), bool(m.group(3)), m.group(4)
    if q is not None and not 1 <= int(q) <= k:
        raise ValueError(f"query position {q} of {prompt_type!r} must be between 1 and {k}")
    return k, sep, colour, None if q is None else int(q)


def _box(label: str, colour: bool, start: bool) -> str:
    if colour:
        return f"{'The' if start else 'the'} {label} box"
    return f"{'Box' if start else 'box'} {label}"


def _candidates(prompt_type: str, tokenizer: Any, rng: random.Random, stats: GenStats,
                entities: list[str], labels: list[str]) -> Iterator[dict | None]:
    k, sep, colour, q = parse_prompt_type(prompt_type)
    while True:
        ents = rng.sample(entities, k)
        boxes = rng.sample(labels, k + 1)  # the last one is not in the prompt
        clauses = [f"the {e} is in {_box(b, colour, False)}" for e, b in zip(ents, boxes)]
        joiner = ", " if sep == "comma" else ". "
        if sep == "period":
            clauses = [c[0].upper() + c[1:] for c in clauses]
        body = joiner.join(clauses)
        body = body[0].upper() + body[1:] + "."
        j = (q - 1) if q is not None else rng.randrange(k)
        clean = f"{body} {_box(boxes[j], colour, True)} contains the"
        corrupt = f"{body} {_box(boxes[k], colour, True)} contains the"
        answers = [" " + ents[j]]
        wrong = [" " + e for i, e in enumerate(ents) if i != j]
        ok = check_pair(tokenizer, clean, corrupt, answers, wrong, stats)
        yield make_prompt(TASK, prompt_type, clean, corrupt, answers, wrong) if ok else None


def generate(prompt_type: str, tokenizer: Any, n: int, rng: random.Random,
             stats: GenStats) -> list[dict[str, Any]]:
    """``n`` distinct entity binding prompts of one type."""
    k, _, colour, _ = parse_prompt_type(prompt_type)
    entities = one_token_words(tokenizer, ENTITIES, stats, "entities")
    labels = (one_token_words(tokenizer, COLOURS, stats, "colours") if colour
              else one_token_words(tokenizer, LETTERS, stats, "box letters"))
    if len(entities) < k or len(labels) < k + 1:
        raise ValueError(f"this tokenizer leaves {len(entities)} one-token entities and "
                         f"{len(labels)} box labels; {prompt_type!r} needs {k} and {k + 1}")
    stream = _candidates(prompt_type, tokenizer, rng, stats, entities, labels)
    return collect(stream, n, stats, max_tries=50 * n + 1000)
