"""The main job end to end on a tiny model: report.json keys, files, one-line CLI errors."""

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_json_close

import auto_circuit_dcd as dcd
from auto_circuit_dcd.cli import main

REQUIRED = {
    "model", "dataset", "method", "n_train", "n_test", "n_edges", "n_clusters", "labels",
    "groups", "edge_fractions", "single", "dcd", "k_random", "cross_faithfulness",
    "edge_overlap", "cluster_quality", "timings", "versions", "circuit_selection", "stability",
}


def tiny_prompts(n=24, seed=0, lo=3, hi=50):
    """Pre-tokenized prompts for the tiny random model, two labelled prompt families."""
    g = torch.Generator().manual_seed(seed)
    prompts = []
    for i in range(n):
        family = i % 2
        clean = [1 + family] + torch.randint(lo, hi, (5,), generator=g).tolist()
        corrupt = list(clean)
        corrupt[3 + family] = (corrupt[3 + family] + 7) % (hi - lo) + lo
        prompts.append({"clean": clean, "corrupt": corrupt, "answers": [int(clean[2])],
                        "wrong_answers": [int(clean[4])], "group": f"family{family}"})
    return prompts


def write(path, prompts):
    path.write_text(json.dumps({"prompts": prompts}))
    return path


#: the tiny random model has no mechanisms to find: under --preprocessing auto its rows give
#: one cluster, so the runs that exercise the comparisons of several clusters name a space
RUN = ["run", "--model", "tiny-random", "--quiet", "--max-clusters", "3", "--batch-size", "5",
       "--edge-fractions", "0.05,0.2,1", "--preprocessing", "l2"]


def run_tiny(dataset, out, *extra):
    assert main(RUN + ["--dataset", str(dataset), "--out", str(out), *extra]) == 0
    return json.loads((out / "report.json").read_text())


def loader_of(prompts, ids):
    """An ExampleLoader of the given prompt ids (their dataset positions), batch 5."""
    from auto_circuit_dcd.data import make_loader, tokenize_examples

    examples = tokenize_examples(prompts, None, prepend_bos=False)
    by_id = {e.id: e for e in examples}
    return make_loader([by_id[i] for i in ids], batch_size=5)


@pytest.fixture(scope="module")
def tiny_pm():
    import auto_circuit_dcd as dcd

    return dcd.make_patchable(dcd.load_model("tiny-random"))


def saved_circuits(out):
    from safetensors.torch import load_file

    return load_file(str(out / "circuits.safetensors"))


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return write(tmp_path_factory.mktemp("data") / "tiny.json", tiny_prompts())


@pytest.fixture(scope="module")
def report(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["run", "--model", "tiny-random", "--dataset", str(tiny_dataset),
                 "--out", str(out), "--quiet", "--max-clusters", "3", "--batch-size", "5",
                 "--edge-fractions", "0.05,0.2,1", "--circuit-method", "eap",
                 "--preprocessing", "l2"])
    assert code == 0
    return out, json.loads((out / "report.json").read_text())


def test_report_json_has_the_documented_keys(report):
    out, rep = report
    assert REQUIRED <= set(rep)
    assert rep["n_train"] + rep["n_test"] == 24 and len(rep["labels"]) == rep["n_train"]
    assert len(rep["groups"]) == rep["n_train"]
    n_frac = len(rep["edge_fractions"])
    assert rep["edge_fractions"] == [0.05, 0.2, 1.0]
    assert {"faithfulness", "cpr", "cmd"} <= set(rep["single"])
    assert len(rep["single"]["faithfulness"]) == n_frac
    assert rep["single"]["faithfulness"][-1] == pytest.approx(1.0)  # all edges: the model
    dcd = rep["dcd"]
    assert len(dcd["faithfulness_oracle"]) == len(dcd["faithfulness_routed"]) == n_frac
    assert len(dcd["clusters"]) == rep["n_clusters"]
    assert sum(c["size"] for c in dcd["clusters"]) == rep["n_train"]
    for c in dcd["clusters"]:
        assert {"label", "size", "composition", "faithfulness_own", "single_on_group"} <= set(c)
        assert sum(c["composition"].values()) == c["size"]
    k = rep["n_clusters"]
    assert len(rep["cross_faithfulness"]["matrix"]) == k and rep["cross_faithfulness"]["p"] == 0.05
    assert len(rep["edge_overlap"]["matrix"]) == k
    assert {"ari", "nmi", "purity"} <= set(rep["cluster_quality"])
    assert {"attribution", "clustering", "evaluation"} <= set(rep["timings"])
    assert rep["world_size"] == 1  # one process (tests/test_distributed.py: 2 workers)
    assert rep["versions"]["auto-circuit"] == "1.0.1"


