"""The main job against the faults and inputs a real run meets: arguments checked before
anything loads, one-line user errors and tracebacks for bugs, nothing left behind by a
failed run, a locked output folder, dropped rows, noise, partial labels, changed labels."""

import math
import os

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from test_pipeline import RUN, loader_of, run_tiny, saved_circuits, tiny_prompts, write

import auto_circuit_dcd as dcd
from auto_circuit_dcd.cli import main
from auto_circuit_dcd.model import load as model_load


@pytest.fixture
def no_loading(monkeypatch):
    """Any model load fails the test: for checks that must come before loading."""
    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(model_load, "load_model", refuse)


@pytest.fixture(scope="module")
def tiny_pm():
    return dcd.make_patchable(dcd.load_model("tiny-random"))


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ----------------------------------------------------------------------- arguments
@pytest.mark.parametrize("extra, message", [
    (["--n", "-5"], "--n must be a whole number of at least 1, got -5"),
    (["--n", "0"], "--n must be a whole number of at least 1, got 0"),
    (["--clusterer", "foo"], "clusterer must be one of"),
    (["--circuit-method", "nope"], "--circuit-method: must be eap or eap-ig or a key of"),
    (["--batch-size", "0"], "--batch-size must be"),
    (["--test-fraction", "1.5"], "--test-fraction must lie strictly between 0 and 1"),
    (["--edge-fractions", "0.1,0.2"], r"lacks 0.05, where cross-faithfulness is taken"),
    (["--nan-tolerance", "2"], "--nan-tolerance is a share"),
    (["--mib-parity", "--ranking", "abs"], "MIB parity ranks by signed score for CPR"),
    (["--mib-parity", "--cmd", "one-sided"], "MIB parity's CMD is two-sided"),
    (["--stability-resamples", "-1"], "--stability-resamples must be a whole number"),
])
def test_bad_arguments_are_refused_before_anything_loads(tmp_path, capsys, no_loading, extra,
                                                         message):
    data = write(tmp_path / "d.json", tiny_prompts(8))
    out = tmp_path / "new" / "out"
    args = ["run", "--model", "tiny-random", "--dataset", str(data), "--out", str(out)]
    assert main(args + extra) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "new").exists()


def test_an_out_folder_that_cannot_be_written_is_refused_first(tmp_path, capsys, no_loading):
    data = write(tmp_path / "d.json", tiny_prompts(8))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["run", "--model", "tiny-random", "--dataset", str(data), "--out"]
    assert main(args + [str(blocker / "out")]) == 2
    assert "is a file, not a folder" in one_line_error(capsys)
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(args + [str(locked / "out")]) == 2
        assert "permission denied" in one_line_error(capsys)


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path, capsys):
    from auto_circuit_dcd.files import folder_lock

    data = write(tmp_path / "d.json", tiny_prompts(8))
    out = tmp_path / "out"
    with folder_lock(out, what="run"):
        assert main(RUN + ["--dataset", str(data), "--out", str(out)]) == 2
        assert f"{out} is in use by another run (process {os.getpid()})" in \
            one_line_error(capsys)
    assert out.exists()  # the other run's folder is left alone


def test_a_failed_run_leaves_no_new_out_folder(tmp_path, capsys):
    bad = write(tmp_path / "bad.json", [{"clean": [1, 2], "corrupt": [1, 2, 3],
                                         "answers": [1], "wrong_answers": [2]}])
    out = tmp_path / "new" / "out"
    assert main(RUN + ["--dataset", str(bad), "--out", str(out)]) == 2
    assert "different token lengths" in one_line_error(capsys)
    assert not (tmp_path / "new").exists()


