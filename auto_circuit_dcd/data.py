"""Load auto-circuit's JSON prompt datasets into loaders that lose no example.

auto-circuit's ``PromptDataLoader`` always drops the last partial batch, carries no
example ids and left-pads prompts of different lengths. This module:

1. reads the same JSON format (``prompts`` with ``clean``, ``corrupt``, ``answers``,
   ``wrong_answers``; strings or token ids) plus optional per-prompt fields: a group
   label (``group`` by default), an ``id`` and a ``split`` (train/val/test);
2. tokenizes every prompt alone (BOS prepended, as auto-circuit does), checks each pair
   (no word the tokenizer does not know, equal clean/corrupt lengths, one-token answers)
   and names the prompt at fault: by its ``id`` field, else by its position counting
   from 1 (:func:`prompt_name`);
3. batches examples by token length, so no padding and no shared KV cache is ever
   needed, and keeps every example: the last batch of each length may be smaller;
4. returns :class:`ExampleLoader`, a real ``PromptDataLoader`` (drop-in for
   auto-circuit's functions) that also knows each batch's example ids and groups, and
   yields its batches on a given device (auto-circuit's algorithms index the model's
   device with them); :func:`batch_to` moves any loader's batch where the model is;
5. :func:`check_split_sizes` refuses a training split too small to cluster and warns
   about one too small for the clusters tried, naming how many prompts to ask for.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from auto_circuit.data import PromptDataLoader, PromptPair, PromptPairBatch, collate_fn
from torch.utils.data import DataLoader, Sampler

from auto_circuit_dcd.errors import UserError
from auto_circuit_dcd.model.tokens import UnknownWordError, encode

__all__ = [
    "Example",
    "DatasetError",
    "ExampleLoader",
    "read_prompts",
    "tokenize_examples",
    "make_loader",
    "load_examples",
    "split_examples",
    "prepare",
    "batch_to",
    "prompt_name",
    "check_split_sizes",
    "SmallSplitWarning",
]


class DatasetError(UserError, ValueError):
    """A dataset that cannot be scored as it is; the message says what to change."""


class SmallSplitWarning(UserWarning):
    """A training split with fewer prompts than the clusters tried need."""


def prompt_name(prompt: dict[str, Any], position: int, total: int) -> str:
    """How an error names a prompt: ``prompt id 'p-7' (number 8 of 40)`` by its ``id``
    field, else ``prompt number 8 of 40 (counting from 1; it has no 'id')``;
    ``position`` counts from 0, as Python does."""
    if isinstance(prompt, dict) and "id" in prompt:
        return f"prompt id {prompt['id']!r} (number {position + 1} of {total})"
    return f"prompt number {position + 1} of {total} (counting from 1; it has no 'id')"


@dataclass(frozen=True)
class Example:
    """One tokenized prompt pair. ``answers``/``wrong_answers`` are 1-D token-id tensors."""

    id: Any
    clean: torch.Tensor
    corrupt: torch.Tensor
    answers: torch.Tensor
    wrong_answers: torch.Tensor
    group: str | None = None
    split: str | None = None

    @property
    def length(self) -> int:
        return int(self.clean.shape[0])


# ----------------------------------------------------------------------------- reading
def read_prompts(source: str | Path | dict[str, Any]) -> list[dict[str, Any]]:
    """The list of prompt dicts of an auto-circuit JSON file (or an already-loaded dict)."""
    if isinstance(source, dict):
        data = source
        where = "the given dict"
    else:
        path = Path(source)
        if not path.exists():
            raise DatasetError(f"dataset file {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path} is not valid JSON: {err}") from err
        where = str(path)
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, list):
        raise DatasetError(
            f"{where} has no 'prompts' list: auto-circuit's format is "
            '{"prompts": [{"clean": ..., "corrupt": ..., "answers": [...], '
            '"wrong_answers": [...]}, ...]}'
        )
    if not prompts:
        raise DatasetError(f"{where} has an empty 'prompts' list: nothing to score")
    for i, p in enumerate(prompts):
        if not isinstance(p, dict):
            raise DatasetError(f"{prompt_name(p, i, len(prompts))} of {where} is not an "
                               "object with 'clean', 'corrupt', 'answers', 'wrong_answers'")
        missing = [k for k in ("clean", "corrupt", "answers", "wrong_answers") if k not in p]
        if missing:
            raise DatasetError(f"{prompt_name(p, i, len(prompts))} of {where} lacks {missing}")
    return prompts


def _tokenize_text(tokenizer: Any, text: Any, where: str = "a prompt") -> list[int]:
    if isinstance(text, list):  # pre-tokenized
        if text and isinstance(text[0], list):
            if len(text) != 1:
                raise DatasetError("pre-tokenized prompts must be one list of token ids")
            text = text[0]
        return [int(t) for t in text]
    if tokenizer is None:
        raise DatasetError("prompts are strings but the model has no tokenizer: "
                           "give token ids instead")
    try:
        return encode(tokenizer, text)
    except UnknownWordError as err:
        raise DatasetError(f"{where}: {err}. Use words in the tokenizer's vocabulary, or "
                           "give token ids") from None


def _answer_ids(tokenizer: Any, answers: Any, name: str, key: str) -> torch.Tensor:
    if not isinstance(answers, list) or not answers:
        raise DatasetError(f"{name}: '{key}' must be a non-empty list")
    ids = []
    for a in answers:
        if isinstance(a, int):
            ids.append(a)
            continue
        toks = _tokenize_text(tokenizer, a, f"{name}, {key[:-1].replace('_', ' ')}")
        if len(toks) != 1:
            raise DatasetError(
                f"{name}: {key[:-1].replace('_', ' ')} {a!r} is {len(toks)} tokens "
                f"({toks}); every answer must be exactly one token (a leading space "
                "often makes a word one token; or give token ids)"
            )
        ids.append(toks[0])
    return torch.tensor(ids, dtype=torch.long)


def tokenize_examples(
    prompts: Sequence[dict[str, Any]],
    tokenizer: Any,
    prepend_bos: bool = True,
    label_field: str | None = "group",
) -> list[Example]:
    """Tokenize and check every prompt pair; the error names the first bad prompt."""
    bos: list[int] = []
    if prepend_bos and any(not isinstance(p["clean"], list) for p in prompts):
        if tokenizer is None or getattr(tokenizer, "bos_token_id", None) is None:
            raise DatasetError("prepend_bos=True needs a tokenizer with a BOS token "
                               "(or pass prepend_bos=False)")
        bos = [int(tokenizer.bos_token_id)]
    examples = []
    for i, p in enumerate(prompts):
        name = prompt_name(p, i, len(prompts))
        # Pre-tokenized prompts are taken as they are (auto-circuit does the same).
        pre = isinstance(p["clean"], list)
        clean = (bos if not pre else []) + _tokenize_text(tokenizer, p["clean"],
                                                          f"{name}, clean")
        corrupt = (bos if not pre else []) + _tokenize_text(tokenizer, p["corrupt"],
                                                            f"{name}, corrupt")
        if len(clean) != len(corrupt):
            raise DatasetError(
                f"{name}: clean and corrupt prompts have different token lengths "
                f"({len(clean)} vs {len(corrupt)}): clean={p['clean']!r}, "
                f"corrupt={p['corrupt']!r}. Edge patching needs aligned positions: "
                "choose corruptions that tokenize to the same length."
            )
        if len(clean) == 0:
            raise DatasetError(f"{name} is empty")
        group = p.get(label_field) if label_field else None
        examples.append(Example(
            id=p.get("id", i),
            clean=torch.tensor(clean, dtype=torch.long),
            corrupt=torch.tensor(corrupt, dtype=torch.long),
            answers=_answer_ids(tokenizer, p["answers"], name, "answers"),
            wrong_answers=_answer_ids(tokenizer, p["wrong_answers"], name, "wrong_answers"),
            group=None if group is None else str(group),
            split=p.get("split"),
        ))
    numbers: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        numbers.setdefault(str(e.id), []).append(i + 1)
    repeated = {k: v for k, v in numbers.items() if len(v) > 1}
    if repeated:
        first = next(iter(repeated))
        raise DatasetError(f"prompt 'id' fields must be unique: {len(repeated)} id(s) repeat, "
                           f"e.g. {first!r} at prompt numbers {repeated[first][:5]} (counting "
                           "from 1)")
    return examples


# ----------------------------------------------------------------------------- devices
def batch_to(batch: PromptPairBatch, device: Any) -> PromptPairBatch:
    """``batch`` with its prompts and answers on ``device`` (the same key); ``batch``
    itself when they are already there or ``device`` is ``None``."""
    if device is None:
        return batch
    device = torch.device(device)

    def move(x: Any) -> Any:
        if isinstance(x, list):
            return [t.to(device) for t in x]
        return x.to(device)

    answers = [t for a in (batch.answers, batch.wrong_answers)
               for t in (a if isinstance(a, list) else [a])]
    tensors = [batch.clean, batch.corrupt] + answers
    if all(t.device == device for t in tensors):
        return batch
    return PromptPairBatch(batch.key, batch.batch_diverge_idx, move(batch.clean),
                           move(batch.corrupt), move(batch.answers), move(batch.wrong_answers))


def _collate_to(device: Any, pairs: list[PromptPair]) -> PromptPairBatch:
    return batch_to(collate_fn(pairs), device)  # the key is hashed from CPU tensors


# ----------------------------------------------------------------------------- loader
class _FixedBatches(Sampler[list[int]]):
    """Fixed batches of equal-length examples, in a deterministic order."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter([list(b) for b in self.batches])

    def __len__(self) -> int:
        return len(self.batches)


