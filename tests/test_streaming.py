"""Chunked reading of a saved matrix gives what the in-memory path gives."""

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

import auto_circuit_dcd as dcd
from auto_circuit_dcd.attribution.streaming import (
    cluster_means_in_chunks,
    iter_row_chunks,
    reduce_in_chunks,
)


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 10, size=(3, 200))
    truth = np.repeat([0, 1, 2], [40, 25, 12])
    X = centers[truth] + rng.normal(0, 1, size=(len(truth), 200))
    A = dcd.AttributionMatrix(torch.tensor(X, dtype=torch.float32), [f"e{i}" for i in range(200)])
    A.save(tmp_path / "m")
    return tmp_path / "m", A, truth


def test_chunks_cover_every_row_in_order(saved):
    path, A, _ = saved
    rows = np.vstack([r for _, r in iter_row_chunks(path, chunk_rows=10)])
    np.testing.assert_array_equal(rows, A.scores.double().numpy())


def test_chunked_pca_then_clustering_recovers_the_planted_groups(saved):
    path, A, truth = saved
    Z = reduce_in_chunks(path, n_components=5, chunk_rows=11)  # last chunk short: merged
    assert Z.shape == (77, 5)
    full = A.scores.double().numpy()
    full = full - full.mean(0)
    _, s, _ = np.linalg.svd(full, full_matrices=False)
    # the projection keeps the leading variance of the exact PCA
    np.testing.assert_allclose(np.sort(np.linalg.svd(Z, compute_uv=False))[::-1][:2], s[:2],
                               rtol=1e-2)
    gd = dcd.GroupedDiscovery(reduction="none", max_clusters=5, random_state=0).fit(Z)
    assert adjusted_rand_score(truth, gd.labels_) == 1.0
    means = cluster_means_in_chunks(path, gd.labels_, chunk_rows=7)
    for c, mean in means.items():
        torch.testing.assert_close(mean, A.mean(np.flatnonzero(gd.labels_ == c)))


def test_bad_inputs_are_explained(saved, tmp_path):
    path, _, _ = saved
    with pytest.raises(ValueError, match="fewer rows than n_components"):
        reduce_in_chunks(path, n_components=100)
    with pytest.raises(ValueError, match="labels"):
        cluster_means_in_chunks(path, [0] * 10)
    with pytest.raises(FileNotFoundError, match="AttributionMatrix.save"):
        next(iter_row_chunks(tmp_path / "nothing"))
