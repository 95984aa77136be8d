"""The HTML report: sections, data, self-containment, escaping, and the circuit drawing."""

import json
import math
import re
import warnings

import pytest
import torch

EVIL = "<script>alert(1)</script>"
FRACTIONS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
CROSS = [[0.8123, 0.0417, 0.3301], [0.1375, 0.9266, float("nan")], [0.2222, 0.0588, 0.7719]]


def curve(top: float, nan_at: int = -1) -> list:
    ys = [round(top * (1 - math.exp(-8 * f)) / (1 - math.exp(-8)), 4) for f in FRACTIONS]
    if nan_at >= 0:
        ys[nan_at] = float("nan")
    return ys


def synthetic_report(groups=True, k_random=False):
    """A ``RunReport`` with planted values, 3 clusters, one with no test examples (NaN);
    with ``k_random``, K-random curves and scores too."""
    from auto_circuit_dcd import RunReport

    names = ["ioi", "induction", EVIL] if groups else None
    labels = [0] * 5 + [1] * 4 + [2] * 3
    comp = [{"ioi": 5}, {"induction": 3, EVIL: 1}, {EVIL: 3}] if groups else [{}, {}, {}]
    nan = float("nan")
    clusters = [
        {"label": 0, "size": 5, "composition": comp[0], "faithfulness_own": curve(0.95),
         "single_on_group": curve(0.7), "n_test": 2, "cpr_own": 0.7},
        {"label": 1, "size": 4, "composition": comp[1], "faithfulness_own": curve(0.9),
         "single_on_group": curve(0.6), "n_test": 2, "cpr_own": 0.65},
        {"label": 2, "size": 3, "composition": comp[2], "faithfulness_own": [None] * 10,
         "single_on_group": [nan] * 10, "n_test": 0, "cpr_own": None},
    ]
    counts = [max(1, int(f * 46)) for f in FRACTIONS]
    no_k_random = {"faithfulness_oracle": None, "faithfulness_routed": None,
                   "cpr": {"oracle": None, "routed": None}, "cmd": {"oracle": None, "routed": None}}
    return RunReport.from_dict({
        "schema_version": 1, "model": "tiny-random", "dataset": "synthetic.json",
        "method": "eap", "metric": "max_diff", "config": {"draw_fraction": None},
        "n_train": 12, "n_test": 4, "n_edges": 46, "n_clusters": 3,
        "labels": labels, "example_ids": [f"e{i}" for i in range(12)],
        "groups": ([names[0]] * 5 + [names[1]] * 3 + [names[2]] * 4) if groups else None,
        "test_example_ids": ["t0", "t1", "t2", "t3"], "test_routing": [0, 0, 1, 1],
        "dropped_examples": {"train": [], "test": []},
        "routing": {"rule": "nearest centroid", "train_agreement": 1.0, "n_test_noise": 0,
                    "n_train_noise": 0, "noise_fallback": 0, "note": "routed by their rows"},
        "edge_fractions": FRACTIONS,
        "achieved_edge_counts": {"single": counts},
        "circuit_selection": {"convention": "custom", "rule": "topn", "ranking": "abs",
                              "cmd_ranking": "abs", "cmd": "one-sided", "base_algo": "eap",
                              "requested_edge_counts": counts,
                              "achieved_edge_counts": {"abs": {"single": counts}},
                              "note": "top n"},
        "single": {"faithfulness": curve(0.8), "cpr": 0.61, "cmd": 0.22},
        "dcd": {"faithfulness_oracle": curve(0.97), "faithfulness_routed": curve(0.9, nan_at=0),
                "faithfulness_routed_excluding_noise": curve(0.9, nan_at=0),
                "cpr": {"oracle": 0.7, "routed": None, "routed_excluding_noise": None},
                "cmd": {"oracle": 0.11, "routed": 0.19, "routed_excluding_noise": 0.19},
                "clusters": clusters},
        "k_random": {"faithfulness_oracle": curve(0.85), "faithfulness_routed": curve(0.75),
                     "cpr": {"oracle": 0.654, "routed": 0.543},
                     "cmd": {"oracle": 0.187, "routed": 0.298}} if k_random else no_k_random,
        "cross_faithfulness": {"p": 0.05, "labels": [0, 1, 2], "matrix": CROSS,
                               "orientation": "rows: circuits"},
        "edge_overlap": {"gamma": 0.99, "labels": [0, 1, 2],
                         "matrix": [[1.0, 0.125, 0.3333], [0.125, 1.0, 0.0625],
                                    [0.3333, 0.0625, 1.0]]},
        "cluster_quality": {"ari": 0.5123, "nmi": 0.6, "purity": 0.75, "per_label": {},
                            "per_cluster": {}, "majority_label": {}, "clusters": [],
                            "labels": [], "contingency": [], "n_labelled": 12,
                            "n_unlabelled": 0} if groups else None,
        "stability": None,
        "selection": [{"method": "kmeans-svd", "k": 2, "silhouette": 0.31, "chosen": False},
                      {"method": "kmeans-svd", "k": 3, "silhouette": 0.44, "chosen": True,
                       "gap": 0.12}],
        "world_size": 1,
        "timings": {"attribution": 3.25, "clustering": 0.5},
        "versions": {"auto-circuit": "1.0.1", "torch": "2.13.0"},
    })


