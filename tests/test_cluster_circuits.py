"""One Circuit per cluster (``cluster_circuits``): the mean of its rows for the EAP family,
auto-circuit's own algorithm on the cluster's examples otherwise; noise gets none."""

import numpy as np
import pytest
import torch
from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT
from conftest import random_examples

import auto_circuit_dcd as dcd
from auto_circuit_dcd.attribution.matrix import AttributionMatrix
from auto_circuit_dcd.circuits.graph import edge_graph
from auto_circuit_dcd.data import make_loader
from auto_circuit_dcd.model.edges import edge_layout


@pytest.fixture(scope="module")
def rows(tiny_pm):
    """Random rows over the tiny model's edges, with its layout, and planted labels."""
    names, layout = edge_layout(tiny_pm)
    scores = torch.randn(9, len(names), generator=torch.Generator().manual_seed(3))
    A = AttributionMatrix(scores, names, example_ids=[f"e{i}" for i in range(9)], layout=layout)
    return A, np.array([1, 0, 1, -1, 0, 2, 1, 0, -1])


def test_each_cluster_circuit_is_the_mean_of_its_rows(rows, tiny_pm):
    A, labels = rows
    circuits = dcd.cluster_circuits(A, labels)
    assert list(circuits) == [0, 1, 2]  # noise (-1) has none; label order
    for c, circuit in circuits.items():
        members = np.flatnonzero(labels == c)
        by_hand = A.scores[members].double().mean(0).float()  # as A.prune_scores keeps it
        assert isinstance(circuit, dcd.Circuit)
        torch.testing.assert_close(circuit.scores, by_hand.double(), rtol=0, atol=0)
        assert circuit.edge_names == tuple(A.edge_names) and circuit.size == A.n_edges
        assert circuit.graph.same_as(edge_graph(tiny_pm))
        assert circuit.meta == {"label": f"cluster_{c}", "base_algo": "eap"}
    # what auto-circuit receives: the mean's PruneScores
    ps = circuits[1].to_prune_scores()
    ref = A.prune_scores(rows=np.flatnonzero(labels == 1))
    assert all(torch.equal(ps[k], ref[k]) for k in ref)


def test_plain_rows_take_their_edges_from_the_model(rows, tiny_pm):
    A, labels = rows
    X = A.to_numpy()
    with pytest.raises(ValueError, match="no edge layout.*model=pm"):
        dcd.cluster_circuits(X, labels)
    from_model = dcd.cluster_circuits(X, labels, model=tiny_pm)
    np.testing.assert_allclose(from_model[2].scores.numpy(), X[labels == 2].mean(0))
    with pytest.raises(ValueError, match="8 labels for 9 rows"):
        dcd.cluster_circuits(A, labels[:8])
    with pytest.raises(ValueError, match="base_algo must be one of"):
        dcd.cluster_circuits(A, labels, base_algo="nope")
    with pytest.raises(ValueError, match="pass model= and dataloader="):
        dcd.cluster_circuits(A, labels, base_algo="ACDC")


def test_acdc_runs_on_each_clusters_examples_only(tiny_pm):
    """Oracle: auto-circuit's ACDC on one batch holding exactly the cluster's examples;
    the edges it never removed (inf) become twice the largest finite |score|."""
    examples = random_examples(8, lengths=(6,), seed=5)
    loader = make_loader(examples, batch_size=3)
    A = dcd.attribute(tiny_pm, loader, progress=False)
    labels = np.array([0, 1, 0, 1, 1, 0, -1, 0])
    circuits = dcd.cluster_circuits(A, labels, base_algo="ACDC", model=tiny_pm,
                                    dataloader=loader)
    _, layout = edge_layout(tiny_pm)
    assert list(circuits) == [0, 1]
    for c, circuit in circuits.items():
        ids = [A.example_ids[i] for i in np.flatnonzero(labels == c)]
        ref = PRUNE_ALGO_DICT["ACDC"].func(tiny_pm, loader.subset(ids, batch_size=len(ids)), None)
        flat_ref = layout.from_prune_scores(ref).double()
        inf = torch.isinf(flat_ref)
        assert inf.any() and (~inf).any()
        assert torch.equal(circuit.scores[~inf], flat_ref[~inf])
        assert torch.all(circuit.scores[inf] == 2 * flat_ref[~inf].abs().max())
        assert circuit.meta["base_algo"] == "ACDC"
