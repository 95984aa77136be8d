"""Time and peak memory of per-example edge attribution, against floors and auto-circuit.

Each mode runs in a fresh process, on the same batches:

- ``floor``: the plain model (TransformerLens' per-head flags off), corrupt forward +
  clean forward + backward of the metric, weights frozen: the least a gradient
  attribution can cost;
- ``floor-flags``: the same with auto-circuit's flags on;
- ``dcd-eap`` / ``dcd-eap-ig``: ``dcd.attribute`` with the fast backend (default);
- ``dcd-eap-hooks`` / ``dcd-eap-ig-hooks``: ``dcd.attribute(backend="hooks")``;
- ``ac-per-example``: auto-circuit's patch masks with a batch dimension
  (``set_mask_batch_size``), one backward per batch, gradients read from the wrappers;
- ``ac-mean``: auto-circuit's ``mask_gradient_prune_scores`` (not per example).

Models: ``smollm2-135m`` / ``toy-two-task`` (real, IOI prompts / the toy's mixed set),
``smollm2-like`` / ``gpt2-like`` (random weights, the real shapes, random tokens). Peak
RSS is the peak during the timed part (``/proc/self/clear_refs`` reset); "above model"
subtracts the RSS before it.

Usage::

    python benchmarks/bench_attribution.py --model smollm2-135m --n 32 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

NAMES = [" Mary", " John", " Tom", " James", " Anna", " Paul", " Sarah", " David"]
TEMPLATES = [
    "When{a} and{b} went to the store,{s} gave a drink to",
    "After{a} and{b} went to the park,{s} handed a ball to",
    "Then,{a} and{b} had a long argument, and afterwards{s} said to",
]


def ioi_prompts(n: int) -> Dict[str, Any]:
    """IOI prompt pairs (ABBA/BABA); corrupt = a third name in the subject position."""
    prompts = []
    i = 0
    while len(prompts) < n:
        t = TEMPLATES[i % len(TEMPLATES)]
        a, b = NAMES[i % len(NAMES)], NAMES[(i * 3 + 1) % len(NAMES)]
        c = NAMES[(i * 5 + 2) % len(NAMES)]
        i += 1
        if len({a, b, c}) < 3:
            continue
        io, s = (a, b) if i % 2 else (b, a)
        prompts.append({"clean": t.format(a=a, b=b, s=s), "corrupt": t.format(a=a, b=b, s=c),
                        "answers": [io], "wrong_answers": [s]})
    return {"prompts": prompts}



MODES = ["floor", "floor-flags", "dcd-eap", "dcd-eap-ig", "dcd-eap-hooks", "dcd-eap-ig-hooks",
         "ac-per-example", "ac-mean"]
SHAPES = {
    "smollm2-like": dict(n_layers=30, d_model=576, n_heads=9, d_head=64, d_mlp=1536,
                         d_vocab=49152, n_ctx=512, act_fn="silu", gated_mlp=True,
                         normalization_type="RMS", positional_embedding_type="rotary",
                         rotary_dim=64, rotary_base=100000),
    "gpt2-like": dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072,
                      d_vocab=50257, n_ctx=1024, act_fn="gelu_new", normalization_type="LN"),
}


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _load(args: argparse.Namespace):
    import torch

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.data import Example, load_examples, make_loader

    if args.model in SHAPES:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        model = HookedTransformer(HookedTransformerConfig(**SHAPES[args.model], seed=0,
                                                          device="cpu"))
        model.eval().requires_grad_(False)
        g = torch.Generator().manual_seed(0)
        vocab = model.cfg.d_vocab
        examples = []
        for i in range(args.n):
            clean = torch.randint(0, vocab, (args.tokens,), generator=g)
            corrupt = clean.clone()
            corrupt[args.tokens // 2] = torch.randint(0, vocab, (1,), generator=g)
            examples.append(Example(i, clean, corrupt, torch.randint(0, vocab, (1,), generator=g),
                                    torch.randint(0, vocab, (1,), generator=g)))
    else:
        model = dcd.load_model(args.model)
        examples = None
    pm = dcd.make_patchable(model)
    if examples is None:
        if args.model == "toy-two-task":
            from auto_circuit_dcd.toy import toy_dataset_path

            data = json.loads(Path(toy_dataset_path("mixed")).read_text())
            data["prompts"] = data["prompts"][: args.n]
        else:
            data = ioi_prompts(args.n)
        examples = load_examples(data, pm.tokenizer)
    return pm, make_loader(examples, batch_size=args.batch_size)


def _auto_circuit_per_example(pm: Any, loader: Any, batches: List[Any]) -> Any:
    """auto-circuit's own per-example path: masks with a batch dimension."""
    import torch
    from auto_circuit.types import AblationType
    from auto_circuit.utils.ablation_activations import batch_src_ablations
    from auto_circuit.utils.graph_utils import (patch_mode, set_all_masks, set_mask_batch_size,
                                                train_mask_mode)

    from auto_circuit_dcd.model.task_metric import max_diff
    from auto_circuit_dcd.model.edges import edge_layout

    _, layout = edge_layout(pm)
    src_outs = batch_src_ablations(pm, loader, ablation_type=AblationType.RESAMPLE,
                                   clean_corrupt="corrupt")
    rows = []
    for batch in batches:
        bsz = batch.clean.shape[0]
        with set_mask_batch_size(pm, bsz), train_mask_mode(pm):
            set_all_masks(pm, 0.0)
            with patch_mode(pm, src_outs[batch.key].clone()):
                (-max_diff(pm(batch.clean)[pm.out_slice], batch).sum()).backward()
            # set_mask_batch_size replaced the masks: read them from the wrappers
            grads = {w.module_name: w.patch_mask.grad.detach() for w in pm.dest_wrappers}
            rows.append(torch.stack([layout.from_prune_scores({k: v[b] for k, v in grads.items()})
                                     for b in range(bsz)]))
    return torch.cat(rows)


