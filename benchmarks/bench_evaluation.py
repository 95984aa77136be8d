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
- ``whole``: ``evaluate_circuits`` of ``--circuits`` circuits (the main job's single +
  2 clusters + 2 K-random for k = 2) over the MIB grid, the default backend.

Usage::

    python benchmarks/bench_evaluation.py --model smollm2-135m --n 16
    python benchmarks/bench_evaluation.py --model gpt2-like --n 16 --tokens 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_attribution import SHAPES, _load  # noqa: E402


def _timed(fn: Callable[[], Any]) -> tuple:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


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
    from auto_circuit_dcd.forward import plain_forward

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
    with plain_forward(tl), torch.inference_mode():
        tl(batch.clean)  # warm-up
        t_plain = sum(_timed(lambda: tl(batch.clean))[0] for _ in range(args.reps)) / args.reps
    print(f"model {args.model}: {pm.n_edges} edges, {batch.clean.shape[0]} prompts x "
          f"{batch.clean.shape[1]} tokens, {args.threads} thread(s)")
    print(f"plain forward (flags off): {t_plain:.3f} s")

    rows: List[Dict[str, Any]] = []
    ref_mu = None
    kw: Dict[str, Any] = dict(max_stack_gib=args.max_stack_gib)
    one = {"single": circuits["single"]}
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
        added = (t_grid - t_fixed) / len(grid)
        rows.append(dict(backend=backend, fixed=t_fixed, grid=t_grid, added=added,
                         added9=(t_grid - t_fixed) / (len(grid) - 1), err=err))
        print(f"# {backend}: fixed {t_fixed:.2f} s, grid {t_grid:.2f} s", flush=True)

    print("\n| backend | fixed work s | x plain | 1 circuit x MIB grid s | per added (circuit, "
          "fraction) s | x plain | x plain over the 9 sizes < 100% | max rel. diff of mu vs "
          "first backend |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['fixed']:.2f} | {r['fixed'] / t_plain:.2f} | "
              f"{r['grid']:.2f} | {r['added']:.3f} | {r['added'] / t_plain:.2f} | "
              f"{r['added9'] / t_plain:.2f} | {r['err']:.1e} |")

    t_whole, _ = _timed(lambda: dcd.evaluate_circuits(pm, loader, circuits, grid, **kw))
    n_sets = len(circuits) * len(grid)
    print(f"\nwhole: {len(circuits)} circuits x {len(grid)} sizes, default backend: "
          f"{t_whole:.2f} s = {t_whole / t_plain:.1f} plain forwards "
          f"({t_whole / t_plain / n_sets:.2f} per (circuit, fraction), fixed work included)")


if __name__ == "__main__":
    main()
