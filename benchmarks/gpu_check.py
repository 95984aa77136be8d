"""A GPU check that fits a short borrowed slot: device tests, then attribution and
faithfulness on random models of real shapes, with the plain-forward floor beside them.

1. the test suite's device tests (``pytest -m cuda tests/test_devices.py``; on a machine
   without CUDA they are skipped and the rest runs on the CPU);
2. per model (random weights from a config, built on the device; no download):
   ``llama-3.2-1b-like`` (16 layers, d_model 2048, 32 query heads over 8 key/value heads,
   RMSNorm, rotary, gated SiLU MLP; bfloat16) and ``gpt2-small-like`` (12 layers,
   d_model 768, LayerNorm; float32):

   - ``floor``: the plain model (TransformerLens' per-head flags off), corrupt forward +
     clean forward + backward of the metric per batch, weights frozen;
   - ``eap`` / ``eap-ig``: ``dcd.attribute`` (fast backend, 5 IG steps);
   - ``forward``: one plain clean forward per batch (the floor of a patched forward);
   - ``faithfulness``: ``dcd.evaluate_circuits`` of one circuit at a few sizes
     (auto-circuit's patch mode), reported per (circuit, size) next to ``forward``;

   each after one untimed warm-up batch, with seconds, examples per second and peak
   device memory above the model (``torch.cuda.max_memory_allocated``);
3. on a machine with several GPUs, the multi-worker line: ``benchmarks/bench_distributed.py``
   (attribution and evaluation of ``gpt2-like`` on 1 and on every GPU, one worker per GPU
   under torchrun, and the speed-up); skipped with one GPU or none;
4. a table on stdout and everything as JSON in ``--out`` (default ``$OUT`` if set).

Run on a CUDA machine with its own torch (see docs/scale.md, "GPU figures": how to carry the missing
pure-Python packages there as wheels)::

    python benchmarks/gpu_check.py                  # full size, under 8 minutes on one H200
    python benchmarks/gpu_check.py --size small --device cpu   # the flow, on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: name -> (TransformerLens config entries, dtype name)
SHAPES: dict[str, Any] = {
    "llama-3.2-1b-like": (dict(n_layers=16, d_model=2048, n_heads=32, n_key_value_heads=8,
                               d_head=64, d_mlp=8192, d_vocab=128256, act_fn="silu",
                               gated_mlp=True, normalization_type="RMS",
                               positional_embedding_type="rotary", rotary_dim=64,
                               rotary_base=500000, final_rms=True), "bfloat16"),
    "gpt2-small-like": (dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072,
                             d_vocab=50257, act_fn="gelu_new", normalization_type="LN"),
                        "float32"),
}
#: --size small: the same architectures, shrunk for a CPU run of the whole flow
SMALL = dict(n_layers=2, d_model=64, d_head=16, d_mlp=128, d_vocab=512)
SIZES = {"full": dict(n=64, batch_size=16, tokens=24, eval_n=16),
         "small": dict(n=8, batch_size=4, tokens=12, eval_n=4)}
FRACTIONS = [0.01, 0.1, 1.0]


def device_tests(timeout: int) -> dict[str, Any]:
    """The suite's device tests in a subprocess: exit code, seconds, pytest's last line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
           str(ROOT / "tests" / "test_devices.py")]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        tail = (proc.stdout.strip().splitlines() or [""])[-1]
        code = proc.returncode
        if code not in (0, 5):
            print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
    except subprocess.TimeoutExpired:
        code, tail = -1, f"timed out after {timeout} s"
    return {"returncode": code, "seconds": round(time.perf_counter() - t0, 1), "summary": tail}


