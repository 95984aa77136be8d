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
:func:`auto_circuit_dcd.attribution.passes.run_passes`: EAP-IG's steps stacked along the
batch dimension within ``max_stack_gib``, each destination's gradient summed over the steps
before one contraction with the source differences), keeps rows per batch in the cache
(:mod:`auto_circuit_dcd.attribution.cache`) when asked, and assembles the :class:`AttributionMatrix`
with the current loader's example ids and groups. Inside an initialised process group
(:mod:`auto_circuit_dcd.distributed`) every rank calls it with the same arguments; the
batches are split over the ranks by size (examples x tokens), each rank writes those it
computes into the cache, and every rank returns the whole matrix. Nothing is stored per
destination (auto-circuit keeps a
source-difference copy in each of its destination wrappers); the model is never put in
patch mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from auto_circuit_dcd.attribution.cache import (
    AttributionCache,
    batch_digest,
    cache_key,
    model_digest,
)
from auto_circuit_dcd.attribution.fast import fast_attribute_batch
from auto_circuit_dcd.attribution.hooks import hooks_attribute_batch
from auto_circuit_dcd.attribution.matrix import AttributionMatrix
from auto_circuit_dcd.data import DatasetError, batch_to
from auto_circuit_dcd.distributed import is_main, main_first, map_shards
from auto_circuit_dcd.errors import NonFiniteRowsError
from auto_circuit_dcd.model.devices import model_device
from auto_circuit_dcd.model.forward import WrapperGraph, choose_backend, frozen
from auto_circuit_dcd.model.grouped_query import is_grouped
from auto_circuit_dcd.model.task_metric import check_metric

__all__ = ["attribute", "METHODS", "BACKENDS"]

METHODS: dict[str, int | None] = {"eap": 1, "eap-ig": None}
#: backend name -> batch function
#: ``(model, graph, batch, metric, alphas, max_stack_gib=None) -> (rows, mu)``.
#: "fast": flag-free forward with closed-form norm Jacobians (:mod:`.fast`);
#: "hooks": auto-circuit's per-head hook points (:mod:`.hooks`). Both give the
#: same rows; "auto" (the default) takes "fast" where the model is supported.
BACKENDS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
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


def _batches(dataloader: Any) -> tuple[list[Any], list[list[Any]]]:
    """Every batch to score and the example ids of its rows.

    An :class:`ExampleLoader` knows its ids. auto-circuit's own ``PromptDataLoader``
    drops its last partial batch (``drop_last=True``): its ``dataset`` is batched again
    here, in order and keeping every example; row ``i`` is ``loader.dataset[i]``.
    """
    from auto_circuit.data import PromptDataLoader, collate_fn
    from torch.utils.data import DataLoader

    ids = getattr(dataloader, "batch_example_ids", None)
    if ids is not None:
        return list(dataloader), [list(b) for b in ids]
    if isinstance(dataloader, PromptDataLoader):
        dataloader = DataLoader(dataloader.dataset, batch_size=dataloader.batch_size or 1,
                                shuffle=False, collate_fn=collate_fn)
    batches = list(dataloader)
    out, start = [], 0
    for b in batches:
        out.append(list(range(start, start + b.clean.shape[0])))
        start += b.clean.shape[0]
    return batches, out


def _check_lengths(model: Any, batches: list[Any], batch_ids: list[list[Any]]) -> None:
    """Refuse prompts longer than the model's context, naming them and the limit."""
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx is None:
        return
    for batch, ids in zip(batches, batch_ids):
        length = int(batch.clean.shape[1])
        if length > n_ctx:
            raise DatasetError(
                f"prompt(s) {ids[:5]} are {length} tokens long (BOS included), longer than "
                f"the model's context of {n_ctx} tokens (cfg.n_ctx): shorten or drop them")


