"""The main job end to end on a tiny model: report.json keys, files, one-line CLI errors."""

import json

import pytest
import torch

from auto_circuit_dcd.cli import main

REQUIRED = {
    "model", "dataset", "method", "n_train", "n_test", "n_edges", "n_clusters", "labels",
    "groups", "edge_fractions", "single", "dcd", "k_random", "cross_faithfulness",
    "edge_overlap", "cluster_quality", "timings", "versions",
}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Pre-tokenized prompts for the tiny random model, two labelled prompt families."""
    g = torch.Generator().manual_seed(0)
    prompts = []
    for i in range(24):
        family = i % 2
        clean = [1 + family] + torch.randint(3, 50, (5,), generator=g).tolist()
        corrupt = list(clean)
        corrupt[3 + family] = (corrupt[3 + family] + 7) % 47 + 3
        prompts.append({"clean": clean, "corrupt": corrupt, "answers": [int(clean[2])],
                        "wrong_answers": [int(clean[4])], "group": f"family{family}"})
    path = tmp_path_factory.mktemp("data") / "tiny.json"
    path.write_text(json.dumps({"prompts": prompts}))
    return path


@pytest.fixture(scope="module")
def report(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["run", "--model", "tiny-random", "--dataset", str(tiny_dataset),
                 "--out", str(out), "--quiet", "--max-clusters", "3", "--batch-size", "5",
                 "--edge-fractions", "0.05,0.2,1"])
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
    assert rep["versions"]["auto-circuit"] == "1.0.1"


def test_cross_faithfulness_diagonal_is_each_clusters_own_faithfulness(report):
    _, rep = report
    j = rep["edge_fractions"].index(0.05)
    for i, c in enumerate(rep["dcd"]["clusters"]):
        own = c["faithfulness_own"][j]
        diag = rep["cross_faithfulness"]["matrix"][i][i]
        assert (own is None and diag is None) or own == pytest.approx(diag)


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
    assert main(["run", "--model", "tiny-random", "--dataset", str(bad), "--out", str(tmp_path)]) == 2
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


def test_cli_knows_which_models_are_offline():
    from auto_circuit_dcd.cli import OFFLINE_MODELS
    from auto_circuit_dcd.models import MODEL_LOADERS

    assert set(OFFLINE_MODELS) == set(MODEL_LOADERS)
