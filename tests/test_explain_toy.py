"""On the embedded toy model's main-job data, without the labels, the descriptions lead to
the planted mechanisms: mean-ablating L0H1 (the previous-token head) breaks induction only
and L0H3 breaks IOI only (README, "The embedded toy model"). The labels only name the
clusters here; the analysis never sees them."""

from collections import Counter

import pytest

import auto_circuit_dcd as dcd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy():
    from auto_circuit_dcd.toy import toy_dataset_path

    path = toy_dataset_path("mixed")
    pm, train, _ = dcd.prepare(dcd.load_model("toy-two-task"), path)
    A = dcd.attribute(pm, train, method="eap", progress=False)
    # the main job's defaults (job/config.py): auto clusterer, k from 2 to 8 by
    # silhouette, L2 rows, EAP circuits, seed 42
    gd = dcd.GroupedDiscovery(clusterer="auto", max_clusters=8,
                              k_rule="silhouette", preprocessing="l2", random_state=42).fit(A)
    desc = dcd.describe_clusters(A, gd, train, dataset=path, size=4)
    task = {}
    for c in desc.clusters:
        groups = Counter(g for g, lab in zip(A.groups, gd.labels_) if lab == c)
        task[groups.most_common(1)[0][0]] = c
    return desc, task


def _heads(table):
    return [u.name for u in table.higher if u.name.startswith("a")]


@pytest.mark.parametrize("name,planted", [("induction", "a0.h1"), ("ioi", "a0.h3")])
def test_each_cluster_leads_to_its_planted_head(toy, name, planted):
    desc, task = toy
    assert sorted(task) == ["induction", "ioi"] and len(desc.clusters) == 2
    heads = _heads(desc.contrast(task[name]).nodes)
    assert planted in heads[:3], heads
    layer0 = [h for h in heads if h.startswith("a0.")]
    assert layer0[0] == planted, heads  # above the other layer-0 heads


def test_layer_one_heads_read_different_inputs_in_each_task(toy):
    desc, task = toy
    induction = desc.contrast(task["induction"]).edges.higher
    ioi = desc.contrast(task["ioi"]).edges.higher
    # induction: the layer-1 heads' values read the token to copy from the embeddings
    assert induction[0].name.startswith("input->a1.") and induction[0].name.endswith("<v>")
    # IOI: their queries read L0H3
    assert any(u.name.startswith("a0.h3->a1.") and u.name.endswith("<q>") for u in ioi)


def test_the_clusters_are_their_tasks_and_the_sentences_say_so(toy):
    desc, task = toy
    assert desc.fields[0].field in ("group", "task") and desc.fields[0].associated
    assert not desc.field("template").associated  # IOI templates do not split the clusters
    words = dcd.explain.describe_in_words(desc)
    assert "= induction" in words[task["induction"]] and "a0.h1" in words[task["induction"]]
    assert "= ioi" in words[task["ioi"]] and "a0.h3" in words[task["ioi"]]
    (diff,) = desc.circuit_differences
    assert diff.n_shared == 0 and diff.n_a + diff.n_b > 0
