"""The README and docs pages hold together: every relative link and anchor resolves, the
README's table of contents lists every docs page, and every page opens with a paragraph
saying what it covers."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set:
    """The anchors of a page's headings (a repeated heading gets -1, -2, ...)."""
    seen, out = {}, set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list:
    return LINK.findall(FENCE.sub("", page.read_text()))


def test_slug_follows_githubs_rule():
    assert slug("Exporting a run's circuits") == "exporting-a-runs-circuits"
    assert slug("Attribution: speed and memory") == "attribution-speed-and-memory"
    assert slug("Browser, processes, GPU") == "browser-processes-gpu"
    assert slug("The `report.json` keys") == "the-reportjson-keys"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading '#{anchor}' in {dest.name}")
    assert not broken, f"{page.name}:\n" + "\n".join(broken)


def test_the_readme_table_of_contents_lists_every_docs_page():
    text = (ROOT / "README.md").read_text()
    toc = text[text.index("## Documentation"):]
    toc = toc[:toc.index("\n## ", 1)]
    listed = {Path(t).name for t in LINK.findall(toc)
              if t.startswith("docs/") and t.endswith(".md")}
    assert listed == {p.name for p in DOCS}


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_page_opens_with_a_paragraph_saying_what_it_covers(page):
    lines = [ln for ln in page.read_text().splitlines() if ln.strip()]
    assert lines[0].startswith("# "), "a page starts with its title"
    first = lines[1]
    assert not first.startswith(("#", "-", "|", "```", "<!--", "1.")), first
    words = " ".join(lines[1:4]).split()
    assert len(words) >= 20, "the opening paragraph says what the page covers"


#: repository paths named in the text: `scripts/x.py`, `tests/test_x.py`, `auto_circuit_dcd/a/b.py`
REPO_PATH = re.compile(
    r"`((?:scripts|benchmarks|tests|notebooks|docs|auto_circuit_dcd|\.ci)/[\w./-]+)`")
TEST_FILE = re.compile(r"`(test_\w+\.py)")
#: dotted names in the text: `auto_circuit_dcd.model.table.MODELS`
DOTTED = re.compile(r"auto_circuit_dcd(?:\.\w+)+")


def named_paths(text: str) -> set:
    return set(REPO_PATH.findall(text)) | {"tests/" + t for t in TEST_FILE.findall(text)}


def resolve_dotted(name: str):
    """The file a dotted name lives in and the attribute left over (None when the name is a
    module), or None when no module of the package has that name. Read, not imported."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        for file in (base.with_suffix(".py"), base / "__init__.py"):
            if file.exists():
                rest = parts[cut:]
                if len(rest) > 1:
                    return None
                return file, (rest[0] if rest else None)
    return None


def test_resolve_dotted_finds_modules_and_attributes():
    assert resolve_dotted("auto_circuit_dcd.model.table")[1] is None
    assert resolve_dotted("auto_circuit_dcd.model.table.MODELS")[1] == "MODELS"
    assert resolve_dotted("auto_circuit_dcd.no_such_module.x.y") is None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_files_and_modules_named_in_the_text_exist(page):
    """A moved or renamed file, module or public name leaves no stale path in the docs."""
    text = page.read_text()
    missing = [p for p in named_paths(text) if not (ROOT / p.rstrip("/")).exists()]
    for name in set(DOTTED.findall(text)):
        found = resolve_dotted(name)
        if found is None:
            missing.append(name)
        elif found[1] and not re.search(rf"\b{found[1]}\b", found[0].read_text()):
            missing.append(name)  # neither defined nor imported there
    assert not missing, f"{page.name} names what the repository does not have: {sorted(missing)}"
