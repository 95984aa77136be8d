"""Sample outputs shown in the README and docs/ are what their commands print.

A fenced block right after ``<!-- output of: COMMAND -->`` is the output of ``COMMAND``;
each distinct command is run once (in a fresh folder, as a reader would run it) and every
block shown for it is compared with the real output line by line: the words exactly, the
numbers to a tolerance (floats differ in their last digits between processors; a rounded
figure may move by one in its last shown digit), the ``report:`` path by its tail only.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"<!-- output of: (.+?) -->\n```\w*\n(.*?)```", re.S)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
#: shown figures have 3 decimals: one unit in the last digit from rounding, with room
TOL = 0.003


def shown_outputs():
    """{command: [(page name, block text), ...]} over the README and docs pages."""
    found = {}
    for page in PAGES:
        for m in MARK.finditer(page.read_text()):
            found.setdefault(m.group(1).strip(), []).append((page.name, m.group(2)))
    return found


def compare(shown: str, real: str) -> list:
    """Differences between a shown sample and the real output (empty when they agree)."""
    a = [ln.rstrip() for ln in shown.strip().splitlines()]
    b = [ln.rstrip() for ln in real.strip().splitlines()]
    if len(a) != len(b):
        return [f"{len(a)} lines shown, {len(b)} printed"]
    problems = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x.startswith("report: ") and y.startswith("report: "):
            tail = "runs/" + x.split("runs/", 1)[-1] if "runs/" in x else x.split()[-1]
            if not y.endswith(tail):
                problems.append(f"line {i + 1}: {x!r} vs {y!r}")
            continue
        if NUMBER.sub("#", x).split() != NUMBER.sub("#", y).split():
            problems.append(f"line {i + 1}: words differ: {x!r} vs {y!r}")
            continue
        for u, v in zip(NUMBER.findall(x), NUMBER.findall(y)):
            if ("." in u) != ("." in v) or abs(float(u) - float(v)) > (TOL if "." in u else 0):
                problems.append(f"line {i + 1}: {u} shown, {v} printed")
    return problems


def test_compare_reads_numbers_to_a_tolerance_and_words_exactly():
    real = "k = 2 | ARI 0.984\nsingle CPR 0.848\nreport: /tmp/x/runs/default/report.html"
    assert compare("k = 2 | ARI 0.985\nsingle CPR 0.848\nreport: /home/me/runs/default/report.html",
                   real) == []
    assert compare("k = 2 | ARI 0.984\nsingle CPR 0.839\nreport: /a/runs/default/report.html",
                   real) == ["line 2: 0.839 shown, 0.848 printed"]
    assert compare("k = 3 | ARI 0.984\nsingle CPR 0.848\nreport: /a/runs/default/report.html",
                   real) == ["line 1: 3 shown, 2 printed"]
    assert compare("k = 2 | NMI 0.984\nsingle CPR 0.848\nreport: /a/runs/default/report.html",
                   real)[0].startswith("line 1: words differ")
    assert compare("k = 2 | ARI 0.984", real) == ["1 lines shown, 3 printed"]


def test_the_default_run_is_shown():
    """The README shows the printed summary of the default command (and so must keep it)."""
    assert any(name == "README.md" for name, _ in shown_outputs().get("auto-circuit-dcd run", []))


def _command(text: str) -> list:
    argv = shlex.split(text)
    assert argv[0] == "auto-circuit-dcd", f"only the package's own command is run: {text!r}"
    script = Path(sys.executable).with_name("auto-circuit-dcd")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "auto_circuit_dcd.cli"]
    return head + argv[1:]


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(shown_outputs()))
def test_shown_outputs_are_what_the_command_prints(command, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    done = subprocess.run(_command(command), cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for page, shown in shown_outputs()[command]:
        problems = compare(shown, done.stdout)
        assert not problems, f"{page}, output of {command!r}:\n" + "\n".join(problems) + \
            f"\n--- printed:\n{done.stdout}"
