"""Assemble the run report into one self-contained HTML page.

1. Tables (run summary, scores, clusters, clustering space, k selection, timings,
   versions) are built from the run's :class:`~auto_circuit_dcd.report.records.RunReport`;
   every string is HTML-escaped, missing numbers read "n/a" and rounding noise 0
   (:mod:`auto_circuit_dcd.report.values`); wide tables scroll inside the page.
2. Figures come from :mod:`auto_circuit_dcd.report.figures` (and, for circuits, from ``extras``),
   each embedded as a ``<div>`` with its data as JSON (plotly escapes ``<`` there).
3. plotly.js is inlined once in ``<head>``, so the page needs no network.
"""

from __future__ import annotations

import html
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auto_circuit_dcd.report import figures as F
from auto_circuit_dcd.report.records import DroppedExamples, RunReport
from auto_circuit_dcd.report.space import circuit_method, cluster_method, near_tie_text, space_text
from auto_circuit_dcd.report.values import fmt, score_intervals, score_rows

if TYPE_CHECKING:  # pragma: no cover
    from auto_circuit_dcd.metrics.uncertainty import (
        Band,
        Comparison,
        ComparisonFamily,
        RunUncertainty,
        Verdict,
    )

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note { color: #555; font-size: 0.92em; max-width: 60em; }
nav a { margin-right: 1em; }
.fig { margin: 0.5em 0 1.5em 0; }
.scroll { overflow-x: auto; max-width: 100%; }
div.findings { max-width: 62em; background: #f7f9fc; padding: 0.1em 0.9em;
               border-left: 3px solid #1f77b4; }
dl.defs { font-size: 0.9em; color: #444; max-width: 62em; margin: 0.4em 0 0.8em 0; }
dl.defs dt { font-weight: 600; float: left; clear: left; margin-right: 0.4em; }
dl.defs dd { margin: 0 0 0.2em 0; }
.colour-key { font-size: 0.88em; margin: 0.3em 0; }
.legend-item { display: inline-block; margin-right: 1.2em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.35em;
          vertical-align: -0.1em; border: 1px solid #999; }
.cluster-described { border-top: 1px dashed #ccc; margin-top: 1em; }
.fig { overflow-x: auto; }
td.better, td.holds { color: #1a7f37; font-weight: 600; }
td.worse, td.does-not-hold { color: #b42318; font-weight: 600; }
td.not-distinguishable { color: #555; }
p.warning { color: #8a4b00; background: #fff5e0; padding: 0.4em 0.7em; max-width: 60em; }
details { margin: 0.3em 0; }
summary { cursor: pointer; }
"""


def esc(x: Any) -> str:
    """``x`` as text safe to put in HTML."""
    return html.escape("" if x is None else str(x), quote=True)


@dataclass(frozen=True)
class Marked:
    """A table cell's text with a CSS class (a comparison's mark, a verdict's outcome)."""

    text: str
    css: str


def _cell(x: Any) -> str:
    if isinstance(x, Marked):
        return f'<td class="{esc(x.css)}">{esc(x.text)}</td>'
    if _is_num(x) or x is None:
        return f'<td class="num">{esc(fmt(x))}</td>'
    if isinstance(x, Mapping):
        return f"<td>{esc(', '.join(f'{k}: {fmt(v)}' for k, v in x.items()))}</td>"
    if isinstance(x, (list, tuple)):
        return f"<td>{esc(', '.join(fmt(v) if _is_num(v) else str(v) for v in x))}</td>"
    return f"<td>{esc(x)}</td>"


def _is_num(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; numbers formatted, missing values "n/a", everything escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def kv_table(pairs: Iterable[tuple]) -> str:
    """A two-column table of (name, value) pairs."""
    body = "".join(f"<tr><th>{esc(k)}</th>{_cell(v)}</tr>" for k, v in pairs)
    return f"<table><tbody>{body}</tbody></table>"


def figure_div(fig: Any) -> str:
    """A plotly figure as an HTML fragment that uses the page's inlined plotly.js."""
    return '<div class="fig">' + fig.to_html(full_html=False, include_plotlyjs=False,
                                             config={"responsive": True,
                                                     "displaylogo": False}) + "</div>"


def _summary(report: RunReport) -> str:
    q = report.cluster_quality
    timings = report.timings
    total = sum(v for v in (F.finite(t) for t in timings.values()) if v is not None)
    groups = report.groups
    pairs = [
        ("model", report.model),
        ("dataset", dataset_name(report.dataset)),
        ("clusters from the rows of", cluster_method(report)),
        ("every circuit built by", circuit_method(report)),
        ("clustering space", report.clustering_space and report.clustering_space.space),
        ("train examples", report.n_train),
        ("test examples", report.n_test),
        ("edges in the model", report.n_edges),
        ("clusters (k)", report.n_clusters),
        ("known groups", ", ".join(sorted({str(g) for g in groups if g is not None}))
         if groups else "none"),
        ("labelled train examples (quality measured on them)", q and q.n_labelled),
        ("examples dropped (non-finite attribution rows)", _dropped(report.dropped_examples)),
        ("ARI vs known groups", q and q.ari),
        ("NMI vs known groups", q and q.nmi),
        ("purity vs known groups", q and q.purity),
        ("total time (s)", total if timings else None),
    ]
    return kv_table(pairs)


def dataset_name(path: Any) -> str:
    """A dataset path as shown: a file shipped inside this package relative to the package
    (``auto_circuit_dcd/toy/assets/mixed.json``, the same on every machine), others as given."""
    package = Path(__file__).resolve().parents[1]
    try:
        return str(Path(str(path)).resolve().relative_to(package.parent))
    except (ValueError, OSError):
        return "" if path is None else str(path)


def _dropped(dropped: DroppedExamples) -> str:
    return f"train {len(dropped.train)}, test {len(dropped.test)}"


def _routing(report: RunReport) -> str:
    routing = report.routing
    pairs = [
        ("rule", routing.rule),
        ("training rows the rule sends to their own cluster", _percent(routing.train_agreement)),
        ("test examples routed to noise (-1)", routing.n_test_noise),
        ("training examples labelled noise", routing.n_train_noise),
        ("circuit of noise examples in 'DCD, routed'", routing.noise_fallback),
    ]
    return kv_table(pairs)


def _scores(report: RunReport) -> str:
    """CPR and CMD per circuit family, each with its interval when the report has them."""
    intervals = score_intervals(report)
    u = report.uncertainty
    level = f" [{u.settings.level:.0%} interval]" if u is not None and intervals else ""
    rows: list[tuple] = []
    for name, cpr, cmd in score_rows(report):
        if name in intervals:
            a, b = intervals[name]
            rows.append((name, interval(cpr, a.low, a.high), interval(cmd, b.low, b.high)))
        else:
            rows.append((name, cpr, cmd))
    return table(["circuits", "CPR (higher is better)" + level,
                  "CMD (lower is better)" + level], rows)


def _clusters_table(report: RunReport) -> str:
    j = report.p_index
    at = f" at {report.edge_fractions[j]:.1%}"
    u = report.uncertainty
    if u is None:
        rows = [(c.label, c.size, c.n_test, dict(sorted(c.composition.items())),
                 c.faithfulness_own[j], c.single_on_group[j]) for c in report.dcd.clusters]
        return table(["cluster", "train size", "test examples", "composition (known groups)",
                      "own circuit" + at, "single circuit" + at], rows)
    return _clusters_with_intervals(report, u, j, at)


#: the k-selection columns shown, (header, key) in order; a criterion a clusterer lacks
#: is left out rather than shown as a column of n/a
_K_COLUMNS = [("clusterer", "method"), ("k", "k"), ("silhouette", "silhouette"),
              ("elbow criterion", "elbow"), ("gap", "gap"), ("k this clusterer chose", "chosen"),
              ("used", "selected")]


def _selection(report: RunReport) -> str:
    """The single-cluster test as sentences, then one narrow row per (clusterer, k)."""
    rows = report.selection
    if not rows:
        return '<p class="note">No k-selection results in this report.</p>'
    tests = [r for r in rows if "silhouette" not in r]
    grid = [r for r in rows if "silhouette" in r]
    notes = "".join(
        f'<p class="note">{esc(r.get("method", "test"))}: {esc(r.get("reason", ""))}'
        + (" (one cluster)" if r.get("one_cluster") else "") + "</p>" for r in tests)
    cols = [(h, k) for h, k in _K_COLUMNS if any(k in r for r in grid)]

    def value(r: Mapping[str, Any], key: str) -> Any:
        if key == "gap" and r.get("gap_se") is not None and r.get("gap") is not None:
            return f"{fmt(r['gap'])} ± {fmt(r['gap_se'])}"
        if key == "elbow" and r.get("elbow") is not None:
            return f"{_elbow_name(r)} {fmt(r['elbow'])}"
        if key in ("chosen", "selected"):
            return "yes" if r.get(key) else ""
        return r.get(key)

    body = table([h for h, _ in cols], [[value(r, k) for _, k in cols] for r in grid]) \
        if grid else ""
    return notes + _k_choice_notes(report) + body


#: the space search's table: (header, candidate field)
_SPACE_COLUMNS = (("space", "space"), ("clusterer", "clusterer"), ("k", "k"),
                  ("smallest cluster", "smallest"), ("structure (k=1 test)", "structure"),
                  ("silhouette", "silhouette"), ("eligible", "eligible"),
                  ("stability", "stability"), ("stability sd", "stability_std"),
                  ("null stability", "null_stability"), ("excess", "excess"),
                  ("admissible", "admissible"), ("chosen", "chosen"))


def _space(report: RunReport) -> str:
    """The clustering space: how it was chosen, a near tie as what to do, and every
    candidate of the search."""
    s = report.clustering_space
    if s is None:
        return '<p class="note">This report does not record the clustering space.</p>'
    tie = near_tie_text(report)
    body = f'<p>{esc(space_text(report))}.</p>'
    if tie:
        body += f'<p class="warning">{esc(tie)}.</p>'
    if not s.candidates:
        return body
    body += kv_table([("criterion", s.criterion), ("near tie when", s.near_tie_rule),
                      ("resamples", f"{s.n_resamples} subsamples of {_percent(s.fraction)} "
                                    "of the training rows"),
                      ("runner-up (another space, different clusters)",
                       f"{s.runner_up_space} / {s.runner_up_clusterer}"
                       if s.runner_up_space else "none"),
                      ("margin (stability, chosen - runner-up)", s.margin),
                      ("margin standard error", s.margin_se)])

    def cell(c: Any, key: str) -> Any:
        value = getattr(c, key)
        return ("yes" if value else "") if isinstance(value, bool) else value

    return body + table([h for h, _ in _SPACE_COLUMNS],
                        [[cell(c, k) for _, k in _SPACE_COLUMNS] for c in s.candidates])


def _circuit_selection(report: RunReport) -> str:
    """The convention circuits were chosen and scored by, edges achieved per size, and
    cluster stability."""
    sel = report.circuit_selection
    body = kv_table([("convention", sel.convention), ("selection rule", sel.rule),
                     ("ranking (curves, CPR)", sel.ranking),
                     ("ranking (CMD)", sel.cmd_ranking), ("CMD", sel.cmd),
                     ("clusters from the rows of", cluster_method(report)),
                     ("circuits (each cluster's, single, K-random) by", circuit_method(report)),
                     ("clustered examples left out of the circuits (no finite row)",
                      len(sel.circuit_rows_missing or []))])
    achieved = sel.achieved_edge_counts.get(sel.ranking, {})
    if achieved:
        body += table(["circuit", *(f"{fmt(f)} ({n} asked)" for f, n in
                                    zip(report.edge_fractions, sel.requested_edge_counts))],
                      [[name, *counts] for name, counts in achieved.items()])
    st = report.stability
    if st is None:
        return body + '<p class="note">Cluster stability was not measured (0 resamples).</p>'
    body += "<h3>Cluster stability</h3>" + kv_table([
        ("refits", f"{st.n_resamples} {st.method}s of {_percent(st.fraction)} "
                   f"of the training rows ({st.clusterer})"),
        ("ARI with the full fit, mean", st.ari_mean),
        ("ARI, standard deviation", st.ari_std),
        ("clusters found per refit", ", ".join(str(k) for k in st.n_clusters))])
    return body + table(["cluster", "member pairs kept together", "best-match Jaccard"],
                        [(c, _percent(v), st.jaccard.get(c))
                         for c, v in st.co_assignment.items()])


#: a section of the page: its anchor, title, body and (optionally) a note under the title
_Part = tuple[str, str, str] | tuple[str, str, str, str]


def _section(anchor: str, title: str, body: str, note: str = "", *,
             report: RunReport | None = None) -> str:
    note_html = f'<p class="note">{esc(note)}</p>' if note else ""
    return (f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{note_html}'
            f"{_definitions(anchor, report)}{body}</section>\n")


def render(report: RunReport, extras: Mapping[str, Any] | None = None) -> str:
    """The whole report page as a string (see :func:`write_html`)."""
    import plotly.offline

    if not isinstance(report, RunReport):
        raise TypeError(f"report must be a RunReport (the run's report; RunReport.load(path) "
                        f"reads a report.json), got {type(report).__name__}")
    extras = extras or {}
    title = f"DCD report: {report.model} on {dataset_name(report.dataset)}"
    parts: list[_Part] = [
        ("summary", "Run summary", _summary(report) + _scores(report),
         "CPR: area under faithfulness vs edge fraction; CMD: area of "
         + ("|1 - faithfulness|" if report.circuit_selection.cmd == "two-sided"
            else "max(0, 1 - faithfulness)") + ". "
         "Cluster-quality scores compare clusters with the dataset's known groups; they are "
         "reported only, never used to choose k."),
        ("faithfulness", "Faithfulness vs circuit size",
         figure_div(F.faithfulness_curves(report)) + _grid_note(report),
         "Oracle: each test example scored with whichever circuit does best on it. Routed: each "
         "test example scored with the circuit of the cluster it is assigned to. K-random: the "
         "same number of circuits, found on a random equal split of the training examples."
         + _bands_note(report)),
        *_verdict_parts(report),
        ("routing", "Routing test examples", _routing(report),
         report.routing.note
         + ". 'DCD, routed' sends noise examples to the stated circuit; the row 'noise "
         "examples left out' scores only the routed ones."),
        ("clusters", "Clusters", _clusters_table(report)
         + figure_div(F.cluster_faithfulness(report)),
         "Missing values (n/a, gaps) mean a cluster has no test examples."),
        *_comparison_parts(report),
        ("cross", "Cross-faithfulness", figure_div(F.cross_faithfulness_heatmap(report)),
         "Row i, column j: faithfulness of cluster i's circuit on cluster j's test examples. "
         "High diagonal and low off-diagonal values mean the clusters use different circuits."),
        ("overlap", "Edge overlap", figure_div(F.edge_overlap_heatmap(report)),
         "Jaccard overlap of the smallest edge sets holding the given share of each circuit's "
         "total |score|."),
        ("composition", "Cluster composition", figure_div(F.composition_bars(report))),
    ]
    projection = extras.get("projection")
    if projection:
        parts.append(("projection", "Projection of the attribution rows",
                      figure_div(F.projection_scatter(projection)),
                      "Each point is a training example: its edge-attribution row projected on the "
                      "first two SVD components."))
    elif extras.get("projection_note"):
        parts.append(("projection", "Projection of the attribution rows",
                      f'<p class="note">{esc(extras["projection_note"])}</p>'))
    circuits = extras.get("circuit_figures") or {}
    if circuits:
        captions = extras.get("circuit_captions") or {}
        body = ""
        for label, fig in sorted(circuits.items(), key=lambda kv: F.natural_key(str(kv[0]))):
            caption = captions.get(label, "")
            body += f"<h3>Cluster {esc(label)}</h3>"
            if caption:
                body += f'<p class="note">{esc(caption)}</p>'
            body += figure_div(fig) if fig is not None else '<p class="note">not drawn</p>'
        parts.append(("circuits", "Circuits", _circuit_legend() + body,
                      "Each cluster's circuit as the run evaluated it, in MIB's node and edge "
                      "names (hover a link for its score); link width is proportional to "
                      "|score|, scaled so the largest drawn is 1."))
    parts.append(_described_part(report, extras))
    parts.append(("space", "Clustering space", _space(report),
                  "Under --preprocessing auto each candidate space (row preprocessing, then "
                  "the SVD) is partitioned by each clusterer; the candidates whose clusters "
                  "come back on subsamples of the rows clearly more often than on "
                  "structureless data of the same shape compete on that stability. Labels "
                  "are never read (docs/clustering.md)."))
    parts.append(("selection", "Choosing k", _selection(report)))
    parts.append(("circuit-selection", "Circuit selection and cluster stability",
                  _circuit_selection(report),
                  "Edges per circuit size as chosen by the selection rule (pruning can keep "
                  "fewer than asked; refilling, ties and the edge that completes a path can "
                  "add a few). Stability: the clusterer refitted on "
                  "subsamples of the training rows; ARI near 1 and pairs kept together near "
                  "100% mean the same groups come back."))
    parts.append(("timings", "Timings and versions",
                  table(["stage", "seconds"], report.timings.items())
                  + table(["package", "version"], report.versions.items())))
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, *_ in parts)
    sections = "".join(_section(*p, report=report) for p in parts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
        f"</head>\n<body><h1>{esc(title)}</h1>{_findings(report)}<nav>{nav}</nav>\n"
        f"{sections}</body></html>\n"
    )


def write_html(report: RunReport, path: str | Path,
               extras: dict[str, Any] | None = None) -> Path:
    """Write the report as one self-contained HTML file at ``path`` and return its path.

    ``extras`` (optional, not JSON): ``projection`` = {"x", "y", "labels", "groups" or None}
    (or ``projection_note``: why there is none), ``circuit_figures`` = {cluster label: plotly
    Figure or None} and ``circuit_captions`` = {cluster label: what is drawn}.
    """
    from auto_circuit_dcd.files import write_text

    return write_text(path, render(report, extras))


# ------------------------------------------------------------- reading aids of the page
def _percent(x: Any) -> str:
    """A share shown as a percentage ("n/a" when missing)."""
    from auto_circuit_dcd.report.values import percent

    return percent(x)


def legend_html(items: Sequence[tuple]) -> str:
    """A legend: a coloured swatch and its text per ``(colour, text)`` item."""
    spans = "".join(f'<span class="legend-item"><span class="swatch" style="background:'
                    f'{esc(colour)}"></span>{esc(text)}</span>' for colour, text in items)
    return f'<div class="colour-key">{spans}</div>'


def _findings(report: RunReport) -> str:
    """The first paragraph: what the run found, in sentences generated from the report
    (:mod:`auto_circuit_dcd.report.findings`)."""
    from auto_circuit_dcd.report.findings import FINDINGS, LISTED, OWN_PARAGRAPH

    blocks: list[str] = []
    text: list[str] = []
    for part in FINDINGS:
        sentences = part(report)
        if part not in LISTED and part not in OWN_PARAGRAPH:
            text += sentences
            continue
        if text:
            blocks.append(f"<p>{esc(' '.join(text))}</p>")
            text = []
        if sentences and part in LISTED:
            blocks.append("<ul>" + "".join(f"<li>{esc(s)}</li>" for s in sentences) + "</ul>")
        elif sentences:
            text = list(sentences)
    if text:
        blocks.append(f"<p>{esc(' '.join(text))}</p>")
    return f'<div class="findings" id="findings">{"".join(blocks)}</div>'


def _definitions(anchor: str, report: RunReport | None) -> str:
    """Definitions of the terms whose numbers first appear in section ``anchor``
    (:mod:`auto_circuit_dcd.report.glossary`)."""
    from auto_circuit_dcd.report.glossary import definitions

    terms = definitions(anchor, report)
    if not terms:
        return ""
    return ('<dl class="defs">' + "".join(f"<dt>{esc(t)}:</dt><dd>{esc(d)}</dd>"
                                          for t, d in terms) + "</dl>")


def _circuit_legend() -> str:
    from auto_circuit_dcd.report.diagram import NEGATIVE, POSITIVE, node_legend

    return legend_html(node_legend([(POSITIVE, "edge with a positive score (supports the "
                                               "answer)"),
                                    (NEGATIVE, "edge with a negative score")]))


#: how a node's value sums its edges, by ``settings.node_edges``
_NODE_EDGES = {"out": "leaves", "in": "enters"}


def _described_part(report: RunReport, extras: Mapping[str, Any]) -> _Part:
    """The section on what each cluster is (:mod:`auto_circuit_dcd.report.described`)."""
    from auto_circuit_dcd.report.described import described_section

    desc = report.cluster_descriptions
    note = ("From the attribution rows, the clustering and the prompts, without the labels "
            "and without running the model. The clusters were found from the same attribution "
            "rows, so edges that separate them are expected: the tests say which edges and "
            "heads the clusters differ on, not that the clusters are real (cluster stability "
            "and cross-faithfulness say that). The fields were not used to cluster, so their "
            "tests have no such bias.")
    if desc is not None:
        note += (f" Permutation tests: {desc.settings.n_permutations} permutations "
                 f"(smallest p-value {desc.settings.min_p_value:.2g}); values compared: "
                 f"{'|score|' if desc.settings.scores == 'abs' else 'signed score'} per edge "
                 f"in the task metric's units ({report.metric}), "
                 "a node sums the edges it "
                 f"{_NODE_EDGES.get(desc.settings.node_edges, 'touches')}.")
    return ("described", "What each cluster is", described_section(report, extras), note)


def _elbow_name(row: Mapping[str, Any]) -> str:
    """The name of a k-selection row's elbow value (its scale depends on the clusterer)."""
    from auto_circuit_dcd.report.glossary import ELBOW_CRITERIA

    key = next((k for k in ELBOW_CRITERIA if k in row), None)
    return ELBOW_CRITERIA[key][0] if key else "elbow"


def _k_choice_notes(report: RunReport) -> str:
    """Per clusterer: what its elbow value is, the k each criterion chose, the rule that
    took k, and which clusterer the run used."""
    from auto_circuit_dcd.report.glossary import ELBOW_CRITERIA, K_RULES

    grid = [r for r in report.selection if "silhouette" in r and r.get("method")]
    methods = list(dict.fromkeys(str(r["method"]) for r in grid))
    choices = report.k_choices or {}
    items = []
    for m in methods:
        rows = [r for r in grid if r["method"] == m]
        key = next((k for k in ELBOW_CRITERIA if any(k in r for r in rows)), None)
        chosen = next((r["k"] for r in rows if r.get("chosen")), None)
        choice = choices.get(m, {})
        rule = str(choice.get("rule") or report.config.get("k_rule") or "")
        text = f"{m}: "
        if key:
            name, meaning = ELBOW_CRITERIA[key]
            text += f"its elbow value is the {name}, {meaning}; "
        picks = [f"{c} {choice[c]}" for c in ("silhouette", "elbow", "gap") if c in choice]
        if picks:
            text += "k chosen by each criterion: " + ", ".join(picks) + "; "
        if chosen is not None:
            how = K_RULES.get(rule, f"chosen by {rule}")
            flag = f"--k-rule {rule}: " if rule in K_RULES and rule != "clusterer's own" else ""
            text += f"it took k = {chosen}" + (f" ({flag}{how})" if rule else "")
        if any(r.get("selected") for r in rows):
            text += "; the run used it (the clusterer whose chosen clustering has the largest " \
                    "silhouette)" if len(methods) > 1 else "; the run used it"
        items.append(f"<li>{esc(text)}.</li>")
    if not items:
        return ""
    return ('<p class="note">Elbow values are on each clusterer\'s own scale: compare them '
            "across k within a clusterer, never across clusterers.</p>"
            f'<ul class="k-choices">{"".join(items)}</ul>')
# ------------------------------------------------------- intervals, comparisons, verdicts
#: what a size of None means in a comparison or a verdict
ON_CPR = "CPR"


def interval(estimate: Any, low: Any, high: Any) -> str:
    """``0.658 [0.626, 0.687]`` by the page's number rule; the value alone when the
    interval is missing."""
    if F.finite(low) is None or F.finite(high) is None:
        return fmt(estimate)
    return f"{fmt(estimate)} [{fmt(low)}, {fmt(high)}]"


def _at(band: Band, j: int) -> str:
    return interval(band.estimate[j], band.low[j], band.high[j])


def _size(size: float | None) -> str:
    return ON_CPR if size is None else f"{100 * size:g}%"


def _marked(text: str, comparisons: Sequence[Comparison] = ()) -> Marked:
    """A mark or an outcome, coloured by what it says, and flagged when one of the
    ``comparisons`` behind it sets circuits of different edge counts (or an empty one)
    against each other (:func:`~auto_circuit_dcd.report.summary.size_flag`)."""
    from auto_circuit_dcd.report.summary import size_flag

    flag = size_flag(comparisons)
    return Marked(text + (f" ({flag})" if flag else ""), text.replace(" ", "-"))


def _grid_note(report: RunReport) -> str:
    """The sizes left out of the grid, and why (nothing when none was)."""
    u = report.uncertainty
    if u is None or not u.grid.dropped:
        return ""
    return f'<p class="note">Sizes left out: {esc(u.grid.reason)}.</p>'


def _bands_note(report: RunReport) -> str:
    u = report.uncertainty
    if u is None:
        return ""
    st = u.settings
    return (f" Shaded bands: {st.level:.0%} intervals ({st.interval} bootstrap, "
            f"{st.n_resamples} resamples of the test examples). The buttons draw the curves "
            "against the share of edges asked for or against the edges each circuit held.")


def _clusters_with_intervals(report: RunReport, u: RunUncertainty, j: int, at: str) -> str:
    """Per cluster: own and single circuit at ``p`` with intervals, their paired difference
    with its mark, and the edges each held."""
    from auto_circuit_dcd.report.summary import same_size

    s = next((i for i, f in enumerate(u.grid.fractions)
              if abs(f - report.edge_fractions[j]) < 1e-12), None)
    own = {} if s is None else {c.a: c for c in u.comparisons["own_vs_single"].comparisons
                                if same_size(c.size, u.grid.fractions[s])}
    by_label = {c.label: c for c in u.clusters}
    rows = []
    for c in report.dcd.clusters:
        ci, comp = by_label.get(c.label), own.get(f"cluster {c.label} own")
        rows.append((c.label, c.size, c.n_test, dict(sorted(c.composition.items())),
                     c.faithfulness_own[j] if ci is None or s is None else
                     _at(ci.own.faithfulness, s),
                     c.single_on_group[j] if ci is None or s is None else
                     _at(ci.single_on_group.faithfulness, s),
                     "" if comp is None else interval(comp.difference.estimate,
                                                      comp.difference.low, comp.difference.high),
                     "" if comp is None else _marked(comp.mark, [comp]),
                     "" if comp is None else f"{_edges(comp.edges_a)} / {_edges(comp.edges_b)}"))
    level = f" [{u.settings.level:.0%} interval]"
    return table(["cluster", "train size", "test examples", "composition (known groups)",
                  "own circuit" + at + level, "single circuit" + at + level,
                  "own - single" + level, "mark", "edges own / single"], rows)


def _edges(counts: Mapping[str, int]) -> str:
    return ", ".join(str(v) for v in counts.values()) or "-"


def _comparison_table(family: ComparisonFamily) -> str:
    from auto_circuit_dcd.report.summary import p_text

    rows = [(_size(c.size), c.a, c.b, c.n_examples, _edges(c.edges_a), _edges(c.edges_b),
             c.a_value, c.b_value,
             interval(c.difference.estimate, c.difference.low, c.difference.high),
             p_text(c.p_value), p_text(c.p_adjusted), _marked(c.mark, [c]), c.note)
            for c in family.comparisons]
    return table(["size", "a", "b", "test examples", "edges a", "edges b", "f a", "f b",
                  f"a - b [{family.level:.0%} interval]", "p", "p adjusted", "mark",
                  "note"], rows)


#: the comparison families as the page titles them, in order
FAMILY_TITLES = {
    "own_vs_single": "Each cluster's own circuit vs the single circuit, on the cluster's "
                     "test examples",
    "dcd_routed_vs_single": "DCD routed vs the single circuit",
    "dcd_routed_vs_k_random_routed": "DCD routed vs K-random routed",
    "dcd_oracle_vs_k_random_oracle": "DCD oracle vs K-random oracle",
}


def _comparison_parts(report: RunReport) -> list[_Part]:
    """The page section of paired comparisons (none without intervals)."""
    u = report.uncertainty
    if u is None:
        return []
    body = ""
    for key, family in u.comparisons.items():
        body += f"<h3>{esc(FAMILY_TITLES.get(key, family.name))}</h3>"
        body += f'<p class="note">{esc(family.test)}; {esc(family.correction)}.</p>'
        body += _comparison_table(family)
    first = next(iter(u.comparisons.values()))
    return [("comparisons", "Paired comparisons", body,
             f"a - b on the same test examples at each size and on CPR. Marked better when "
             f"the adjusted p-value is below {1 - first.level:.2g} and the difference's "
             f"{first.level:.0%} interval lies above 0, worse when it lies below 0, else not "
             "distinguishable. 'Sizes differ': the two sides hold different numbers of edges "
             "(the edges columns), so the comparison is not at equal size.")]


def _verdict_table(u: RunUncertainty) -> str:
    """Claims by rows, sizes (and CPR) by columns, each cell the verdict's outcome."""
    from auto_circuit_dcd.report.summary import CLAIM_NAMES, same_size, verdict_text

    sizes: list[float | None] = list(u.grid.fractions) + [None]
    claims = list(dict.fromkeys(v.claim for v in u.verdicts))
    rows = []
    for claim in claims:
        row: list[Any] = [CLAIM_NAMES.get(claim, claim)]
        for size in sizes:
            v = next((v for v in u.verdicts if v.claim == claim and same_size(v.size, size)),
                     None)
            row.append("" if v is None else
                       Marked(verdict_text(u, v), v.outcome.replace(" ", "-")))
        rows.append(row)
    return table(["claim", *(_size(p) for p in sizes)], rows)


def _verdict_details(u: RunUncertainty, v: Verdict) -> str:
    """One verdict: its outcome, the numbers and intervals behind it, its rule and note."""
    from auto_circuit_dcd.report.summary import CLAIM_NAMES, p_text, verdict_text

    head = f"{CLAIM_NAMES.get(v.claim, v.claim)} at {_size(v.size)}: {verdict_text(u, v)}"
    evidence = table(["what", "value", f"{v.level:.0%} interval", "held against",
                      "p adjusted", "where it lies"],
                     [(e.what, e.estimate, interval(e.estimate, e.low, e.high), e.reference,
                       "" if e.p_adjusted is None else p_text(e.p_adjusted), e.status)
                      for e in v.evidence])
    note = f'<p class="note">{esc(v.statement)}. Rule: {esc(v.rule)}.' + (
        f" Note: {esc(v.note)}." if v.note else "") + "</p>"
    return f"<details><summary>{esc(head)}</summary>{note}{evidence}</details>"


def _verdict_parts(report: RunReport) -> list[_Part]:
    """The page section of verdicts, warnings and how the intervals were made (none
    without intervals)."""
    u = report.uncertainty
    if u is None:
        return []
    st = u.settings
    body = _verdict_table(u)
    body += "".join(f'<p class="warning">{esc(w.message)}</p>' for w in u.warnings)
    body += "<h3>The numbers behind each verdict</h3>"
    body += "".join(_verdict_details(u, v) for v in u.verdicts)
    body += "<h3>How the intervals and tests were made</h3>" + kv_table([
        ("resampled", st.resampled), ("resamples", st.n_resamples), ("seed", st.seed),
        ("confidence level", st.level), ("interval", st.interval), ("paired test", st.test),
        ("correction across sizes", st.correction),
        ("faithful means f at or above", st.faithful), ("low means f below", st.low),
        ("fewest test examples per cluster", st.min_examples),
        ("widest interval half-width", st.target_half_width)])
    return [("verdicts", "The method's claims: verdicts", body,
             "(a) each cluster's own circuit beats the single circuit on its group; (b) low "
             "cross-faithfulness between clusters while the single circuit stays faithful on "
             "every group; (c) DCD routed beats K-random routed. Each is 'holds', 'does not "
             f"hold' or 'not distinguishable' at level {1 - st.level:.2g}, never more than the "
             "data say; docs/uncertainty.md gives the rules. 'Sizes differ': a comparison "
             "behind the verdict sets circuits of different edge counts against each other.")]
