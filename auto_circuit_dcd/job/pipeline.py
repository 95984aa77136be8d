"""The main job: dataset -> per-example attributions -> clusters -> circuits -> report.

``run(RunConfig(...))`` does, writing everything under ``config.out``
(:class:`~auto_circuit_dcd.job.run_folder.RunFolder`):

0. check every argument (:meth:`RunConfig.check`) before anything is loaded, then hold
   ``config.out`` for the run (its lock; a failed run removes an output folder it
   created, unless it holds cached attributions to resume from);
1. load the model and the dataset (a JSON file, a generated task, or the embedded toy
   model's mixed dataset), split train/test (the prompts' own ``split`` fields if any);
2. per-example attribution of train and test examples (cached in the folder's ``cache/``:
   an interrupted run resumes, a repeated run loads); examples whose rows are not finite
   (within ``nan_tolerance``) are left out of everything after, and reported;
3. fit :class:`GroupedDiscovery` on the train rows; route test examples with ``predict``
   on their own attribution rows (so routing needs each test example's answers and
   corrupted prompt); cluster stability: the clusterer refitted on subsamples of the
   train rows (:func:`~auto_circuit_dcd.cluster.cluster_stability`; clustering only);
4. circuits (:class:`~auto_circuit_dcd.circuits.circuit.Circuit`), all by the run's circuit
   method (``--circuit-method``) on the same training examples: the single baseline (all
   train examples), one per cluster (:func:`~auto_circuit_dcd.cluster.cluster_circuits`),
   K-random (same k). The clusters come from ``--method``'s rows; an EAP-family circuit
   method other than ``--method`` attributes the train split again (cached), and its rows
   take the cluster of their example id (an example whose row is finite under one method
   only is left out of the circuits, and reported); the same method reuses the rows; an
   auto-circuit algorithm runs on each cluster's examples;
5. evaluate every circuit once on the whole test split at every edge fraction that asks
   for at least one edge (:func:`~auto_circuit_dcd.metrics.uncertainty.size_grid`: a size
   with ``floor(p * n_edges) = 0`` is the empty circuit whatever the scores, so it is left
   out, and the report says so), each size's edges chosen by the selection rule and
   ranking of the run's convention (:meth:`RunConfig.convention`; a second ranking is
   evaluated when CMD ranks differently, as under MIB parity);
6. what each cluster is (:func:`~auto_circuit_dcd.explain.describe_clusters`: exemplars,
   associated fields, distinguishing edges and heads, circuit differences at ``--p-cross``;
   no model pass), then the report (:func:`~auto_circuit_dcd.job.assemble.assemble_report`,
   no more model passes: every faithfulness number with its bootstrap interval over the
   test examples, the paired comparisons and the method's claims as verdicts) as a typed
   :class:`~auto_circuit_dcd.report.records.RunReport`, and the page's figures
   (:func:`~auto_circuit_dcd.report.captions.page_extras`);
7. write the run folder (:meth:`RunFolder.write`): data (matrices, circuits, per-example
   values) before what describes it, each file whole or not at all; print the summary
   (:mod:`auto_circuit_dcd.report.summary`).

Under torchrun or srun (:mod:`auto_circuit_dcd.distributed`) every worker loads the model
and the data and does its share of steps 2 and 5; steps 3, 4, 6 and 7 run on rank 0, which
hands the circuits, then the report, to the others (or its error, which ends them too).
Rank 0 alone holds the lock of ``config.out``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from auto_circuit_dcd.errors import ConfigError
from auto_circuit_dcd.job.assemble import assemble_report
from auto_circuit_dcd.job.config import RunConfig
from auto_circuit_dcd.job.run_folder import RunFolder
from auto_circuit_dcd.model.table import embedded_dataset
from auto_circuit_dcd.report.records import RunReport

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit.utils.patchable_model import PatchableModel
    from transformers import PreTrainedTokenizerBase

    from auto_circuit_dcd.attribution.matrix import AttributionMatrix
    from auto_circuit_dcd.circuits.circuit import Circuit
    from auto_circuit_dcd.cluster.discovery import GroupedDiscovery
    from auto_circuit_dcd.cluster.stability import ClusterStability
    from auto_circuit_dcd.data import ExampleLoader
    from auto_circuit_dcd.distributed import Handoff
    from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult
    from auto_circuit_dcd.explain.records import ClusterDescriptions
    from auto_circuit_dcd.metrics.uncertainty import SizeGrid

__all__ = ["RunConfig", "run", "load_tokenizer"]

#: ``{ranking: {circuit name: FaithfulnessResult}}``
Evaluated = dict[str, dict[str, "FaithfulnessResult"]]


class _Timer:
    """Seconds per stage; with ``echo``, a line on stderr as each stage starts."""

    def __init__(self, echo: bool = False) -> None:
        self.seconds: dict[str, float] = {}
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


def run(config: RunConfig, progress: bool = True) -> RunReport:
    """Run the whole job; returns the report (also written to ``out/report.json``).

    The configuration is checked first (:meth:`RunConfig.check`); then ``config.out`` is
    held for the run (a second run into it is refused).
    """
    config.check()
    from auto_circuit_dcd.distributed import Handoff, is_main, process_group, world_size
    from auto_circuit_dcd.report.summary import summary_table

    if config.threads:
        torch.set_num_threads(int(config.threads))
    folder = RunFolder(config.out)
    with process_group(config.device), folder.hold(), Handoff() as handoff:
        timer = _Timer(echo=progress and is_main())
        pm = _load_model(config, timer)
        grid = _sizes(config, pm)  # checked before any data is read or attributed
        path, train, test, test_share = _load_data(config, pm, folder, timer)
        A, A_test, train, test, dropped = _attribute(config, pm, train, test, folder, timer,
                                                     progress)
        # every rank takes part (attribution shards its work under torchrun)
        B = _circuit_attribution(config, pm, train, folder, timer, progress)
        handoff.open()
        if not is_main():  # the other ranks: evaluation only, then they wait for the report
            return _follow(handoff, config, pm, test, grid)
        gd, routed, stability = _cluster(config, A, A_test, timer, progress)
        rows = _circuit_rows(config, A, B, gd, timer)
        with timer.stage("circuits", f"building the single, per-cluster and K-random "
                                     f"circuits ({config.circuit_method})"):
            circuits = _circuits(config, pm, rows, train, int(gd.n_clusters_))
        handoff.send(circuits)
        with timer.stage("evaluation", f"evaluating {len(circuits)} circuits at "
                         f"{len(grid.fractions)} sizes on {A_test.n_examples} test "
                         "examples"):
            evaluated = _evaluate(config, pm, test, circuits, progress, grid)
        with timer.stage("description", "describing the clusters (exemplars, fields, "
                                        "distinguishing edges and heads)"):
            described = _describe(config, pm, A, train, gd, circuits, path)
        report = assemble_report(config=config, dataset=str(path), A=A, A_test=A_test, gd=gd,
                                 routed=routed, circuits=circuits, by_ranking=evaluated,
                                 dropped=dropped, stability=stability,
                                 world_size=world_size(), timings=timer.seconds, grid=grid,
                                 test_share=test_share, descriptions=described,
                                 circuit_rows_missing=rows.missing)
        timer.say(f"writing {folder.path}")
        _write(folder, report, pm, A, A_test, circuits, evaluated)
        handoff.send(report, last=True)
    print(summary_table(report))
    print(f"report: {folder.report_html.resolve()}")
    return report


# ------------------------------------------------------------------------ the stages
def _load_model(config: RunConfig, timer: _Timer) -> PatchableModel:
    """The model on this worker's device, in the run's dtype, wrapped for patching."""
    from auto_circuit_dcd.distributed import worker_device
    from auto_circuit_dcd.model.devices import resolve_device
    from auto_circuit_dcd.model.load import load_model, make_patchable

    device = worker_device(config.device)
    with timer.stage("load_model", f"loading {config.model} on {resolve_device(device)} "
                     f"({config.dtype})"):
        return make_patchable(load_model(config.model, device=device, dtype=config.dtype))


def _load_data(config: RunConfig, pm: PatchableModel, folder: RunFolder,
               timer: _Timer) -> tuple[Path, ExampleLoader, ExampleLoader, float]:
    """The dataset's path, loaders of its train and test splits, and the share of its
    prompts in the test split (what turns a test-set size into prompts to ask for)."""
    from auto_circuit_dcd.data import check_split_sizes, load_examples, make_loader, split_examples
    from auto_circuit_dcd.distributed import from_main

    with timer.stage("dataset", "reading the dataset" if not config.task
                     else f"generating the {config.task} dataset"):
        path = from_main(lambda: _dataset_path(config, pm.tokenizer, folder))
        examples = load_examples(path, pm.tokenizer, n=config.n if not config.task else None)
        train_ex, test_ex = split_examples(examples, config.test_fraction, seed=config.seed)
        check_split_sizes(len(train_ex), len(examples), config.max_clusters)
        return (path, make_loader(train_ex, config.batch_size),
                make_loader(test_ex, config.batch_size), len(test_ex) / len(examples))


def _attribute(config: RunConfig, pm: PatchableModel, train: ExampleLoader,
               test: ExampleLoader, folder: RunFolder, timer: _Timer, progress: bool
               ) -> tuple[AttributionMatrix, AttributionMatrix, ExampleLoader,
                          ExampleLoader, dict[str, list[Hashable]]]:
    """Attribution rows of both splits (cached in the folder); examples whose rows were not
    finite are left out of the loaders and everything that follows, and listed."""
    from auto_circuit_dcd.attribution.front import attribute

    with timer.stage("attribution", f"{config.method} attribution of {len(train.examples)} "
                     f"train and {len(test.examples)} test examples (cached in "
                     f"{folder.cache})"):
        A, A_test = (attribute(pm, loader, config.method, ig_steps=config.ig_steps,
                               metric=config.metric, cache_dir=folder.cache,
                               progress=progress, nan_tolerance=config.nan_tolerance)
                     for loader in (train, test))
    dropped = {"train": list(A.meta.get("dropped_ids", [])),
               "test": list(A_test.meta.get("dropped_ids", []))}
    if dropped["train"]:
        train = train.subset(A.example_ids)
    if dropped["test"]:
        test = test.subset(A_test.example_ids)
    return A, A_test, train, test, dropped


def _cluster(config: RunConfig, A: AttributionMatrix, A_test: AttributionMatrix,
             timer: _Timer, progress: bool
             ) -> tuple[GroupedDiscovery, np.ndarray, ClusterStability | None]:
    """The fitted ``GroupedDiscovery``, each test row's cluster, and cluster stability (None
    when switched off; its wall time is ``timings["stability"]``)."""
    from auto_circuit_dcd.cluster import GroupedDiscovery, cluster_stability

    with timer.stage("clustering", f"clustering {A.n_examples} rows ({config.clusterer}, "
                     f"k from 2 to {config.max_clusters}) and routing the test examples"):
        gd = GroupedDiscovery(clusterer=config.clusterer, max_clusters=config.max_clusters,
                              k_rule=config.k_rule, preprocessing=config.preprocessing,
                              random_state=config.seed).fit(A)
        routed = np.asarray(gd.predict(A_test))
    with timer.stage("stability", f"measuring cluster stability ({config.stability_resamples}"
                     " refits of the clusterer)" if config.stability_resamples else
                     "cluster stability skipped (--stability-resamples 0)"):
        stability = cluster_stability(
            gd, A, n_resamples=config.stability_resamples, random_state=config.seed,
            progress=progress, clusterer="chosen") if config.stability_resamples else None
    return gd, routed, stability


@dataclass(frozen=True)
class CircuitRows:
    """The rows the circuits are built from, each row's cluster, and the clustered training
    examples left out of the circuits (their row is not finite under the circuit method)."""

    rows: AttributionMatrix
    labels: np.ndarray
    missing: list[Hashable]


def _circuit_attribution(config: RunConfig, pm: PatchableModel, train: ExampleLoader,
                         folder: RunFolder, timer: _Timer,
                         progress: bool) -> AttributionMatrix | None:
    """The training rows of ``--circuit-method`` when it is the other EAP-family method
    (cached in the folder; timed as ``circuit_attribution``); None when the circuits reuse
    ``--method``'s rows or come from an auto-circuit algorithm."""
    from auto_circuit_dcd.attribution.front import attribute
    from auto_circuit_dcd.cluster.circuits import EAP_FAMILY

    method = config.circuit_method
    if method == config.method or method not in EAP_FAMILY:
        return None
    with timer.stage("circuit_attribution", f"{method} attribution of the "
                     f"{len(train.examples)} train examples for the circuits (cached in "
                     f"{folder.cache})"):
        return attribute(pm, train, method=method, ig_steps=config.ig_steps,
                         metric=config.metric, cache_dir=folder.cache, progress=progress,
                         nan_tolerance=config.nan_tolerance)


