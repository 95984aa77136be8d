"""The main job: dataset -> per-example attributions -> clusters -> circuits -> report.

``run(RunConfig(...))`` does, writing everything under ``config.out``:

1. load the model and the dataset (a JSON file, a generated task, or the embedded toy
   model's mixed dataset), split train/test (the prompts' own ``split`` fields if any);
2. per-example attribution of train and test examples (cached in ``out/cache``: an
   interrupted run resumes, a repeated run loads);
3. fit :class:`GroupedDiscovery` on the train rows; route test examples with ``predict``;
4. circuits: the single baseline (all train rows), one per cluster, K-random (same k);
5. evaluate every circuit once on the whole test split at every edge fraction
   (per-example metric values), then aggregate without more model passes: single,
   DCD oracle and routed, K-random, each cluster's own circuit vs the single circuit on
   its routed test group, cross-faithfulness at ``p`` and edge overlap;
6. write ``report.json``, ``report.html``, the attribution matrices and the circuits
   (``circuits.safetensors`` + ``circuits.json`` with edge names and top edges).
"""

from __future__ import annotations

import json
import math
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch

__all__ = ["RunConfig", "run", "load_tokenizer", "summary_table"]

DEFAULT_MODEL = "toy-two-task"
#: edges of each cluster's circuit drawn in the report (its top edges by |score|)
DRAWN_EDGES = 40


@dataclass
class RunConfig:
    """Everything ``auto-circuit-dcd run`` takes; see ``auto-circuit-dcd run --help``."""

    model: str = DEFAULT_MODEL
    dataset: Optional[str] = None
    task: Optional[str] = None
    prompt_types: Optional[List[str]] = None
    method: str = "eap"
    ig_steps: int = 5
    clusterer: str = "auto"
    max_clusters: int = 8
    k_rule: str = "silhouette"
    # Rows are L2-normalised before clustering: on SmolLM2 (IOI + sequence completion)
    # raw rows put one large-norm example in its own cluster (ARI 0.0), L2 rows give 0.967;
    # on the toy model both give 0.984 (EAP). GroupedDiscovery itself defaults to "raw".
    preprocessing: str = "l2"
    base_algo: str = "eap"
    n: Optional[int] = None
    batch_size: int = 16
    seed: int = 42
    test_fraction: float = 0.2
    out: str = "runs/default"
    edge_fractions: Optional[List[float]] = None
    threads: Optional[int] = None
    p_cross: float = 0.05
    metric: str = "max_diff"
    # "auto": CUDA if available, else the CPU; or "cpu", "cuda", "cuda:N", "mps"
    device: str = "auto"
    # the model's dtype: "float32", "float16" or "bfloat16"
    dtype: str = "float32"


class _Timer:
    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 3)


def load_tokenizer(model: str) -> Any:
    """The tokenizer of a model name without loading its weights where possible."""
    if model == "smollm2-135m":
        from .models.smollm2 import load_smollm2_tokenizer

        return load_smollm2_tokenizer()
    if model == "toy-two-task":
        from .toy import toy_tokenizer

        return toy_tokenizer()
    from .models import load_model

    return load_model(model).tokenizer


def _dataset_path(config: RunConfig, tokenizer: Any, out: Path) -> Path:
    if config.dataset:
        path = Path(config.dataset)
        if not path.exists():
            raise FileNotFoundError(f"--dataset {path} does not exist")
        return path
    if config.task:
        from .tasks import make_dataset

        path = out / "dataset.json"
        make_dataset(task=config.task, prompt_types=config.prompt_types, tokenizer=tokenizer,
                     n=config.n or 1000, seed=config.seed, out=path)
        return path
    if config.model == "toy-two-task":
        from .toy import toy_dataset_path

        return Path(toy_dataset_path("mixed"))
    raise ValueError(f"model {config.model!r} has no embedded dataset: pass --dataset FILE "
                     "or --task NAME (e.g. --task all-tasks)")


