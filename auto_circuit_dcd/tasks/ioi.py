"""Indirect object identification (IOI) prompts and their variants.

"Then, Mary and John went to the store. John gave a drink to" -> " Mary": the answer is
the name that is not repeated (the indirect object, IO); the wrong answer is the
repeated subject (S). Prompt types:

- ``ABBA`` (IO named first), ``BABA`` (S named first), ``mixed`` (half each, drawn per
  prompt);
- ``passive``: "... John was given a drink by" -> " Mary" (S is the recipient);
- ``3-person``: three names, two of them repeated as subjects; wrong answers are both;
- ``letter``: names replaced by "Person A".."Person Z"; the prompt ends with
  "Person" and the answer is the letter (" A");
- ``filler``: an extra distractor sentence before the final clause.

Corrupted prompts are "ABC" prompts: the same template with fresh names in every slot,
so no name is repeated and nothing points at the IO.
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
from auto_circuit_dcd.tasks.words import FILLERS, LETTERS, NAMES, OBJECTS, PLACES

__all__ = ["TASK", "PROMPT_TYPES", "DEFAULT_PROMPT_TYPES", "generate"]

TASK = "ioi"
PROMPT_TYPES = ("ABBA", "BABA", "mixed", "passive", "3-person", "letter", "filler")
DEFAULT_PROMPT_TYPES = ("ABBA", "BABA")

# {X} {Y}: the two names in order of first mention; {S}: the repeated subject.
_ACTIVE = (
    "Then, {X} and {Y} went to the {PLACE}. {S} gave a {OBJECT} to",
    "When {X} and {Y} went to the {PLACE}, {S} gave a {OBJECT} to",
    "After {X} and {Y} got a {OBJECT} at the {PLACE}, {S} decided to give it to",
    "While {X} and {Y} were working at the {PLACE}, {S} gave a {OBJECT} to",
    "Friends {X} and {Y} found a {OBJECT} at the {PLACE}. {S} gave it to",
    "The {PLACE} that {X} and {Y} went to had a {OBJECT}. {S} gave it to",
)
_PASSIVE = (
    "Then, {X} and {Y} went to the {PLACE}. {S} was given a {OBJECT} by",
    "When {X} and {Y} were at the {PLACE}, {S} was given a {OBJECT} by",
    "After {X} and {Y} went to the {PLACE}, {S} was handed a {OBJECT} by",
)
_THREE = (
    "Then, {X}, {Y} and {Z} went to the {PLACE}. {S} and {T} gave a {OBJECT} to",
    "When {X}, {Y} and {Z} went to the {PLACE}, {S} and {T} gave a {OBJECT} to",
    "After {X}, {Y} and {Z} got a {OBJECT} at the {PLACE}, {S} and {T} gave it to",
)
_FILLER = (
    "Then, {X} and {Y} went to the {PLACE}. {FILLER} {S} gave a {OBJECT} to",
    "When {X} and {Y} went to the {PLACE}, they stayed there. {FILLER} {S} gave a {OBJECT} to",
    "After {X} and {Y} got a {OBJECT} at the {PLACE}, they talked. {FILLER} {S} gave it to",
)


def _pair_candidates(templates, names: list[str], rng: random.Random, order: str | None,
                     stats: GenStats, tokenizer: Any, prompt_type: str, person: bool,
                     places: list[str], objects: list[str]) -> Iterator[dict | None]:
    """Two-name IOI candidates; ``order`` "ABBA", "BABA" or None (random per prompt)."""
    fmt = (lambda n: f"Person {n}") if person else (lambda n: n)
    while True:
        template = rng.choice(templates)
        io, s, c1, c2, c3 = rng.sample(names, 5)
        o = order or rng.choice(("ABBA", "BABA"))
        fill = dict(PLACE=rng.choice(places), OBJECT=rng.choice(objects),
                    FILLER=rng.choice(FILLERS))
        x, y = (io, s) if o == "ABBA" else (s, io)
        clean = template.format(X=fmt(x), Y=fmt(y), S=fmt(s), **fill)
        corrupt = template.format(X=fmt(c1), Y=fmt(c2), S=fmt(c3), **fill)
        if person:  # the answer is the letter after the final "Person"
            clean, corrupt = clean + " Person", corrupt + " Person"
        answers, wrong = [" " + io], [" " + s]
        ok = check_pair(tokenizer, clean, corrupt, answers, wrong, stats)
        yield make_prompt(TASK, prompt_type, clean, corrupt, answers, wrong) if ok else None


def _three_candidates(names: list[str], rng: random.Random, stats: GenStats, tokenizer: Any,
                      places: list[str], objects: list[str]) -> Iterator[dict | None]:
    while True:
        template = rng.choice(_THREE)
        io, s, t, c1, c2, c3, c4, c5 = rng.sample(names, 8)
        x, y, z = rng.sample([io, s, t], 3)
        fill = dict(PLACE=rng.choice(places), OBJECT=rng.choice(objects))
        clean = template.format(X=x, Y=y, Z=z, S=s, T=t, **fill)
        corrupt = template.format(X=c1, Y=c2, Z=c3, S=c4, T=c5, **fill)
        answers, wrong = [" " + io], [" " + s, " " + t]
        ok = check_pair(tokenizer, clean, corrupt, answers, wrong, stats)
        yield make_prompt(TASK, "3-person", clean, corrupt, answers, wrong) if ok else None


def generate(prompt_type: str, tokenizer: Any, n: int, rng: random.Random,
             stats: GenStats) -> list[dict[str, Any]]:
    """``n`` distinct IOI prompts of one type (fewer, counted in ``stats.short``, if the
    filtered vocabulary cannot make that many)."""
    if prompt_type not in PROMPT_TYPES:
        raise ValueError(f"unknown IOI prompt type {prompt_type!r}; use one of {PROMPT_TYPES}")
    places = one_token_words(tokenizer, PLACES, stats, "places")
    objects = one_token_words(tokenizer, OBJECTS, stats, "objects")
    if prompt_type == "letter":
        names = one_token_words(tokenizer, LETTERS, stats, "letters")
    else:
        names = one_token_words(tokenizer, NAMES, stats, "names")
    need = 8 if prompt_type == "3-person" else 5
    if len(names) < need or not places or not objects:
        raise ValueError(f"this tokenizer leaves {len(names)} one-token names, {len(places)} "
                         f"places and {len(objects)} objects: IOI {prompt_type} needs at least "
                         f"{need} names and one of each")
    if prompt_type == "3-person":
        stream = _three_candidates(names, rng, stats, tokenizer, places, objects)
    else:
        templates = {"passive": _PASSIVE, "filler": _FILLER}.get(prompt_type, _ACTIVE)
        order = prompt_type if prompt_type in ("ABBA", "BABA") else None
        stream = _pair_candidates(templates, names, rng, order, stats, tokenizer, prompt_type,
                                  prompt_type == "letter", places, objects)
    return collect(stream, n, stats, max_tries=50 * n + 1000)
