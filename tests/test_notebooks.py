"""Execute every example notebook end to end, at the small size of its parameter cell.

The notebooks are saved executed at full size (``notebooks/build_notebooks.py --execute``);
their saved outputs are checked on their own (every code cell executed in order, no error, a
PNG in every figure cell) and stripped before each run here.

Each notebook ends with a conclusion cell that builds a ``summary`` dict from its results;
after the notebook runs, one extra cell (added here, not saved) prints it as JSON, and the
tests check it against what is known independently: the toy model's planted mechanisms,
the model's accuracy on IOI, auto-circuit's own measurements.

The kernel is this interpreter (``sys.executable``): a kernelspec named ``python3`` is
written to a temporary directory placed first on ``JUPYTER_PATH``, so the tests need no
``ipykernel install`` and never pick up another Python from the user's kernelspecs.
"""

from __future__ import annotations

import base64
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
_MARK = "DCD_NOTEBOOK_SUMMARY "
_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the kernel: a ``python3`` kernelspec running this interpreter."""
    data_dir = tmp_path_factory.mktemp("jupyter")
    spec_dir = data_dir / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (auto-circuit-dcd tests)",
        "language": "python",
    }))
    return {"JUPYTER_PATH": str(data_dir), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "DCD_NB_OUT": str(tmp_path_factory.mktemp("notebook-out"))}


def run_notebook(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Execute ``notebooks/name`` in a fresh kernel; return its ``summary`` dict."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DCD_NB_N", raising=False)
    monkeypatch.delenv("DCD_NB_FRACTIONS", raising=False)
    nb = strip_outputs(nbformat.read(NOTEBOOKS / name, as_version=4))
    nb.cells.append(nbformat.v4.new_code_cell(
        f"import json\nprint({_MARK!r} + json.dumps(summary, default=str))"))
    client = NotebookClient(nb, kernel_name="python3", timeout=_TIMEOUT_S,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    print(f"{name}: executed in {seconds:.1f} s")
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    line = next(ln for ln in text.splitlines() if ln.startswith(_MARK))
    summary = json.loads(line[len(_MARK):])
    summary["wall_seconds"] = seconds
    return summary


def strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without outputs, execution counts or execution metadata (in place)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    return nb


def _build_notebooks():
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import build_notebooks
    finally:
        sys.path.remove(str(NOTEBOOKS))
    return build_notebooks


def _cells(nb: nbformat.NotebookNode):
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def _finite_matrix(d: dict[str, Any], rows: int, cols: int) -> None:
    m = d["matrix"]
    assert len(m) == rows and all(len(r) == cols for r in m)
    assert all(v is not None and math.isfinite(v) for r in m for v in r)


def test_notebooks_are_built_from_their_sources() -> None:
    """The saved notebooks' cells (type, source, tags) are what build_notebooks.py writes."""
    build_notebooks = _build_notebooks()
    assert sorted(build_notebooks.NOTEBOOKS) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    for name, cells in build_notebooks.NOTEBOOKS.items():
        saved = nbformat.read(NOTEBOOKS / name, as_version=4)
        built = build_notebooks.build(cells)
        assert _cells(saved) == _cells(built), name
        assert saved.metadata["kernelspec"]["name"] == "python3"


# what a saved output must not show: this machine's paths, errors, progress bars
_FORBIDDEN = ("Traceback", "site-packages", "/tmp/", "/home/", "/root/", "/work/", "it/s]")


def test_saved_notebooks_are_executed() -> None:
    """Each saved notebook was executed top to bottom at its saved size, without error, and
    holds a PNG of every figure (and its plotly JSON)."""
    build_notebooks = _build_notebooks()
    for name in build_notebooks.NOTEBOOKS:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert nb.metadata.get("auto_circuit_dcd", {}).get("DCD_NB_N") == (
            build_notebooks.SAVED_N[name]), f"{name}: run notebooks/build_notebooks.py --execute"
        code = [c for c in nb.cells if c.cell_type == "code"]
        # one kernel, every cell once, in order
        assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), name
        is_figure = [build_notebooks.FIGURE_TAG in c.metadata.get("tags", []) for c in code]
        assert any(is_figure), name
        for cell, figure in zip(code, is_figure):
            outputs = cell.outputs
            assert not [o for o in outputs if o.output_type == "error"], (name, cell.id)
            assert not [o for o in outputs if o.get("name") == "stderr"], (name, cell.id)
            for o in outputs:
                data = o.get("data", {})
                if build_notebooks.PLOTLY_MIME in data:
                    assert "image/png" in data, (name, cell.id)
                    png = base64.b64decode(data["image/png"])
                    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000, (name, cell.id)
                text = json.dumps({k: v for k, v in data.items() if k != "image/png"}) + str(
                    o.get("text", ""))
                assert not [w for w in _FORBIDDEN if w in text], (name, cell.id)
            if figure:
                assert any("image/png" in o.get("data", {}) for o in outputs), (name, cell.id)
        assert (NOTEBOOKS / name).stat().st_size < 2_000_000, name


