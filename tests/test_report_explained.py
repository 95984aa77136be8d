"""The page's reading aids on a planted report: the first paragraph, definitions, the
section on what each cluster is (every prompt escaped), the diagrams drawn from edge names,
the k-choice notes and shares as percentages."""

import html
import json
import re

import numpy as np
from test_report import EVIL, figure_payloads, synthetic_report


def unit(name, d, q, a=1.0, b=0.5):
    return {"name": name, "mean_a": a, "mean_b": b, "difference": a - b, "effect_size": d,
            "p_value": q, "q_value": q}


def table_of(higher, lower=(), n_tested=20):
    return {"n_tested": n_tested, "n_higher": len(higher) + 3, "n_lower": len(lower),
            "higher": list(higher), "lower": list(lower)}


def exemplar(i, cluster, clean, answer, other):
    return {"id": f"e{i}", "cluster": cluster, "clean": clean, "corrupt": clean + " x",
            "answers": [answer], "wrong_answers": [" no"], "distance": 0.1 * i,
            "margin": 0.5, "other_cluster": other, "silhouette": 0.4}


def synthetic_descriptions(evil: str = EVIL) -> dict:
    """Descriptions of the synthetic report's 3 clusters (sizes 5, 4, 3), a planted
    string in a prompt, an answer, a field value, an id and a skipped field's reason."""
    contrasts = []
    for c in range(3):
        contrasts.append({
            "cluster": c, "other": None, "n_cluster": [5, 4, 3][c], "n_other": 12 - [5, 4, 3][c],
            "nodes": table_of([unit(f"a0.h{c}", 3.0 - c, 2.8e-56), unit("m1", 1.0, 0.01)],
                              [unit("a1.h1", -1.5, 0.002, 0.1, 0.9)]),
            "edges": table_of([unit(f"a0.h{c}->a1.h0<q>", 2.5, 1.2e-3),
                               unit(f"input->a0.h{c}<v>", 2.0, 0.03)]),
        })
    ex = [{"cluster": 0, "size": 5,
           "typical": [exemplar(0, 0, evil, " <ans>", 1), exemplar(1, 0, "plain & simple", " a", 1)],
           "ambiguous": [exemplar(2, 0, "between", " b", 2)]},
          {"cluster": 1, "size": 4, "typical": [exemplar(5, 1, "one", " c", 0)], "ambiguous": []},
          {"cluster": 2, "size": 3, "typical": [exemplar(9, 2, "two", " d", 0)], "ambiguous": []}]
    ex[0]["typical"][0]["id"] = evil
    return {
        "n_examples": 12, "n_noise": 0, "clusters": [0, 1, 2], "sizes": [5, 4, 3],
        "exemplars": ex,
        "fields": [{"field": "template", "source": "dataset", "kind": "categorical",
                    "n_rows": 12, "clusters": [0, 1, 2], "categories": [evil, "B"],
                    "counts": [[5, 0], [0, 4], [1, 2]], "cramers_v": 0.93,
                    "adjusted_mutual_info": 0.71, "test": "chi-square permutation",
                    "statistic": 14.2, "p_value": 1e-4, "q_value": 2e-4, "associated": True,
                    "typical": [{"cluster": 0, "category": evil, "count": 5, "n": 5,
                                 "share": 1.0, "overall_share": 0.5},
                                {"cluster": 1, "category": "B", "count": 4, "n": 4,
                                 "share": 1.0, "overall_share": 0.5}]}],
        "skipped_fields": {"split": "one value", "note": evil},
        "contrasts": contrasts,
        "circuit_differences": [{"a": 0, "b": 1, "size": 2, "selection": "topn",
                                 "ranking": "abs", "n_a": 2, "n_b": 2, "n_only_a": 1,
                                 "n_only_b": 1, "n_shared": 1, "jaccard": 1 / 3,
                                 "only_a": ["a0.h0->logits"], "only_b": ["a0.h1->logits"],
                                 "shared": ["input->a1.h0<v>"]}],
        "settings": {"alpha": 0.05, "n_permutations": 1000, "min_p_value": 1 / 1001,
                     "scores": "abs", "node_edges": "out", "pairs": True, "n_exemplars": 3,
                     "top": 20, "n_bins": 5, "random_state": 0},
    }


def described_report(evil: str = EVIL):
    import dataclasses

    from auto_circuit_dcd.explain import ClusterDescriptions

    report = synthetic_report(k_random=True)
    return dataclasses.replace(report,
                               cluster_descriptions=ClusterDescriptions.from_dict(
                                   synthetic_descriptions(evil)),
                               k_choices={"kmeans-svd": {"silhouette": 3, "elbow": 2, "gap": 3,
                                                         "combined": 3, "rule": "silhouette"}})


