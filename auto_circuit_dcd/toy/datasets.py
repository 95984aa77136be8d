"""The toy model's shipped datasets, in auto-circuit's JSON format with string prompts.

Each prompt carries ``group`` and ``task`` (``"ioi"`` or ``"induction"``),
``prompt_type`` (IOI: ``ABBA``/``BABA``; induction: ``early``/``late`` first
occurrence), ``split`` (``train``/``test``) and a unique ``id``. IOI test prompts use
only the held-out name pairs; IOI train prompts only the training pairs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from auto_circuit_dcd.toy.tasks import NamePair, sample_induction, sample_ioi

__all__ = ["DATASET_SIZES", "task_prompts", "make_datasets"]

# (train, test) prompts per task in each shipped file
DATASET_SIZES: dict[str, dict[str, tuple]] = {
    "ioi": {"ioi": (120, 120)},
    "induction": {"induction": (120, 120)},
    "mixed": {"ioi": (128, 32), "induction": (128, 32)},
}


def task_prompts(task: str, n_train: int, n_test: int, train_pairs: Sequence[NamePair],
                 test_pairs: Sequence[NamePair], seed: int) -> list[dict[str, Any]]:
    """``n_train`` then ``n_test`` prompts of one task, with ``split`` set."""
    rng = random.Random(f"{task}-{seed}")
    if task == "ioi":
        parts = {"train": sample_ioi(rng, n_train, train_pairs),
                 "test": sample_ioi(rng, n_test, test_pairs)}
    else:
        parts = {"train": sample_induction(rng, n_train), "test": sample_induction(rng, n_test)}
    out = []
    for split, prompts in parts.items():
        for p in prompts:
            out.append({**p, "split": split})
    return out


def make_datasets(train_pairs: Sequence[NamePair], test_pairs: Sequence[NamePair],
                  seed: int = 1234) -> dict[str, dict[str, Any]]:
    """name -> ``{"prompts": [...]}`` for every shipped dataset; deterministic in ``seed``."""
    out: dict[str, dict[str, Any]] = {}
    for name, sizes in DATASET_SIZES.items():
        prompts = []
        for task, (n_train, n_test) in sizes.items():
            prompts += task_prompts(task, n_train, n_test, train_pairs, test_pairs,
                                    seed + len(out))
        if len(sizes) > 1:  # interleave tasks so that any prefix holds both
            random.Random(seed).shuffle(prompts)
        for i, p in enumerate(prompts):
            p["id"] = f"{name}-{p['split']}-{i:04d}"
        out[name] = {"prompts": prompts}
    return out