# ----------------------------------------------------------------------------- public
def attribute(
    model: Any,
    dataloader: Any,
    method: str = "eap",
    *,
    ig_steps: int = 5,
    metric: str = "max_diff",
    cache_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    nan_tolerance: float = 0.01,
    progress: bool = True,
    backend: str = "auto",
    max_stack_gib: float | None = None,
) -> AttributionMatrix:
    """Per-example edge attribution: one row per example, columns in the fixed edge order.

    Args:
        model: an auto-circuit ``PatchableModel`` (factorized, positions summed).
        dataloader: an :class:`ExampleLoader` (from :func:`auto_circuit_dcd.prepare`:
            rows in its order, with example ids and groups) or auto-circuit's own
            ``PromptDataLoader`` (every example of ``loader.dataset``, the last partial
            batch its ``drop_last`` leaves out included; row ``i`` is ``dataset[i]``).
        method: ``"eap"`` or ``"eap-ig"`` (input embeddings interpolated corrupt -> clean
            over ``ig_steps`` points, gradients averaged).
        metric: ``"max_diff"`` (the method's mu: correct logit - max wrong logit) or
            ``"avg_diff"`` (auto-circuit's: mean correct - mean wrong).
        cache_dir: if given, rows are written there per batch as they are computed; a
            second call with the same model weights and config, data and parameters
            resumes or loads; every file is verified when read (see
            :mod:`auto_circuit_dcd.attribution.cache`). Ids and groups always come from
            ``dataloader``.
        dtype: storage dtype of the scores (``torch.float32`` or ``torch.float16``).
        nan_tolerance: largest share of examples whose row is not finite that is dropped
            (with a warning naming them, and their ids in ``meta["dropped_ids"]``);
            above it, :class:`~auto_circuit_dcd.errors.NonFiniteRowsError`. Applied on
            every call, to cached rows too.
        backend: ``"auto"`` (default: fast where supported), ``"fast"`` or ``"hooks"``;
            see :data:`BACKENDS`.
        max_stack_gib: working memory (GiB) of one forward + backward over a stack of
            EAP-IG steps (the batch's interpolated inputs stacked along the batch
            dimension); more steps than fit are split over several stacks, with the same
            rows. Default: :data:`~auto_circuit_dcd.attribution.passes.DEFAULT_CPU_STACK_GIB`
            on the CPU, a quarter of the free memory on a GPU.

    Returns:
        an :class:`AttributionMatrix` with ``scores [n_examples, n_edges]``,
        ``edge_names``, ``example_ids``, ``groups`` and ``meta``; ``meta['clean_metric']``
        holds each example's metric on the clean prompt.
    """
    method = method.lower()
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    metric_fn = check_metric(metric)
    steps = METHODS[method] or int(ig_steps)
    if steps < 1:
        raise ValueError("ig_steps must be at least 1")
    if not 0.0 <= nan_tolerance <= 1.0:
        raise ValueError(f"nan_tolerance is a share of examples in [0, 1], got {nan_tolerance}")
    if max_stack_gib is not None and not max_stack_gib > 0:
        raise ValueError(f"max_stack_gib must be positive (GiB), got {max_stack_gib}")
    _check_model(model, dataloader)
    graph = WrapperGraph(model)
    backend_name = choose_backend(model, backend, BACKENDS, fallback="hooks")
    batches, batch_ids = _batches(dataloader)
    device = model_device(model)
    batches = [batch_to(b, device) for b in batches]
    if not batches:
        raise DatasetError("the dataloader yields no batches (empty dataset)")
    _check_lengths(model, batches, batch_ids)
    params = {"method": method, "ig_steps": steps, "metric": metric,
              "model": str(getattr(model.cfg, "model_name", "unknown")),
              "dtype": str(dtype).replace("torch.", ""), "backend": backend_name}

    with ExitStack() as stack:
        store: AttributionCache | None = None
        keys: list[str] = []
        if cache_dir is not None:
            keys = [batch_digest(b) for b in batches]
            key = cache_key(model_digest(model), graph.names, keys, params)
            # rank 0 locks the folder (and clears what a killed run left) before the others
            store = main_first(lambda: stack.enter_context(
                AttributionCache(Path(cache_dir), key, lock=is_main())))
        n_rows = sum(len(ids) for ids in batch_ids)
        found = main_first(lambda: store.rows(n_rows)) if store is not None else None
        if found is None:
            found = _compute(model, graph, batches, BACKENDS[backend_name], metric_fn,
                             [k / steps for k in range(steps, 0, -1)],  # alpha = 1 first
                             dtype, store, keys, desc=f"{method} attribution",
                             progress=progress and is_main(), max_stack_gib=max_stack_gib)
            if store is not None and is_main():
                store.finish(*found)
    scores, clean_metric = found
    return _matrix(scores, clean_metric, graph, dataloader, batch_ids, params,
                   nan_tolerance)


