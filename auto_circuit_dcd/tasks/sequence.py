"""Sequence completion: induction over a repeated list of one-token names.

"Names: Mary, John, Anna, Tom, Lucy, Paul. Names: Mary, John," -> " Anna". A list of
distinct names is shown, then its start is repeated; the answer is the name that
followed in the first list. Prompt type ``"{m}-gram"`` (m = 2, 3, 4) repeats the first
m - 1 names, so the model must complete an m-gram seen earlier. Wrong answers are the
other names of the list. The corrupted prompt repeats fresh names instead (same
length, nothing to copy).
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
from auto_circuit_dcd.tasks.words import NAMES

__all__ = ["TASK", "PROMPT_TYPES", "DEFAULT_PROMPT_TYPES", "generate", "LIST_LENGTH"]

TASK = "sequence"
PROMPT_TYPES = ("2-gram", "3-gram", "4-gram")
DEFAULT_PROMPT_TYPES = PROMPT_TYPES
LIST_LENGTH = 6
_PATTERN = re.compile(r"^([2-5])-gram$")


def _candidates(prompt_type: str, m: int, tokenizer: Any, rng: random.Random, stats: GenStats,
                names: list[str]) -> Iterator[dict | None]:
    while True:
        seq = rng.sample(names, LIST_LENGTH + m - 1)
        first, fresh = seq[:LIST_LENGTH], seq[LIST_LENGTH:]
        head = "Names: " + ", ".join(first) + ". Names: "
        clean = head + "".join(f"{w}, " for w in first[:m - 1]).rstrip()
        corrupt = head + "".join(f"{w}, " for w in fresh).rstrip()
        answers = [" " + first[m - 1]]
        wrong = [" " + w for i, w in enumerate(first) if i != m - 1]
        ok = check_pair(tokenizer, clean, corrupt, answers, wrong, stats)
        yield make_prompt(TASK, prompt_type, clean, corrupt, answers, wrong) if ok else None


def generate(prompt_type: str, tokenizer: Any, n: int, rng: random.Random,
             stats: GenStats) -> list[dict[str, Any]]:
    """``n`` distinct sequence-completion prompts of one type."""
    match = _PATTERN.match(prompt_type)
    if match is None:
        raise ValueError(f"unknown sequence prompt type {prompt_type!r}; use one of "
                         f"{PROMPT_TYPES} (or '5-gram')")
    m = int(match.group(1))
    # Names stand after "Names: " or ", " (with a space) and are answers with a space.
    names = one_token_words(tokenizer, NAMES, stats, "names")
    if len(names) < LIST_LENGTH + m - 1:
        raise ValueError(f"this tokenizer leaves {len(names)} one-token names; "
                         f"{prompt_type} needs {LIST_LENGTH + m - 1}")
    stream = _candidates(prompt_type, m, tokenizer, rng, stats, names)
    return collect(stream, n, stats, max_tries=50 * n + 1000)
