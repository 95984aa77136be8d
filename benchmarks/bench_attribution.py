"""Time and peak memory of per-example edge attribution, against floors and auto-circuit.

Each mode runs in a fresh process, on the same batches, one torch thread by default; each
is timed as this process's CPU time (``time.process_time``: compute, whatever else the
machine runs) and as wall time:

- ``floor``: the plain model (TransformerLens' per-head flags off), corrupt forward +
  clean forward + backward of the metric, weights frozen: the least a gradient
  attribution can cost (the model's logits at every position, as the model computes them);
- ``floor-flags``: the same with auto-circuit's flags on;
- ``passes``: the physical limit of EAP-IG with ``k`` steps (one row per ``--ig-steps``):
  the passes it needs and nothing else, on the plain model with weights frozen: the
  corrupt forward and ``k`` forward + backward passes at the interpolated input embeddings
  (the step ``alpha = 1`` is the clean run), the logits at the last position only (all the
  metric reads), no hooks, no source differences, no contraction;
- ``dcd-eap`` / ``dcd-eap-ig``: ``dcd.attribute`` with the fast backend (default), EAP-IG
  once per ``--ig-steps``;
- ``dcd-eap-hooks`` / ``dcd-eap-ig-hooks``: ``dcd.attribute(backend="hooks")``;
- ``ac-per-example``: auto-circuit's patch masks with a batch dimension
  (``set_mask_batch_size``), one backward per batch, gradients read from the wrappers;
- ``ac-mean``: auto-circuit's ``mask_gradient_prune_scores`` (not per example).

Models: ``smollm2-135m`` / ``toy-two-task`` (real, IOI prompts / the toy's mixed set),
``smollm2-like`` / ``gpt2-like`` / ``l12-d384`` (random weights, see :data:`SHAPES`,
random tokens). Peak RSS is the peak during the timed part (``/proc/self/clear_refs``
reset); "above model" subtracts the RSS before it.

Usage::

    python benchmarks/bench_attribution.py --model smollm2-135m --n 32 --batch-size 16
    python benchmarks/bench_attribution.py --model gpt2-like --n 32 \
        --modes floor,passes,dcd-eap-ig --ig-steps 1,5,10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NAMES = [" Mary", " John", " Tom", " James", " Anna", " Paul", " Sarah", " David"]
TEMPLATES = [
    "When{a} and{b} went to the store,{s} gave a drink to",
    "After{a} and{b} went to the park,{s} handed a ball to",
    "Then,{a} and{b} had a long argument, and afterwards{s} said to",
]


def ioi_prompts(n: int) -> dict[str, Any]:
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



MODES = ["floor", "floor-flags", "passes", "dcd-eap", "dcd-eap-ig", "dcd-eap-hooks",
         "dcd-eap-ig-hooks", "ac-per-example", "ac-mean"]
#: modes run once per ``--ig-steps`` value
PER_STEPS = ("passes", "dcd-eap-ig", "dcd-eap-ig-hooks")
SHAPES = {
    "smollm2-like": dict(n_layers=30, d_model=576, n_heads=9, d_head=64, d_mlp=1536,
                         d_vocab=49152, n_ctx=512, act_fn="silu", gated_mlp=True,
                         normalization_type="RMS", positional_embedding_type="rotary",
                         rotary_dim=64, rotary_base=100000),
    "gpt2-like": dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072,
                      d_vocab=50257, n_ctx=1024, act_fn="gelu_new", normalization_type="LN"),
    # GPT-2 small's graph (12 layers x 12 heads, 32,491 edges) at half its width and a
    # 1,000-token vocabulary: the unembedding is small, the per-edge work weighs most
    "l12-d384": dict(n_layers=12, d_model=384, n_heads=12, d_head=32, d_mlp=1536,
                     d_vocab=1000, n_ctx=1024, act_fn="gelu_new", normalization_type="LN"),
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


def _auto_circuit_per_example(pm: Any, loader: Any, batches: list[Any]) -> Any:
    """auto-circuit's own per-example path: masks with a batch dimension."""
    import torch
    from auto_circuit.types import AblationType
    from auto_circuit.utils.ablation_activations import batch_src_ablations
    from auto_circuit.utils.graph_utils import (
        patch_mode,
        set_all_masks,
        set_mask_batch_size,
        train_mask_mode,
    )

    from auto_circuit_dcd.model.edges import edge_layout
    from auto_circuit_dcd.model.task_metric import max_diff

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


def _passes(model: Any, batches: list[Any], steps: int) -> None:
    """EAP-IG's passes alone (``passes`` mode): corrupt forward, then ``steps`` forward +
    backward passes at the interpolated input embeddings; last-position logits."""
    import torch

    from auto_circuit_dcd.model.forward import plain_forward
    from auto_circuit_dcd.model.task_metric import max_diff

    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"

    def keep_last(t, hook):
        return t[:, -1:]

    with plain_forward(model):
        for batch in batches:
            corrupt: list[Any] = []
            with torch.no_grad(), model.hooks(fwd_hooks=[
                    ("blocks.0.hook_resid_pre", lambda t, hook: corrupt.append(t)),
                    (last, keep_last)]):
                model(batch.corrupt)
            for k in range(steps, 0, -1):
                def interpolate(t, hook, alpha=k / steps):
                    x = corrupt[0] + alpha * (t.detach() - corrupt[0])
                    return x.requires_grad_(True)

                with torch.enable_grad(), model.hooks(fwd_hooks=[
                        ("blocks.0.hook_resid_pre", interpolate), (last, keep_last)]):
                    max_diff(model(batch.clean)[:, -1], batch).sum().backward()


