"""The per-example file: a round trip of real evaluation results with their names, the
numbers readable by name from the raw safetensors + JSON pair (no package code), and
refusals of results that are not one evaluation or of a damaged file."""

import json

import numpy as np
import pytest
import torch
from conftest import random_examples

import auto_circuit_dcd as dcd
from auto_circuit_dcd.errors import DamagedFileError
from auto_circuit_dcd.evaluation import evaluate_circuits
from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult, ratio_of_means
from auto_circuit_dcd.evaluation.per_example import (
    META_FILE,
    TENSORS_FILE,
    load_per_example,
    load_routings,
    save_per_example,
)
from auto_circuit_dcd.model.edges import edge_layout


@pytest.fixture(scope="module")
def evaluated(tiny_pm):
    loader = dcd.make_loader(random_examples(6, lengths=(6,), seed=3), batch_size=3)
    n = edge_layout(tiny_pm)[1].n_edges
    g = torch.Generator().manual_seed(0)
    circuits = {"single": torch.randn(n, generator=g), "cluster_0": torch.randn(n, generator=g)}
    return {r: evaluate_circuits(tiny_pm, loader, circuits, [0.05, 0.2, 1.0],
                                 selection="topn-prune", ranking=r)
            for r in ("abs", "signed")}


def test_round_trip_keeps_every_number_and_name(evaluated, tmp_path):
    ids = evaluated["abs"]["single"].example_ids
    save_per_example(tmp_path / "pe", evaluated, ids,
                     routings={"dcd": [0, 1, 0, -1, 1, 0], "k_random": list("abbaab")})
    back = load_per_example(tmp_path / "pe")
    assert list(back) == ["abs", "signed"] and list(back["abs"]) == ["single", "cluster_0"]
    for ranking, by_name in evaluated.items():
        for name, r in by_name.items():
            got = back[ranking][name]
            for field in ("fractions", "requested_counts", "achieved_counts", "mu_circuit",
                          "mu_full", "mu_empty"):
                np.testing.assert_array_equal(getattr(got, field), getattr(r, field))
            np.testing.assert_allclose(got.f, r.f, rtol=0, atol=1e-12)
            assert got.example_ids == r.example_ids and got.groups == r.groups
            assert (got.selection, got.ranking, got.n_edges) == ("topn-prune", ranking, r.n_edges)
            assert (got.metric, got.ablation) == (r.metric, r.ablation) and got.edge_sets is None
    assert load_routings(tmp_path / "pe") == {"dcd": [0, 1, 0, -1, 1, 0],
                                              "k_random": list("abbaab")}


def test_the_file_is_readable_by_name_without_the_package(evaluated, tmp_path):
    from safetensors.numpy import load_file

    save_per_example(tmp_path / "pe", evaluated)
    meta = json.loads((tmp_path / "pe" / META_FILE).read_text())
    arrays = load_file(str(tmp_path / "pe" / TENSORS_FILE))
    keys = meta["tensors"]["signed"]
    r = evaluated["signed"]["cluster_0"]
    mu = arrays[keys["circuits"]["cluster_0"]["mu"]]
    assert meta["dims"]["mu"] == ["example", "fraction"]
    assert meta["example_ids"] == list(r.example_ids) and meta["fractions"] == [0.05, 0.2, 1.0]
    # the ratio of means recomputed from the raw arrays is the evaluation's f
    f = ((mu.mean(0) - arrays[keys["mu_empty"]].mean())
         / (arrays[keys["mu_full"]].mean() - arrays[keys["mu_empty"]].mean()))
    np.testing.assert_allclose(f, r.f, rtol=1e-12)
    assert arrays[keys["circuits"]["cluster_0"]["achieved_counts"]].tolist() == \
        r.achieved_counts.tolist()


def _result(mu, full, empty, ids):
    mu = np.asarray(mu, float)
    return FaithfulnessResult(
        fractions=np.array([0.5, 1.0]), requested_counts=np.array([1, 2]),
        achieved_counts=np.array([1, 2]), f=ratio_of_means(mu, full, empty), mu_circuit=mu,
        mu_full=np.asarray(full, float), mu_empty=np.asarray(empty, float), example_ids=ids,
        n_edges=2)


def test_results_of_other_evaluations_and_bad_routings_are_refused(tmp_path):
    a = _result([[1, 2], [3, 4]], [4, 5], [0, 1], ["x", "y"])
    with pytest.raises(ValueError, match="other example ids"):
        save_per_example(tmp_path / "pe", {"abs": {"a": a}}, ["y", "x"])
    other = _result([[1, 2], [3, 4]], [4, 6], [0, 1], ["x", "y"])
    with pytest.raises(ValueError, match="not one evaluation"):
        save_per_example(tmp_path / "pe", {"abs": {"a": a, "b": other}})
    with pytest.raises(ValueError, match="2 examples"):
        save_per_example(tmp_path / "pe", {"abs": {"a": a}}, routings={"dcd": [0]})
    with pytest.raises(ValueError, match="no results"):
        save_per_example(tmp_path / "pe", {})
    # numpy ids and labels are stored as plain JSON numbers
    b = _result([[1, 2], [3, 4]], [4, 5], [0, 1], [np.int64(7), np.int64(8)])
    save_per_example(tmp_path / "ok", {"abs": {"b": b}}, routings={"dcd": np.array([1, 0])})
    assert load_per_example(tmp_path / "ok")["abs"]["b"].example_ids == [7, 8]
    assert load_routings(tmp_path / "ok") == {"dcd": [1, 0]}


def test_a_damaged_file_is_refused(tmp_path):
    a = _result([[1, 2], [3, 4]], [4, 5], [0, 1], ["x", "y"])
    save_per_example(tmp_path / "pe", {"abs": {"a": a}})
    from safetensors.torch import load_file, save_file

    path = tmp_path / "pe" / TENSORS_FILE
    tensors = load_file(str(path))
    tensors["abs/a/mu"][0, 0] += 1.0
    save_file(tensors, str(path))
    with pytest.raises(DamagedFileError, match="checksum"):
        load_per_example(tmp_path / "pe")
