"""Time of ``describe_clusters`` at SmolLM2's size (no model pass is part of it).

1. rows: ``--rows real`` (default) computes EAP attribution rows of SmolLM2-135M on the
   README's two-task mixture (``ioi/mixed`` + ``sequence/2-gram``, ``--n`` prompts
   generated, the train and test splits together: 160 rows for ``--n 200``), saved in
   ``--cache`` and read from there on later runs; ``--rows random`` takes standard normal
   rows of the same shape (``--n-rows`` x SmolLM2's 123,211 edges, two planted groups
   whose means differ by 2 on 10% of the edges), so only the timing is meaningful;
2. clusters them as the main job does (``GroupedDiscovery`` with the job's defaults; for
   random rows ``n_clusters=2``; ``--n-clusters`` fixes k);
3. times ``describe_clusters`` (exemplars, fields, edge and node contrasts with
   ``--n-permutations`` permutations, circuit differences at 5% of edges), CPU time
   (``time.process_time``, one torch thread) beside wall time, and prints what it found.

Usage (one heavy job at a time on a shared machine)::

    flock /tmp/heavy.lock python benchmarks/bench_describe.py --cache /tmp/bench_describe
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _real_rows(args: argparse.Namespace, pm: object) -> tuple:
    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.data import load_examples, make_loader, split_examples

    cache = Path(args.cache)
    data = cache / "mixture.json"
    if not data.exists():
        dcd.make_dataset("mixture", ["ioi/mixed", "sequence/2-gram"], pm.tokenizer, args.n,
                         seed=42, out=data)
    train, test = split_examples(load_examples(data, pm.tokenizer))
    loader = make_loader(train + test, 16)
    try:
        A = dcd.AttributionMatrix.load(cache / "rows")
        print(f"rows read from {cache / 'rows'}")
    except Exception:  # not there yet (or damaged): compute them
        t0, c0 = time.perf_counter(), time.process_time()
        A = dcd.attribute(pm, loader, method="eap", progress=True)
        print(f"EAP attribution of {A.n_examples} prompts: {time.perf_counter() - t0:.1f} s "
              f"wall, {time.process_time() - c0:.1f} s CPU")
        A.save(cache / "rows")
    return A, loader, data


def _random_rows(args: argparse.Namespace, pm: object) -> tuple:
    import torch

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.data import Example
    from auto_circuit_dcd.model.edges import edge_layout

    names, layout = edge_layout(pm)
    g = torch.Generator().manual_seed(0)
    n, m = args.n_rows, len(names)
    X = torch.randn(n, m, generator=g)
    planted = torch.randperm(m, generator=g)[: m // 10]
    X[: n // 2, planted] += 2.0
    groups = ["a" if i < n // 2 else "b" for i in range(n)]
    A = dcd.AttributionMatrix(X, names, groups=groups, layout=layout)
    token = torch.tensor([1, 2, 3])
    examples = [Example(i, token, torch.tensor([1, 2, 4]), torch.tensor([5]),
                        torch.tensor([6]), group=groups[i]) for i in range(n)]
    return A, examples, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", choices=("real", "random"), default="real")
    parser.add_argument("--cache", default="/tmp/bench_describe")
    parser.add_argument("--n", type=int, default=200, help="prompts generated (real rows)")
    parser.add_argument("--n-rows", type=int, default=160, help="rows (random rows)")
    parser.add_argument("--n-permutations", type=int, default=1000)
    parser.add_argument("--n-clusters", type=int, default=None,
                        help="fix k (the cost grows with the k + k(k-1)/2 contrasts)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.explain import describe_in_words

    Path(args.cache).mkdir(parents=True, exist_ok=True)
    pm = dcd.make_patchable(dcd.load_model("smollm2-135m"))
    A, examples, dataset = (_real_rows if args.rows == "real" else _random_rows)(args, pm)
    t0 = time.perf_counter()
    fixed_k = args.n_clusters or (None if args.rows == "real" else 2)  # random: two groups
    gd = dcd.GroupedDiscovery(clusterer="auto", max_clusters=8,
                              n_clusters=fixed_k, preprocessing="l2", random_state=42).fit(A)
    print(f"{args.rows} rows {A.n_examples} x {A.n_edges}; clustering "
          f"{time.perf_counter() - t0:.1f} s wall: k = {gd.n_clusters_}, sizes "
          f"{gd.cluster_sizes_}")
    size = int(0.05 * A.n_edges)
    t0, c0 = time.perf_counter(), time.process_time()
    desc = dcd.describe_clusters(A, gd, examples, dataset=dataset, tokenizer=pm.tokenizer,
                                 size=size, n_permutations=args.n_permutations)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"describe_clusters: {wall:.1f} s wall, {cpu:.1f} s CPU (one torch thread), "
          f"{args.n_permutations} permutations, {len(desc.contrasts)} contrasts")
    for c in desc.contrasts:
        print(f"  cluster {c.cluster} vs {'rest' if c.other is None else c.other}: edges "
              f"{c.edges.n_higher} higher / {c.edges.n_lower} lower of {c.edges.n_tested}; "
              f"nodes {c.nodes.n_higher} / {c.nodes.n_lower} of {c.nodes.n_tested}")
    for f in desc.fields:
        print(f"  field {f.field}: V {f.cramers_v:.3f}, {f.test}, q {f.q_value:.2g}"
              f"{' (associated)' if f.associated else ''}")
    for line in describe_in_words(desc):
        print(" ", line)


if __name__ == "__main__":
    main()
