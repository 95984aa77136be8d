"""Per-head checks of the toy model's two mechanisms (TransformerLens hooks on ``hook_z``).

- :func:`head_patching_effects`: for each head, patch its output (``z``) from the
  corrupt prompt into the clean run; the effect is the share of the clean-vs-corrupt
  logit difference that this one head carries (1: all of it, 0: none).
- :func:`ablated_accuracy`: accuracy with a set of heads mean-ablated (their ``z``
  replaced by its mean over a reference set of prompts, per position).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from auto_circuit_dcd.toy.model import encode
from auto_circuit_dcd.toy.train import prompt_batch
from auto_circuit_dcd.toy.vocab import vocabulary

__all__ = ["Head", "logit_diff", "head_patching_effects", "ablated_accuracy"]

Head = tuple[int, int]


def _pairs(prompts: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, ...]:
    vocab = vocabulary()
    clean, answers = prompt_batch(prompts)
    corrupt = encode([p["corrupt"] for p in prompts])
    wrong = torch.tensor([vocab[p["wrong_answers"][0].strip()] for p in prompts])
    return clean, corrupt, answers, wrong


def logit_diff(logits: torch.Tensor, answers: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """Per prompt: last-position logit of the answer minus that of the wrong answer."""
    last = logits[:, -1]
    return last.gather(1, answers[:, None])[:, 0] - last.gather(1, wrong[:, None])[:, 0]


@torch.no_grad()
def head_patching_effects(model: Any, prompts: Sequence[dict[str, Any]]) -> torch.Tensor:
    """``[n_layers, n_heads]``: mean logit-difference drop from patching one head's ``z``
    with its corrupt-run value, divided by the clean-minus-corrupt difference."""
    clean, corrupt, answers, wrong = _pairs(prompts)
    _, cache = model.run_with_cache(corrupt, names_filter=lambda n: n.endswith("hook_z"))
    base = logit_diff(model(clean), answers, wrong).mean()
    floor = logit_diff(model(corrupt), answers, wrong).mean()
    effects = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_z"
        for head in range(model.cfg.n_heads):
            def patch(z: torch.Tensor, hook: Any, h: int = head) -> torch.Tensor:
                z[:, :, h] = cache[hook.name][:, :, h]
                return z
            logits = model.run_with_hooks(clean, fwd_hooks=[(name, patch)])
            ablated = logit_diff(logits, answers, wrong).mean()
            effects[layer, head] = (base - ablated) / (base - floor)
    return effects


@torch.no_grad()
def ablated_accuracy(model: Any, prompts: Sequence[dict[str, Any]], heads: Iterable[Head],
                     reference: Sequence[dict[str, Any]]) -> float:
    """Accuracy on ``prompts`` with ``heads`` mean-ablated (means over ``reference``'s
    clean prompts, per position)."""
    heads = list(heads)
    tokens, answers = prompt_batch(prompts)
    ref_tokens, _ = prompt_batch(reference)
    _, cache = model.run_with_cache(ref_tokens, names_filter=lambda n: n.endswith("hook_z"))
    hooks = []
    for layer, head in heads:
        mean = cache[f"blocks.{layer}.attn.hook_z"][:, :, head].mean(0)

        def ablate(z: torch.Tensor, hook: Any, h: int = head,
                   m: torch.Tensor = mean) -> torch.Tensor:
            z[:, :, h] = m
            return z
        hooks.append((f"blocks.{layer}.attn.hook_z", ablate))
    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]
    return float((logits.argmax(-1) == answers).float().mean())
