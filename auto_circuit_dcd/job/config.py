"""``RunConfig``: everything the main job takes, with each option's default and help.

The command line (``auto-circuit-dcd run``) is built from these fields: one option per
field (``--field-name``), its default, its help and, for a choice, its allowed values (the
``help`` and ``choices`` entries of the field's metadata) read from here, so nothing is
restated there; a value outside ``choices`` is refused by the parser (or, with
``strict=False``, by ``check_config``). The allowed values mirror the tables that implement them (methods,
metrics, clusterers, ...; a test keeps them in step, and
:func:`auto_circuit_dcd.job.pipeline.check_config` checks against the tables themselves).
This module imports nothing heavy, so ``--help`` answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from auto_circuit_dcd.model.table import DEFAULT_MODEL, describe_models
from auto_circuit_dcd.tasks.dataset import TASKS

__all__ = ["RunConfig", "DEFAULT_MODEL"]

#: the stage each option is listed under in ``run --help`` (its field's ``group``)
DATA, ATTRIBUTION, CLUSTERING = "model and data", "attribution", "clustering"
CIRCUITS, OUTPUT, MACHINE = "circuits and evaluation", "report and output", "machine"


def _opt(default: Any, help: str, choices: Optional[Sequence[str]] = None,  # noqa: A002
         strict: bool = True, aliases: Sequence[str] = (), group: str = "") -> Any:
    """A field with its command-line help, other option names (``aliases``), the stage
    its option is listed under in ``run --help`` (``group``) and, for a choice, its
    allowed values (refused by the parser unless ``strict`` is False: then
    ``check_config`` refuses them)."""
    meta: dict = {"help": help, "aliases": tuple(aliases), "group": group}
    if choices:
        meta.update(choices=tuple(choices), strict=strict)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    """Everything ``auto-circuit-dcd run`` takes; see ``auto-circuit-dcd run --help``."""

    model: str = _opt(DEFAULT_MODEL, f"model name: {describe_models()}", group=DATA)
    dataset: Optional[str] = _opt(None, "an auto-circuit JSON dataset (optional per-prompt "
                                  "'group', 'id', 'split'); excludes --task", group=DATA)
    task: Optional[str] = _opt(None, "generate a dataset of this task (or mixture) instead; "
                               "excludes --dataset", TASKS, group=DATA)
    prompt_types: Optional[List[str]] = _opt(None, "with --task: comma-separated prompt types; "
                                             "for --task mixture task/type[:share], e.g. "
                                             "ioi/mixed,sequence/2-gram", group=DATA)
    method: str = _opt("eap", "per-example attribution method", ("eap", "eap-ig"),
                       group=ATTRIBUTION)
    ig_steps: int = _opt(5, "EAP-IG interpolation steps", group=ATTRIBUTION)
    metric: str = _opt("max_diff", "task metric: max_diff = logit of the answer minus the "
                       "largest wrong logit; avg_diff = auto-circuit's mean difference",
                       ("max_diff", "avg_diff"), group=ATTRIBUTION)
    clusterer: str = _opt("auto", "how examples are clustered (auto: the best of "
                          "agglomerative, divisive and k-means)",
                          ("auto", "agglomerative", "divisive", "kmeans", "hdbscan"),
                          # checked by check_config, in one line naming GroupedDiscovery's table
                          strict=False, group=CLUSTERING)
    max_clusters: int = _opt(8, "largest k tried", group=CLUSTERING)
    k_rule: str = _opt("silhouette", "how the silhouette / elbow / gap choices of k combine "
                       "(the method's release: largest)",
                       ("silhouette", "largest", "smallest", "median", "elbow", "gap"),
                       group=CLUSTERING)
    # Rows are L2-normalised before clustering: on SmolLM2 (IOI + sequence completion)
    # raw rows put one large-norm example in its own cluster (ARI 0.0), L2 rows give 0.967;
    # on the toy model both give 0.984 (EAP). GroupedDiscovery itself defaults to "raw".
    preprocessing: str = _opt("l2", "row preprocessing before clustering (raw rows let a few "
                              "large-norm examples dominate)",
                              ("l2", "raw", "absolute", "binary", "sparse"), group=CLUSTERING)
    base_algo: str = _opt("eap", "cluster circuits: eap (cluster mean) or an auto-circuit "
                          "PRUNE_ALGO_DICT key, e.g. ACDC", group=CIRCUITS)
    n: Optional[int] = _opt(None, "number of prompts to use (all when not given; 1000 "
                            "generated with --task); under torchrun write --prompts (torchrun "
                            "reads --n as an abbreviation of its own options)",
                            aliases=("--prompts",), group=DATA)
    batch_size: int = _opt(16, "prompts per batch", group=MACHINE)
    seed: int = _opt(42, "seed of the split, the clusterer and the K-random split", group=DATA)
    test_fraction: float = _opt(0.2, "share of prompts held out for evaluation (when the "
                                "prompts carry no 'split')", group=DATA)
    out: str = _opt("runs/default", "output folder", group=OUTPUT)
    edge_fractions: Optional[List[float]] = _opt(None, "comma-separated circuit sizes as "
                                                 "fractions of all edges (MIB's grid when not "
                                                 "given)", group=CIRCUITS)
    p_cross: float = _opt(0.05, "edge fraction of the cross-faithfulness matrix and the "
                          "per-cluster table (one of --edge-fractions)", group=CIRCUITS)
    draw_fraction: Optional[float] = _opt(None, "edge fraction at which each cluster's circuit "
                                          "is drawn in the report (--p-cross when not given)",
                                          group=OUTPUT)
    threads: Optional[int] = _opt(None, "torch threads (torch's default when not given)",
                                  group=MACHINE)
    # "auto": CUDA if available, else the CPU; or "cpu", "cuda", "cuda:N", "mps"
    device: str = _opt("auto", "where the model runs: auto (CUDA if available, else cpu), "
                       "cpu, cuda, cuda:N or mps", group=MACHINE)
    # the model's dtype: "float32", "float16" or "bfloat16"
    dtype: str = _opt("float32", "the model's precision (attribution accumulates in float32)",
                      ("float32", "float16", "bfloat16"), group=MACHINE)
    # share of examples whose attribution row may be non-finite (dropped, and reported)
    nan_tolerance: float = _opt(0.01, "largest share of examples with non-finite attribution "
                                "rows that is dropped (and reported); above it the run stops",
                                group=ATTRIBUTION)
    # how each size's edges are chosen (None: DEFAULT_SELECTION, also under MIB parity)
    selection: Optional[str] = _opt(None, "how each size's edges are chosen: top edges (topn), "
                                    "those of them on an input-to-logits path (topn-prune), "
                                    "or grown from the logits (greedy); topn-prune when not "
                                    "given (README: \"Choosing the selection rule\")",
                                    ("topn", "topn-prune", "greedy"), group=CIRCUITS)
    ranking: Optional[str] = _opt(None, "edges ranked by |score| (abs, when not given) or by "
                                  "signed score", ("abs", "signed"), group=CIRCUITS)
    cmd: Optional[str] = _opt(None, "CMD integrates max(0, 1 - f) (one-sided, when not given) "
                              "or |1 - f| (two-sided, MIB's)", ("one-sided", "two-sided"),
                              group=CIRCUITS)
    mib_parity: bool = _opt(False, "MIB's convention: signed ranking for CPR, |score| for CMD, "
                            "two-sided CMD, topn-prune unless --selection is given",
                            group=CIRCUITS)
    stability_resamples: int = _opt(3, "subsamples of the train rows the clusterer is refitted "
                                    "on to measure cluster stability (0: skip)", group=CLUSTERING)
