"""Stability of DCD's clusters on the embedded toy model, by subsampling and by bootstrap.

1. EAP attribution rows of the toy model's mixed training split (256 prompts);
2. ``GroupedDiscovery(random_state=0)`` (the default clusterer, k chosen from the data);
3. ``cluster_stability`` with ``--n-resamples`` subsamples (80% of the rows) and as many
   bootstrap samples; prints k, the ARI against the tasks, and each result.

    HF_HUB_OFFLINE=1 python scripts/toy_cluster_stability.py --n-resamples 20
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-resamples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.toy import toy_dataset_path

    pm, train, _ = dcd.prepare(dcd.load_model("toy-two-task"), toy_dataset_path("mixed"))
    A = dcd.attribute(pm, train, progress=False)
    gd = dcd.GroupedDiscovery(random_state=args.seed).fit(A)
    ari = dcd.cluster_quality(A.groups, gd.labels_).ari
    print(f"{A.n_examples} rows, k = {gd.n_clusters_} ({gd.method_}), ARI vs tasks {ari:.3f}")
    for method in ("subsample", "bootstrap"):
        t0 = time.perf_counter()
        st = dcd.cluster_stability(gd, A, args.n_resamples, method=method,
                                   random_state=args.seed)
        d = st.to_dict()
        print(f"{method}: ARI {st.ari_mean:.3f} +- {st.ari_std:.3f} over {args.n_resamples}, "
              f"k found {sorted(set(d['n_clusters']))}, co-assignment "
              f"{ {c: round(v, 3) for c, v in d['co_assignment'].items()} }, jaccard "
              f"{ {c: round(v, 3) for c, v in d['jaccard'].items()} }, "
              f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
