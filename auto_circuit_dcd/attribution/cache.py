"""The attribution cache: rows kept on disk as they are computed, never handed back wrong.

``cache_dir/attribution-<key>/`` holds ``batch-000000.safetensors``, ... (one per batch,
written as each batch finishes, so an interrupted run resumes) and, once every batch is
done, ``rows.safetensors`` (all rows in the loader's order); the batch files are then
removed.

1. The key is a digest of everything that determines the rows: :data:`ATTRIBUTION_FORMAT`
   (raised whenever the computation changes), the method's parameters (method, steps,
   metric, storage dtype, backend), the model's whole config, every value of every weight
   (:func:`model_digest`), the edge order, and every batch's tokens and answers (clean,
   corrupt, answers, wrong answers). Example ids and group labels are not in it: callers
   take them from the current dataset on every call. What to do with non-finite rows
   (``nan_tolerance``) is not in it either: the cache keeps every row as computed, and the
   caller applies its tolerance to them on every call.
2. Each file carries, in its safetensors metadata, the key, its batch index and the digest
   of that batch's tokens (batch files), its row count, and a digest of its tensors. A
   read checks all of them and the shapes; a file that fails (unreadable, truncated,
   another batch's or another run's, values changed) is named in a warning, removed and
   recomputed.
3. Every file is written through a temporary file and a rename; the folder is locked
   (:func:`~auto_circuit_dcd.files.folder_lock`) while a process works in it, and the
   temporary files a killed process left behind are removed when the next one starts.
   In a process group rank 0 holds the lock for all ranks; each rank writes the batches
   it computes, rank 0 the finished rows (:func:`auto_circuit_dcd.attribution.front.attribute`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from auto_circuit_dcd.files import (
    digest,
    folder_lock,
    remove_temporaries,
    save_tensors,
    tensor_digest,
)

__all__ = ["ATTRIBUTION_FORMAT", "AttributionCache", "cache_key", "model_digest",
           "batch_digest"]

#: version of the rows' definition; part of every key (raise it when the rows change)
ATTRIBUTION_FORMAT = 2
ROWS_FILE = "rows.safetensors"
_BATCH_GLOB = "batch-*.safetensors"


def model_digest(model: Any) -> str:
    """Digest of the wrapped model's config and every value of its floating-point weights.

    auto-circuit's patch masks are left out (they do not enter attribution); integer and
    boolean buffers (causal masks) are determined by the config and enter by name and shape.
    """
    wrapped = getattr(model, "wrapped_model", model)
    cfg = getattr(wrapped, "cfg", None)
    cfg_dict = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else {}
    parts: list[str] = [json.dumps(cfg_dict, sort_keys=True, default=repr)]
    for name, t in wrapped.state_dict().items():
        if name.endswith("patch_mask") or not torch.is_tensor(t):
            continue
        body = tensor_digest(t) if t.is_floating_point() else f"{t.dtype}{tuple(t.shape)}"
        parts.append(f"{name}:{body}")
    return digest(*parts)


def batch_digest(batch: Any) -> str:
    """Digest of one batch's clean and corrupt tokens, answers and wrong answers."""
    tensors: list[Tensor] = [batch.clean, batch.corrupt]
    for answers in (batch.answers, batch.wrong_answers):
        tensors.extend(answers if isinstance(answers, list) else [answers])
    return tensor_digest(*tensors)


def cache_key(model_id: str, edge_names: Sequence[str], batch_digests: Sequence[str],
              params: dict[str, Any]) -> str:
    """The cache key (module docstring, step 1) from its parts."""
    return digest(f"format {ATTRIBUTION_FORMAT}", json.dumps(params, sort_keys=True),
                  model_id, "\n".join(edge_names), *batch_digests)[:24]


