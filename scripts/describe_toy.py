"""What each cluster of the embedded toy model's main job is, in the terms of
``describe_clusters`` (docs/explaining-clusters.md shows this script's output).

1. the main job's data and settings: the toy model's mixed dataset, its train split,
   attribution (``--method``, default EAP), ``GroupedDiscovery`` with the job's defaults;
2. ``describe_clusters`` with the circuits compared at 5% of the edges (4 of 81);
3. prints the sentences, the fields, each cluster's distinguishing nodes and edges, its
   exemplars and the circuit difference. The task labels are printed beside the
   clusters only to read the result; the analysis does not see them;
4. with ``--heads``, the ground truth beside it: per head and task (the dataset's prompts
   of that task), the share of the logit difference that patching the head's output from
   the corrupted run removes, and the accuracy with the head mean-ablated.

Usage::

    python scripts/describe_toy.py [--method eap-ig] [--heads]
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="eap", choices=("eap", "eap-ig"))
    parser.add_argument("--top", type=int, default=6, help="units printed per table")
    parser.add_argument("--heads", action="store_true",
                        help="also print each head's patching effect and ablated accuracy")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.explain import describe_in_words
    from auto_circuit_dcd.toy import toy_dataset_path

    path = toy_dataset_path("mixed")
    pm, train, _ = dcd.prepare(dcd.load_model("toy-two-task"), path)
    A = dcd.attribute(pm, train, method=args.method, progress=False)
    gd = dcd.GroupedDiscovery(clusterer="auto", max_clusters=8,
                              k_rule="silhouette", preprocessing="auto", random_state=42).fit(A)
    desc = dcd.describe_clusters(A, gd, train, dataset=path, size=int(0.05 * A.n_edges))

    print(f"toy-two-task, {args.method}: {A.n_examples} prompts, {A.n_edges} edges, "
          f"k = {len(desc.clusters)}, sizes {desc.sizes}")
    for c in desc.clusters:
        tasks = Counter(g for g, lab in zip(A.groups, gd.labels_) if lab == c)
        print(f"  (for reading only) cluster {c} holds {dict(tasks)}")
    print()
    for line in describe_in_words(desc):
        print(line)
    print("\nfields (associated first, then by Cramér's V):")
    for f in desc.fields:
        print(f"  {f.field:22} {f.kind:11} V {f.cramers_v:.3f}  {f.test:22} "
              f"q {f.q_value:.2g}{'  associated' if f.associated else ''}")
    for name, why in desc.skipped_fields.items():
        print(f"  {name:22} not tested: {why}")
    for con in desc.contrasts[:len(desc.clusters)]:
        print(f"\ncluster {con.cluster} against the rest ({con.n_cluster} vs {con.n_other}):")
        for what, table in (("nodes", con.nodes), ("edges", con.edges)):
            print(f"  {what}: {table.n_higher} higher, {table.n_lower} lower "
                  f"(q <= {desc.settings.alpha}) of {table.n_tested}")
            for u in table.higher[:args.top]:
                print(f"    {u.name:18} d {u.effect_size:5.2f}  mean {u.mean_a:6.3f} vs "
                      f"{u.mean_b:6.3f}  q {u.q_value:.2g}")
    for ex in desc.exemplars:
        print(f"\ncluster {ex.cluster} exemplars (typical, then ambiguous):")
        for e in ex.typical + ex.ambiguous:
            print(f"  {e.id}: {e.clean!r} -> {e.answers[0]!r}  (distance {e.distance:.3f}, "
                  f"margin {e.margin:.3f}, silhouette {e.silhouette:.3f})")
    for d in desc.circuit_differences:
        print(f"\ncircuits at {d.size} edges ({d.selection}): only {d.a}: {d.only_a}; "
              f"only {d.b}: {d.only_b}; shared: {d.shared}")
    if args.heads:
        _heads(path)


def _heads(path: object) -> None:
    import json

    from auto_circuit_dcd.toy import load_toy_model
    from auto_circuit_dcd.toy.analysis import ablated_accuracy, head_patching_effects

    model = load_toy_model()
    prompts = json.loads(open(path).read())["prompts"]
    by_task = {t: [p for p in prompts if p["task"] == t] for t in ("ioi", "induction")}
    effects = {t: head_patching_effects(model, ps) for t, ps in by_task.items()}
    print("\nhead   patching share ioi / induction   accuracy mean-ablated ioi / induction")
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            acc = [ablated_accuracy(model, ps, [(layer, head)], ps) for ps in by_task.values()]
            print(f"a{layer}.h{head}  {effects['ioi'][layer, head]:8.3f} / "
                  f"{effects['induction'][layer, head]:.3f}   {acc[0]:22.2f} / {acc[1]:.2f}")


if __name__ == "__main__":
    main()
