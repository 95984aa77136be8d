"""Build, save and load the toy two-task model (a TransformerLens ``HookedTransformer``).

Two attention-only layers, d_model 64, 4 heads of 16, LayerNorm, 16 positions, the
word-level vocabulary of :mod:`auto_circuit_dcd.toy.vocab`. The shipped weights live in
``assets/`` (safetensors) beside ``config.json`` (architecture, training record) and
``tokenizer.json``; loading needs no network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auto_circuit_dcd.toy.vocab import BOS, PROMPT_WORDS, vocabulary, wrap_tokenizer

if TYPE_CHECKING:
    import torch

__all__ = [
    "ASSETS_DIR", "CHECKPOINT_FILE", "CONFIG_FILE", "TOKENIZER_FILE", "DATASETS",
    "architecture", "build_model", "load_toy_model", "toy_tokenizer", "toy_metadata",
    "toy_dataset_path", "encode",
]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
CHECKPOINT_FILE = "toy_two_task.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
DATASETS = ("ioi", "induction", "mixed")


def architecture() -> dict[str, Any]:
    """The ``HookedTransformerConfig`` fields of the toy model (JSON-serialisable)."""
    return dict(n_layers=2, d_model=64, n_heads=4, d_head=16, attn_only=True,
                normalization_type="LN", n_ctx=PROMPT_WORDS + 1, d_vocab=len(vocabulary()),
                act_fn="gelu", positional_embedding_type="standard")


def build_model(arch: dict[str, Any] | None = None, seed: int | None = None,
                init_weights: bool = True, tokenizer: Any = None) -> Any:
    """A fresh ``HookedTransformer`` with the toy architecture and tokenizer.

    ``seed`` seeds the initialisation (TransformerLens seeds torch, numpy and random);
    ``init_weights=False`` skips it (weights are about to be loaded) and touches no RNG.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(**(arch or architecture()), seed=seed,
                                  init_weights=init_weights, device="cpu")
    return HookedTransformer(cfg, tokenizer=tokenizer or wrap_tokenizer())


def _assets(assets_dir: str | Path | None) -> Path:
    path = Path(assets_dir) if assets_dir is not None else ASSETS_DIR
    missing = [f for f in (CHECKPOINT_FILE, CONFIG_FILE, TOKENIZER_FILE)
               if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"toy model assets {missing} missing from {path}: reinstall auto-circuit-dcd, "
            "or write them with `python scripts/train_toy.py`")
    return path


def toy_metadata(assets_dir: str | Path | None = None) -> dict[str, Any]:
    """The shipped ``config.json``: architecture, seed, training time, accuracies."""
    return json.loads((_assets(assets_dir) / CONFIG_FILE).read_text())


def toy_tokenizer(assets_dir: str | Path | None = None) -> Any:
    """The toy model's ``PreTrainedTokenizerFast`` (from the shipped ``tokenizer.json``)."""
    return wrap_tokenizer(_assets(assets_dir) / TOKENIZER_FILE)


def load_toy_model(assets_dir: str | Path | None = None, device: Any = "cpu") -> Any:
    """The trained toy model, its tokenizer attached; offline."""
    from safetensors.torch import load_file

    path = _assets(assets_dir)
    meta = toy_metadata(path)
    model = build_model(meta["architecture"], init_weights=False,
                        tokenizer=toy_tokenizer(path))
    state = load_file(str(path / CHECKPOINT_FILE))
    expected = {k for k in model.state_dict() if not k.endswith(("IGNORE", ".mask"))}
    missing = expected - set(state)
    if missing:
        raise ValueError(f"{path / CHECKPOINT_FILE} lacks weights {sorted(missing)[:5]}")
    model.load_state_dict(state, strict=False)
    return model.to(device, print_details=False)


def toy_dataset_path(name: str) -> Path:
    """Path of a shipped dataset (auto-circuit JSON): ``"ioi"``, ``"induction"``, ``"mixed"``."""
    stem = name[:-5] if name.endswith(".json") else name
    if stem not in DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}: use one of {list(DATASETS)}")
    path = ASSETS_DIR / f"{stem}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: write it with `python scripts/train_toy.py`")
    return path


def mixed_dataset_path() -> Path:
    """The main job's embedded dataset: the mixture of both planted tasks."""
    return toy_dataset_path("mixed")


def encode(texts: Sequence[str], prepend_bos: bool = True) -> torch.Tensor:
    """Token ids ``[len(texts), n_words (+1)]`` of space-separated prompts, without a tokenizer.

    Faster than the tokenizer for training; gives the same ids on the toy prompts.
    """
    import torch

    vocab = vocabulary()
    bos: list[int] = [vocab[BOS]] if prepend_bos else []
    try:
        rows = [bos + [vocab[w] for w in t.split()] for t in texts]
    except KeyError as err:
        raise ValueError(f"word {err} is not in the toy vocabulary") from None
    return torch.tensor(rows, dtype=torch.long)
