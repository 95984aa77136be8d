"""A finished run's circuits as EAP-IG graph JSON, the files MIB's circuit-track tools read.

``export_mib(run_dir)`` (the command ``auto-circuit-dcd export-mib RUN_DIR``):

1. reads the run through :class:`~auto_circuit_dcd.job.run_folder.RunFolder`, holding the
   folder's lock (a run still writing it is refused): its report, its circuits (with edge
   names, layout and graph: no model needed), the model's graph config and the sizes the
   run evaluated;
2. for every circuit (``single``, ``cluster_<c>``, ``k_random_<c>``) writes
   ``mib/<circuit>/importances.json``: every edge with its score, all in the graph, the
   importance-score form that MIB's ``run_evaluation.py --circuit-files`` reads and cuts at
   its own sizes;
3. for every size ``p`` writes ``mib/<circuit>/edges-<100p>pct.json``: the edges the run
   evaluated at ``p`` (its selection rule and, under a convention with two rankings, the
   first, the one its curves and CPR use) as ``in_graph`` flags, the binary form of MIB's
   multiple-circuit submissions;
4. writes ``mib/index.json`` last: each file with its circuit, size and edge count.

The old ``mib/`` folder is removed first and every file is written whole or not at all.
Scores keep the package's sign, which is EAP-IG's with MIB's attribution metric
(``loss=True``): positive edges support the clean behaviour.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, TypedDict

from auto_circuit_dcd.job.run_folder import RunFolder, RunFolderError

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.circuits.circuit import Circuit

__all__ = ["MIB_FOLDER", "MibExport", "MibFile", "export_mib", "size_file_name",
           "RunFolderError"]

MIB_FOLDER = "mib"
INDEX_FILE = "index.json"
IMPORTANCES_FILE = "importances.json"


class MibFile(TypedDict):
    """One written file: its circuit, its size (None: importances of every edge) and the
    edges in its graph."""

    circuit: str
    file: str
    edge_fraction: Optional[float]
    n_edges: int


@dataclass(frozen=True)
class MibExport:
    """What :func:`export_mib` wrote: the folder and, per file, its circuit, size and edges."""

    folder: Path
    files: List[MibFile]


def size_file_name(fraction: float) -> str:
    """The file of a circuit at edge fraction ``fraction`` (``0.05`` -> ``edges-5pct.json``)."""
    return f"edges-{round(100 * fraction, 9):g}pct.json"


def export_mib(run_dir: "str | Path") -> MibExport:
    """Write ``run_dir/mib/`` (see the module docstring); returns what was written."""
    from auto_circuit_dcd.circuits.mib import to_eap_ig_graph
    from auto_circuit_dcd.files import write_text

    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise RunFolderError(f"{run.path} is not a folder: give the --out folder of a finished "
                             "`auto-circuit-dcd run`")
    files: List[MibFile] = []
    with run.lock("run"):
        report = run.report()
        circuits = run.circuits()
        cfg, sizes = run.graph_config(), run.sizes()
        folder = run.path / MIB_FOLDER
        shutil.rmtree(folder, ignore_errors=True)

        def write(name: str, circuit: "Circuit", p: Optional[float], file: str) -> None:
            write_text(folder / file, json.dumps(to_eap_ig_graph(
                circuit.edge_names, circuit.scores.numpy(), circuit.mask.numpy(), cfg)))
            files.append({"circuit": name, "file": file, "edge_fraction": p,
                          "n_edges": circuit.size})

        at = {p: run.circuits(at=p) for p in sizes.fractions}
        for name, circuit in circuits.items():
            write(name, circuit, None, f"{name}/{IMPORTANCES_FILE}")
            for p in sizes.fractions:
                write(name, at[p][name], p, f"{name}/{size_file_name(p)}")
        write_text(folder / INDEX_FILE, json.dumps({
            "format": "EAP-IG graph JSON (eap.graph.Graph.from_json)",
            "model": report.model, "graph_config": cfg,
            "n_edges": next(iter(circuits.values())).n_edges if circuits else 0,
            "selection": f"{sizes.selection} ({sizes.rankings[0]} ranking), as evaluated by "
                         "the run",
            "files": files}, indent=1))
    return MibExport(folder=folder, files=files)
