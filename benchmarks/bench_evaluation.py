"""Time of faithfulness evaluation against a plain forward, in one process.

On one batch of prompts (SmolLM2 on IOI prompts, or a random model of a real shape on
random tokens), with circuits from this package's EAP scores on the same prompts:

- ``plain``: one forward of the clean batch with TransformerLens' per-head flags off
  (the full logits, as the model computes them), the mean of ``--reps`` runs;
- for each backend (``patch-mode``: auto-circuit's patch mode; ``fast``: this package's
  default): ``evaluate_circuits`` of one circuit at the empty size only (the per-batch
  fixed work: patch activations, clean run, empty circuit), then at the whole MIB grid;
  per added (circuit, fraction) = (grid - fixed) / 10, the grid's 10 sizes (100% is the
  clean run, so also shown over the 9 others); every size is checked against patch mode
  (largest relative difference of per-example ``mu``);
- ``per size``: the flag-free patched forward of the single circuit alone at each size
  (one pass, no stacking), against the plain forward: what bounds the grid's average;
- ``whole``: ``evaluate_circuits`` of ``--circuits`` circuits (the main job's single +
  2 clusters + 2 K-random for k = 2) over the MIB grid, the default backend.

Every figure is given as wall time and as this process's CPU time (``time.process_time``;
one torch thread, so CPU time is compute time): on a shared machine other processes slow
the wall clock, not the CPU time. The plain forward is timed before and after the
backends and averaged.

Usage::

    python benchmarks/bench_evaluation.py --model smollm2-135m --n 16
    python benchmarks/bench_evaluation.py --model gpt2-like --n 16 --tokens 16

Random models get one batch of ``--n`` random prompts of ``--tokens`` tokens (16 x 16 by
default: auto-circuit's patch mode on GPT-2 small's shape takes minutes per grid).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_attribution import SHAPES, _load  # noqa: E402


def _timed(fn: Callable[[], Any]) -> tuple:
    """``((wall s, CPU s), fn())``."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - t0, time.process_time() - c0), out


