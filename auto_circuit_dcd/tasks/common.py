"""Helpers shared by the task generators: one-token filtering, prompt checks, splits, JSON.

Every generated prompt is a dict in auto-circuit's JSON format (``clean``, ``corrupt``,
``answers``, ``wrong_answers``) plus ``task``, ``prompt_type``, ``group``
(``"{task}/{prompt_type}"``), ``id`` and ``split``. Generators work from a tokenizer:

1. word lists are filtered to words that are one token in the form they are used in
   (usually with a leading space) and known to the tokenizer (not its unknown token);
   :class:`GenStats` counts what was dropped;
2. candidate prompts are checked (:func:`check_pair`): clean and corrupt prompts must
   have the same token length (``add_special_tokens=False``) and every answer must be
   one token; rejected candidates and duplicates are counted, never silently lost.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auto_circuit_dcd.errors import UserError
from auto_circuit_dcd.model.tokens import UnknownWordError, encode

__all__ = [
    "GenerationError",
    "GenStats",
    "n_tokens",
    "one_token_words",
    "check_pair",
    "make_prompt",
    "component_rng",
    "assign_splits",
    "split_counts",
    "write_dataset",
    "DEFAULT_SPLIT",
]

DEFAULT_SPLIT: tuple[float, float, float] = (0.6, 0.2, 0.2)
SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")


class GenerationError(UserError, ValueError):
    """A dataset that cannot be generated as asked; the message says what to change."""


@dataclass
class GenStats:
    """What a generator dropped on the way, per reason (all counts)."""

    dropped_words: dict[str, int] = field(default_factory=dict)  # word list -> words dropped
    length_mismatch: int = 0  # candidate prompts whose clean/corrupt lengths differ
    not_one_token: int = 0  # candidate prompts with a multi-token answer
    duplicates: int = 0  # candidates whose clean prompt was already drawn
    incorrect: int = 0  # prompts the model got wrong (only_correct)
    short: int = 0  # prompts asked for but not produced (pool exhausted)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dropped_words": dict(sorted(self.dropped_words.items())),
            "length_mismatch": self.length_mismatch,
            "not_one_token": self.not_one_token,
            "duplicates": self.duplicates,
            "incorrect": self.incorrect,
            "short": self.short,
        }


def n_tokens(tokenizer: Any, text: str) -> int:
    """Token count of ``text`` without special tokens; :class:`UnknownWordError` when the
    tokenizer does not know a word of it (see :mod:`auto_circuit_dcd.model.tokens`)."""
    return len(encode(tokenizer, text))


def _is_one_token(tokenizer: Any, text: str) -> bool:
    try:
        return n_tokens(tokenizer, text) == 1
    except UnknownWordError:
        return False


def one_token_words(
    tokenizer: Any, words: Sequence[str], stats: GenStats, list_name: str,
    prefix: str = " ", also_bare: bool = False,
) -> list[str]:
    """The words that are one token as ``prefix + word`` (and bare, if ``also_bare``).

    Order is kept; the number dropped is recorded in ``stats.dropped_words[list_name]``.
    """
    kept = []
    for w in words:
        ok = _is_one_token(tokenizer, prefix + w)
        if ok and also_bare:
            ok = _is_one_token(tokenizer, w)
        if ok:
            kept.append(w)
    stats.dropped_words[list_name] = stats.dropped_words.get(list_name, 0) + len(words) - len(kept)
    return kept


def check_pair(tokenizer: Any, clean: str, corrupt: str, answers: Sequence[str],
               wrong_answers: Sequence[str], stats: GenStats) -> bool:
    """True when the pair has equal token lengths and one-token answers; counts failures.

    A word of the prompt itself that the tokenizer does not know (a template word: every
    prompt would have it) is an error naming the prompt and the word.
    """
    if not all(_is_one_token(tokenizer, a) for a in list(answers) + list(wrong_answers)):
        stats.not_one_token += 1
        return False
    try:
        lengths = n_tokens(tokenizer, clean), n_tokens(tokenizer, corrupt)
    except UnknownWordError as err:
        raise GenerationError(f"prompt {err}: this task's templates need words the "
                              "tokenizer does not know; use another model's tokenizer "
                              "(e.g. --model smollm2-135m)") from None
    if lengths[0] != lengths[1]:
        stats.length_mismatch += 1
        return False
    return True


def make_prompt(task: str, prompt_type: str, clean: str, corrupt: str,
                answers: Sequence[str], wrong_answers: Sequence[str]) -> dict[str, Any]:
    """One prompt dict; ``id`` and ``split`` are filled in later."""
    return {
        "clean": clean,
        "corrupt": corrupt,
        "answers": list(answers),
        "wrong_answers": list(wrong_answers),
        "task": task,
        "prompt_type": prompt_type,
        "group": f"{task}/{prompt_type}",
    }


def collect(candidates: Iterable[dict[str, Any] | None], n: int, stats: GenStats,
            max_tries: int) -> list[dict[str, Any]]:
    """The first ``n`` valid prompts with distinct clean prompts (``None`` = rejected).

    Stops after ``max_tries`` candidates; what is missing is counted in ``stats.short``.
    Taking a prefix of the stream keeps smaller requests a prefix of larger ones.
    """
    out: list[dict[str, Any]] = []
    seen = set()
    for tries, cand in enumerate(candidates):
        if len(out) >= n or tries >= max_tries:
            break
        if cand is None:
            continue
        key = cand["clean"]  # a clean prompt twice would leak across splits
        if key in seen:
            stats.duplicates += 1
            continue
        seen.add(key)
        out.append(cand)
    stats.short += n - len(out)
    return out


def component_rng(seed: int, name: str) -> random.Random:
    """A generator for one (task, prompt type) that depends only on ``seed`` and ``name``."""
    return random.Random((int(seed) << 32) ^ zlib.crc32(name.encode()))


def split_counts(n: int, split: Sequence[float]) -> tuple[int, int, int]:
    """Train/val/test sizes for ``n`` prompts (rounded; test takes the remainder)."""
    if len(split) != 3 or any(s < 0 for s in split) or abs(sum(split) - 1.0) > 1e-6:
        raise GenerationError(f"split must be three non-negative shares summing to 1, got {split}")
    n_train = int(round(n * split[0]))
    n_val = min(n - n_train, int(round(n * split[1])))
    return n_train, n_val, n - n_train - n_val


def assign_splits(prompts: list[dict[str, Any]], split: Sequence[float], seed: int) -> None:
    """Set each prompt's ``split`` field, in place, with the given shares within each group."""
    by_group: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        by_group.setdefault(p["group"], []).append(i)
    for group in sorted(by_group):
        idx = list(by_group[group])
        component_rng(seed, "split:" + group).shuffle(idx)
        n_train, n_val, _ = split_counts(len(idx), split)
        for rank, i in enumerate(idx):
            prompts[i]["split"] = ("train" if rank < n_train
                                   else "val" if rank < n_train + n_val else "test")


def write_dataset(prompts: list[dict[str, Any]], out: str | Path,
                  meta: dict[str, Any] | None = None) -> Path:
    """Write ``{"prompts": [...], "meta": {...}}`` (auto-circuit's format) atomically."""
    from auto_circuit_dcd.files import write_text

    return write_text(out, json.dumps({"prompts": prompts, "meta": meta or {}}, indent=1))