def test_a_run_failing_after_attribution_keeps_the_cache_to_resume(tmp_path, capsys,
                                                                    monkeypatch):
    from auto_circuit_dcd.cluster import GroupedDiscovery

    def broken(self, *a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(GroupedDiscovery, "fit", broken)
    data = write(tmp_path / "d.json", tiny_prompts(12))
    out = tmp_path / "out"
    assert main(RUN + ["--dataset", str(data), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    # a bug: the traceback, then where to report it
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert "this is a bug in auto-circuit-dcd" in err.strip().splitlines()[-1]
    # every attribution precedes clustering: EAP rows of both splits and the circuit
    # method's (EAP-IG) training rows are all kept for the rerun
    assert len(list((out / "cache").glob("attribution-*/rows.safetensors"))) == 3


def test_a_prompt_longer_than_the_context_is_named_with_the_limit(tmp_path, capsys):
    prompts = tiny_prompts(10)
    prompts[3]["clean"] = prompts[3]["clean"] * 6  # 36 tokens; the model's n_ctx is 32
    prompts[3]["corrupt"] = prompts[3]["corrupt"] * 6
    data = write(tmp_path / "d.json", prompts)
    assert main(RUN + ["--dataset", str(data), "--out", str(tmp_path / "out")]) == 2
    line = one_line_error(capsys)
    assert "prompt(s) [3] are 36 tokens long" in line and "context of 32 tokens" in line


# ----------------------------------------------------------------------- rows and routes
POISON = 49


def split_prompts():
    """Pre-tokenized prompts with their own splits; token 49 only in test prompt 'p-21'."""
    prompts = tiny_prompts(24, lo=3, hi=49)
    for i, p in enumerate(prompts):
        p["id"] = f"p-{i}"
        p["split"] = "test" if i >= 18 else "train"
    prompts[21]["clean"][5] = POISON
    prompts[21]["corrupt"][5] = POISON
    return prompts


def test_a_dropped_test_row_is_reported_and_the_rest_evaluated(tmp_path, monkeypatch, tiny_pm):
    """A NaN embedding for one token gives one test example a non-finite row (and NaN
    logits): it is dropped, counted, and every other test example is evaluated."""
    real = model_load.MODEL_LOADERS["tiny-random"]

    def poisoned(**kw):
        m = real(**kw)
        m.embed.W_E.data[POISON] = float("nan")
        return m

    monkeypatch.setitem(model_load.MODEL_LOADERS, "tiny-random", poisoned)
    prompts = split_prompts()
    data = write(tmp_path / "d.json", prompts)
    with pytest.warns(UserWarning, match="dropping 1 example"):
        rep = run_tiny(data, tmp_path / "out", "--nan-tolerance", "0.2")
    assert rep["dropped_examples"] == {"train": [], "test": ["p-21"]}
    assert rep["n_test"] == 5 and sorted(rep["test_example_ids"]) == \
        [f"p-{i}" for i in (18, 19, 20, 22, 23)]
    # oracle: the single circuit evaluated afresh (unpoisoned model: the poisoned token
    # occurs nowhere else) on the five other test examples
    kept = [f"p-{i}" for i in (18, 19, 20, 22, 23)]
    single = saved_circuits(tmp_path / "out")["single"]
    f = dcd.faithfulness(tiny_pm, loader_of(prompts, kept), single,
                         edge_fractions=rep["edge_fractions"],
                         selection=rep["circuit_selection"]["rule"]).f
    np.testing.assert_allclose(rep["single"]["faithfulness"], f, atol=1e-5)
    assert all(math.isfinite(v) for v in rep["dcd"]["faithfulness_routed"])


def test_noise_in_the_test_routing_is_counted_and_both_routed_scores_shown(
        tmp_path, monkeypatch, tiny_pm):
    from auto_circuit_dcd.cluster import GroupedDiscovery

    real = GroupedDiscovery.predict

    def with_noise(self, A):
        routed = real(self, A).copy()
        routed[:2] = -1  # the first two test rows: noise
        return routed

    monkeypatch.setattr(GroupedDiscovery, "predict", with_noise)
    prompts = tiny_prompts(24)
    rep = run_tiny(write(tmp_path / "d.json", prompts), tmp_path / "out")
    routing = rep["routing"]
    assert routing["n_test_noise"] == 2 and routing["noise_fallback"] == 0
    assert rep["test_routing"].count(-1) == 2
    # oracle: every cluster circuit evaluated afresh on the test set, combined by hand
    circuits = saved_circuits(tmp_path / "out")
    labels = rep["cross_faithfulness"]["labels"]
    test = loader_of(prompts, rep["test_example_ids"])
    res = dcd.evaluate_circuits(tiny_pm, test, {c: circuits[f"cluster_{c}"] for c in labels},
                                rep["edge_fractions"],
                                selection=rep["circuit_selection"]["rule"])
    route = dict(zip(rep["test_example_ids"], rep["test_routing"]))
    ids = res[labels[0]].example_ids
    full, empty = res[labels[0]].mu_full, res[labels[0]].mu_empty

    def routed_f(rows, pick):
        mu = np.stack([res[pick(route[ids[r]])].mu_circuit[r] for r in rows])
        return (mu.mean(0) - empty[rows].mean()) / (full[rows].mean() - empty[rows].mean())

    known = [r for r in range(len(ids)) if route[ids[r]] != -1]
    np.testing.assert_allclose(rep["dcd"]["faithfulness_routed_excluding_noise"],
                               routed_f(known, lambda c: c), atol=1e-5)
    np.testing.assert_allclose(rep["dcd"]["faithfulness_routed"],
                               routed_f(range(len(ids)), lambda c: 0 if c == -1 else c),
                               atol=1e-5)
    assert "corrupted prompt" in routing["note"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "noise" in html and "corrupted prompt" in html


def test_partly_labelled_data_give_quality_on_the_labelled_rows(tmp_path):
    prompts = tiny_prompts(24)
    for p in prompts[::3]:
        del p["group"]
    rep = run_tiny(write(tmp_path / "d.json", prompts), tmp_path / "out")
    groups, labels = rep["groups"], rep["labels"]
    rows = [i for i, g in enumerate(groups) if g is not None]
    q = rep["cluster_quality"]
    assert q["n_labelled"] == len(rows) and q["n_unlabelled"] == len(groups) - len(rows) > 0
    assert q["ari"] == pytest.approx(adjusted_rand_score([groups[i] for i in rows],
                                                         [labels[i] for i in rows]))
    comp = {}
    for c in rep["dcd"]["clusters"]:
        for g, n in c["composition"].items():
            comp[g] = comp.get(g, 0) + n
    assert comp["(no group)"] == len(groups) - len(rows)


def test_changed_groups_or_ids_come_from_the_dataset_not_the_cache(tmp_path):
    out = tmp_path / "out"
    prompts = tiny_prompts(24)
    first = run_tiny(write(tmp_path / "d.json", prompts), out)
    for p in prompts:
        p["group"] = p["group"].replace("family", "kind")
        p["id"] = f"renamed-{len(p['clean'])}-{id(p)}"
    second = run_tiny(write(tmp_path / "d.json", prompts), out)
    # the same rows, reused: train and test under --method, train under --circuit-method
    assert len(list((out / "cache").glob("attribution-*"))) == 3
    assert second["labels"] == first["labels"]
    assert set(second["groups"]) == {"kind0", "kind1"}
    for c in second["dcd"]["clusters"]:
        assert set(c["composition"]) <= {"kind0", "kind1"}
    assert all(str(i).startswith("renamed-") for i in second["example_ids"])
    assert sorted(second["test_example_ids"]) == sorted(
        p["id"] for p in prompts if p["id"] not in second["example_ids"])


def test_a_non_eap_base_algorithm_through_the_pipeline(tmp_path, tiny_pm):
    """auto-circuit's log-prob-difference mask gradient as the per-cluster algorithm; oracle:
    the same auto-circuit function on a loader of each cluster's training examples, and of
    all of them for the single baseline."""
    from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT

    from auto_circuit_dcd.model.edges import edge_layout

    key = "Edge Answer Log Prob Diff Gradient At Clean"
    prompts = tiny_prompts(24)
    out = tmp_path / "out"
    rep = run_tiny(write(tmp_path / "d.json", prompts), out, "--circuit-method", key)
    circuits = saved_circuits(out)
    _, layout = edge_layout(tiny_pm)
    for c in rep["cross_faithfulness"]["labels"]:
        ids = [i for i, lab in zip(rep["example_ids"], rep["labels"]) if lab == c]
        ref = PRUNE_ALGO_DICT[key].func(tiny_pm, loader_of(prompts, ids), None)
        torch.testing.assert_close(circuits[f"cluster_{c}"], layout.from_prune_scores(ref).float())
    assert rep["config"]["circuit_method"] == key
    # the single baseline: the same algorithm on all training examples, not the EAP mean
    ref = PRUNE_ALGO_DICT[key].func(tiny_pm, loader_of(prompts, rep["example_ids"]), None)
    torch.testing.assert_close(circuits["single"], layout.from_prune_scores(ref).float())


def test_a_run_killed_while_writing_never_leaves_an_old_report_beside_new_data(
        tmp_path, monkeypatch, tiny_pm):
    from auto_circuit_dcd.job import pipeline, run_folder

    out = tmp_path / "out"
    run_tiny(write(tmp_path / "a.json", tiny_prompts(24, seed=0)), out)
    real = run_folder.write_text

    def killed(dest, text):
        if dest.name == "report.json":
            raise KeyboardInterrupt
        return real(dest, text)

    monkeypatch.setattr(run_folder, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(pipeline.RunConfig(
            model="tiny-random", dataset=str(write(tmp_path / "b.json", tiny_prompts(24, seed=1))),
            out=str(out), max_clusters=3, batch_size=5, edge_fractions=[0.05, 0.2, 1.0]),
            progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert "report.json" not in names and "report.html" not in names  # the old report is gone
    assert not [n for n in names if n.endswith(".tmp")]
    # what was written is the second run's, whole: its rows, recomputed here from its data
    A = dcd.AttributionMatrix.load(out / "attribution_train")
    fresh = dcd.attribute(tiny_pm, loader_of(tiny_prompts(24, seed=1), A.example_ids),
                          progress=False)
    pos = {i: j for j, i in enumerate(fresh.example_ids)}
    torch.testing.assert_close(A.scores, fresh.scores[[pos[i] for i in A.example_ids]])