def projection(report) -> dict:
    g = torch.Generator().manual_seed(1)
    n = len(report.labels)
    return {"x": torch.randn(n, generator=g).tolist(), "y": torch.randn(n, generator=g).tolist(),
            "labels": report.labels, "groups": report.groups}


def figure_payloads(page: str) -> list:
    """The data arrays of every plotly figure in the page (parsed from the embedded JSON)."""
    out = []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page, re.S):
        out.append(json.loads(m.group(1)))
    return out


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from auto_circuit_dcd.report import write_html

    report = synthetic_report(k_random=True)
    path = write_html(report, tmp_path_factory.mktemp("r") / "sub" / "report.html",
                      extras={"projection": projection(report)})
    assert path.exists() and list(path.parent.iterdir()) == [path]
    return path.read_text(encoding="utf-8")


def test_sections_present(page):
    for title in ["Run summary", "Faithfulness vs circuit size", "Clusters", "Cross-faithfulness",
                  "Edge overlap", "Cluster composition", "Projection of the attribution rows",
                  "Choosing k", "Timings and versions"]:
        assert f"<h2>{title}</h2>" in page, title
    # summary values and the k-selection table (a key only one row has becomes a column)
    assert "<td>tiny-random</td>" in page and ">0.512<" in page
    assert "<th>gap</th>" in page and "kmeans-svd" in page
    assert page.count("n/a") >= 3  # routed CPR, NaN faithfulness cells


def test_figure_data_carries_the_numbers(page):
    figs = figure_payloads(page)
    assert len(figs) == 6  # curves, per-cluster, cross, overlap, composition, projection
    heatmaps = [t for f in figs for t in f if t.get("type") == "heatmap"]
    cross = heatmaps[0]
    # matrix[i][j]: rows are circuits, columns data; the NaN becomes a gap, not a crash
    assert cross["z"][0] == [0.8123, 0.0417, 0.3301]
    assert cross["z"][1][2] is None
    assert cross["text"][1] == ["0.138", "0.927", "n/a"]
    assert "circuit of cluster" in page and "data of cluster" in page
    curves = {t["name"]: t for t in figs[0]}
    assert set(curves) == {"single", "DCD oracle", "DCD routed", "K-random oracle",
                           "K-random routed"}
    assert curves["DCD routed"]["y"][0] is None
    assert curves["single"]["x"] == FRACTIONS
    # per-cluster panel: cluster 2 has no test examples, so its curves are all gaps
    own = [t for t in figs[1] if t["name"] == "own circuit"]
    assert len(own) == 3 and all(v is None for v in own[2]["y"])


def test_self_contained(page):
    assert not re.search(r"<script[^>]+src\s*=", page, re.I)
    assert not re.search(r"<link[^>]+href\s*=\s*[\"']?https?:", page, re.I)
    assert page.count("Plotly.newPlot") == 6
    # plotly.js inlined exactly once
    assert len(re.findall(r"\(function\(root, factory\)|plotly\.js v\d", page)) >= 1
    assert page.count("plotly.js v") <= 2


def test_escapes_malicious_group(page):
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # escaped in the tables
    # ...and present, JSON-escaped, as a trace name in the composition figure
    names = {t.get("name") for f in figure_payloads(page) for t in f}
    assert EVIL in names


