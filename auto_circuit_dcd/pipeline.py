"""The main job: dataset -> per-example attributions -> clusters -> circuits -> report.

``run(RunConfig(...))`` does, writing everything under ``config.out``:

0. check every argument (:func:`check_config`) before anything is loaded, then lock
   ``config.out`` for the run (a failed run removes an output folder it created, unless
   it holds cached attributions to resume from);
1. load the model and the dataset (a JSON file, a generated task, or the embedded toy
   model's mixed dataset), split train/test (the prompts' own ``split`` fields if any);
2. per-example attribution of train and test examples (cached in ``out/cache``: an
   interrupted run resumes, a repeated run loads); examples whose rows are not finite
   (within ``nan_tolerance``) are left out of everything after, and reported;
3. fit :class:`GroupedDiscovery` on the train rows; route test examples with ``predict``
   on their own attribution rows (so routing needs each test example's answers and
   corrupted prompt); HDBSCAN noise (``-1``) is counted, and routed faithfulness is
   given both with noise left out and with it sent to the largest cluster's circuit;
   cluster stability: the clusterer refitted on subsamples of the train rows
   (:func:`~auto_circuit_dcd.cluster.cluster_stability`; clustering only);
4. circuits (:class:`~auto_circuit_dcd.circuit.Circuit`), all by the same base algorithm:
   the single baseline (all train examples), one per cluster, K-random (same k);
5. evaluate every circuit once on the whole test split at every edge fraction, each
   size's edges chosen by the selection rule and ranking of the run's convention
   (:func:`~auto_circuit_dcd.metrics.convention.make_convention`; a second ranking is
   evaluated when CMD ranks differently, as under MIB parity), then aggregate without
   more model passes: single, DCD oracle and routed, K-random, each cluster's own
   circuit vs the single circuit on its routed test group, cross-faithfulness at ``p``
   and edge overlap;
6. write the attribution matrices and the circuits (``circuits.safetensors``: scores and
   the edge sets evaluated; ``circuits.json`` with edge names and top edges), then
   ``report.json`` and ``report.html``: each file whole or not at all, data before what
   describes it.

Under torchrun or srun (:mod:`auto_circuit_dcd.distributed`) every worker loads the model
and the data and does its share of steps 2 and 5; steps 3, 4 and 6 run on rank 0, which
hands the circuits, then the report, to the others (or its error, which ends them too).
Rank 0 alone holds the lock of ``config.out``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from .config import RunConfig
from .model_table import MODELS, embedded_dataset
from .errors import ConfigError
from .files import folder_lock, remove_temporaries, save_tensors, write_text

if TYPE_CHECKING:  # pragma: no cover
    from .metrics.convention import Convention

__all__ = ["RunConfig", "run", "check_config", "edge_fractions", "load_tokenizer",
           "summary_table"]

#: the main job's selection rule (chosen by measurement: README, "Choosing the selection rule")
DEFAULT_SELECTION = "topn-prune"
REPORT_JSON, REPORT_HTML = "report.json", "report.html"
#: version of report.json's keys; rises when a key changes meaning or goes away
REPORT_SCHEMA_VERSION = 1
#: the composition entry of training examples without a group label
UNLABELLED = "(no group)"
ROUTING_NOTE = ("each test example is routed by its own attribution row, which needs its "
                "answers and its corrupted prompt; examples without them cannot be routed")


class _Timer:
    """Seconds per stage; with ``echo``, a line on stderr as each stage starts."""

    def __init__(self, echo: bool = False) -> None:
        self.seconds: Dict[str, float] = {}
        self.echo = echo

    def say(self, what: str) -> None:
        if self.echo:
            print(f"auto-circuit-dcd: {what}", file=sys.stderr, flush=True)

    @contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        self.say(what)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 3)


def load_tokenizer(model: str) -> Any:
    """The tokenizer of a model name without loading its weights where the model table
    has a tokenizer loader."""
    from .model_table import model_tokenizer

    tokenizer = model_tokenizer(model)
    if tokenizer is not None:
        return tokenizer
    from .models import load_model

    return load_model(model).tokenizer


def _dataset_path(config: RunConfig, tokenizer: Any, out: Path) -> Path:
    if config.dataset:
        return Path(config.dataset)
    if config.task:
        from .tasks import make_dataset

        path = out / "dataset.json"
        make_dataset(task=config.task, prompt_types=config.prompt_types, tokenizer=tokenizer,
                     n=config.n or 1000, seed=config.seed, out=path)
        return path
    embedded = embedded_dataset(config.model)
    if embedded is not None:
        return embedded
    raise ConfigError(f"model {config.model!r} has no embedded dataset: pass --dataset FILE "
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


def _curve_stats(f: np.ndarray, f_cmd: np.ndarray, fractions: np.ndarray,
                 conv: Convention) -> Dict[str, Any]:
    """The curve ``f`` (ranked for CPR), its CPR, and CMD of ``f_cmd`` (ranked for CMD; in
    the report as ``faithfulness_cmd`` when it is another curve)."""
    out = {"faithfulness": f, "cpr": conv.cpr((fractions, f)),
           "cmd": conv.cmd((fractions, f_cmd))}
    if f_cmd is not f:
        out["faithfulness_cmd"] = f_cmd
    return out


def _subset_f(result: Any, rows: np.ndarray) -> np.ndarray:
    from .metrics.faithfulness import ratio_of_means

    if rows.size == 0:
        return np.full(result.fractions.shape, np.nan)
    return ratio_of_means(result.mu_circuit[rows], result.mu_full[rows], result.mu_empty[rows])


def _save_circuits(path: Path, circuits: Dict[str, Any], by_ranking: Dict[str, Any],
                   layout: Any, graph_cfg: Dict[str, Any], top: int = 50) -> None:
    """``circuits.safetensors`` (each circuit's scores as ``NAME`` and the edges evaluated at
    each size as ``NAME.edges.RANKING``, bool ``[n_fractions, n_edges]``), then
    ``circuits.json`` describing it (old JSON removed first): edge names, the edge layout
    and the model's EAP-IG graph config (what ``export-mib`` needs without the model), and
    each circuit's top edges."""
    from .selection import rank_key

    (path / "circuits.json").unlink(missing_ok=True)
    tensors = {name: c.scores.float() for name, c in circuits.items()}
    first = next(iter(by_ranking.values()))["single"]
    for ranking, results in by_ranking.items():
        for name, r in results.items():
            sets = np.ascontiguousarray(r.edge_sets)
            tensors[f"{name}.edges.{ranking}"] = torch.from_numpy(sets)
    save_tensors(path / "circuits.safetensors", tensors)
    listing = {}
    for name, c in circuits.items():  # its top edges by the run's ranking, best first
        key = rank_key(c.scores, first.ranking)
        order = sorted(np.flatnonzero(c.top(top, first.ranking).mask.numpy()).tolist(),
                       key=lambda j: (-key[j], j))[:top]
        listing[name] = [[c.edge_names[j], float(c.scores[j])] for j in order]
    write_text(path / "circuits.json", json.dumps({
        "edge_names": list(next(iter(circuits.values())).edge_names),
        "layout": layout.to_json(),
        "graph_config": graph_cfg,
        "scores_file": "circuits.safetensors",
        "edge_sets": {"key": "NAME.edges.RANKING", "fractions": first.fractions.tolist(),
                      "selection": first.selection, "rankings": list(by_ranking)},
        "top_edges": listing,
    }))