def _section(page: str, anchor: str) -> str:
    return re.search(rf'<section id="{anchor}">.*?</section>', page, re.S).group(0)


def test_every_prompt_and_value_is_escaped():
    """The planted string (a script tag) appears only escaped: in the prompt, the answer,
    the exemplar id, the field value, the skipped field's reason and the first paragraph."""
    from auto_circuit_dcd.report import render

    evil = '<script>alert(1)</script> & "q" <b>'
    page = render(described_report(evil))
    assert evil not in page and "<b>" not in page
    shown = html.escape(evil, quote=True)
    section = _section(page, "described")
    assert section.count(shown) >= 5  # prompt (cell), id, field value, skipped reason, ...
    assert f"<td>{html.escape(' <ans>')}</td>" in section
    assert shown in re.search(r'<div class="findings".*?</div>', page, re.S).group(0)


def test_the_section_shows_each_clusters_exemplars_units_and_differences():
    """Oracle: the planted records, as the tables must show them (q-values never rounded
    to 0, effect sizes to 3 digits, shares as percentages)."""
    from auto_circuit_dcd.report import render

    page = render(described_report())
    section = _section(page, "described")
    for c in range(3):
        block = re.search(rf'<div class="cluster-described" id="described-{c}">.*?</div>\s*'
                          r'(?=<div class="cluster-described"|<h3>|</section>)',
                          section, re.S).group(0)
        assert f"<h3>Cluster {c} ({[5, 4, 3][c]} training prompts)</h3>" in block
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", block)
        # nodes: the planted head first (d 3 - c, q 2.8e-56), then m1, then a lower one
        i = cells.index(f"a0.h{c}")
        assert cells[i - 1:i + 7] == ["higher here", f"a0.h{c}", "attention head", "1",
                                      "0.5", "0.5", str(3 - c), "2.8e-56"]
        assert cells[cells.index("a1.h1") - 1] == "lower here"
        j = cells.index(f"a0.h{c}-&gt;a1.h0&lt;q&gt;")
        assert cells[j + 1] == "query input of a1.h0" and cells[j + 6] == "0.0012"
        assert cells[cells.index(f"input-&gt;a0.h{c}&lt;v&gt;") + 1] == f"value input of a0.h{c}"
        assert ("5 nodes higher and 1 lower in this cluster than elsewhere (q &lt;= 0.05) of 20 "
                "tested; the 2 and 1 with the largest effect sizes shown.") in block
    fields = re.findall(r"<td[^>]*>([^<]*)</td>", section[:section.index("cluster-described")])
    assert fields[:9] == ["template", "dataset", "categorical", "12", "0.93", "0.71",
                          "chi-square permutation", "0.0002", "yes"]
    assert fields[10] == "B: 4 of 4 (100%; 50% of all)" and fields[11] == "-"
    assert "Not tested: split (one value)" in section
    diff = re.search(r"<h3>Circuit differences</h3>.*", section, re.S).group(0)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", diff)[:8] == ["0 and 1", "2", "2", "2", "1",
                                                             "1", "1", "0.333"]
    assert "only in cluster 0&#x27;s circuit (1): a0.h0-&gt;logits" in diff
    assert "in both circuits (1): input-&gt;a1.h0&lt;v&gt;" in diff


def test_a_report_without_descriptions_says_so():
    from auto_circuit_dcd.report import render

    section = _section(render(synthetic_report()), "described")
    assert "holds no cluster descriptions" in section and "<table" not in section


