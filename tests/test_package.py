"""Importing the package is fast and changes nothing in auto-circuit or torch."""

import subprocess
import sys

CHECK = """
import sys, time
t0 = time.perf_counter()
import auto_circuit_dcd
elapsed = time.perf_counter() - t0
heavy = [m for m in ("auto_circuit", "transformer_lens", "sklearn", "hdbscan", "plotly") if m in sys.modules]
print(elapsed, heavy)
"""


def test_import_is_light_and_has_no_side_effects():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split(maxsplit=1)
    assert out[1].strip() == "[]"
    assert float(out[0]) < 2.0


def test_public_names_resolve_to_objects_not_modules():
    """Every public name is the documented object even after every submodule is imported
    (a stage package named like a public function would shadow it: ``dcd.run``)."""
    import importlib
    import pkgutil
    import types

    import auto_circuit_dcd as dcd

    for info in pkgutil.walk_packages(dcd.__path__, "auto_circuit_dcd."):
        importlib.import_module(info.name)
    for name in dcd.__all__:
        value = getattr(dcd, name)
        assert value is not None and not isinstance(value, types.ModuleType), name
    assert callable(dcd.run) and dcd.run.__module__ == "auto_circuit_dcd.job.pipeline"
