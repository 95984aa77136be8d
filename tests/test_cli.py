"""What a researcher types and reads: the command's options and output, and ``export-mib``.

One run of the main job on the tiny random model (module fixture) serves every test here.
"""

import contextlib
import io
import json

import numpy as np
import pytest

from auto_circuit_dcd.cli import main
from test_pipeline import RUN, tiny_prompts, write


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

    from auto_circuit_dcd.model.edges import edge_layout
    from auto_circuit_dcd.circuits.mib import from_eap_ig_graph

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
    from auto_circuit_dcd.cluster.discovery import CLUSTERER_NAMES, COMBINE, PREPROCESSORS
    from auto_circuit_dcd.job.config import RunConfig
    from auto_circuit_dcd.model.devices import DTYPE_CHOICES
    from auto_circuit_dcd.metrics.curves import CMD_FORMS
    from auto_circuit_dcd.circuits.selection import RANKINGS
    from auto_circuit_dcd.model.task_metric import METRICS
    from auto_circuit_dcd.tasks import TASKS

    tables = {"method": METHODS, "metric": METRICS, "clusterer": CLUSTERER_NAMES,
              "k_rule": COMBINE, "preprocessing": PREPROCESSORS, "dtype": DTYPE_CHOICES,
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
                         ({"base_algo": "nope"}, "--base-algo: base_algo must be one of")]:
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
    printed = {}
    for line in stdout.splitlines():
        if line.startswith("  ") and " CPR " in line and " CMD " in line:
            name, rest = line.split(" CPR ")
            cpr, cmd = rest.split(" CMD ")
            printed[name.split("(")[0].strip()] = (float(cpr), float(cmd))
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
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("report: ") and last.endswith("report.html")
    assert last[len("report: "):] == str((out / "report.html").resolve())


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
    """Per drawn circuit: (caption's edge count, the Sankey's real links)."""
    import re

    counts = [int(n) for n in re.findall(r"top (\d+) of \d+ edges by \|score\|", page_text)]
    sankeys = [json.loads(m.group(1))[0] for m in re.finditer(
        r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[\{"arrangement".*?\]),\s*\{', page_text, re.S)]
    # auto-circuit adds 1e-6 "ghost" links to align layers; real links are scaled |scores|
    links = [sum(v > 1e-5 for v in s["link"]["value"]) for s in sankeys]
    return counts, links


def _expected_count(vec, p):
    count = int(np.floor(round(p * vec.size, 9)))
    return int((np.abs(vec) >= np.sort(np.abs(vec))[::-1][count - 1]).sum())


def test_each_cluster_circuit_is_drawn_at_the_size_of_the_pages_numbers(tiny_run):
    """Oracle: the top floor(p * n) edges by |score| of each saved cluster circuit, at
    --p-cross, counted here; the caption and the drawing both have that many."""
    from safetensors.torch import load_file

    out, rep, _, _ = tiny_run
    saved = load_file(str(out / "circuits.safetensors"))
    labels = rep["cross_faithfulness"]["labels"]
    expected = [_expected_count(saved[f"cluster_{c}"].numpy(), rep["cross_faithfulness"]["p"])
                for c in labels]
    counts, links = _drawn((out / "report.html").read_text())
    assert counts == expected and links == expected


def test_draw_fraction_draws_another_size(tiny_run, tmp_path):
    """The same run (its cached attributions copied) with --draw-fraction 0.2."""
    import shutil

    from safetensors.torch import load_file

    out, rep, _, _ = tiny_run
    again = tmp_path / "again"
    shutil.copytree(out / "cache", again / "cache")
    argv = RUN + ["--dataset", rep["dataset"], "--out", str(again), "--draw-fraction", "0.2"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    saved = load_file(str(again / "circuits.safetensors"))
    expected = [_expected_count(saved[f"cluster_{c}"].numpy(), 0.2)
                for c in rep["cross_faithfulness"]["labels"]]
    page = (again / "report.html").read_text()
    counts, links = _drawn(page)
    assert counts == expected and links == expected
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
