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
4. circuits (:class:`~auto_circuit_dcd.circuits.circuit.Circuit`), all by the same base algorithm:
   the single baseline (all train examples), one per cluster, K-random (same k);
5. evaluate every circuit once on the whole test split at every edge fraction, each
   size's edges chosen by the selection rule and ranking of the run's convention
   (:func:`~auto_circuit_dcd.metrics.convention.make_convention`; a second ranking is
   evaluated when CMD ranks differently, as under MIB parity);
6. the report (:func:`~auto_circuit_dcd.job.assemble.assemble_report`, no more model passes):
   single, DCD oracle and routed, K-random, each cluster's own circuit vs the single
   circuit on its routed test group, cross-faithfulness at ``p`` and edge overlap, as a
   typed :class:`~auto_circuit_dcd.report.records.RunReport`;
7. write the attribution matrices and the circuits (``circuits.safetensors``: scores and
   the edge sets evaluated; ``circuits.json`` with edge names and top edges), then
   ``report.json`` and ``report.html``: each file whole or not at all, data before what
   describes it.

Under torchrun or srun (:mod:`auto_circuit_dcd.distributed`) every worker loads the model
and the data and does its share of steps 2 and 5; steps 3, 4, 6 and 7 run on rank 0, which
hands the circuits, then the report, to the others (or its error, which ends them too).
Rank 0 alone holds the lock of ``config.out``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Tuple

import numpy as np
import torch

from auto_circuit_dcd.job.assemble import assemble_report
from auto_circuit_dcd.job.config import RunConfig
from auto_circuit_dcd.model.table import MODELS, embedded_dataset
from auto_circuit_dcd.report.records import RunReport
from auto_circuit_dcd.errors import ConfigError
from auto_circuit_dcd.files import folder_lock, remove_temporaries, save_tensors, write_text

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.metrics.convention import Convention

__all__ = ["RunConfig", "run", "check_config", "edge_fractions", "load_tokenizer",
           "summary_table"]

#: the main job's selection rule (chosen by measurement: README, "Choosing the selection rule")
DEFAULT_SELECTION = "topn-prune"
REPORT_JSON, REPORT_HTML = "report.json", "report.html"


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
    from auto_circuit_dcd.model.table import model_tokenizer

    tokenizer = model_tokenizer(model)
    if tokenizer is not None:
        return tokenizer
    from auto_circuit_dcd.model.load import load_model

    return load_model(model).tokenizer


def _dataset_path(config: RunConfig, tokenizer: Any, out: Path) -> Path:
    if config.dataset:
        return Path(config.dataset)
    if config.task:
        from auto_circuit_dcd.tasks import make_dataset

        path = out / "dataset.json"
        make_dataset(task=config.task, prompt_types=config.prompt_types, tokenizer=tokenizer,
                     n=config.n or 1000, seed=config.seed, out=path)
        return path
    embedded = embedded_dataset(config.model)
    if embedded is not None:
        return embedded
    raise ConfigError(f"model {config.model!r} has no embedded dataset: pass --dataset FILE "
                      "or --task NAME (e.g. --task all-tasks)")


def _save_circuits(path: Path, circuits: Dict[str, Any], by_ranking: Dict[str, Any],
                   layout: Any, graph_cfg: Dict[str, Any], top: int = 50) -> None:
    """``circuits.safetensors`` (each circuit's scores as ``NAME`` and the edges evaluated at
    each size as ``NAME.edges.RANKING``, bool ``[n_fractions, n_edges]``), then
    ``circuits.json`` describing it (old JSON removed first): edge names, the edge layout
    and the model's EAP-IG graph config (what ``export-mib`` needs without the model), and
    each circuit's top edges."""
    from auto_circuit_dcd.circuits.selection import rank_key

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


def _build_circuits(config: RunConfig, pm: Any, A: Any, train: Any,
                    gd: Any) -> Dict[str, Any]:
    """The single baseline, one circuit per cluster and K-random, as ``Circuit`` objects;
    the baselines built by the clusters' base algorithm."""
    from auto_circuit_dcd.circuits.circuit import Circuit
    from auto_circuit_dcd.cluster import k_random_circuits, single_circuit
    from auto_circuit_dcd.circuits.graph import edge_graph

    layout, graph = A.layout_for(pm), edge_graph(pm)
    algo = dict(base_algo=config.base_algo, dataloader=train)

    def circuit(name: str, ps: Any) -> Circuit:
        return Circuit(layout.from_prune_scores(ps), A.edge_names, layout, graph=graph,
                       meta={"label": name, "base_algo": str(config.base_algo)})

    out = {"single": circuit("single", single_circuit(A, pm, **algo)[0])}
    for c in sorted(int(c) for c in gd.circuits_):
        out[f"cluster_{c}"] = circuit(f"cluster_{c}", gd.circuits_[c])
    k = int(gd.n_clusters_)
    if k > 1:
        for c, ps in k_random_circuits(A, k, random_state=config.seed, model=pm, **algo).items():
            out[f"k_random_{c}"] = circuit(f"k_random_{c}", ps)
    return out


