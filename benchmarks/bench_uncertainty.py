"""Time of a run's intervals, comparisons and verdicts, and the coverage study behind their
defaults.

Speed (default): a run shaped like the SmolLM2 one (40 test examples, 3 clusters: single,
3 cluster and 3 K-random circuits = 7, the MIB grid's 10 sizes, 2 rankings as under MIB
parity; 123,211 edges), synthetic per-example values; ``run_uncertainty`` timed at each
``--resamples`` (wall and CPU time of this process, one thread: wall time is noisy on a
shared machine), and the per-example file's save and load.

Coverage (``--coverage``): synthetic per-example values with a known faithfulness
``f = E[rho]`` (``mu(C) = mu(empty) + rho_i (mu(full) - mu(empty)) + noise``):

1. per ``n`` and scenario (``normal``: Gaussian everything; ``skewed``: gamma-distributed
   ``mu(full) - mu(empty)``, beta ``rho``, Student-t noise), ``--seeds`` data sets, each
   with its own resamples; the share of intervals (each method of ``INTERVALS``) holding
   ``f``;
2. the false-positive rate of paired tests under a null (two circuits of equal mean
   ``mu``; ``symmetric`` and ``skewed`` per-example differences): the sign-flip test,
   "the difference's interval excludes 0", and both (the rule of a comparison's mark).

Fill rule (``--fill MODEL``): on the model's edge graph with standard normal scores (seeded;
``--attribution``: the single circuit and one circuit per known group from EAP scores of
the model's embedded dataset), per size of the MIB grid, the edges ``top(n).pruned()`` and
``top_connected(n)`` keep and the time each takes (``top_connected`` bisects over
``top(m).pruned()``).

Usage::

    python benchmarks/bench_uncertainty.py                   # speed
    python benchmarks/bench_uncertainty.py --coverage        # the coverage study
    python benchmarks/bench_uncertainty.py --fill smollm2-135m
    python benchmarks/bench_uncertainty.py --fill toy-two-task --attribution
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread, before numpy loads its BLAS
import numpy as np  # noqa: E402

MIB_GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def synthetic_run(n: int, k: int, n_edges: int, rankings: tuple[str, ...], seed: int):
    """``{ranking: {name: FaithfulnessResult}}`` of single, k cluster and k K-random
    circuits, and each example's cluster."""
    from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult, ratio_of_means

    rng = np.random.default_rng(seed)
    fractions = np.array(MIB_GRID)
    full, empty = rng.normal(4, 1.5, n), rng.normal(0, 1, n)
    names = ["single"] + [f"cluster_{c}" for c in range(k)] + [f"k_random_{c}" for c in range(k)]
    requested = np.floor(fractions * n_edges).astype(np.int64)
    out = {}
    for ranking in rankings:
        res = {}
        for name in names:
            level = np.clip(np.linspace(0.2, 1.0, fractions.size), 0, 1)
            mu = (empty[:, None] + level[None, :] * (full - empty)[:, None]
                  + rng.normal(0, 0.8, (n, fractions.size)))
            res[name] = FaithfulnessResult(
                fractions=fractions.copy(), requested_counts=requested,
                achieved_counts=requested.copy(), f=ratio_of_means(mu, full, empty),
                mu_circuit=mu, mu_full=full, mu_empty=empty,
                example_ids=[f"ex{i}" for i in range(n)], n_edges=n_edges, ranking=ranking)
        out[ranking] = res
    return out, rng.permutation(np.arange(n) % k)


