"""Per-example edge attribution (EAP, EAP-IG) over auto-circuit's factorized graph.

For every example ``i`` and edge ``e = (src -> dest)``:

    s_i[e] = sum_{pos, d}  (a_src^clean - a_src^corrupt)[pos, d]
                           * mean_k  d mu_i / d x_dest [pos, d]  at input_k

where ``x_dest`` is the destination's input (a head's Q/K/V input, an MLP input, the
final residual), ``mu_i`` the metric of example ``i`` at the last position, and
``input_k`` the input embeddings interpolated from corrupt to clean
(``alpha = k / ig_steps``, ``k = 1..ig_steps``; EAP is ``ig_steps = 1``, the clean input).
This is auto-circuit's mask gradient of the loss ``-mu`` at mask value 0 (so signs agree:
positive = the edge supports the clean behaviour), computed per example.

This module is the front: it checks the input, picks a backend (:data:`BACKENDS`), runs
it batch by batch (every example of a batch has the same token length; the passes are
:func:`auto_circuit_dcd.passes.run_passes`), caches rows per batch and assembles the
:class:`AttributionMatrix`. Nothing is stored per destination (auto-circuit keeps a
source-difference copy in each of its destination wrappers); the model is never put in
patch mode.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from .devices import model_device
from .fast_attribution import fast_attribute_batch
from .forward import WrapperGraph, frozen, unsupported_reason
from .hooks_attribution import hooks_attribute_batch
from .matrix import AttributionMatrix
from .models.grouped import is_grouped
from .task_metric import check_metric

__all__ = ["attribute", "METHODS", "BACKENDS"]

METHODS: Dict[str, Optional[int]] = {"eap": 1, "eap-ig": None}
#: backend name -> batch function ``(model, graph, batch, metric, alphas) -> (rows, mu)``.
#: "fast": flag-free forward with closed-form norm Jacobians (fast_attribution.py);
#: "hooks": auto-circuit's per-head hook points (hooks_attribution.py). Both give the
#: same rows; "auto" (the default) takes "fast" where the model is supported.
BACKENDS: Dict[str, Callable[..., Tuple[Tensor, Tensor]]] = {
    "fast": fast_attribute_batch,
    "hooks": hooks_attribute_batch,
}


def _check_model(model: Any, dataloader: Any) -> None:
    from auto_circuit.utils.patchable_model import PatchableModel

    if not isinstance(model, PatchableModel):
        raise TypeError(
            "attribute() needs an auto-circuit PatchableModel: wrap the model with "
            "dcd.make_patchable(model) or use dcd.prepare(model, dataset)"
        )
    if model.kv_caches is not None or getattr(dataloader, "kv_cache", None) is not None:
        raise ValueError(
            "this model/loader uses auto-circuit's tail_divergence KV cache, which is "
            "built from the first batch and wrong when prefixes differ; load the data "
            "with tail_divergence=False (dcd.prepare never uses it)"
        )
    if any(w.patch_mode for w in model.wrappers):
        raise RuntimeError("the model is in auto-circuit patch mode; leave patch_mode first")
    if is_grouped(model):
        raise ValueError(
            "this model uses grouped-query attention (n_key_value_heads="
            f"{model.wrapped_model.cfg.n_key_value_heads}), which auto-circuit's per-head "
            "K/V masks cannot patch: wrap a fresh HookedTransformer with dcd.make_patchable "
            "(it repeats the K/V heads first) instead of auto-circuit's patchable_model")


def _batch_ids(dataloader: Any) -> Optional[List[List[Any]]]:
    ids = getattr(dataloader, "batch_example_ids", None)
    return None if ids is None else [list(b) for b in ids]


# ----------------------------------------------------------------------------- caching
def _fingerprint(model: Any, graph: WrapperGraph, batches: List[Any], params: Dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(params, sort_keys=True).encode())
    h.update("\n".join(graph.names).encode())
    for name, p in sorted(model.wrapped_model.state_dict().items()):
        if not torch.is_tensor(p) or not p.is_floating_point():
            continue
        flat = p.detach().reshape(-1)
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(flat[: 4096].float().cpu().numpy().tobytes())
        h.update(f"{float(flat.float().sum()):.8e}".encode())  # no float64 on MPS
    for batch in batches:
        for t in (batch.clean, batch.corrupt):
            h.update(t.cpu().numpy().tobytes())
        for a in (batch.answers, batch.wrong_answers):
            for x in (a if isinstance(a, list) else [a]):
                h.update(x.cpu().numpy().tobytes())
    return h.hexdigest()[:20]


class _ChunkStore:
    """Rows written per batch as they are computed, so an interrupted run resumes."""

    def __init__(self, root: Path, fingerprint: str):
        self.dir = Path(root) / f"attribution-{fingerprint}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def done(self) -> Optional[AttributionMatrix]:
        if (self.dir / "matrix" / "attribution.json").exists():
            return AttributionMatrix.load(self.dir / "matrix")
        return None

    def _path(self, b: int) -> Path:
        return self.dir / f"batch-{b:06d}.safetensors"

    def get(self, b: int) -> Optional[Tuple[Tensor, Tensor]]:
        from safetensors.torch import load_file

        if not self._path(b).exists():
            return None
        data = load_file(str(self._path(b)))
        return data["rows"], data["metric"]

    def put(self, b: int, rows: Tensor, metric: Tensor) -> None:
        from safetensors.torch import save_file

        tmp = self._path(b).with_suffix(".tmp")
        save_file({"rows": rows.contiguous(), "metric": metric.contiguous()}, str(tmp))
        tmp.replace(self._path(b))

    def finish(self, matrix: AttributionMatrix) -> None:
        matrix.save(self.dir / "matrix")
        for p in self.dir.glob("batch-*.safetensors"):
            p.unlink()


def _choose_backend(model: Any, backend: str) -> str:
    """The backend name for ``backend`` ("auto", "fast" or "hooks") on ``model``."""
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {['auto', *sorted(BACKENDS)]}, got {backend!r}")
    if backend == "hooks":
        return backend
    why = unsupported_reason(model)
    if why is None:
        return "fast"
    if backend == "fast":
        raise ValueError(f"backend='fast' does not support this model: {why}; "
                         "use backend='hooks'")
    return "hooks"


# ----------------------------------------------------------------------------- public
def attribute(
    model: Any,
    dataloader: Any,
    method: str = "eap",
    *,
    ig_steps: int = 5,
    metric: str = "max_diff",
    cache_dir: Optional[str | Path] = None,
    dtype: torch.dtype = torch.float32,
    nan_tolerance: float = 0.01,
    progress: bool = True,
    backend: str = "auto",
) -> AttributionMatrix:
    """Per-example edge attribution: one row per example, columns in the fixed edge order.

    Args:
        model: an auto-circuit ``PatchableModel`` (factorized, positions summed).
        dataloader: any auto-circuit ``PromptDataLoader``; an :class:`ExampleLoader`
            (from :func:`auto_circuit_dcd.prepare`) also gives example ids and groups.
            Rows follow the loader's order.
        method: ``"eap"`` or ``"eap-ig"`` (input embeddings interpolated corrupt -> clean
            over ``ig_steps`` points, gradients averaged).
        metric: ``"max_diff"`` (the method's mu: correct logit - max wrong logit) or
            ``"avg_diff"`` (auto-circuit's: mean correct - mean wrong).
        cache_dir: if given, rows are written there per batch as they are computed; a
            second call with the same model, data and parameters resumes or loads.
        dtype: storage dtype of the scores (``torch.float32`` or ``torch.float16``).
        nan_tolerance: largest share of examples whose row is not finite that is dropped
            (with a warning naming them); above it, an error.
        backend: ``"auto"`` (default: fast where supported), ``"fast"`` or ``"hooks"``;
            see :data:`BACKENDS`.

    Returns:
        an :class:`AttributionMatrix` with ``scores [n_examples, n_edges]``,
        ``edge_names``, ``example_ids``, ``groups`` and ``meta``; ``meta['clean_metric']``
        holds each example's metric on the clean prompt.
    """
    from auto_circuit.utils.custom_tqdm import tqdm

    method = method.lower()
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    metric_fn = check_metric(metric)
    steps = METHODS[method] or int(ig_steps)
    if steps < 1:
        raise ValueError("ig_steps must be at least 1")
    _check_model(model, dataloader)
    graph = WrapperGraph(model)
    backend_name = _choose_backend(model, backend)
    batch_fn = BACKENDS[backend_name]
    alphas = [k / steps for k in range(steps, 0, -1)]  # alpha = 1 first
    from .data import batch_to

    device = model_device(model)
    batches = [batch_to(b, device) for b in dataloader]
    if not batches:
        raise ValueError("the dataloader yields no batches (empty dataset, or fewer "
                         "examples than its batch size with auto-circuit's drop_last)")
    n_rows = sum(b.clean.shape[0] for b in batches)
    dropped = len(getattr(dataloader, "dataset", [])) - n_rows
    if dropped > 0:
        warnings.warn(
            f"the loader yields {n_rows} of its {n_rows + dropped} examples (auto-circuit's "
            "PromptDataLoader drops the last partial batch); use dcd.prepare or "
            "dcd.make_loader to score every example", stacklevel=2)
    batch_ids = _batch_ids(dataloader)
    if batch_ids is None:
        batch_ids, start = [], 0
        for b in batches:
            batch_ids.append(list(range(start, start + b.clean.shape[0])))
            start += b.clean.shape[0]
    params = {"method": method, "ig_steps": steps, "metric": metric,
              "model": str(getattr(model.cfg, "model_name", "unknown")),
              "dtype": str(dtype).replace("torch.", "")}
    store = None
    if cache_dir is not None:
        store = _ChunkStore(Path(cache_dir), _fingerprint(model, graph, batches, params))
        finished = store.done()
        if finished is not None:
            return finished

    all_rows, all_metric = [], []
    with frozen(model):
        bar = tqdm(batches, desc=f"{method} attribution", disable=not progress)
        for b, batch in enumerate(bar):
            cached = store.get(b) if store is not None else None
            if cached is None:
                rows, mu = batch_fn(model, graph, batch, metric_fn, alphas)
                rows = rows.to(dtype)
                if store is not None:
                    store.put(b, rows, mu)
            else:
                rows, mu = cached
            all_rows.append(rows)
            all_metric.append(mu)
    scores = torch.cat(all_rows)
    clean_metric = torch.cat(all_metric)
    ids = [i for b in batch_ids for i in b]
    groups = getattr(dataloader, "groups", None)
    if groups is not None and len(groups) != len(ids):
        groups = None

    bad = (~torch.isfinite(scores.float())).any(1)
    if bool(bad.any()):
        bad_ids = [ids[i] for i in bad.nonzero().flatten().tolist()]
        share = len(bad_ids) / len(ids)
        if share > nan_tolerance:
            raise FloatingPointError(
                f"{len(bad_ids)} of {len(ids)} examples ({share:.1%}) have non-finite "
                f"attribution rows (ids {bad_ids[:10]}): above nan_tolerance="
                f"{nan_tolerance}. Check the model's dtype (float16 overflows) and prompts.")
        warnings.warn(f"dropping {len(bad_ids)} example(s) with non-finite attribution "
                      f"rows: ids {bad_ids[:20]}", stacklevel=2)
        keep = (~bad).nonzero().flatten()
        scores, clean_metric = scores[keep], clean_metric[keep]
        ids = [ids[i] for i in keep.tolist()]
        groups = None if groups is None else [groups[i] for i in keep.tolist()]
        params["dropped_ids"] = bad_ids

    params["backend"] = backend_name
    params["clean_metric"] = [float(x) for x in clean_metric]
    matrix = AttributionMatrix(scores=scores, edge_names=graph.names, example_ids=ids,
                               groups=groups, meta=params, layout=graph.layout)
    if store is not None:
        store.finish(matrix)
    return matrix
