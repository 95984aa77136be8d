"""The ``auto-circuit-dcd`` command: ``run`` (the main job), ``make-dataset``, ``fetch-model``.

Heavy imports happen inside each command, so ``--help`` answers at once. Errors the user
can fix (:class:`~auto_circuit_dcd.errors.UserError`: bad arguments, bad files, no
network; and a full disk or a folder without write permission) print one line, never a
traceback (set ``AUTO_CIRCUIT_DCD_DEBUG=1`` to see it); anything else is a bug and prints
its traceback and where to report it.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .devices import DEVICE_CHOICES, DTYPE_CHOICES

__all__ = ["main"]

#: models that load without a model hub (kept in step with models.MODEL_LOADERS by a test)
OFFLINE_MODELS = ("toy-two-task", "smollm2-135m", "tiny-random", "tiny-random-attn-only",
                  "tiny-random-gqa")


#: OSError numbers that are the machine's state, not a bug (reported in one line)
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT}


def _csv(value: str) -> List[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _fractions(value: str) -> List[float]:
    try:
        out = [float(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError("edge fractions are numbers, e.g. 0.01,0.05,0.1")
    if not out or any(not 0.0 <= v <= 1.0 for v in out):
        raise argparse.ArgumentTypeError("edge fractions must lie in [0, 1]")
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import RunConfig, run

    config = RunConfig(
        model=args.model, dataset=args.dataset, task=args.task, method=args.method,
        prompt_types=_csv(args.prompt_types) if args.prompt_types else None,
        ig_steps=args.ig_steps, clusterer=args.clusterer, max_clusters=args.max_clusters,
        k_rule=args.k_rule, preprocessing=args.preprocessing,
        base_algo=args.base_algo, n=args.n, batch_size=args.batch_size, seed=args.seed,
        test_fraction=args.test_fraction, out=args.out,
        edge_fractions=args.edge_fractions, threads=args.threads,
        device=args.device, dtype=args.dtype,
        p_cross=args.p_cross, nan_tolerance=args.nan_tolerance,
        selection=args.selection, ranking=args.ranking, cmd=args.cmd,
        mib_parity=args.mib_parity, stability_resamples=args.stability_resamples,
    )
    run(config, progress=not args.quiet)
    return 0


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    from .tasks import make_dataset

    tokenizer, model = None, None
    if args.only_correct:
        from .models import load_model

        model = load_model(args.model)
        tokenizer = model.tokenizer
    else:
        from .pipeline import load_tokenizer

        tokenizer = load_tokenizer(args.model)
    summary = make_dataset(
        task=args.task, prompt_types=_csv(args.prompt_types) if args.prompt_types else None,
        tokenizer=tokenizer, n=args.n, seed=args.seed, out=Path(args.out),
        model=model, only_correct=args.only_correct,
    )
    print(summary if isinstance(summary, str) else _format_summary(summary))
    return 0


def _format_summary(summary: Dict) -> str:
    import json

    return json.dumps(summary, indent=2, default=str)


def _cmd_fetch_model(args: argparse.Namespace) -> int:
    from .models import load_model

    model = load_model(args.model)
    print(f"{args.model}: {model.cfg.n_layers} layers, {model.cfg.n_heads} heads, "
          f"d_model {model.cfg.d_model}; ready offline")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="auto-circuit-dcd",
        description="Data-driven Circuit Discovery on auto-circuit: cluster examples by "
                    "their per-example edge attributions, one circuit per cluster.")
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="dataset -> attributions -> clusters -> circuits -> report")
    r.add_argument("--model", default="toy-two-task",
                   help="toy-two-task (default), smollm2-135m, or a TransformerLens name")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--dataset", help="an auto-circuit JSON dataset (optional per-prompt 'group')")
    src.add_argument("--task", help="generate a task dataset: ioi, sequence, arithmetic, "
                     "entity_binding, all-tasks, entity-addition, or mixture")
    r.add_argument("--prompt-types", default=None,
                   help="with --task: comma-separated prompt types; for --task mixture "
                        "task/type[:share], e.g. ioi/mixed,sequence/2-gram")
    r.add_argument("--method", default="eap", choices=["eap", "eap-ig"])
    r.add_argument("--ig-steps", type=int, default=5)
    r.add_argument("--clusterer", default="auto",
                   help="auto, agglomerative, divisive, kmeans, hdbscan")
    r.add_argument("--max-clusters", type=int, default=8)
    r.add_argument("--k-rule", default="silhouette",
                   choices=["silhouette", "largest", "smallest", "median", "elbow", "gap"],
                   help="how silhouette/elbow/gap choices of k combine (the method's "
                        "release: largest)")
    r.add_argument("--preprocessing", default="l2",
                   choices=["l2", "raw", "absolute", "binary", "sparse"],
                   help="row preprocessing before clustering (default l2: raw rows let a few "
                        "large-norm examples dominate)")
    r.add_argument("--base-algo", default="eap",
                   help="eap (cluster mean) or an auto-circuit PRUNE_ALGO_DICT key, e.g. ACDC")
    r.add_argument("--n", type=int, default=None, help="number of prompts to use")
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--test-fraction", type=float, default=0.2)
    r.add_argument("--edge-fractions", type=_fractions, default=None,
                   help="comma-separated circuit sizes as fractions of edges (default: MIB grid)")
    r.add_argument("--p-cross", type=float, default=0.05,
                   help="edge fraction of the cross-faithfulness matrix (one of --edge-fractions)")
    r.add_argument("--selection", default=None, choices=["topn", "topn-prune", "greedy"],
                   help="how each size's edges are chosen: top edges (topn), those of them on "
                        "an input-to-logits path (topn-prune), or grown from the logits "
                        "(greedy); default: see the README's table")
    r.add_argument("--ranking", default=None, choices=["abs", "signed"],
                   help="edges ranked by |score| (default) or signed score")
    r.add_argument("--cmd", default=None, choices=["one-sided", "two-sided"],
                   help="CMD integrates max(0, 1 - f) (one-sided, default) or |1 - f| "
                        "(two-sided, MIB's)")
    r.add_argument("--mib-parity", action="store_true",
                   help="MIB's convention: signed ranking for CPR, |score| for CMD, "
                        "two-sided CMD, topn-prune unless --selection is given")
    r.add_argument("--stability-resamples", type=int, default=3,
                   help="subsamples of the train rows the clusterer is refitted on to measure "
                        "cluster stability (0: skip)")
    r.add_argument("--nan-tolerance", type=float, default=0.01,
                   help="largest share of examples with non-finite attribution rows that is "
                        "dropped (and reported); above it the run stops")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    r.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                   help="where the model runs (default auto: CUDA if available, else cpu)")
    r.add_argument("--dtype", default="float32", choices=DTYPE_CHOICES,
                   help="the model's precision (attribution accumulates in float32)")
    r.add_argument("--out", default="runs/default", help="output folder")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_cmd_run)

    m = sub.add_parser("make-dataset", help="write a task dataset in auto-circuit's JSON format")
    m.add_argument("--task", required=True)
    m.add_argument("--prompt-types", default=None, help="comma-separated, e.g. ABBA,BABA")
    m.add_argument("--model", default="smollm2-135m", help="whose tokenizer to check answers with")
    m.add_argument("--n", type=int, default=1000)
    m.add_argument("--seed", type=int, default=42)
    m.add_argument("--only-correct", action="store_true",
                   help="keep only prompts the model answers correctly (loads the model)")
    m.add_argument("--out", required=True)
    m.set_defaults(func=_cmd_make_dataset)

    f = sub.add_parser("fetch-model", help="download/convert a model once so later runs are offline")
    f.add_argument("--model", default="smollm2-135m")
    f.set_defaults(func=_cmd_fetch_model)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    handler: Callable[[argparse.Namespace], int] = args.func
    _show_package_log()
    if getattr(args, "model", None) in OFFLINE_MODELS:
        # auto-circuit probes the Hugging Face hub when imported (about 50 s offline);
        # the built-in models need no hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted; cached attributions in the output folder are kept and a "
              "re-run resumes", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - user errors: one line; bugs: traceback
        if os.environ.get("AUTO_CIRCUIT_DCD_DEBUG"):
            raise
        if _is_user_error(err):
            print(f"auto-circuit-dcd {args.command}: error: {err}", file=sys.stderr)
            return 2
        traceback.print_exc()
        print(f"auto-circuit-dcd {args.command}: internal error ({type(err).__name__}); this "
              f"is a bug in auto-circuit-dcd {_version()}. Please report it to "
              f"{_bug_report_address()} with the command, the traceback above and the output of "
              "`pip show auto-circuit-dcd auto-circuit transformer-lens torch`.",
              file=sys.stderr)
        return 1


def _show_package_log() -> None:
    """The package's INFO lines (e.g. a grouped-query model made multi-head) on stderr."""
    import logging

    class CurrentStderr(logging.StreamHandler):
        """Writes to whatever ``sys.stderr`` is when a line is logged."""

        stream = property(lambda self: sys.stderr, lambda self, value: None)

    log = logging.getLogger("auto_circuit_dcd")
    if not any(type(h).__name__ == "CurrentStderr" for h in log.handlers):
        handler = CurrentStderr()
        handler.setFormatter(logging.Formatter("auto-circuit-dcd: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _is_user_error(err: Exception) -> bool:
    from .errors import UserError

    return isinstance(err, UserError) or (isinstance(err, OSError)
                                          and err.errno in _ENVIRONMENT_ERRNOS)


def _version() -> str:
    from . import __version__

    return __version__


def _bug_report_address() -> str:
    """Where to report bugs: the package metadata's tracker URL, else its maintainers."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("auto-circuit-dcd").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("issues", "bug tracker", "tracker", "source"):
            return url.strip()
    return "the maintainers of auto-circuit-dcd (see `pip show auto-circuit-dcd`)"


if __name__ == "__main__":
    sys.exit(main())