def speed(args: argparse.Namespace) -> None:
    from auto_circuit_dcd.evaluation.per_example import load_per_example, save_per_example
    from auto_circuit_dcd.metrics.aggregate import random_routing
    from auto_circuit_dcd.metrics.convention import MIB_PARITY
    from auto_circuit_dcd.metrics.uncertainty import Bootstrap, run_uncertainty

    by_ranking, route = synthetic_run(args.n, args.k, 123211, ("signed", "abs"), args.seed)
    kr = [f"k_random_{c}" for c in range(args.k)]
    kw = dict(single="single", clusters={c: f"cluster_{c}" for c in range(args.k)},
              routing=route, p=0.05, k_random=kr,
              k_random_routing=random_routing(args.n, kr, args.seed), test_fraction=0.2)
    n_circuits = len(next(iter(by_ranking.values())))
    print(f"{args.n} test examples, {n_circuits} circuits x {len(MIB_GRID)} sizes x "
          f"{len(by_ranking)} rankings (MIB parity); times of one process, one thread")
    print("| resamples | wall s | CPU s |")
    print("|---|---|---|")
    for b in args.resamples:
        boot = Bootstrap(n_resamples=b, seed=args.seed)
        run_uncertainty(by_ranking, MIB_PARITY, boot=boot, **kw)  # warm (imports, caches)
        walls, cpus = [], []
        for _ in range(args.repeats):
            from auto_circuit_dcd.metrics.uncertainty.bootstrap import _weights

            _weights.cache_clear()
            t0, c0 = time.perf_counter(), time.process_time()
            run_uncertainty(by_ranking, MIB_PARITY, boot=boot, **kw)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        print(f"| {b} | {min(walls):.3f} | {min(cpus):.3f} |")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_per_example(os.path.join(tmp, "pe"), by_ranking,
                         routings={"dcd": route.tolist()})
        t_save = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_per_example(os.path.join(tmp, "pe"))
        t_load = time.perf_counter() - t0
        size = sum(os.path.getsize(os.path.join(tmp, "pe", f))
                   for f in os.listdir(os.path.join(tmp, "pe")))
    print(f"per-example file: save {t_save:.3f} s, load {t_load:.3f} s, {size / 1e3:.0f} kB")


# ----------------------------------------------------------------------------- coverage
Scenario = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray, np.ndarray, float]]


def _normal(rng: np.random.Generator, n: int):
    full, empty = rng.normal(4, 1.5, n), rng.normal(0, 1, n)
    rho = rng.normal(0.6, 0.2, n)
    return empty + rho * (full - empty) + rng.normal(0, 0.5, n), full, empty, 0.6


def _skewed(rng: np.random.Generator, n: int):
    empty = rng.normal(0, 1, n)
    full = empty + rng.gamma(2.0, 2.0, n)
    rho = rng.beta(2.0, 1.3, n)
    return empty + rho * (full - empty) + 0.5 * rng.standard_t(3, n), full, empty, 2.0 / 3.3


SCENARIOS: dict[str, Scenario] = {"normal": _normal, "skewed": _skewed}
NULLS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "symmetric": lambda rng, n: rng.normal(0, 1, n),
    "skewed": lambda rng, n: rng.exponential(1.0, n) - 1.0,
}


