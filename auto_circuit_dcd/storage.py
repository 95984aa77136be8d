"""Tensors with a JSON sidecar in one folder: how the package saves what it computes.

``save_bundle``:

1. create the folder;
2. write the tensors (safetensors: open, no pickles);
3. write the JSON under a temporary name, then rename it: a sidecar is never left that
   describes tensors not yet written.

``load_bundle`` reads both back; a folder without the sidecar is an error that names what
was expected there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

__all__ = ["save_bundle", "load_bundle"]


def save_bundle(path: str | Path, tensors: Dict[str, torch.Tensor], meta: Dict[str, Any],
                tensors_file: str, meta_file: str) -> Path:
    """Write ``path/tensors_file`` and ``path/meta_file``; returns ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
              str(path / tensors_file))
    tmp = path / (meta_file + ".tmp")
    tmp.write_text(json.dumps(meta))
    tmp.replace(path / meta_file)
    return path


def load_bundle(path: str | Path, tensors_file: str, meta_file: str,
                what: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """``(tensors, meta)`` from a folder written by :func:`save_bundle`."""
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path / meta_file
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: not a saved {what}")
    return load_file(str(path / tensors_file)), json.loads(meta_path.read_text())