def _stability(gd: Any, A: Any, config: RunConfig, progress: bool) -> Any:
    """Cluster stability on subsamples of the train rows, refitting the clusterer the fit
    chose (None when switched off); its wall time is ``timings["stability"]``."""
    from auto_circuit_dcd.cluster import cluster_stability

    if not config.stability_resamples:
        return None
    return cluster_stability(gd, A, n_resamples=config.stability_resamples,
                             random_state=config.seed, progress=progress, clusterer="chosen")


def check_config(config: RunConfig) -> None:
    """Refuse a configuration that cannot work, before anything is loaded or written.

    Raises :class:`~auto_circuit_dcd.errors.ConfigError` naming the command-line flag
    and what to change.
    """
    from auto_circuit_dcd.attribution.front import METHODS
    from auto_circuit_dcd.model.devices import resolve_device, resolve_dtype
    from auto_circuit_dcd.model.load import check_model_name
    from auto_circuit_dcd.model.task_metric import check_metric

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
        from auto_circuit_dcd.tasks.dataset import resolve_components

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
    from auto_circuit_dcd.metrics.convention import make_convention

    return make_convention(config.selection, config.ranking, config.cmd, config.mib_parity,
                           default_selection=DEFAULT_SELECTION)


def edge_fractions(config: RunConfig) -> List[float]:
    """The circuit sizes evaluated: ``config.edge_fractions`` or the MIB grid, sorted."""
    from auto_circuit_dcd.evaluation import MIB_GRID

    return sorted(set(float(f) for f in (config.edge_fractions or MIB_GRID)))


def _discovery(config: RunConfig) -> Any:
    """The (unfitted) ``GroupedDiscovery`` the run uses."""
    from auto_circuit_dcd.cluster import GroupedDiscovery

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
    from auto_circuit_dcd.distributed import is_main, main_first

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


def run(config: RunConfig, progress: bool = True) -> RunReport:
    """Run the whole job; returns the report (also written to ``out/report.json``).

    The configuration is checked first (:func:`check_config`); then ``config.out`` is
    locked for the run (a second run into it is refused).
    """
    check_config(config)
    from auto_circuit_dcd.distributed import Handoff, is_main, process_group, world_size

    if config.threads:
        torch.set_num_threads(int(config.threads))
    fractions = edge_fractions(config)
    with process_group(config.device), _output_folder(Path(config.out)) as out, \
            Handoff() as handoff:
        timer = _Timer(echo=progress and is_main())
        pm = _load_model(config, timer)
        path, train, test = _load_data(config, pm, out, timer)
        A, A_test, train, test, dropped = _attribute(config, pm, train, test, out, timer,
                                                     progress)
        handoff.open()
        if not is_main():  # the other ranks: evaluation only, then they wait for the report
            return _follow(handoff, config, pm, test, fractions)
        gd, routed, stability = _cluster(config, pm, A, A_test, train, timer, progress)
        with timer.stage("circuits", "building the single, per-cluster and K-random "
                                     "circuits"):
            circuits = _build_circuits(config, pm, A, train, gd)
        handoff.send(circuits)
        with timer.stage("evaluation", f"evaluating {len(circuits)} circuits at "
                         f"{len(fractions)} sizes on {A_test.n_examples} test examples"):
            by_ranking = _evaluate(config, pm, test, circuits, fractions, progress)
        report = assemble_report(config=config, conv=convention(config), dataset=str(path),
                                 A=A, A_test=A_test, gd=gd, routed=routed, circuits=circuits,
                                 by_ranking=by_ranking, dropped=dropped, stability=stability,
                                 world_size=world_size(), timings=timer.seconds)
        timer.say(f"writing {out}")
        _write_outputs(out, report, pm, A, A_test, circuits, by_ranking)
        handoff.send(report, last=True)
    print(summary_table(report))
    print(f"report: {(Path(config.out) / REPORT_HTML).resolve()}")
    return report


