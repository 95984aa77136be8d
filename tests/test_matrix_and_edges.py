"""AttributionMatrix storage and conversion; the fixed edge order across processes."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from auto_circuit.prune import run_circuits
from auto_circuit.types import PatchType
from conftest import random_examples

import auto_circuit_dcd as dcd
from auto_circuit_dcd.data import make_loader
from auto_circuit_dcd.model.edges import edge_layout, sorted_edges

ORDER_SCRIPT = """
import hashlib, torch, auto_circuit_dcd as dcd
torch.set_num_threads(1)
pm = dcd.make_patchable(dcd.load_model("tiny-random"))
names = [e.name for e in dcd.sorted_edges(pm)]
print(hashlib.sha256("|".join(names).encode()).hexdigest(), len(names))
"""


@pytest.mark.slow
def test_edge_order_is_identical_across_processes():
    outs = set()
    for seed in ("1", "2"):  # different hash seeds reorder auto-circuit's sets
        env = {"PYTHONHASHSEED": seed, "HF_HUB_OFFLINE": "1", "PATH": ""}
        res = subprocess.run([sys.executable, "-c", ORDER_SCRIPT], capture_output=True,
                             text=True, env=env, timeout=300, check=True)
        outs.add(res.stdout.strip().splitlines()[-1])
    assert len(outs) == 1


def test_layout_agrees_with_auto_circuits_own_edge_lookup(tiny_pm):
    names, layout = edge_layout(tiny_pm)
    assert len(names) == tiny_pm.n_edges
    vector = torch.arange(len(names), dtype=torch.float32)
    ps = layout.to_prune_scores(vector)
    for j, edge in enumerate(sorted_edges(tiny_pm)):
        assert float(edge.prune_score(ps)) == j  # auto-circuit's own indexing
    torch.testing.assert_close(layout.from_prune_scores(ps), vector)


def test_save_and_load_round_trip(tiny_pm, tmp_path):
    loader = make_loader(random_examples(5, seed=3, groups=["x", "y"]), batch_size=2)
    A = dcd.attribute(tiny_pm, loader, progress=False)
    A.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "attribution.json").read_text())
    assert meta["edge_names"] == A.edge_names and meta["meta"]["method"] == "eap"
    B = dcd.AttributionMatrix.load(tmp_path / "m")
    assert torch.equal(A.scores, B.scores)
    assert (B.edge_names, B.example_ids, B.groups) == (A.edge_names, A.example_ids, A.groups)
    for k, v in A.prune_scores([0, 2]).items():
        torch.testing.assert_close(B.prune_scores([0, 2])[k], v)


def test_prune_scores_are_the_row_mean_and_run_in_auto_circuit(tiny_pm):
    loader = make_loader(random_examples(4, lengths=(6,), seed=4), batch_size=4)
    A = dcd.attribute(tiny_pm, loader, progress=False)
    ps = A.prune_scores(rows=[1, 3])
    expected = (A.scores[1] + A.scores[3]) / 2
    torch.testing.assert_close(A.layout.from_prune_scores(ps), expected)
    n = tiny_pm.n_edges
    outs = run_circuits(tiny_pm, loader, [0, 10, n], ps, patch_type=PatchType.TREE_PATCH)
    (batch,) = list(loader)
    model = tiny_pm.wrapped_model
    with torch.no_grad():
        clean, corrupt = model(batch.clean)[:, -1], model(batch.corrupt)[:, -1]
    # no edge kept: every edge takes its corrupted value, i.e. the corrupted run; all kept:
    # the clean run (float32 forwards of one model in one process: default tolerances)
    torch.testing.assert_close(outs[0][batch.key], corrupt)
    torch.testing.assert_close(outs[n][batch.key], clean)
    # 10 edges: auto-circuit's own threshold on our PruneScores picks the circuit that our
    # evaluation picks from the same scores as a vector
    res = dcd.faithfulness(tiny_pm, loader, ps, edge_fractions=[10 / n], metric="max_diff")
    assert res.achieved_counts.tolist() == [10]
    logits = outs[10][batch.key]
    right = logits.gather(1, batch.answers).squeeze(1)
    wrong = logits.gather(1, batch.wrong_answers).max(1).values
    np.testing.assert_allclose(res.mu_circuit[:, 0], (right - wrong).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_plain_tensor_matrix_needs_the_model_for_prune_scores(tiny_pm):
    names = [e.name for e in sorted_edges(tiny_pm)]
    A = dcd.AttributionMatrix(torch.randn(3, len(names)), names)
    assert A.example_ids == [0, 1, 2] and A.groups is None
    with pytest.raises(ValueError, match="model=pm"):
        A.prune_scores()
    ps = A.prune_scores(model=tiny_pm)
    assert set(ps) == {w.module_name for w in tiny_pm.dest_wrappers}


@pytest.mark.parametrize("kwargs, message", [
    (dict(scores=torch.zeros(2, 3), edge_names=["a", "b"]), "2 edge names for 3"),
    (dict(scores=torch.zeros(2, 2), edge_names=["a", "a"]), "unique"),
    (dict(scores=torch.zeros(2, 2), edge_names=["a", "b"], groups=["g"]), "1 groups for 2"),
    (dict(scores=torch.zeros(4), edge_names=["a"]), "2-D"),
])
def test_inconsistent_matrices_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dcd.AttributionMatrix(**kwargs)


def test_empty_row_selection_is_refused():
    A = dcd.AttributionMatrix(torch.zeros(2, 2), ["a", "b"])
    with pytest.raises(ValueError, match="zero rows"):
        A.mean([])


def _saved(tiny_pm, tmp_path, seed, n=4):
    loader = make_loader(random_examples(n, lengths=(6,), seed=seed), batch_size=n)
    return dcd.attribute(tiny_pm, loader, progress=False)


def test_an_interrupted_save_never_pairs_new_scores_with_old_ids(tiny_pm, tmp_path,
                                                                 monkeypatch):
    from auto_circuit_dcd import files

    old = _saved(tiny_pm, tmp_path, seed=1)
    old.save(tmp_path / "m")
    new = _saved(tiny_pm, tmp_path, seed=2)
    new.example_ids = [f"new-{i}" for i in range(4)]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "write_text", killed)  # killed after the scores, before the JSON
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="interrupted"):
        dcd.AttributionMatrix.load(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["scores.safetensors"]
    monkeypatch.undo()
    new.save(tmp_path / "m")
    back = dcd.AttributionMatrix.load(tmp_path / "m")
    assert back.example_ids == new.example_ids and torch.equal(back.scores, new.scores)


@pytest.mark.parametrize("scores, message", [
    (torch.zeros(4, 3, dtype=torch.int64), "int64 scores"),
    (torch.zeros(3, 3), "shape \\[3, 3\\], the JSON says \\[4, 3\\]"),
    (torch.zeros(4, 3, dtype=torch.float64), "dtype float64, the JSON says float32"),
    (torch.ones(4, 3), "checksum"),
])
def test_load_checks_the_scores_against_their_json(tmp_path, scores, message):
    from safetensors.torch import save_file

    from auto_circuit_dcd.errors import DamagedFileError

    dcd.AttributionMatrix(torch.zeros(4, 3), ["a", "b", "c"]).save(tmp_path)
    save_file({"scores": scores}, str(tmp_path / "scores.safetensors"))
    with pytest.raises(DamagedFileError, match=message):
        dcd.AttributionMatrix.load(tmp_path)


def test_edge_layout_is_kept_per_model_until_its_edge_set_changes(tiny_pm):
    """The layout is computed once per model; callers get their own list of names; a new
    edge set (even an equal one) is sorted and checked again."""
    names, layout = edge_layout(tiny_pm)
    names.append("not an edge")
    again_names, again = edge_layout(tiny_pm)
    assert again is layout
    assert again_names == [e.name for e in sorted_edges(tiny_pm)]
    saved = tiny_pm.edges
    try:
        tiny_pm.edges = set(saved)
        fresh_names, fresh = edge_layout(tiny_pm)
        assert fresh is not layout and fresh == layout and fresh_names == again_names
    finally:
        tiny_pm.edges = saved
