"""Non-EAP base algorithms per cluster (ACDC), and DCD as auto-circuit PruneAlgos."""

import types
import warnings

import numpy as np
import pytest
import torch
from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT, PruneAlgo, run_prune_algos
from conftest import random_examples

import auto_circuit_dcd as dcd
from auto_circuit_dcd import keys
from auto_circuit_dcd.cluster import GroupedDiscovery, registry_entries
from auto_circuit_dcd.data import make_loader


@pytest.fixture(scope="module")
def scored(tiny_pm):
    examples = random_examples(10, lengths=(6,), seed=5)
    loader = make_loader(examples, batch_size=3)
    return dcd.attribute(tiny_pm, loader, progress=False), loader


def _acdc_circuits(gd, A, pm, loader, algo="ACDC"):
    """One circuit per cluster of ``gd``, by ``algo`` on that cluster's examples."""
    circuits = dcd.cluster_circuits(A, gd.labels_, base_algo=algo, model=pm, dataloader=loader)
    return {c: circuit.to_prune_scores() for c, circuit in circuits.items()}


def test_acdc_runs_per_cluster_on_that_clusters_examples(tiny_pm, scored):
    A, loader = scored
    gd = GroupedDiscovery(n_clusters=2, random_state=0).fit(A)
    circuits = _acdc_circuits(gd, A, tiny_pm, loader)
    assert set(circuits) == {0, 1}
    for c, ps in circuits.items():
        ids = [A.example_ids[i] for i in np.flatnonzero(gd.labels_ == c)]
        # oracle: auto-circuit's ACDC on one batch holding exactly this cluster
        ref = PRUNE_ALGO_DICT["ACDC"].func(tiny_pm, loader.subset(ids, batch_size=len(ids)), None)
        assert set(ps) == set(ref)
        # ACDC scores the edges it kept inf; those become twice the largest finite |score|
        flat_ref = torch.cat([ref[k].flatten() for k in sorted(ref)])
        flat = torch.cat([ps[k].flatten() for k in sorted(ref)])
        inf = torch.isinf(flat_ref)
        assert inf.any() and (~inf).any()
        assert torch.equal(flat[~inf], flat_ref[~inf])
        assert torch.all(flat[inf] == 2 * flat_ref[~inf].abs().max())
        dcd.Circuit.from_prune_scores(ps, tiny_pm)  # finite: a circuit can be built from it


def test_finite_scores_preserve_every_order_by_hand():
    from auto_circuit_dcd.cluster.circuits import finite_scores

    inf = float("inf")
    ps = {"a": torch.tensor([[inf, 1.0, -2.0]]), "b": torch.tensor([-inf, 0.5, 0.0])}
    out = finite_scores(ps)
    assert out["a"].tolist() == [[4.0, 1.0, -2.0]] and out["b"].tolist() == [-4.0, 0.5, 0.0]
    assert ps["a"][0, 0] == inf  # input left as it was
    before = torch.cat([ps["a"].flatten(), ps["b"]])
    after = torch.cat([out["a"].flatten(), out["b"]])
    for key in (lambda x: x, torch.abs):  # signed and |score| orders, ties included
        kb, ka = key(before), key(after)
        assert torch.equal(kb[:, None] > kb[None, :], ka[:, None] > ka[None, :])
        assert torch.equal(kb[:, None] == kb[None, :], ka[:, None] == ka[None, :])
    assert finite_scores({"a": torch.tensor([inf, 0.0])})["a"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="NaN"):
        finite_scores({"a": torch.tensor([float("nan")])})


def test_prune_algo_object_as_base_algo_and_length_warning(tiny_pm):
    examples = random_examples(6, lengths=(6, 7), seed=6)
    loader = make_loader(examples, batch_size=3)
    A = dcd.attribute(tiny_pm, loader, progress=False)
    gd = GroupedDiscovery(n_clusters=1).fit(A)
    with pytest.warns(UserWarning, match="uses only the first batch"):
        circuits = _acdc_circuits(gd, A, tiny_pm, loader, PRUNE_ALGO_DICT["ACDC"])
    assert set(circuits) == {0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _acdc_circuits(GroupedDiscovery(n_clusters=2, random_state=0).fit(A), A, tiny_pm,
                       loader, "Random")


def test_registry_entries_are_prune_algos_under_keys_constants():
    entries = registry_entries()
    assert set(entries) == {keys.ALGO_LARGEST_CLUSTER_EAP, keys.ALGO_LARGEST_CLUSTER_EAP_IG}
    for key, algo in entries.items():
        assert isinstance(algo, PruneAlgo) and algo.key == key
        assert key.startswith(keys.ALGO_PREFIX)


def test_register_adds_is_idempotent_and_refuses_foreign_keys():
    from auto_circuit_dcd.registry import RegistrationError, register

    before = dict(PRUNE_ALGO_DICT.items())
    try:
        added = register(tasks=False, metrics=False)
        assert set(added["algos"]) == set(registry_entries())
        assert PRUNE_ALGO_DICT[keys.ALGO_LARGEST_CLUSTER_EAP].key == keys.ALGO_LARGEST_CLUSTER_EAP
        register(tasks=False, metrics=False)  # again: fine
        assert len(PRUNE_ALGO_DICT) == len(before) + 2
        foreign = PruneAlgo(key=keys.ALGO_LARGEST_CLUSTER_EAP, name="other", func=lambda *a: {})
        PRUNE_ALGO_DICT[keys.ALGO_LARGEST_CLUSTER_EAP] = foreign
        with pytest.raises(RegistrationError, match="refusing to overwrite"):
            register(tasks=False, metrics=False)
        assert PRUNE_ALGO_DICT[keys.ALGO_LARGEST_CLUSTER_EAP] is foreign
    finally:
        PRUNE_ALGO_DICT.clear()
        PRUNE_ALGO_DICT.update(before)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # duplicate rows
def test_run_prune_algos_runs_the_largest_cluster_algo(tiny_pm):
    """Planted: 7 copies of one prompt and 3 of another. The largest cluster is the 7
    copies, so its circuit is that prompt's own row; oracle: auto-circuit's EAP mask
    gradient on that prompt alone (one wrong answer: max_diff = avg_diff)."""
    from dataclasses import replace

    from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores

    p, q = random_examples(2, lengths=(6,), seed=12, n_wrong=1)
    examples = [replace(p, id=i) for i in range(7)] + [replace(q, id=7 + i) for i in range(3)]
    loader = make_loader(examples, batch_size=4)
    algo = registry_entries()[keys.ALGO_LARGEST_CLUSTER_EAP]
    task = types.SimpleNamespace(key="tiny", name="tiny", model=tiny_pm, train_loader=loader,
                                 true_edges=None)
    ps = run_prune_algos([task], [algo])["tiny"][keys.ALGO_LARGEST_CLUSTER_EAP]
    ref = mask_gradient_prune_scores(tiny_pm, make_loader([p], 1), None, grad_function="logit",
                                     answer_function="avg_diff", mask_val=0.0)
    assert set(ps) == set(ref)
    for name in ps:  # float32 gradients, same model: the attribution tests' tolerance
        torch.testing.assert_close(ps[name], ref[name], rtol=1e-4, atol=1e-6)
    other = mask_gradient_prune_scores(tiny_pm, make_loader([q], 1), None, grad_function="logit",
                                       answer_function="avg_diff", mask_val=0.0)
    assert any(not torch.allclose(ps[n], other[n], atol=1e-4) for n in ps)