def multi_worker(timeout: int) -> dict[str, Any]:
    """``bench_distributed.py`` on 1 and on all visible GPUs, or why it was skipped."""
    import torch

    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_gpus < 2:
        return {"skipped": f"needs 2 or more CUDA GPUs, {n_gpus} visible"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_distributed.py"), "--device",
           "cuda", "--model", "gpt2-like", "--n", "256", "--batch-size", "16",
           "--workers", f"1,{n_gpus}"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        lines, code = proc.stdout.strip().splitlines(), proc.returncode
        if code:
            print(proc.stderr[-3000:], file=sys.stderr)
    except subprocess.TimeoutExpired:
        lines, code = [f"timed out after {timeout} s"], -1
    return {"returncode": code, "seconds": round(time.perf_counter() - t0, 1), "table": lines}


# ----------------------------------------------------------------------------- models
def build_model(name: str, size: str, device: Any) -> Any:
    """A random model of ``name``'s shape on ``device``, weights N(0, 0.02), norms at 1."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    entries, dtype = SHAPES[name]
    entries = dict(entries)
    if size == "small":
        heads = {"n_heads": 4, "n_key_value_heads": 2 if "n_key_value_heads" in entries else None}
        entries.update(SMALL, **heads)
        entries["rotary_dim"] = SMALL["d_head"] if "rotary_dim" in entries else None
        entries = {k: v for k, v in entries.items() if v is not None}
    cfg = HookedTransformerConfig(**entries, n_ctx=256, device=str(device),
                                  dtype=getattr(torch, dtype), init_weights=False)
    with torch.device(device):  # allocate on the device, not on the CPU first
        model = HookedTransformer(cfg, move_to_device=False)
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.split(".")[-1].lstrip("_").startswith("W"):
                p.normal_(0.0, 0.02, generator=g)
    return model.eval().requires_grad_(False)


def random_loader(pm: Any, n: int, tokens: int, batch_size: int, device: Any) -> Any:
    """``n`` random prompt pairs (one token changed) on ``device``."""
    import torch

    from auto_circuit_dcd.data import Example, make_loader

    g = torch.Generator().manual_seed(1)
    vocab = pm.wrapped_model.cfg.d_vocab
    examples = []
    for i in range(n):
        clean = torch.randint(0, vocab, (tokens,), generator=g)
        corrupt = clean.clone()
        corrupt[tokens // 2] = (clean[tokens // 2] + 1) % vocab
        answer, wrong = torch.randperm(vocab, generator=g)[:2]
        examples.append(Example(i, clean, corrupt, answer[None], wrong[None]))
    return make_loader(examples, batch_size, device=device)


# ----------------------------------------------------------------------------- timing
@contextmanager
def measured(device: Any, into: dict[str, Any]) -> Iterator[None]:
    """Seconds and peak device memory above what was allocated before (CUDA only)."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    t0 = time.perf_counter()
    yield
    if cuda:
        torch.cuda.synchronize(device)
    into["seconds"] = time.perf_counter() - t0
    into["peak_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if cuda else None


def floor_pass(pm: Any, batches: list[Any]) -> None:
    """Plain model: corrupt forward, clean forward, backward of the metric (input leaf)."""
    import torch

    from auto_circuit_dcd.model.forward import frozen, plain_forward
    from auto_circuit_dcd.model.task_metric import max_diff

    model = pm.wrapped_model

    def leaf(t: Any, hook: Any) -> Any:
        return t.detach().requires_grad_(True)

    with frozen(pm), plain_forward(model):
        for batch in batches:
            with torch.no_grad():
                model(batch.corrupt)
            with torch.enable_grad(), model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", leaf)]):
                max_diff(model(batch.clean)[:, -1].float(), batch).sum().backward()


def forward_pass(pm: Any, batches: list[Any]) -> None:
    import torch

    from auto_circuit_dcd.model.forward import plain_forward

    with plain_forward(pm.wrapped_model), torch.inference_mode():
        for batch in batches:
            pm.wrapped_model(batch.clean)


def check_model(name: str, size: str, device: Any) -> dict[str, Any]:
    import torch

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.data import make_loader

    sz = SIZES[size]
    t0 = time.perf_counter()
    model = build_model(name, size, device)
    pm = dcd.make_patchable(model)
    build_s = time.perf_counter() - t0
    loader = random_loader(pm, sz["n"], sz["tokens"], sz["batch_size"], device)
    batches = list(loader)
    eval_loader = make_loader(loader.examples[: sz["eval_n"]], sz["batch_size"], device=device)
    eval_batches = list(eval_loader)
    cfg = pm.wrapped_model.cfg
    out: dict[str, Any] = {
        "model": name, "dtype": str(cfg.dtype).replace("torch.", ""), "n_layers": cfg.n_layers,
        "d_model": cfg.d_model, "n_edges": pm.n_edges, "n_examples": sz["n"],
        "batch_size": sz["batch_size"], "tokens": sz["tokens"], "build_seconds": build_s,
        "model_mb": (torch.cuda.memory_allocated(device) / 2**20
                     if device.type == "cuda" else None), "modes": {}}
    print(f"# {name}: {pm.n_edges} edges, built in {build_s:.1f} s", file=sys.stderr)

    first = make_loader(loader.examples[: sz["batch_size"]], sz["batch_size"], device=device)
    ps = None
    modes = {
        "floor": (lambda: floor_pass(pm, batches), lambda: floor_pass(pm, batches[:1]), sz["n"]),
        "eap": (lambda: dcd.attribute(pm, loader, progress=False),
                lambda: dcd.attribute(pm, first, progress=False), sz["n"]),
        "eap-ig": (lambda: dcd.attribute(pm, loader, method="eap-ig", ig_steps=5,
                                         progress=False),
                   lambda: dcd.attribute(pm, first, method="eap-ig", ig_steps=2,
                                         progress=False), sz["n"]),
        "forward": (lambda: forward_pass(pm, eval_batches),
                    lambda: forward_pass(pm, eval_batches[:1]), sz["eval_n"]),
    }
    for mode, (run, warm, n) in modes.items():
        warm()
        rec: dict[str, Any] = {}
        with measured(device, rec):
            result = run()
        if mode == "eap":
            ps = result.prune_scores(model=pm)
            rec["backend"] = result.meta["backend"]
            rec["finite"] = bool(torch.isfinite(result.scores).all())
        rec["examples_per_s"] = n / rec["seconds"]
        out["modes"][mode] = rec
        print(f"# {name} {mode}: {rec['seconds']:.2f} s", file=sys.stderr)

    dcd.evaluate_circuits(pm, make_loader(loader.examples[:1], 1, device=device),
                          {"single": ps}, [0.1])  # warm-up
    rec = {}
    with measured(device, rec):
        res = dcd.evaluate_circuits(pm, eval_loader, {"single": ps}, FRACTIONS)["single"]
    rec["examples_per_s"] = sz["eval_n"] / rec["seconds"]
    rec["fractions"] = FRACTIONS
    rec["f"] = [float(x) for x in res.f]
    # patched forwards: one per fraction below 1 plus the empty circuit (1.0 is the clean run)
    n_patched = sum(1 for f in FRACTIONS if f < 1.0) + 1
    rec["seconds_per_patched_forward"] = rec["seconds"] / n_patched
    out["modes"]["faithfulness"] = rec
    print(f"# {name} faithfulness: {rec['seconds']:.2f} s", file=sys.stderr)
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        floor, fwd = r["modes"]["floor"], r["modes"]["forward"]
        lines.append(f"\n{r['model']} ({r['dtype']}, {r['n_layers']} layers, d_model "
                     f"{r['d_model']}, {r['n_edges']} edges): {r['n_examples']} examples, "
                     f"batch {r['batch_size']}, {r['tokens']} tokens"
                     + (f", model {r['model_mb']:.0f} MB" if r["model_mb"] else ""))
        lines.append("| mode | seconds | examples/s | x floor | peak MB above model |")
        lines.append("|---|---|---|---|---|")
        for mode, rec in r["modes"].items():
            ref = fwd if mode in ("forward", "faithfulness") else floor
            x = rec["seconds"] / ref["seconds"]
            if mode == "faithfulness":
                x = rec["seconds_per_patched_forward"] / ref["seconds"]
            peak = "-" if rec["peak_mb"] is None else f"{rec['peak_mb']:.0f}"
            lines.append(f"| {mode} | {rec['seconds']:.2f} | {rec['examples_per_s']:.1f} | "
                         f"{x:.2f} | {peak} |")
        f = r["modes"]["faithfulness"]
        lines.append(f"faithfulness f at {f['fractions']}: "
                     + ", ".join(f"{x:.3f}" for x in f["f"])
                     + "; x floor of faithfulness = seconds per patched forward / forward")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cuda, cpu")
    p.add_argument("--models", default=",".join(SHAPES))
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--tests-timeout", type=int, default=240)
    p.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check.json")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from auto_circuit_dcd.job.assemble import versions
    from auto_circuit_dcd.model.devices import resolve_device

    device = resolve_device(args.device)
    report: dict[str, Any] = {"versions": versions(), "device": str(device),
                              "size": args.size, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    print(json.dumps({k: report[k] for k in ("versions", "device")}), file=sys.stderr)
    t0 = time.perf_counter()
    if not args.skip_tests:
        report["device_tests"] = device_tests(args.tests_timeout)
        print(f"# device tests: {report['device_tests']}", file=sys.stderr)
    report["models"] = []
    for name in args.models.split(","):
        report["models"].append(check_model(name, args.size, device))
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the model is gone with check_model's frame
        if args.out:  # whatever finished is kept if a later model fails
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "gpu_check.json").write_text(json.dumps(report, indent=1))
    if device.type == "cuda":
        report["multi_worker"] = multi_worker(args.tests_timeout)
        print(f"# multi-worker: {report['multi_worker']}", file=sys.stderr)
    report["total_seconds"] = time.perf_counter() - t0
    if args.out:
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(f"device {report.get('gpu', device)}; versions {report['versions']}")
    if "device_tests" in report:
        print(f"device tests: {report['device_tests']['summary']} "
              f"({report['device_tests']['seconds']} s)")
    print(table(report["models"]))
    if "multi_worker" in report:
        mw = report["multi_worker"]
        print("\nmulti-worker (bench_distributed.py): "
              + ("\n".join(mw["table"]) if "table" in mw else mw["skipped"]))
    print(f"\ntotal {report['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