def run_mode(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    from auto_circuit_dcd.model.forward import frozen, plain_forward
    from auto_circuit_dcd.model.task_metric import max_diff

    torch.set_num_threads(args.threads)
    pm, loader = _load(args)
    batches = list(loader)
    base = _status_mb("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    with frozen(pm):
        if args.mode.startswith("floor"):
            model = pm.wrapped_model

            def leaf(t, hook):
                return t.detach().requires_grad_(True)

            def one(batch):
                with torch.no_grad():
                    model(batch.corrupt)
                with torch.enable_grad(), model.hooks(
                        fwd_hooks=[("blocks.0.hook_resid_pre", leaf)]):
                    max_diff(model(batch.clean)[:, -1], batch).sum().backward()
            for batch in batches:
                if args.mode == "floor":
                    with plain_forward(model):
                        one(batch)
                else:
                    one(batch)
            rows = None
        elif args.mode.startswith("dcd-"):
            import auto_circuit_dcd as dcd

            method = "eap-ig" if "-ig" in args.mode else "eap"
            backend = "hooks" if args.mode.endswith("-hooks") else "fast"
            rows = dcd.attribute(pm, loader, method=method, ig_steps=args.ig_steps,
                                 backend=backend, progress=False).scores
        elif args.mode == "ac-per-example":
            rows = _auto_circuit_per_example(pm, loader, batches)
        elif args.mode == "ac-mean":
            from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores

            mask_gradient_prune_scores(pm, loader, None, grad_function="logit",
                                       answer_function="avg_diff", mask_val=0.0)
            rows = None
        else:
            raise ValueError(f"unknown mode {args.mode!r}; modes: {MODES}")
    seconds = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    if rows is not None and args.save_rows:
        torch.save(rows, args.save_rows)
    return {"mode": args.mode, "seconds": seconds, "peak_rss_mb": peak, "model_rss_mb": base,
            "n_edges": pm.n_edges}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tokens", type=int, default=20, help="prompt length for random models")
    p.add_argument("--ig-steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--save-rows", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        print("RESULT " + json.dumps(run_mode(args)), flush=True)
        return
    results: List[Dict[str, Any]] = []
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--mode", mode, "--model", args.model,
               "--n", str(args.n), "--batch-size", str(args.batch_size),
               "--tokens", str(args.tokens), "--ig-steps", str(args.ig_steps),
               "--threads", str(args.threads)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode != 0 or not line:
            print(f"{mode}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(line[-1][len("RESULT "):]))
        r = results[-1]
        print(f"# {mode}: {r['seconds']:.1f} s, peak {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
    floor = next((r for r in results if r["mode"] == "floor"), None)
    n_edges = results[0]["n_edges"] if results else 0
    out_mb = n_edges * args.n * 4 / 2**20
    print(f"\nmodel {args.model}, {args.n} prompts, batch {args.batch_size}, {args.threads} "
          f"thread(s), {n_edges} edges (output matrix {out_mb:.0f} MB)\n")
    print("| mode | seconds | x floor | peak RSS MB | above model MB | x floor mem |")
    print("|---|---|---|---|---|---|")
    for r in results:
        extra = r["peak_rss_mb"] - r["model_rss_mb"]
        fx = fm = "-"
        if floor:
            fx = f"{r['seconds'] / floor['seconds']:.2f}"
            fm = f"{extra / max(floor['peak_rss_mb'] - floor['model_rss_mb'], 1e-9):.2f}"
        print(f"| {r['mode']} | {r['seconds']:.2f} | {fx} | {r['peak_rss_mb']:.0f} | "
              f"{extra:.0f} | {fm} |")
    by = {r["mode"]: r for r in results}
    if "dcd-eap" in by and "ac-per-example" in by:
        a, b = by["dcd-eap"], by["ac-per-example"]
        mem = ((a["peak_rss_mb"] - a["model_rss_mb"])
               / max(b["peak_rss_mb"] - b["model_rss_mb"], 1e-9))
        print(f"\ndcd-eap vs auto-circuit's per-example masks: "
              f"{b['seconds'] / a['seconds']:.2f}x faster, {mem:.2f}x its memory above the model")


if __name__ == "__main__":
    main()