def _finite(x: Any) -> Any:
    """JSON-safe floats: NaN/inf -> None, numpy -> python."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.ndarray):
        return _finite(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("auto-circuit-dcd", "auto-circuit", "transformer-lens", "torch",
                "transformers", "scikit-learn", "hdbscan", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _curve_stats(f: np.ndarray, fractions: np.ndarray) -> Dict[str, Any]:
    from .metrics import cmd, cpr

    curve = (fractions, f)
    return {"faithfulness": f, "cpr": cpr(curve), "cmd": cmd(curve)}


def _subset_f(result: Any, rows: np.ndarray) -> np.ndarray:
    from .metrics.faithfulness import ratio_of_means

    if rows.size == 0:
        return np.full(result.fractions.shape, np.nan)
    return ratio_of_means(result.mu_circuit[rows], result.mu_full[rows], result.mu_empty[rows])


def _save_circuits(path: Path, circuits: Dict[str, torch.Tensor], edge_names: List[str],
                   top: int = 50) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous().float() for k, v in circuits.items()},
              str(path / "circuits.safetensors"))
    listing = {}
    for name, vec in circuits.items():
        order = vec.abs().argsort(descending=True)[:top].tolist()
        listing[name] = [[edge_names[j], float(vec[j])] for j in order]
    (path / "circuits.json").write_text(json.dumps({
        "edge_names": edge_names,
        "scores_file": "circuits.safetensors",
        "top_edges": listing,
    }))


def run(config: RunConfig, progress: bool = True) -> Dict[str, Any]:
    """Run the whole job; returns the report dict (also written to ``out/report.json``)."""
    from . import attribute
    from .cluster import GroupedDiscovery, k_random_circuits, single_circuit
    from .data import load_examples, make_loader, split_examples
    from .metrics import (MIB_GRID, cluster_quality, combine_circuits, evaluate_circuits,
                          overlap_matrix)
    from .models import load_model, make_patchable

    if config.threads:
        torch.set_num_threads(int(config.threads))
    fractions = sorted(set(config.edge_fractions or MIB_GRID) | {config.p_cross})
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    timer = _Timer()

    with timer.stage("load_model"):
        pm = make_patchable(load_model(config.model, device=config.device,
                                       dtype=config.dtype))
    with timer.stage("dataset"):
        path = _dataset_path(config, pm.tokenizer, out)
        examples = load_examples(path, pm.tokenizer, n=config.n if not config.task else None)
        train_ex, test_ex = split_examples(examples, config.test_fraction, seed=config.seed)
        train = make_loader(train_ex, config.batch_size)
        test = make_loader(test_ex, config.batch_size)
    with timer.stage("attribution"):
        kw = dict(method=config.method, ig_steps=config.ig_steps, metric=config.metric,
                  cache_dir=out / "cache", progress=progress)
        A = attribute(pm, train, **kw)
        A_test = attribute(pm, test, **kw)
    with timer.stage("clustering"):
        gd = GroupedDiscovery(clusterer=config.clusterer, base_algo=config.base_algo,
                              max_clusters=config.max_clusters, k_rule=config.k_rule,
                              preprocessing=config.preprocessing,
                              random_state=config.seed)
        gd.fit(A, model=pm, dataloader=train)
        routed = np.asarray(gd.predict(A_test))
    k = int(gd.n_clusters_)
    cluster_labels = sorted(int(c) for c in gd.circuits_)
    with timer.stage("circuits"):
        layout = A.layout_for(pm)
        vec = lambda ps: layout.from_prune_scores(ps)  # noqa: E731
        circuits: Dict[str, torch.Tensor] = {"single": vec(single_circuit(A)[0])}
        for c in cluster_labels:
            circuits[f"cluster_{c}"] = vec(gd.circuits_[c])
        krand = k_random_circuits(A, k, random_state=config.seed) if k > 1 else {}
        for c, ps in krand.items():
            circuits[f"k_random_{c}"] = vec(ps)
    with timer.stage("evaluation"):
        results = evaluate_circuits(pm, test, circuits, fractions, metric=config.metric,
                                    progress=progress)
    frac = np.asarray(fractions)
    test_ids = results["single"].example_ids
    pos_of = {str(i): j for j, i in enumerate(A_test.example_ids)}
    route = np.array([routed[pos_of[str(i)]] for i in test_ids])
    largest = cluster_labels[0]
    dcd_res = {c: results[f"cluster_{c}"] for c in cluster_labels}
    dcd = combine_circuits(dcd_res, routing=route.tolist(), fallback=largest)
    kr_labels = [f"k_random_{c}" for c in krand]
    k_random: Dict[str, Any] = {"faithfulness_oracle": None, "faithfulness_routed": None}
    if kr_labels:
        rng = np.random.default_rng(config.seed)
        kr_route = rng.permutation(np.arange(len(test_ids)) % len(kr_labels))
        kr = combine_circuits({lab: results[lab] for lab in kr_labels},
                              routing=[kr_labels[i] for i in kr_route])
        k_random = {"faithfulness_oracle": kr.oracle_f, "faithfulness_routed": kr.routed_f}
    single = results["single"]
    p_idx = int(np.flatnonzero(np.isclose(frac, config.p_cross))[0])

    train_groups = A.groups
    clusters = []
    for c in cluster_labels:
        rows = np.flatnonzero(route == c)
        members = np.flatnonzero(np.asarray(gd.labels_) == c)
        comp: Dict[str, int] = {}
        if train_groups is not None:
            for i in members:
                comp[str(train_groups[i])] = comp.get(str(train_groups[i]), 0) + 1
        own = _subset_f(results[f"cluster_{c}"], rows)
        clusters.append({"label": c, "size": int(members.size), "n_test": int(rows.size),
                         "composition": comp, "faithfulness_own": own,
                         "single_on_group": _subset_f(single, rows),
                         "cpr_own": _curve_stats(own, frac)["cpr"]})
    cross = np.array([[_subset_f(results[f"cluster_{i}"], np.flatnonzero(route == j))[p_idx]
                       for j in cluster_labels] for i in cluster_labels])
    overlap = overlap_matrix({c: circuits[f"cluster_{c}"] for c in cluster_labels})
    quality = None
    if train_groups is not None:
        quality = cluster_quality(list(train_groups), list(np.asarray(gd.labels_))).to_dict()

    dcd_stats = {"oracle": _curve_stats(dcd.oracle_f, frac),
                 "routed": _curve_stats(dcd.routed_f, frac)}
    report = {
        "model": config.model,
        "dataset": str(path),
        "method": config.method,
        "metric": config.metric,
        "config": asdict(config),
        "n_train": A.n_examples,
        "n_test": A_test.n_examples,
        "n_edges": A.n_edges,
        "n_clusters": k,
        "labels": [int(x) for x in gd.labels_],
        "example_ids": A.example_ids,
        "groups": train_groups,
        "test_routing": [int(x) for x in route],
        "edge_fractions": fractions,
        "achieved_edge_counts": {name: r.achieved_counts for name, r in results.items()},
        "single": _curve_stats(single.f, frac),
        "dcd": {
            "faithfulness_oracle": dcd.oracle_f,
            "faithfulness_routed": dcd.routed_f,
            "cpr": {name: st["cpr"] for name, st in dcd_stats.items()},
            "cmd": {name: st["cmd"] for name, st in dcd_stats.items()},
            "clusters": clusters,
        },
        "k_random": k_random,
        "cross_faithfulness": {"p": config.p_cross, "labels": cluster_labels, "matrix": cross,
                               "orientation": "matrix[i][j] = circuit of cluster i on the "
                                              "test examples routed to cluster j"},
        "edge_overlap": {"gamma": 0.99, "labels": cluster_labels,
                         "matrix": np.asarray(overlap.matrix)},
        "cluster_quality": quality,
        "selection": _finite(getattr(gd, "selection_", [])),
        "timings": timer.seconds,
        "versions": _versions(),
    }
    report = _finite(report)
    A.save(out / "attribution_train")
    A_test.save(out / "attribution_test")
    _save_circuits(out, circuits, A.edge_names)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    _write_html(report, out, pm, A, circuits, gd)
    print(summary_table(report))
    return report


def _write_html(report: Dict[str, Any], out: Path, pm: Any, A: Any,
                circuits: Dict[str, torch.Tensor], gd: Any) -> None:
    from .report import circuit_figure, write_html

    x = A.to_numpy()
    x = x - x.mean(0, keepdims=True)
    try:
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        xy = u[:, :2] * s[:2]
    except np.linalg.LinAlgError:
        xy = np.zeros((x.shape[0], 2))
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    layout = A.layout_for(pm)
    figures = {}
    for c in report["cross_faithfulness"]["labels"]:
        n = min(DRAWN_EDGES, A.n_edges)
        fig = circuit_figure(pm, layout.to_prune_scores(circuits[f"cluster_{c}"]), n)
        if fig is not None:
            figures[c] = fig
    extras = {"projection": {"x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(),
                             "labels": report["labels"], "groups": report["groups"]},
              "circuit_figures": figures}
    write_html(report, out / "report.html", extras)


def summary_table(report: Dict[str, Any]) -> str:
    """Plain-text table: clusters, sizes, composition, f at p for own vs single circuit."""
    fr = report["edge_fractions"]
    p = report["cross_faithfulness"]["p"]
    j = min(range(len(fr)), key=lambda i: abs(fr[i] - p))

    def fmt(v: Optional[float]) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [f"{report['model']} | {report['method']} | {report['n_train']} train / "
             f"{report['n_test']} test | {report['n_edges']} edges | k = {report['n_clusters']}"]
    q = report.get("cluster_quality")
    if q:
        lines.append(f"cluster quality vs known groups: ARI {fmt(q.get('ari'))}, "
                     f"NMI {fmt(q.get('nmi'))}")
    lines.append(f"{'cluster':>7} {'size':>5} {'test':>5}  {'f own':>7} {'f single':>8}  composition")
    for c in report["dcd"]["clusters"]:
        comp = ", ".join(f"{g}:{n}" for g, n in sorted(c["composition"].items())) or "-"
        lines.append(f"{c['label']:>7} {c['size']:>5} {c['n_test']:>5}  "
                     f"{fmt(c['faithfulness_own'][j]):>7} {fmt(c['single_on_group'][j]):>8}  {comp}")
    lines.append(f"at p = {fr[j]:g}: single {fmt(report['single']['faithfulness'][j])}, "
                 f"DCD routed {fmt(report['dcd']['faithfulness_routed'][j])}, "
                 f"DCD oracle {fmt(report['dcd']['faithfulness_oracle'][j])}")
    return "\n".join(lines)
