"""``RunConfig``: everything the main job takes, with each option's default, help and rule.

The command line (``auto-circuit-dcd run``) is built from these fields: one option per
field (``--field-name``), its default, its help and, for a choice, its allowed values (the
``help`` and ``choices`` entries of the field's metadata) read from here, so nothing is
restated there.

Allowed values are declared once:

- a choice's values are its ``Literal`` type (``Method``, ``Metric``, ...; the task names
  are the task table's); they mirror the tables that implement them (methods, metrics,
  clusterers, ...), and a test keeps them in step;
- :data:`PARAMETER_CONSTRAINTS` gives each checked option its rule (a whole number of at
  least ``n``, a number in a range, one of a choice's values), as scikit-learn's
  ``_parameter_constraints`` does;
- :meth:`RunConfig.check` applies that table, then the rules between options and those
  that ask the package's own tables (model names, devices, the convention, task prompt
  types, base algorithms, the output folder). A value outside a choice is refused by the
  parser (or, for ``strict=False``, by ``check``).

This module imports nothing heavy, so ``--help`` answers at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    get_args,
)

from auto_circuit_dcd.circuits.selection import Ranking
from auto_circuit_dcd.cluster.options import ClustererName as Clusterer
from auto_circuit_dcd.cluster.options import KRule, Preprocessing
from auto_circuit_dcd.model.table import DEFAULT_MODEL, describe_models
from auto_circuit_dcd.tasks.dataset import TASKS

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.metrics.convention import Convention

__all__ = ["RunConfig", "DEFAULT_MODEL", "DEFAULT_SELECTION", "DEFAULT_CIRCUIT_METHOD",
           "PARAMETER_CONSTRAINTS",
           "Method", "Metric", "Clusterer", "KRule", "Preprocessing", "Dtype", "Selection",
           "Ranking", "CmdForm"]

#: the main job's selection rule (chosen by measurement: docs/choosing-options.md, "Choosing
#: the selection rule")
DEFAULT_SELECTION = "topn-fill"
#: the method that builds the main job's circuits (chosen by measurement: docs/clustering.md,
#: "What the main job passes")
DEFAULT_CIRCUIT_METHOD = "eap-ig"

Method = Literal["eap", "eap-ig"]
Metric = Literal["max_diff", "avg_diff"]
Dtype = Literal["float32", "float16", "bfloat16"]
Selection = Literal["topn", "topn-prune", "topn-fill", "greedy"]
CmdForm = Literal["one-sided", "two-sided"]


# ------------------------------------------------------------------------------ rules
@dataclass(frozen=True)
class Whole:
    """A whole number of at least ``low`` (``note`` says what the smallest means)."""

    low: int
    note: str = ""

    def problem(self, value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= self.low:
            return None
        return f"must be a whole number of at least {self.low}{self.note}, got {value!r}"


@dataclass(frozen=True)
class Between:
    """A number between ``low`` and ``high``, ends included as ``closed`` says; ``says``:
    how the message names the range."""

    low: float
    high: float
    closed: Literal["neither", "right", "both"]
    says: str

    def problem(self, value: Any) -> str | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            above = value >= self.low if self.closed == "both" else value > self.low
            below = value < self.high if self.closed == "neither" else value <= self.high
            if above and below:
                return None
        return f"{self.says}, got {value}"


@dataclass(frozen=True)
class OneOf:
    """One of ``values``."""

    values: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        return None if value in self.values else \
            f"must be one of {list(self.values)}, got {value!r}"


#: an option's rule: ``rule.problem(value)`` is None or what is wrong
Constraint = Whole | Between | OneOf
#: option -> its rule; ``None`` passes for an option whose default is ``None``
PARAMETER_CONSTRAINTS: dict[str, Constraint] = {
    "n": Whole(1), "batch_size": Whole(1), "ig_steps": Whole(1), "max_clusters": Whole(2),
    "threads": Whole(1),
    "test_fraction": Between(0.0, 1.0, "neither", "must lie strictly between 0 and 1"),
    "nan_tolerance": Between(0.0, 1.0, "both", "is a share of examples in [0, 1]"),
    "stability_resamples": Whole(0, " (0: none)"),
    "draw_fraction": Between(0.0, 1.0, "right", "is a fraction of edges in (0, 1]"),
    "method": OneOf(get_args(Method)), "metric": OneOf(get_args(Metric)),
    "clusterer": OneOf(get_args(Clusterer)), "k_rule": OneOf(get_args(KRule)),
    "preprocessing": OneOf(get_args(Preprocessing)), "dtype": OneOf(get_args(Dtype)),
    "task": OneOf(TASKS), "selection": OneOf(get_args(Selection)),
    "ranking": OneOf(get_args(Ranking)), "cmd": OneOf(get_args(CmdForm)),
}

#: the stage each option is listed under in ``run --help`` (its field's ``group``)
DATA, ATTRIBUTION, CLUSTERING = "model and data", "attribution", "clustering"
CIRCUITS, OUTPUT, MACHINE = "circuits and evaluation", "report and output", "machine"



def _opt(default: Any, help: str, choices: Sequence[str] | None = None,  # noqa: A002
         strict: bool = True, aliases: Sequence[str] = (), group: str = "") -> Any:
    """A field with its command-line help, other option names (``aliases``), the stage
    its option is listed under in ``run --help`` (``group``) and, for a choice, its
    allowed values (refused by the parser unless ``strict`` is False: then
    :meth:`RunConfig.check` refuses them)."""
    meta: dict = {"help": help, "aliases": tuple(aliases), "group": group}
    if choices:
        meta.update(choices=tuple(choices), strict=strict)
    return field(default=default, metadata=meta)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class RunConfig:
    """Everything ``auto-circuit-dcd run`` takes; see ``auto-circuit-dcd run --help``."""

    model: str = _opt(DEFAULT_MODEL, f"model name: {describe_models()}", group=DATA)
    dataset: str | None = _opt(None, "an auto-circuit JSON dataset (optional per-prompt "
                                  "'group', 'id', 'split'); excludes --task", group=DATA)
    task: str | None = _opt(None, "generate a dataset of this task (or mixture) instead; "
                               "excludes --dataset", TASKS, group=DATA)
    prompt_types: list[str] | None = _opt(None, "with --task: comma-separated prompt types; "
                                             "for --task mixture task/type[:share], e.g. "
                                             "ioi/mixed,sequence/2-gram", group=DATA)
    method: Method = _opt("eap", "per-example attribution method whose rows the examples are "
                          "clustered and routed by (the circuits: --circuit-method)",
                          get_args(Method), group=ATTRIBUTION)
    ig_steps: int = _opt(5, "EAP-IG interpolation steps", group=ATTRIBUTION)
    metric: Metric = _opt("max_diff", "task metric: max_diff = logit of the answer minus the "
                          "largest wrong logit; avg_diff = auto-circuit's mean difference",
                          get_args(Metric), group=ATTRIBUTION)
    clusterer: Clusterer = _opt("auto", "how examples are clustered (auto: the best of "
                                "agglomerative, divisive and k-means)", get_args(Clusterer),
                                # refused by check(), in one line naming the choices
                                strict=False, group=CLUSTERING)
    max_clusters: int = _opt(8, "largest k tried", group=CLUSTERING)
    k_rule: KRule = _opt("silhouette", "how the silhouette / elbow / gap choices of k combine "
                         "(the method's release: largest)", get_args(KRule), group=CLUSTERING)
    preprocessing: Preprocessing = _opt("auto", "the space the rows are clustered in (auto: "
                                        "chosen from the rows by subsample stability, "
                                        "docs/clustering.md; or a row preprocessing: raw "
                                        "rows let a few large-norm examples dominate)",
                                        get_args(Preprocessing), group=CLUSTERING)
    circuit_method: str = _opt(DEFAULT_CIRCUIT_METHOD, "what builds each cluster's circuit and "
                               "the single and K-random baselines, on the same training "
                               "examples: eap or eap-ig (the mean of that method's rows; "
                               "attributed again when it is not --method) or an auto-circuit "
                               "PRUNE_ALGO_DICT key, e.g. ACDC; the clusters always come from "
                               "--method's rows", group=CIRCUITS)
    n: int | None = _opt(None, "number of prompts to use (all when not given; 1000 "
                            "generated with --task); under torchrun write --prompts (torchrun "
                            "reads --n as an abbreviation of its own options)",
                            aliases=("--prompts",), group=DATA)
    batch_size: int = _opt(16, "prompts per batch", group=MACHINE)
    seed: int = _opt(42, "seed of the split, the clusterer, the K-random split and the "
                    "permutation tests of the cluster descriptions", group=DATA)
    test_fraction: float = _opt(0.2, "share of prompts held out for evaluation (when the "
                                "prompts carry no 'split')", group=DATA)
    out: str = _opt("runs/default", "output folder", group=OUTPUT)
    edge_fractions: list[float] | None = _opt(None, "comma-separated circuit sizes as "
                                                 "fractions of all edges (MIB's grid when not "
                                                 "given)", group=CIRCUITS)
    p_cross: float = _opt(0.05, "edge fraction of the cross-faithfulness matrix and the "
                          "per-cluster table (one of --edge-fractions)", group=CIRCUITS)
    draw_fraction: float | None = _opt(None, "edge fraction at which each cluster's circuit "
                                          "is drawn in the report (--p-cross when not given)",
                                          group=OUTPUT)
    threads: int | None = _opt(None, "torch threads (torch's default when not given)",
                                  group=MACHINE)
    # "auto": CUDA if available, else the CPU; or "cpu", "cuda", "cuda:N", "mps"
    device: str = _opt("auto", "where the model runs: auto (CUDA if available, else cpu), "
                       "cpu, cuda, cuda:N or mps", group=MACHINE)
    dtype: Dtype = _opt("float32", "the model's precision (attribution accumulates in float32)",
                        get_args(Dtype), group=MACHINE)
    # share of examples whose attribution row may be non-finite (dropped, and reported)
    nan_tolerance: float = _opt(0.01, "largest share of examples with non-finite attribution "
                                "rows that is dropped (and reported); above it the run stops",
                                group=ATTRIBUTION)
    # how each size's edges are chosen (None: DEFAULT_SELECTION; topn-prune under MIB parity)
    selection: Selection | None = _opt(None, "how each size's edges are chosen: top edges "
                                          "(topn), those of them on an input-to-logits path "
                                          "(topn-prune), those refilled down the ranking until "
                                          "the asked count lies on paths (topn-fill), or grown "
                                          "from the logits (greedy); topn-fill when not given, "
                                          "topn-prune under --mib-parity "
                                          "(docs/choosing-options.md, \"Choosing the selection "
                                          "rule\")", get_args(Selection), group=CIRCUITS)
    ranking: Ranking | None = _opt(None, "edges ranked by |score| (abs, when not given) or "
                                      "by signed score", get_args(Ranking), group=CIRCUITS)
    cmd: CmdForm | None = _opt(None, "CMD integrates max(0, 1 - f) (one-sided, when not "
                                  "given) or |1 - f| (two-sided, MIB's)", get_args(CmdForm),
                                  group=CIRCUITS)
    mib_parity: bool = _opt(False, "MIB's convention: signed ranking for CPR, |score| for CMD, "
                            "two-sided CMD, topn-prune unless --selection is given",
                            group=CIRCUITS)
    stability_resamples: int = _opt(3, "subsamples of the train rows the clusterer is refitted "
                                    "on to measure cluster stability (0: skip)", group=CLUSTERING)

    # ------------------------------------------------------------------ derived
    def fraction_grid(self) -> list[float]:
        """The circuit sizes evaluated: ``edge_fractions`` or the MIB grid, sorted."""
        from auto_circuit_dcd.evaluation import MIB_GRID

        return sorted({float(f) for f in (self.edge_fractions or MIB_GRID)})

    def convention(self) -> Convention:
        """How the run chooses each size's edges and computes CPR and CMD."""
        from auto_circuit_dcd.metrics.convention import make_convention

        return make_convention(self.selection, self.ranking, self.cmd, self.mib_parity,
                               default_selection=DEFAULT_SELECTION)

    # -------------------------------------------------------------------- check
    def check(self) -> RunConfig:
        """Refuse a configuration that cannot work, before anything is loaded or written;
        returns self.

        Raises :class:`~auto_circuit_dcd.errors.ConfigError` naming the command-line flag
        and what to change: first each option by its rule (:data:`PARAMETER_CONSTRAINTS`),
        then the rules between options and those of the package's own tables.
        """
        from auto_circuit_dcd.errors import ConfigError

        defaults = {f.name: f.default for f in fields(self)}
        for name, rule in PARAMETER_CONSTRAINTS.items():
            value = getattr(self, name)
            if value is None and defaults[name] is None:
                continue
            problem = rule.problem(value)
            if problem:
                raise ConfigError(f"{_flag(name)} {problem}")
        for flags, check in _CHECKS:
            try:
                check(self)
            except ConfigError as err:
                raise ConfigError(f"{flags}: {err}" if flags else str(err)) from None
            except (ValueError, TypeError, KeyError) as err:
                raise ConfigError(f"{flags}: {err}") from None
        return self