def _circuit_rows(config: RunConfig, A: AttributionMatrix, B: AttributionMatrix | None,
                  gd: GroupedDiscovery, timer: _Timer) -> CircuitRows:
    """``A`` itself when there are no circuit-method rows ``B``; else ``B``'s rows, each
    taking the cluster of its example id: only the ids both methods kept are used."""
    labels = np.asarray(gd.labels_)
    if B is None:
        return CircuitRows(A, labels, [])
    method = config.circuit_method
    label_of = dict(zip(A.example_ids, labels.tolist()))
    keep = [j for j, i in enumerate(B.example_ids) if i in label_of]
    if len(keep) < B.n_examples:
        B = B.subset(keep)
    kept = set(B.example_ids)
    missing = [i for i in A.example_ids if i not in kept]
    if missing:
        timer.say(f"{len(missing)} clustered train examples have no finite {method} row: "
                  "left out of the circuits")
    return CircuitRows(B, np.array([label_of[i] for i in B.example_ids], dtype=int), missing)


def _circuits(config: RunConfig, pm: PatchableModel, rows: CircuitRows,
              train: ExampleLoader, k: int) -> dict[str, Circuit]:
    """The single baseline, one circuit per cluster and K-random (``k`` circuits), all by
    the run's circuit method on the same rows."""
    from auto_circuit_dcd.cluster import cluster_circuits, k_random_circuits, single_circuit

    algo = dict(base_algo=config.circuit_method, model=pm, dataloader=train)
    B = rows.rows
    out = {"single": single_circuit(B, **algo)[0]}
    out.update({c.meta["label"]: c for c in cluster_circuits(B, rows.labels, **algo).values()})
    if k > 1:
        out.update({c.meta["label"]: c for c in
                    k_random_circuits(B, k, random_state=config.seed, **algo).values()})
    return out