def _load_model(config: RunConfig, timer: _Timer) -> Any:
    """The model on this worker's device, in the run's dtype, wrapped for patching."""
    from auto_circuit_dcd.model.devices import resolve_device
    from auto_circuit_dcd.distributed import worker_device
    from auto_circuit_dcd.model.load import load_model, make_patchable

    device = worker_device(config.device)
    with timer.stage("load_model", f"loading {config.model} on {resolve_device(device)} "
                     f"({config.dtype})"):
        return make_patchable(load_model(config.model, device=device, dtype=config.dtype))


def _load_data(config: RunConfig, pm: Any, out: Path, timer: _Timer) -> Tuple[Path, Any, Any]:
    """The dataset's path, and loaders of its train and test splits."""
    from auto_circuit_dcd.data import check_split_sizes, load_examples, make_loader, split_examples
    from auto_circuit_dcd.distributed import from_main

    with timer.stage("dataset", "reading the dataset" if not config.task
                     else f"generating the {config.task} dataset"):
        path = from_main(lambda: _dataset_path(config, pm.tokenizer, out))
        examples = load_examples(path, pm.tokenizer, n=config.n if not config.task else None)
        train_ex, test_ex = split_examples(examples, config.test_fraction, seed=config.seed)
        check_split_sizes(len(train_ex), len(examples), config.max_clusters)
        return (path, make_loader(train_ex, config.batch_size),
                make_loader(test_ex, config.batch_size))


def _attribute(config: RunConfig, pm: Any, train: Any, test: Any, out: Path, timer: _Timer,
               progress: bool) -> Tuple[Any, Any, Any, Any, Dict[str, List[Any]]]:
    """Attribution rows of both splits (cached in ``out/cache``); examples whose rows were
    not finite are left out of the loaders and everything that follows, and listed."""
    from auto_circuit_dcd.attribution.front import attribute

    with timer.stage("attribution", f"{config.method} attribution of {len(train.examples)} "
                     f"train and {len(test.examples)} test examples (cached in "
                     f"{out / 'cache'})"):
        kw = dict(method=config.method, ig_steps=config.ig_steps, metric=config.metric,
                  cache_dir=out / "cache", progress=progress, nan_tolerance=config.nan_tolerance)
        A, A_test = attribute(pm, train, **kw), attribute(pm, test, **kw)
    dropped = {"train": list(A.meta.get("dropped_ids", [])),
               "test": list(A_test.meta.get("dropped_ids", []))}
    if dropped["train"]:
        train = train.subset(A.example_ids)
    if dropped["test"]:
        test = test.subset(A_test.example_ids)
    return A, A_test, train, test, dropped


def _cluster(config: RunConfig, pm: Any, A: Any, A_test: Any, train: Any, timer: _Timer,
             progress: bool) -> Tuple[Any, np.ndarray, Any]:
    """The fitted ``GroupedDiscovery``, each test row's cluster, and cluster stability."""
    with timer.stage("clustering", f"clustering {A.n_examples} rows ({config.clusterer}, "
                     f"k from 2 to {config.max_clusters}) and routing the test examples"):
        gd = _discovery(config)
        gd.fit(A, model=pm, dataloader=train)
        routed = np.asarray(gd.predict(A_test))
    with timer.stage("stability", f"measuring cluster stability ({config.stability_resamples}"
                     " refits of the clusterer)" if config.stability_resamples else
                     "cluster stability skipped (--stability-resamples 0)"):
        stability = _stability(gd, A, config, progress)
    return gd, routed, stability


def _evaluate(config: RunConfig, pm: Any, test: Any, circuits: Dict[str, Any],
              fractions: List[float], progress: bool) -> Dict[str, Dict[str, Any]]:
    """Every circuit on the test split under each ranking of the run's convention
    (``{ranking: {name: FaithfulnessResult}}``), split by batch over the ranks of a
    process group."""
    from auto_circuit_dcd.evaluation import evaluate_circuits

    conv = convention(config)
    return {r: evaluate_circuits(pm, test, circuits, fractions, metric=config.metric,
                                 progress=progress, selection=conv.selection, ranking=r)
            for r in conv.rankings()}


def _follow(handoff: Any, config: RunConfig, pm: Any, test: Any,
            fractions: List[float]) -> RunReport:
    """A rank other than 0 after attribution: its share of the evaluation of rank 0's
    circuits, then rank 0's report (or rank 0's exception, raised here too)."""
    _evaluate(config, pm, test, handoff.receive(), fractions, progress=False)
    return handoff.receive()


