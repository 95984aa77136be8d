"""How a model does on generated prompts: the task metric ``mu`` of each prompt.

``mu`` is :func:`auto_circuit_dcd.model.task_metric.max_diff` (mean logit of the answers - max
logit of the wrong answers), the metric attribution and faithfulness use. Prompts are
scored as :mod:`auto_circuit_dcd.data` feeds them (BOS prepended, no other special
tokens), at the last position, batched by token length (no padding), with
TransformerLens' per-head flags off (:func:`auto_circuit_dcd.model.forward.plain_forward`).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch

from auto_circuit_dcd.model.forward import plain_forward
from auto_circuit_dcd.model.task_metric import max_diff

__all__ = ["logit_margins", "as_model"]


def as_model(model: Any) -> Any:
    """A ``HookedTransformer`` from a model name, a ``HookedTransformer`` or a
    ``PatchableModel`` (its wrapped model)."""
    if isinstance(model, str):
        from auto_circuit_dcd.model.load import load_model

        return load_model(model)
    return getattr(model, "wrapped_model", model)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def logit_margins(model: Any, tokenizer: Any, prompts: Sequence[dict[str, Any]],
                  batch_size: int = 16, field: str = "clean") -> torch.Tensor:
    """mu per prompt (float tensor, prompt order): > 0 means the model answers correctly."""
    model = as_model(model)
    bos = getattr(tokenizer, "bos_token_id", None)
    rows = []
    for p in prompts:
        ids = ([int(bos)] if bos is not None else []) + _ids(tokenizer, p[field])
        ans = [_ids(tokenizer, a)[0] for a in p["answers"]]
        wrong = [_ids(tokenizer, a)[0] for a in p["wrong_answers"]]
        rows.append((ids, ans, wrong))
    by_len: dict[int, list[int]] = {}
    for i, (ids, _, _) in enumerate(rows):
        by_len.setdefault(len(ids), []).append(i)
    out = torch.empty(len(rows))
    device = next(model.parameters()).device
    with plain_forward(model):  # auto-circuit's wrappers pass through outside patch mode
        _score(model, rows, by_len, batch_size, device, out)
    return out


def _score(model: Any, rows: list, by_len: dict[int, list[int]], batch_size: int,
           device: Any, out: torch.Tensor) -> None:
    for length in sorted(by_len):
        idx = by_len[length]
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            tokens = torch.tensor([rows[i][0] for i in chunk], device=device)
            last = model(tokens)[:, -1, :].float().cpu()
            batch = SimpleNamespace(answers=[torch.tensor(rows[i][1]) for i in chunk],
                                    wrong_answers=[torch.tensor(rows[i][2]) for i in chunk])
            out[chunk] = max_diff(last, batch)
