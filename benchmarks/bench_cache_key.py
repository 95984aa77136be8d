"""What the attribution cache costs: the key over every weight, and a cached call vs none.

1. ``model_digest``: the model's config and every value of every floating-point weight
   (xxh3-128), best of ``--repeats``; bytes read and throughput;
2. the rest of the key: the edge order and every batch's tokens;
3. ``dcd.attribute`` on the same prompts (after an untimed warm-up call) without a
   cache, into an empty cache (key + one file per batch + the finished rows), and from the
   finished cache (key + one checked read); the differences are what the cache costs and
   saves;
4. with ``--synthetic-gb G``: the digest of ``G`` GB of random bfloat16 values, the
   throughput one would see on a larger model's weights (an 8B model in bfloat16 holds
   16 GB).

Usage::

    python benchmarks/bench_cache_key.py --model smollm2-135m --n 32 --batch-size 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=32, help="IOI prompts attributed")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--synthetic-gb", type=float, default=0.0)
    args = parser.parse_args(argv)

    import torch
    from bench_attribution import ioi_prompts

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.attribution.cache import batch_digest, cache_key, model_digest
    from auto_circuit_dcd.files import tensor_digest
    from auto_circuit_dcd.model.forward import WrapperGraph

    torch.set_num_threads(args.threads)
    pm = dcd.make_patchable(dcd.load_model(args.model))
    weights = sum(t.numel() * t.element_size() for name, t in
                  pm.wrapped_model.state_dict().items()
                  if t.is_floating_point() and not name.endswith("patch_mask"))
    t_model, digest = best_of(lambda: model_digest(pm), args.repeats)
    print(f"model {args.model}: {weights / 1e6:.0f} MB of floating-point weights; "
          f"model_digest {t_model:.3f} s ({weights / t_model / 1e9:.2f} GB/s, best of "
          f"{args.repeats})")

    loader = dcd.make_loader(dcd.load_examples(ioi_prompts(args.n), pm.tokenizer),
                             batch_size=args.batch_size)
    batches = list(loader)
    graph = WrapperGraph(pm)
    t_rest, _ = best_of(lambda: cache_key(digest, graph.names,
                                          [batch_digest(b) for b in batches], {}),
                        args.repeats)
    print(f"edge order ({len(graph.names)} edges) and {len(loader.examples)} prompts' "
          f"tokens: {t_rest:.3f} s")

    kw = dict(progress=False)
    dcd.attribute(pm, loader.subset(loader.example_ids[:2]), **kw)  # warm-up, not timed
    t_plain, A = best_of(lambda: dcd.attribute(pm, loader, **kw), 1)
    with tempfile.TemporaryDirectory() as cache:
        t_fill, B = best_of(lambda: dcd.attribute(pm, loader, cache_dir=cache, **kw), 1)
        t_load, C = best_of(lambda: dcd.attribute(pm, loader, cache_dir=cache, **kw),
                            args.repeats)
    assert torch.equal(A.scores, B.scores) and torch.equal(B.scores, C.scores)
    print(f"attribute, {A.n_examples} examples x {A.n_edges} edges: no cache {t_plain:.2f} s; "
          f"into an empty cache {t_fill:.2f} s (+{t_fill - t_plain:.2f} s); "
          f"from the finished cache {t_load:.2f} s")

    if args.synthetic_gb > 0:
        n = int(args.synthetic_gb * 1e9 / 2)
        big = torch.empty(n, dtype=torch.bfloat16).uniform_()
        t_big, _ = best_of(lambda: tensor_digest(big), args.repeats)
        print(f"synthetic {n * 2 / 1e9:.1f} GB bfloat16: {t_big:.2f} s "
              f"({n * 2 / t_big / 1e9:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
