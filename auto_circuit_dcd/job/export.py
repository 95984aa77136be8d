"""A finished run's circuits as EAP-IG graph JSON, the files MIB's circuit-track tools read.

``export_mib(run_dir)`` (the command ``auto-circuit-dcd export-mib RUN_DIR``):

1. reads the run's circuits (``circuits.safetensors`` + ``circuits.json``: edge names, edge
   layout, the model's graph config) and its circuit sizes (``report.json``'s
   ``edge_fractions``), holding the run folder's lock (a run still writing it is refused);
2. for every circuit (``single``, ``cluster_<c>``, ``k_random_<c>``) writes
   ``mib/<circuit>/importances.json``: every edge with its score, all in the graph, the
   importance-score form that MIB's ``run_evaluation.py --circuit-files`` reads and cuts at
   its own sizes (for a model without MLPs ``importances-abs.json`` and
   ``importances-signed.json``, one per ranking: :mod:`auto_circuit_dcd.circuits.mib`);
3. for every size ``p`` writes ``mib/<circuit>/edges-<100p>pct.json``: the edges the run
   evaluated at ``p`` (saved by the run as ``NAME.edges.RANKING``: its selection rule and,
   under a convention with two rankings, the first, the one its curves and CPR use) as
   ``in_graph`` flags, the binary form of MIB's multiple-circuit submissions; the rule,
   ranking and edge counts are in the file's ``meta`` and its index entry;
4. writes ``mib/index.json`` last: each file with its circuit, size, ranking and edge
   counts, and in words what the size files hold.

The old ``mib/`` folder is removed first and every file is written whole or not at all.
Scores keep the package's sign, which is EAP-IG's with MIB's attribution metric
(``loss=True``): positive edges support the clean behaviour.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List

from auto_circuit_dcd.circuits.mib import size_file_name
from auto_circuit_dcd.errors import DamagedFileError, UserError

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.report.records import RunReport

__all__ = ["MIB_FOLDER", "MibExport", "export_mib", "size_file_name", "run_circuits"]

MIB_FOLDER = "mib"
INDEX_FILE = "index.json"


class RunFolderError(UserError, FileNotFoundError):
    """A folder that does not hold a finished run."""


@dataclass(frozen=True)
class MibExport:
    """What :func:`export_mib` wrote: the folder and, per file, its circuit, size and edges."""

    folder: Path
    files: List[Dict[str, Any]]


def _read_json(path: Path, what: str) -> Dict[str, Any]:
    if not path.is_file():
        raise RunFolderError(f"{path} not found: {path.parent} holds no finished run ({what} "
                             "is written at the end of `auto-circuit-dcd run`)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DamagedFileError(f"{path} cannot be read ({err}): run the job again") from err


def run_circuits(run_dir: str | Path) -> Dict[str, Any]:
    """The circuits a run saved, as :class:`~auto_circuit_dcd.circuits.circuit.Circuit` objects of
    all edges by name, with the graph config, from ``run_dir`` alone (no model)."""
    from safetensors.torch import load_file

    from auto_circuit_dcd.circuits.circuit import Circuit
    from auto_circuit_dcd.model.edges import EdgeLayout

    run_dir = Path(run_dir)
    listing = _read_json(run_dir / "circuits.json", "circuits.json")
    if "layout" not in listing or "graph_config" not in listing:
        raise RunFolderError(f"{run_dir / 'circuits.json'} was written by an older version "
                             "without the edge layout and graph config: run the job again "
                             "(cached attributions make it quick)")
    try:
        vectors = load_file(str(run_dir / listing.get("scores_file", "circuits.safetensors")))
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported as such
        raise DamagedFileError(f"{run_dir}: circuit scores cannot be read ({err}): run the "
                               "job again") from err
    layout = EdgeLayout.from_json(listing["layout"])
    names = listing["edge_names"]
    sets = listing.get("edge_sets")
    if sets is None:
        raise RunFolderError(f"{run_dir / 'circuits.json'} lists no evaluated edge sets "
                             "(written by an older version): run the job again")
    ranking = sets["rankings"][0]
    circuits = {name: Circuit(vec, names, layout, meta={"label": name})
                for name, vec in vectors.items() if ".edges." not in name}
    missing = [n for n in circuits if f"{n}.edges.{ranking}" not in vectors]
    if missing:
        raise DamagedFileError(f"{run_dir}: the evaluated edges of {missing} are missing from "
                               "the circuit scores file: run the job again")
    return {"graph_config": listing["graph_config"], "circuits": circuits,
            "fractions": [float(f) for f in sets["fractions"]],
            "edge_sets": {n: vectors[f"{n}.edges.{ranking}"].bool() for n in circuits},
            "rule": sets["selection"], "ranking": ranking,
            "selection": f"{sets['selection']} ({ranking} ranking), as evaluated by the run"}


def _read_report(run_dir: Path) -> "RunReport":
    from auto_circuit_dcd.report.records import RunReport
    from auto_circuit_dcd.schema import SchemaError

    try:
        return RunReport.from_dict(_read_json(run_dir / "report.json", "report.json"))
    except SchemaError as err:
        raise RunFolderError(f"{run_dir / 'report.json'} is not a report of this version "
                             f"({err}): run the job again (cached attributions make it "
                             "quick)") from None


def export_mib(run_dir: str | Path) -> MibExport:
    """Write ``run_dir/mib/`` (see the module docstring); returns what was written."""
    from auto_circuit_dcd.circuits.mib import circuit_files, describe_missing, describe_selection
    from auto_circuit_dcd.files import folder_lock, write_text

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder: give the --out folder of a finished "
                             "`auto-circuit-dcd run`")
    files: List[Dict[str, Any]] = []
    with folder_lock(run_dir, what="run"):
        report = _read_report(run_dir)
        saved = run_circuits(run_dir)
        cfg, circuits = saved["graph_config"], saved["circuits"]
        fractions = saved["fractions"]
        folder = run_dir / MIB_FOLDER
        shutil.rmtree(folder, ignore_errors=True)
        for name, circuit in circuits.items():
            for file, graph, entry in circuit_files(name, circuit, saved["edge_sets"][name],
                                                    fractions, cfg, saved["rule"],
                                                    saved["ranking"]):
                write_text(folder / file, json.dumps(graph))
                files.append(entry)
        write_text(folder / INDEX_FILE, json.dumps({
            "format": "EAP-IG graph JSON (eap.graph.Graph.from_json)",
            "model": report.model, "graph_config": cfg,
            "n_edges": next(iter(circuits.values())).n_edges if circuits else 0,
            "edges_lacking": describe_missing(
                cfg, next(iter(circuits.values())).n_edges if circuits else 0),
            "selection": saved["selection"],
            "size_files_hold": "the edges the run evaluated at each size: "
                               + describe_selection(saved["rule"], saved["ranking"]),
            "files": files}, indent=1))
    return MibExport(folder=folder, files=files)
