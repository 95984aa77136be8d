"""The ``auto-circuit-dcd`` command: ``run`` (the main job), ``make-dataset``, ``fetch-model``.

Heavy imports happen inside each command, so ``--help`` answers at once. ``run --help``
lists the options by stage (:data:`RUN_GROUPS`, each field's ``group`` in
:class:`~auto_circuit_dcd.job.config.RunConfig`), each with its default, and for an
option whose default is "not given" what that means (:data:`WHEN_NOT_GIVEN`).

Errors the user can fix print one line, never a traceback (set
``AUTO_CIRCUIT_DCD_DEBUG=1`` to see it): a bad option (``auto-circuit-dcd run: error:
...; see auto-circuit-dcd run --help``, without the usage block),
:class:`~auto_circuit_dcd.errors.UserError` (bad files, no network) and a full disk or a
folder without write permission. The package's own warnings print as one line too.
Anything else is a bug and prints its traceback and where to report it.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from types import UnionType
from typing import Any, Literal, NoReturn, Union, get_args, get_origin, get_type_hints

from auto_circuit_dcd import __version__
from auto_circuit_dcd.job.config import (
    ATTRIBUTION,
    CIRCUITS,
    CLUSTERING,
    DATA,
    MACHINE,
    OUTPUT,
    RunConfig,
)
from auto_circuit_dcd.model.table import DEFAULT_REAL_MODEL, OFFLINE_MODELS
from auto_circuit_dcd.tasks.dataset import TASKS

__all__ = ["main", "build_parser", "RUN_GROUPS", "WHEN_NOT_GIVEN"]

#: the option groups of ``run --help``, in the order of the job's stages (each RunConfig
#: field's ``group`` metadata names one)
RUN_GROUPS: tuple[str, ...] = (DATA, ATTRIBUTION, CLUSTERING, CIRCUITS, OUTPUT, MACHINE)

#: what each RunConfig option whose default is None means when it is not given, shown as
#: its default in ``run --help`` (tests/test_cli.py keeps these in step with the job)
WHEN_NOT_GIVEN: dict[str, str] = {
    "dataset": "none: the prompts --task generates, else the model's embedded dataset",
    "task": "none: the prompts of --dataset, else the model's embedded dataset",
    "prompt_types": "the task's own set of prompt types",
    "n": "every prompt of the dataset; 1000 generated with --task",
    "edge_fractions": "MIB's grid, 0.001,0.002,0.005,0.01,0.02,0.05,0.1,0.2,0.5,1",
    "draw_fraction": "the value of --p-cross",
    "threads": "torch's own: OMP_NUM_THREADS if set, else one per physical core",
    "selection": "topn-fill; topn-prune under --mib-parity",
    "ranking": "abs; under --mib-parity signed for CPR and abs for CMD",
    "cmd": "one-sided; two-sided under --mib-parity",
}

#: OSError numbers that are the machine's state, not a bug (reported in one line)
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT}


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _fractions(value: str) -> list[float]:
    try:
        out = [float(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "edge fractions are numbers, e.g. 0.01,0.05,0.1") from None
    if not out:
        raise argparse.ArgumentTypeError("give edge fractions as numbers, e.g. 0.01,0.05,0.1")
    wrong = [v for v in out if not 0.0 <= v <= 1.0]
    if wrong:
        raise argparse.ArgumentTypeError(
            f"edge fractions are shares of all edges in [0, 1] (0.05 = 5%), got "
            f"{', '.join(f'{v:g}' for v in wrong)}")
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from auto_circuit_dcd.job.pipeline import run

    config = RunConfig(**{f.name: getattr(args, f.name) for f in fields(RunConfig)})
    run(config, progress=not args.quiet)
    return 0


#: how a RunConfig field's type is read from the command line
_PARSERS: dict[Any, Callable[[str], Any]] = {
    int: int, float: float, str: str, list[str]: _csv, list[float]: _fractions,
}


def _add_config_options(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """One option per :class:`RunConfig` field, with its default, help and allowed values,
    in the group of its stage (:data:`RUN_GROUPS`); returns the groups by title."""
    hints = get_type_hints(RunConfig)
    groups = {title: parser.add_argument_group(title) for title in RUN_GROUPS}
    for f in fields(RunConfig):
        kind = hints[f.name]
        args = [a for a in get_args(kind) if a is not type(None)]
        if get_origin(kind) in (Union, UnionType) and len(args) == 1:  # X | None
            kind = args[0]
        if get_origin(kind) is Literal:  # a choice: its values are text
            kind = str
        choices = f.metadata.get("choices")
        names = ["--" + f.name.replace("_", "-"), *f.metadata.get("aliases", ())]
        group = groups[f.metadata["group"]]
        text = f.metadata.get("help", "")
        if kind is bool:  # a flag: off by default
            group.add_argument(*names, dest=f.name, action="store_true",
                               help=f"{text} (default: off)")
            continue
        if f.default is None:
            text = f"{text} (default: {WHEN_NOT_GIVEN[f.name]})"
        group.add_argument(*names, dest=f.name, default=f.default,
                           type=_PARSERS[kind], help=text,
                           choices=choices if f.metadata.get("strict") else None,
                           metavar="{" + ",".join(choices) + "}" if choices else None)
    return groups


class _Parser(argparse.ArgumentParser):
    """A command's parser whose errors are one line pointing to ``--help`` (no usage
    block: it would bury the one line that says what is wrong)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (``None`` or a flag: their
    help says what leaving them out means)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool) \
                or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action) or ""


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    from auto_circuit_dcd.tasks import make_dataset

    tokenizer, model = None, None
    if args.only_correct:
        from auto_circuit_dcd.model.load import load_model

        model = load_model(args.model)
        tokenizer = model.tokenizer
    else:
        from auto_circuit_dcd.job.pipeline import load_tokenizer

        tokenizer = load_tokenizer(args.model)
    summary = make_dataset(
        task=args.task, prompt_types=_csv(args.prompt_types) if args.prompt_types else None,
        tokenizer=tokenizer, n=args.n, seed=args.seed, out=Path(args.out),
        model=model, only_correct=args.only_correct,
    )
    print(summary if isinstance(summary, str) else _format_summary(summary))
    return 0