def _build_circuits(config: RunConfig, pm: Any, A: Any, train: Any, gd: Any,
                    cluster_labels: List[int], k: int) -> Dict[str, Any]:
    """The single baseline, one circuit per cluster and K-random, as ``Circuit`` objects;
    the baselines built by the clusters' base algorithm."""
    from .circuit import Circuit
    from .cluster import k_random_circuits, single_circuit
    from .graph import edge_graph

    layout, graph = A.layout_for(pm), edge_graph(pm)
    algo = dict(base_algo=config.base_algo, dataloader=train)

    def circuit(name: str, ps: Any) -> Circuit:
        return Circuit(layout.from_prune_scores(ps), A.edge_names, layout, graph=graph,
                       meta={"label": name, "base_algo": str(config.base_algo)})

    out = {"single": circuit("single", single_circuit(A, pm, **algo)[0])}
    for c in cluster_labels:
        out[f"cluster_{c}"] = circuit(f"cluster_{c}", gd.circuits_[c])
    if k > 1:
        for c, ps in k_random_circuits(A, k, random_state=config.seed, model=pm, **algo).items():
            out[f"k_random_{c}"] = circuit(f"k_random_{c}", ps)
    return out


def _routed_curves(results: Dict[str, Any], cluster_labels: List[int], route: np.ndarray,
                   largest: int) -> Tuple[Any, Any]:
    """DCD's oracle and routed curves (noise to ``largest``), and routed without noise."""
    from .metrics import combine_circuits

    per = {c: results[f"cluster_{c}"] for c in cluster_labels}
    return (combine_circuits(per, routing=route.tolist(), fallback=largest),
            combine_circuits(per, routing=route.tolist(), exclude=(-1,)))


