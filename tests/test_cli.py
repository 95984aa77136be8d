"""What a researcher types and reads: the command's options and output, and ``export-mib``.

One run of the main job on the tiny random model (module fixture) serves every test here.
"""

import contextlib
import io
import json
import re

import numpy as np
import pytest
from test_pipeline import RUN, tiny_prompts, write

from auto_circuit_dcd.cli import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``(out folder, report.json, stdout, stderr)`` of one run with progress output on."""
    data = write(tmp_path_factory.mktemp("data") / "tiny.json", tiny_prompts())
    out = tmp_path_factory.mktemp("run")
    argv = [a for a in RUN if a != "--quiet"] + ["--dataset", str(data), "--out", str(out),
                                                 "--selection", "topn"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main(argv) == 0
    return out, json.loads((out / "report.json").read_text()), stdout.getvalue(), stderr.getvalue()


# ----------------------------------------------------------------------------- export-mib
def test_export_mib_writes_every_circuit_at_every_size_and_it_reads_back(tiny_run, tiny_pm,
                                                                           capsys):
    """Oracle: the circuit's edge set recomputed here from the saved scores (the run's
    ``--selection topn``: the top floor(p * n) by |score|, ties kept) and the evaluation's
    own edge counts in report.json; the file is read back into the package's edge order
    by name."""
    from safetensors.torch import load_file

    from auto_circuit_dcd.circuits.mib import from_eap_ig_graph
    from auto_circuit_dcd.model.edges import edge_layout

    out, rep, _, _ = tiny_run
    assert main(["export-mib", str(out)]) == 0
    assert str(out / "mib") in capsys.readouterr().out
    saved = {k: v for k, v in load_file(str(out / "circuits.safetensors")).items()
             if ".edges." not in k}  # the scores; NAME.edges.RANKING are the evaluated sets
    index = json.loads((out / "mib" / "index.json").read_text())
    names, _ = edge_layout(tiny_pm)
    fractions = rep["edge_fractions"]
    assert len(index["files"]) == len(saved) * (len(fractions) + 1)
    assert index["graph_config"] == {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False,
                                     "d_model": 16}
    for entry in index["files"]:
        data = json.loads((out / "mib" / entry["file"]).read_text())
        scores, in_graph = from_eap_ig_graph(data, names)
        vec = saved[entry["circuit"]].double().numpy()
        # scores go through JSON as float64 of float32 values: exact
        np.testing.assert_array_equal(scores, vec)
        p = entry["edge_fraction"]
        if p is None:  # importances: every edge, MIB's evaluator cuts its own sizes
            assert in_graph.all()
            continue
        count = int(np.floor(round(p * len(names), 9)))
        expected = (np.abs(vec) >= np.sort(np.abs(vec))[::-1][count - 1]) if count else \
            np.zeros(len(names), dtype=bool)
        np.testing.assert_array_equal(in_graph, expected)
        assert entry["n_edges"] == int(expected.sum())
        j = fractions.index(p)
        assert entry["n_edges"] == rep["achieved_edge_counts"][entry["circuit"]][j]


def test_export_mib_refuses_a_folder_without_a_run(tmp_path, capsys):
    assert main(["export-mib", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no finished run" in err[0]
    assert main(["export-mib", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- options
def test_version_is_the_installed_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"auto-circuit-dcd {version('auto-circuit-dcd')}"


def _subparser(name):
    from auto_circuit_dcd.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return parser, sub.choices[name]


def test_run_has_one_option_per_config_field_with_its_default(capsys, monkeypatch):
    """Oracle: ``RunConfig()``'s own defaults, and argparse's parse of a bare ``run``."""
    from dataclasses import asdict, fields

    monkeypatch.setenv("COLUMNS", "2000")  # no line wrapping inside a default
    from auto_circuit_dcd.job.config import RunConfig

    parser, run = _subparser("run")
    args = parser.parse_args(["run"])
    assert {f.name: getattr(args, f.name) for f in fields(RunConfig)} == asdict(RunConfig())
    by_dest = {a.dest: a for a in run._actions}
    for f in fields(RunConfig):
        assert by_dest[f.name].option_strings[0] == "--" + f.name.replace("_", "-")
        assert by_dest[f.name].option_strings[1:] == list(f.metadata.get("aliases", ()))
        assert by_dest[f.name].help, f"--{f.name} has no help"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--help"])
    text = capsys.readouterr().out
    for f in fields(RunConfig):
        if f.default is not None and not isinstance(f.default, bool):  # a flag shows none
            assert f"(default: {f.default})" in text, f.name
    args = parser.parse_args(["run", "--edge-fractions", "0.1,0.5", "--prompt-types", "a, b",
                              "--p-cross", "0.1", "--draw-fraction", "0.5", "--n", "7"])
    assert (args.edge_fractions, args.prompt_types, args.p_cross, args.draw_fraction,
            args.n) == ([0.1, 0.5], ["a", "b"], 0.1, 0.5, 7)
    for flag in ("--metric", "--method", "--task", "--k-rule", "--dtype"):
        with pytest.raises(SystemExit):
            parser.parse_args(["run", flag, "no-such-value"])
    # refused later by check_config, in one line naming the clusterer table
    assert parser.parse_args(["run", "--clusterer", "no-such-value"]).clusterer == "no-such-value"


def test_the_choices_shown_are_the_tables_that_implement_them():
    from dataclasses import fields

    from auto_circuit_dcd.attribution.front import METHODS
    from auto_circuit_dcd.circuits.circuit import SELECTIONS
    from auto_circuit_dcd.circuits.selection import RANKINGS
    from auto_circuit_dcd.cluster.discovery import CLUSTERER_NAMES
    from auto_circuit_dcd.cluster.preprocess import PREPROCESSORS
    from auto_circuit_dcd.cluster.select_k import COMBINE
    from auto_circuit_dcd.job.config import RunConfig
    from auto_circuit_dcd.metrics.curves import CMD_FORMS
    from auto_circuit_dcd.model.devices import DTYPE_CHOICES
    from auto_circuit_dcd.model.task_metric import METRICS
    from auto_circuit_dcd.tasks import TASKS

    tables = {"method": METHODS, "metric": METRICS, "clusterer": CLUSTERER_NAMES,
              # "auto": the space chosen from the rows among those of PREPROCESSORS
              "k_rule": COMBINE, "preprocessing": ("auto", *PREPROCESSORS),
              "dtype": DTYPE_CHOICES,
              "task": TASKS, "selection": SELECTIONS, "ranking": RANKINGS, "cmd": CMD_FORMS}
    shown = {f.name: f.metadata["choices"] for f in fields(RunConfig) if "choices" in f.metadata}
    assert set(shown) == set(tables)
    for name, table in tables.items():
        assert set(shown[name]) == set(table), name


def test_each_options_rule_is_declared_once(tmp_path):
    """Each choice's allowed values are its Literal type's, shown by --help and checked by
    RunConfig.check from the one rule table; a bad value given from Python is refused by
    check, naming the flag."""
    from dataclasses import fields
    from typing import Literal, Union, get_args, get_origin, get_type_hints

    from auto_circuit_dcd.errors import ConfigError
    from auto_circuit_dcd.job.config import PARAMETER_CONSTRAINTS, OneOf, RunConfig

    hints = get_type_hints(RunConfig)
    meta = {f.name: f.metadata for f in fields(RunConfig)}
    assert set(PARAMETER_CONSTRAINTS) <= set(meta)
    for name, kind in hints.items():
        if get_origin(kind) is Union:
            kind = next(a for a in get_args(kind) if a is not type(None))
        if get_origin(kind) is Literal:
            assert PARAMETER_CONSTRAINTS[name] == OneOf(get_args(kind)), name
            assert meta[name]["choices"] == get_args(kind), name
    good = {"model": "tiny-random", "dataset": str(write(tmp_path / "d.json", tiny_prompts(8))),
            "out": str(tmp_path / "out")}
    assert RunConfig(**good).check() == RunConfig(**good)
    for bad, message in [({"k_rule": "mean"}, "--k-rule must be one of ['silhouette', "),
                         ({"batch_size": None}, "--batch-size must be a whole number"),
                         ({"draw_fraction": 0.0}, "--draw-fraction is a fraction of edges in "
                                                  "(0, 1], got 0.0"),
                         ({"circuit_method": "nope"},
                          "--circuit-method: must be eap or eap-ig or a key of auto-circuit's "
                          "PRUNE_ALGO_DICT")]:
        with pytest.raises(ConfigError) as err:
            RunConfig(**good, **bad).check()
        assert str(err.value).startswith(message), str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["make-dataset", "fetch-model", "export-mib"])
def test_every_option_of_the_other_commands_has_help(command):
    _, sub = _subparser(command)
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"


# ----------------------------------------------------------------------------- output
def test_the_summary_prints_cpr_and_cmd_per_family_as_in_report_json(tiny_run):
    """Oracle: report.json's values, and K-random's CPR/CMD recomputed here by the
    trapezoid rule from its faithfulness curves (the summary prints 3 decimals: 5e-4)."""
    out, rep, stdout, _ = tiny_run
    printed, intervals = {}, {}
    for line in stdout.splitlines():
        if line.startswith("  ") and " CPR " in line and " CMD " in line:
            name, rest = line.split(" CPR ")
            cpr, cmd = rest.split(" CMD ")  # each "value [low, high]"
            name = name.split("(")[0].strip()
            printed[name] = (float(cpr.split()[0]), float(cmd.split()[0]))
            intervals[name] = [float(x) for x in re.findall(r"-?\d+\.\d+", cpr + cmd)]
    expected = {"single circuit": (rep["single"]["cpr"], rep["single"]["cmd"]),
                "DCD, routed": (rep["dcd"]["cpr"]["routed"], rep["dcd"]["cmd"]["routed"]),
                "DCD, oracle": (rep["dcd"]["cpr"]["oracle"], rep["dcd"]["cmd"]["oracle"])}
    assert rep["n_clusters"] > 1  # the tiny data have two families
    p = np.asarray(rep["edge_fractions"])
    for family in ("routed", "oracle"):
        f = np.asarray(rep["k_random"][f"faithfulness_{family}"])
        by_hand = (float(np.trapz(f, p)), float(np.trapz(np.maximum(0, 1 - f), p)))
        got = (rep["k_random"]["cpr"][family], rep["k_random"]["cmd"][family])
        assert got == pytest.approx(by_hand, abs=1e-12)
        expected[f"K-random, {family}"] = by_hand
    assert set(printed) == set(expected)
    for name, values in expected.items():
        assert printed[name] == pytest.approx(values, abs=5e-4), name
    # beside each value its interval, as report.json's uncertainty gives it
    u = rep["uncertainty"]
    curves = {"single circuit": u["single"], "DCD, routed": u["dcd_routed"],
              "DCD, oracle": u["dcd_oracle"], "K-random, routed": u["k_random_routed"],
              "K-random, oracle": u["k_random_oracle"]}
    for name, c in curves.items():
        assert c["cpr"]["estimate"] == pytest.approx(expected[name][0], abs=1e-9), name
        assert c["cmd"]["estimate"] == pytest.approx(expected[name][1], abs=1e-9), name
        want = [c["cpr"]["estimate"], c["cpr"]["low"], c["cpr"]["high"],
                c["cmd"]["estimate"], c["cmd"]["low"], c["cmd"]["high"]]
        assert intervals[name] == pytest.approx(want, abs=5e-4), name
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("report: ") and last.endswith("report.html")
    assert last[len("report: "):] == str((out / "report.html").resolve())


_V = r"-?\d\.\d{3}|n/a"  # a value as printed (n/a: missing)
_S = r"[+-]\d\.\d{3}|n/a"  # a difference, signed
COMPARISON_LINE = re.compile(
    rf"^  (?P<label>.+?)\s+(?P<n>\d+)\s+(?P<ea>[\d,]+)/(?P<eb>[\d,]+)\s+(?P<a>{_V})\s+"
    rf"(?P<b>{_V})\s+(?P<d>{_S}) \[(?P<lo>{_S}), (?P<hi>{_S})\]"
    r"\s+(?P<p><?\d\.\d{3}|n/a)\s+(?P<mark>better|worse|not distinguishable)"
    r"(?: \((?P<flag>.+)\))?$")


def _printed(text):
    """A printed value: None for n/a."""
    return None if text == "n/a" else float(text.lstrip("<"))


def test_the_summary_gives_each_comparison_at_p_with_its_interval_and_mark(tiny_run):
    """Oracle: report.json's comparisons at --p-cross (own vs single per cluster, DCD routed
    vs single and vs K-random routed) and its verdicts: each line prints the examples, the
    edges of both sides, both values, the difference with its interval, the adjusted
    p-value and the mark, flagged when the sides hold different numbers of edges; the
    verdict lines print report.json's outcomes and nothing else."""
    _, rep, stdout, _ = tiny_run
    u = rep["uncertainty"]
    p = rep["cross_faithfulness"]["p"]
    expected = {}
    for key, label in (("own_vs_single", None), ("dcd_routed_vs_single", "DCD routed vs single"),
                       ("dcd_routed_vs_k_random_routed", "DCD routed vs K-random routed")):
        for c in u["comparisons"][key]["comparisons"]:
            if c["size"] is not None and abs(c["size"] - p) < 1e-12:
                name = label or c["a"].replace(" own", "") + " own vs single"
                expected[name] = c
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"at p = {100 * p:g}%, on "))
    assert "95% interval" in lines[start] and "Holm-adjusted" in lines[start]
    parsed = {}
    for line in lines[start + 2:start + 2 + len(expected)]:
        m = COMPARISON_LINE.match(line)
        assert m, line
        parsed[m["label"]] = m
    assert set(parsed) == set(expected) and len(expected) == rep["n_clusters"] + 2
    for name, c in expected.items():
        m = parsed[name]
        assert int(m["n"]) == c["n_examples"]
        assert [int(x) for x in m["ea"].split(",")] == list(c["edges_a"].values())
        assert [int(x) for x in m["eb"].split(",")] == list(c["edges_b"].values())
        d = c["difference"]
        for key, want in zip(("a", "b", "d", "lo", "hi", "p"),
                             (c["a_value"], c["b_value"], d["estimate"], d["low"], d["high"],
                              c["p_adjusted"])):
            got = _printed(m[key])
            if want is None:  # a cluster with no test example: nothing to compare
                assert got is None, (name, key)
            elif m[key].startswith("<"):
                assert want < got, (name, key)
            else:
                assert got == pytest.approx(want, abs=5e-4), (name, key)
        assert m["mark"] == c["mark"]
        counts = list(c["edges_a"].values()) + list(c["edges_b"].values())
        assert (m["flag"] == "sizes differ") == (len(set(counts)) > 1), name
    head = next(i for i, ln in enumerate(lines) if ln.startswith("verdicts (level 0.05)"))
    outcomes = ("holds", "does not hold", "not distinguishable")
    shown = {}
    for line in lines[head + 1:head + 4]:
        claim, at_p, on_cpr = re.split(r"\s{2,}", line.strip())
        shown[claim] = (at_p, on_cpr)
    names = {"(a) own beats single": "own beats single",
             "(b) separate mechanisms": "separate mechanisms",
             "(c) DCD routed beats K-random routed": "DCD beats K-random"}
    assert set(shown) == set(names)
    for label, claim in names.items():
        for size, text in ((p, shown[label][0]), (None, shown[label][1])):
            v = [v for v in u["verdicts"] if v["claim"] == claim and (
                v["size"] is None if size is None else
                v["size"] is not None and abs(v["size"] - size) < 1e-12)]
            if not v:
                assert text == "-"
                continue
            assert text.split(" (")[0] == v[0]["outcome"] and text.split(" (")[0] in outcomes


