"""Assemble the run report into one self-contained HTML page.

1. Tables (run summary, scores, clusters, k selection, timings, versions) are built from the
   run's :class:`~auto_circuit_dcd.report.records.RunReport`; every string is HTML-escaped, missing numbers read "n/a" and rounding noise 0
   (:mod:`auto_circuit_dcd.report.values`); wide tables scroll inside the page.
2. Figures come from :mod:`auto_circuit_dcd.report.figures` (and, for circuits, from ``extras``),
   each embedded as a ``<div>`` with its data as JSON (plotly escapes ``<`` there).
3. plotly.js is inlined once in ``<head>``, so the page needs no network.
"""

from __future__ import annotations

import html
import numbers
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from auto_circuit_dcd.report import figures as F
from auto_circuit_dcd.report.values import fmt, score_rows
from auto_circuit_dcd.report.records import DroppedExamples, RunReport

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
"""


def esc(x: Any) -> str:
    """``x`` as text safe to put in HTML."""
    return html.escape("" if x is None else str(x), quote=True)


def _cell(x: Any) -> str:
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
        ("attribution method", report.method),
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
    return table(["circuits", "CPR (higher is better)", "CMD (lower is better)"],
                 score_rows(report))


def _clusters_table(report: RunReport) -> str:
    j = report.p_index
    at = f" at {report.edge_fractions[j]:.1%}"
    rows = [(c.label, c.size, c.n_test, dict(sorted(c.composition.items())),
             c.faithfulness_own[j], c.single_on_group[j]) for c in report.dcd.clusters]
    return table(["cluster", "train size", "test examples", "composition (known groups)",
                  "own circuit" + at, "single circuit" + at], rows)


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


def _circuit_selection(report: RunReport) -> str:
    """The convention circuits were chosen and scored by, edges achieved per size, and
    cluster stability."""
    sel = report.circuit_selection
    body = kv_table([("convention", sel.convention), ("selection rule", sel.rule),
                     ("ranking (curves, CPR)", sel.ranking),
                     ("ranking (CMD)", sel.cmd_ranking), ("CMD", sel.cmd),
                     ("base algorithm (clusters and baselines)", sel.base_algo)])
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


def _section(anchor: str, title: str, body: str, note: str = "",
             report: Optional[RunReport] = None) -> str:
    note_html = f'<p class="note">{esc(note)}</p>' if note else ""
    return (f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{note_html}'
            f"{_definitions(anchor, report)}{body}</section>\n")


def render(report: RunReport, extras: Optional[Mapping[str, Any]] = None) -> str:
    """The whole report page as a string (see :func:`write_html`)."""
    import plotly.offline

    if not isinstance(report, RunReport):
        raise TypeError(f"report must be a RunReport (the run's report; RunReport.load(path) "
                        f"reads a report.json), got {type(report).__name__}")
    extras = extras or {}
    title = f"DCD report: {report.model} on {dataset_name(report.dataset)}"
    parts: List[tuple] = [
        ("summary", "Run summary", _summary(report) + _scores(report),
         "CPR: area under faithfulness vs edge fraction; CMD: area of "
         + ("|1 - faithfulness|" if report.circuit_selection.cmd == "two-sided"
            else "max(0, 1 - faithfulness)") + ". "
         "Cluster-quality scores compare clusters with the dataset's known groups; they are "
         "reported only, never used to choose k."),
        ("faithfulness", "Faithfulness vs circuit size",
         figure_div(F.faithfulness_curves(report)),
         "Oracle: each test example scored with whichever circuit does best on it. Routed: each "
         "test example scored with the circuit of the cluster it is assigned to. K-random: the "
         "same number of circuits, found on a random equal split of the training examples."),
        ("routing", "Routing test examples", _routing(report),
         report.routing.note
         + ". 'DCD, routed' sends noise examples to the stated circuit; the row 'noise "
         "examples left out' scores only the routed ones."),
        ("clusters", "Clusters", _clusters_table(report)
         + figure_div(F.cluster_faithfulness(report)),
         "Missing values (n/a, gaps) mean a cluster has no test examples."),
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
    parts.append(("selection", "Choosing k", _selection(report)))
    parts.append(("circuit-selection", "Circuit selection and cluster stability",
                  _circuit_selection(report),
                  "Edges per circuit size as chosen by the selection rule (pruning can keep "
                  "fewer than asked, ties more). Stability: the clusterer refitted on "
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


def write_html(report: RunReport, path: "str | Path",
               extras: Optional[Dict[str, Any]] = None) -> Path:
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
    from auto_circuit_dcd.report.findings import FINDINGS, LISTED

    blocks: List[str] = []
    text: List[str] = []
    for part in FINDINGS:
        sentences = part(report)
        if part not in LISTED:
            text += sentences
            continue
        if text:
            blocks.append(f"<p>{esc(' '.join(text))}</p>")
            text = []
        if sentences:
            blocks.append("<ul>" + "".join(f"<li>{esc(s)}</li>" for s in sentences) + "</ul>")
    if text:
        blocks.append(f"<p>{esc(' '.join(text))}</p>")
    return f'<div class="findings" id="findings">{"".join(blocks)}</div>'


def _definitions(anchor: str, report: Optional[RunReport]) -> str:
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


def _described_part(report: RunReport, extras: Mapping[str, Any]) -> tuple:
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
                 f"a node sums the edges it {'leaves' if desc.settings.node_edges == 'out' else 'enters' if desc.settings.node_edges == 'in' else 'touches'}.")
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
