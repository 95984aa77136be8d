"""``RunFolder``: the main job's output folder, the one owner of its file names and formats.

A run folder (``auto-circuit-dcd run --out FOLDER``) holds:

- ``report.json`` (:class:`~auto_circuit_dcd.report.records.RunReport`) and ``report.html``;
- ``attribution_train/``, ``attribution_test/``: the attribution matrices
  (:meth:`~auto_circuit_dcd.attribution.matrix.AttributionMatrix.save`);
- ``circuits.safetensors`` + ``circuits.json``: the run's circuits in the format of
  :func:`~auto_circuit_dcd.circuits.circuit.save_circuits` (each circuit's scores as
  ``NAME``, float32), with the edges evaluated at each size as ``NAME.edges.RANKING`` (bool
  ``[n_fractions, n_edges]``) and, in the JSON, the evaluated sizes (``edge_sets``), the
  model's EAP-IG graph config (what ``export-mib`` needs without the model) and each
  circuit's top edges;
- ``per_example/``: every evaluated (circuit, size)'s per-example metric values on the test
  split, with ``mu(full)``, ``mu(empty)``, the example ids and the test routings
  (:mod:`~auto_circuit_dcd.evaluation.per_example`): every interval of the report can be
  recomputed from it with no model pass;
- ``cache/``: per-example attribution rows (:mod:`auto_circuit_dcd.attribution.cache`), which
  an interrupted or repeated run resumes from;
- ``dataset.json`` when the run generated its dataset (``--task``);
- ``.lock`` while a run or an export holds the folder (:func:`~auto_circuit_dcd.files.folder_lock`).

:meth:`RunFolder.write` writes a finished run: the old report removed first, then the data
(matrices, circuits, per-example values), then ``report.json`` and ``report.html`` that
describe it, each file whole or not at all. The readers (:meth:`~RunFolder.report`,
:meth:`~RunFolder.circuits`, :meth:`~RunFolder.attributions`,
:meth:`~RunFolder.per_example`, ...) say in one line when the folder holds no finished run
of this version.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
)

import numpy as np
import torch

from auto_circuit_dcd.errors import DamagedFileError, UserError
from auto_circuit_dcd.files import folder_lock, remove_temporaries, write_text
from auto_circuit_dcd.report.records import REPORT_FILE

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.attribution.matrix import AttributionMatrix
    from auto_circuit_dcd.circuits.circuit import Circuit, CircuitFiles
    from auto_circuit_dcd.circuits.selection import Ranking
    from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult
    from auto_circuit_dcd.report.records import RunReport

__all__ = ["RunFolder", "RunFolderError", "EvaluatedSizes", "Split"]

#: which split's attribution matrix
Split = Literal["train", "test"]
#: ``{ranking: {circuit name: its result}}``: every circuit evaluated under each ranking
Evaluated = Mapping[str, Mapping[str, "FaithfulnessResult"]]


class RunFolderError(UserError, FileNotFoundError):
    """A folder that does not hold a finished run (of this version)."""


@dataclass(frozen=True)
class EvaluatedSizes:
    """The circuit sizes a run evaluated, and how each size's edges were chosen (under
    each of ``rankings``; the first is the one the curves and CPR use)."""

    fractions: list[float]
    selection: str
    rankings: list[Ranking]


class RunFolder:
    """The output folder of one run of the main job (see the module docstring)."""

    REPORT_JSON = REPORT_FILE
    REPORT_HTML = "report.html"
    CIRCUITS = "circuits.safetensors"
    CIRCUITS_JSON = "circuits.json"
    CACHE = "cache"
    DATASET = "dataset.json"
    PER_EXAMPLE = "per_example"
    #: how many of each circuit's best edges ``circuits.json`` lists
    TOP_EDGES = 50

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------ places
    @property
    def report_json(self) -> Path:
        return self.path / self.REPORT_JSON

    @property
    def report_html(self) -> Path:
        return self.path / self.REPORT_HTML

    @property
    def cache(self) -> Path:
        """Where the run's attribution rows are cached (``attribute(cache_dir=...)``)."""
        return self.path / self.CACHE

    @property
    def dataset(self) -> Path:
        """Where a generated dataset is written."""
        return self.path / self.DATASET

    @property
    def per_example_folder(self) -> Path:
        """Where the per-example values of the evaluated circuits are."""
        return self.path / self.PER_EXAMPLE

    def attribution_folder(self, split: Split) -> Path:
        return self.path / f"attribution_{split}"

    def has_cached_rows(self) -> bool:
        """Whether ``cache/`` holds attribution rows a re-run would resume from."""
        return any(self.cache.glob("attribution-*/*.safetensors"))

    # ---------------------------------------------------------------- holding
    def lock(self, what: str = "run") -> AbstractContextManager[Path]:
        """The folder's lock (a second holder is refused, naming the first)."""
        return folder_lock(self.path, what=what)

    @contextmanager
    def hold(self) -> Iterator[RunFolder]:
        """Hold the folder for a run: rank 0 of a process group takes the lock for all and
        clears unfinished temporary files. A run that fails removes the folders it
        created, unless they hold cached attribution rows (a re-run resumes from them)."""
        from auto_circuit_dcd.distributed import is_main, main_first

        first_new = None
        p = self.path
        while not p.exists():
            first_new, p = p, p.parent

        def lock() -> None:
            if is_main():
                stack.enter_context(self.lock("run"))
                remove_temporaries(self.path, recursive=True)

        try:
            with ExitStack() as stack:
                main_first(lock)  # rank 0 only holds the lock; the others wait for it
                yield self
        except BaseException:
            if is_main() and first_new is not None and not self.has_cached_rows():
                shutil.rmtree(first_new, ignore_errors=True)
            raise

    # ---------------------------------------------------------------- writing
    def write(self, report: RunReport, *, train: AttributionMatrix,
              test: AttributionMatrix, circuits: Mapping[str, Circuit],
              evaluated: Evaluated, graph_config: dict[str, Any],
              page: dict[str, Any] | None = None) -> None:
        """A finished run's files: the old report removed first, then the matrices, the
        circuits and the per-example values, then ``report.json`` and ``report.html``
        (``page``: the page's figures,
        :func:`~auto_circuit_dcd.report.captions.page_extras`)."""
        for path in (self.report_json, self.report_html):
            path.unlink(missing_ok=True)
        train.save(self.attribution_folder("train"))
        test.save(self.attribution_folder("test"))
        self.write_circuits(circuits, evaluated, graph_config)
        self.write_per_example(report, evaluated)
        write_text(self.report_json, report.to_json())
        from auto_circuit_dcd.report.html import write_html

        write_html(report, self.report_html, page)

    def write_circuits(self, circuits: Mapping[str, Circuit], evaluated: Evaluated,
                       graph_config: dict[str, Any]) -> None:
        """``circuits.safetensors`` + ``circuits.json``: the circuits, the edges each was
        evaluated with at each size under each ranking, and each circuit's top edges by
        the first ranking."""
        from auto_circuit_dcd.circuits.circuit import save_circuits
        from auto_circuit_dcd.circuits.selection import rank_key

        first = next(iter(evaluated.values()))["single"]
        sets = {f"{name}.edges.{ranking}": torch.from_numpy(np.ascontiguousarray(r.edge_sets))
                for ranking, results in evaluated.items() for name, r in results.items()}
        listing = {}
        for name, c in circuits.items():  # its top edges by the run's ranking, best first
            key = rank_key(c.scores.numpy(), first.ranking)
            order = sorted(np.flatnonzero(c.top(self.TOP_EDGES, first.ranking).mask.numpy())
                           .tolist(), key=lambda j: (-key[j], j))[:self.TOP_EDGES]
            listing[name] = [[c.edge_names[j], float(c.scores[j])] for j in order]
        save_circuits(self.path, circuits, self.CIRCUITS, self.CIRCUITS_JSON,
                      extra_tensors=sets, dtype=torch.float32, extra_meta={
                          "graph_config": graph_config,
                          "edge_sets": {"key": "NAME.edges.RANKING",
                                        "fractions": first.fractions.tolist(),
                                        "selection": first.selection,
                                        "rankings": list(evaluated)},
                          "top_edges": listing})

    def write_per_example(self, report: RunReport, evaluated: Evaluated) -> None:
        """``per_example/``: every circuit's per-example values at each size under each
        ranking, in ``report.test_example_ids``' order, with the report's test routings
        (``"dcd"``: each example's cluster, -1 for noise; ``"k_random"``: its K-random
        circuit, when the run has them)."""
        from auto_circuit_dcd.evaluation.per_example import save_per_example

        routings: dict[str, list[Any]] = {"dcd": list(report.test_routing)}
        if report.k_random.test_routing is not None:
            routings["k_random"] = list(report.k_random.test_routing)
        save_per_example(self.per_example_folder, evaluated, report.test_example_ids,
                         routings=routings)

    # ---------------------------------------------------------------- reading
    def per_example(self) -> dict[str, dict[str, FaithfulnessResult]]:
        """The per-example values as ``{ranking: {circuit: FaithfulnessResult}}``
        (:func:`~auto_circuit_dcd.evaluation.per_example.load_per_example`; no edge sets:
        :meth:`circuits` has them)."""
        from auto_circuit_dcd.evaluation.per_example import load_per_example

        return load_per_example(self._per_example_path())

    def test_routings(self) -> dict[str, list[Any]]:
        """The routings saved with the per-example values: ``{"dcd": cluster per test
        example, "k_random": K-random circuit per test example}`` (rows' order)."""
        from auto_circuit_dcd.evaluation.per_example import load_routings

        return load_routings(self._per_example_path())

    def report(self) -> RunReport:
        """``report.json`` as the typed report."""
        from auto_circuit_dcd.report.records import RunReport
        from auto_circuit_dcd.schema import SchemaError

        try:
            return RunReport.from_dict(self._json(self.report_json))
        except SchemaError as err:
            raise RunFolderError(f"{self.report_json} is not a report of this version "
                                 f"({err}): run the job again (cached attributions make it "
                                 "quick)") from None

    def attributions(self, split: Split = "train") -> AttributionMatrix:
        """The attribution matrix of the train or test split."""
        from auto_circuit_dcd.attribution.matrix import AttributionMatrix

        self._finished()
        return AttributionMatrix.load(self.attribution_folder(split))

    def circuits(self, at: float | None = None,
                 ranking: Ranking | None = None) -> dict[str, Circuit]:
        """The run's circuits by name (``single``, ``cluster_<c>``, ``k_random_<c>``), no
        model needed: with all their edges, or with ``at`` (one of the evaluated edge
        fractions) the edges the run evaluated at that size under ``ranking`` (default:
        the first, that of the curves and CPR)."""
        files = self._circuit_files
        if at is None:
            return dict(files.circuits)
        sizes = self.sizes()
        hits = [j for j, p in enumerate(sizes.fractions) if math.isclose(p, at)]
        if not hits:
            raise KeyError(f"the run evaluated no size {at}; it evaluated {sizes.fractions}")
        ranking = ranking or sizes.rankings[0]
        if ranking not in sizes.rankings:
            raise KeyError(f"the run ranked edges by {sizes.rankings}, not {ranking!r}")
        return {name: c.with_mask(files.tensors[f"{name}.edges.{ranking}"][hits[0]].bool())
                for name, c in files.circuits.items()}

    def sizes(self) -> EvaluatedSizes:
        """The sizes the run evaluated and how their edges were chosen."""
        sets = self._circuit_files.meta["edge_sets"]
        return EvaluatedSizes([float(f) for f in sets["fractions"]], sets["selection"],
                              list(sets["rankings"]))

    def graph_config(self) -> dict[str, Any]:
        """The model's EAP-IG graph config (``n_layers``, ``n_heads``, ...)."""
        return dict(self._circuit_files.meta["graph_config"])

    @cached_property
    def _circuit_files(self) -> CircuitFiles:
        from auto_circuit_dcd.circuits.circuit import load_circuits

        meta = self._json(self.path / self.CIRCUITS_JSON)
        if meta.get("format_version") is None or "circuits" not in meta:
            raise RunFolderError(f"{self.path / self.CIRCUITS_JSON} was written by an older "
                                 "version: run the job again (cached attributions make it "
                                 "quick)")
        try:
            files = load_circuits(self.path, self.CIRCUITS, self.CIRCUITS_JSON, "run's circuits")
        except (KeyError, ValueError) as err:
            raise DamagedFileError(f"{self.path}: the circuit scores cannot be read ({err}): "
                                   "run the job again") from err
        ranking = files.meta["edge_sets"]["rankings"][0]
        missing = [n for n in files.circuits if f"{n}.edges.{ranking}" not in files.tensors]
        if missing:
            raise DamagedFileError(f"{self.path}: the evaluated edges of {missing} are missing "
                                   "from the circuit scores file: run the job again")
        return files

    def _per_example_path(self) -> Path:
        self._finished()
        if not self.per_example_folder.is_dir():
            raise RunFolderError(f"{self.path} holds no {self.PER_EXAMPLE}/ (a run written "
                                 "before per-example values were saved): run the job again "
                                 "(cached attributions make it quick)")
        return self.per_example_folder

    def _finished(self) -> None:
        if not self.report_json.is_file():
            self._json(self.report_json)  # raises, naming what is missing

    def _json(self, path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise RunFolderError(f"{path} not found: {self.path} holds no finished run "
                                 f"({path.name} is written at the end of `auto-circuit-dcd "
                                 "run`)")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise DamagedFileError(f"{path} cannot be read ({err}): run the job again") from err