# ------------------------------------------------------------------ rules between options
def _need(ok: bool, why: str) -> None:
    from auto_circuit_dcd.errors import ConfigError

    if not ok:
        raise ConfigError(why)


def _check_grid(config: RunConfig) -> None:
    grid = config.fraction_grid()
    _need(bool(grid) and all(0.0 <= f <= 1.0 for f in grid),
          f"--edge-fractions must be fractions in [0, 1], got {grid}")
    _need(any(math.isclose(f, config.p_cross) for f in grid),
          f"--edge-fractions {grid} lacks {config.p_cross}, where cross-faithfulness is taken "
          f"(--p-cross): add {config.p_cross} or choose --p-cross among them")


def _check_data(config: RunConfig) -> None:
    from auto_circuit_dcd.model.table import MODELS

    _need(not (config.dataset and config.task), "--dataset and --task exclude each other")
    _need(not config.prompt_types or bool(config.task), "--prompt-types needs --task")
    if config.dataset:
        _need(Path(config.dataset).is_file(), f"--dataset {config.dataset} does not exist")
    elif not config.task:
        _need(config.model in MODELS and MODELS[config.model].dataset is not None,
              f"--model {config.model!r} has no embedded dataset: pass --dataset FILE or "
              "--task NAME (e.g. --task all-tasks)")