def _compute(model: Any, graph: WrapperGraph, batches: list[Any], batch_fn: Callable,
             metric_fn: Callable, alphas: list[float], dtype: torch.dtype,
             store: AttributionCache | None, keys: list[str], desc: str,
             progress: bool, max_stack_gib: float | None = None) -> tuple[Tensor, Tensor]:
    """Rows and clean metrics of every batch, read from ``store`` where it has them.

    Inside a process group each rank does its share of the batches, by size
    (:func:`~auto_circuit_dcd.distributed.map_shards`), writing each into ``store`` as it
    finishes, and every rank gets all rows (on the CPU)."""
    from auto_circuit.utils.custom_tqdm import tqdm

    def rows_of(todo: list[int]) -> dict[int, tuple[Tensor, Tensor]]:
        out: dict[int, tuple[Tensor, Tensor]] = {}
        with frozen(model):
            for b in tqdm(todo, desc=desc, disable=not progress):
                batch = batches[b]
                n = int(batch.clean.shape[0])
                cached = store.batch(b, keys[b], n) if store is not None else None
                if cached is None:
                    rows, mu = batch_fn(model, graph, batch, metric_fn, alphas,
                                        max_stack_gib=max_stack_gib)
                    rows = rows.to(dtype)
                    if store is not None:
                        store.put_batch(b, keys[b], rows, mu)
                else:
                    rows, mu = cached
                out[b] = (rows.cpu(), mu.cpu())
        return out

    parts = map_shards(len(batches), rows_of,
                       weights=[b.clean.numel() for b in batches])  # examples x tokens
    scores = torch.cat([parts[b][0] for b in range(len(batches))])
    clean_metric = torch.cat([parts[b][1] for b in range(len(batches))])
    return scores, clean_metric


def _matrix(scores: Tensor, clean_metric: Tensor, graph: WrapperGraph, dataloader: Any,
            batch_ids: list[list[Any]], params: dict[str, Any],
            nan_tolerance: float) -> AttributionMatrix:
    """The matrix with the current loader's ids and groups, non-finite rows dropped."""
    ids = [i for b in batch_ids for i in b]
    groups = getattr(dataloader, "groups", None)
    if groups is not None and len(groups) != len(ids):
        groups = None
    meta = dict(params)
    bad = (~torch.isfinite(scores.float())).any(1)
    if bool(bad.any()):
        bad_ids = [ids[i] for i in bad.nonzero().flatten().tolist()]
        share = len(bad_ids) / len(ids)
        if share > nan_tolerance:
            raise NonFiniteRowsError(
                f"{len(bad_ids)} of {len(ids)} examples ({share:.1%}) have non-finite "
                f"attribution rows (ids {bad_ids[:10]}): above nan_tolerance="
                f"{nan_tolerance}. Check the model's dtype (float16 overflows) and prompts.")
        warnings.warn(f"dropping {len(bad_ids)} example(s) with non-finite attribution "
                      f"rows: ids {bad_ids[:20]}", stacklevel=3)
        keep = (~bad).nonzero().flatten()
        scores, clean_metric = scores[keep], clean_metric[keep]
        ids = [ids[i] for i in keep.tolist()]
        groups = None if groups is None else [groups[i] for i in keep.tolist()]
        meta["dropped_ids"] = bad_ids
    meta["clean_metric"] = [float(x) for x in clean_metric]
    return AttributionMatrix(scores=scores, edge_names=graph.names, example_ids=ids,
                             groups=groups, meta=meta, layout=graph.layout)
