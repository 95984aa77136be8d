"""Wall time of attribution and evaluation with 1 and with several workers, and the speed-up.

For each worker count N (``--workers``, default ``1,2``):

1. ``torchrun --standalone --nproc-per-node N`` starts N copies of this script
   (``--worker``), ``OMP_NUM_THREADS`` = ``--threads`` each (N = 1: no process group, the
   single-process path);
2. each loads the model and the same prompts (SmolLM2 on IOI prompts by default), joins
   the process group (gloo on the CPU, nccl with one GPU per local rank on CUDA) and
   waits at a barrier;
3. ``dcd.attribute`` (EAP, no cache) is timed from that barrier to the end of the call on
   rank 0 (the gathered matrix on every rank), then ``dcd.evaluate_circuits`` of
   ``--circuits`` circuits at ``--fractions`` (the main job's evaluation, smaller);
4. rank 0 writes its times; the table gives seconds per stage and the speed-up against
   the first worker count (its time / this time).

Usage (on a machine with nothing else running; one thread per worker)::

    python benchmarks/bench_distributed.py                       # SmolLM2, 1 and 2 CPU workers
    python benchmarks/bench_distributed.py --device cuda --workers 1,2,4 --prompts 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _worker(args: argparse.Namespace) -> None:
    import torch
    from bench_attribution import _load

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd import distributed as dist

    torch.set_num_threads(args.threads)
    with dist.process_group(args.device):
        device = dist.worker_device(args.device)
        pm, loader = _load(args)
        pm = pm.to(device) if device != "cpu" else pm
        # the same circuits on every rank: random scores (seeded), top edges by |score|
        g = torch.Generator().manual_seed(0)
        n_edges = pm.n_edges
        circuits = {f"c{i}": torch.randn(n_edges, generator=g) for i in range(args.circuits)}
        times: dict[str, float] = {}
        for name, call in (
                ("attribution", lambda: dcd.attribute(pm, loader, progress=False)),
                ("evaluation", lambda: dcd.evaluate_circuits(pm, loader, circuits,
                                                             args.fractions))):
            dist.barrier()
            if torch.cuda.is_available() and device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            call()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dist.barrier()
            times[name] = time.perf_counter() - t0
        if dist.is_main():
            Path(args.out).write_text(json.dumps({
                "world_size": dist.world_size(), "times": times, "n": args.n,
                "n_batches": len(loader.batch_example_ids), "n_edges": n_edges}))


def _launch(args: argparse.Namespace, n: int, out: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", str(n), str(Path(__file__).resolve()), "--worker",
           "--out", str(out), "--model", args.model, "--prompts", str(args.n),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads),
           "--tokens", str(args.tokens),
           "--circuits", str(args.circuits), "--device", args.device,
           "--fractions", ",".join(map(str, args.fractions))]
    subprocess.run(cmd, env=env, check=True)
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    # --prompts, not --n: torchrun takes "--n" after the script for its own --nnodes
    p.add_argument("--prompts", "--n", dest="n", type=int, default=64, help="prompts")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tokens", type=int, default=16, help="prompt length for random models")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--circuits", type=int, default=2)
    p.add_argument("--fractions", type=lambda s: [float(x) for x in s.split(",")],
                   default=[0.01, 0.05, 0.2], help="edge fractions evaluated")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--device", default="cpu")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        _worker(args)
        return
    counts: list[int] = [int(x) for x in args.workers.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            rows.append(_launch(args, n, Path(tmp) / f"w{n}.json"))
    first = rows[0]
    print(f"{args.model}: {first['n']} prompts in {first['n_batches']} batches, "
          f"{first['n_edges']} edges, {args.circuits} circuits x {len(args.fractions)} sizes, "
          f"{args.threads} thread(s) per worker, {args.device}")
    print(f"{'workers':>7} {'attribution s':>14} {'speed-up':>9} {'evaluation s':>13} "
          f"{'speed-up':>9}")
    for r in rows:
        a, e = r["times"]["attribution"], r["times"]["evaluation"]
        print(f"{r['world_size']:>7} {a:>14.2f} {first['times']['attribution'] / a:>8.2f}x "
              f"{e:>13.2f} {first['times']['evaluation'] / e:>8.2f}x")


if __name__ == "__main__":
    main()
