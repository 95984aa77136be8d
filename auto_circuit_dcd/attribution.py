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

How, per batch (every example in a batch has the same token length):

1. corrupt forward (no grad): record every source's output;
2. for each ``alpha`` (1 first): forward with the Resid Start output interpolated,
   record the clean source outputs in the ``alpha = 1`` pass, then one backward of
   ``sum_i mu_i``: examples do not interact, so each row of each destination gradient is
   that example's own gradient;
3. as each destination's gradient arrives, contract it with the source differences in
   one batched matrix product, ``[B, heads, pos*d] @ [B, pos*d, n_src]``, giving the
   destination's block of edges for all examples at once.

Nothing is stored per destination (auto-circuit keeps a source-difference copy in each
of its destination wrappers); the model is never put in patch mode.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .edges import edge_layout
from .matrix import AttributionMatrix

__all__ = ["attribute", "METRICS", "METHODS", "BACKENDS"]


# ----------------------------------------------------------------------------- metrics
def _gather(logits: Tensor, ids: Tensor | Sequence[Tensor]) -> List[Tensor]:
    if isinstance(ids, Tensor):
        return list(torch.gather(logits, 1, ids.to(logits.device)))
    return [logits[b, a.to(logits.device)] for b, a in enumerate(ids)]


def max_diff(logits: Tensor, batch: Any) -> Tensor:
    """mu = mean logit of the correct answers - max logit of the wrong answers, per example."""
    good = _gather(logits, batch.answers)
    bad = _gather(logits, batch.wrong_answers)
    return torch.stack([g.mean() - b.max() for g, b in zip(good, bad)])


def avg_diff(logits: Tensor, batch: Any) -> Tensor:
    """auto-circuit's answer difference: mean correct logit - mean wrong logit, per example."""
    good = _gather(logits, batch.answers)
    bad = _gather(logits, batch.wrong_answers)
    return torch.stack([g.mean() - b.mean() for g, b in zip(good, bad)])


def last_position(logits: Tensor) -> Tensor:
    """Logits ``[B, vocab]`` at the last position, whether or not the model was made
    patchable with ``slice_output="last_seq"`` (then they already are)."""
    return logits[:, -1] if logits.ndim == 3 else logits


METRICS: Dict[str, Callable[[Tensor, Any], Tensor]] = {
    "max_diff": max_diff,
    "avg_diff": avg_diff,
}
METHODS: Dict[str, Optional[int]] = {"eap": 1, "eap-ig": None}
#: "fast": flag-free forward with closed-form norm Jacobians (fast_attribution.py);
#: "hooks": this module's path through auto-circuit's per-head hook points;
#: "auto": fast where the model is supported, else hooks. Both give the same rows.
BACKENDS = ("auto", "fast", "hooks")


# ----------------------------------------------------------------------------- plumbing
@contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    """Weights without gradients (they cost ~60% of a backward) and eval mode, restored."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@contextmanager
def _hooks(handles: List[Any]) -> Iterator[List[Any]]:
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


class _Graph:
    """The wrappers of a PatchableModel, ordered, with what the contraction needs."""

    def __init__(self, model: Any):
        self.names, self.layout = edge_layout(model)
        self.srcs = sorted(model.src_wrappers, key=lambda w: w.src_idxs.start)
        self.n_src = max(w.src_idxs.stop for w in self.srcs)
        dests = {w.module_name: w for w in model.dest_wrappers}
        self.dests = [(dests[name], shape, a, b) for name, shape, a, b in self.layout.blocks]
        starts = [w for w in self.srcs if w.src_idxs.start == 0]
        self.input_wrapper = starts[0]
        if self.input_wrapper.head_dim is not None:
            raise ValueError("the first source node must be the input embedding")


def _src_block(out: Tensor, wrapper: Any) -> Tensor:
    """A source wrapper's output as ``[B, n_nodes, pos*d]`` (heads split like auto-circuit)."""
    b = out.shape[0]
    if wrapper.head_dim is None:
        return out.reshape(b, 1, -1)
    return out.movedim(wrapper.head_dim, 1).reshape(b, out.shape[wrapper.head_dim], -1)


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


