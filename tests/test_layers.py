"""The package's stages import downwards only: no import circles between stages, and no
stage reaches up to one that runs after it (every import counted, lazy ones included)."""

import ast
from pathlib import Path

import auto_circuit_dcd as dcd

PACKAGE = Path(dcd.__file__).resolve().parent
#: the stages and root modules, lowest first; a unit may import only units listed before it
LAYERS = [
    {"errors", "lazy"},
    {"arrays", "files", "paths", "keys", "schema", "distributed"},
    {"model"},
    {"data"},
    {"tasks", "attribution", "toy"},
    {"circuits"},
    {"cluster", "evaluation"},
    {"metrics"},
    {"explain"},
    {"report"},
    {"job"},
    {"cli", "registry"},
]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "auto_circuit_dcd":
                yield from (f"auto_circuit_dcd.{a.name}" for a in node.names)
            elif node.module.startswith("auto_circuit_dcd."):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("auto_circuit_dcd."))


def test_every_unit_is_in_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    listed = set().union(*LAYERS)
    assert units <= listed, f"place {sorted(units - listed)} in LAYERS"


def test_stages_import_downwards_only():
    rank = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        unit = parts[1] if len(parts) > 1 else "__init__"
        if unit == "__init__":
            continue  # the lazy facade names every stage
        for target in _imports(path):
            other = _unit(target)
            if other in ("__init__", "__version__") or other == unit:
                continue
            if rank[other] >= rank[unit]:
                wrong.append(f"{'/'.join(parts)} imports {target}")
    assert not wrong, "imports running up or sideways:\n" + "\n".join(wrong)


def test_a_violation_is_reported(tmp_path):
    """The check itself can fail: an upward import is found."""
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from auto_circuit_dcd.job.pipeline import run\n")
    assert list(_imports(bad)) == ["auto_circuit_dcd.job.pipeline"]
