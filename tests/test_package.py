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


def test_public_names_resolve():
    import auto_circuit_dcd as dcd

    for name in dcd.__all__:
        assert getattr(dcd, name) is not None
