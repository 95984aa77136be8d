"""Time of the circuit selection rules on a real model's edge graph, and what they keep.

1. load the model and build its ``EdgeGraph`` (timed; from auto-circuit's edges);
2. a circuit of standard normal scores (seeded; the rules' cost depends on the graph, and
   what they keep on real scores is measured by the faithfulness runs);
3. per fraction of the MIB grid: time ``top(n)``, ``top(n).pruned()``, ``greedy(n)`` and
   ``top(n, "signed").pruned()``, and print how many edges each keeps.

Usage::

    python benchmarks/bench_circuit.py --model smollm2-135m
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.circuits.graph import edge_graph
    from auto_circuit_dcd.evaluation.faithfulness import MIB_GRID, edge_count
    from auto_circuit_dcd.model.edges import edge_layout

    pm = dcd.make_patchable(dcd.load_model(args.model))
    t0 = time.perf_counter()
    graph = edge_graph(pm)
    t_graph = time.perf_counter() - t0
    names, layout = edge_layout(pm)
    g = torch.Generator().manual_seed(args.seed)
    circuit = dcd.Circuit(torch.randn(len(names), generator=g), names, layout, graph=graph)
    print(f"model {args.model}: {circuit.n_edges} edges, {graph.n_nodes} nodes; "
          f"graph built in {t_graph:.2f} s; random scores, seed {args.seed}")
    rules = {
        "top": lambda c, n: c.top(n),
        "top+prune": lambda c, n: c.top(n).pruned(),
        "signed top+prune": lambda c, n: c.top(n, "signed").pruned(),
        "greedy": lambda c, n: c.greedy(n),
    }
    print("| fraction | n | " + " | ".join(f"{r} edges | {r} ms" for r in rules) + " |")
    print("|---" * (2 + 2 * len(rules)) + "|")
    for p in MIB_GRID:
        n = edge_count(p, circuit.n_edges)
        cells = []
        for rule in rules.values():
            t0 = time.perf_counter()
            out = rule(circuit, n)
            cells += [str(out.size), f"{1000 * (time.perf_counter() - t0):.0f}"]
        print(f"| {p:g} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
