"""Claim 2 in miniature on the toy model with two planted mechanisms (IOI-like, induction).

The circuit found on one task alone is unfaithful on the other, while one circuit found on
the mixture is faithful on both. The toy graph has 81 edges: 5% is 4 edges, too few for a
complete input-to-logit path of the IOI mechanism (its own f is 0 there), so the table is
read at p = 20% (16 edges), the smallest MIB fraction where both tasks' own circuits work.
"""

import json

import numpy as np
import pytest

import auto_circuit_dcd as dcd

pytestmark = pytest.mark.slow

P = 0.2


def _toy():
    try:
        from auto_circuit_dcd.toy import toy_dataset_path

        model = dcd.load_model("toy-two-task")
        paths = {name: toy_dataset_path(name) for name in ("ioi", "induction", "mixed")}
    except Exception as err:  # the toy model is optional in a checkout
        pytest.skip(f"toy model not available: {err}")
    return model, paths


def test_single_task_circuits_do_not_transfer_but_mixture_circuit_does():
    from auto_circuit_dcd.evaluation import MIB_GRID
    from auto_circuit_dcd.metrics import cross_faithfulness, edge_overlap

    model, paths = _toy()
    pm = None
    train, test = {}, {}
    for name in ("ioi", "induction", "mixed"):
        pm, train[name], test[name] = dcd.prepare(pm or model, paths[name], batch_size=32)
    circuits = {name: dcd.attribute(pm, train[name], method="eap", progress=False).prune_scores()
                for name in ("ioi", "induction", "mixed")}
    cross = cross_faithfulness(pm, circuits, {"ioi": test["ioi"], "induction": test["induction"]},
                               p=P, edge_fractions=MIB_GRID)
    m = cross.matrix
    print(json.dumps(cross.to_dict(), indent=1))
    print("edge overlap ioi/induction:",
          edge_overlap(*(dcd.Circuit.from_prune_scores(circuits[t], pm)
                         for t in ("ioi", "induction"))))
    ioi, ind, mixed = 0, 1, 2
    # at p = 5% (4 of 81 edges): each task's circuit is well below on the other task
    at5 = cross_faithfulness(pm, circuits, {"ioi": test["ioi"], "induction": test["induction"]},
                             p=0.05).matrix
    assert at5[ioi, 1] < at5[ind, 1] - 0.3 and at5[ind, 0] < at5[ioi, 0] - 0.2
    # each task's own circuit is faithful on its task ...
    assert m[ioi, 0] > 0.7 and m[ind, 1] > 0.7
    # ... and far less on the other task
    assert m[ioi, 1] < m[ind, 1] - 0.5
    assert m[ind, 0] < m[ioi, 0] - 0.5
    # one circuit of the mixture is faithful on both
    assert m[mixed, 0] > 0.7 and m[mixed, 1] > 0.7
    assert np.all(np.isfinite(m))
