"""Aggregates of circuits evaluated once: subsets by example, per-group curves and routed
cross-faithfulness, against hand-computed ratios and against the same circuits evaluated
again by the model on each group's examples alone (an independent pass)."""

import numpy as np
import pytest
import torch
from conftest import random_examples

import auto_circuit_dcd as dcd
from auto_circuit_dcd.evaluation import FaithfulnessResult
from auto_circuit_dcd.metrics import cross_faithfulness
from auto_circuit_dcd.metrics.aggregate import (
    per_group,
    random_routing,
    routed_cross_faithfulness,
    subset,
)


def planted(mu_circuit, mu_full, mu_empty):
    mu_circuit = np.asarray(mu_circuit, dtype=float)
    n, k = mu_circuit.shape
    return FaithfulnessResult(
        fractions=np.linspace(0.5, 1.0, k), requested_counts=np.arange(k),
        achieved_counts=np.arange(k), f=np.zeros(k), mu_circuit=mu_circuit,
        mu_full=np.asarray(mu_full, float), mu_empty=np.asarray(mu_empty, float),
        example_ids=[f"e{i}" for i in range(n)], n_edges=10, groups=list("aabb"))


def test_a_subset_is_the_ratio_of_its_own_means():
    r = planted([[1, 2], [3, 4], [0, 2], [5, 6]], [4, 4, 2, 6], [0, 1, 0, 2])
    s = subset(r, [1, 3])
    # examples 1 and 3: mean mu = (4, 5), full 5, empty 1.5 -> f = (2.5/3.5, 3.5/3.5)
    np.testing.assert_allclose(s.f, [2.5 / 3.5, 1.0])
    assert s.example_ids == ["e1", "e3"] and s.groups == ["a", "b"] and s.n_examples == 2
    assert np.isnan(subset(r, []).f).all()
    np.testing.assert_array_equal(r.f, np.zeros(2))  # the original is left as it was


def test_per_group_splits_by_the_routing_and_gives_nan_to_an_empty_group():
    r = planted([[1, 2], [3, 4], [0, 2], [5, 6]], [4, 4, 2, 6], [0, 1, 0, 2])
    groups = per_group(r, [1, 0, 0, 1], [0, 1, 2])
    assert groups[0].example_ids == ["e1", "e2"] and groups[1].example_ids == ["e0", "e3"]
    # group 0: mean mu (1.5, 3), full 3, empty 0.5 -> (1/2.5, 2.5/2.5)
    np.testing.assert_allclose(groups[0].f, [1 / 2.5, 1.0])
    assert np.isnan(groups[2].f).all() and groups[2].n_examples == 0
    with pytest.raises(ValueError, match="3 labels for 4 test examples"):
        per_group(r, [0, 1, 0], [0, 1])


def test_routed_cross_faithfulness_equals_evaluating_each_group_alone(tiny_pm):
    """Oracle: cross_faithfulness with one loader per group, which runs the model again on
    each group's examples only; here the groups come from a routing of the whole set."""
    ex = random_examples(12, lengths=(6,), seed=3)
    routing = [i % 3 % 2 for i in range(12)]  # 8 examples to group 0, 4 to group 1
    n = len(tiny_pm.edges)
    g = torch.Generator().manual_seed(1)
    circuits = {0: torch.randn(n, generator=g), 1: torch.randn(n, generator=g)}
    whole = dcd.make_loader(ex, batch_size=4)
    results = dcd.evaluate_circuits(tiny_pm, whole, circuits, [0.1, 0.5, 1.0])
    by_id = dict(zip((e.id for e in ex), routing))
    aligned = [by_id[i] for i in results[0].example_ids]
    got = routed_cross_faithfulness(results, aligned, p=0.5)
    loaders = {c: dcd.make_loader([e for e in ex if by_id[e.id] == c], batch_size=4)
               for c in (0, 1)}
    want = cross_faithfulness(tiny_pm, circuits, loaders, p=0.5, edge_fractions=[0.1, 0.5, 1.0])
    assert got.row_labels == want.row_labels == [0, 1] and got.col_labels == [0, 1]
    np.testing.assert_allclose(got.matrix, want.matrix, atol=1e-5)
    np.testing.assert_allclose(got.cpr_matrix, want.cpr_matrix, atol=1e-5)
    assert abs(got.matrix[0, 1] - got.matrix[1, 0]) > 1e-3  # not symmetric: orientation matters


def test_random_routing_is_an_equal_split_fixed_by_its_seed():
    labels = ["k_random_0", "k_random_1", "k_random_2"]
    a = random_routing(11, labels, seed=4)
    assert sorted(a.count(lab) for lab in labels) == [3, 4, 4]
    assert a == random_routing(11, labels, seed=4) and a != random_routing(11, labels, seed=5)
    with pytest.raises(ValueError, match="no labels"):
        random_routing(3, [], seed=0)
