"""The HTML report of a DCD run: one self-contained page rendered from the run's report dict.

:func:`write_html` writes the page; :func:`circuit_figure` draws one circuit with auto-circuit's
own Sankey drawing (the page draws the evaluated circuits from their edge names,
:mod:`auto_circuit_dcd.report.diagram`, without the model).
"""

from __future__ import annotations

from auto_circuit_dcd.report.figures import circuit_figure
from auto_circuit_dcd.report.html import render, write_html

__all__ = ["circuit_figure", "render", "write_html"]