def run_mode(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from auto_circuit_dcd.model.forward import frozen, plain_forward
    from auto_circuit_dcd.model.task_metric import max_diff

    torch.set_num_threads(args.threads)
    pm, loader = _load(args)
    batches = list(loader)
    base = _status_mb("VmRSS")
    _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
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
        elif args.mode == "passes":
            _passes(pm.wrapped_model, batches, args.ig_steps)
            rows = None
        elif args.mode.startswith("dcd-"):
            import auto_circuit_dcd as dcd

            method = "eap-ig" if "-ig" in args.mode else "eap"
            backend = "hooks" if args.mode.endswith("-hooks") else "fast"
            kw = {} if args.max_stack_gib is None else {"max_stack_gib": args.max_stack_gib}
            rows = dcd.attribute(pm, loader, method=method, ig_steps=args.ig_steps,
                                 backend=backend, progress=False, **kw).scores
        elif args.mode == "ac-per-example":
            rows = _auto_circuit_per_example(pm, loader, batches)
        elif args.mode == "ac-mean":
            from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores

            mask_gradient_prune_scores(pm, loader, None, grad_function="logit",
                                       answer_function="avg_diff", mask_val=0.0)
            rows = None
        else:
            raise ValueError(f"unknown mode {args.mode!r}; modes: {MODES}")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_mb("VmHWM")
    if rows is not None and args.save_rows:
        torch.save(rows, args.save_rows)
    shape = tuple(batches[0].clean.shape)
    return {"mode": args.mode, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak,
            "model_rss_mb": base, "n_edges": pm.n_edges, "n_batches": len(batches),
            "first_batch": shape}


def _label(mode: str, steps: int) -> str:
    return f"{mode}-{steps}" if mode in PER_STEPS else mode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tokens", type=int, default=20, help="prompt length for random models")
    p.add_argument("--ig-steps", default="5", help="EAP-IG steps, one value or a list: 1,5,10")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--max-stack-gib", type=float, default=None,
                   help="dcd.attribute's max_stack_gib (default: the package's)")
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--save-rows", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        args.ig_steps = int(args.ig_steps)
        print("RESULT " + json.dumps(run_mode(args)), flush=True)
        return
    steps_list = [int(k) for k in str(args.ig_steps).split(",")]
    runs = []
    for mode in args.modes.split(","):
        if mode not in MODES:
            p.error(f"unknown mode {mode!r}; modes: {','.join(MODES)}")
        runs += [(mode, k) for k in steps_list] if mode in PER_STEPS else [(mode, steps_list[0])]
    results: list[dict[str, Any]] = []
    for mode, steps in runs:
        cmd = [sys.executable, __file__, "--mode", mode, "--model", args.model,
               "--n", str(args.n), "--batch-size", str(args.batch_size),
               "--tokens", str(args.tokens), "--ig-steps", str(steps),
               "--threads", str(args.threads)]
        if args.max_stack_gib is not None:
            cmd += ["--max-stack-gib", str(args.max_stack_gib)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        label = _label(mode, steps)
        if out.returncode != 0 or not line:
            print(f"{label}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append({**json.loads(line[-1][len("RESULT "):]), "label": label,
                        "steps": steps})
        r = results[-1]
        print(f"# {label}: {r['cpu_seconds']:.2f} CPU s, {r['seconds']:.2f} wall s, peak "
              f"{r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    _table(args, results)


def _table(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    floor = next((r for r in results if r["mode"] == "floor"), None)
    limits = {r["steps"]: r for r in results if r["mode"] == "passes"}
    n_edges = results[0]["n_edges"] if results else 0
    out_mb = n_edges * args.n * 4 / 2**20
    shape = results[0]["first_batch"] if results else ()
    print(f"\nmodel {args.model}, {args.n} prompts, batch {args.batch_size} (first batch "
          f"{shape[0] if shape else '?'} x {shape[1] if shape else '?'} tokens), "
          f"{args.threads} thread(s), {n_edges} edges (output matrix {out_mb:.0f} MB)\n")
    print("| mode | CPU s | wall s | x floor (CPU) | limit x floor (CPU) | x limit (CPU) | "
          "peak RSS MB | above model MB | x floor mem |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        extra = r["peak_rss_mb"] - r["model_rss_mb"]
        fx = fm = lim = xl = "-"
        if floor:
            fx = f"{r['cpu_seconds'] / floor['cpu_seconds']:.2f}"
            fm = f"{extra / max(floor['peak_rss_mb'] - floor['model_rss_mb'], 1e-9):.2f}"
        steps = r["steps"] if r["mode"] in PER_STEPS else (1 if r["mode"].startswith("dcd-eap")
                                                            else None)
        if steps in limits and r["mode"] != "floor" and r["mode"].startswith(("dcd", "passes")):
            if floor:
                lim = f"{limits[steps]['cpu_seconds'] / floor['cpu_seconds']:.2f}"
            xl = f"{r['cpu_seconds'] / limits[steps]['cpu_seconds']:.2f}"
        print(f"| {r['label']} | {r['cpu_seconds']:.2f} | {r['seconds']:.2f} | {fx} | {lim} | "
              f"{xl} | {r['peak_rss_mb']:.0f} | {extra:.0f} | {fm} |")
    by = {r["label"]: r for r in results}
    if "dcd-eap" in by and "ac-per-example" in by:
        a, b = by["dcd-eap"], by["ac-per-example"]
        mem = ((a["peak_rss_mb"] - a["model_rss_mb"])
               / max(b["peak_rss_mb"] - b["model_rss_mb"], 1e-9))
        print(f"\ndcd-eap vs auto-circuit's per-example masks: "
              f"{b['cpu_seconds'] / a['cpu_seconds']:.2f}x faster (CPU), {mem:.2f}x its memory "
              "above the model")


if __name__ == "__main__":
    main()