def _sizes(config: RunConfig, pm: PatchableModel) -> SizeGrid:
    """The sizes evaluated: the run's grid less those that ask for no edge of this model
    (refused when ``--p-cross`` is one of them, or when every size is)."""
    from auto_circuit_dcd.metrics.uncertainty import size_grid
    from auto_circuit_dcd.model.edges import edge_layout

    n_edges = edge_layout(pm)[1].n_edges
    grid = size_grid(config.fraction_grid(), n_edges)
    if not grid.fractions:
        raise ConfigError(f"--edge-fractions {config.fraction_grid()}: every size asks for "
                          f"fewer than one of the model's {n_edges} edges; give fractions of "
                          f"at least 1/{n_edges}")
    if any(math.isclose(p, config.p_cross) for p in grid.dropped):
        raise ConfigError(f"--p-cross {config.p_cross} asks for fewer than one of the model's "
                          f"{n_edges} edges: choose --p-cross among {grid.fractions}")
    return grid


def _evaluate(config: RunConfig, pm: PatchableModel, test: ExampleLoader,
              circuits: dict[str, Circuit], progress: bool, grid: SizeGrid) -> Evaluated:
    """Every circuit on the test split at the grid's sizes under each ranking of the run's
    convention, split by batch over the ranks of a process group."""
    from auto_circuit_dcd.evaluation import evaluate_circuits

    conv = config.convention()
    return {r: evaluate_circuits(pm, test, circuits, grid.fractions,
                                 metric=config.metric, progress=progress,
                                 selection=conv.selection, ranking=r)
            for r in conv.rankings()}


