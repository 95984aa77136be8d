"""The README's and docs pages' Python examples run as written (docs that cannot drift)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

#: a ```python block right after this comment is shown, not executed (say why in the comment)
NOT_RUN = "<!-- not run"


def python_blocks(path):
    """The ```python blocks of a Markdown file that are meant to run, in order."""
    text = path.read_text()
    blocks = []
    for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
        before = text[:m.start()].rstrip().splitlines()
        if before and before[-1].lstrip().startswith(NOT_RUN):
            continue
        blocks.append(m.group(1))
    return blocks


def run_blocks(path, blocks):
    """Execute the blocks one after another in one namespace, as a reader would."""
    namespace = {"__name__": "docs"}
    for code in blocks:
        exec(compile(code, str(path), "exec"), namespace)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(README)
    assert blocks, "README has no Python example"
    monkeypatch.chdir(tmp_path)
    run_blocks(README, blocks)
    out = capsys.readouterr().out
    assert "torch.Size([256, 81])" in out


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_docs_python_examples_run(page, tmp_path, monkeypatch, capsys):
    """Every docs page's Python blocks, executed in a fresh folder; the guide's circuit
    example prints the toy model's edge count (81), an oracle from the model's graph."""
    monkeypatch.chdir(tmp_path)
    run_blocks(page, python_blocks(page))
    out = capsys.readouterr().out
    if page.name == "guide.md":
        assert "of 81 edges" in out


def test_a_block_marked_not_run_is_left_out(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\n```\n\n<!-- not run: needs a GPU -->\n"
                    "```python\nraise SystemExit\n```\n")
    assert python_blocks(page) == ["x = 1\n"]


def test_readme_starts_with_the_two_commands():
    lines = [ln for ln in README.read_text().splitlines() if ln.strip()]
    assert lines[1] == "```bash"
    assert lines[2].endswith("auto-circuit-dcd run") and lines[3].endswith("&& pytest")