def _plain(tl: Any, tokens: Any, reps: int) -> tuple:
    """Mean (wall, CPU) seconds of ``reps`` plain forwards (flags off), after a warm-up."""
    import torch

    from auto_circuit_dcd.model.forward import plain_forward

    with plain_forward(tl), torch.inference_mode():
        tl(tokens)
        times = [_timed(lambda: tl(tokens))[0] for _ in range(reps)]
    return tuple(sum(t[i] for t in times) / reps for i in range(2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m",
                   help=f"smollm2-135m, toy-two-task or a random shape: {sorted(SHAPES)}")
    p.add_argument("--n", type=int, default=16, help="prompts (one batch)")
    p.add_argument("--tokens", type=int, default=16, help="prompt length for random models")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--circuits", type=int, default=5)
    p.add_argument("--backends", default="patch-mode,fast")
    p.add_argument("--max-stack-gib", type=float, default=None)
    args = p.parse_args()
    args.batch_size = args.n

    import numpy as np
    import torch

    import auto_circuit_dcd as dcd
    torch.set_num_threads(args.threads)
    pm, loader = _load(args)
    batch = next(iter(loader))
    loader = loader.subset(loader.batch_example_ids[0])  # one batch: what "plain" times
    A = dcd.attribute(pm, loader, progress=False)
    g = torch.Generator().manual_seed(0)
    subsets = [torch.randperm(A.scores.shape[0], generator=g)[: max(2, args.n // 2)]
               for _ in range(args.circuits - 1)]
    circuits = {"single": A.scores.float().mean(0)}
    circuits.update({f"part_{i}": A.scores[s].float().mean(0) for i, s in enumerate(subsets)})
    grid = list(dcd.MIB_GRID)

    tl = pm.wrapped_model
    plain = [_plain(tl, batch.clean, args.reps)]
    print(f"model {args.model}: {pm.n_edges} edges, {batch.clean.shape[0]} prompts x "
          f"{batch.clean.shape[1]} tokens (one batch), {args.threads} thread(s)")
    print(f"plain forward (flags off): {plain[0][0]:.3f} s wall, {plain[0][1]:.3f} s CPU",
          flush=True)

    rows: list[dict[str, Any]] = []
    ref_mu = None
    kw: dict[str, Any] = dict(max_stack_gib=args.max_stack_gib)
    one = {"single": circuits["single"]}
    n_sizes = len([p for p in grid if p < 1.0])  # 100% is the clean run, free
    for backend in args.backends.split(","):
        t_fixed, _ = _timed(lambda: dcd.evaluate_circuits(pm, loader, one, [0.0],
                                                          backend=backend, **kw))
        t_grid, res = _timed(lambda: dcd.evaluate_circuits(pm, loader, one, grid,
                                                           backend=backend, **kw))
        mu = res["single"].mu_circuit
        if ref_mu is None:
            ref_mu, err = mu, 0.0
        else:
            err = float(np.max(np.abs(mu - ref_mu) / np.maximum(np.abs(ref_mu), 1e-3)))
        rows.append(dict(backend=backend, fixed=t_fixed, grid=t_grid, err=err,
                         added=tuple((g - f) / n_sizes for g, f in zip(t_grid, t_fixed))))
        print(f"# {backend}: fixed {t_fixed[0]:.2f} s wall / {t_fixed[1]:.2f} s CPU, grid "
              f"{t_grid[0]:.2f} / {t_grid[1]:.2f} s", flush=True)

    from auto_circuit_dcd.circuits.circuit import Circuit
    from auto_circuit_dcd.evaluation.ablation import patch_values
    from auto_circuit_dcd.evaluation.faithfulness import edge_count
    from auto_circuit_dcd.evaluation.patched import PatchedForward

    pf = PatchedForward(pm)
    bp = pf.batch_patch(patch_values("resample", pf.sources(), batch, None)[0])
    single = Circuit(circuits["single"], A.edge_names, A.layout)
    sizes = []
    for p in grid[:-1]:
        # the edges evaluate_circuits evaluates at this size (its default rule, "topn")
        plan = pf.plan(single.select("topn", edge_count(p, pm.n_edges)).mask)
        with torch.inference_mode():
            pf.logits(batch.clean, bp, [plan])  # warm-up
            t, _ = _timed(lambda: pf.logits(batch.clean, bp, [plan]))
        sizes.append((p, t))
    plain.append(_plain(tl, batch.clean, args.reps))
    t_plain = tuple((plain[0][i] + plain[1][i]) / 2 for i in range(2))
    print(f"plain forward after: {plain[1][0]:.3f} s wall, {plain[1][1]:.3f} s CPU; "
          f"mean used below: {t_plain[0]:.3f} s wall, {t_plain[1]:.3f} s CPU")

    print("\n| backend | fixed work s (wall / CPU) | x plain (CPU) | 1 circuit x MIB grid s "
          "(wall / CPU) | per added (circuit, fraction) s (wall / CPU) | x plain (wall) | "
          "x plain (CPU) | max rel. diff of mu vs first backend |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['fixed'][0]:.2f} / {r['fixed'][1]:.2f} | "
              f"{r['fixed'][1] / t_plain[1]:.2f} | {r['grid'][0]:.2f} / {r['grid'][1]:.2f} | "
              f"{r['added'][0]:.3f} / {r['added'][1]:.3f} | {r['added'][0] / t_plain[0]:.2f} | "
              f"{r['added'][1] / t_plain[1]:.2f} | {r['err']:.1e} |")
    print(f"(per added = (grid - fixed) / {n_sizes}: the grid's sizes below 100%)")

    print("\n| edges kept | " + " | ".join(f"{p:.1%}" for p, _ in sizes) + " | mean |")
    print("|---" * (len(sizes) + 2) + "|")
    for i, what in enumerate(("wall", "CPU")):
        ratios = [t[i] / t_plain[i] for _, t in sizes]
        print(f"| one pass, x plain ({what}) | " + " | ".join(f"{x:.2f}" for x in ratios)
              + f" | {sum(ratios) / len(ratios):.2f} |")

    t_whole, _ = _timed(lambda: dcd.evaluate_circuits(pm, loader, circuits, grid, **kw))
    n_sets = len(circuits) * len(grid)
    print(f"\nwhole: {len(circuits)} circuits x {len(grid)} sizes, default backend: "
          f"{t_whole[0]:.2f} s wall / {t_whole[1]:.2f} s CPU = {t_whole[1] / t_plain[1]:.1f} "
          f"plain forwards (CPU; {t_whole[1] / t_plain[1] / n_sets:.2f} per (circuit, "
          f"fraction), fixed work included)")

if __name__ == "__main__":
    main()
