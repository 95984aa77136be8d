"""Cluster descriptions against independent oracles: scipy's statistics, hand-computed
values, and planted structure (a field that is one cluster, an edge that is one cluster's,
a prompt between two clusters) that must be found, with fields and edges that are
independent of the clusters not reported."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

import auto_circuit_dcd as dcd
from auto_circuit_dcd.attribution.matrix import AttributionMatrix
from auto_circuit_dcd.circuits.circuit import Circuit
from auto_circuit_dcd.data import Example
from auto_circuit_dcd.explain import ClusterDescriptions, describe_clusters, describe_in_words
from auto_circuit_dcd.explain.circuit_diff import circuit_difference
from auto_circuit_dcd.explain.contrasts import contrasts, node_values
from auto_circuit_dcd.explain.exemplars import exemplars
from auto_circuit_dcd.explain.fields import cramers_v, field_associations
from auto_circuit_dcd.explain.inputs import DescriptionError, FittedClusters
from auto_circuit_dcd.explain.permutation import benjamini_hochberg, two_group_test
from auto_circuit_dcd.explain.prompts import prompt_table
from auto_circuit_dcd.model.edges import EdgeLayout

# input, one head A0.0 (Q and K inputs), one MLP, the logits; edge j is column j:
#   0 Resid Start->A0.0.Q   1 Resid Start->A0.0.K   2 Resid Start->MLP 0   3 A0.0->MLP 0
#   4 Resid Start->Resid End   5 A0.0->Resid End   6 MLP 0->Resid End
NAMES = ["Resid Start->A0.0.Q", "Resid Start->A0.0.K", "Resid Start->MLP 0", "A0.0->MLP 0",
         "Resid Start->Resid End", "A0.0->Resid End", "MLP 0->Resid End"]
MIB = ["input->a0.h0<q>", "input->a0.h0<k>", "input->m0", "a0.h0->m0", "input->logits",
       "a0.h0->logits", "m0->logits"]
LAYOUT = EdgeLayout((("blocks.0.hook_q_input", (1, 1), 0, 1),
                     ("blocks.0.hook_k_input", (1, 1), 1, 2),
                     ("blocks.0.hook_mlp_in", (2,), 2, 4),
                     ("blocks.0.hook_resid_post", (3,), 4, 7)))


def fitted(labels, embedding=None):
    labels = np.asarray(labels)
    emb = np.asarray(embedding if embedding is not None else labels[:, None], dtype=float)
    clusters = sorted(set(labels.tolist()) - {-1})
    cent = np.stack([emb[labels == c].mean(0) for c in clusters])
    return FittedClusters(ids=list(range(len(labels))), labels=labels, clusters=tuple(clusters),
                          embedding=emb, centroids=cent)


def examples(n, lengths=None):
    out = []
    for i in range(n):
        length = 5 if lengths is None else lengths[i]
        clean = torch.arange(length)
        corrupt = clean.clone()
        corrupt[i % (length - 1) + 1] = 99
        out.append(Example(i, clean, corrupt, torch.tensor([7]), torch.tensor([8])))
    return out


# ------------------------------------------------------------------ permutation tests
def test_statistics_match_scipy_and_hand_formulas():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(30, 4))
    X[:12, 0] += 1.0
    in_a = np.arange(30) < 12
    t = two_group_test(X, in_a, ~in_a, n_permutations=10, rng=rng)
    a, b = X[in_a], X[~in_a]
    welch = stats.ttest_ind(a, b, equal_var=False).statistic
    np.testing.assert_allclose(t.statistic, welch, rtol=1e-9)
    pooled = np.sqrt((11 * a.var(0, ddof=1) + 17 * b.var(0, ddof=1)) / 28)
    np.testing.assert_allclose(t.effect_size, (a.mean(0) - b.mean(0)) / pooled, rtol=1e-9)
    np.testing.assert_allclose(t.mean_a, a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(t.mean_b, b.mean(0), rtol=1e-12)
    s = t.swapped()
    np.testing.assert_allclose(s.statistic, -welch, rtol=1e-9)
    assert np.array_equal(s.p_value, t.p_value) and (s.n_a, s.n_b) == (18, 12)


def test_permutation_p_values_match_scipy_permutation_test():
    rng = np.random.RandomState(2)
    X = rng.normal(size=(24, 3))
    X[:10, 0] += 0.6
    X[:10, 1] += 0.3
    in_a = np.arange(24) < 10
    ours = two_group_test(X, in_a, ~in_a, n_permutations=4000, rng=rng).p_value

    def abs_welch(x, y, axis):  # two-sided as |t| >= |t_obs|
        return np.abs(stats.ttest_ind(x, y, equal_var=False, axis=axis).statistic)

    ref = stats.permutation_test((X[in_a], X[~in_a]), abs_welch, vectorized=True,
                                 n_resamples=4000, alternative="greater",
                                 random_state=3).pvalue
    assert ours.min() < 0.5  # a column where the tests have something to agree on
    np.testing.assert_allclose(ours, ref, atol=0.03)


def test_planted_columns_are_found_and_the_others_are_not():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 300))
    planted = np.arange(0, 300, 20)  # 15 columns, 3 standard deviations higher in a
    in_a = np.arange(40) < 20
    X[np.ix_(in_a, planted)] += 3.0
    t = two_group_test(X, in_a, ~in_a, n_permutations=1000, rng=rng)
    found = set(np.flatnonzero(benjamini_hochberg(t.p_value) <= 0.05).tolist())
    assert set(planted.tolist()) <= found
    assert len(found - set(planted.tolist())) <= 1  # false discoveries: FDR 5% of 15


def test_constant_columns_and_single_rows_are_not_tested():
    X = np.zeros((6, 2))
    X[:, 1] = [1, 2, 3, 4, 5, 7]
    in_a = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    t = two_group_test(X, in_a, ~in_a, n_permutations=50, rng=np.random.RandomState(0))
    assert t.tested.tolist() == [False, True] and math.isnan(t.p_value[0])
    one = np.array([1, 0, 0, 0, 0, 0], dtype=bool)
    t = two_group_test(X, one, ~one, n_permutations=50, rng=np.random.RandomState(0))
    assert not t.tested.any() and np.isnan(t.p_value).all()
    assert t.difference[1] == pytest.approx(1 - 21 / 5)


# --------------------------------------------------------------------- nodes, contrasts
def test_node_values_sum_the_edges_a_node_leaves_or_enters():
    g = Circuit(torch.zeros(7), NAMES, LAYOUT).graph
    s = torch.tensor([[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]], dtype=torch.float64)
    out, names = node_values(s, g, "out")
    assert names == ["input", "a0.h0", "m0"]
    assert out[0].tolist() == [1 + 2 + 4 + 16, 8 + 32, 64]
    inn, names = node_values(s, g, "in")
    assert names == ["a0.h0", "m0", "logits"]
    assert inn[0].tolist() == [1 + 2, 4 + 8, 16 + 32 + 64]
    both, names = node_values(s, g, "both")
    assert dict(zip(names, both[0].tolist()))["a0.h0"] == 1 + 2 + 8 + 32


def test_contrasts_find_a_planted_cluster_edge_and_its_node():
    rng = np.random.RandomState(0)
    labels = np.repeat([0, 1, 2], 20)
    X = rng.normal(size=(60, 7))
    X[labels == 2, 3] += 4.0  # A0.0 -> MLP 0 carries more in cluster 2
    g = Circuit(torch.zeros(7), NAMES, LAYOUT).graph
    tables = contrasts(torch.as_tensor(X), NAMES, g, fitted(labels), values="signed",
                       n_permutations=500, rng=rng)
    assert [(c.cluster, c.other) for c in tables] == [(0, None), (1, None), (2, None),
                                                      (0, 1), (0, 2), (1, 2)]
    by = {(c.cluster, c.other): c for c in tables}
    two = by[(2, None)]
    assert two.edges.higher[0].name == "a0.h0->m0" and two.nodes.higher[0].name == "a0.h0"
    assert two.edges.higher[0].mean_a == pytest.approx(X[labels == 2, 3].mean())
    assert by[(0, 2)].edges.lower[0].name == "a0.h0->m0"
    assert by[(0, 1)].edges.n_higher + by[(0, 1)].edges.n_lower == 0  # same distribution
    assert (two.n_cluster, two.n_other) == (20, 40)


def test_noise_rows_are_in_no_group():
    labels = np.array([0] * 10 + [1] * 10 + [-1] * 5)
    X = np.random.RandomState(0).normal(size=(25, 7))
    g = Circuit(torch.zeros(7), NAMES, LAYOUT).graph
    tables = contrasts(torch.as_tensor(X), NAMES, g, fitted(labels), n_permutations=20)
    assert [(c.n_cluster, c.n_other) for c in tables] == [(10, 10), (10, 10), (10, 10)]


# -------------------------------------------------------------------------- exemplars
def test_typical_and_ambiguous_prompts_by_hand():
    emb = np.array([[0, 0], [1, 0], [-1, 0], [0, 1.5], [6, 0],      # cluster 0
                    [10, 0], [11, 0], [9, 0], [10, 1], [10, -1.2]])  # cluster 1
    labels = np.array([0] * 5 + [1] * 5)
    fit = fitted(labels, emb)
    table = prompt_table(list(range(10)), examples(10))
    out = exemplars(fit, table, n=2)
    c0, c1 = fit.centroids
    assert np.allclose(c0, [6 / 5, 1.5 / 5])
    d_own = np.linalg.norm(emb[:5] - c0, axis=1)
    assert [e.id for e in out[0].typical] == list(np.argsort(d_own)[:2])
    worst = out[0].ambiguous[0]  # (6, 0) lies between the centres
    assert worst.id == 4 and worst.other_cluster == 1
    assert worst.margin == pytest.approx(np.linalg.norm(emb[4] - c1) - np.linalg.norm(emb[4] - c0))
    from sklearn.metrics import silhouette_samples
    assert worst.silhouette == pytest.approx(silhouette_samples(emb, labels)[4])
    assert not {e.id for e in out[0].typical} & {e.id for e in out[0].ambiguous}


# ----------------------------------------------------------------------------- fields
def test_cramers_v_by_hand_and_against_scipy():
    assert cramers_v(np.array([[10, 0], [0, 10]]), 20.0) == pytest.approx(1.0)
    assert cramers_v(np.array([[5, 5], [5, 5]]), 0.0) == 0.0
    table = np.array([[3000, 2000, 1000], [1500, 2500, 3000]])
    chi2 = stats.chi2_contingency(table, correction=False)[0]
    plain = stats.contingency.association(table, method="cramer")
    assert cramers_v(table, chi2) == pytest.approx(plain, abs=5e-4)  # correction ~ 1/n
    assert cramers_v(table, chi2) < plain


def test_a_planted_field_comes_first_and_independent_fields_are_not_associated():
    rng = np.random.RandomState(0)
    labels = np.repeat([0, 1, 2], 30)
    template = np.where(labels == 0, "T1", rng.choice(["T2", "T3", "T4"], size=90))
    balanced = np.tile(["x", "y", "z"], 30)  # the same 10/10/10 in every cluster
    noise = rng.choice(["p", "q"], size=90)
    length = rng.normal(size=90)  # numeric, independent
    out, skipped = field_associations(
        {"noise": ("dataset", noise.tolist()), "template": ("dataset", template.tolist()),
         "balanced": ("dataset", balanced.tolist()),
         "length": ("derived", length.tolist())}, labels, rng=rng)
    assert out[0].field == "template" and out[0].associated and out[0].cramers_v > 0.6
    assert out[0].typical[0].category == "T1" and out[0].typical[0].share == 1.0
    by = {f.field: f for f in out}
    assert not by["balanced"].associated and by["balanced"].p_value == pytest.approx(1.0)
    assert by["balanced"].cramers_v == 0.0
    assert not by["noise"].associated and not by["length"].associated
    assert by["length"].kind == "numeric" and by["length"].test == "kruskal-wallis"
    assert np.array(by["template"].counts).sum() == 90 and skipped == {}


def test_null_fields_are_rarely_reported():
    """100 fields independent of three clusters: BH at 5% reports almost none."""
    rng = np.random.RandomState(5)
    labels = rng.randint(0, 3, size=120)
    fields = {f"f{i}": ("dataset", rng.choice(list("abcd"), size=120).tolist())
              for i in range(100)}
    out, _ = field_associations(fields, labels, n_permutations=200, rng=rng)
    assert sum(f.associated for f in out) <= 1


def test_small_counts_use_the_permutation_test():
    labels = np.array([0] * 7 + [1] * 7)
    values = ["u"] * 6 + ["v"] + ["u"] + ["v"] * 6
    (f,), _ = field_associations({"t": ("dataset", values)}, labels, n_permutations=4000)
    assert f.test == "chi-square permutation"
    fisher = stats.fisher_exact([[6, 1], [1, 6]]).pvalue  # the same ordering on this table
    assert f.p_value == pytest.approx(fisher, abs=0.01)


def test_numeric_fields_with_a_shift_and_the_skipped_fields():
    rng = np.random.RandomState(0)
    labels = np.repeat([0, 1], 40)
    x = rng.normal(size=80) + 2.0 * labels
    few = (labels + rng.randint(0, 2, 80)).tolist()  # 3 values: a categorical field
    out, skipped = field_associations(
        {"x": ("dataset", x.tolist()), "few": ("dataset", few),
         "const": ("dataset", [1] * 80), "id": ("dataset", [f"e{i}" for i in range(80)]),
         "only0": ("dataset", [1.0 if c == 0 else None for c in labels]),
         "absent": ("dataset", [None] * 80)}, labels)
    by = {f.field: f for f in out}
    assert by["x"].associated and by["x"].kind == "numeric" and len(by["x"].categories) == 5
    assert by["few"].kind == "categorical" and by["few"].categories == ["0", "1", "2"]
    assert set(skipped) == {"const", "id", "only0", "absent"}
    assert "identifier" in skipped["id"] and "cluster 0" in skipped["only0"]


# ---------------------------------------------------------------------------- prompts
def test_prompt_table_from_a_dataset_and_from_tokens():
    exs = examples(3, lengths=[4, 5, 6])
    data = {"prompts": [{"clean": f"c{i}", "corrupt": f"x{i}", "answers": [" a"],
                         "wrong_answers": [" b"], "template": i % 2, "id": i} for i in range(3)]}
    t = prompt_table([2, 0], exs, dataset=data)
    assert t.clean == ["c2", "c0"] and t.fields == {"template": [0, 0]}
    assert t.derived["token_length"] == [6, 4]
    assert t.derived["divergence_position"] == [3, 1]  # corrupt[i % (len - 1) + 1] = 99
    assert t.derived["n_diverging_tokens"] == [1, 1] and t.derived["answer_token"] == [" a"] * 2
    plain = prompt_table([1], exs)
    assert plain.clean == ["0 1 2 3 4"] and plain.answers == [["7"]] and plain.fields == {}
    with pytest.raises(DescriptionError, match="not in the examples"):
        prompt_table([5], exs)


# -------------------------------------------------------------------- circuit differences
def test_circuit_difference_sets_by_hand_and_at_a_size():
    a = Circuit(torch.tensor([0.9, 0.1, 0.0, 0.0, 0.0, 0.8, 0.0]), NAMES, LAYOUT)
    b = Circuit(torch.tensor([0.7, 0.6, 0.0, 0.0, 0.0, 0.0, 0.2]), NAMES, LAYOUT)
    d = circuit_difference(0, 1, a, b, size=2, selection="topn")
    # a: edges 0, 5; b: edges 0, 1
    assert (d.only_a, d.only_b, d.shared) == (["a0.h0->logits"], ["input->a0.h0<k>"],
                                              ["input->a0.h0<q>"])
    assert d.jaccard == pytest.approx(1 / 3) and (d.n_a, d.n_b) == (2, 2)
    sel = a.select("topn-prune", 2)
    d = circuit_difference(0, 1, sel, b.with_mask(torch.zeros(7, dtype=torch.bool)))
    assert d.only_a == [MIB[i] for i in (0, 5)] and d.size is None and d.selection == "given"


# --------------------------------------------------------------------- the entry point
def _matrix_and_fit(n=40, seed=0):
    rng = np.random.RandomState(seed)
    labels = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, 7))
    X[labels == 1, 5] += 3.0
    A = AttributionMatrix(torch.tensor(X, dtype=torch.float32), NAMES, layout=LAYOUT)
    gd = SimpleNamespace(labels_=labels, embedding_=X[:, [5]], example_ids_=list(range(n)),
                         centroids_=np.array([[X[labels == c, 5].mean()] for c in (0, 1)]))
    exs = examples(n)
    data = [{"clean": f"p{i}", "corrupt": f"q{i}", "answers": [" y"], "wrong_answers": [" n"],
             "kind": "K1" if labels[i] else "K0", "id": i} for i in range(n)]
    return A, gd, exs, data


def test_describe_clusters_end_to_end_and_its_json():
    A, gd, exs, data = _matrix_and_fit()
    d = dcd.describe_clusters(A, gd, exs, dataset=data, size=2, n_permutations=200)
    assert d.clusters == [0, 1] and d.sizes == [20, 20] and d.n_noise == 0
    assert d.fields[0].field == "kind" and d.fields[0].associated
    assert d.contrast(1).edges.higher[0].name == "a0.h0->logits"
    assert d.contrast(0, 1).edges.lower[0].name == "a0.h0->logits"
    assert len(d.circuit_differences) == 1 and d.circuit_differences[0].size == 2
    assert d.settings.min_p_value == pytest.approx(1 / 201)
    assert [e.cluster for e in d.exemplars] == [0, 1] and d.exemplars[0].typical[0].clean[0] == "p"
    text = d.to_json()
    again = ClusterDescriptions.from_dict(json.loads(text))
    assert again.to_json() == text
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(text), ClusterDescriptions.json_schema())
    words = describe_in_words(d)
    assert len(words) == 2 and "kind = K1" in words[1] and "a0.h0" in words[1]
    bare = describe_in_words(describe_clusters(A, gd, exs, n_permutations=20, n_exemplars=0))
    assert bare[0].startswith("Cluster 0 (20 of 40 prompts): no field value stands out; ")
    assert bare[0].endswith("elsewhere.")


def test_the_same_seed_gives_the_same_descriptions():
    A, gd, exs, data = _matrix_and_fit()
    one = describe_clusters(A, gd, exs, dataset=data, n_permutations=100, random_state=3)
    two = describe_clusters(A, gd, exs, dataset=data, n_permutations=100, random_state=3)
    assert one.to_json() == two.to_json()


def test_one_cluster_has_exemplars_and_nothing_to_contrast():
    A, gd, exs, data = _matrix_and_fit()
    gd.labels_ = np.zeros(40, dtype=int)
    gd.centroids_ = gd.embedding_.mean(0, keepdims=True)
    d = describe_clusters(A, gd, exs, dataset=data, n_permutations=20)
    assert d.contrasts == [] and d.exemplars[0].ambiguous == []
    assert d.skipped_fields["kind"].startswith("only prompts of cluster 0")


@pytest.mark.parametrize("change,message", [
    (dict(alpha=1.5), "alpha"),
    (dict(scores="squared"), "scores must be one of"),
    (dict(node_edges="sideways"), "node_edges"),
    (dict(selection="best", size=3), "selection must be one of"),
    (dict(n_permutations=0), "n_permutations"),
])
def test_bad_settings_are_refused(change, message):
    A, gd, exs, data = _matrix_and_fit()
    with pytest.raises(DescriptionError, match=message):
        describe_clusters(A, gd, exs, dataset=data, **change)


def test_inputs_that_do_not_belong_together_are_refused():
    A, gd, exs, data = _matrix_and_fit()
    with pytest.raises(DescriptionError, match="fit it first"):
        describe_clusters(A, SimpleNamespace(labels_=gd.labels_), exs)
    short = SimpleNamespace(**{**vars(gd), "labels_": gd.labels_[:-1]})
    with pytest.raises(DescriptionError, match="40 rows"):
        describe_clusters(A, short, exs)
    with pytest.raises(DescriptionError, match="not in the dataset"):
        describe_clusters(A, gd, exs, dataset=data[:-1])
    bare = AttributionMatrix(A.scores, NAMES)
    with pytest.raises(DescriptionError, match="graph=edge_graph"):
        describe_clusters(bare, gd, exs)
    other = SimpleNamespace(**{**vars(gd), "example_ids_": [f"x{i}" for i in range(40)]})
    with pytest.raises(DescriptionError, match="example_ids"):
        describe_clusters(A, other, exs)


def test_the_public_name():
    assert dcd.describe_clusters is describe_clusters
    assert dcd.ClusterDescriptions is ClusterDescriptions