def test_a_line_per_stage_as_it_starts(tiny_run):
    """Each stage's line comes before the next stage's output: the attribution line
    before its progress bar, the clustering line before the evaluation's bar."""
    _, _, _, stderr = tiny_run
    text = stderr.replace("\r", "\n")
    marks = ["auto-circuit-dcd: loading tiny-random on cpu", "auto-circuit-dcd: reading",
             "auto-circuit-dcd: eap attribution of", "eap attribution",
             "auto-circuit-dcd: clustering", "auto-circuit-dcd: building",
             "auto-circuit-dcd: evaluating", "faithfulness", "auto-circuit-dcd: writing"]
    at = [text.find(m) for m in marks]
    assert -1 not in at, [m for m, i in zip(marks, at) if i < 0]
    assert at == sorted(at)


# ----------------------------------------------------------------------------- the page
def _drawn(page_text):
    """Per drawn circuit: (caption's edge count, the Sankey's links, the links' (source,
    target) node names, sorted)."""
    import re

    section = re.search(r'<section id="circuits">.*?</section>', page_text, re.S).group(0)
    counts = [int(n) for n in re.findall(r"of all edges: (\d+) of \d+ edges \(", section)]
    sankeys = [json.loads(m.group(1))[0] for m in re.finditer(
        r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[\{"arrangement".*?\]),\s*\{', section, re.S)]
    # one link per drawn edge (width: |score| scaled so the largest is 1)
    links = [sum(v > 0 for v in s["link"]["value"]) for s in sankeys]
    ends = [sorted((s["node"]["label"][a], s["node"]["label"][b])
                   for a, b in zip(s["link"]["source"], s["link"]["target"])) for s in sankeys]
    return counts, links, ends


def _evaluated(out, rep, p):
    """Per cluster: the edges the evaluation used at size ``p`` (circuits.safetensors'
    ``cluster_<c>.edges.abs``), as (count, sorted (source, target) in MIB's node names)."""
    from safetensors.torch import load_file

    from auto_circuit_dcd.circuits.mib import eap_ig_edge_name

    saved = load_file(str(out / "circuits.safetensors"))
    names = json.loads((out / "circuits.json").read_text())["edge_names"]
    j = [round(f, 9) for f in rep["edge_fractions"]].index(round(p, 9))
    out_sets = []
    for c in rep["cross_faithfulness"]["labels"]:
        mask = saved[f"cluster_{c}.edges.abs"][j].numpy()
        mib = [eap_ig_edge_name(names[i]) for i in np.flatnonzero(mask)]
        pairs = sorted((m.split("->")[0], m.split("->")[1].split("<")[0]) for m in mib)
        out_sets.append((int(mask.sum()), pairs))
    return out_sets


def _expected_count(vec, p):
    count = int(np.floor(round(p * vec.size, 9)))
    return int((np.abs(vec) >= np.sort(np.abs(vec))[::-1][count - 1]).sum())


def test_each_cluster_circuit_is_drawn_at_the_size_of_the_pages_numbers(tiny_run):
    """Oracle: the top floor(p * n) edges by |score| of each saved cluster circuit, at
    --p-cross, counted here (the run's --selection topn); the caption and the drawing both
    have that many, and the drawn edges are those the evaluation used."""
    from safetensors.torch import load_file

    out, rep, _, _ = tiny_run
    saved = load_file(str(out / "circuits.safetensors"))
    labels = rep["cross_faithfulness"]["labels"]
    p = rep["cross_faithfulness"]["p"]
    expected = [_expected_count(saved[f"cluster_{c}"].numpy(), p) for c in labels]
    counts, links, ends = _drawn((out / "report.html").read_text())
    assert counts == expected and links == expected
    assert [(n, e) for n, e in zip(counts, ends)] == _evaluated(out, rep, p)


def check_page_intervals(out, rep):
    """Oracle: report.json's uncertainty. The curve figure draws each curve's band as the
    outline of its interval (high along the sizes, low back) and has the edges-held switch;
    every comparison's mark, and each cluster's mark at --p-cross in the cluster table, is a
    coloured cell; the verdict table holds each verdict's outcome once; the numbers behind
    each verdict and every warning are on the page. Returns the number of marked cells."""
    import html

    from test_report import figure_payloads

    page = (out / "report.html").read_text()
    u = rep["uncertainty"]
    curves = figure_payloads(page)[0]
    bands = {t["name"]: t for t in curves if t.get("fill") == "toself"}
    for name, key in (("single", "single"), ("DCD routed", "dcd_routed"),
                      ("DCD oracle", "dcd_oracle"), ("K-random routed", "k_random_routed")):
        band = u[key]["faithfulness"]
        keep = [j for j in range(len(rep["edge_fractions"]))
                if band["low"][j] is not None and band["high"][j] is not None]
        trace = bands[f"{name}, 95% interval"]
        assert trace["x"] == [rep["edge_fractions"][j] for j in keep + keep[::-1]]
        assert trace["y"] == pytest.approx([band["high"][j] for j in keep]
                                           + [band["low"][j] for j in keep[::-1]])
    assert '"updatemenus"' in page and "x: edges held" in page
    comparisons = [c for fam in u["comparisons"].values() for c in fam["comparisons"]]
    p = rep["cross_faithfulness"]["p"]
    at_p = [c for c in u["comparisons"]["own_vs_single"]["comparisons"]
            if c["size"] is not None and abs(c["size"] - p) < 1e-12]
    marked = 0
    for mark in ("better", "worse", "not distinguishable"):
        cells = page.count(f'<td class="{mark.replace(" ", "-")}">')
        expected = sum(c["mark"] == mark for c in comparisons + at_p)
        if mark == "not distinguishable":  # verdicts of that outcome share its colour
            expected += sum(v["outcome"] == mark for v in u["verdicts"])
        assert cells == expected, mark
        marked += cells
    for outcome in ("holds", "does not hold"):
        cells = page.count(f'<td class="{outcome.replace(" ", "-")}">')
        assert cells == sum(v["outcome"] == outcome for v in u["verdicts"]), outcome
    assert page.count("<details>") == len(u["verdicts"])
    assert "<h2>The method&#x27;s claims: verdicts</h2>" in page
    assert "<h2>Paired comparisons</h2>" in page
    for w in u["warnings"]:
        assert html.escape(w["message"], quote=True) in page
    return marked


def test_the_page_shows_bands_marks_and_verdicts(tiny_run):
    out, rep, _, _ = tiny_run
    assert check_page_intervals(out, rep) > 0


def test_draw_fraction_draws_another_size(tiny_run, tmp_path):
    """The same run (its cached attributions copied) with --draw-fraction 0.2 and
    --selection topn-prune: each drawing is the edge set evaluated at 0.2 (read from the
    evaluation's saved sets), among the top floor(0.2 * n) by |score| (counted here), and
    its caption says how many of those asked it holds."""
    import shutil

    from safetensors.torch import load_file

    out, rep, _, _ = tiny_run
    again = tmp_path / "again"
    shutil.copytree(out / "cache", again / "cache")
    argv = RUN + ["--dataset", rep["dataset"], "--out", str(again), "--draw-fraction", "0.2",
                  "--selection", "topn-prune"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    saved = load_file(str(again / "circuits.safetensors"))
    asked = [_expected_count(saved[f"cluster_{c}"].numpy(), 0.2)
             for c in rep["cross_faithfulness"]["labels"]]
    page = (again / "report.html").read_text()
    counts, links, ends = _drawn(page)
    evaluated = _evaluated(again, rep, 0.2)
    assert [(n, e) for n, e in zip(counts, ends)] == evaluated and links == counts
    assert all(0 < n <= m for n, m in zip(counts, asked))
    for n, m in zip(counts, asked):
        assert f"of all edges: {n} of {rep['n_edges']} edges (of the top {m} by |score|" in page
    assert "--draw-fraction; the per-cluster numbers are at 5%" in page


# ----------------------------------------------------------------------------- report.json
def readme_report_keys():
    """docs/report.md's report.json list: {top-level key: {sub-keys}} (a ``[{...}]`` entry
    gives the keys of each element of a list)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "report.md").read_text()
    bullet = re.search(r"^- `report.json`, the typed.*?^- `", text, re.S | re.M).group(0)
    listing = bullet[bullet.index("`schema_version`,"):bullet.index("`versions`.") + 11]
    keys, pos = {}, 0
    pattern = re.compile(r"`(\w+)`\s*(\{)?")
    while (m := pattern.search(listing, pos)):
        name, pos = m.group(1), m.end()
        keys[name] = {}
        if m.group(2):
            depth, start = 1, pos
            while depth:
                depth += {"{": 1, "}": -1}.get(listing[pos], 0)
                pos += 1
            keys[name] = _sub_keys(listing[start:pos - 1])
    return keys


def _sub_keys(body):
    """``a, b, c [{x, y}]`` -> {"a": {}, "b": {}, "c": {"x": {}, "y": {}}}."""
    import re

    out, depth, item = {}, 0, ""
    for ch in body + ",":
        if ch == "," and depth == 0:
            m = re.match(r"\s*(\w+)\s*(?:\[?\{(.*)\}\]?)?\s*$", item, re.S)
            out[m.group(1)] = _sub_keys(m.group(2)) if m.group(2) else {}
            item = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        item += ch
    return out


def test_report_json_has_exactly_the_keys_the_readme_lists(tiny_run):
    """Oracle: the README's list, parsed; top-level keys must match both ways, listed
    sub-keys must exist (in every element, for a list of records)."""
    out, rep, _, _ = tiny_run
    listed = readme_report_keys()
    assert rep["schema_version"] == 1
    assert set(listed) == set(rep), (set(listed) ^ set(rep))

    def check(value, keys, where):
        for key, sub in keys.items():
            records = value if isinstance(value, list) else [value]
            for record in records:
                assert key in record, f"{where}.{key}"
                if sub:
                    check(record[key], sub, f"{where}.{key}")

    check(rep, listed, "report")
    assert len(listed["dcd"]["clusters"]) >= 6  # the parser read the nested record


# ----------------------------------------------------------------------------- help and errors
def test_run_help_lists_the_options_by_stage_each_with_its_default(capsys, monkeypatch):
    """Oracle: each RunConfig field's ``group``; the groups appear in the stages' order and
    every option of ``run`` says its default."""
    import re
    from dataclasses import fields

    from auto_circuit_dcd.cli import RUN_GROUPS
    from auto_circuit_dcd.job.config import RunConfig

    monkeypatch.setenv("COLUMNS", "2000")
    parser, run = _subparser("run")
    titles = [g.title for g in run._action_groups]
    assert titles[-len(RUN_GROUPS):] == list(RUN_GROUPS)
    grouped = {a.dest: g.title for g in run._action_groups for a in g._group_actions}
    for f in fields(RunConfig):
        assert grouped[f.name] == f.metadata["group"], f.name
    assert grouped["quiet"] == "report and output"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--help"])
    text = capsys.readouterr().out
    at = [text.index(f"\n{title}:\n") for title in RUN_GROUPS]
    assert at == sorted(at)
    # one entry per option: its line and the indented lines of help under it
    entries = re.findall(r"^  (-\S+.*(?:\n {4,}.*)*)", text, re.M)
    by_option = {e.split()[0].rstrip(","): " ".join(e.split()) for e in entries}
    for a in run._actions:
        if a.dest != "help":
            entry = by_option[a.option_strings[0]]
            assert re.search(r"\(default: [^)]", entry), f"no default: {entry}"
    assert by_option["--edge-fractions"].endswith(
        "(default: MIB's grid, 0.001,0.002,0.005,0.01,0.02,0.05,0.1,0.2,0.5,1)")
    assert by_option["--mib-parity"].endswith("(default: off)")


def test_what_an_option_left_out_means_is_what_the_job_does():
    """Oracle: the job's own defaults: the MIB grid, and the convention a config with the
    option left out gets (with and without --mib-parity)."""
    from dataclasses import fields

    from auto_circuit_dcd.cli import WHEN_NOT_GIVEN
    from auto_circuit_dcd.evaluation import MIB_GRID
    from auto_circuit_dcd.job.config import RunConfig

    assert set(WHEN_NOT_GIVEN) == {f.name for f in fields(RunConfig) if f.default is None}
    grid = ",".join(f"{p:g}" for p in RunConfig().fraction_grid())
    assert grid == ",".join(f"{p:g}" for p in MIB_GRID)
    assert WHEN_NOT_GIVEN["edge_fractions"].endswith(grid)
    plain, mib = RunConfig().convention(), RunConfig(mib_parity=True).convention()
    assert WHEN_NOT_GIVEN["selection"] == f"{plain.selection}; {mib.selection} under --mib-parity"
    assert (plain.selection, mib.selection) == ("topn-fill", "topn-prune")
    assert WHEN_NOT_GIVEN["ranking"] == (f"{plain.cpr_ranking}; under --mib-parity "
                                         f"{mib.cpr_ranking} for CPR and {mib.cmd_ranking} "
                                         "for CMD")
    assert plain.cmd_ranking == plain.cpr_ranking
    assert WHEN_NOT_GIVEN["cmd"] == f"{plain.cmd_form}; {mib.cmd_form} under --mib-parity"


@pytest.mark.parametrize("argv, says", [
    (["run", "--edge-fractions", "2"], "argument --edge-fractions: edge fractions are shares "
                                       "of all edges in [0, 1] (0.05 = 5%), got 2"),
    (["run", "--edge-fractions", "0.1,x"], "argument --edge-fractions: edge fractions are "
                                           "numbers"),
    (["run", "--method", "nope"], "argument --method: invalid choice: 'nope'"),
    (["run", "--max-clusters", "two"], "argument --max-clusters: invalid int value: 'two'"),
    (["make-dataset", "--out", "x.json"], "the following arguments are required: --task"),
])
def test_a_bad_option_is_one_line_without_the_usage_block(capsys, argv, says):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    command = f"auto-circuit-dcd {argv[0]}"
    assert err[0].startswith(f"{command}: error: {says}")
    assert err[0].endswith(f"; see {command} --help")


HELP_IMPORTS = """
import contextlib, io, sys
from auto_circuit_dcd.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["run", "--help"])
    except SystemExit:
        pass
print([m for m in ("torch", "auto_circuit", "transformer_lens", "sklearn", "transformers")
       if m in sys.modules])
"""


def test_run_help_imports_nothing_heavy():
    """``--help`` stays fast: the libraries that take seconds to import are not touched."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", HELP_IMPORTS], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"


def test_the_bug_report_address_is_the_tracker_or_says_where_to_look(monkeypatch):
    import importlib.metadata as md

    from auto_circuit_dcd.cli import _bug_report_address

    class Meta:
        def __init__(self, urls):
            self.urls = urls

        def get_all(self, key):
            return self.urls if key == "Project-URL" else None

    monkeypatch.setattr(md, "metadata",
                        lambda name: Meta(["Homepage, https://h.example",
                                           "Issues, https://h.example/issues"]))
    assert _bug_report_address() == "https://h.example/issues"
    monkeypatch.setattr(md, "metadata", lambda name: Meta(None))
    assert _bug_report_address().startswith("the maintainers of auto-circuit-dcd")

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "metadata", missing)
    assert _bug_report_address().startswith("the maintainers of auto-circuit-dcd")


# ----------------------------------------------------------------------------- small splits
@pytest.fixture
def attribution_refused(monkeypatch):
    """Attribution fails the run if it starts; records what was said before it."""
    from auto_circuit_dcd.attribution import front

    def refuse(*a, **k):
        raise AssertionError("attribution ran")

    monkeypatch.setattr(front, "attribute", refuse)


def test_a_small_training_split_is_warned_about_before_attribution(tmp_path, capsys,
                                                                   attribution_refused):
    """8 prompts, 2 held out: 6 training prompts for up to 3 clusters (9 wanted); at this
    share ask for ceil(9 * 8 / 6) = 12. The warning is one line, before attribution."""
    import sys
    import warnings

    from test_pipeline import RUN, tiny_prompts, write

    def to_stderr(message, category, filename, lineno, file=None, line=None):
        """Python's own way to show a warning (pytest records them instead)."""
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    data = write(tmp_path / "d.json", tiny_prompts(8))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = to_stderr
        assert main(RUN + ["--dataset", str(data), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    before = err[:err.index("AssertionError: attribution ran")]
    said = [line for line in before.splitlines() if "training split" in line]
    assert len(said) == 1, before
    assert said[0].startswith("auto-circuit-dcd: warning: the training split has 6 prompt(s) "
                              "(of 8 read")
    assert "--n 12," in said[0] and "--max-clusters" in said[0]


def test_a_training_split_too_small_to_cluster_is_refused_in_one_line(tmp_path, capsys,
                                                                      attribution_refused):
    from test_pipeline import RUN, tiny_prompts, write

    data = write(tmp_path / "d.json", tiny_prompts(3))  # 1 held out, 2 to cluster
    assert main(RUN + ["--dataset", str(data), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("auto-circuit-dcd run: error: the training split has 2 "
                             "prompt(s) (of 3 read")
    assert "at least 3" in err[0] and "--n 14" in err[0]  # ceil(9 * 3 / 2)


# ----------------------------------------------------------------------------- the run folder
def test_a_finished_run_leaves_no_lock_and_one_file_mode(tiny_run):
    """Oracle: the mode open() gives a new file under this process's umask."""
    import os
    import stat

    out = tiny_run[0]
    assert not list(out.rglob(".lock"))
    umask = os.umask(0)
    os.umask(umask)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "circuits.safetensors" for p in files)
    modes = {p.relative_to(out).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


def test_a_failed_run_leaves_no_lock(tmp_path, capsys, monkeypatch):
    from test_pipeline import RUN, tiny_prompts, write

    from auto_circuit_dcd.cluster import GroupedDiscovery

    def broken(self, *a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(GroupedDiscovery, "fit", broken)
    out = tmp_path / "out"
    assert main(RUN + ["--dataset", str(write(tmp_path / "d.json", tiny_prompts(12))),
                       "--out", str(out)]) == 1
    assert "ZeroDivisionError: a bug" in capsys.readouterr().err
    assert out.is_dir() and list(out.rglob("*.safetensors"))  # the cache is kept to resume
    assert not list(out.rglob(".lock"))
