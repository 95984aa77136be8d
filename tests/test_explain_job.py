"""The main job's cluster descriptions (report.json's ``cluster_descriptions``): what the
default toy job writes is what ``describe_clusters`` gives on the run's saved data, and it
leads to the toy model's planted heads without the labels (mean-ablating L0H3 breaks IOI
only, L0H1 induction only: README, "The embedded toy model"). The labels only name the
clusters here; neither the clustering nor the descriptions see them."""

from collections import Counter

import pytest
from conftest import assert_json_close

import auto_circuit_dcd as dcd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_job(tmp_path_factory):
    """``auto-circuit-dcd run`` with its defaults (the toy model and its mixed dataset)."""
    import contextlib
    import io

    from auto_circuit_dcd.cli import main

    out = tmp_path_factory.mktemp("toy") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["run", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    return out


def test_the_reports_descriptions_are_those_of_the_saved_run(toy_job):
    """Oracle: the clustering refitted here on the saved train attributions with the run's
    settings (its labels checked against the report's), the prompts read again from the
    dataset, the saved cluster circuits, and ``describe_clusters`` called with the size,
    selection rule and ranking of the run's per-cluster numbers."""
    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.data import load_examples
    from auto_circuit_dcd.evaluation.faithfulness import edge_count
    from auto_circuit_dcd.job.config import RunConfig
    from auto_circuit_dcd.job.pipeline import load_tokenizer
    from auto_circuit_dcd.job.run_folder import RunFolder

    folder = RunFolder(toy_job)
    report = folder.report()
    config = RunConfig(**report.config)
    A = folder.attributions("train")
    gd = dcd.GroupedDiscovery(clusterer=config.clusterer, max_clusters=config.max_clusters,
                              k_rule=config.k_rule, preprocessing=config.preprocessing,
                              random_state=config.seed).fit(A)
    assert [int(x) for x in gd.labels_] == report.labels
    tokenizer = load_tokenizer(config.model)
    examples = load_examples(report.dataset, tokenizer)  # both splits: found by id
    circuits = folder.circuits()
    conv = config.convention()
    desc = dcd.describe_clusters(
        A, gd, examples, dataset=report.dataset, tokenizer=tokenizer,
        circuits={c: circuits[f"cluster_{c}"] for c in report.cross_faithfulness.labels},
        size=edge_count(config.p_cross, A.n_edges), selection=conv.selection,
        ranking=conv.cpr_ranking, random_state=config.seed)
    assert report.cluster_descriptions is not None
    assert_json_close(report.cluster_descriptions.to_dict(), desc.to_dict(), rel=1e-5, abs_=1e-6,
                      where="descriptions", ordered=True)
    # the circuits compared are those evaluated at --p-cross (5% of 81 edges: 4 asked, by
    # the run's selection rule)
    evaluated = folder.circuits(at=config.p_cross)
    (diff,) = report.cluster_descriptions.circuit_differences
    assert diff.size == 4 and diff.selection == report.circuit_selection.rule
    assert (diff.n_a, diff.n_b) == (evaluated["cluster_0"].size, evaluated["cluster_1"].size)
    assert report.timings["description"] >= 0


def _task_of_clusters(report):
    """{task: cluster} from the clusters' composition (naming only)."""
    return {Counter(c.composition).most_common(1)[0][0]: c.label for c in report.dcd.clusters}


@pytest.mark.parametrize("task,planted", [("ioi", "a0.h3"), ("induction", "a0.h1")])
def test_the_reports_clusters_lead_to_their_planted_heads(toy_job, task, planted):
    """Through report.json: the cluster of each task has its planted head among its top
    three heads by effect size, above the other layer-0 heads."""
    from auto_circuit_dcd import RunReport

    report = RunReport.load(toy_job)
    clusters = _task_of_clusters(report)
    assert sorted(clusters) == ["induction", "ioi"]
    nodes = report.cluster_descriptions.contrast(clusters[task]).nodes
    heads = [u.name for u in nodes.higher if u.name.startswith("a")]
    assert planted in heads[:3], heads
    layer0 = [h for h in heads if h.startswith("a0.")]
    assert layer0[0] == planted, heads
    assert next(u for u in nodes.higher if u.name == planted).q_value <= 0.05


def test_the_first_paragraphs_comparisons_carry_their_intervals_and_sizes(toy_job):
    """Oracle: report.json's own-vs-single comparisons at p and DCD-vs-single on CPR,
    formatted here by hand: both values, the edges of each side, the signed difference
    with its interval, the mark."""
    import json

    from auto_circuit_dcd.report.findings import findings

    said = " ".join(findings(dcd.RunFolder(toy_job).report()))
    rep = json.loads((toy_job / "report.json").read_text())
    p = rep["cross_faithfulness"]["p"]
    fams = rep["uncertainty"]["comparisons"]

    def signed(x):
        return f"{x:+.3f}"

    own = [c for c in fams["own_vs_single"]["comparisons"]
           if c["size"] is not None and abs(c["size"] - p) < 1e-12]
    cpr = [c for c in fams["dcd_routed_vs_single"]["comparisons"] if c["size"] is None]
    assert len(own) == rep["n_clusters"] and len(cpr) == 1
    for c in own + cpr:
        d = c["difference"]
        text = (f"{c['a_value']:.3f} against {c['b_value']:.3f}"
                + (f" ({'/'.join(map(str, c['edges_a'].values()))} and "
                   f"{'/'.join(map(str, c['edges_b'].values()))} edges)" if c["edges_a"] else "")
                + f", {signed(d['estimate'])} [{signed(d['low'])}, {signed(d['high'])}], "
                f"{c['mark']}")
        assert text in said, text
