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


#: what the page shows a reader, read from the DOM and from plotly's data in the browser
PROBE = """JSON.stringify((() => {
  const hover = [];
  for (const d of document.querySelectorAll('.plotly-graph-div')) {
    for (const t of (d.data || [])) {
      const parts = [t.hovertemplate, t.text, t.hovertext, t.customdata, t.name];
      for (const sub of [t.link, t.node]) {
        if (sub) parts.push(sub.label, sub.customdata, sub.hovertemplate);
      }
      for (const p of parts) {
        if (p === undefined || p === null) continue;
        (Array.isArray(p) ? p.flat(3) : [p]).forEach(v => hover.push(String(v)));
      }
    }
  }
  const rows = sel => Array.from(document.querySelectorAll(sel));
  return {
    hover: hover,
    exemplars: rows('.exemplars').map(div => rows('#' + div.parentElement.id +
        ' .exemplars tbody tr').map(tr => [tr.children[0].textContent,
                                           tr.children[2].textContent,
                                           tr.children[3].textContent])),
    legends: rows('.colour-key').map(l => ({items: l.querySelectorAll('.legend-item').length,
                                        swatches: l.querySelectorAll('.swatch').length,
                                        visible: l.offsetWidth > 0 && l.offsetHeight > 0,
                                        text: l.textContent})),
    findings: (document.querySelector('#findings') || {}).textContent || null,
    clusterBlocks: rows('.cluster-described').map(b => ({
        id: b.id, tables: b.querySelectorAll('table').length,
        heads: rows('#' + b.id + ' table').map(t => t.querySelector('thead').textContent)})),
    fieldsTable: rows('#described table').length,
    routingShare: rows('#routing tr').map(tr => tr.textContent)
        .filter(t => t.includes('own cluster')),
    pwned: window.__pwned === undefined ? null : window.__pwned,
  };
})())"""


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """The default toy job (sizes 5%, 20%, 100%): its folder and report."""
    from auto_circuit_dcd.job.pipeline import RunConfig, run

    out = tmp_path_factory.mktemp("toy") / "run"
    report = run(RunConfig(out=str(out), edge_fractions=[0.05, 0.2, 1.0]), progress=False)
    return out, report


@pytest.mark.slow
def test_toy_report_draws_every_figure_without_errors(toy_run, tmp_path):
    import json
    import re

    from auto_circuit_dcd.job.run_folder import RunFolder

    out, report = toy_run
    shot = tmp_path / "report.png"
    seen = check_page(out / "report.html", screenshot=shot, probe=PROBE)
    assert seen.errors == [], seen.errors
    assert seen.figures >= 7 and seen.drawn == seen.figures  # + the distinguishing diagram
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each circuit drawn is the one evaluated at --p-cross (5%): floor(0.05 * 81) = 4 edges
    # asked, chosen by the default topn-fill (the evaluation's saved sets)
    page = (out / "report.html").read_text()
    evaluated = RunFolder(out).circuits(at=0.05)
    assert report.circuit_selection.rule == "topn-fill"
    for c in report.cross_faithfulness.labels:
        n = evaluated[f"cluster_{c}"].size
        assert (f"the circuit evaluated at 5% of all edges: {n} of 81 edges (the top edges by "
                "|score| on input-to-logits paths, refilled down the ranking until 4 lie on "
                "paths") in page
    assert "top 4 of 81 edges by |score|" not in page
    assert '"logits"' in page
    probe = json.loads(seen.probe)
    # no hover label reads None; every legend is drawn with its swatches
    assert not [h for h in probe["hover"] if "None" in h]
    # the circuits' links say their edge (MIB's name, escaped for plotly) and its score
    assert any(h.startswith("input-&gt;a0.h3&lt;") and "score" in h for h in probe["hover"])
    assert len(probe["legends"]) >= 2
    for legend in probe["legends"]:
        assert legend["visible"] and legend["items"] == legend["swatches"] >= 4, legend
        assert "attention head" in legend["text"] and "logits" in legend["text"]
    # the first paragraph says what was found; shares read as percentages
    assert "k = 2" in probe["findings"] and "Cluster 0" in probe["findings"]
    # and the verdicts of report.json at --p-cross and on CPR, one sentence per claim
    for v in report.uncertainty.verdicts:
        if v.size is None or abs(v.size - 0.05) < 1e-12:
            at = "on CPR" if v.size is None else "at 5% of edges"
            assert re.search(f'Verdict on "{re.escape(v.statement)}" ' + r"\(level [^)]*\): "
                             rf'([^"]*?, )?{v.outcome}( \([^)]*\))? {at}[,.]',
                             probe["findings"]), (v, probe["findings"])
    assert probe["routingShare"] and probe["routingShare"][0].endswith("100%")
    # per cluster: its exemplars as the report holds them (typical, then ambiguous), and
    # its tables of nodes and edges that set it apart
    desc = report.cluster_descriptions
    shown = {b["id"]: b for b in probe["clusterBlocks"]}
    assert sorted(shown) == [f"described-{c}" for c in desc.clusters]
    for ex, rows in zip(desc.exemplars, probe["exemplars"]):
        expected = [[kind, e.clean, " | ".join(e.answers)] for kind, items in
                    (("typical", ex.typical), ("ambiguous", ex.ambiguous)) for e in items]
        assert rows == expected and len(rows) >= 3
        heads = " ".join(shown[f"described-{ex.cluster}"]["heads"])
        assert "Cohen's d" in heads and "q-value" in heads and "node" in heads and "edge" in heads
    assert probe["fieldsTable"] >= 1 + 3 * len(desc.clusters) + 1


@pytest.mark.slow
def test_prompts_are_shown_as_text_never_as_markup(toy_run, tmp_path):
    """A prompt, an answer and a field value carrying markup and entities: the page shows
    each as the exact text, and nothing in them runs."""
    import copy
    import json

    from auto_circuit_dcd.report import write_html

    _, report = toy_run
    evil = ('<img src=x onerror="window.__pwned=1"> &amp; <script>window.__pwned=2</script> '
            "\"quoted\" 'single' a < b > c")
    planted = copy.deepcopy(report)
    exemplar = planted.cluster_descriptions.exemplars[0].typical[0]
    exemplar.clean, exemplar.answers = evil, ["<b>" + evil + "</b>"]
    planted.cluster_descriptions.fields[0].typical[0].category = evil
    page = write_html(planted, tmp_path / "evil.html")
    seen = check_page(page, probe=PROBE)
    assert seen.errors == [], seen.errors
    probe = json.loads(seen.probe)
    assert probe["pwned"] is None
    assert probe["exemplars"][0][0] == ["typical", evil, "<b>" + evil + "</b>"]
    assert evil not in page.read_text()


def test_missing_browser_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    with pytest.raises(BrowserUnavailable, match="no Chromium"):
        check_page(tmp_path / "x.html")
