"""Addition prompts: "{A} + {B} = " -> "{A+B}", symbolic or in words.

Prompt types:

- ``2-operand``: "{a} + {b} = "; ``3-operand``: "{a} + {b} + {c} = ";
- ``verbal-addition``: "Question: What is the addition of {a} and {b}? Answer: ";
- ``verbal-sum``: "Question: What is the sum of {a} and {b}? Answer: ";
- ``verbal-plus``: "Question: How much is {a} plus {b}? Answer: ".

Operands are 0..500 and sums at most 999. The answer is written without a leading space
(the prompt ends with one) and must be one token: sums whose text is several tokens are
dropped up front (``stats.dropped_words["sums"]``) and prompts are drawn sum first, so a
tokenizer that splits numbers into digits still gets prompts (with single-digit sums).
The corrupted prompt has other operands of the same token lengths and a different
sum, which is the wrong answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from auto_circuit_dcd.tasks.common import (
    GenStats,
    check_pair,
    collect,
    make_prompt,
    one_token_words,
)

__all__ = ["TASK", "PROMPT_TYPES", "DEFAULT_PROMPT_TYPES", "generate", "MAX_OPERAND", "MAX_SUM"]

TASK = "arithmetic"
MAX_OPERAND = 500
MAX_SUM = 999
_TEMPLATES = {
    "2-operand": "{0} + {1} = ",
    "3-operand": "{0} + {1} + {2} = ",
    "verbal-addition": "Question: What is the addition of {0} and {1}? Answer: ",
    "verbal-sum": "Question: What is the sum of {0} and {1}? Answer: ",
    "verbal-plus": "Question: How much is {0} plus {1}? Answer: ",
}
PROMPT_TYPES = tuple(_TEMPLATES)
DEFAULT_PROMPT_TYPES = ("2-operand",)


def _operands(total: int, k: int, rng: random.Random) -> list[int]:
    """``k`` operands in 0..MAX_OPERAND summing to ``total`` (one is drawn at a time)."""
    out = []
    for left in range(k, 1, -1):
        lo = max(0, total - MAX_OPERAND * (left - 1))
        hi = min(MAX_OPERAND, total)
        a = rng.randint(lo, hi)
        out.append(a)
        total -= a
    out.append(total)
    rng.shuffle(out)
    return out


def _feasible(total: int, k: int) -> bool:
    return 0 <= total <= MAX_OPERAND * k


def _candidates(prompt_type: str, tokenizer: Any, rng: random.Random, stats: GenStats,
                sums: list[int]) -> Iterator[dict | None]:
    template = _TEMPLATES[prompt_type]
    k = template.count("{")
    sums = [s for s in sums if _feasible(s, k)]
    while True:
        s, s_bad = rng.sample(sums, 2)
        ops, ops_bad = _operands(s, k, rng), _operands(s_bad, k, rng)
        clean, corrupt = template.format(*ops), template.format(*ops_bad)
        answers, wrong = [str(s)], [str(s_bad)]
        ok = check_pair(tokenizer, clean, corrupt, answers, wrong, stats)
        yield make_prompt(TASK, prompt_type, clean, corrupt, answers, wrong) if ok else None


def generate(prompt_type: str, tokenizer: Any, n: int, rng: random.Random,
             stats: GenStats) -> list[dict[str, Any]]:
    """``n`` distinct addition prompts of one type."""
    if prompt_type not in _TEMPLATES:
        raise ValueError(f"unknown arithmetic prompt type {prompt_type!r}; use one of "
                         f"{PROMPT_TYPES}")
    sums = [int(s) for s in one_token_words(
        tokenizer, [str(i) for i in range(MAX_SUM + 1)], stats, "sums", prefix="")]
    if len(sums) < 2:
        raise ValueError("this tokenizer has fewer than two sums 0..999 that are one token")
    stream = _candidates(prompt_type, tokenizer, rng, stats, sums)
    return collect(stream, n, stats, max_tries=50 * n + 1000)