def _batch_ids(dataloader: Any) -> Optional[List[List[Any]]]:
    ids = getattr(dataloader, "batch_example_ids", None)
    return None if ids is None else [list(b) for b in ids]


# ----------------------------------------------------------------------------- one batch
class _SourceDiffs:
    """Source outputs ``[B, n_src, pos*d]`` in ``src_idx`` order, filled by forward hooks:
    the corrupt outputs first (``sign=-1``), then replaced by clean - corrupt (``+1``)."""

    def __init__(self, bsz: int, n_src: int):
        self.bsz, self.n_src = bsz, n_src
        self.d: Optional[Tensor] = None

    def store(self, sl: slice, block: Tensor, sign: int) -> None:
        if self.d is None:
            self.d = torch.empty(self.bsz, self.n_src, block.shape[-1], dtype=block.dtype,
                                 device=block.device)
        self.d[:, sl] = block if sign < 0 else block - self.d[:, sl]

    def recorder(self, sign: int) -> Callable:
        """A forward hook for a source wrapper."""
        def hook(module: Any, args: Any, out: Tensor) -> None:
            self.store(module.src_idxs, _src_block(out.detach(), module), sign)
        return hook


def _accumulate(rows: Tensor, start: int, stop: int, g: Tensor, d: Tensor,
                n_steps: int) -> None:
    """``rows[:, start:stop] += (g @ d^T) / n_steps``; ``g [B, heads, P]``, ``d [B, n_in, P]``."""
    block = torch.matmul(g.to(d.dtype), d.transpose(1, 2))  # [B, heads, n_in]
    rows[:, start:stop] += (block.reshape(block.shape[0], -1).float() / n_steps).cpu()


def _run_passes(
    model: Any, graph: _Graph, batch: Any, metric: Callable, alphas: Sequence[float],
    source_hooks: Callable[[int], List[Any]],
    dest_hooks: Callable[[Tensor, int], List[Any]],
) -> Tuple[Tensor, Tensor]:
    """The passes every backend shares: corrupt forward, then one forward + backward per
    ``alpha`` (1 first) with the input embedding interpolated from corrupt to clean.

    ``source_hooks(sign)`` installs hooks recording source outputs (corrupt: ``-1``; the
    clean pass: ``+1``); ``dest_hooks(rows, n_steps)`` installs hooks that add each
    destination's block to ``rows`` as its gradient arrives. Returns rows ``[B, n_edges]``
    (float32) and the clean metric ``[B]``.
    """
    clean, corrupt = batch.clean, batch.corrupt
    if clean.shape != corrupt.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and corrupt {tuple(corrupt.shape)} "
                         "token tensors differ in shape")
    bsz = clean.shape[0]
    corrupt_input: List[Tensor] = []
    rows = torch.zeros(bsz, graph.layout.n_edges, dtype=torch.float32)

    with _hooks(source_hooks(-1) + [graph.input_wrapper.register_forward_hook(
            lambda m, a, out: corrupt_input.append(out.detach()))]), torch.no_grad():
        model(corrupt)

    clean_metric = torch.empty(bsz)
    for step, alpha in enumerate(alphas):
        handles: List[Any] = source_hooks(+1) if step == 0 else []

        def set_input(module: Any, args: Any, out: Tensor, alpha: float = alpha) -> Tensor:
            if alpha == 1.0:
                return out.detach().clone().requires_grad_(True)
            base = corrupt_input[0]
            return (base + alpha * (out.detach() - base)).requires_grad_(True)

        handles.append(graph.input_wrapper.register_forward_hook(set_input))
        handles += dest_hooks(rows, len(alphas))
        with _hooks(handles), torch.enable_grad():
            mu = metric(last_position(model(clean)[model.out_slice]).float(), batch)
            if step == 0:
                clean_metric = mu.detach().float().cpu()
            mu.sum().backward()
    return rows, clean_metric


