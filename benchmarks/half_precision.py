"""Half-precision attribution against float32: row error, the model's own error, speed.

For each dtype (float32, float16, bfloat16) the same model is loaded in that dtype and
``dcd.attribute`` (fast backend) scores the same prompts. Printed per dtype:

- seconds and rows per second of ``dcd.attribute`` (after a one-batch warm-up);
- the rows' relative error against float32, ``|row - row_fp32| / |row_fp32|`` (max and
  median over examples);
- the floor: the model's own error at the last position, logits (max relative) and the
  metric mu (max absolute error / mean |mu|);
- the mean circuit's top-5% edges (by |score|) against float32's: intersection over union.

Usage::

    python benchmarks/half_precision.py --model smollm2-135m --n 16 --batch-size 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _loader(pm: Any, name: str, n: int, batch_size: int) -> Any:
    from auto_circuit_dcd.data import load_examples, make_loader

    if name.startswith("tiny-random"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import random_examples

        examples = [e for e in random_examples(n, lengths=(8,), seed=5)
                    if not bool((e.answers[:, None] == e.wrong_answers).any())]
    else:
        from bench_attribution import ioi_prompts

        examples = load_examples(ioi_prompts(n), pm.tokenizer)
    return make_loader(examples, batch_size, device=next(pm.parameters()).device)


def measure(name: str, dtype: str, n: int, batch_size: int, method: str) -> dict[str, Any]:
    import torch

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.data import make_loader
    from auto_circuit_dcd.model.task_metric import max_diff

    pm = dcd.make_patchable(dcd.load_model(name, dtype=dtype))
    loader = _loader(pm, name, n, batch_size)
    dcd.attribute(pm, make_loader(loader.examples[:batch_size], batch_size), method=method,
                  progress=False)  # warm-up
    t0 = time.perf_counter()
    A = dcd.attribute(pm, loader, method=method, progress=False)
    seconds = time.perf_counter() - t0
    mus, logits = [], []
    with torch.no_grad():
        for batch in loader:
            last = pm.wrapped_model(batch.clean)[:, -1].float()
            logits.append(last)
            mus.append(max_diff(last, batch))
    return {"dtype": dtype, "seconds": seconds, "rows": A.scores, "ids": A.example_ids,
            "backend": A.meta["backend"], "logits": torch.cat(logits), "mu": torch.cat(mus),
            "n_edges": A.n_edges}


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--method", default="eap", choices=["eap", "eap-ig"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results: list[dict[str, Any]] = [measure(args.model, d, args.n, args.batch_size, args.method)
                                     for d in ("float32", "float16", "bfloat16")]
    ref = results[0]
    k = max(1, int(0.05 * ref["n_edges"]))

    def top(rows: Any) -> set:
        return set(rows.double().mean(0).abs().topk(k).indices.tolist())

    print(f"\nmodel {args.model}, {args.method}, {len(ref['ids'])} prompts, batch "
          f"{args.batch_size}, {args.threads} thread(s), {ref['n_edges']} edges\n")
    print("| dtype | backend | seconds | rows/s | row error max | row error median | "
          "logits error max | mu error / mean abs mu | top-5% IoU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        assert r["ids"] == ref["ids"]
        row_err = (r["rows"] - ref["rows"]).norm(dim=1) / ref["rows"].norm(dim=1)
        logit_err = ((r["logits"] - ref["logits"]).norm(dim=1) / ref["logits"].norm(dim=1)).max()
        mu_err = (r["mu"] - ref["mu"]).abs().max() / ref["mu"].abs().mean()
        iou = len(top(r["rows"]) & top(ref["rows"])) / len(top(r["rows"]) | top(ref["rows"]))
        print(f"| {r['dtype']} | {r['backend']} | {r['seconds']:.2f} | "
              f"{len(r['ids']) / r['seconds']:.2f} | {float(row_err.max()):.2e} | "
              f"{float(row_err.median()):.2e} | {float(logit_err):.2e} | {float(mu_err):.2e} | "
              f"{iou:.3f} |")


if __name__ == "__main__":
    main()
