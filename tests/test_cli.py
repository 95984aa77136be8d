"""What a researcher types and reads: the command's options and output, and ``export-mib``.

One run of the main job on the tiny random model (module fixture) serves every test here.
"""

import contextlib
import io
import json

import numpy as np
import pytest

from auto_circuit_dcd.cli import main
from test_pipeline import RUN, tiny_prompts, write


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``(out folder, report.json, stdout, stderr)`` of one run with progress output on."""
    data = write(tmp_path_factory.mktemp("data") / "tiny.json", tiny_prompts())
    out = tmp_path_factory.mktemp("run")
    argv = [a for a in RUN if a != "--quiet"] + ["--dataset", str(data), "--out", str(out)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main(argv) == 0
    return out, json.loads((out / "report.json").read_text()), stdout.getvalue(), stderr.getvalue()


# ----------------------------------------------------------------------------- export-mib
def test_export_mib_writes_every_circuit_at_every_size_and_it_reads_back(tiny_run, tiny_pm,
                                                                           capsys):
    """Oracle: the circuit's edge set recomputed here from the saved scores (the top
    floor(p * n) by |score|, ties kept) and the evaluation's own edge counts in
    report.json; the file is read back into the package's edge order by name."""
    from safetensors.torch import load_file

    from auto_circuit_dcd.edges import edge_layout
    from auto_circuit_dcd.mib import from_eap_ig_graph

    out, rep, _, _ = tiny_run
    assert main(["export-mib", str(out)]) == 0
    assert str(out / "mib") in capsys.readouterr().out
    saved = load_file(str(out / "circuits.safetensors"))
    index = json.loads((out / "mib" / "index.json").read_text())
    names, _ = edge_layout(tiny_pm)
    fractions = rep["edge_fractions"]
    assert len(index["files"]) == len(saved) * (len(fractions) + 1)
    assert index["graph_config"] == {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False,
                                     "d_model": 16}
    for entry in index["files"]:
        data = json.loads((out / "mib" / entry["file"]).read_text())
        scores, in_graph = from_eap_ig_graph(data, names)
        vec = saved[entry["circuit"]].double().numpy()
        # scores go through JSON as float64 of float32 values: exact
        np.testing.assert_array_equal(scores, vec)
        p = entry["edge_fraction"]
        if p is None:  # importances: every edge, MIB's evaluator cuts its own sizes
            assert in_graph.all()
            continue
        count = int(np.floor(round(p * len(names), 9)))
        expected = (np.abs(vec) >= np.sort(np.abs(vec))[::-1][count - 1]) if count else \
            np.zeros(len(names), dtype=bool)
        np.testing.assert_array_equal(in_graph, expected)
        assert entry["n_edges"] == int(expected.sum())
        j = fractions.index(p)
        assert entry["n_edges"] == rep["achieved_edge_counts"][entry["circuit"]][j]


def test_export_mib_refuses_a_folder_without_a_run(tmp_path, capsys):
    assert main(["export-mib", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no finished run" in err[0]
    assert main(["export-mib", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