def _attribute_batch(
    model: Any, graph: _Graph, batch: Any, metric: Callable, alphas: Sequence[float],
) -> Tuple[Tensor, Tensor]:
    """The hooks backend: sources and destinations read at auto-circuit's hook points."""
    diffs = _SourceDiffs(batch.clean.shape[0], graph.n_src)

    def source_hooks(sign: int) -> List[Any]:
        return [w.register_forward_hook(diffs.recorder(sign)) for w in graph.srcs]

    def dest_hooks(rows: Tensor, n_steps: int) -> List[Any]:
        return [w.register_forward_hook(_dest_hook(w, start, stop, diffs, rows, n_steps))
                for w, _shape, start, stop in graph.dests]

    return _run_passes(model, graph, batch, metric, alphas, source_hooks, dest_hooks)


def _dest_hook(wrapper: Any, start: int, stop: int, diffs: _SourceDiffs, rows: Tensor,
               n_steps: int) -> Callable:
    in_srcs = wrapper.in_srcs

    def on_grad(grad: Tensor) -> None:
        bsz = grad.shape[0]
        if wrapper.head_dim is None:
            g = grad.reshape(bsz, 1, -1)
        else:
            g = grad.movedim(wrapper.head_dim, 1).reshape(bsz, grad.shape[wrapper.head_dim], -1)
        _accumulate(rows, start, stop, g, diffs.d[:, in_srcs], n_steps)

    def hook(module: Any, args: Any, out: Tensor) -> None:
        if out.requires_grad:
            out.register_hook(on_grad)

    return hook


# ----------------------------------------------------------------------------- caching
def _fingerprint(model: Any, graph: _Graph, batches: List[Any], params: Dict[str, Any]) -> str:
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
        h.update(f"{float(flat.double().sum()):.10e}".encode())
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


def _choose_backend(model: Any, backend: str) -> Callable:
    from .fast_attribution import fast_attribute_batch, unsupported_reason

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "hooks":
        return _attribute_batch
    why = unsupported_reason(model)
    if why is None:
        return fast_attribute_batch
    if backend == "fast":
        raise ValueError(f"backend='fast' does not support this model: {why}; "
                         "use backend='hooks'")
    return _attribute_batch


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
        backend: ``"auto"`` (default), ``"fast"`` or ``"hooks"``; see :data:`BACKENDS`.

    Returns:
        an :class:`AttributionMatrix` with ``scores [n_examples, n_edges]``,
        ``edge_names``, ``example_ids``, ``groups`` and ``meta``; ``meta['clean_metric']``
        holds each example's metric on the clean prompt.
    """
    from auto_circuit.utils.custom_tqdm import tqdm

    method = method.lower()
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    steps = METHODS[method] or int(ig_steps)
    if steps < 1:
        raise ValueError("ig_steps must be at least 1")
    _check_model(model, dataloader)
    graph = _Graph(model)
    batch_fn = _choose_backend(model, backend)
    alphas = [k / steps for k in range(steps, 0, -1)]  # alpha = 1 first
    batches = list(dataloader)
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
    with _frozen(model):
        bar = tqdm(batches, desc=f"{method} attribution", disable=not progress)
        for b, batch in enumerate(bar):
            cached = store.get(b) if store is not None else None
            if cached is None:
                rows, mu = batch_fn(model, graph, batch, METRICS[metric], alphas)
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

    params["backend"] = "hooks" if batch_fn is _attribute_batch else "fast"
    params["clean_metric"] = [float(x) for x in clean_metric]
    matrix = AttributionMatrix(scores=scores, edge_names=graph.names, example_ids=ids,
                               groups=groups, meta=params, layout=graph.layout)
    if store is not None:
        store.finish(matrix)
    return matrix