def _check_task(config: RunConfig) -> None:
    if config.task:
        from auto_circuit_dcd.tasks.dataset import resolve_components

        resolve_components(config.task, config.prompt_types)


def _check_out(config: RunConfig) -> None:
    """``--out`` must be a folder this process can create or write into."""
    out = Path(config.out)
    _need(not (out.exists() and not out.is_dir()), f"--out {out} is a file, not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    _need(existing.is_dir(), f"--out {out}: {existing} is a file, not a folder")
    _need(os.access(existing, os.W_OK | os.X_OK),
          f"--out {out}: cannot write into {existing} (permission denied); choose another "
          "folder")


def _check_circuit_method(name: str) -> None:
    from auto_circuit_dcd.cluster.circuits import EAP_FAMILY, check_base_algo
    from auto_circuit_dcd.errors import ConfigError

    try:
        check_base_algo(name)
    except ValueError:
        raise ConfigError(f"must be {' or '.join(EAP_FAMILY)} or a key of auto-circuit's "
                          f"PRUNE_ALGO_DICT (e.g. ACDC), got {name!r}") from None


def _lazy(module: str, name: str, attr: str) -> Callable[[RunConfig], Any]:
    """``config -> module.name(config.attr)``, importing ``module`` only when it runs."""
    def check(config: RunConfig) -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)(getattr(config, attr))

    return check


#: (flags named in the message, check) in the order they run after the table; ``""``: the
#: check's message names its flags itself
_CHECKS: tuple[tuple[str, Callable[[RunConfig], Any]], ...] = (
    ("--selection/--ranking/--cmd/--mib-parity", RunConfig.convention),
    ("", _check_grid),
    ("--model", _lazy("auto_circuit_dcd.model.load", "check_model_name", "model")),
    ("--device", _lazy("auto_circuit_dcd.model.devices", "resolve_device", "device")),
    ("--dtype", _lazy("auto_circuit_dcd.model.devices", "resolve_dtype", "dtype")),
    ("", _check_data),
    ("--metric", _lazy("auto_circuit_dcd.model.task_metric", "check_metric", "metric")),
    ("--task", _check_task),
    ("--circuit-method", lambda config: _check_circuit_method(config.circuit_method)),
    ("", _check_out),
)