def _write_outputs(out: Path, report: RunReport, pm: Any, A: Any, A_test: Any,
                   circuits: Dict[str, Any], by_ranking: Dict[str, Any]) -> None:
    """The report's data first, then ``report.json`` and ``report.html`` that describe it;
    each file whole or not at all, the old report removed before any new data is written."""
    for name in (REPORT_JSON, REPORT_HTML):
        (out / name).unlink(missing_ok=True)
    A.save(out / "attribution_train")
    A_test.save(out / "attribution_test")
    from auto_circuit_dcd.circuits.mib import graph_config

    _save_circuits(out, circuits, by_ranking, A.layout_for(pm),
                   graph_config(pm.wrapped_model.cfg))
    write_text(out / REPORT_JSON, report.to_json())
    _write_html(report, out, pm, A, circuits)


def _write_html(report: RunReport, out: Path, pm: Any, A: Any,
                circuits: Dict[str, Any]) -> None:
    """The page; each cluster's circuit drawn at ``--draw-fraction`` (default ``--p-cross``,
    the size of the page's per-cluster numbers), the drawn edge count in its caption."""
    from auto_circuit_dcd.evaluation.faithfulness import edge_count
    from auto_circuit_dcd.report import circuit_figure, write_html
    from auto_circuit_dcd.report.figures import MAX_DRAWN_EDGES, projection

    p_cross = report.cross_faithfulness.p
    p_draw = report.config["draw_fraction"] or p_cross
    count = edge_count(p_draw, A.n_edges)
    why = ("the size of the cross-faithfulness matrix and the per-cluster table"
           if math.isclose(p_draw, p_cross) else
           f"--draw-fraction; the per-cluster numbers are at {100 * p_cross:.3g}%")
    figures, captions = {}, {}
    for c in report.cross_faithfulness.labels:
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
        extras["projection"] = {**xy, "labels": report.labels, "groups": report.groups}
    else:
        extras["projection_note"] = note
    write_html(report, out / REPORT_HTML, extras)


def summary_table(report: RunReport) -> str:
    """Plain text: clusters, sizes, composition, f at p for own vs single circuit, and
    CPR/CMD per circuit family (numbers shown by the report's rule, rounding noise as 0)."""
    from auto_circuit_dcd.report.values import fixed, score_rows

    def num(v: float) -> str:
        return fixed(v)

    fr, j = report.edge_fractions, report.p_index
    lines = [f"{report.model} | {report.method} | {report.n_train} train / "
             f"{report.n_test} test | {report.n_edges} edges | k = {report.n_clusters}"]
    q = report.cluster_quality
    if q is not None:
        lines.append(f"cluster quality vs known groups: ARI {num(q.ari)}, NMI {num(q.nmi)}")
    lines.append(f"{'cluster':>7} {'size':>5} {'test':>5}  {'f own':>7} {'f single':>8}  composition")
    for c in report.dcd.clusters:
        comp = ", ".join(f"{g}:{n}" for g, n in sorted(c.composition.items())) or "-"
        lines.append(f"{c.label:>7} {c.size:>5} {c.n_test:>5}  "
                     f"{num(c.faithfulness_own[j]):>7} {num(c.single_on_group[j]):>8}  {comp}")
    lines.append(f"at p = {fr[j]:g}: single {num(report.single.faithfulness[j])}, "
                 f"DCD routed {num(report.dcd.faithfulness_routed[j])}, "
                 f"DCD oracle {num(report.dcd.faithfulness_oracle[j])}")
    routing = report.routing
    if routing.n_test_noise:
        lines.append(f"{routing.n_test_noise} of {report.n_test} test examples routed to "
                     f"noise: DCD routed sends them to cluster {routing.noise_fallback}; "
                     f"without them {num(report.dcd.faithfulness_routed_excluding_noise[j])}")
    dropped = {split: len(ids) for split, ids in (("train", report.dropped_examples.train),
                                                  ("test", report.dropped_examples.test)) if ids}
    if dropped:
        lines.append("dropped (non-finite attribution rows): "
                     + ", ".join(f"{n} {split}" for split, n in dropped.items()))
    lines.append(f"over edge fractions {fr[0]:g} to {fr[-1]:g}: CPR (higher is better), "
                 "CMD (lower is better)")
    for name, cpr, cmd in score_rows(report):
        lines.append(f"  {name:<52} CPR {num(cpr):>6}   CMD {num(cmd):>6}")
    return "\n".join(lines)
