"""The prompts behind the attribution rows: their text, their dataset fields, and features
derived from their tokens, one entry per row.

1. every row's example is found by its id (by value) among the tokenized examples (an
   ``ExampleLoader`` or a list of ``Example``), and among the dataset's prompt dicts when a
   dataset is given (its ``id`` field, else its index, as :mod:`auto_circuit_dcd.data`
   numbers them);
2. text: the dataset's strings; token-id prompts and examples without a dataset are
   decoded with the tokenizer when one is given (else shown as their ids);
3. fields: every key of the dataset's prompts other than the prompt pair, the answers and
   the id (``group``, ``template``, ``prompt_type``, ...); ``None`` where a prompt lacks
   one. Without a dataset: the examples' ``group`` and ``split``;
4. derived features (:data:`DERIVED`): token length, the answer token, the first position
   where clean and corrupted prompts differ and how many positions differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from auto_circuit_dcd.data import Example, ExampleLoader, read_prompts
from auto_circuit_dcd.explain.inputs import DescriptionError

__all__ = ["PromptTable", "prompt_table", "DERIVED", "PROMPT_KEYS"]

#: keys of a prompt that are the prompt itself, not a field describing it
PROMPT_KEYS = ("clean", "corrupt", "answers", "wrong_answers", "id")

Dataset = str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class PromptTable:
    """One entry per attribution row (``ids[i]`` is row ``i``'s example).

    ``fields`` / ``derived``: name -> one value per row (``None``: the prompt lacks it).
    """

    ids: list[Any]
    clean: list[str]
    corrupt: list[str]
    answers: list[list[str]]
    wrong_answers: list[list[str]]
    fields: dict[str, list[Any]]
    derived: dict[str, list[Any]]


def _first_divergence(e: Example) -> int | None:
    diff = torch.nonzero(e.clean != e.corrupt).flatten()
    return int(diff[0]) if diff.numel() else None


#: derived feature -> its value for one example (``answer_token`` is filled from the text)
DERIVED: dict[str, Callable[[Example], Any]] = {
    "token_length": lambda e: e.length,
    "divergence_position": _first_divergence,
    "n_diverging_tokens": lambda e: int((e.clean != e.corrupt).sum()),
}


def _decoder(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    if tokenizer is None:
        return lambda ids: " ".join(str(int(i)) for i in ids)
    bos = getattr(tokenizer, "bos_token_id", None)

    def decode(ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if ids and bos is not None and ids[0] == bos:
            ids = ids[1:]
        return str(tokenizer.decode(ids))
    return decode


def _text(value: Any, decode: Callable[[Sequence[int]], str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return decode([value])
    if isinstance(value, list) and value and isinstance(value[0], list):
        value = value[0]
    return decode(value)


def _dataset_by_id(dataset: Dataset) -> dict[Any, Mapping[str, Any]]:
    prompts: Sequence[Mapping[str, Any]]
    if isinstance(dataset, (str, Path)):
        prompts = read_prompts(dataset)
    elif isinstance(dataset, Mapping):
        prompts = read_prompts(dict(dataset))
    else:
        prompts = list(dataset)
    by_id: dict[Any, Mapping[str, Any]] = {}
    for i, p in enumerate(prompts):
        by_id[p.get("id", i)] = p
    return by_id


def _lookup(ids: Sequence[Any], table: Mapping[Any, Any], what: str) -> list[Any]:
    missing = [i for i in ids if i not in table]
    if missing:
        raise DescriptionError(
            f"{len(missing)} example id(s) of the attribution rows are not in the {what} "
            f"(first: {missing[:3]}): pass the examples / dataset the rows were computed on")
    return [table[i] for i in ids]


def prompt_table(ids: Sequence[Any], examples: ExampleLoader | Sequence[Example],
                 dataset: Dataset | None = None, tokenizer: Any = None) -> PromptTable:
    """The prompts of the rows ``ids``, with their fields and derived features.

    Args:
        ids: example id of each attribution row.
        examples: the tokenized examples the rows were computed on (an ``ExampleLoader``,
            e.g. the train loader of :func:`auto_circuit_dcd.data.prepare`, or its
            ``examples``).
        dataset: the auto-circuit JSON dataset they came from (a path, its loaded dict, or
            its list of prompt dicts): prompt text and per-prompt fields.
        tokenizer: decodes token ids (prompts given as ids, or no dataset).
    """
    pool = examples.examples if isinstance(examples, ExampleLoader) else list(examples)
    rows: list[Example] = _lookup(ids, {e.id: e for e in pool}, "examples")
    decode = _decoder(tokenizer)
    derived = {name: [f(e) for e in rows] for name, f in DERIVED.items()}
    if dataset is None:
        fields = {name: [getattr(e, name) for e in rows] for name in ("group", "split")}
        fields = {k: v for k, v in fields.items() if any(x is not None for x in v)}
        clean = [decode(e.clean.tolist()) for e in rows]
        corrupt = [decode(e.corrupt.tolist()) for e in rows]
        answers = [[decode([int(t)]) for t in e.answers] for e in rows]
        wrong = [[decode([int(t)]) for t in e.wrong_answers] for e in rows]
    else:
        prompts = _lookup(ids, _dataset_by_id(dataset), "dataset")
        names = list(dict.fromkeys(k for p in prompts for k in p if k not in PROMPT_KEYS))
        fields = {k: [p.get(k) for p in prompts] for k in names}
        clean = [_text(p["clean"], decode) for p in prompts]
        corrupt = [_text(p["corrupt"], decode) for p in prompts]
        answers = [[_text(a, decode) for a in p["answers"]] for p in prompts]
        wrong = [[_text(a, decode) for a in p["wrong_answers"]] for p in prompts]
    derived["answer_token"] = [a[0] if a else None for a in answers]
    return PromptTable(ids=list(ids), clean=clean, corrupt=corrupt, answers=answers,
                       wrong_answers=wrong, fields=fields, derived=derived)