def test_the_first_paragraph_says_what_was_found():
    """Oracle: the planted report's k, clusterer, k rule, ARI, f at 5% per cluster and
    CPRs, and one sentence per cluster from describe_in_words; no verdict yet."""
    from auto_circuit_dcd.explain import describe_in_words
    from auto_circuit_dcd.report.findings import findings, verdict_sentences

    report = described_report()
    report.selection[1]["selected"] = True  # kmeans-svd at k = 3 was used
    said = findings(report)
    assert said[0] == ("DCD grouped the 12 training prompts by their per-prompt eap edge "
                       "attributions into k = 3 clusters (kmeans-svd; k chosen as the k with "
                       "the largest mean silhouette).")
    assert said[1:4] == describe_in_words(report.cluster_descriptions)
    f5 = [round(0.95 * (1 - np.exp(-0.4)) / (1 - np.exp(-8)), 4),
          round(0.7 * (1 - np.exp(-0.4)) / (1 - np.exp(-8)), 4),
          round(0.9 * (1 - np.exp(-0.4)) / (1 - np.exp(-8)), 4),
          round(0.6 * (1 - np.exp(-0.4)) / (1 - np.exp(-8)), 4)]
    assert said[4] == ("Against the dataset's known groups, which the clustering never saw, "
                       "the clusters agree with ARI 0.512 (1: the same partition, 0: chance) "
                       "and purity 0.75.")
    assert said[5] == (f"At 5% of edges, on the test prompts routed to each cluster, the "
                       f"cluster's own circuit keeps faithfulness {f5[0]:.3g} on cluster 0 "
                       f"(the single circuit {f5[1]:.3g}), {f5[2]:.3g} on cluster 1 (the "
                       f"single circuit {f5[3]:.3g}).")
    assert said[6] == ("Over all circuit sizes, CPR is n/a for DCD (routed) against 0.61 for "
                       "the single circuit and 0.543 for a random split into 3.")
    assert len(said) == 7 and verdict_sentences(report) == []


def test_terms_are_defined_where_their_numbers_first_appear():
    from auto_circuit_dcd.report import render
    from auto_circuit_dcd.report.glossary import FIRST_USE, TERMS

    page = render(described_report())
    defined = re.findall(r"<dt>([^<]*):</dt>", page)
    assert len(defined) == len(set(defined))  # each once
    for anchor, terms in FIRST_USE.items():
        section = _section(page, anchor)
        for t in terms:
            assert f"<dt>{html.escape(t)}:</dt><dd>{html.escape(TERMS[t])}</dd>" in section
    # a report without K-random circuits or known groups defines neither
    bare = render(synthetic_report(groups=False))
    assert "<dt>K-random:</dt>" not in bare and "<dt>ARI:</dt>" not in bare
    assert "<dt>faithfulness:</dt>" in bare


def test_choosing_k_says_what_each_elbow_is_and_which_criterion_took_k():
    from auto_circuit_dcd.report import render

    report = described_report()
    report.selection = [
        {"method": "kmeans", "k": k, "silhouette": s, "inertia": w, "elbow": w, "gap": 1.0,
         "gap_se": 0.1, "chosen": k == 3, "selected": k == 3}
        for k, s, w in ((2, 0.3, 40.0), (3, 0.5, 12.0))]
    report.k_choices = {"kmeans": {"silhouette": 3, "elbow": 2, "gap": 3, "combined": 3,
                                   "rule": "silhouette"}}
    section = _section(render(report), "selection")
    assert ("<li>kmeans: its elbow value is the inertia, summed squared distance of rows to "
            "their cluster&#x27;s centre (its elbow: the bend of the curve over k); k chosen "
            "by each criterion: silhouette 3, elbow 2, gap 3; it took k = 3 (--k-rule "
            "silhouette: chosen as the k with the largest mean silhouette); the run used "
            "it.</li>") in section
    assert "<td>inertia 40</td>" in section and "<td>inertia 12</td>" in section


def test_shares_read_as_percentages():
    from auto_circuit_dcd.report import render

    report = synthetic_report()
    report.routing.train_agreement = 0.875
    routing = _section(render(report), "routing")
    assert "<th>training rows the rule sends to their own cluster</th><td>87.5%</td>" in routing


def test_a_diagram_places_nodes_by_layer_and_shows_mib_names():
    """Planted edges over input, two layers' heads and MLPs and the logits: nodes left to
    right in computation order, one link per edge with its width, colour and escaped hover."""
    from auto_circuit_dcd.report.diagram import NODE_KINDS, DrawnEdge, edge_diagram

    edges = [DrawnEdge("input->a0.h1<v>", 2.0, "red", "input->a0.h1<v>\nd 2"),
             DrawnEdge("a0.h1->m0", 1.0, "blue", "x"),
             DrawnEdge("m0->a1.h0<q>", 0.5, "blue", "y"),
             DrawnEdge("input->a1.h0<k>", 0.25, "blue", "z"),
             DrawnEdge("a1.h0->logits", 1.5, "blue", "w"),
             DrawnEdge("a0.h0->logits", 0.0, "blue", "zero width: left out")]
    sankey = edge_diagram(edges).data[0]
    labels = list(sankey.node.label)
    assert labels == ["input", "a0.h1", "m0", "a1.h0", "logits"]
    x = dict(zip(labels, sankey.node.x))
    assert x["input"] < x["a0.h1"] < x["m0"] < x["a1.h0"] < x["logits"]
    assert list(sankey.node.color) == [NODE_KINDS[k][0] for k in
                                       ("input", "head", "mlp", "head", "logits")]
    pairs = [(labels[s], labels[t]) for s, t in zip(sankey.link.source, sankey.link.target)]
    assert pairs == [("input", "a0.h1"), ("a0.h1", "m0"), ("m0", "a1.h0"), ("input", "a1.h0"),
                     ("a1.h0", "logits")]
    assert list(sankey.link.value) == [2.0, 1.0, 0.5, 0.25, 1.5]
    assert sankey.link.customdata[0] == "input-&gt;a0.h1&lt;v&gt;<br>d 2"
    assert edge_diagram([]) is None
    assert edge_diagram([DrawnEdge("a0.h0->logits", 1.0, "blue", "")] * 301) is None


