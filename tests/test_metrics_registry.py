"""The faithfulness PruneMetric inside auto-circuit's own measure_prune_metrics."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import random_examples

import auto_circuit_dcd as dcd
from auto_circuit_dcd import keys
from auto_circuit_dcd.evaluation import faithfulness, registry_entries
from auto_circuit_dcd.model.edges import edge_layout


def test_registry_entries_are_prune_metrics():
    from auto_circuit.metrics.prune_metrics.prune_metrics import PruneMetric

    entries = registry_entries()
    assert set(entries) == {keys.METRIC_FAITHFULNESS_MAX_DIFF, keys.METRIC_FAITHFULNESS_AVG_DIFF}
    assert all(isinstance(m, PruneMetric) and m.key == k for k, m in entries.items())
    assert all(k.startswith(keys.METRIC_PREFIX) for k in entries)


def test_measure_prune_metrics_runs_and_agrees(tiny_pm, monkeypatch):
    from auto_circuit.metrics.prune_metrics.measure_prune_metrics import measure_prune_metrics
    from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT
    from auto_circuit.tasks import TASK_DICT
    from auto_circuit.types import AblationType, PatchType

    loader = dcd.make_loader(random_examples(8, lengths=(6, 7), seed=4), batch_size=4)
    task = SimpleNamespace(key="tiny test task", name="tiny test task", model=tiny_pm,
                           test_loader=loader, true_edge_count=None, token_circuit=False)
    monkeypatch.setitem(TASK_DICT, task.key, task)
    n = len(tiny_pm.edges)
    _, layout = edge_layout(tiny_pm)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    scores = torch.linspace(0.1, 1.0, n)[perm]
    ps = layout.to_prune_scores(scores)
    algo = "Random"
    assert algo in PRUNE_ALGO_DICT
    metrics = list(registry_entries().values())
    counts = [0, 5, 23, n]
    out = measure_prune_metrics([AblationType.RESAMPLE], metrics, {task.key: {algo: ps}},
                                PatchType.TREE_PATCH, test_edge_counts=counts)
    got = dict(out[AblationType.RESAMPLE][keys.METRIC_FAITHFULNESS_MAX_DIFF][task.key][algo])
    assert sorted(got) == counts
    expected = faithfulness(tiny_pm, loader, scores, edge_fractions=[c / n for c in counts])
    np.testing.assert_allclose([got[c] for c in counts], expected.f, atol=1e-5)
    assert got[0] == pytest.approx(0.0, abs=1e-5) and got[n] == pytest.approx(1.0, abs=1e-5)
    avg = dict(out[AblationType.RESAMPLE][keys.METRIC_FAITHFULNESS_AVG_DIFF][task.key][algo])
    expected_avg = faithfulness(tiny_pm, loader, scores, edge_fractions=[c / n for c in counts],
                                metric="avg_diff")
    np.testing.assert_allclose([avg[c] for c in counts], expected_avg.f, atol=1e-5)


def test_register_adds_metrics():
    from auto_circuit.metrics.prune_metrics.prune_metrics import PRUNE_METRIC_DICT

    added = dcd.register(tasks=False, algos=False, metrics=True)
    try:
        assert keys.METRIC_FAITHFULNESS_MAX_DIFF in added["metrics"]
        assert PRUNE_METRIC_DICT[keys.METRIC_FAITHFULNESS_MAX_DIFF].key == \
            keys.METRIC_FAITHFULNESS_MAX_DIFF
        dcd.register(tasks=False, algos=False, metrics=True)  # idempotent
    finally:
        for k in added["metrics"]:
            PRUNE_METRIC_DICT.pop(k, None)