@pytest.mark.slow
def test_quickstart_toy(kernel_env, monkeypatch) -> None:
    s = run_notebook("01_quickstart_toy.ipynb", kernel_env, monkeypatch)
    # the two planted mechanisms are recovered without labels
    assert s["n_clusters"] >= 2
    assert s["ari"] > 0.5 and s["purity"] > 0.9
    # per-cluster circuits beat the single circuit at p = 5%, the oracle bounds routing
    assert s["f_dcd_routed"] > s["f_single"] + 0.1
    assert s["f_dcd_oracle"] >= s["f_dcd_routed"] - 1e-9
    n_rows = 3 + s["n_clusters"]  # two task circuits, single, clusters
    _finite_matrix(s["cross"], n_rows, 2)
    # the main job on the same data finds the planted tasks too, and its typed report is
    # what report.json reads back as
    run = s["run"]
    assert run["n_clusters"] >= 2 and run["ari"] > 0.5
    assert run["f_dcd_routed"] > run["f_single"] + 0.1
    assert run["reloaded_equal"] is True
    # the run folder's circuits at p hold the edges the evaluation counted there
    assert run["saved_sizes"] == run["evaluated_sizes"]


@pytest.mark.slow
def test_inside_auto_circuit(kernel_env, monkeypatch) -> None:
    s = run_notebook("04_inside_auto_circuit.ipynb", kernel_env, monkeypatch)
    # the registered metric, run by auto-circuit, equals the package's own evaluation
    assert s["metric_check_max_diff"] < 1e-5
    assert set(s["at_small"]) == {"mixed", "ioi", "induction"}
    for per_algo in s["at_small"].values():
        assert len(per_algo) == 3 and all(math.isfinite(v) for v in per_algo.values())


@pytest.mark.slow
def test_dataset_variations_smollm2(kernel_env, monkeypatch) -> None:
    s = run_notebook("02_dataset_variations_smollm2.ipynb", kernel_env, monkeypatch)
    _finite_matrix(s["cross"], 4, 4)
    _finite_matrix(s["overlap_top_k"], 4, 4)
    # oracle: the Jaccard index of each pair's top-k edge indices (numpy argsort in the
    # notebook, python sets here), against the package's overlap matrix
    tops = [set(s["top_k_edges"][g]) for g in s["overlap_top_k"]["labels"]]
    for i in range(4):
        for j in range(4):
            jac = len(tops[i] & tops[j]) / len(tops[i] | tops[j])
            assert abs(s["overlap_top_k"]["matrix"][i][j] - jac) < 1e-12
    # SmolLM2 solves IOI (measured accuracy 0.88-1.0 per variant)
    assert sum(s["accuracy"].values()) / 4 >= 0.75


@pytest.mark.slow
def test_two_task_mixture_smollm2(kernel_env, monkeypatch) -> None:
    s = run_notebook("03_two_task_mixture_smollm2.ipynb", kernel_env, monkeypatch)
    _finite_matrix(s["cross"], 3 + s["n_clusters"], 2)
    # SmolLM2 does both tasks (measured: IOI 0.88-1.0, sequence 0.8-0.95)
    assert sum(s["accuracy"].values()) / 2 >= 0.7
    assert len(s["per_cluster"]) == s["n_clusters"]
    # circuits found on one task alone fit it better than they transfer to the other task
    assert s["task_alone_own"] > s["task_alone_other"]
    # the two tasks are separated without labels (measured ARI 1.0 at 24 and 48 examples)
    assert s["ari"] > 0.5
    # and describe_clusters says so without them: the field that follows the clusters most
    # closely is the task (or the label or prompt type naming it), one sentence per cluster
    described = s["described"]
    field, v, q, associated = described["fields"][0]
    assert field in ("task", "group", "prompt_type") and associated and q <= 0.05 and v > 0.5
    assert len(described["words"]) == s["n_clusters"]
    for c, group in described["majority_task"].items():  # group: "ioi/mixed", ...
        assert f"= {group.split('/')[0]}" in described["words"][int(c)]
