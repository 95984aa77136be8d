"""Train the toy two-task model, deterministically given a seed (one torch thread).

1. build the model (initialisation seeded by ``seed``);
2. each step, draw fresh prompts (``batch_per_task`` of each task; IOI from the
   training name pairs only) with ``random.Random(seed)``;
3. cross-entropy of the answer at the last position only (label smoothing caps the
   logit margin, so every example's margin, hence its attribution row's scale, is
   similar); AdamW with linear warm-up
   and cosine decay (constant after warm-up when ``cosine_decay=False``);
4. every ``eval_every`` steps, accuracy on a fixed evaluation set drawn from the
   training distribution; stop after ``steps`` steps.

Held-out accuracy (IOI on the held-out name pairs) is measured by :func:`accuracy` on
data the training never sees.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from auto_circuit_dcd.toy.model import build_model, encode
from auto_circuit_dcd.toy.tasks import TASKS, NamePair, sample_task
from auto_circuit_dcd.toy.vocab import vocabulary

__all__ = ["TrainSettings", "train_toy_model", "accuracy", "prompt_batch"]


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training run."""

    seed: int = 0
    steps: int = 2000
    batch_per_task: int = 128
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    cosine_decay: bool = True
    label_smoothing: float = 0.1
    eval_every: int = 100
    eval_per_task: int = 256


def prompt_batch(prompts: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean token ids with BOS ``[n, 16]``, answer ids ``[n]``) of prompt dicts."""
    vocab = vocabulary()
    tokens = encode([p["clean"] for p in prompts])
    answers = torch.tensor([vocab[p["answers"][0].strip()] for p in prompts])
    return tokens, answers


@torch.no_grad()
def accuracy(model: Any, prompts: Sequence[dict[str, Any]]) -> float:
    """Share of prompts whose answer is the arg-max over the vocabulary at the last position."""
    tokens, answers = prompt_batch(prompts)
    logits = model(tokens)[:, -1]
    return float((logits.argmax(-1) == answers).float().mean())


def _lr_factor(s: TrainSettings, step: int) -> float:
    """Linear warm-up, then constant or cosine decay to zero at the last step."""
    if step < s.warmup_steps:
        return (step + 1) / s.warmup_steps
    if not s.cosine_decay:
        return 1.0
    done = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))


def train_toy_model(settings: TrainSettings, train_pairs: Sequence[NamePair],
                    progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train from scratch; returns ``(model, record)`` with losses, accuracies and time."""
    from tqdm.auto import tqdm

    s = settings
    model = build_model(seed=s.seed)
    model.train()
    rng = random.Random(s.seed)
    eval_rng = random.Random(s.seed + 10_000)
    evals = {t: sample_task(t, eval_rng, s.eval_per_task, train_pairs) for t in TASKS}
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay,
                            betas=s.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: _lr_factor(s, step))
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = tqdm(range(1, s.steps + 1), desc="train toy", disable=not progress)
    for step in bar:
        prompts = [p for t in TASKS for p in sample_task(t, rng, s.batch_per_task, train_pairs)]
        tokens, answers = prompt_batch(prompts)
        loss = F.cross_entropy(model(tokens)[:, -1], answers,
                               label_smoothing=s.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % s.eval_every == 0 or step == s.steps:
            model.eval()
            row = {"step": step, "loss": loss.item(),
                   **{f"acc_{t}": accuracy(model, evals[t]) for t in TASKS}}
            model.train()
            history.append(row)
            bar.set_postfix({k: round(v, 3) for k, v in row.items() if k != "step"})
    seconds = time.perf_counter() - start
    model.eval()
    record = {"settings": asdict(s), "train_seconds": round(seconds, 1),
              "torch_threads": torch.get_num_threads(), "history": history}
    return model, record
