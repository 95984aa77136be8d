"""The main job's report in a real browser: it loads offline with no console error and
every figure is drawn (headless Chromium; skipped, with a message, where none is installed)."""

import pytest

from auto_circuit_dcd.report.browser import BrowserUnavailable, check_page, find_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium: install Debian's chromium package (.ci/run does) or set CHROMIUM")


@pytest.mark.slow
def test_the_check_sees_errors_and_undrawn_figures(tmp_path):
    """The oracle for the check itself: a page with a known error and a figure that
    never draws, and a page with one working plotly figure."""
    from plotly.offline import get_plotlyjs

    bad = tmp_path / "bad.html"
    bad.write_text('<html><head><title>bad</title></head><body>'
                   '<div class="plotly-graph-div"></div>'
                   '<script>console.error("planted error"); noSuchFunction();</script>'
                   '</body></html>')
    seen = check_page(bad)
    assert seen.title == "bad" and (seen.figures, seen.drawn) == (1, 0)
    assert any("planted error" in e for e in seen.errors)
    assert any("noSuchFunction" in e for e in seen.errors)

    good = tmp_path / "good.html"
    good.write_text('<html><head><title>good</title><script>' + get_plotlyjs() + '</script>'
                    '</head><body><div id="f" class="plotly-graph-div"></div><script>'
                    'Plotly.newPlot("f", [{x: [1, 2], y: [3, 4]}]);</script></body></html>')
    seen = check_page(good)
    assert seen.errors == [] and (seen.figures, seen.drawn) == (1, 1)


@pytest.mark.slow
def test_toy_report_draws_every_figure_without_errors(tmp_path):
    from auto_circuit_dcd.job.pipeline import RunConfig, run

    out = tmp_path / "run"
    run(RunConfig(out=str(out), edge_fractions=[0.05, 0.2, 1.0]), progress=False)
    shot = tmp_path / "report.png"
    seen = check_page(out / "report.html", screenshot=shot)
    assert seen.errors == [], seen.errors
    assert seen.figures >= 6 and seen.drawn == seen.figures
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the circuits are drawn at --p-cross (5%): floor(0.05 * 81) = 4 edges, and the logits
    # node is named (auto-circuit's drawing leaves it blank)
    page = (out / "report.html").read_text()
    assert page.count("top 4 of 81 edges by |score|") == 2
    assert '"logits"' in page


def test_missing_browser_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    with pytest.raises(BrowserUnavailable, match="no Chromium"):
        check_page(tmp_path / "x.html")
