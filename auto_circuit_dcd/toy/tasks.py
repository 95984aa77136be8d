"""The toy model's two tasks, as prompt generators with "flip" corruptions.

- **IOI-like**: ``"When Mary and John went to the store , then John gave a drink to"``
  -> `` Mary`` (the name said once); wrong answer: the repeated name. The corruption
  swaps which name is repeated (``... then Mary gave a drink to``), so the answer flips.
  6 templates x 2 name orders (``ABBA``: the answer comes first; ``BABA``: second).
- **Induction**: 14 distinct symbols, then one of them again (the query); the answer is
  the symbol after the query's first occurrence. The corruption replaces that symbol
  with one absent from the prompt, which becomes the wrong answer.

Every prompt is 15 words (16 tokens with BOS) and every answer is one token. IOI test
prompts use name pairs held out *unordered* (both orders of a pair are unseen in
training), so that the test cannot be passed by memorising ordered pairs.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

from auto_circuit_dcd.toy.vocab import IOI_TEMPLATES, NAMES, PROMPT_WORDS, SYMBOLS

__all__ = [
    "TASKS", "NamePair", "name_pair_split", "ioi_prompt", "induction_prompt",
    "sample_ioi", "sample_induction", "sample_task",
]

TASKS: tuple[str, str] = ("ioi", "induction")
NamePair = tuple[str, str]


def name_pair_split(n_test: int = 30, seed: int = 0) -> tuple[list[NamePair], list[NamePair]]:
    """Unordered name pairs (sorted tuples) split into (train, test); deterministic."""
    pairs = list(itertools.combinations(sorted(NAMES), 2))
    if not 0 < n_test < len(pairs):
        raise ValueError(f"n_test must be in 1..{len(pairs) - 1}, got {n_test}")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    test = sorted(pairs[i] for i in order[:n_test])
    train = sorted(pairs[i] for i in order[n_test:])
    return train, test


def ioi_prompt(template: int, io: str, s: str, io_first: bool) -> dict[str, Any]:
    """One IOI prompt pair: ``io`` is the answer, ``s`` the repeated (wrong) name."""
    if io == s:
        raise ValueError("the two names of an IOI prompt must differ")
    a, b = (io, s) if io_first else (s, io)
    text = IOI_TEMPLATES[template]
    clean = text.format(A=a, B=b, S=s)
    corrupt = text.format(A=a, B=b, S=io)
    return {
        "clean": clean, "corrupt": corrupt,
        "answers": [" " + io], "wrong_answers": [" " + s],
        "group": "ioi", "task": "ioi", "prompt_type": "ABBA" if io_first else "BABA",
        "template": template,
    }


def induction_prompt(symbols: Sequence[str], first: int, replacement: str) -> dict[str, Any]:
    """One induction prompt pair.

    ``symbols``: 14 distinct symbols; ``first``: index (0..12) of the query's first
    occurrence; ``replacement``: a symbol not in ``symbols``, put after the first
    occurrence in the corrupt prompt.
    """
    n = PROMPT_WORDS - 1
    if len(symbols) != n or len(set(symbols)) != n:
        raise ValueError(f"induction needs {n} distinct symbols")
    if not 0 <= first < n - 1:
        raise ValueError(f"first must be in 0..{n - 2}")
    if replacement in symbols:
        raise ValueError("the replacement symbol must not occur in the prompt")
    seq = list(symbols) + [symbols[first]]
    bad = list(seq)
    bad[first + 1] = replacement
    return {
        "clean": " ".join(seq), "corrupt": " ".join(bad),
        "answers": [" " + seq[first + 1]], "wrong_answers": [" " + replacement],
        "group": "induction", "task": "induction",
        "prompt_type": "early" if first < (n - 1) // 2 else "late",
        "query_position": first,
    }


def sample_ioi(rng: random.Random, n: int, pairs: Sequence[NamePair]) -> list[dict[str, Any]]:
    """``n`` IOI prompts: random template, pair from ``pairs``, answer and order."""
    out = []
    for _ in range(n):
        x, y = pairs[rng.randrange(len(pairs))]
        io, s = (x, y) if rng.random() < 0.5 else (y, x)
        out.append(ioi_prompt(rng.randrange(len(IOI_TEMPLATES)), io, s, rng.random() < 0.5))
    return out


def sample_induction(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """``n`` induction prompts over the 40 symbols."""
    out = []
    for _ in range(n):
        picked = rng.sample(SYMBOLS, PROMPT_WORDS)
        out.append(induction_prompt(picked[:-1], rng.randrange(PROMPT_WORDS - 2), picked[-1]))
    return out


def sample_task(task: str, rng: random.Random, n: int,
                pairs: Sequence[NamePair] = ()) -> list[dict[str, Any]]:
    """``n`` prompts of ``task`` (``"ioi"`` needs ``pairs``)."""
    if task == "ioi":
        if not pairs:
            raise ValueError("IOI prompts need name pairs (see name_pair_split)")
        return sample_ioi(rng, n, pairs)
    if task == "induction":
        return sample_induction(rng, n)
    raise ValueError(f"unknown toy task {task!r}: use one of {TASKS}")
