"""Clustering benchmark: which space separates known mixtures of tasks, and what it costs.

Cases (each attributed with EAP and EAP-IG, 5 steps; the train split's rows are clustered):

- ``toy``: the embedded toy model's mixed dataset (IOI-like + induction);
- ``smol-ioi-seq``, ``smol-ioi-arith``, ``smol-seq-arith``, ``smol-all3``: SmolLM2-135M on
  mixtures of IOI (``ioi/mixed``), sequence completion (``sequence/2-gram``) and addition
  (``arithmetic/verbal-plus``, the addition prompt type SmolLM2 does best; its pool holds 55
  prompts, so it is the smaller group);
- controls with one mechanism: ``toy-induction`` (the toy model's induction prompts alone) and
  ``smol-ioi-one-template`` (one IOI template, place and object, only the names changed).

For each case and method it prints: the model's accuracy per task on the clustered prompts;
ARI against the task labels of the default ``GroupedDiscovery()`` (``preprocessing="auto"``),
of each fixed space (``preprocessing=<space>``, the rest default), and which space the label-free
criterion chose; k; the chosen candidate's stability; CPU time (``time.process_time``, one
thread) and wall time of the default fit (clustering, the space search and its stability).

Attribution matrices are cached under ``$AUTO_CIRCUIT_DCD_CACHE/bench/`` (default
``~/.cache/auto-circuit-dcd/bench/``), one folder per (model, dataset content, method, steps,
rows), so reruns only cluster. Computing them loads SmolLM2 and runs EAP-IG on about 600
prompts (tens of minutes on 2 cores): run it under the heavy-job lock::

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 flock /tmp/heavy.lock \\
        python benchmarks/bench_clustering.py

``--cases`` and ``--methods`` pick a subset; ``--matrices-only`` fills the cache and stops;
``--rules`` adds what other label-free rules (stability alone, excess over the null, Lange et
al.'s normalised instability, silhouette alone) would choose among the same candidates;
``--seeds 0,1,2`` adds the default pipeline's result under other random states;
``--candidates`` prints every candidate of each default search.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.cluster.discovery import Preprocessing

METHODS = ("eap", "eap-ig")
IG_STEPS = 5
SEED = 42


@dataclass(frozen=True)
class Case:
    """A dataset to cluster: its model, how its JSON is made, and whether it is a control
    (one mechanism: nothing to separate)."""

    model: str
    make: Callable[[Any, Path], Path]
    control: bool = False


def _toy_dataset(which: str) -> Callable[[Any, Path], Path]:
    def make(tokenizer: Any, folder: Path) -> Path:
        from auto_circuit_dcd.toy import toy_dataset_path

        return Path(toy_dataset_path(which))
    return make


def _mixture(prompt_types: Sequence[str], n: int) -> Callable[[Any, Path], Path]:
    def make(tokenizer: Any, folder: Path) -> Path:
        from auto_circuit_dcd.tasks import make_dataset

        out = folder / ("mixture-" + "+".join(p.replace("/", "-") for p in prompt_types)
                        + f"-n{n}.json")
        make_dataset("mixture", list(prompt_types), tokenizer, n, SEED, out)
        return out
    return make


def _one_ioi_template(n: int) -> Callable[[Any, Path], Path]:
    """IOI prompts from one template, place and object; only the two names change (ABBA,
    the answer the first name); corrupt: three fresh names (the package's ABC corruption)."""
    def make(tokenizer: Any, folder: Path) -> Path:
        from auto_circuit_dcd.tasks.common import (
            GenStats,
            check_pair,
            make_prompt,
            one_token_words,
            write_dataset,
        )
        from auto_circuit_dcd.tasks.words import NAMES

        template = "Then, {X} and {Y} went to the store. {Y} gave a drink to"
        names = one_token_words(tokenizer, NAMES, GenStats(), "names")
        rng, stats = random.Random(SEED), GenStats()
        prompts: list[dict[str, Any]] = []
        seen = set()
        while len(prompts) < n:
            io, s, c1, c2 = rng.sample(names, 4)
            if (io, s) in seen:
                continue
            seen.add((io, s))
            clean = template.format(X=io, Y=s)
            corrupt = f"Then, {c1} and {c2} went to the store. {rng.choice([x for x in names if x not in (io, s, c1, c2)])} gave a drink to"
            if check_pair(tokenizer, clean, corrupt, [" " + io], [" " + s], stats):
                p = make_prompt("ioi", "one-template", clean, corrupt, [" " + io], [" " + s])
                p.update(id=f"ioi/one-template/{len(prompts)}",
                         split="test" if len(prompts) % 5 == 4 else "train")
                prompts.append(p)
        out = folder / f"ioi-one-template-n{n}.json"
        write_dataset(prompts, out, {"template": template, "seed": SEED})
        return out
    return make


CASES: dict[str, Case] = {
    "toy": Case("toy-two-task", _toy_dataset("mixed")),
    "smol-ioi-seq": Case("smollm2-135m", _mixture(("ioi/mixed", "sequence/2-gram"), 267)),
    "smol-ioi-arith": Case("smollm2-135m", _mixture(("ioi/mixed", "arithmetic/verbal-plus"),
                                                    200)),
    "smol-seq-arith": Case("smollm2-135m", _mixture(("sequence/2-gram",
                                                     "arithmetic/verbal-plus"), 200)),
    "smol-all3": Case("smollm2-135m", _mixture(("ioi/mixed", "sequence/2-gram",
                                                "arithmetic/verbal-plus"), 300)),
    "toy-induction": Case("toy-two-task", _toy_dataset("induction"), control=True),
    "smol-ioi-one-template": Case("smollm2-135m", _one_ioi_template(150), control=True),
}


def bench_cache() -> Path:
    from auto_circuit_dcd.paths import cache_root

    return cache_root() / "bench"


def task_labels(groups: Sequence[str | None]) -> list[str]:
    """The task of each row: its group up to the first ``/`` (``ioi/mixed`` -> ``ioi``)."""
    return [str(g).split("/")[0] for g in groups]


class Matrices:
    """Loads each case's dataset and model once, and each matrix from the cache or by
    attribution (saved before it is returned)."""

    def __init__(self, threads: int = 1, batch_size: int = 16):
        self.threads, self.batch_size = threads, batch_size
        self._models: dict[str, Any] = {}
        self._prepared: dict[str, tuple[Any, Any]] = {}
        self._datasets: dict[str, Path] = {}

    def dataset(self, case: str) -> Path:
        if case not in self._datasets:
            from auto_circuit_dcd.model.table import model_tokenizer

            spec = CASES[case]
            folder = bench_cache() / "datasets"
            folder.mkdir(parents=True, exist_ok=True)
            tok = None if spec.model == "toy-two-task" else model_tokenizer(spec.model)
            self._datasets[case] = spec.make(tok, folder)
        return self._datasets[case]

    def key(self, case: str, method: str) -> str:
        data = self.dataset(case).read_bytes()
        steps = IG_STEPS if method == "eap-ig" else 1
        digest = hashlib.sha256(b"\0".join([CASES[case].model.encode(), data,
                                            method.encode(), str(steps).encode()])).hexdigest()
        return f"{case}-{method}-{digest[:16]}"

    def _loader(self, case: str) -> tuple[Any, Any]:
        if case not in self._prepared:
            import auto_circuit_dcd as dcd

            name = CASES[case].model
            model = self._models.get(name) or dcd.load_model(name)
            pm, train, _ = dcd.prepare(model, self.dataset(case), batch_size=self.batch_size)
            self._models[name] = pm
            self._prepared[case] = (pm, train)
        return self._prepared[case]

    def get(self, case: str, method: str) -> tuple[Any, dict[str, Any]]:
        """``(AttributionMatrix of the train rows, info)``; info: task accuracy, seconds."""
        import torch

        import auto_circuit_dcd as dcd

        folder = bench_cache() / self.key(case, method)
        info_file = folder / "bench.json"
        if info_file.exists():
            return dcd.AttributionMatrix.load(folder / "matrix"), json.loads(info_file.read_text())
        torch.set_num_threads(self.threads)
        pm, train = self._loader(case)
        start = time.time()
        A = dcd.attribute(pm, train, method=method, ig_steps=IG_STEPS, progress=True)
        seconds = time.time() - start
        info = {"attribution_s": seconds, "rows": A.n_examples, "edges": A.n_edges,
                "threads": self.threads, "accuracy": self._accuracy(pm, case, A)}
        A.save(folder / "matrix")
        info_file.write_text(json.dumps(info, indent=1))
        return A, info

    def _accuracy(self, pm: Any, case: str, A: Any) -> dict[str, float]:
        """Share of the clustered prompts each task's answer wins (mu > 0), per task."""
        from auto_circuit_dcd.tasks.scoring import logit_margins

        prompts = json.loads(self.dataset(case).read_text())["prompts"]
        by_id = {p.get("id", i): p for i, p in enumerate(prompts)}
        rows = [by_id[i] for i in A.example_ids]
        mu = logit_margins(pm, pm.tokenizer, rows).numpy()
        tasks = np.asarray(task_labels([p.get("group", p.get("task")) for p in rows]))
        return {t: float((mu[tasks == t] > 0).mean()) for t in sorted(set(tasks.tolist()))}


FIXED_SPACES: tuple[Preprocessing, ...] = ("l2", "raw", "binary", "rank", "absolute",
                                             "sparse")


@dataclass
class Row:
    """One line of the table: a case, a method, and what each clustering made of it."""

    case: str
    method: str
    rows: int
    accuracy: dict[str, float]
    auto: dict[str, Any]
    job_today: tuple[float, int]
    fixed: dict[str, tuple[float, int]]


def cluster_case(A: Any, seed: int, n_jobs: int | None) -> dict[str, Any]:
    """The default ``GroupedDiscovery`` on ``A`` and the main job's stability stage (3
    refits of the chosen clusterer), timed: CPU (this process) and wall seconds."""
    from auto_circuit_dcd.cluster import GroupedDiscovery, cluster_stability

    X = A.to_numpy()
    cpu, wall = time.process_time(), time.perf_counter()
    gd = GroupedDiscovery(random_state=seed, n_jobs=n_jobs).fit(X)
    fit_cpu, fit_wall = time.process_time() - cpu, time.perf_counter() - wall
    st = cluster_stability(gd, X, 3, random_state=seed, clusterer="chosen")
    sel = gd.space_selection_
    assert sel is not None  # preprocessing="auto"
    chosen = next((c for c in sel.candidates if c.chosen), None)
    measured = [c for c in sel.candidates if c.excess is not None]
    top = max(measured, key=lambda c: c.excess or 0.0, default=None)
    return {"gd": gd, "labels": gd.labels_, "k": gd.n_clusters_, "space": gd.preprocessing_,
            "clusterer": gd.method_, "stability": None if chosen is None else chosen.stability,
            "excess": None if chosen is None else chosen.excess,
            "largest_excess": None if top is None else
            (f"{top.excess:.3f} {top.space}/{top.clusterer}"),
            "refit_stability": st.ari_mean, "near_tie": sel.near_tie, "margin": sel.margin,
            "runner_up": sel.runner_up, "fit_cpu": fit_cpu, "fit_wall": fit_wall,
            "cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}


def evaluate(case: str, method: str, A: Any, info: dict[str, Any], seed: int,
             n_jobs: int | None) -> Row:
    """ARI against the task labels of the default pipeline, of the main job's settings
    today (``l2``, ``max_clusters=8``) and of each fixed space (rest default)."""
    from sklearn.metrics import adjusted_rand_score

    from auto_circuit_dcd.cluster import GroupedDiscovery

    y = task_labels(A.groups)
    X = A.to_numpy()
    auto = cluster_case(A, seed, n_jobs)
    auto["ari"] = adjusted_rand_score(y, auto["labels"])
    today = GroupedDiscovery(preprocessing="l2", max_clusters=8, random_state=seed).fit(X)
    fixed: dict[str, tuple[float, int]] = {}
    for space in FIXED_SPACES:
        gd = GroupedDiscovery(preprocessing=space, random_state=seed).fit(X)
        fixed[space] = (adjusted_rand_score(y, gd.labels_), gd.n_clusters_)
    return Row(case, method, A.n_examples, info["accuracy"], auto,
               (adjusted_rand_score(y, today.labels_), today.n_clusters_), fixed)


def _rule_stability(c: Any) -> float:
    return c.stability


def _rule_excess(c: Any) -> float:
    return c.excess


def _rule_lange(c: Any) -> float:  # instability over the null's, lower is better
    return -(1.0 - c.stability) / max(1.0 - c.null_stability, 1e-9)


def _rule_silhouette(c: Any) -> float:
    return c.silhouette


#: label-free rules compared with the default: (score, higher is better), on eligible
#: candidates (structure, no cluster below the size floor); ties within 0.02 -> silhouette
RULES: dict[str, tuple[Callable[[Any], float], bool]] = {
    "stability alone": (_rule_stability, False),
    "excess over null": (_rule_excess, False),
    "instability / null's": (_rule_lange, False),
    "silhouette alone": (_rule_silhouette, False),
    "default (gate + stability)": (_rule_stability, True),
}


def compare_rules(A: Any, seed: int) -> dict[str, tuple[str, float]]:
    """What each rule of :data:`RULES` chooses among the default search's candidates, and
    the ARI of that choice against the task labels (labels read only here, to score)."""
    from sklearn.metrics import adjusted_rand_score
    from sklearn.utils import check_random_state

    from auto_circuit_dcd.cluster import GroupedDiscovery
    from auto_circuit_dcd.cluster.space_search import TIE_TOLERANCE, evaluate_candidates

    gd = GroupedDiscovery(random_state=seed)
    ev = evaluate_candidates(
        A.to_numpy(), gd.candidate_spaces, gd.partition_settings(), gamma=gd.gamma,
        reduction=gd.reduction, n_components=gd.n_components,
        n_resamples=gd.stability_resamples, fraction=gd.stability_fraction,
        rng=check_random_state(seed))
    y = task_labels(A.groups)
    out = {}
    for name, (score, gated) in RULES.items():
        pool = [c for c in ev.candidates if (c.admissible if gated else c.eligible)]
        if not pool:
            out[name] = ("one cluster", adjusted_rand_score(y, [0] * len(y)))
            continue
        top = max(score(c) for c in pool)
        near = [c for c in pool if score(c) >= top - TIE_TOLERANCE]
        c = max(near, key=lambda c: c.silhouette or -1.0)
        out[name] = (f"{c.space}/{c.clusterer} k={c.k}",
                     adjusted_rand_score(y, ev.labels[(c.space, c.clusterer)]))
    return out


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_tables(rows: Sequence[Row]) -> None:
    print("\nARI against the task labels (k in brackets; controls, one mechanism: k only); "
          "auto = GroupedDiscovery() (preprocessing='auto'); job today = "
          "preprocessing='l2', max_clusters=8\n")
    head = ["case", "method", "rows", "auto", "chosen", "job today",
            *FIXED_SPACES, "best fixed", "auto - best"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        best = max(v[0] for v in r.fixed.values())
        control = CASES[r.case].control
        ari = (lambda a, k: f"k={k}") if control else (lambda a, k: f"{a:.3f} ({k})")
        cells = [r.case, r.method, str(r.rows), ari(r.auto["ari"], r.auto["k"]),
                 f"{r.auto['space']}/{r.auto['clusterer']}",
                 ari(r.job_today[0], r.job_today[1]),
                 *(ari(*v) for v in r.fixed.values()),
                 "-" if control else f"{best:.3f}",
                 "-" if control else f"{r.auto['ari'] - best:+.3f}"]
        print("| " + " | ".join(cells) + " |")
    print("\nThe chosen candidate, and the cost of the default fit (CPU: this process, "
          "one thread; wall: shared machine)\n")
    head = ["case", "method", "accuracy", "k", "stability", "excess over null",
            "largest excess of any candidate", "refit stability (3)", "near tie", "margin", "fit CPU s", "fit wall s",
            "fit + stability CPU s", "wall s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        a = r.auto
        acc = ", ".join(f"{t} {v:.2f}" for t, v in r.accuracy.items())
        cells = [r.case, r.method, acc, str(a["k"]), _f(a["stability"]), _f(a["excess"]),
                 a["largest_excess"] or "-", _f(a["refit_stability"]), "yes" if a["near_tie"] else "no", _f(a["margin"]),
                 _f(a["fit_cpu"], 2), _f(a["fit_wall"], 2), _f(a["cpu"], 2), _f(a["wall"], 2)]
        print("| " + " | ".join(cells) + " |")


def print_candidates(rows: Sequence[Row]) -> None:
    print("\nEvery candidate of the default search (stability and its null: mean ARI over "
          "the resamples; '-': not eligible, not measured)\n")
    head = ["case", "method", "space/clusterer", "k", "smallest", "structure", "silhouette",
            "stability", "null", "excess", "admissible", "chosen"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        for c in r.auto["gd"].space_selection_.candidates:
            cells = [r.case, r.method, f"{c.space}/{c.clusterer}", str(c.k), str(c.smallest),
                     "yes" if c.structure else "no", _f(c.silhouette), _f(c.stability),
                     _f(c.null_stability), _f(c.excess), "yes" if c.admissible else "no",
                     "yes" if c.chosen else ""]
            print("| " + " | ".join(cells) + " |")


def print_rules(results: Sequence[tuple[str, str, dict[str, tuple[str, float]]]]) -> None:
    print("\nWhat other label-free rules would choose among the same candidates (ARI; "
          "controls: k)\n")
    head = ["case", "method", *RULES]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for case, method, out in results:
        control = CASES[case].control
        cells = [f"{pick} ({'k=1' if pick == 'one cluster' else pick.split('k=')[-1]})"
                 if control else f"{ari:.3f} {pick}" for pick, ari in out.values()]
        print("| " + " | ".join([case, method, *cells]) + " |")


def print_seeds(results: Sequence[tuple[str, str, list[tuple[int, str, float, int]]]]) -> None:
    print("\nThe default pipeline over seeds (random_state): ARI (k), chosen space\n")
    seeds = [s for s, *_ in results[0][2]] if results else []
    head = ["case", "method", *(f"seed {s}" for s in seeds)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for case, method, runs in results:
        control = CASES[case].control
        cells = [f"k={k} {space}" if control else f"{ari:.3f} ({k}) {space}"
                 for _, space, ari, k in runs]
        print("| " + " | ".join([case, method, *cells]) + " |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads for attribution")
    parser.add_argument("--seed", type=int, default=42, help="GroupedDiscovery's random_state")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="GroupedDiscovery's n_jobs (threads over candidate spaces)")
    parser.add_argument("--matrices-only", action="store_true",
                        help="compute (or check) the cached matrices and stop")
    parser.add_argument("--candidates", action="store_true",
                        help="also print every candidate of the default search")
    parser.add_argument("--rules", action="store_true",
                        help="also print what other label-free rules would choose")
    parser.add_argument("--seeds", default="",
                        help="also run the default pipeline with these random_states, e.g. "
                             "0,1,2,3,4")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {list(CASES)}")
    methods = [m for m in args.methods.split(",") if m]
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    seeds = [int(x) for x in args.seeds.split(",") if x]
    matrices = Matrices(threads=args.threads)
    rows, rules, by_seed = [], [], []
    for case in cases:
        for method in methods:
            A, info = matrices.get(case, method)
            print(f"{case} {method}: {A.n_examples} rows x {A.n_edges} edges, accuracy "
                  f"{info['accuracy']}, attribution {info['attribution_s']:.0f} s", flush=True)
            if args.matrices_only:
                continue
            rows.append(evaluate(case, method, A, info, args.seed, args.n_jobs))
            if args.rules:
                rules.append((case, method, compare_rules(A, args.seed)))
            if seeds:
                by_seed.append((case, method, _over_seeds(A, seeds)))
    if rows:
        print_tables(rows)
    if rows and args.candidates:
        print_candidates(rows)
    if rules:
        print_rules(rules)
    if by_seed:
        print_seeds(by_seed)


def _over_seeds(A: Any, seeds: Sequence[int]) -> list[tuple[int, str, float, int]]:
    from sklearn.metrics import adjusted_rand_score

    from auto_circuit_dcd.cluster import GroupedDiscovery

    y, X = task_labels(A.groups), A.to_numpy()
    out = []
    for seed in seeds:
        gd = GroupedDiscovery(random_state=seed).fit(X)
        out.append((seed, f"{gd.preprocessing_}/{gd.method_}",
                    adjusted_rand_score(y, gd.labels_), gd.n_clusters_))
    return out


if __name__ == "__main__":
    main()