def _format_summary(summary: dict) -> str:
    import json

    return json.dumps(summary, indent=2, default=str)


def _cmd_fetch_model(args: argparse.Namespace) -> int:
    from auto_circuit_dcd.model.load import load_model

    model = load_model(args.model)
    print(f"{args.model}: {model.cfg.n_layers} layers, {model.cfg.n_heads} heads, "
          f"d_model {model.cfg.d_model}; ready offline")
    return 0


def _cmd_export_mib(args: argparse.Namespace) -> int:
    from auto_circuit_dcd.job.export import export_mib

    done = export_mib(args.run_dir)
    sizes = sorted({f["edge_fraction"] for f in done.files if f["edge_fraction"] is not None})
    circuits = sorted({f["circuit"] for f in done.files})
    scores = sorted({Path(f["file"]).name for f in done.files if f["edge_fraction"] is None})
    print(f"wrote {len(done.files)} EAP-IG graph files to {done.folder}: {len(circuits)} "
          f"circuits ({', '.join(circuits)}), each as {' and '.join(scores)} and at "
          f"{len(sizes)} sizes ({', '.join(f'{100 * p:g}%' for p in sizes)}); "
          f"list in {done.folder / 'index.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="auto-circuit-dcd",
        description="Data-driven Circuit Discovery on auto-circuit: cluster examples by "
                    "their per-example edge attributions, one circuit per cluster.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    r = sub.add_parser("run", help="dataset -> attributions -> clusters -> circuits -> report",
                       formatter_class=_HelpFormatter,
                       description="Run the main job and write OUT/report.html, "
                                   "OUT/report.json, the circuits and the attribution "
                                   "matrices. Options by stage; each shows its default.")
    groups = _add_config_options(r)
    groups[OUTPUT].add_argument(
        "--quiet", action="store_true",
        help="no progress bars and no line per stage (the summary is printed) (default: off)")
    r.set_defaults(func=_cmd_run)

    m = sub.add_parser("make-dataset", formatter_class=_HelpFormatter,
                       help="write a task dataset in auto-circuit's JSON format")
    m.add_argument("--task", required=True, choices=TASKS,
                   help="the task, a mixture of tasks (with --prompt-types task/type[:share]) "
                        "or a named mixture")
    m.add_argument("--prompt-types", default=None,
                   help="comma-separated prompt types of the task, e.g. ABBA,BABA (the task's "
                        "own default set when not given)")
    m.add_argument("--model", default=DEFAULT_REAL_MODEL,
                   help="whose tokenizer checks that every answer is one token")
    m.add_argument("--n", type=int, default=1000, help="number of prompts")
    m.add_argument("--seed", type=int, default=42, help="seed of the generator")
    m.add_argument("--only-correct", action="store_true",
                   help="keep only prompts the model answers correctly (loads the model)")
    m.add_argument("--out", required=True, help="the JSON file to write")
    m.set_defaults(func=_cmd_make_dataset)

    f = sub.add_parser("fetch-model", formatter_class=_HelpFormatter,
                       help="download/convert a model once so later runs are offline")
    f.add_argument("--model", default=DEFAULT_REAL_MODEL,
                   help=f"model name ({DEFAULT_REAL_MODEL} is converted from its GGUF file and "
                        "cached; a TransformerLens name is downloaded from the model hub)")
    f.set_defaults(func=_cmd_fetch_model)

    e = sub.add_parser("export-mib", help="write a run's circuits as EAP-IG graph JSON "
                                          "(RUN_DIR/mib/), for MIB's circuit-track tools")
    e.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a finished run")
    e.set_defaults(func=_cmd_export_mib)
    return p


def main(argv: list[str] | None = None) -> int:
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
        with _one_line_warnings():
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
              f"is a bug in auto-circuit-dcd {__version__}. Please report it to "
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


@contextmanager
def _one_line_warnings() -> Iterator[None]:
    """The package's own warnings as one line, ``auto-circuit-dcd: warning: ...`` (others
    keep Python's form, with the file and line that help debug them)."""
    package = str(Path(__file__).resolve().parent)
    plain = warnings.formatwarning

    def one_line(message: Warning | str, category: type, filename: str, lineno: int,
                 line: str | None = None) -> str:
        if str(Path(filename).resolve()).startswith(package):
            return f"auto-circuit-dcd: warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = plain


def _is_user_error(err: Exception) -> bool:
    from auto_circuit_dcd.errors import UserError

    return isinstance(err, UserError) or (isinstance(err, OSError)
                                          and err.errno in _ENVIRONMENT_ERRNOS)


def _bug_report_address() -> str:
    """Where to report bugs: the package metadata's tracker URL, else its maintainers'
    address, else the maintainers (this package's metadata names no public tracker)."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        meta = metadata("auto-circuit-dcd")
    except PackageNotFoundError:
        meta = None
    urls = (meta.get_all("Project-URL") or []) if meta is not None else []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("issues", "bug tracker", "tracker", "source"):
            return url.strip()
    for key in ("Maintainer-email", "Author-email"):
        address = (meta.get_all(key) or [None])[0] if meta is not None else None
        if address:
            return address
    return "the maintainers of auto-circuit-dcd (where you obtained it)"


if __name__ == "__main__":
    sys.exit(main())