def test_no_groups_and_no_extras(tmp_path):
    from auto_circuit_dcd.report import write_html

    report = synthetic_report(groups=False)
    page = write_html(report, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<h2>Projection" not in page and "<h2>Circuits</h2>" not in page
    assert "Cluster sizes (no known groups in this dataset)" in page
    comp = [t for f in figure_payloads(page) for t in f if t.get("type") == "bar"]
    assert len(comp) == 1 and comp[0]["y"] == [5, 4, 3]
    # projection without groups: one panel only
    pr = projection(report)
    page = write_html(report, tmp_path / "p.html", extras={"projection": pr}).read_text()
    scatter = [t for f in figure_payloads(page) for t in f if t.get("type") == "scattergl"]
    assert sorted(t["name"] for t in scatter) == ["0", "1", "2"]
    assert sum(len(t["x"]) for t in scatter) == len(report.labels)


def test_rejects_non_dict(tmp_path):
    from auto_circuit_dcd.report import write_html

    with pytest.raises(TypeError, match="report must be a RunReport"):
        write_html({"model": "m"}, tmp_path / "x.html")


def _mask_state(pm):
    return {w.module_name: (w.patch_mask, w.patch_mask.detach().clone())
            for w in pm.dest_wrappers}


def _kept_edges(fig):
    """Edge names (with scaled scores) drawn in the Sankey, ghost links excluded."""
    out = {}
    for tr in fig.data:
        for lbl, v in zip(tr.link.label, tr.link.value):
            if lbl:
                out[lbl.split("<br>")[0]] = v
    return out


def test_circuit_figure_draws_top_edges_and_keeps_masks(tiny_pm):
    from auto_circuit_dcd.report import circuit_figure

    pm = tiny_pm
    for w in pm.dest_wrappers:  # non-trivial masks, so "unchanged" is a real check
        w.patch_mask.data.uniform_(-1, 1)
    before = _mask_state(pm)
    g = torch.Generator().manual_seed(3)
    ps = pm.new_prune_scores()
    for k in ps:
        ps[k] = torch.randn(ps[k].shape, generator=g)
    ps_copy = {k: v.clone() for k, v in ps.items()}

    fig = circuit_figure(pm, ps, 10)
    assert fig is not None and fig.data[0].type == "sankey"
    # oracle: the 10 edges with the largest |score|, from auto-circuit's own edge list
    expected = sorted(pm.edges, key=lambda e: -abs(ps[e.dest.module_name][e.patch_idx].item()))
    drawn = _kept_edges(fig)
    assert set(drawn) == {e.name for e in expected[:10]}
    assert max(drawn.values()) == pytest.approx(1.0)
    assert not [lbl for lbl in fig.data[0].link.label if "None" in lbl]  # no missing value shown
    after = _mask_state(pm)
    for name, (param, data) in before.items():
        assert after[name][0] is param and torch.equal(after[name][1], data)
    assert all(torch.equal(ps[k], ps_copy[k]) for k in ps)  # input not mutated


def test_circuit_figure_restores_masks_on_error(tiny_pm, monkeypatch):
    import auto_circuit.visualize as viz

    from auto_circuit_dcd.report import circuit_figure

    pm = tiny_pm
    before = _mask_state(pm)

    def broken(model, **kw):
        for w in model.dest_wrappers:  # scribble on the masks, then fail
            w.patch_mask.data.fill_(7.0)
            w.patch_mask = torch.nn.Parameter(w.patch_mask.data.clone())
        raise RuntimeError("boom")

    monkeypatch.setattr(viz, "draw_seq_graph", broken)
    ps = pm.new_prune_scores(1.0)
    with pytest.warns(UserWarning, match="boom"):
        assert circuit_figure(pm, ps, 5) is None
    for name, (param, data) in before.items():
        w = next(w for w in pm.dest_wrappers if w.module_name == name)
        assert w.patch_mask is param and torch.equal(w.patch_mask.data, data)


def test_circuit_figure_declines_what_it_cannot_draw(tiny_pm):
    from auto_circuit_dcd.report import circuit_figure

    with pytest.warns(UserWarning, match="too many"):
        assert circuit_figure(tiny_pm, tiny_pm.new_prune_scores(1.0), 10_000) is None
    with pytest.warns(UserWarning, match="zero"):
        assert circuit_figure(tiny_pm, tiny_pm.new_prune_scores(0.0), 5) is None
    with pytest.raises(ValueError, match="lacks destination modules"):
        circuit_figure(tiny_pm, {}, 5)


def test_page_with_circuit_figures(tiny_pm, tmp_path):
    from auto_circuit_dcd.report import circuit_figure, write_html

    ps = tiny_pm.new_prune_scores()
    for k in ps:
        ps[k] = torch.rand(ps[k].shape) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figs = {0: circuit_figure(tiny_pm, ps, 8), 1: circuit_figure(tiny_pm, ps, 4)}
    page = write_html(synthetic_report(), tmp_path / "c.html",
                      extras={"circuit_figures": figs}).read_text(encoding="utf-8")
    assert "<h2>Circuits</h2>" in page
    sankeys = [t for f in figure_payloads(page) for t in f if t.get("type") == "sankey"]
    assert len(sankeys) == 2


# ------------------------------------------------------------------ what the reader sees
def _cells(page: str) -> list:
    return re.findall(r'<td class="num">([^<]*)</td>', page)


def test_rounding_noise_reads_as_zero_in_tables_and_heatmaps():
    """Planted values: -9.68e-09 (a circuit with no path) and 2.3e-05 print as 0 in the
    score table and the heatmap text; 0.0417 and -0.0144 stay as they are."""
    from auto_circuit_dcd.report import render

    report = synthetic_report()
    report.single.cpr = -9.68e-09
    report.cross_faithfulness.matrix = [[0.8123, -9.68e-09, -0.0144],
                                              [2.3e-05, 0.9266, 0.0417],
                                              [0.2222, 0.0588, 0.7719]]
    page = render(report)
    outside_scripts = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "e-09" not in outside_scripts and "e-05" not in outside_scripts
    cross = next(f for f in figure_payloads(page) if f[0].get("type") == "heatmap")[0]
    assert cross["text"] == [["0.812", "0", "-0.0144"], ["0", "0.927", "0.0417"],
                             ["0.222", "0.0588", "0.772"]]
    assert "%{text}" in cross["hovertemplate"]  # hovering shows the same value
    assert "<td>single circuit</td><td class=\"num\">0</td>" in page


def test_cpr_table_has_k_random_rows():
    from auto_circuit_dcd.report import render

    page = render(synthetic_report(k_random=True))
    for family, cpr, cmd in (("K-random, routed", "0.543", "0.298"),
                             ("K-random, oracle", "0.654", "0.187")):
        row = re.search(re.escape(family) + r'[^<]*</td><td class="num">([^<]*)</td>'
                        r'<td class="num">([^<]*)</td>', page)
        assert row and row.groups() == (cpr, cmd), family
    assert "K-random" not in re.search(r"<h2>Run summary</h2>.*?</section>", render(
        synthetic_report()), re.S).group(0)  # no K-random values, no K-random rows


def test_single_curve_is_drawn_first_and_widest_so_an_equal_curve_shows_inside_it():
    from auto_circuit_dcd.report.figures import faithfulness_curves

    report = synthetic_report(k_random=True)
    report.k_random.faithfulness_oracle = report.single.faithfulness
    traces = faithfulness_curves(report).data
    names = [t.name for t in traces]
    assert names[0] == "single"
    widths = {t.name: t.line.width for t in traces}
    assert all(widths["single"] >= 3 * w for n, w in widths.items() if n != "single")
    # the legend still reads single, DCD, K-random
    legend = [t.name for t in sorted(traces, key=lambda t: t.legendrank)]
    assert legend == ["single", "DCD oracle", "DCD routed", "K-random oracle", "K-random routed"]


def test_choosing_k_is_narrow_and_has_no_column_of_missing_values():
    """The run's selection rows: a single-cluster test and per-clusterer rows whose
    elbow criteria have different names (merge gap, within distance, inertia)."""
    from auto_circuit_dcd.report import render

    report = synthetic_report()
    report.selection = [
        {"method": "single-cluster test", "k": 1, "one_cluster": False, "gap_1": 0.41,
         "gap_2": 1.08, "se_2": 0.015, "reason": "gap statistic: Gap(1) < Gap(2) - s_2"}]
    for method, criterion in (("agglomerative", "merge_gap"), ("divisive", "within_distance"),
                              ("kmeans", "inertia")):
        for k in (2, 3):
            report.selection.append({
                "method": method, "k": k, "silhouette": 0.5 / k, criterion: 10.0 / k,
                "elbow": 10.0 / k, "gap": 1.1 + k / 10, "gap_se": 0.05, "chosen": k == 2,
                "selected": method == "kmeans" and k == 2})
    page = render(report)
    section = re.search(r'<section id="selection">.*?</section>', page, re.S).group(0)
    header = re.findall(r"<th>([^<]*)</th>", section)
    assert header == ["clusterer", "k", "silhouette", "elbow criterion", "gap",
                      "k this clusterer chose", "used"]
    assert "n/a" not in section
    assert "gap statistic: Gap(1) &lt; Gap(2) - s_2" in section
    assert section.count("<tr>") == 1 + 6 and "1.3 ± 0.05" in section


def test_projection_is_declined_with_a_reason_for_few_or_flat_rows():
    """Planted: 3 rows (too few), 12 rows on one line (rank 1), and 12 rows in a plane of
    a 10-dimensional space, whose projection must keep every pairwise distance."""
    import numpy as np

    from auto_circuit_dcd.report import render
    from auto_circuit_dcd.report.figures import projection as project

    rng = np.random.default_rng(0)
    xy, why = project(rng.normal(size=(3, 10)))
    assert xy is None and "3 training example" in why
    line = np.outer(rng.normal(size=12), rng.normal(size=10))
    xy, why = project(line)
    assert xy is None and "fewer than two dimensions" in why
    basis = np.linalg.qr(rng.normal(size=(10, 2)))[0].T
    plane = rng.normal(size=(12, 2)) @ basis + 3.0
    xy, why = project(plane)
    got = np.stack([xy["x"], xy["y"]], 1)
    dist = lambda z: np.linalg.norm(z[:, None] - z[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(got), dist(plane), atol=1e-9)  # float64 SVD of 12 x 10
    page = render(synthetic_report(), {"projection_note": "Not drawn: 3 training examples"})
    section = re.search(r'<section id="projection">.*?</section>', page, re.S).group(0)
    assert "Not drawn: 3 training examples" in section and "plotly-graph-div" not in section


def test_the_logits_node_is_labelled(tiny_pm):
    """The drawn circuit's links into ``Resid End`` (named from the circuit's own edges)
    end at the node labelled "logits"; no used node is left unlabelled."""
    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.model.edges import edge_layout
    from auto_circuit_dcd.report import circuit_figure

    names, layout = edge_layout(tiny_pm)
    scores = torch.zeros(len(names))
    for name in ("Resid Start->A0.1.Q", "A0.1->Resid End", "A1.0->Resid End"):
        scores[names.index(name)] = 1.0
    fig = circuit_figure(tiny_pm, dcd.Circuit(scores, names, layout), 3)
    sankey = fig.data[0]
    labels = list(sankey.node.label)
    real = [i for i, v in enumerate(sankey.link.value) if v > 1e-3]  # ghost links: 1e-6
    into = {labels[sankey.link.target[i]] for i in real}
    assert "logits" in into and labels.count("logits") == 1
    used = {sankey.link.source[i] for i in real} | {sankey.link.target[i] for i in real}
    assert all(labels[i] for i in used)
    assert sum(labels[sankey.link.target[i]] == "logits" for i in real) == 2


def test_a_dataset_shipped_with_the_package_is_named_relative_to_it():
    from pathlib import Path

    from auto_circuit_dcd.report.html import dataset_name
    from auto_circuit_dcd.toy import toy_dataset_path

    assert dataset_name(toy_dataset_path("mixed")) == str(
        Path("auto_circuit_dcd", "toy", "assets", "mixed.json"))
    assert dataset_name("/data/my prompts.json") == "/data/my prompts.json"


def test_circuit_captions_say_what_is_drawn_and_why():
    """Oracle: the captions written out by hand for the planted report (46 edges, p 5%):
    the circuit evaluated at the size (or, at a size not evaluated, the one the run's rule
    makes), its edges of those asked and how the rule chose them."""
    import dataclasses

    from auto_circuit_dcd.report.captions import circuit_caption

    rep = synthetic_report()  # --selection topn, ranked by |score|
    assert circuit_caption(rep, 2) == (
        "the circuit evaluated at 5% of all edges: 2 of 46 edges (the top 2 by |score|, ties "
        "kept; the size of the cross-faithfulness matrix and the per-cluster table)")
    assert circuit_caption(rep, 0).endswith(
        "; nothing to draw at this size, choose a larger --draw-fraction")
    assert circuit_caption(rep, 301).endswith(
        "; not drawn: more than 300 edges do not draw legibly, choose a smaller "
        "--draw-fraction")
    pruned = dataclasses.replace(rep, circuit_selection=dataclasses.replace(
        rep.circuit_selection, rule="topn-prune"))
    assert circuit_caption(pruned, 1) == (
        "the circuit evaluated at 5% of all edges: 1 of 46 edges (of the top 2 by |score|, "
        "those on an input-to-logits path; the size of the cross-faithfulness matrix and the "
        "per-cluster table)")
    wide = dataclasses.replace(rep, config={"draw_fraction": 0.5})
    assert circuit_caption(wide, 23) == (
        "the circuit evaluated at 50% of all edges: 23 of 46 edges (the top 23 by |score|, "
        "ties kept; --draw-fraction; the per-cluster numbers are at 5%)")
    off = dataclasses.replace(rep, config={"draw_fraction": 0.3})
    assert circuit_caption(off, 13, evaluated=False) == (
        "not an evaluated size; the circuit the run's selection rule makes at 30% of all "
        "edges: 13 of 46 edges (the top 13 by |score|, ties kept; --draw-fraction; the "
        "per-cluster numbers are at 5%)")


def _planted_fit():
    """GroupedDiscovery under preprocessing="auto" on two planted groups of rows."""
    import numpy as np

    from auto_circuit_dcd.cluster import GroupedDiscovery

    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(0, 1, (30, 40)) + 6 * np.eye(40)[0],
                   rng.normal(0, 1, (30, 40)) + 6 * np.eye(40)[1]])
    return GroupedDiscovery(random_state=0, max_clusters=4).fit(X)


