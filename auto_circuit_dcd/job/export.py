"""A finished run's circuits as EAP-IG graph JSON, the files MIB's circuit-track tools read.

``export_mib(run_dir)`` (the command ``auto-circuit-dcd export-mib RUN_DIR``):

1. reads the run through :class:`~auto_circuit_dcd.job.run_folder.RunFolder`, holding the
   folder's lock (a run still writing it is refused): its report, its circuits (with edge
   names, layout and graph: no model needed), the model's graph config and the sizes the
   run evaluated;
2. for every circuit (``single``, ``cluster_<c>``, ``k_random_<c>``) writes
   ``mib/<circuit>/importances.json``: every edge with its score, all in the graph, the
   importance-score form that MIB's ``run_evaluation.py --circuit-files`` reads and cuts at
   its own sizes (for a model without MLPs ``importances-abs.json`` and
   ``importances-signed.json``, one per ranking: :mod:`auto_circuit_dcd.circuits.mib`);
3. for every size ``p`` writes ``mib/<circuit>/edges-<100p>pct.json``: the edges the run
   evaluated at ``p`` (its selection rule and, under a convention with two rankings, the
   first, the one its curves and CPR use) as ``in_graph`` flags, the binary form of MIB's
   multiple-circuit submissions; the rule, ranking and edge counts are in the file's
   ``meta`` and its index entry;
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

import numpy as np

from auto_circuit_dcd.circuits.mib import MibFile, size_file_name
from auto_circuit_dcd.job.run_folder import RunFolder, RunFolderError

__all__ = ["MIB_FOLDER", "MibExport", "MibFile", "export_mib", "size_file_name",
           "RunFolderError"]

MIB_FOLDER = "mib"
INDEX_FILE = "index.json"


@dataclass(frozen=True)
class MibExport:
    """What :func:`export_mib` wrote: the folder and, per file, its circuit, size and edges."""

    folder: Path
    files: list[MibFile]


def export_mib(run_dir: str | Path) -> MibExport:
    """Write ``run_dir/mib/`` (see the module docstring); returns what was written."""
    from auto_circuit_dcd.circuits.mib import circuit_files, describe_missing, describe_selection
    from auto_circuit_dcd.files import write_text

    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise RunFolderError(f"{run.path} is not a folder: give the --out folder of a finished "
                             "`auto-circuit-dcd run`")
    files: list[MibFile] = []
    with run.lock("run"):
        report = run.report()
        circuits = run.circuits()
        cfg, sizes = run.graph_config(), run.sizes()
        folder = run.path / MIB_FOLDER
        shutil.rmtree(folder, ignore_errors=True)

        at = {p: run.circuits(at=p) for p in sizes.fractions}
        ranking = sizes.rankings[0]
        for name, circuit in circuits.items():
            sets = np.stack([at[p][name].mask.numpy() for p in sizes.fractions])
            for file, graph, entry in circuit_files(name, circuit, sets, sizes.fractions, cfg,
                                                    sizes.selection, ranking):
                write_text(folder / file, json.dumps(graph))
                files.append(entry)
        n_edges = next(iter(circuits.values())).n_edges if circuits else 0
        write_text(folder / INDEX_FILE, json.dumps({
            "format": "EAP-IG graph JSON (eap.graph.Graph.from_json)",
            "model": report.model, "graph_config": cfg, "n_edges": n_edges,
            "edges_lacking": describe_missing(cfg, n_edges),
            "selection": f"{sizes.selection} ({ranking} ranking), as evaluated by the run",
            "size_files_hold": "the edges the run evaluated at each size: "
                               + describe_selection(sizes.selection, ranking),
            "files": files}, indent=1))
    return MibExport(folder=folder, files=files)