def test_circuit_edges_are_the_masked_edges_scaled_by_the_largest():
    from auto_circuit_dcd.report.diagram import NEGATIVE, POSITIVE, circuit_edges

    names = ["Resid Start->A0.1.V", "A0.1->Resid End", "A0.0->A1.1.Q", "MLP 0->Resid End"]
    scores = np.array([2.0, -4.0, 8.0, 1.0])
    drawn = circuit_edges(names, scores, np.array([True, True, False, True]))
    assert [(e.name, e.value, e.colour) for e in drawn] == [
        ("input->a0.h1<v>", 0.5, POSITIVE), ("a0.h1->logits", 1.0, NEGATIVE),
        ("m0->logits", 0.25, POSITIVE)]
    assert drawn[1].hover == "a0.h1->logits\nscore -4 (100% of the largest drawn)"


def test_distinguishing_edges_colour_each_clusters_edges_over_the_circuits():
    """Planted: per cluster its contrast's higher edges in its colour, the rest of the
    circuits' union in grey (largest first, at most ``base``), width the largest mean."""
    from auto_circuit_dcd.explain import ClusterDescriptions
    from auto_circuit_dcd.report.diagram import SHARED, cluster_colour, distinguishing_edges

    desc = ClusterDescriptions.from_dict(synthetic_descriptions())
    names = ["A0.0->A1.0.Q", "A0.1->A1.0.Q", "A0.2->A1.0.Q", "Resid Start->A0.0.V",
             "A1.0->Resid End", "A1.1->Resid End", "MLP 0->Resid End"]
    means = {0: np.array([1.0, 0.1, 0.1, 0.3, 2.0, 0.5, 0.0]),
             1: np.array([0.2, 0.9, 0.1, 0.1, 1.0, 0.7, 0.0]),
             2: np.array([0.1, 0.1, 0.8, 0.1, 1.0, 0.2, 0.0])}
    masks = {c: np.array([False, False, False, False, True, c == 1, True]) for c in range(3)}
    drawn = {e.name: e for e in distinguishing_edges(desc, names, means, masks, base=1)}
    assert drawn["a0.h0->a1.h0<q>"].colour == cluster_colour(0)
    assert drawn["a0.h1->a1.h0<q>"].colour == cluster_colour(1)
    assert drawn["a0.h2->a1.h0<q>"].colour == cluster_colour(2)
    assert drawn["input->a0.h0<v>"].colour == cluster_colour(0)  # a higher edge of cluster 0
    assert drawn["a1.h0->logits"].colour == SHARED and drawn["a1.h0->logits"].value == 2.0
    assert "a1.h1->logits" not in drawn  # base=1: only the largest of the union's rest
    assert "m0->logits" not in drawn  # zero everywhere
    assert [e.value for e in drawn.values() if e.colour != SHARED] == [1.0, 0.9, 0.8, 0.3]
    assert "higher in cluster 0 than elsewhere: d = 2.50, q = 0.0012" in \
        drawn["a0.h0->a1.h0<q>"].hover
    assert "in the circuits of clusters 0, 1, 2" in drawn["a1.h0->logits"].hover


def test_the_page_draws_the_distinguishing_diagram_with_its_legend():
    from auto_circuit_dcd.report import render
    from auto_circuit_dcd.report.diagram import DrawnEdge, edge_diagram

    fig = edge_diagram([DrawnEdge("a0.h0->logits", 1.0, "blue", "x")])
    page = render(described_report(), {"distinguishing_figure": fig,
                                       "distinguishing_caption": "planted caption"})
    section = _section(page, "described")
    assert "planted caption" in section and section.count('class="swatch"') == 4 + 3 + 1
    assert any(t.get("type") == "sankey" for f in figure_payloads(section) for t in f)
    assert json.dumps("higher in cluster 2")[1:-1] in section