def _describe(config: RunConfig, pm: PatchableModel, A: AttributionMatrix,
              train: ExampleLoader, gd: GroupedDiscovery, circuits: dict[str, Circuit],
              path: Path) -> ClusterDescriptions:
    """What each cluster is (no model pass): exemplars, the dataset's fields against the
    clusters, the edges and nodes that set each cluster apart, and the cluster circuits'
    differences at the size of the per-cluster numbers (``--p-cross``), chosen by the run's
    selection rule and CPR ranking, so the circuits compared are the ones evaluated."""
    from auto_circuit_dcd.evaluation.faithfulness import edge_count
    from auto_circuit_dcd.explain import describe_clusters

    conv = config.convention()
    labels = sorted(int(c) for c in set(np.asarray(gd.labels_).tolist()) if c >= 0)
    return describe_clusters(A, gd, train, dataset=str(path), tokenizer=pm.tokenizer,
                             circuits={c: circuits[f"cluster_{c}"] for c in labels},
                             size=edge_count(config.p_cross, A.n_edges),
                             selection=conv.selection, ranking=conv.cpr_ranking,
                             random_state=config.seed)


def _follow(handoff: Handoff, config: RunConfig, pm: PatchableModel,
            test: ExampleLoader, grid: SizeGrid) -> RunReport:
    """A rank other than 0 after attribution: its share of the evaluation of rank 0's
    circuits, then rank 0's report (or rank 0's exception, raised here too)."""
    _evaluate(config, pm, test, handoff.receive(), progress=False, grid=grid)
    return handoff.receive()


