"""Per-example metric values of every evaluated (circuit, size), saved so that any analysis of
them (intervals, tests, other aggregates) can be redone without running the model.

One folder, two files, written by :func:`~auto_circuit_dcd.files.save_bundle` (the JSON last,
with the tensors' checksum, checked on read):

- ``per_example.safetensors``: float64 / int64 tensors, one key per array;
- ``per_example.json``: what each tensor is, by name: ``tensors[ranking]["mu_full"]`` and
  ``["mu_empty"]`` (``[n_examples]``: the unpatched model, every edge patched), and
  ``tensors[ranking]["circuits"][name]["mu"]`` (``[n_examples, n_fractions]``, the circuit
  at each size) and ``["achieved_counts"]`` (``[n_fractions]``); beside them the example
  ids (row order), the fractions and requested edge counts (column order), the known
  groups, the metric, ablation and selection rule, and optional routings (per example, the
  label of the circuit it is sent to: ``{name: [label per example]}``).

:func:`save_per_example` takes ``{ranking: {circuit: FaithfulnessResult}}`` (what
:func:`~auto_circuit_dcd.evaluation.faithfulness.evaluate_circuits` returns, one dict per
ranking) and :func:`load_per_example` gives the same structure back, each ``f`` recomputed
as the ratio of means (``edge_sets`` are not kept: the run folder's ``circuits.safetensors``
holds them). Every result must come from one test set: the same example ids and fractions,
and within a ranking the same ``mu_full`` and ``mu_empty``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auto_circuit_dcd.errors import DamagedFileError
from auto_circuit_dcd.evaluation.faithfulness import FaithfulnessResult, ratio_of_means
from auto_circuit_dcd.files import load_bundle, save_bundle

__all__ = ["save_per_example", "load_per_example", "load_routings", "TENSORS_FILE",
           "META_FILE", "FORMAT_VERSION"]

TENSORS_FILE = "per_example.safetensors"
META_FILE = "per_example.json"
FORMAT_VERSION = 1
#: an example id as the file holds it (strings and whole numbers as given, others as text)
Id = str | int
ByRanking = Mapping[str, Mapping[str, FaithfulnessResult]]


def _id(x: Any) -> Id:
    if isinstance(x, np.integer):
        return int(x)
    return x if isinstance(x, (str, int)) and not isinstance(x, bool) else str(x)


def _label(x: Any) -> Any:
    """A routing label as JSON: numpy scalars as Python numbers."""
    return x.item() if isinstance(x, np.generic) else x


def _check(results: ByRanking, ids: list[Id]) -> None:
    if not results or not all(results.values()):
        raise ValueError("no results to save: give {ranking: {circuit: FaithfulnessResult}}")
    first = next(iter(next(iter(results.values())).values()))
    for ranking, by_name in results.items():
        ref = next(iter(by_name.values()))
        for name, r in by_name.items():
            where = f"results[{ranking!r}][{name!r}]"
            if [_id(i) for i in r.example_ids] != ids:
                raise ValueError(f"{where} has other example ids than the ones given "
                                 "(every result must be on the same test set, in one order)")
            if not np.array_equal(r.fractions, first.fractions):
                raise ValueError(f"{where} was evaluated at other fractions "
                                 f"({r.fractions.tolist()} vs {first.fractions.tolist()})")
            if r.mu_circuit.shape != (len(ids), r.fractions.size):
                raise ValueError(f"{where}.mu_circuit has shape {r.mu_circuit.shape}, expected "
                                 f"({len(ids)}, {r.fractions.size})")
            if not (np.array_equal(r.mu_full, ref.mu_full)
                    and np.array_equal(r.mu_empty, ref.mu_empty)):
                raise ValueError(f"{where} has other mu_full / mu_empty than the first "
                                 f"circuit of ranking {ranking!r}: not one evaluation")


def save_per_example(path: str | Path, results_by_ranking: ByRanking,
                     example_ids: Sequence[Any] | None = None, *,
                     routings: Mapping[str, Sequence[Hashable]] | None = None) -> Path:
    """Write ``path/per_example.safetensors`` and ``path/per_example.json``; returns ``path``.

    Args:
        results_by_ranking: ``{ranking: {circuit name: FaithfulnessResult}}``, all on one
            test set.
        example_ids: the rows' ids (default: the results' own); must equal each result's
            ``example_ids`` (ids other than strings and whole numbers are kept as text).
        routings: ``{name: label per example}`` in the rows' order, e.g. ``{"dcd": each
            test example's cluster, "k_random": its K-random circuit}``; labels are ints
            or strings.
    """
    first = next(iter(next(iter(results_by_ranking.values()), {}).values()), None)
    if first is None:
        raise ValueError("no results to save: give {ranking: {circuit: FaithfulnessResult}}")
    ids = [_id(i) for i in (first.example_ids if example_ids is None else example_ids)]
    _check(results_by_ranking, ids)
    routed: dict[str, list[Any]] = {}
    for name, labels in (routings or {}).items():
        labels = [_label(x) for x in labels]
        if len(labels) != len(ids):
            raise ValueError(f"routing {name!r} has {len(labels)} labels for {len(ids)} examples")
        if not all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in labels):
            raise ValueError(f"routing {name!r}: labels must be ints or strings")
        routed[str(name)] = labels
    tensors: dict[str, torch.Tensor] = {
        "fractions": torch.tensor(first.fractions, dtype=torch.float64),
        "requested_counts": torch.tensor(first.requested_counts, dtype=torch.int64)}
    described: dict[str, Any] = {}
    for ranking, by_name in results_by_ranking.items():
        ref = next(iter(by_name.values()))
        keys = {"mu_full": f"{ranking}/mu_full", "mu_empty": f"{ranking}/mu_empty"}
        tensors[keys["mu_full"]] = torch.tensor(ref.mu_full, dtype=torch.float64)
        tensors[keys["mu_empty"]] = torch.tensor(ref.mu_empty, dtype=torch.float64)
        circuits = {}
        for name, r in by_name.items():
            mu, counts = f"{ranking}/{name}/mu", f"{ranking}/{name}/achieved_counts"
            tensors[mu] = torch.tensor(np.asarray(r.mu_circuit), dtype=torch.float64)
            tensors[counts] = torch.tensor(np.asarray(r.achieved_counts), dtype=torch.int64)
            circuits[str(name)] = {"mu": mu, "achieved_counts": counts,
                                   "selection": r.selection}
        described[str(ranking)] = {**keys, "circuits": circuits}
    meta = {
        "format_version": FORMAT_VERSION,
        "what": "per-example metric values of each circuit at each size on one test set",
        "dims": {"mu": ["example", "fraction"], "mu_full": ["example"],
                 "mu_empty": ["example"], "achieved_counts": ["fraction"],
                 "fractions": ["fraction"], "requested_counts": ["fraction"]},
        "example_ids": ids,
        "groups": None if first.groups is None else list(first.groups),
        "fractions": first.fractions.tolist(),
        "requested_counts": [int(n) for n in first.requested_counts],
        "n_edges": int(first.n_edges), "metric": first.metric, "ablation": first.ablation,
        "tensors": described, "routings": routed,
    }
    return save_bundle(path, tensors, meta, TENSORS_FILE, META_FILE)


def _read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    tensors, meta = load_bundle(path, TENSORS_FILE, META_FILE, "per-example file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DamagedFileError(f"{path} holds a per-example file of format version "
                               f"{meta.get('format_version')}; this package reads "
                               f"{FORMAT_VERSION}")
    return tensors, meta


def load_per_example(path: str | Path) -> dict[str, dict[str, FaithfulnessResult]]:
    """``{ranking: {circuit: FaithfulnessResult}}`` as saved by :func:`save_per_example`
    (``f`` recomputed as the ratio of means; ``edge_sets`` None)."""
    tensors, meta = _read(path)
    n = len(meta["example_ids"])

    def array(key: str, shape: tuple) -> np.ndarray:
        if key not in tensors or tuple(tensors[key].shape) != shape:
            raise DamagedFileError(f"{Path(path) / TENSORS_FILE} lacks {key!r} of shape "
                                   f"{list(shape)} that {META_FILE} describes: save it again")
        return tensors[key].numpy()

    fractions = array("fractions", (len(meta["fractions"]),)).astype(np.float64)
    requested = array("requested_counts", fractions.shape).astype(np.int64)
    out: dict[str, dict[str, FaithfulnessResult]] = {}
    for ranking, keys in meta["tensors"].items():
        full, empty = array(keys["mu_full"], (n,)), array(keys["mu_empty"], (n,))
        out[ranking] = {}
        for name, c in keys["circuits"].items():
            mu = array(c["mu"], (n, fractions.size))
            out[ranking][name] = FaithfulnessResult(
                fractions=fractions.copy(), requested_counts=requested.copy(),
                achieved_counts=array(c["achieved_counts"], fractions.shape).astype(np.int64),
                f=ratio_of_means(mu, full, empty), mu_circuit=mu.copy(), mu_full=full.copy(),
                mu_empty=empty.copy(), example_ids=list(meta["example_ids"]),
                n_edges=int(meta["n_edges"]), metric=meta["metric"], ablation=meta["ablation"],
                groups=None if meta["groups"] is None else list(meta["groups"]),
                selection=c["selection"], ranking=ranking)
    return out


def load_routings(path: str | Path) -> dict[str, list[Any]]:
    """The routings saved with the values: ``{name: label per example}`` (rows' order)."""
    return {k: list(v) for k, v in _read(path)[1]["routings"].items()}