def test_the_space_search_is_recorded_as_the_estimator_chose_it():
    """Oracle: the fitted estimator's own ``space_selection_`` and ``preprocessing_``; the
    record survives JSON and the typed reader."""
    import dataclasses

    from auto_circuit_dcd.job.assemble import clustering_space
    from auto_circuit_dcd.report.records import ClusteringSpace

    gd = _planted_fit()
    sel = gd.space_selection_
    rec = clustering_space(gd)
    assert (rec.asked, rec.space, rec.clusterer) == ("auto", gd.preprocessing_, gd.method_)
    assert rec.candidates == list(sel.candidates)
    assert sum(c.chosen for c in rec.candidates) == 1
    chosen = next(c for c in rec.candidates if c.chosen)
    assert (chosen.space, chosen.clusterer) == (sel.space, sel.clusterer)
    assert rec.near_tie == sel.near_tie and rec.margin == sel.margin
    assert (rec.runner_up_space, rec.runner_up_clusterer) == (sel.runner_up or (None, None))
    back = ClusteringSpace(**{f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)})
    report = dataclasses.replace(synthetic_report(), clustering_space=back)
    again = type(report).from_dict(report.to_dict())
    assert again.clustering_space.candidates == rec.candidates
    # a named space: no search, the space as given
    named = clustering_space(gd.set_params(preprocessing="binary").fit(gd.embedding_))
    assert (named.asked, named.space, named.candidates) == ("binary", "binary", [])