class AttributionCache:
    """One cache folder; use as a context manager (it holds the folder's lock).

    ``lock=False``: for the other ranks of a process group whose rank 0 holds the lock
    (each rank writes only its own batches; rank 0 the finished rows).
    ``batch(b, batch_key)`` / ``put_batch(b, batch_key, rows, metric)`` read and write
    one batch's rows; ``rows(n)`` reads the finished rows, ``finish(rows, metric)``
    writes them and removes the batch files.
    """

    def __init__(self, root: str | Path, key: str, lock: bool = True):
        self.key = key
        self.dir = Path(root) / f"attribution-{key}"
        self.locks = lock
        self._lock: Any = None

    def __enter__(self) -> AttributionCache:
        if not self.locks:
            self.dir.mkdir(parents=True, exist_ok=True)
            return self
        self._lock = folder_lock(self.dir, what="attribution")
        self._lock.__enter__()
        remove_temporaries(self.dir)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            self._lock.__exit__(*exc)
            self._lock = None

    # ------------------------------------------------------------ reading
    def _read(self, path: Path, expect: dict[str, str], n_rows: int | None,
              what: str) -> tuple[Tensor, Tensor] | None:
        """The (rows, metric) of ``path`` if it passes every check, else None (file removed)."""
        from safetensors import safe_open

        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                rows, metric = f.get_tensor("rows"), f.get_tensor("metric")
        except Exception as err:  # noqa: BLE001 - any unreadable file is recomputed
            return self._reject(path, f"unreadable ({type(err).__name__}: {err})", what)
        wrong = [k for k, v in expect.items() if meta.get(k) != v]
        if wrong:
            return self._reject(path, f"written for another {' and '.join(wrong)}", what)
        if (rows.ndim != 2 or metric.shape != (rows.shape[0],)
                or (n_rows is not None and rows.shape[0] != n_rows)
                or meta.get("n_rows") != str(rows.shape[0])):
            return self._reject(path, f"of the wrong shape ({tuple(rows.shape)})", what)
        if meta.get("checksum") != tensor_digest(rows, metric):
            return self._reject(path, "damaged (its checksum does not match its values)", what)
        return rows, metric

    @staticmethod
    def _reject(path: Path, why: str, what: str) -> None:
        warnings.warn(f"attribution cache: {path} is {why}; it is removed and {what} "
                      "recomputed", stacklevel=4)
        path.unlink(missing_ok=True)
        return None

    def _batch_path(self, b: int) -> Path:
        return self.dir / f"batch-{b:06d}.safetensors"

    def batch(self, b: int, batch_key: str, n_rows: int) -> tuple[Tensor, Tensor] | None:
        """Rows ``[n_rows, n_edges]`` and metric ``[n_rows]`` of batch ``b``, or None."""
        expect = {"key": self.key, "batch": str(b), "batch_key": batch_key}
        return self._read(self._batch_path(b), expect, n_rows, f"batch {b}")

    def rows(self, n_rows: int) -> tuple[Tensor, Tensor] | None:
        """All rows and metrics of a finished run, or None."""
        found = self._read(self.dir / ROWS_FILE, {"key": self.key}, n_rows, "its rows")
        if found is not None:
            self._remove_batches()  # a run killed between finishing and cleaning up
        return found

    # ------------------------------------------------------------ writing
    def _write(self, path: Path, rows: Tensor, metric: Tensor, meta: dict[str, str]) -> None:
        rows, metric = rows.detach().cpu().contiguous(), metric.detach().cpu().contiguous()
        meta = {**meta, "key": self.key, "n_rows": str(rows.shape[0]),
                "checksum": tensor_digest(rows, metric)}
        save_tensors(path, {"rows": rows, "metric": metric}, metadata=meta)

    def put_batch(self, b: int, batch_key: str, rows: Tensor, metric: Tensor) -> None:
        self._write(self._batch_path(b), rows, metric, {"batch": str(b), "batch_key": batch_key})

    def finish(self, rows: Tensor, metric: Tensor) -> None:
        """Write the finished rows, then remove the batch files."""
        self._write(self.dir / ROWS_FILE, rows, metric, {})
        self._remove_batches()

    def _remove_batches(self) -> None:
        for p in self.dir.glob(_BATCH_GLOB):
            p.unlink(missing_ok=True)