def coverage(args: argparse.Namespace) -> None:
    from auto_circuit_dcd.metrics.uncertainty.bootstrap import (
        INTERVALS,
        ratio_replicates,
        resample_weights,
    )
    from auto_circuit_dcd.metrics.uncertainty.paired import sign_flip_pvalues

    level, methods = 0.95, list(INTERVALS)
    print(f"nominal level {level}; {args.seeds} data sets per cell, each with its own "
          f"{args.coverage_resamples} resamples; binomial standard error of a share near "
          f"0.95: {np.sqrt(0.95 * 0.05 / args.seeds):.3f}")
    print("| scenario | n | " + " | ".join(f"{m} coverage" for m in methods) + " |")
    print("|---" * (2 + len(methods)) + "|")
    for name, draw in SCENARIOS.items():
        for n in args.ns:
            hit = dict.fromkeys(methods, 0)
            for s in range(args.seeds):
                rng = np.random.default_rng(10_000 * n + s)
                mu, full, empty, f = draw(rng, n)
                w = resample_weights(n, args.coverage_resamples, s)
                reps = ratio_replicates((mu - empty)[:, None], full - empty, w)
                for method in hit:
                    lo, hi = reps.interval(level, method)
                    hit[method] += int(lo[0] <= f <= hi[0])
            print(f"| {name} | {n} | " + " | ".join(f"{hit[m] / args.seeds:.3f}"
                                                  for m in methods) + " |", flush=True)
    print()
    print("| null | n | sign-flip p < 0.05 | expanded-percentile interval excludes 0 | both |")
    print("|---|---|---|---|---|")
    for name, draw_delta in NULLS.items():
        for n in args.ns:
            fp = np.zeros(3, dtype=int)
            for s in range(args.seeds):
                rng = np.random.default_rng(20_000 * n + s)
                delta = draw_delta(rng, n)
                den = rng.normal(4, 1.5, n)
                flip = sign_flip_pvalues(delta, args.coverage_resamples, s)[0] < 0.05
                reps = ratio_replicates(delta[:, None], den,
                                        resample_weights(n, args.coverage_resamples, s))
                lo, hi = reps.interval(level, "expanded-percentile")
                boot = lo[0] > 0 or hi[0] < 0
                fp += np.array([flip, boot, flip and boot], dtype=int)
            print(f"| {name} | {n} | " + " | ".join(f"{x / args.seeds:.3f}" for x in fp) + " |",
                  flush=True)


def fill(args: argparse.Namespace) -> None:
    import torch

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.circuits.graph import edge_graph
    from auto_circuit_dcd.evaluation.faithfulness import edge_count
    from auto_circuit_dcd.model.edges import edge_layout

    torch.set_num_threads(1)
    pm = dcd.make_patchable(dcd.load_model(args.fill))
    names, layout = edge_layout(pm)
    graph = edge_graph(pm)
    if args.attribution:  # the model's embedded dataset: one circuit per known group
        from auto_circuit_dcd.model.table import embedded_dataset

        _, train, _ = dcd.prepare(pm, embedded_dataset(args.fill), batch_size=32)
        A = dcd.attribute(pm, train, method="eap", progress=False)
        circuits = {"single": dcd.Circuit.from_matrix(A)}
        for group in sorted(set(A.groups)):
            rows = [i for i, g in enumerate(A.groups) if g == group]
            circuits[group] = dcd.Circuit.from_matrix(A, rows)
        what = "EAP scores of the embedded dataset's train split (single; one per group)"
    else:
        g = torch.Generator().manual_seed(args.seed)
        circuits = {"random": dcd.Circuit(torch.randn(len(names), generator=g), names, layout,
                                          graph=graph)}
        what = f"standard normal scores, seed {args.seed}"
    print(f"model {args.fill}: {len(names)} edges; {what}; CPU seconds, one thread")
    print("| circuit | fraction | asked | top+prune edges | s | top_connected edges | s |")
    print("|---|---|---|---|---|---|---|")
    for name, c in circuits.items():
        for p in MIB_GRID:
            n = edge_count(p, c.n_edges)
            t0 = time.process_time()
            pruned = c.top(n).pruned().size
            t1 = time.process_time()
            filled = c.top_connected(n).size
            t2 = time.process_time()
            print(f"| {name} | {p:g} | {n} | {pruned} | {t1 - t0:.3f} | {filled} | "
                  f"{t2 - t1:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coverage", action="store_true", help="run the coverage study")
    parser.add_argument("--fill", metavar="MODEL", help="time the fill rule on MODEL's graph")
    parser.add_argument("--attribution", action="store_true",
                        help="--fill: circuits from the model's embedded dataset, not random")
    parser.add_argument("--n", type=int, default=40, help="test examples (speed)")
    parser.add_argument("--k", type=int, default=3, help="clusters (speed)")
    parser.add_argument("--resamples", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ns", type=int, nargs="+", default=[5, 10, 15, 20, 40, 80])
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--coverage-resamples", type=int, default=2000)
    args = parser.parse_args()
    (coverage if args.coverage else fill if args.fill else speed)(args)


if __name__ == "__main__":
    main()