def _selection_report(conv: Convention, by_ranking: Dict[str, Any],
                      base_algo: Any) -> Dict[str, Any]:
    """The report's ``circuit_selection``: the convention, and the edges achieved per size
    and ranking (a rule can keep fewer edges than asked: pruning, or more: ties)."""
    first = next(iter(by_ranking.values()))["single"]
    return {**conv.to_dict(), "base_algo": str(base_algo),
            "requested_edge_counts": first.requested_counts,
            "achieved_edge_counts": {rank: {name: r.achieved_counts for name, r in res.items()}
                                     for rank, res in by_ranking.items()},
            "note": (f"each size's edges: {conv.selection} of the circuit's scores ranked by "
                     f"{conv.cpr_ranking} for the curves and CPR, by {conv.cmd_ranking} for "
                     f"CMD ({conv.cmd_form})")}


def _stability(gd: Any, A: Any, config: RunConfig, progress: bool) -> Optional[Dict[str, Any]]:
    """Cluster stability on subsamples of the train rows, refitting the clusterer the fit
    chose (None when switched off); its wall time is ``timings["stability"]``."""
    from .cluster import cluster_stability

    if not config.stability_resamples:
        return None
    st = cluster_stability(gd, A, n_resamples=config.stability_resamples,
                           random_state=config.seed, progress=progress, clusterer="chosen")
    return {**st.to_dict(), "clusterer": gd.method_}


