"""Slow: DCD on the toy two-task model's mixed dataset recovers the two tasks."""

import pytest
from sklearn.metrics import adjusted_rand_score

import auto_circuit_dcd as dcd
from auto_circuit_dcd.cluster import GroupedDiscovery

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy():
    try:
        from auto_circuit_dcd.toy import toy_dataset_path

        model = dcd.load_model("toy-two-task")
    except ImportError as err:  # the toy model ships with the package once built
        pytest.skip(f"toy-two-task is not available: {err}")
    return dcd.prepare(model, toy_dataset_path("mixed"), batch_size=32)


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_dcd_separates_the_two_tasks(toy, method):
    pm, train, _ = toy
    A = dcd.attribute(pm, train, method=method, progress=False)
    assert A.groups is not None and len(set(A.groups)) == 2
    gd = GroupedDiscovery(random_state=0).fit(A)
    assert adjusted_rand_score(A.groups, gd.labels_) >= 0.9
    assert sorted(gd.cluster_sizes_) == list(range(gd.n_clusters_))
