"""Where per-example attribution spends its time, stage by stage (torch profiler).

One ``dcd.attribute`` call on the benchmark's batches (``bench_attribution.py``'s models
and data) runs under ``torch.profiler``; the stages are the package's own labelled ranges:

- ``corrupt forward``: the corrupt run (no grad), source outputs recorded;
- ``forward``: the stacked forward(s) at the interpolated inputs (the first copy is the
  clean run), hooks included;
- ``backward (autograd)``: the backward pass(es) without the package's gradient hooks;
- ``head pullback``: Q/K/V destination gradients pulled back through ``ln1`` and summed
  over the steps (fast backend);
- ``norm stats``: ``ln1``'s ``1/s`` and ``xhat`` per layer and stack (fast backend);
- ``contraction``: destination gradients (summed over the steps) x source differences;
- ``source diffs``: source outputs recorded (clean - corrupt);
- ``other``: the rest of the call (batching, rows to the CPU, matrix assembly).

CPU seconds of one thread (``time.process_time``) for the unprofiled call are printed
beside the profiled one (the profiler adds its own overhead).

Usage::

    python benchmarks/profile_attribution.py --model gpt2-like --n 16 --ig-steps 5
"""

from __future__ import annotations

import argparse
import time

STAGES = {
    "corrupt forward": "attribution.corrupt_forward",
    "forward": "attribution.forward",
    "backward": "attribution.backward",
    "head pullback": "attribution.head_pullback",
    "norm stats": "attribution.norm_stats",
    "contraction": "attribution.contract",
    "source diffs": "attribution.source_diffs",
}


def stage_seconds(prof) -> dict[str, float]:
    """CPU seconds per labelled range (children included), from a finished profiler."""
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
    return {name: totals.get(label, 0.0) for name, label in STAGES.items()}


def main() -> None:
    import torch
    from bench_attribution import SHAPES, _load
    from torch.profiler import ProfilerActivity, profile

    import auto_circuit_dcd as dcd

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gpt2-like", help=f"{sorted(SHAPES)} or a package model")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tokens", type=int, default=20, help="prompt length for random models")
    p.add_argument("--method", default="eap-ig", choices=["eap", "eap-ig"])
    p.add_argument("--ig-steps", type=int, default=5)
    p.add_argument("--backend", default="fast", choices=["fast", "hooks"])
    p.add_argument("--max-stack-gib", type=float, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    pm, loader = _load(args)

    def run() -> None:
        dcd.attribute(pm, loader, method=args.method, ig_steps=args.ig_steps,
                      backend=args.backend, progress=False, max_stack_gib=args.max_stack_gib)

    run()  # warm-up
    t0 = time.process_time()
    run()
    plain = time.process_time() - t0
    t0 = time.process_time()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    profiled = time.process_time() - t0
    s = stage_seconds(prof)
    in_backward = s["head pullback"] + s["norm stats"] + s["contraction"]
    rows = [("corrupt forward", s["corrupt forward"]),
            ("forward (stacked steps)", s["forward"]),
            ("backward (autograd)", s["backward"] - in_backward),
            ("head pullback", s["head pullback"]),
            ("norm stats", s["norm stats"]),
            ("contraction", s["contraction"]),
            ("  of which source diffs (in the forwards)", s["source diffs"])]
    other = profiled - sum(v for k, v in rows if not k.startswith("  "))
    rows.append(("other", other))
    print(f"\n{args.model}, {args.n} prompts x batch {args.batch_size}, {args.method}"
          f"{'-' + str(args.ig_steps) if args.method == 'eap-ig' else ''}, {args.backend} "
          f"backend, 1 thread: {plain:.2f} CPU s unprofiled, {profiled:.2f} profiled\n")
    print("| stage | CPU s (profiled) | share |")
    print("|---|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} | {sec / profiled:.0%} |")


if __name__ == "__main__":
    main()