def check_config(config: RunConfig) -> None:
    """Refuse a configuration that cannot work, before anything is loaded or written.

    Raises :class:`~auto_circuit_dcd.errors.ConfigError` naming the command-line flag
    and what to change.
    """
    from .attribution import METHODS
    from .devices import resolve_device, resolve_dtype
    from .models import check_model_name
    from .task_metric import check_metric

    def need(ok: bool, flag: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"{flag} {why}")

    for flag, value, low in (("--n", config.n, 1), ("--batch-size", config.batch_size, 1),
                             ("--ig-steps", config.ig_steps, 1),
                             ("--max-clusters", config.max_clusters, 2),
                             ("--threads", config.threads, 1)):
        need(value is None or (isinstance(value, int) and value >= low), flag,
             f"must be a whole number of at least {low}, got {value!r}")
    need(0.0 < config.test_fraction < 1.0, "--test-fraction",
         f"must lie strictly between 0 and 1, got {config.test_fraction}")
    need(0.0 <= config.nan_tolerance <= 1.0, "--nan-tolerance",
         f"is a share of examples in [0, 1], got {config.nan_tolerance}")
    need(isinstance(config.stability_resamples, int) and config.stability_resamples >= 0,
         "--stability-resamples", "must be a whole number of at least 0 (0: none), got "
         f"{config.stability_resamples!r}")
    try:
        convention(config)
    except ValueError as err:
        raise ConfigError(f"--selection/--ranking/--cmd/--mib-parity: {err}") from None
    need(config.method in METHODS, "--method", f"must be one of {sorted(METHODS)}, got "
         f"{config.method!r}")
    grid = edge_fractions(config)
    need(bool(grid) and all(0.0 <= f <= 1.0 for f in grid), "--edge-fractions",
         f"must be fractions in [0, 1], got {grid}")
    need(any(math.isclose(f, config.p_cross) for f in grid), "--edge-fractions",
         f"{grid} lacks {config.p_cross}, where cross-faithfulness is taken (--p-cross): "
         f"add {config.p_cross} or choose --p-cross among them")
    need(config.draw_fraction is None or 0.0 < config.draw_fraction <= 1.0, "--draw-fraction",
         f"is a fraction of edges in (0, 1], got {config.draw_fraction}")
    for flag, check in (("--model", lambda: check_model_name(config.model)),
                        ("--device", lambda: resolve_device(config.device)),
                        ("--dtype", lambda: resolve_dtype(config.dtype))):
        try:
            check()
        except ConfigError as err:
            raise ConfigError(f"{flag}: {err}") from None
    need(not (config.dataset and config.task), "--dataset", "and --task exclude each other")
    need(not config.prompt_types or bool(config.task), "--prompt-types", "needs --task")
    if config.dataset:
        need(Path(config.dataset).is_file(), "--dataset", f"{config.dataset} does not exist")
    elif not config.task:
        need(config.model in MODELS and MODELS[config.model].dataset is not None, "--model",
             f"{config.model!r} has no embedded dataset: pass --dataset FILE or --task NAME "
             "(e.g. --task all-tasks)")
    for flag, check in (
            ("--metric", lambda: check_metric(config.metric)),
            ("--task", lambda: _check_task(config)),
            ("--clusterer/--k-rule/--preprocessing/--base-algo",
             lambda: _discovery(config).check_params())):
        try:
            check()
        except ConfigError:
            raise
        except (ValueError, TypeError, KeyError) as err:
            raise ConfigError(f"{flag}: {err}") from None
    _check_out(Path(config.out))


def _check_task(config: RunConfig) -> None:
    if config.task:
        from .tasks.dataset import resolve_components

        resolve_components(config.task, config.prompt_types)


def _check_out(out: Path) -> None:
    """``--out`` must be a folder this process can create or write into."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot write into {existing} (permission denied); "
                          "choose another folder")


def convention(config: RunConfig) -> "Convention":
    """How the run chooses each size's edges and computes CPR and CMD."""
    from .metrics.convention import make_convention

    return make_convention(config.selection, config.ranking, config.cmd, config.mib_parity,
                           default_selection=DEFAULT_SELECTION)


def edge_fractions(config: RunConfig) -> List[float]:
    """The circuit sizes evaluated: ``config.edge_fractions`` or the MIB grid, sorted."""
    from .metrics import MIB_GRID

    return sorted(set(float(f) for f in (config.edge_fractions or MIB_GRID)))


def _discovery(config: RunConfig) -> Any:
    """The (unfitted) ``GroupedDiscovery`` the run uses."""
    from .cluster import GroupedDiscovery

    return GroupedDiscovery(clusterer=config.clusterer, base_algo=config.base_algo,
                            max_clusters=config.max_clusters, k_rule=config.k_rule,
                            preprocessing=config.preprocessing, random_state=config.seed)


