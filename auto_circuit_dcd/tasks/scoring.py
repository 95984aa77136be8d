"""How a model does on generated prompts: mu = logit(answer) - max logit(wrong answers).

Prompts are scored as :mod:`auto_circuit_dcd.data` feeds them (BOS prepended, no other
special tokens), at the last position, batched by token length (no padding).
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Sequence

import torch

__all__ = ["logit_margins", "as_model"]


def as_model(model: Any) -> Any:
    """A ``HookedTransformer`` from a model name, a ``HookedTransformer`` or a
    ``PatchableModel`` (its wrapped model)."""
    if isinstance(model, str):
        from ..models import load_model

        return load_model(model)
    return getattr(model, "wrapped_model", model)


@contextlib.contextmanager
def _plain_forward(model: Any) -> Iterator[None]:
    """Turn off the per-head result/input hooks of a bare ``HookedTransformer`` (they only
    slow a forward pass down) and restore them on exit."""
    cfg = getattr(model, "cfg", None)
    names = ("use_attn_result", "use_split_qkv_input", "use_hook_mlp_in")
    saved = {n: getattr(cfg, n) for n in names if hasattr(cfg, n)}
    try:
        for n in saved:
            setattr(cfg, n, False)
        yield
    finally:
        for n, v in saved.items():
            setattr(cfg, n, v)


def _ids(tokenizer: Any, text: str) -> List[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def logit_margins(model: Any, tokenizer: Any, prompts: Sequence[Dict[str, Any]],
                  batch_size: int = 16, field: str = "clean") -> torch.Tensor:
    """mu per prompt (float tensor, prompt order): > 0 means the model answers correctly."""
    patchable = hasattr(model, "wrapped_model")  # its wrappers need the hooks: leave them
    model = as_model(model)
    bos = getattr(tokenizer, "bos_token_id", None)
    rows = []
    for p in prompts:
        ids = ([int(bos)] if bos is not None else []) + _ids(tokenizer, p[field])
        ans = [_ids(tokenizer, a)[0] for a in p["answers"]]
        wrong = [_ids(tokenizer, a)[0] for a in p["wrong_answers"]]
        rows.append((ids, ans, wrong))
    by_len: Dict[int, List[int]] = {}
    for i, (ids, _, _) in enumerate(rows):
        by_len.setdefault(len(ids), []).append(i)
    out = torch.empty(len(rows))
    device = next(model.parameters()).device
    with contextlib.nullcontext() if patchable else _plain_forward(model):
        _score(model, rows, by_len, batch_size, device, out)
    return out


def _score(model: Any, rows: List, by_len: Dict[int, List[int]], batch_size: int,
           device: Any, out: torch.Tensor) -> None:
    for length in sorted(by_len):
        idx = by_len[length]
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            tokens = torch.tensor([rows[i][0] for i in chunk], device=device)
            last = model(tokens)[:, -1, :].float().cpu()
            for r, i in enumerate(chunk):
                _, ans, wrong = rows[i]
                out[i] = last[r, ans].max() - last[r, wrong].max()
