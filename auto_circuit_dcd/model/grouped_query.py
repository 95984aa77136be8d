"""Grouped-query attention in the multi-head form auto-circuit can patch.

auto-circuit patches each query head's own Q, K and V inputs (TransformerLens'
``use_split_qkv_input``); a grouped-query model (``n_key_value_heads < n_heads``) computes
K and V once per key/value head, so auto-circuit's per-head masks meet tensors with fewer
heads. Repeating each key/value head's weights over the query heads that share it is
exactly the function grouped-query attention computes, in multi-head form:

1. :func:`expand_grouped_kv`: in a state dict, every ``blocks.*.attn._W_K / _b_K / _W_V /
   _b_V`` (``[n_key_value_heads, ...]``) becomes ``W_K / b_K / W_V / b_V`` with query head
   ``h`` reading key/value head ``h // (n_heads // n_key_value_heads)``;
2. :func:`ungroup_kv`: a ``HookedTransformer``, in place: each block's
   ``GroupedQueryAttention`` is replaced by a multi-head ``Attention`` holding the
   expanded weights (same device and dtype; rotary tables, masks and other buffers
   copied), ``cfg.n_key_value_heads`` set to ``None`` and the hook points registered
   again. One log line says so.

The SmolLM2 converter (step 1, on its converted state dict) and
:func:`auto_circuit_dcd.model.load.make_patchable` / ``load_model`` (step 2) both use these.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

__all__ = ["expand_grouped_kv", "ungroup_kv", "is_grouped"]

logger = logging.getLogger(__name__)
_GROUPED = ("_W_K", "_b_K", "_W_V", "_b_V")


def expand_grouped_kv(state_dict: dict[str, torch.Tensor], n_heads: int,
                      n_key_value_heads: int) -> dict[str, torch.Tensor]:
    """Turn a grouped-query TransformerLens state dict into an equivalent multi-head one.

    Every ``*.attn._W_K / _b_K / _W_V / _b_V`` (``[n_key_value_heads, ...]``) is repeated
    so that query head ``h`` gets key/value head ``h // (n_heads // n_key_value_heads)``,
    exactly what grouped-query attention computes, and stored as ``W_K / b_K / W_V /
    b_V``. Load the result with ``n_key_value_heads=None``. A new dict is returned; the
    input is not changed.
    """
    if n_key_value_heads <= 0 or n_heads % n_key_value_heads:
        raise ValueError(
            f"n_heads={n_heads} must be a positive multiple of "
            f"n_key_value_heads={n_key_value_heads}"
        )
    group = n_heads // n_key_value_heads
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        prefix, _, name = key.rpartition(".")
        if name in _GROUPED and prefix.split(".")[-1] == "attn":
            if value.shape[0] != n_key_value_heads:
                raise ValueError(
                    f"{key} has {value.shape[0]} heads, expected n_key_value_heads="
                    f"{n_key_value_heads}"
                )
            out[f"{prefix}.{name[1:]}"] = value.repeat_interleave(group, dim=0)
        else:
            out[key] = value
    return out


def is_grouped(model: Any) -> bool:
    """Whether a ``HookedTransformer`` (or a ``PatchableModel`` wrapping one) uses
    grouped-query attention."""
    tl = getattr(model, "wrapped_model", model)
    cfg = getattr(tl, "cfg", None)
    return getattr(cfg, "n_key_value_heads", None) is not None


def ungroup_kv(model: Any) -> bool:
    """Turn a grouped-query ``HookedTransformer`` into the same function in multi-head
    form, in place; returns whether anything changed.

    The model object stays the same; its attention modules are new ``Attention`` modules
    on the same device and in the same dtype, ``cfg.n_key_value_heads`` is ``None`` and
    the hook points are registered again (hooks added to the old attention modules are
    gone). K/V weights grow by ``n_heads / n_key_value_heads``. Call it before auto-circuit's
    ``patchable_model`` (``dcd.make_patchable`` does); a model already wrapped is refused.
    """
    from transformer_lens.components import Attention, GroupedQueryAttention

    cfg = getattr(model, "cfg", None)
    n_kv = getattr(cfg, "n_key_value_heads", None)
    if cfg is None or n_kv is None:
        return False
    if any(type(m).__name__ == "PatchWrapperImpl" for m in model.modules()):
        raise ValueError("this model is already wrapped by auto-circuit's patchable_model "
                         "with grouped-query attention, which it cannot patch per head; "
                         "load a fresh model and wrap it with dcd.make_patchable")
    n_heads = cfg.n_heads
    for layer, block in enumerate(model.blocks):
        old = block.attn
        if not isinstance(old, GroupedQueryAttention):
            raise ValueError(f"blocks.{layer}.attn is a {type(old).__name__}, expected "
                             "GroupedQueryAttention (cfg.n_key_value_heads is set)")
    cfg_objects = {id(m.cfg): m.cfg for m in model.modules() if hasattr(m, "cfg")}
    for c in cfg_objects.values():
        c.n_key_value_heads = None
    for block in model.blocks:
        old = block.attn
        param = next(old.parameters())
        with torch.device(param.device):
            new = Attention(cfg, attn_type=old.attn_type, layer_id=old.layer_id)
        new.to(dtype=param.dtype)
        grouped = {f"attn.{k}": v for k, v in old.state_dict().items()}
        expanded = expand_grouped_kv(grouped, n_heads, n_kv)
        new.load_state_dict({k[len("attn."):]: v for k, v in expanded.items()}, strict=True)
        new.requires_grad_(param.requires_grad)
        new.train(old.training)
        block.attn = new
    model.setup()
    logger.info("grouped-query attention: repeated the %d key/value heads over the %d query "
                "heads of each layer (an identical function in the multi-head form "
                "auto-circuit patches per head)", n_kv, n_heads)
    return True