@contextmanager
def _output_folder(out: Path) -> Iterator[Path]:
    """Hold ``out``'s lock for the run (rank 0 of a process group holds it for all). A run
    that fails removes the folders it created, unless they hold cached attribution rows
    (a re-run resumes from them)."""
    first_new = None
    p = out
    while not p.exists():
        first_new, p = p, p.parent
    from .distributed import is_main, main_first

    def lock() -> None:
        if is_main():
            stack.enter_context(folder_lock(out, what="run"))
            remove_temporaries(out, recursive=True)

    try:
        with ExitStack() as stack:
            main_first(lock)  # rank 0 only holds the lock; the others wait for it
            yield out
    except BaseException:
        if (is_main() and first_new is not None
                and not any((out / "cache").glob("attribution-*/*.safetensors"))):
            shutil.rmtree(first_new, ignore_errors=True)
        raise


def _quality(groups: Optional[List[Optional[str]]], labels: np.ndarray) -> Optional[Dict[str, Any]]:
    """Cluster quality on the rows that carry a group label, and how many do."""
    from .metrics import cluster_quality

    if groups is None:
        return None
    rows = [i for i, g in enumerate(groups) if g is not None]
    if not rows:
        return None
    q = cluster_quality([groups[i] for i in rows], [int(labels[i]) for i in rows]).to_dict()
    q.update(n_labelled=len(rows), n_unlabelled=len(groups) - len(rows))
    return q