def _write(folder: RunFolder, report: RunReport, pm: PatchableModel, A: AttributionMatrix,
           A_test: AttributionMatrix, circuits: dict[str, Circuit],
           evaluated: Evaluated) -> None:
    """The page's figures, then the run folder's files."""
    from auto_circuit_dcd.circuits.mib import graph_config
    from auto_circuit_dcd.report.captions import page_extras

    page = page_extras(report, A, circuits, evaluated)
    folder.write(report, train=A, test=A_test, circuits=circuits, evaluated=evaluated,
                 graph_config=graph_config(pm.wrapped_model.cfg), page=page)


# ------------------------------------------------------------------------ helpers
def load_tokenizer(model: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model name without loading its weights where the model table
    has a tokenizer loader."""
    from auto_circuit_dcd.model.table import model_tokenizer

    tokenizer = model_tokenizer(model)
    if tokenizer is not None:
        return tokenizer
    from auto_circuit_dcd.model.load import load_model

    return load_model(model).tokenizer


def _dataset_path(config: RunConfig, tokenizer: PreTrainedTokenizerBase,
                  folder: RunFolder) -> Path:
    if config.dataset:
        return Path(config.dataset)
    if config.task:
        from auto_circuit_dcd.tasks import make_dataset

        make_dataset(task=config.task, prompt_types=config.prompt_types, tokenizer=tokenizer,
                     n=config.n or 1000, seed=config.seed, out=folder.dataset)
        return folder.dataset
    embedded = embedded_dataset(config.model)
    if embedded is not None:
        return embedded
    raise ConfigError(f"model {config.model!r} has no embedded dataset: pass --dataset FILE "
                      "or --task NAME (e.g. --task all-tasks)")