class _ExampleDataset(torch.utils.data.Dataset):
    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, idx: int) -> PromptPair:
        e = self.examples[idx]
        return PromptPair(e.clean, e.corrupt, e.answers, e.wrong_answers)


def _length_batches(examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    by_len: dict[int, list[int]] = {}
    for i, e in enumerate(examples):
        by_len.setdefault(e.length, []).append(i)
    batches: list[list[int]] = []
    for length in sorted(by_len):
        idx = by_len[length]
        batches.extend(idx[s:s + batch_size] for s in range(0, len(idx), batch_size))
    return batches


class ExampleLoader(PromptDataLoader):
    """A ``PromptDataLoader`` that keeps every example and knows their ids.

    Batches hold examples of one token length; the order is fixed (by length, then
    dataset order). ``batch_example_ids[b]`` are the ids of batch ``b``'s rows. Usable
    wherever auto-circuit takes a ``PromptDataLoader``. Batches are on ``device``
    (``None``: where the examples are, the CPU).
    """

    def __init__(self, examples: Sequence[Example], batch_size: int = 16,
                 device: Any = None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if len(examples) == 0:
            raise DatasetError("no examples to load (empty dataset or empty split)")
        self.examples: list[Example] = list(examples)
        self.batch_size_hint = int(batch_size)
        self.device = None if device is None else torch.device(device)
        batches = _length_batches(self.examples, batch_size)
        # Bypass PromptDataLoader.__init__: it forces drop_last=True.
        DataLoader.__init__(
            self, _ExampleDataset(self.examples),
            batch_sampler=_FixedBatches(batches), collate_fn=partial(_collate_to, self.device),
        )
        lengths = {e.length for e in self.examples}
        self.seq_len = lengths.pop() if len(lengths) == 1 else None
        self.diverge_idx = 0
        self.kv_cache = None
        self.seq_labels = None
        self.word_idxs: dict[str, int] = {}
        self.batch_positions: list[list[int]] = batches
        self.batch_example_ids: list[list[Any]] = [
            [self.examples[i].id for i in b] for b in batches]

    @property
    def example_ids(self) -> list[Any]:
        """Ids of all examples in iteration order."""
        return [i for b in self.batch_example_ids for i in b]

    @property
    def groups(self) -> list[str | None] | None:
        """Group label of all examples in iteration order, or None when unlabelled."""
        gs = [self.examples[i].group for b in self.batch_positions for i in b]
        return None if all(g is None for g in gs) else gs

    def subset(self, ids: Sequence[Any], batch_size: int | None = None,
               device: Any = None) -> ExampleLoader:
        """A loader over the examples with the given ids (every one kept); its batches
        on ``device`` (``None``: this loader's device)."""
        by_id = {str(e.id): e for e in self.examples}
        missing = [i for i in ids if str(i) not in by_id]
        if missing:
            raise KeyError(f"example ids not in this loader: {missing[:5]}")
        return ExampleLoader([by_id[str(i)] for i in ids],
                             batch_size=batch_size or self.batch_size_hint,
                             device=self.device if device is None else device)

    def __repr__(self) -> str:
        return (f"ExampleLoader({len(self.examples)} examples, "
                f"{len(self.batch_positions)} batches)")


def make_loader(examples: Sequence[Example], batch_size: int = 16,
                device: Any = None) -> ExampleLoader:
    """An :class:`ExampleLoader` over ``examples`` (every example kept), batches on ``device``."""
    return ExampleLoader(examples, batch_size=batch_size, device=device)


# ----------------------------------------------------------------------------- splits
def load_examples(
    dataset: str | Path | dict[str, Any],
    tokenizer: Any,
    prepend_bos: bool = True,
    label_field: str | None = "group",
    n: int | None = None,
) -> list[Example]:
    """Read and tokenize a dataset; ``n`` keeps the first ``n`` prompts."""
    prompts = read_prompts(dataset)
    if n is not None:
        prompts = prompts[:n]
    return tokenize_examples(prompts, tokenizer, prepend_bos=prepend_bos,
                             label_field=label_field)


def split_examples(
    examples: Sequence[Example],
    test_fraction: float = 0.2,
    seed: int = 42,
    shuffle: bool = True,
) -> tuple[list[Example], list[Example]]:
    """Train/test split. Uses the prompts' own ``split`` fields when every prompt has one."""
    if all(e.split is not None for e in examples):
        train = [e for e in examples if e.split == "train"]
        test = [e for e in examples if e.split == "test"]
        if not train or not test:
            raise DatasetError("the dataset's 'split' fields leave the train or test split empty")
        return train, test
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    order = list(range(len(examples)))
    if shuffle:
        random.Random(seed).shuffle(order)
    n_test = max(1, int(round(len(order) * test_fraction)))
    if n_test >= len(order):
        raise DatasetError(f"{len(order)} examples are too few to split into train and test")
    test_idx = sorted(order[:n_test])
    train_idx = sorted(order[n_test:])
    return [examples[i] for i in train_idx], [examples[i] for i in test_idx]


#: training prompts clustering needs at the least (a silhouette needs 2 <= k <= n - 1)
MIN_TRAIN_PROMPTS = 3
#: training prompts wanted per cluster at the largest number of clusters tried
PROMPTS_PER_CLUSTER = 3


def check_split_sizes(n_train: int, n_prompts: int, max_clusters: int) -> None:
    """Refuse a training split too small to cluster, warn about one too small for the
    clusters tried; call it before attribution runs.

    Below :data:`MIN_TRAIN_PROMPTS` training prompts no clustering can work: a
    :class:`DatasetError`. Below ``PROMPTS_PER_CLUSTER * max_clusters`` a
    :class:`SmallSplitWarning` (k is capped at ``n_train - 1`` and clusters of one or two
    prompts are noise). Both name how many prompts to ask for, at this split's train share
    (``n_train`` of the ``n_prompts`` read).
    """
    wanted = max(MIN_TRAIN_PROMPTS, PROMPTS_PER_CLUSTER * int(max_clusters))
    if n_train >= wanted:
        return
    ask = math.ceil(wanted * n_prompts / max(n_train, 1))
    where = (f"the training split has {n_train} prompt(s) (of {n_prompts} read, the rest "
             "held out)")
    remedy = (f"ask for at least {ask} prompts (--n {ask}, or a larger dataset) or lower "
              "--max-clusters")
    if n_train < MIN_TRAIN_PROMPTS:
        raise DatasetError(f"{where}: clustering needs at least {MIN_TRAIN_PROMPTS}, and "
                           f"{wanted} for up to {max_clusters} clusters; {remedy}")
    warnings.warn(f"{where}: too few to cluster into up to {max_clusters} clusters "
                  f"({PROMPTS_PER_CLUSTER} prompts per cluster wanted: {wanted}), so the "
                  f"clusters and their scores will be noise; {remedy}",
                  SmallSplitWarning, stacklevel=2)


def prepare(
    model: Any,
    dataset: str | Path | dict[str, Any],
    *,
    test_fraction: float = 0.2,
    batch_size: int = 16,
    seed: int = 42,
    n: int | None = None,
    label_field: str | None = "group",
    prepend_bos: bool = True,
):
    """Make ``model`` patchable and load ``dataset`` into train and test loaders.

    Args:
        model: a TransformerLens ``HookedTransformer`` (wrapped with
            :func:`auto_circuit_dcd.model.load.make_patchable`) or an existing auto-circuit
            ``PatchableModel`` (used as it is).
        dataset: path to an auto-circuit JSON dataset, or its loaded dict.
        test_fraction: share of examples held out (ignored when every prompt has a
            ``split`` field).
        batch_size: examples per batch; the last batch of each token length may be
            smaller (nothing is dropped).
        n: keep only the first ``n`` prompts.
        label_field: per-prompt field holding the known group label (``None``: none).

    Returns:
        ``(patchable_model, train_loader, test_loader)``; the loaders' batches are on
        the model's device.
    """
    from auto_circuit_dcd.model.devices import model_device
    from auto_circuit_dcd.model.load import make_patchable

    pm = make_patchable(model)
    examples = load_examples(dataset, pm.tokenizer, prepend_bos=prepend_bos,
                             label_field=label_field, n=n)
    train, test = split_examples(examples, test_fraction=test_fraction, seed=seed)
    device = model_device(pm)
    return pm, make_loader(train, batch_size, device), make_loader(test, batch_size, device)