def run(config: RunConfig, progress: bool = True) -> Dict[str, Any]:
    """Run the whole job; returns the report dict (also written to ``out/report.json``).

    The configuration is checked first (:func:`check_config`); then ``config.out`` is
    locked for the run (a second run into it is refused).
    """
    check_config(config)
    from . import attribute
    from .data import load_examples, make_loader, split_examples
    from .devices import resolve_device
    from .distributed import Handoff, from_main, is_main, process_group, world_size, worker_device
    from .metrics import combine_circuits, overlap_matrix
    from .models import load_model, make_patchable

    if config.threads:
        torch.set_num_threads(int(config.threads))
    fractions = edge_fractions(config)
    with process_group(config.device), _output_folder(Path(config.out)) as out, \
            Handoff() as handoff:
        timer = _Timer(echo=progress and is_main())
        device = worker_device(config.device)
        with timer.stage("load_model", f"loading {config.model} on "
                         f"{resolve_device(device)} ({config.dtype})"):
            pm = make_patchable(load_model(config.model, device=device, dtype=config.dtype))
        with timer.stage("dataset", "reading the dataset" if not config.task
                         else f"generating the {config.task} dataset"):
            path = from_main(lambda: _dataset_path(config, pm.tokenizer, out))
            examples = load_examples(path, pm.tokenizer, n=config.n if not config.task else None)
            train_ex, test_ex = split_examples(examples, config.test_fraction, seed=config.seed)
            train = make_loader(train_ex, config.batch_size)
            test = make_loader(test_ex, config.batch_size)
        with timer.stage("attribution", f"{config.method} attribution of {len(train_ex)} "
                         f"train and {len(test_ex)} test examples (cached in {out / 'cache'})"):
            kw = dict(method=config.method, ig_steps=config.ig_steps, metric=config.metric,
                      cache_dir=out / "cache", progress=progress,
                      nan_tolerance=config.nan_tolerance)
            A = attribute(pm, train, **kw)
            A_test = attribute(pm, test, **kw)
        # examples whose rows were not finite are left out of everything that follows
        dropped = {"train": list(A.meta.get("dropped_ids", [])),
                   "test": list(A_test.meta.get("dropped_ids", []))}
        if dropped["train"]:
            train = train.subset(A.example_ids)
        if dropped["test"]:
            test = test.subset(A_test.example_ids)
        handoff.open()
        if not is_main():  # the other ranks: evaluation only, then they wait for the report
            return _follow(handoff, config, pm, test, fractions)
        with timer.stage("clustering", f"clustering {A.n_examples} rows ({config.clusterer}, "
                         f"k from 2 to {config.max_clusters}) and routing the test examples"):
            gd = _discovery(config)
            gd.fit(A, model=pm, dataloader=train)
            routed = np.asarray(gd.predict(A_test))
        with timer.stage("stability", f"measuring cluster stability ({config.stability_resamples}"
                         " refits of the clusterer)" if config.stability_resamples else
                         "cluster stability skipped (--stability-resamples 0)"):
            stability = _stability(gd, A, config, progress)
        k = int(gd.n_clusters_)
        cluster_labels = sorted(int(c) for c in gd.circuits_)
        conv = convention(config)
        with timer.stage("circuits", "building the single, per-cluster and K-random "
                                     "circuits"):
            circuits = _build_circuits(config, pm, A, train, gd, cluster_labels, k)
        handoff.send(circuits)
        with timer.stage("evaluation", f"evaluating {len(circuits)} circuits at "
                         f"{len(fractions)} sizes on {A_test.n_examples} test examples"):
            by_ranking = _evaluate(config, pm, test, circuits, fractions, progress)
        results, cmd_results = by_ranking[conv.cpr_ranking], by_ranking[conv.cmd_ranking]
        frac = np.asarray(fractions)
        test_ids = results["single"].example_ids
        pos_of = {i: j for j, i in enumerate(A_test.example_ids)}
        route = np.array([routed[pos_of[i]] for i in test_ids], dtype=int)
        largest = cluster_labels[0]
        dcd, dcd_known = _routed_curves(results, cluster_labels, route, largest)
        dcd_cmd, dcd_known_cmd = ((dcd, dcd_known) if cmd_results is results else
                                  _routed_curves(cmd_results, cluster_labels, route, largest))
        kr_labels = [name for name in circuits if name.startswith("k_random_")]
        k_random: Dict[str, Any] = {"faithfulness_oracle": None, "faithfulness_routed": None,
                                    "cpr": {"oracle": None, "routed": None},
                                    "cmd": {"oracle": None, "routed": None}}
        if kr_labels:
            rng = np.random.default_rng(config.seed)
            kr_route = rng.permutation(np.arange(len(test_ids)) % len(kr_labels))
            kr_routing = [kr_labels[i] for i in kr_route]
            kr = combine_circuits({lab: results[lab] for lab in kr_labels}, routing=kr_routing)
            kr_cmd = kr if cmd_results is results else combine_circuits(
                {lab: cmd_results[lab] for lab in kr_labels}, routing=kr_routing)
            kr_stats = {"oracle": _curve_stats(kr.oracle_f, kr_cmd.oracle_f, frac, conv),
                        "routed": _curve_stats(kr.routed_f, kr_cmd.routed_f, frac, conv)}
            k_random = {"faithfulness_oracle": kr.oracle_f, "faithfulness_routed": kr.routed_f,
                        "cpr": {name: st["cpr"] for name, st in kr_stats.items()},
                        "cmd": {name: st["cmd"] for name, st in kr_stats.items()}}
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
                    g = train_groups[i]
                    name = UNLABELLED if g is None else str(g)
                    comp[name] = comp.get(name, 0) + 1
            own = _subset_f(results[f"cluster_{c}"], rows)
            clusters.append({"label": c, "size": int(members.size), "n_test": int(rows.size),
                             "composition": comp, "faithfulness_own": own,
                             "single_on_group": _subset_f(single, rows),
                             "cpr_own": conv.cpr((frac, own))})
        cross = np.array([[_subset_f(results[f"cluster_{i}"], np.flatnonzero(route == j))[p_idx]
                           for j in cluster_labels] for i in cluster_labels])
        overlap = overlap_matrix({c: circuits[f"cluster_{c}"] for c in cluster_labels})

        dcd_stats = {"oracle": _curve_stats(dcd.oracle_f, dcd_cmd.oracle_f, frac, conv),
                     "routed": _curve_stats(dcd.routed_f, dcd_cmd.routed_f, frac, conv),
                     "routed_excluding_noise": _curve_stats(
                         dcd_known.routed_f, dcd_known_cmd.routed_f, frac, conv)}
        report = {
            "schema_version": REPORT_SCHEMA_VERSION,
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
            "test_example_ids": list(test_ids),
            "test_routing": [int(x) for x in route],
            "dropped_examples": dropped,
            "routing": {
                "rule": gd.routing_rule_,
                "train_agreement": gd.train_agreement_,
                "n_test_noise": int((route == -1).sum()),
                "n_train_noise": int((np.asarray(gd.labels_) == -1).sum()),
                "noise_fallback": largest,
                "note": ROUTING_NOTE,
            },
            "edge_fractions": fractions,
            "achieved_edge_counts": {name: r.achieved_counts for name, r in results.items()},
            "circuit_selection": _selection_report(conv, by_ranking, config.base_algo),
            "single": _curve_stats(single.f, cmd_results["single"].f, frac, conv),
            "dcd": {
                "faithfulness_oracle": dcd.oracle_f,
                "faithfulness_routed": dcd.routed_f,
                "faithfulness_routed_excluding_noise": dcd_known.routed_f,
                "cpr": {name: st["cpr"] for name, st in dcd_stats.items()},
                "cmd": {name: st["cmd"] for name, st in dcd_stats.items()},
                "clusters": clusters,
            },
            "k_random": k_random,
            "cross_faithfulness": {"p": config.p_cross, "labels": cluster_labels,
                                   "matrix": cross,
                                   "orientation": "matrix[i][j] = circuit of cluster i on the "
                                                  "test examples routed to cluster j"},
            "edge_overlap": {"gamma": 0.99, "labels": cluster_labels,
                             "matrix": np.asarray(overlap.matrix)},
            "cluster_quality": _quality(train_groups, np.asarray(gd.labels_)),
            "stability": stability,
            "selection": _finite(getattr(gd, "selection_", [])),
            "world_size": world_size(),
            "timings": timer.seconds,
            "versions": _versions(),
        }
        report = _finite(report)
        timer.say(f"writing {out}")
        _write_outputs(out, report, pm, A, A_test, circuits, by_ranking, gd)
        handoff.send(report, last=True)
    print(summary_table(report))
    print(f"report: {(Path(config.out) / REPORT_HTML).resolve()}")
    return report