def test_cross_faithfulness_against_each_circuit_evaluated_on_its_routed_examples(
        report, tiny_dataset, tiny_pm):
    """Oracle: each saved cluster circuit evaluated afresh on a loader of the test examples
    routed to each cluster (float32 sums over different batches: 1e-5)."""
    import auto_circuit_dcd as dcd

    out, rep = report
    prompts = json.loads(tiny_dataset.read_text())["prompts"]
    circuits = saved_circuits(out)
    labels = rep["cross_faithfulness"]["labels"]
    route = dict(zip(rep["test_example_ids"], rep["test_routing"]))
    for i, ci in enumerate(labels):
        for j, cj in enumerate(labels):
            ids = [t for t, r in route.items() if r == cj]
            got = rep["cross_faithfulness"]["matrix"][i][j]
            if not ids:
                assert got is None
                continue
            f = dcd.faithfulness(tiny_pm, loader_of(prompts, ids), circuits[f"cluster_{ci}"],
                                 edge_fractions=[0.05],
                                 selection=rep["circuit_selection"]["rule"]).f[0]
            assert got == pytest.approx(f, abs=1e-5)
    assert rep["routing"]["rule"] in ("nearest training row", "nearest centroid")
    assert 0.0 <= rep["routing"]["train_agreement"] <= 1.0


def test_outputs_are_written_in_open_formats(report):
    out, rep = report
    html = (out / "report.html").read_text()
    assert "<html" in html.lower() and 'src="http' not in html
    circuits = json.loads((out / "circuits.json").read_text())
    assert len(circuits["edge_names"]) == rep["n_edges"]
    assert "single" in circuits["top_edges"]
    assert (out / "circuits.safetensors").exists()
    assert (out / "attribution_train" / "attribution.json").exists()


def test_bad_arguments_give_one_line_errors(tmp_path, capsys):
    assert main(["run", "--model", "tiny-random", "--dataset", str(tmp_path / "nope.json"),
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"prompts": [{"clean": [1, 2], "corrupt": [1, 2, 3],
                                            "answers": [1], "wrong_answers": [2]}]}))
    assert main(["run", "--model", "tiny-random", "--dataset", str(bad),
                 "--out", str(tmp_path)]) == 2
    assert "different token lengths" in capsys.readouterr().err
    assert main(["run", "--model", "no-such-model", "--out", str(tmp_path)]) == 2
    assert "unknown model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--edge-fractions", "2"])


