"""How often each routing rule sends a training row back to its own cluster.

For the embedded toy model's training rows (EAP), each preprocessing and each clusterer at
the k it chooses: the share of training rows whose nearest centroid is their own
cluster's (the row left out of that centroid) and the share whose nearest other training
row is in their cluster. ``GroupedDiscovery.predict`` routes k-means clusters by the
first rule and agglomerative / divisive (average-linkage) clusters by the second.

Usage::

    python scripts/routing_agreement.py
"""

from __future__ import annotations

import sys


def main() -> int:
    import torch

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.cluster.clusterers import centroid_agreement, nearest_row_agreement
    from auto_circuit_dcd.toy import toy_dataset_path

    torch.set_num_threads(1)
    pm, train, _ = dcd.prepare(dcd.load_model("toy-two-task"), toy_dataset_path("mixed"),
                               batch_size=32)
    A = dcd.attribute(pm, train, progress=False)
    print(f"toy-two-task, EAP, {A.n_examples} training rows x {A.n_edges} edges")
    print(f"{'preprocessing':>13} {'clusterer':>13} {'k':>3} {'nearest centroid':>17} "
          f"{'nearest row':>12}  predict uses")
    for prep in ("raw", "l2"):
        for clusterer in ("agglomerative", "divisive", "kmeans"):
            gd = dcd.GroupedDiscovery(clusterer=clusterer, preprocessing=prep,
                                      random_state=42).fit(A)
            Z, labels = gd.embedding_, gd.labels_
            print(f"{prep:>13} {clusterer:>13} {gd.n_clusters_:>3} "
                  f"{centroid_agreement(Z, labels):>17.4f} "
                  f"{nearest_row_agreement(Z, labels):>12.4f}  {gd.routing_rule_}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