def _evaluate(config: RunConfig, pm: Any, test: Any, circuits: Dict[str, Any],
              fractions: List[float], progress: bool) -> Dict[str, Dict[str, Any]]:
    """Every circuit on the test split under each ranking of the run's convention
    (``{ranking: {name: FaithfulnessResult}}``), split by batch over the ranks of a
    process group."""
    from .metrics import evaluate_circuits

    conv = convention(config)
    return {r: evaluate_circuits(pm, test, circuits, fractions, metric=config.metric,
                                 progress=progress, selection=conv.selection, ranking=r)
            for r in conv.rankings()}


def _follow(handoff: Any, config: RunConfig, pm: Any, test: Any,
            fractions: List[float]) -> Dict[str, Any]:
    """A rank other than 0 after attribution: its share of the evaluation of rank 0's
    circuits, then rank 0's report (or rank 0's exception, raised here too)."""
    _evaluate(config, pm, test, handoff.receive(), fractions, progress=False)
    return handoff.receive()


def _write_outputs(out: Path, report: Dict[str, Any], pm: Any, A: Any, A_test: Any,
                   circuits: Dict[str, Any], by_ranking: Dict[str, Any], gd: Any) -> None:
    """The report's data first, then ``report.json`` and ``report.html`` that describe it;
    each file whole or not at all, the old report removed before any new data is written."""
    for name in (REPORT_JSON, REPORT_HTML):
        (out / name).unlink(missing_ok=True)
    A.save(out / "attribution_train")
    A_test.save(out / "attribution_test")
    from .mib import graph_config

    _save_circuits(out, circuits, by_ranking, A.layout_for(pm),
                   graph_config(pm.wrapped_model.cfg))
    write_text(out / REPORT_JSON, json.dumps(report, indent=1))
    _write_html(report, out, pm, A, circuits, gd)