def test_a_near_tie_is_said_with_the_flag_that_reruns_in_the_other_space():
    """The page shows every candidate row and, for a near tie, the runner-up's space, the
    margin and ``--preprocessing <space>``; the summary says it too; without a near tie
    neither does."""
    import dataclasses

    from auto_circuit_dcd.job.assemble import clustering_space
    from auto_circuit_dcd.report import render
    from auto_circuit_dcd.report.summary import summary_table

    rec = clustering_space(_planted_fit())
    other = "binary" if rec.space != "binary" else "l2"
    tie = dataclasses.replace(rec, near_tie=True, runner_up_space=other,
                              runner_up_clusterer="kmeans", margin=0.0123, margin_se=0.0071)
    page = render(dataclasses.replace(synthetic_report(), clustering_space=tie))
    section = re.search(r'<section id="space">.*?</section>', page, re.S).group(0)
    rows = re.findall(r"<tr><td>([a-z0-9]+)</td><td>([a-z]+)</td>", section)
    assert rows == [(c.space, c.clusterer) for c in rec.candidates]
    sentence = (f"the {other} space (kmeans) groups the examples differently and its "
                f"stability is only 0.012 (standard error 0.007) below the chosen {rec.space} "
                f"space&#x27;s; to see its clusters, rerun with --preprocessing {other}")
    assert sentence in section
    text = summary_table(dataclasses.replace(synthetic_report(), clustering_space=tie))
    assert f"near tie: the {other} space" in text and f"--preprocessing {other}" in text
    plain = dataclasses.replace(synthetic_report(), clustering_space=rec)
    assert "near tie" not in summary_table(plain)
    assert "rerun with" not in re.search(r'<section id="space">.*?</section>', render(plain),
                                         re.S).group(0)
