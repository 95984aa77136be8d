"""The built-in model names and what each brings: one table read by the loader, the main
job and the command line.

Each :class:`ModelEntry` gives, as ``"module:function"`` paths imported only when used (so
the command line reads the table before torch loads):

1. ``loader``: returns the ``HookedTransformer`` (keyword arguments passed through);
2. ``tokenizer``: returns its tokenizer without loading the weights (None: the loaded
   model's own, or none at all for the random test models);
3. ``dataset``: returns the path of its embedded dataset (None: the main job needs
   ``--dataset`` or ``--task``);
4. ``offline``: True when it loads without a model hub.

Any other name is a TransformerLens official model, downloaded from the hub.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelEntry", "MODELS", "OFFLINE_MODELS", "DEFAULT_MODEL", "DEFAULT_REAL_MODEL",
           "describe_models", "model_tokenizer", "embedded_dataset"]


def _resolve(path: str) -> Callable[..., Any]:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ModelEntry:
    """One built-in model (module docstring)."""

    loader: str
    tokenizer: str | None = None
    dataset: str | None = None
    offline: bool = True

    def load(self, **kwargs: Any) -> Any:
        """The model, from its loader."""
        return _resolve(self.loader)(**kwargs)


MODELS: dict[str, ModelEntry] = {
    "toy-two-task": ModelEntry("auto_circuit_dcd.toy:load_toy_model",
                               tokenizer="auto_circuit_dcd.toy:toy_tokenizer",
                               dataset="auto_circuit_dcd.toy.model:mixed_dataset_path"),
    "smollm2-135m": ModelEntry("auto_circuit_dcd.model.smollm2:load_smollm2",
                               tokenizer="auto_circuit_dcd.model.smollm2:load_smollm2_tokenizer"),
    "tiny-random": ModelEntry("auto_circuit_dcd.model.load:tiny_random"),
    "tiny-random-attn-only": ModelEntry("auto_circuit_dcd.model.load:tiny_random_attn_only"),
    "tiny-random-gqa": ModelEntry("auto_circuit_dcd.model.load:tiny_random_gqa"),
}

#: names that load without a model hub
OFFLINE_MODELS = tuple(name for name, entry in MODELS.items() if entry.offline)
#: the main job's model: embedded, with its own dataset
DEFAULT_MODEL = "toy-two-task"
#: the real model whose tokenizer and weights the dataset and fetch commands default to
DEFAULT_REAL_MODEL = "smollm2-135m"


def describe_models() -> str:
    """The built-in names for help texts: which bring a dataset, then any TransformerLens
    name."""
    named = [f"{n} (embedded dataset)" if e.dataset else n for n, e in MODELS.items()]
    return ", ".join(named) + ", or a TransformerLens name (gpt2, ...)"


def model_tokenizer(name: str) -> Any | None:
    """The tokenizer of a built-in model without its weights, or None where the table has
    no such loader (load the model and use its ``tokenizer``)."""
    entry = MODELS.get(name)
    if entry is None or entry.tokenizer is None:
        return None
    return _resolve(entry.tokenizer)()


def embedded_dataset(name: str) -> Path | None:
    """The path of a model's embedded dataset, or None where it has none."""
    entry = MODELS.get(name)
    if entry is None or entry.dataset is None:
        return None
    return Path(_resolve(entry.dataset)())