def _write_html(report: Dict[str, Any], out: Path, pm: Any, A: Any,
                circuits: Dict[str, Any], gd: Any) -> None:
    """The page; each cluster's circuit drawn at ``--draw-fraction`` (default ``--p-cross``,
    the size of the page's per-cluster numbers), the drawn edge count in its caption."""
    from .metrics.faithfulness import edge_count
    from .report import circuit_figure, write_html
    from .report.figures import MAX_DRAWN_EDGES, projection

    p_cross = report["cross_faithfulness"]["p"]
    p_draw = report["config"].get("draw_fraction") or p_cross
    count = edge_count(p_draw, A.n_edges)
    why = ("the size of the cross-faithfulness matrix and the per-cluster table"
           if math.isclose(p_draw, p_cross) else
           f"--draw-fraction; the per-cluster numbers are at {100 * p_cross:.3g}%")
    figures, captions = {}, {}
    for c in report["cross_faithfulness"]["labels"]:
        circuit = circuits[f"cluster_{c}"]
        drawn = circuit.top(count).size
        captions[c] = (f"top {drawn} of {A.n_edges} edges by |score| "
                       f"({100 * p_draw:.3g}% of all edges: {why})")
        if 0 < drawn <= MAX_DRAWN_EDGES:
            figures[c] = circuit_figure(pm, circuit, count)
        else:
            figures[c] = None
            captions[c] += (f"; not drawn: more than {MAX_DRAWN_EDGES} edges do not draw "
                            "legibly, choose a smaller --draw-fraction" if drawn else
                            "; nothing to draw at this size, choose a larger --draw-fraction")
    xy, note = projection(A.to_numpy())
    extras: Dict[str, Any] = {"circuit_figures": figures, "circuit_captions": captions}
    if xy is not None:
        extras["projection"] = {**xy, "labels": report["labels"], "groups": report["groups"]}
    else:
        extras["projection_note"] = note
    write_html(report, out / REPORT_HTML, extras)


def summary_table(report: Dict[str, Any]) -> str:
    """Plain text: clusters, sizes, composition, f at p for own vs single circuit, and
    CPR/CMD per circuit family (numbers shown by the report's rule, rounding noise as 0)."""
    fr = report["edge_fractions"]
    p = report["cross_faithfulness"]["p"]
    j = min(range(len(fr)), key=lambda i: abs(fr[i] - p))

    from .report.values import score_rows, shown

    def fmt(v: Optional[float]) -> str:
        v = shown(v)
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
    routing = report.get("routing") or {}
    if routing.get("n_test_noise"):
        known = (report["dcd"].get("faithfulness_routed_excluding_noise") or [None] * len(fr))[j]
        lines.append(f"{routing['n_test_noise']} of {report['n_test']} test examples routed to "
                     f"noise: DCD routed sends them to cluster {routing.get('noise_fallback')}; "
                     f"without them {fmt(known)}")
    dropped = {k: len(v) for k, v in (report.get("dropped_examples") or {}).items() if v}
    if dropped:
        lines.append("dropped (non-finite attribution rows): "
                     + ", ".join(f"{n} {split}" for split, n in dropped.items()))
    lines.append(f"over edge fractions {fr[0]:g} to {fr[-1]:g}: CPR (higher is better), "
                 "CMD (lower is better)")
    for name, cpr, cmd in score_rows(report):
        lines.append(f"  {name:<52} CPR {fmt(cpr):>6}   CMD {fmt(cmd):>6}")
    return "\n".join(lines)