@pytest.mark.slow
def test_default_run_on_the_toy_model_separates_the_two_tasks(tmp_path):
    """The README's first command: two clusters matching the planted tasks, and each
    cluster's own circuit more faithful on its group than the single circuit at p = 5%."""
    assert main(["run", "--out", str(tmp_path), "--quiet"]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["model"] == "toy-two-task" and rep["n_clusters"] == 2
    assert rep["cluster_quality"]["ari"] >= 0.9
    j = rep["edge_fractions"].index(0.05)
    for c in rep["dcd"]["clusters"]:
        assert c["faithfulness_own"][j] > c["single_on_group"][j] + 0.1
    assert rep["dcd"]["faithfulness_routed"][j] > rep["single"]["faithfulness"][j]


def test_the_model_table_gives_the_loaded_models_tokenizer_and_dataset():
    """Oracle: the loaded toy model's own tokenizer and the toy package's mixed dataset;
    names outside the table have neither and are not offline."""
    from auto_circuit_dcd.job.pipeline import load_tokenizer
    from auto_circuit_dcd.model.load import MODEL_LOADERS
    from auto_circuit_dcd.model.table import MODELS, OFFLINE_MODELS, embedded_dataset
    from auto_circuit_dcd.toy import toy_dataset_path

    path = embedded_dataset("toy-two-task")
    assert path == Path(toy_dataset_path("mixed"))
    text = json.loads(path.read_text())["prompts"][0]["clean"]
    model = dcd.load_model("toy-two-task")
    assert load_tokenizer("toy-two-task")(text)["input_ids"] == model.tokenizer(text)["input_ids"]
    assert embedded_dataset("tiny-random") is None and embedded_dataset("gpt2") is None
    assert set(OFFLINE_MODELS) == set(MODELS) == set(MODEL_LOADERS) and "gpt2" not in MODELS


def test_the_run_folder_reads_back_the_circuits_the_run_evaluated(report):
    """Oracle: each cluster's circuit recomputed here as the mean of its training rows (the
    saved matrix and the report's labels), the edge counts the evaluation reported at each
    size, and the run's selection rule applied afresh to the saved scores."""
    import numpy as np

    from auto_circuit_dcd.evaluation.faithfulness import edge_count
    from auto_circuit_dcd.job.run_folder import RunFolder

    out, rep = report
    folder = RunFolder(out)
    assert folder.report().to_dict() == rep
    A = folder.attributions("train")
    circuits = folder.circuits()
    assert list(circuits) == list(rep["achieved_edge_counts"])
    labels = np.asarray(rep["labels"])
    for c in rep["cross_faithfulness"]["labels"]:
        mean = A.scores[labels == c].double().mean(0).float().double()
        torch.testing.assert_close(circuits[f"cluster_{c}"].scores, mean, rtol=0, atol=0)
        assert circuits[f"cluster_{c}"].meta == {"label": f"cluster_{c}", "base_algo": "eap"}
    sizes = folder.sizes()
    assert sizes.fractions == rep["edge_fractions"]
    assert sizes.selection == rep["circuit_selection"]["rule"]
    for j, p in enumerate(sizes.fractions):
        for name, c in folder.circuits(at=p).items():
            assert c.size == rep["achieved_edge_counts"][name][j]
            again = circuits[name].select(sizes.selection, edge_count(p, rep["n_edges"]),
                                          sizes.rankings[0])
            assert torch.equal(again.mask, c.mask)
    with pytest.raises(KeyError, match="evaluated no size 0.3"):
        folder.circuits(at=0.3)
    assert folder.graph_config()["n_layers"] == 2


def test_circuits_from_another_method_than_the_clusters(tiny_dataset, tiny_pm, tmp_path):
    """--method eap --circuit-method eap-ig: the clusters from the EAP rows (saved), every
    circuit the mean of EAP-IG rows of the same training examples. Oracle: EAP-IG rows
    attributed here by ``dcd.attribute`` on a loader of the report's training ids, averaged
    per cluster label of the report; they differ from the means of the EAP rows."""
    import numpy as np

    from auto_circuit_dcd.cluster.baselines import random_split
    from auto_circuit_dcd.job.run_folder import RunFolder
    from auto_circuit_dcd.report.summary import summary_table

    prompts = json.loads(tiny_dataset.read_text())["prompts"]
    out = tmp_path / "ig"
    rep = run_tiny(tiny_dataset, out, "--method", "eap", "--circuit-method", "eap-ig",
                   "--ig-steps", "3")
    sel = rep["circuit_selection"]
    assert (sel["cluster_method"], sel["circuit_method"]) == ("eap", "eap-ig")
    assert sel["circuit_rows_missing"] == [] and "circuit_attribution" in rep["timings"]
    folder = RunFolder(out)
    assert "clusters from eap rows, circuits by eap-ig" in summary_table(folder.report())
    page = (out / "report.html").read_text()
    assert "<th>clusters from the rows of</th><td>eap</td>" in page
    assert "<th>every circuit built by</th><td>eap-ig</td>" in page
    ids, labels = rep["example_ids"], np.asarray(rep["labels"])
    ig = dcd.attribute(tiny_pm, loader_of(prompts, ids), method="eap-ig", ig_steps=3,
                       progress=False)
    assert list(ig.example_ids) == ids
    rows = ig.scores.double()
    eap_rows = folder.attributions("train").scores.double()
    circuits = folder.circuits()
    for c in rep["cross_faithfulness"]["labels"]:
        got = circuits[f"cluster_{c}"]
        assert got.meta == {"label": f"cluster_{c}", "base_algo": "eap-ig"}
        want = rows[torch.as_tensor(labels == c)].mean(0)
        torch.testing.assert_close(got.scores.double(), want, rtol=1e-4, atol=1e-6)
        eap_mean = eap_rows[torch.as_tensor(labels == c)].mean(0)
        assert not torch.allclose(got.scores.double(), eap_mean, rtol=1e-2, atol=1e-4)
    torch.testing.assert_close(circuits["single"].scores.double(), rows.mean(0),
                               rtol=1e-4, atol=1e-6)
    k = rep["n_clusters"]
    for i, part in enumerate(random_split(len(ids), k, 42) if k > 1 else []):
        torch.testing.assert_close(circuits[f"k_random_{i}"].scores.double(),
                                   rows[torch.as_tensor(part)].mean(0), rtol=1e-4, atol=1e-6)


def test_an_example_without_a_circuit_row_is_left_out_by_id(tiny_dataset, tiny_pm, tmp_path,
                                                          monkeypatch):
    """The circuit method's rows lose one training example (as a non-finite row would): it is
    left out of the circuits and listed, and every other row keeps the cluster of its own id
    (a positional match would shift the labels). Oracle: EAP-IG rows of the kept ids
    attributed here, averaged per the report's label of each id."""
    import numpy as np

    from auto_circuit_dcd.attribution import front
    from auto_circuit_dcd.job.run_folder import RunFolder

    real = front.attribute
    lost = {}

    def losing(model, loader, method="eap", **kw):
        A = real(model, loader, method, **kw)
        if method != "eap-ig":
            return A
        lost["id"] = A.example_ids[1]
        return A.subset([i for i in range(A.n_examples) if i != 1])

    monkeypatch.setattr(front, "attribute", losing)
    prompts = json.loads(tiny_dataset.read_text())["prompts"]
    out = tmp_path / "lost"
    rep = run_tiny(tiny_dataset, out, "--method", "eap", "--circuit-method", "eap-ig",
                   "--ig-steps", "3")
    assert rep["circuit_selection"]["circuit_rows_missing"] == [lost["id"]]
    label_of = dict(zip(rep["example_ids"], rep["labels"]))
    kept = [i for i in rep["example_ids"] if i != lost["id"]]
    ig = real(tiny_pm, loader_of(prompts, kept), method="eap-ig", ig_steps=3, progress=False)
    labels = np.array([label_of[i] for i in ig.example_ids])
    circuits = RunFolder(out).circuits()
    for c in rep["cross_faithfulness"]["labels"]:
        want = ig.scores.double()[torch.as_tensor(labels == c)].mean(0)
        torch.testing.assert_close(circuits[f"cluster_{c}"].scores.double(), want,
                                   rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(circuits["single"].scores.double(), ig.scores.double().mean(0),
                               rtol=1e-4, atol=1e-6)


def test_a_bad_circuit_method_is_refused_before_the_model_loads(tiny_dataset, tmp_path,
                                                                 monkeypatch):
    from auto_circuit_dcd.errors import ConfigError
    from auto_circuit_dcd.job.pipeline import RunConfig, run
    from auto_circuit_dcd.model import load

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(load, "load_model", never)
    config = RunConfig(model="tiny-random", dataset=str(tiny_dataset), out=str(tmp_path / "o"),
                       circuit_method="EAP-IG")
    with pytest.raises(ConfigError, match="^--circuit-method: must be eap or eap-ig or a key "
                                          "of auto-circuit's PRUNE_ALGO_DICT .*got 'EAP-IG'$"):
        run(config, progress=False)
    assert not (tmp_path / "o").exists()


def test_a_folder_without_a_finished_run_of_this_version_is_named(tmp_path):
    from auto_circuit_dcd.job.run_folder import RunFolder, RunFolderError

    with pytest.raises(RunFolderError, match="holds no finished run"):
        RunFolder(tmp_path).report()
    (tmp_path / "circuits.json").write_text(json.dumps({"edge_names": [], "layout": []}))
    with pytest.raises(RunFolderError, match="written by an older version"):
        RunFolder(tmp_path).circuits()


# ------------------------------------------------------- per-example values and intervals
def test_the_per_example_file_matches_the_report(report):
    """Oracle: report.json's ids, circuit names, edge counts and routings, and its curves
    (assembled by the package's aggregates) recomputed here by hand as ratios of means of
    the saved per-example values: the single circuit on all test examples, DCD routed
    (each example scored by its cluster's circuit) and each cluster's circuit on its
    routed examples."""
    import numpy as np

    from auto_circuit_dcd.job.run_folder import RunFolder

    out, rep = report
    folder = RunFolder(out)
    per, routings = folder.per_example(), folder.test_routings()
    sel = rep["circuit_selection"]
    assert list(per) == list(sel["achieved_edge_counts"])
    for ranking, results in per.items():
        assert list(results) == list(rep["achieved_edge_counts"])
        for name, r in results.items():
            assert r.example_ids == rep["test_example_ids"]
            assert r.fractions.tolist() == rep["edge_fractions"]
            assert r.achieved_counts.tolist() == sel["achieved_edge_counts"][ranking][name]
            assert r.selection == sel["rule"] == "topn-fill"  # the main job's default
    assert routings == {"dcd": rep["test_routing"], "k_random": rep["k_random"]["test_routing"]}
    res = per[sel["ranking"]]
    full, empty = res["single"].mu_full, res["single"].mu_empty

    def f(mu, rows):
        return (mu[rows].mean(0) - empty[rows].mean()) / (full[rows].mean() - empty[rows].mean())

    everyone = np.ones(len(full), dtype=bool)
    np.testing.assert_allclose(f(res["single"].mu_circuit, everyone),
                               rep["single"]["faithfulness"], rtol=1e-9)
    route = np.asarray(rep["test_routing"])
    routed = np.stack([res[f"cluster_{c}"].mu_circuit[i] for i, c in enumerate(route)])
    np.testing.assert_allclose(f(routed, everyone), rep["dcd"]["faithfulness_routed"],
                               rtol=1e-9)
    for c in rep["dcd"]["clusters"]:
        rows = route == c["label"]
        if rows.any():
            np.testing.assert_allclose(f(res[f"cluster_{c['label']}"].mu_circuit, rows),
                                       c["faithfulness_own"], rtol=1e-9)


def test_the_reports_intervals_are_a_recomputation_from_the_per_example_file(report):
    """Oracle: run_uncertainty called here on the saved per-example values and routings
    alone (no model), with the report's convention, clusters and size: every interval,
    comparison, verdict and warning of report.json's ``uncertainty`` (to 1e-9)."""
    from auto_circuit_dcd.job.run_folder import RunFolder
    from auto_circuit_dcd.metrics.convention import Convention
    from auto_circuit_dcd.metrics.uncertainty import run_uncertainty
    from auto_circuit_dcd.schema import to_jsonable

    out, rep = report
    folder = RunFolder(out)
    per, routings = folder.per_example(), folder.test_routings()
    sel = rep["circuit_selection"]
    conv = Convention(sel["rule"], sel["ranking"], sel["cmd_ranking"], sel["cmd"],
                      sel["convention"])
    labels = rep["cross_faithfulness"]["labels"]
    u = run_uncertainty(per, conv, single="single",
                        clusters={c: f"cluster_{c}" for c in labels},
                        routing=routings["dcd"], p=rep["cross_faithfulness"]["p"],
                        k_random=sorted(set(routings["k_random"])),
                        k_random_routing=routings["k_random"],
                        noise_fallback=rep["routing"]["noise_fallback"],
                        test_fraction=rep["n_test"] / (rep["n_train"] + rep["n_test"]))
    assert_json_close(to_jsonable(u), rep["uncertainty"], rel=1e-9, abs_=1e-12, where="uncertainty")


def test_every_faithfulness_number_has_its_interval(report):
    """Oracle: the report's own numbers (assembled by the package's aggregates); each has,
    in ``uncertainty`` under the documented name (docs/report.md), an estimate equal to it
    and an interval (none only where the number itself is missing)."""
    out, rep = report
    u = rep["uncertainty"]

    def same(number, interval):
        if number is None:
            assert interval["estimate"] is None
            return
        assert interval["estimate"] == pytest.approx(number, rel=1e-9, abs=1e-12)
        assert interval["low"] is not None and interval["high"] is not None
        assert interval["low"] <= interval["high"]

    def curve(numbers, band):
        for j, x in enumerate(numbers):
            same(x, {k: band[k][j] for k in ("estimate", "low", "high")})

    assert u["grid"]["fractions"] == rep["edge_fractions"] and u["grid"]["dropped"] == []
    for family, key, dcd_key in (("single", "single", None), ("dcd_routed", "dcd", "routed"),
                                 ("dcd_oracle", "dcd", "oracle"),
                                 ("dcd_routed_excluding_noise", "dcd", "routed_excluding_noise"),
                                 ("k_random_routed", "k_random", "routed"),
                                 ("k_random_oracle", "k_random", "oracle")):
        block = rep[key]
        if dcd_key is None:
            numbers, cpr, cmd = block["faithfulness"], block["cpr"], block["cmd"]
        else:
            numbers = block[f"faithfulness_{dcd_key}"]
            cpr, cmd = block["cpr"][dcd_key], block["cmd"][dcd_key]
        curve(numbers, u[family]["faithfulness"])
        same(cpr, u[family]["cpr"])
        same(cmd, u[family]["cmd"])
    by_label = {c["label"]: c for c in u["clusters"]}
    for c in rep["dcd"]["clusters"]:
        curve(c["faithfulness_own"], by_label[c["label"]]["own"]["faithfulness"])
        curve(c["single_on_group"], by_label[c["label"]]["single_on_group"]["faithfulness"])
        same(c["cpr_own"], by_label[c["label"]]["own"]["cpr"])
        assert c["n_test"] == by_label[c["label"]]["n_test"]
    cross = rep["cross_faithfulness"]
    assert u["cross"]["labels"] == cross["labels"] and u["cross"]["p"] == cross["p"]
    for i, row in enumerate(cross["matrix"]):
        for j, x in enumerate(row):
            same(x, {k: u["cross"][k][i][j] for k in ("estimate", "low", "high")})
    # each comparison carries both sides' edges, as the report's achieved counts give them
    counts = rep["achieved_edge_counts"]
    for family in u["comparisons"].values():
        for c in family["comparisons"]:
            if c["size"] is None:
                continue
            j = rep["edge_fractions"].index(c["size"])
            for side in ("edges_a", "edges_b"):
                assert c[side] and all(counts[n][j] == e for n, e in c[side].items())
            both = list(c["edges_a"].values()) + list(c["edges_b"].values())
            assert bool(c["note"]) == (len(set(both)) > 1 or 0 in both)


@pytest.mark.slow
def test_the_toy_jobs_verdicts_recover_the_planted_mechanisms(tmp_path):
    """The toy model was trained with two separate mechanisms (IOI-like and induction,
    different heads): at 20% of edges each cluster's circuit carries little of the other
    task while the single circuit of the mixture is faithful on both, so claim (b) holds
    there; at 5% the single circuit (about 4 edges) cannot hold both mechanisms, so (b) does
    not hold (recomputed from the saved per-example file alone) and each cluster's own
    circuit beats it (a); at 100% every circuit is the whole model, a planted null: every
    difference is exactly 0 and (a), (c) are not distinguishable."""
    from auto_circuit_dcd.job.run_folder import RunFolder
    from auto_circuit_dcd.metrics.convention import Convention
    from auto_circuit_dcd.metrics.uncertainty import run_uncertainty
    from auto_circuit_dcd.report.records import RunReport

    out = tmp_path / "toy"
    # the planted separation at 20% is a statement about the EAP circuits: with EAP-IG
    # circuits the IOI cluster's keeps 0.40-0.51 of the induction task there (results.md)
    assert main(["run", "--out", str(out), "--quiet", "--edge-fractions", "0.05,0.2,1",
                 "--p-cross", "0.2", "--stability-resamples", "0",
                 "--circuit-method", "eap"]) == 0
    rep = RunReport.load(out)
    u = rep.uncertainty
    assert rep.n_clusters == 2 and rep.cluster_quality.ari >= 0.9

    def verdict(claim, size, v=None):
        return next(x for x in (v or u).verdicts if x.claim == claim and x.size == size)

    b = verdict("separate mechanisms", 0.2)
    assert b.outcome == "holds", [(e.what, e.low, e.high) for e in b.evidence]
    assert verdict("own beats single", 0.05).outcome == "holds"
    for claim in ("own beats single", "DCD beats K-random"):
        assert verdict(claim, 1.0).outcome == "not distinguishable"
    for family in u.comparisons.values():
        at_full = [c for c in family.comparisons if c.size == 1.0]
        assert at_full and all(c.difference.estimate == 0 == c.difference.low
                               == c.difference.high for c in at_full)
    folder = RunFolder(out)
    routings = folder.test_routings()
    sel = rep.circuit_selection
    again = run_uncertainty(
        folder.per_example(), Convention(sel.rule, sel.ranking, sel.cmd_ranking, sel.cmd),
        single="single", clusters={c: f"cluster_{c}" for c in rep.cross_faithfulness.labels},
        routing=routings["dcd"], p=0.05, k_random=sorted(set(routings["k_random"])),
        k_random_routing=routings["k_random"], noise_fallback=rep.routing.noise_fallback)
    b5 = verdict("separate mechanisms", 0.05, again)
    assert b5.outcome == "does not hold"
    assert all(e.high < 0.8 for e in b5.evidence if e.what.startswith("single circuit"))
    # the page marks every comparison and verdict as report.json does
    from test_cli import check_page_intervals

    data = json.loads((out / "report.json").read_text())
    assert check_page_intervals(out, data) > 0
    page = (out / "report.html").read_text()
    assert page.count('<td class="better">') >= 3 and '<td class="holds">' in page


def test_a_cross_size_that_asks_for_no_edge_is_refused_before_attribution(tiny_dataset,
                                                                         tmp_path, capsys):
    """tiny-random has 46 edges: --p-cross 0.01 asks for floor(0.46) = 0 of them. The run
    stops in one line before attributing (no cache written), naming the sizes to choose."""
    assert main(["run", "--model", "tiny-random", "--dataset", str(tiny_dataset),
                 "--out", str(tmp_path / "out"), "--quiet", "--edge-fractions", "0.01,0.2,1",
                 "--p-cross", "0.01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--p-cross 0.01 asks for fewer than one of the model's 46" in err[0]
    assert "[0.2, 1.0]" in err[0]
    assert not (tmp_path / "out").exists()
