"""Write the example notebooks (``notebooks/*.ipynb``) from the cell sources below.

The notebooks' code lives in this one reviewable Python file. Run from the repository root
(offline; SmolLM2-135M converted and cached by ``auto-circuit-dcd fetch-model``):

    python notebooks/build_notebooks.py               # sources only, no outputs
    python notebooks/build_notebooks.py --execute     # and execute them; outputs saved
    python notebooks/build_notebooks.py --execute 02  # only the notebooks named 02*

The committed notebooks are executed (a test fails on one saved without outputs), and
``--execute`` is how they are made:

1. build each notebook from its cells, as without ``--execute``;
2. execute it in a fresh kernel running this interpreter, with ``DCD_NB_N`` set to its saved
   size (``SAVED_N``: the full size its text describes), offline, on one thread, with
   ``PLOTLY_RENDERER=plotly_mimetype`` (each figure saved as plotly JSON, interactive in
   JupyterLab and VS Code without a server);
3. add beside each figure's JSON a static PNG rendered by kaleido 0.2.1 from that JSON with
   the installed plotly's own plotly.js (no CDN), which GitHub and nbviewer show; drop
   stderr streams and execution timings, and keep the built notebook metadata, so that a
   rebuild changes only what the outputs show;
4. write it, with ``metadata.auto_circuit_dcd.DCD_NB_N`` recording the size.

``tests/test_notebooks.py`` checks that the saved cells are these sources, that every code
cell was executed without error and every figure cell holds a PNG, and re-executes each
notebook at its small default size against independent oracles.
"""
from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

Cell = tuple[str, str]  # (kind, source); kind "md", "code", or "fig": code that draws figures
FIGURE_TAG = "figure"  # cell tag of "fig" cells: their saved outputs must hold a PNG

# Full size (``DCD_NB_N``) of each notebook, as its text describes it, and the size at which
# ``--execute`` computes the outputs saved in the file.
FULL_N: dict[str, int] = {
    "01_quickstart_toy.ipynb": 320,
    "02_dataset_variations_smollm2.ipynb": 200,
    "03_two_task_mixture_smollm2.ipynb": 200,
    "04_inside_auto_circuit.ipynb": 320,
}
SAVED_N: dict[str, int] = dict(FULL_N)

SIZE_NOTE = (
    "**Size.** The parameter cell reads `DCD_NB_N` from the environment. Its default is the "
    "small size the test suite runs (a few minutes on one CPU thread for all notebooks); "
    "for a real measurement set it before starting Jupyter, e.g. `DCD_NB_N={full} jupyter lab`"
    "{extra}. Small sizes give noisy faithfulness numbers: read them as a demonstration of "
    "the workflow, not as results. The outputs saved in this file were computed at "
    "`DCD_NB_N={saved}`{below} by `python notebooks/build_notebooks.py --execute`."
)


def size_note(name: str, extra: str = "") -> str:
    """The size paragraph of notebook ``name``: how to set its size, and its saved size."""
    full, saved = FULL_N[name], SAVED_N[name]
    below = "" if saved == full else f" (below the full size {full}, to bound the build's time)"
    return SIZE_NOTE.format(full=full, extra=extra, saved=saved, below=below)


# ----------------------------------------------------------------------------- 01
QUICKSTART: list[Cell] = [
    ("md", """# Quickstart: Data-driven Circuit Discovery on a toy model

The embedded model `toy-two-task` is a two-layer attention-only transformer trained on two
tasks that it solves with different heads: an IOI-like task (complete the name that was not
repeated) and induction (complete the token that followed the query's earlier occurrence).
Its `mixed` dataset holds both tasks; each prompt carries its task as a `group` label.

The usual workflow finds **one** circuit for the whole dataset. DCD instead

1. scores every example separately (one edge-attribution row per example),
2. clusters the examples by those rows, without looking at the labels,
3. finds one circuit per cluster,
4. and measures every circuit's faithfulness against the single circuit.

Because the two mechanisms were planted, we know what DCD should recover: clusters that
match the tasks, and per-cluster circuits that beat the single circuit at small sizes.

""" + size_note("01_quickstart_toy.ipynb",
                        extra=" (the toy dataset has 320 prompts; the default "
                        "already uses all of them because the model is tiny)")),
    ("code", """import os
import time

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display

import auto_circuit_dcd as dcd
from auto_circuit_dcd.toy import toy_dataset_path

torch.set_num_threads(1)
t_start = time.perf_counter()

# parameters
N = int(os.environ.get("DCD_NB_N", 320))          # prompts read from the mixed dataset
FRACTIONS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0]  # circuit sizes (share of edges)
P = 0.05                                           # size at which circuits are compared
SEED = 42"""),
    ("md", """## 1. Model and data

`dcd.prepare` wraps the model for auto-circuit and loads the dataset into train and test
loaders. The prompts carry their own `split` field, so the split is the dataset's."""),
    ("code", """model = dcd.load_model("toy-two-task")
pm, train, test = dcd.prepare(model, toy_dataset_path("mixed"), n=N, batch_size=32, seed=SEED)
print(f"{pm.n_edges} edges; {len(train.examples)} train / {len(test.examples)} test examples")
print(pd.Series(train.groups).value_counts().to_string())
for ex in train.examples[:2]:
    print(f"[{ex.group}] {pm.tokenizer.decode(ex.clean[1:])!r} -> "
          f"{pm.tokenizer.decode(ex.answers)!r} (corrupt: {pm.tokenizer.decode(ex.corrupt[1:])!r})")"""),
    ("md", """## 2. Per-example attribution

`dcd.attribute` gives an `AttributionMatrix`: one EAP row per example over all edges, with
the edge names beside the numbers. Sorting the rows by task already shows two patterns:
the two tasks use different edges."""),
    ("fig", """A = dcd.attribute(pm, train, method="eap", progress=False)
A_test = dcd.attribute(pm, test, method="eap", progress=False)
print(A)

order = np.argsort(np.asarray(A.groups), kind="stable")
fig = px.imshow(A.to_numpy()[order], aspect="auto", color_continuous_scale="RdBu",
                color_continuous_midpoint=0.0,
                labels={"x": "edge", "y": "example (sorted by task)", "color": "score"},
                title="Per-example edge attributions, rows sorted by task")
fig.show()"""),
    ("md", """## 3. Baseline: one circuit for the whole dataset

For EAP, the circuit of a set of examples is the mean of their rows; the single baseline
takes the mean over every training example."""),
    ("code", """single = dcd.single_circuit(A)[0]  # a dcd.Circuit: scores with edge names and graph
top = single.top(8)                  # its 8 edges of largest |score|
pd.DataFrame({"edge": top.edges, "score": top.scores[top.mask].tolist()}).sort_values(
    "score", key=abs, ascending=False)"""),
    ("md", """## 4. DCD: cluster the examples, one circuit per cluster

`GroupedDiscovery` reduces the rows (truncated SVD), tries agglomerative, divisive and
k-means clustering for each k, and chooses k from silhouette, elbow and gap statistic. It
never sees the task labels; we use them only afterwards, to score the clusters (adjusted
Rand index, ARI: 1 = the clusters are the tasks, 0 = chance). `cluster_circuits` then gives
one circuit per cluster: for EAP, the mean of the cluster's rows."""),
    ("code", """gd = dcd.GroupedDiscovery(clusterer="auto", max_clusters=8, random_state=SEED).fit(A)
clusters = dcd.cluster_circuits(A, gd.labels_)  # {cluster label: Circuit}
quality = dcd.cluster_quality(A.groups, gd.labels_)
print(f"method {gd.method_}, k = {gd.n_clusters_}, sizes {gd.cluster_sizes_}")
print(f"ARI {quality.ari:.3f}, NMI {quality.nmi:.3f}, purity {quality.purity:.3f}")
pd.crosstab(pd.Series(gd.labels_, name="cluster"), pd.Series(A.groups, name="task"))"""),
    ("fig", """emb = gd.embedding_
fig = px.scatter(x=emb[:, 0], y=emb[:, 1], color=[str(g) for g in A.groups],
                 symbol=[f"cluster {c}" for c in gd.labels_],
                 labels={"x": "component 1", "y": "component 2", "color": "task"},
                 title="Training examples in the reduced space: colour = task, symbol = cluster")
fig.show()"""),
    ("md", """## 5. Route the test examples and measure faithfulness

Test examples are assigned to a cluster by `predict` on their own attribution rows.
Faithfulness f(C) is the share of the model's metric (correct minus best wrong logit) that
a circuit keeps when every other edge is patched with its activation on the corrupted
prompt. Four curves:

- **single**: the one baseline circuit;
- **DCD routed**: each test example uses the circuit of the cluster it was routed to (the
  honest number: it needs only the example's attribution row);
- **DCD oracle**: per example the best cluster circuit (the method's definition; an upper
  bound that flatters many clusters);
- **K-random oracle**: the same number of circuits from a random split of the training set,
  with the same oracle: what the oracle gives without any structure."""),
    ("fig", """route = gd.predict(A_test)
routing = dict(zip(A_test.example_ids, route.tolist()))
k_random = dcd.k_random_circuits(A, gd.n_clusters_, random_state=SEED)
circuits = {"single": single}
circuits.update({f"cluster {c}": circuit for c, circuit in clusters.items()})
circuits.update({f"random {c}": circuit for c, circuit in k_random.items()})
results = dcd.evaluate_circuits(pm, test, circuits, sorted(set(FRACTIONS) | {P}))

dcd_multi = dcd.combine_circuits({c: results[f"cluster {c}"] for c in clusters},
                                 routing=routing)
rnd_multi = dcd.combine_circuits({c: results[f"random {c}"] for c in k_random})
fr = results["single"].fractions
curves = {"single": results["single"].f, "DCD routed": dcd_multi.routed_f,
          "DCD oracle": dcd_multi.oracle_f, "K-random oracle": rnd_multi.oracle_f}
fig = go.Figure([go.Scatter(x=fr * 100, y=f, mode="lines+markers", name=name)
                 for name, f in curves.items()])
fig.update_layout(title="Faithfulness on the test split", xaxis_title="edges kept (%)",
                  yaxis_title="faithfulness", xaxis_type="log")
fig.show()
curve_table = pd.DataFrame({**{"edges": results["single"].achieved_counts}, **curves},
                           index=pd.Index(fr, name="fraction")).round(3)
curve_table"""),
    ("md", """## 6. Cross-faithfulness and edge overlap

Each cluster's circuit on the test examples of each task (known labels), at p = 5%, next
to the circuits found on each task alone (the supervised reference). Rows are circuits,
columns test sets: a circuit of a distinct mechanism is faithful on its own task and not
on the other."""),
    ("fig", """tasks = sorted(set(test.groups))
test_by_task = {t: test.subset([i for i, g in zip(test.example_ids, test.groups) if g == t])
                for t in tasks}
groups = np.asarray(A.groups)
cross_circuits = {f"task {t}": dcd.Circuit.from_matrix(A, rows=np.flatnonzero(groups == t))
                  for t in tasks}
cross_circuits["single"] = single
cross_circuits.update({f"cluster {c}": circuit for c, circuit in clusters.items()})
cross = dcd.cross_faithfulness(pm, cross_circuits, test_by_task, p=P)
cross_df = pd.DataFrame(cross.matrix, index=cross.row_labels, columns=cross.col_labels)
fig = px.imshow(cross_df.round(2), text_auto=True, color_continuous_scale="Viridis",
                labels={"x": "test set", "y": "circuit", "color": "f"},
                title=f"Cross-faithfulness at p = {P:.0%}")
fig.show()

overlap = dcd.overlap_matrix(cross_circuits, k=int(P * pm.n_edges))
overlap_df = pd.DataFrame(overlap.matrix, index=overlap.labels, columns=overlap.labels)
px.imshow(overlap_df.round(2), text_auto=True, title=f"Top-{int(P * pm.n_edges)} edge IoU").show()"""),
    ("md", """## 7. The same as one command, and its typed report

`dcd.run(dcd.RunConfig(...))` is `auto-circuit-dcd run` from Python: it does all of the
above with the job's own defaults (its clusterer search, the `topn-fill` selection rule,
routing, K-random) and writes `report.json`, `report.html`, the circuits and the matrices
into `out`. It returns the report as typed records, `dcd.RunReport`: `report.dcd.clusters`,
`report.single.cpr`, `report.cross_faithfulness.matrix`, ... (missing values are NaN here
and `null` in the file). `dcd.RunFolder(out)` reads the folder back without the model: the
same report, the attribution matrices, and the circuits, with all their edges or with those
evaluated at one size."""),
    ("code", """import contextlib
import io
import tempfile
from pathlib import Path

from auto_circuit_dcd.report.summary import summary_table

out = Path(os.environ.get("DCD_NB_OUT") or tempfile.mkdtemp(prefix="dcd-nb01-")) / "run"
config = dcd.RunConfig(out=str(out), n=N, seed=SEED, edge_fractions=sorted(set(FRACTIONS) | {P}),
                       p_cross=P, stability_resamples=0, threads=1)
with contextlib.redirect_stdout(io.StringIO()):  # the job prints this summary and its path
    report = dcd.run(config, progress=False)
print(summary_table(report))
folder = dcd.RunFolder(out)
saved = folder.circuits(at=P)  # each circuit with the edges the run evaluated at P
print({name: c.size for name, c in saved.items()})
j = report.p_index
pd.DataFrame([{"cluster": c.label, "train size": c.size, "test examples": c.n_test,
               "composition": c.composition, f"own circuit, f at {P:.0%}": c.faithfulness_own[j],
               "single circuit": c.single_on_group[j]} for c in report.dcd.clusters]).round(3)"""),
    ("md", """## Conclusion

Computed from the results above."""),
    ("code", """i_p = int(np.flatnonzero(np.isclose(fr, P))[0])
majority = {c: quality.majority_label[c] for c in clusters}
own = [cross_df.loc[f"cluster {c}", majority[c]] for c in clusters]
other = [cross_df.loc[f"cluster {c}", t] for c in clusters for t in tasks if t != majority[c]]
summary = {
    "n_clusters": int(gd.n_clusters_), "ari": float(quality.ari), "purity": float(quality.purity),
    "p": P, "f_single": float(curves["single"][i_p]),
    "f_dcd_routed": float(curves["DCD routed"][i_p]),
    "f_dcd_oracle": float(curves["DCD oracle"][i_p]),
    "f_k_random_oracle": float(curves["K-random oracle"][i_p]),
    "cross": cross.to_dict(), "seconds": round(time.perf_counter() - t_start, 1),
    "run": {"n_clusters": report.n_clusters, "ari": report.cluster_quality.ari,
            "f_single": report.single.faithfulness[j],
            "f_dcd_routed": report.dcd.faithfulness_routed[j],
            "reloaded_equal": folder.report().to_dict() == report.to_dict(),
            "saved_sizes": {name: c.size for name, c in saved.items()},
            "evaluated_sizes": {name: counts[j] for name, counts in
                                report.achieved_edge_counts.items()}},
}
verdict = ("beats" if summary["f_dcd_routed"] > summary["f_single"] else "does not beat")
display(Markdown(f\"\"\"
- Without labels, DCD split the {A.n_examples} training examples into **{gd.n_clusters_}
  clusters** ({gd.method_}); against the hidden tasks ARI = **{quality.ari:.2f}**, purity
  {quality.purity:.2f}: {"the clusters follow the planted mechanisms" if quality.ari > 0.5
  else "the clusters do not follow the tasks"}.
- At p = {P:.0%} of edges ({int(results["single"].achieved_counts[i_p])} edges) the single
  circuit keeps f = {summary["f_single"]:.2f}; DCD with routing keeps
  f = {summary["f_dcd_routed"]:.2f} (oracle {summary["f_dcd_oracle"]:.2f}, K-random oracle
  {summary["f_k_random_oracle"]:.2f}): routed DCD **{verdict}** the single circuit.
- Cross-faithfulness: cluster circuits keep on average f = {np.mean(own):.2f} on their
  majority task and {np.mean(other) if other else float("nan"):.2f} on the other task.
\"\"\"))"""),
]

# ----------------------------------------------------------------------------- 02
VARIANTS: list[Cell] = [
    ("md", """# Dataset variations give different circuits (SmolLM2-135M, IOI)

Claim: minor, meaning-preserving variations of a task's dataset give circuits with low edge
overlap and low cross-faithfulness, so a circuit found on one dataset is specific to it.

We take four IOI variants, e.g. for the same story

| variant | prompt |
|---|---|
| ABBA | When Mary and John went to the store, John gave a drink to → Mary |
| BABA | When John and Mary went to the store, John gave a drink to → Mary |
| passive | ... a drink was given by John to → Mary |
| letter | names replaced by "Person A", "Person B" |

find one EAP circuit per variant, and compare them: edge overlap, and cross-faithfulness
(the circuit of variant i evaluated on the test set of variant j) at p = 5% of edges.

""" + size_note("02_dataset_variations_smollm2.ipynb",
                        extra="; `DCD_NB_FRACTIONS=0.01,0.05,0.2` adds "
                        "faithfulness curves")),
    ("code", """import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display

import auto_circuit_dcd as dcd

torch.set_num_threads(1)
t_start = time.perf_counter()

# parameters
N = int(os.environ.get("DCD_NB_N", 20))            # prompts per variant (60/20/20 split)
VARIANTS = ["ABBA", "BABA", "passive", "letter"]
P = 0.05                                           # circuit size compared (share of edges)
FRACTIONS = [float(x) for x in os.environ.get("DCD_NB_FRACTIONS", "").split(",") if x]
SEED = 42
OUT = Path(os.environ.get("DCD_NB_OUT") or tempfile.mkdtemp(prefix="dcd-nb02-"))"""),
    ("md", """## 1. Model and datasets

SmolLM2-135M-Instruct is loaded offline (converted once and cached). `dcd.make_dataset`
writes one auto-circuit JSON file with all variants; each prompt has its variant as
`group` and a train/val/test `split`."""),
    ("code", """pm = dcd.make_patchable(dcd.load_model("smollm2-135m"))
summary_ds = dcd.make_dataset(task="ioi", prompt_types=VARIANTS, tokenizer=pm.tokenizer,
                              n=N * len(VARIANTS), seed=SEED, out=OUT / "ioi_variants.json")
examples = dcd.load_examples(OUT / "ioi_variants.json", pm.tokenizer)
groups = [f"ioi/{v}" for v in VARIANTS]
train = [e for e in examples if e.split == "train"]
test = [e for e in examples if e.split == "test"]
print(f"{pm.n_edges} edges")
print(pd.DataFrame(summary_ds["counts"]).T.to_string())
for g in groups:
    ex = next(e for e in examples if e.group == g)
    print(f"{g:12s} {pm.tokenizer.decode(ex.clean[1:])!r} -> {pm.tokenizer.decode(ex.answers)!r}")"""),
    ("md", """## 2. One circuit per variant

One attribution pass over all training prompts (EAP, one row per example); the circuit of
a variant is the mean of its rows."""),
    ("code", """A = dcd.attribute(pm, dcd.make_loader(train, batch_size=16), method="eap", progress=False)
row_groups = np.asarray(A.groups)
circuits = {g: dcd.Circuit.from_matrix(A, rows=np.flatnonzero(row_groups == g)) for g in groups}
print(A)"""),
    ("md", """## 3. Edge overlap

Two measures: the Jaccard index of each circuit's top-k edges with k = 5% of the edges
(the circuits compared below), and of the edge sets holding 99% of each circuit's total
|score| (the method's definition, which keeps most edges of a model this size). As a noise
floor, the same top-k overlap between two halves of one variant's training prompts: with
few prompts per variant, part of the difference between variants is sampling noise."""),
    ("fig", """k = int(P * pm.n_edges)
ov_top = dcd.overlap_matrix(circuits, k=k)
ov_mass = dcd.overlap_matrix(circuits, gamma=0.99)
split_half = {}
for g in groups:
    rows = np.flatnonzero(row_groups == g)
    split_half[g] = dcd.top_k_iou(A.mean(rows[::2]), A.mean(rows[1::2]), k)
ov_df = pd.DataFrame(ov_top.matrix, index=groups, columns=groups)
fig = px.imshow(ov_df.round(2), text_auto=True, zmin=0, zmax=1,
                title=f"Top-{k} edge overlap (Jaccard) between variants' circuits")
fig.show()
print("99%-mass Jaccard:")
print(pd.DataFrame(ov_mass.matrix, index=groups, columns=groups).round(3).to_string())
print("split-half top-k overlap within a variant:",
      {g: round(v, 3) for g, v in split_half.items()})"""),
    ("md", """## 4. Cross-faithfulness at p = 5%

`matrix[i, j]` is the faithfulness of the circuit of variant i on the test prompts of
variant j. A dataset-specific circuit shows a bright diagonal and a dim off-diagonal."""),
    ("fig", """test_loaders = {g: dcd.make_loader([e for e in test if e.group == g], batch_size=16)
                for g in groups}
cross = dcd.cross_faithfulness(pm, circuits, test_loaders, p=P, edge_fractions=FRACTIONS or None)
cross_df = pd.DataFrame(cross.matrix, index=groups, columns=groups)
accuracy = {g: float(np.mean(cross.results[(groups[0], g)].mu_full > 0)) for g in groups}
fig = px.imshow(cross_df.round(2), text_auto=True, color_continuous_scale="Viridis",
                labels={"x": "test set", "y": "circuit of", "color": "f"},
                title=f"Cross-faithfulness at p = {P:.0%}")
fig.show()
print("model accuracy per test set:", {g: round(a, 2) for g, a in accuracy.items()})"""),
    ("code", """if len(cross.results[(groups[0], groups[0])].fractions) > 1:
    fig = go.Figure()
    for (row, col), res in cross.results.items():
        fig.add_trace(go.Scatter(x=res.fractions * 100, y=res.f, mode="lines+markers",
                                 name=f"{row} on {col}",
                                 line={"dash": "solid" if row == col else "dot"}))
    fig.update_layout(title="Faithfulness curves (solid: own variant)", xaxis_type="log",
                      xaxis_title="edges kept (%)", yaxis_title="faithfulness")
    fig.show()
else:
    print("one fraction evaluated; set DCD_NB_FRACTIONS for curves")"""),
    ("md", """## Conclusion

Computed from the results above."""),
    ("code", """m = cross.matrix
off = ~np.eye(len(groups), dtype=bool)
summary = {
    "n_train": A.n_examples, "n_test": len(test), "p": P, "k": k,
    "accuracy": accuracy, "cross": cross.to_dict(), "overlap_top_k": ov_top.to_dict(),
    "overlap_mass": ov_mass.to_dict(), "split_half_top_k": split_half,
    "top_k_edges": {g: np.argsort(-np.abs(circuits[g].scores.numpy()), kind="stable")[:k].tolist()
                    for g in groups},
    "diag_mean": float(np.mean(np.diag(m))), "off_diag_mean": float(np.mean(m[off])),
    "overlap_off_diag_mean": float(np.mean(ov_top.matrix[off])),
    "split_half_mean": float(np.mean(list(split_half.values()))),
    "seconds": round(time.perf_counter() - t_start, 1),
}
lowest = np.unravel_index(np.where(off, ov_top.matrix, np.inf).argmin(), m.shape)
display(Markdown(f\"\"\"
- {A.n_examples} training and {len(test)} test prompts ({N} per variant); model accuracy
  {min(accuracy.values()):.2f}-{max(accuracy.values()):.2f} across variants.
- Top-{k} edge overlap between variants: mean {summary["overlap_off_diag_mean"]:.2f}
  (lowest {ov_top.matrix[lowest]:.2f}, {groups[lowest[0]]} vs {groups[lowest[1]]}); between
  two halves of the same variant: {summary["split_half_mean"]:.2f}.
  {"Variants overlap less than halves of one variant." if summary["overlap_off_diag_mean"]
   < summary["split_half_mean"] else "Variants overlap as much as halves of one variant: "
   "at this size the difference is within sampling noise."}
- Cross-faithfulness at p = {P:.0%}: own variant (diagonal) f = {summary["diag_mean"]:.2f} on
  average, other variants f = {summary["off_diag_mean"]:.2f}.
  {"Circuits transfer worse than they fit their own variant." if summary["diag_mean"]
   > summary["off_diag_mean"] else "Circuits transfer as well as they fit their own variant."}
\"\"\"))"""),
]

# ----------------------------------------------------------------------------- 03
MIXTURE: list[Cell] = [
    ("md", """# One circuit for two tasks, and what DCD does with the mixture (SmolLM2-135M)

Claim: on a dataset that mixes two tasks whose separately found circuits do not transfer to
each other, one circuit found on the mixture can still be faithful on both: a single circuit
can merge distinct mechanisms. DCD should instead separate the tasks and give each group its
own circuit.

Tasks the model does well: IOI (mixed name orders) and sequence completion (2-gram
induction over repeated name sequences).

1. circuits found on each task alone, and their cross-faithfulness;
2. the single circuit of the mixture, on each task;
3. DCD on the mixture: clusters vs task labels, and each cluster's circuit vs the single
   circuit on the cluster's test examples.

""" + size_note("03_two_task_mixture_smollm2.ipynb")),
    ("code", """import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display

import auto_circuit_dcd as dcd

torch.set_num_threads(1)
t_start = time.perf_counter()

# parameters
N = int(os.environ.get("DCD_NB_N", 20))            # prompts per task (60/20/20 split)
COMPONENTS = ["ioi/mixed", "sequence/2-gram"]
P = 0.05                                           # circuit size compared (share of edges)
MAX_CLUSTERS = 6
SEED = 42
OUT = Path(os.environ.get("DCD_NB_OUT") or tempfile.mkdtemp(prefix="dcd-nb03-"))"""),
    ("md", "## 1. Model and the mixed dataset"),
    ("code", """pm = dcd.make_patchable(dcd.load_model("smollm2-135m"))
summary_ds = dcd.make_dataset(task="mixture", prompt_types=COMPONENTS, tokenizer=pm.tokenizer,
                              n=N * len(COMPONENTS), seed=SEED, out=OUT / "mixture.json")
examples = dcd.load_examples(OUT / "mixture.json", pm.tokenizer)
tasks = sorted({e.group for e in examples})
train = dcd.make_loader([e for e in examples if e.split == "train"], batch_size=16)
test = dcd.make_loader([e for e in examples if e.split == "test"], batch_size=16)
print(pd.DataFrame(summary_ds["counts"]).T.to_string())
for t in tasks:
    ex = next(e for e in examples if e.group == t)
    print(f"{t:16s} {pm.tokenizer.decode(ex.clean[1:])!r} -> {pm.tokenizer.decode(ex.answers)!r}")"""),
    ("md", """## 2. Attribution, task circuits and the single circuit

One EAP row per example, for train and test prompts (the test rows are used only to route
test examples to clusters). The circuit of a task is the mean of its rows; the single
circuit is the mean of all rows of the mixture."""),
    ("code", """A = dcd.attribute(pm, train, method="eap", progress=False)
A_test = dcd.attribute(pm, test, method="eap", progress=False)
row_groups = np.asarray(A.groups)
circuits = {f"{t} alone": dcd.Circuit.from_matrix(A, rows=np.flatnonzero(row_groups == t))
            for t in tasks}
circuits["single (mixture)"] = dcd.single_circuit(A)[0]
print(A)"""),
    ("md", """## 3. DCD on the mixture

`GroupedDiscovery` clusters the training rows without the labels. Per-example rows differ a
lot in overall magnitude (their metric values differ), and with raw rows a single far example
can take a cluster of its own, or make the data look like one blob. The `binary`
preprocessing compares which edges carry 99% of each example's attribution mass (Jaccard
distance), not how much: we fit both, show them, and keep `binary` for the circuits. The
labels are used only to score the clusters (ARI), never to fit or choose them.

Test examples are then routed to a cluster by `predict`. The cluster circuits join the
others so that one evaluation pass measures everything."""),
    ("fig", """fits = {prep: dcd.GroupedDiscovery(clusterer="auto", preprocessing=prep,
                                  max_clusters=MAX_CLUSTERS, random_state=SEED).fit(A)
        for prep in ["raw", "binary"]}
print(pd.DataFrame([{"preprocessing": prep, "method": g.method_, "k": g.n_clusters_,
                     "sizes": list(g.cluster_sizes_.values()),
                     "ARI vs tasks": round(dcd.cluster_quality(list(A.groups), g.labels_).ari, 3)}
                    for prep, g in fits.items()]).to_string(index=False))
gd = fits["binary"]
quality = dcd.cluster_quality(list(A.groups), gd.labels_)
routing = dict(zip(A_test.example_ids, gd.predict(A_test).tolist()))
clusters = dcd.cluster_circuits(A, gd.labels_)  # {cluster label: Circuit}
circuits.update({f"cluster {c}": circuit for c, circuit in clusters.items()})
emb = gd.embedding_
px.scatter(x=emb[:, 0], y=emb[:, 1], color=list(A.groups),
           symbol=[f"cluster {c}" for c in gd.labels_],
           labels={"x": "component 1", "y": "component 2", "color": "task"},
           title="Training examples: colour = task, symbol = cluster").show()
pd.crosstab(pd.Series(gd.labels_, name="cluster"), pd.Series(A.groups, name="task"))"""),
    ("md", """## 4. What each cluster is

`describe_clusters` says what sets the clusters apart, from what we already have (the
attribution rows, the fitted clustering, the prompts and the cluster circuits), without
running the model: each cluster's typical prompts (nearest its centre) and ambiguous ones
(nearest another cluster), the dataset's per-prompt fields and features derived from the
tokens against the clusters (Cramér's V, a chi-square or Kruskal-Wallis test, q-values over
the fields), the heads, MLPs and edges with more attribution in a cluster than in the other
(Cohen's d, a permutation test with false discovery rate control over all edges), and the two
clusters' circuits compared at p = 5%. `describe_in_words` says it in one sentence per
cluster. The clusters were found from the same attribution rows, so edges that separate them
are expected; the fields were not used to cluster."""),
    ("code", """from auto_circuit_dcd.evaluation.faithfulness import edge_count
from auto_circuit_dcd.explain import describe_in_words

desc = dcd.describe_clusters(A, gd, train, dataset=OUT / "mixture.json",
                             tokenizer=pm.tokenizer, circuits=clusters,
                             size=edge_count(P, A.n_edges), random_state=SEED)
for sentence in describe_in_words(desc):
    print(sentence)
print()
print(pd.DataFrame([{"field": f.field, "source": f.source, "Cramér's V": round(f.cramers_v, 3),
                     "AMI": round(f.adjusted_mutual_info, 3), "test": f.test,
                     "q-value": f"{f.q_value:.2g}", "associated": f.associated}
                    for f in desc.fields]).to_string(index=False))
print("not tested:", desc.skipped_fields)"""),
    ("code", """def units(table, n=5):
    \"\"\"The ``n`` units most clearly higher in a cluster than elsewhere, as a table.\"\"\"
    return pd.DataFrame([{"unit": u.name, "Cohen's d": round(u.effect_size, 2),
                          "mean here": round(u.mean_a, 4), "mean elsewhere": round(u.mean_b, 4),
                          "q-value": f"{u.q_value:.2g}"} for u in table.higher[:n]])


against_rest = {t.cluster: t for t in desc.contrasts if t.other is None}
for ex in desc.exemplars:
    print(f"cluster {ex.cluster} ({ex.size} training prompts)")
    for kind, items in (("typical", ex.typical), ("ambiguous", ex.ambiguous[:1])):
        for e in items:
            print(f"  {kind:9s} {e.clean!r} -> {e.answers[0]!r} "
                  f"(margin {e.margin:.3f} to cluster {e.other_cluster})")
    contrast = against_rest.get(ex.cluster)
    if contrast is not None:
        print(f"  nodes higher here: {contrast.nodes.n_higher} of {contrast.nodes.n_tested}; "
              f"edges: {contrast.edges.n_higher} of {contrast.edges.n_tested} (q <= 0.05)")
        print(units(contrast.nodes).to_string(index=False))
    print()
for d in desc.circuit_differences:
    print(f"circuits of clusters {d.a} and {d.b} at {d.size} edges ({d.selection}): "
          f"{d.n_only_a} only in {d.a}'s, {d.n_only_b} only in {d.b}'s, {d.n_shared} shared "
          f"(Jaccard {d.jaccard:.2f})")"""),
    ("md", """## 5. Cross-faithfulness at p = 5%

Rows: circuits (each task alone, the single circuit of the mixture, the DCD clusters);
columns: each task's test prompts."""),
    ("fig", """ids_of = {t: [i for i, g in zip(test.example_ids, test.groups) if g == t] for t in tasks}
cross = dcd.cross_faithfulness(pm, circuits, {t: test.subset(ids_of[t]) for t in tasks}, p=P)
cross_df = pd.DataFrame(cross.matrix, index=cross.row_labels, columns=cross.col_labels)
accuracy = {t: float(np.mean(cross.results[(cross.row_labels[0], t)].mu_full > 0)) for t in tasks}
px.imshow(cross_df.round(2), text_auto=True, color_continuous_scale="Viridis",
          labels={"x": "test set", "y": "circuit", "color": "f"},
          title=f"Cross-faithfulness at p = {P:.0%}").show()
print("model accuracy per task:", {t: round(a, 2) for t, a in accuracy.items()})"""),
    ("md", """## 6. Each cluster's circuit vs the single circuit on the cluster's test examples

The test examples routed to a cluster form its test group. Faithfulness on a group is the
ratio of means over that group's per-example values, which the cross-faithfulness run has
already computed for every circuit and test example."""),
    ("fig", """def f_on(circuit: str, ids) -> float:
    \"\"\"Faithfulness at P of one circuit on the test examples ``ids`` (ratio of means).\"\"\"
    ids = {str(i) for i in ids}
    mu_c, mu_full, mu_empty = [], [], []
    for t in tasks:
        res = cross.results[(circuit, t)]
        rows = [j for j, i in enumerate(res.example_ids) if str(i) in ids]
        j_p = int(np.flatnonzero(np.isclose(res.fractions, P))[0])
        mu_c += res.mu_circuit[rows, j_p].tolist()
        mu_full += res.mu_full[rows].tolist()
        mu_empty += res.mu_empty[rows].tolist()
    if not mu_c:
        return float("nan")
    return (np.mean(mu_c) - np.mean(mu_empty)) / (np.mean(mu_full) - np.mean(mu_empty))


per_cluster = []
for c in clusters:
    ids = [i for i, r in routing.items() if r == c]
    per_cluster.append({"cluster": c, "train size": gd.cluster_sizes_[c], "test size": len(ids),
                        "majority task": quality.majority_label[c],
                        "f own circuit": f_on(f"cluster {c}", ids),
                        "f single circuit": f_on("single (mixture)", ids)})
per_cluster = pd.DataFrame(per_cluster).set_index("cluster")
fig = go.Figure([go.Bar(name=col, x=[f"cluster {c}" for c in per_cluster.index],
                        y=per_cluster[col]) for col in ["f own circuit", "f single circuit"]])
fig.update_layout(barmode="group", title=f"Faithfulness on each cluster's test group, p = {P:.0%}",
                  yaxis_title="faithfulness")
fig.show()
per_cluster.round(3)"""),
    ("md", """## Conclusion

Computed from the results above."""),
    ("code", """alone = [f"{t} alone" for t in tasks]
own_task = [cross_df.loc[f"{t} alone", t] for t in tasks]
other_task = [cross_df.loc[f"{a} alone", b] for a in tasks for b in tasks if a != b]
single_f = {t: float(cross_df.loc["single (mixture)", t]) for t in tasks}
tested = per_cluster.dropna(subset=["f own circuit"])
wins = int((tested["f own circuit"] > tested["f single circuit"]).sum())
summary = {
    "n_train": A.n_examples, "n_test": A_test.n_examples, "p": P, "accuracy": accuracy,
    "cross": cross.to_dict(), "single_on_task": single_f,
    "task_alone_own": float(np.mean(own_task)), "task_alone_other": float(np.mean(other_task)),
    "n_clusters": int(gd.n_clusters_), "ari": float(quality.ari), "purity": float(quality.purity),
    "ari_raw": float(dcd.cluster_quality(list(A.groups), fits["raw"].labels_).ari),
    "per_cluster": per_cluster.reset_index().to_dict(orient="records"),
    "clusters_beating_single": wins,
    "described": {"words": describe_in_words(desc),
                  "fields": [(f.field, f.cramers_v, f.q_value, f.associated)
                             for f in desc.fields],
                  "top_nodes": {c: [u.name for u in t.nodes.higher[:3]]
                                for c, t in against_rest.items()},
                  "majority_task": {c: quality.majority_label[c] for c in desc.clusters}},
    "seconds": round(time.perf_counter() - t_start, 1),
}
first = desc.fields[0] if desc.fields else None
follows = ("no per-prompt field was tested" if first is None else
           f"the field that follows them most closely is `{first.field}` (Cramér's V "
           f"{first.cramers_v:.2f}, {'associated' if first.associated else 'not associated'})")
top_nodes = "; ".join(f"cluster {c}: " + ", ".join(names)
                      for c, names in summary["described"]["top_nodes"].items())
display(Markdown(f\"\"\"
- Task circuits found alone keep f = {np.mean(own_task):.2f} on their own task and
  f = {np.mean(other_task):.2f} on the other task (p = {P:.0%}).
- The single circuit of the mixture keeps {", ".join(f"f = {v:.2f} on {t}" for t, v in
  single_f.items())}: {"faithful on both tasks" if min(single_f.values()) >
  max(other_task) else "not faithful on both tasks"} compared with the task circuits'
  transfer ({max(other_task):.2f} at best).
- DCD (binary preprocessing) found **{gd.n_clusters_} clusters** ({gd.method_}); ARI
  against the tasks **{quality.ari:.2f}**, purity {quality.purity:.2f} (raw rows:
  k = {fits["raw"].n_clusters_}, ARI {summary["ari_raw"]:.2f}).
- On the test examples routed to it, the cluster's own circuit beats the single circuit in
  {wins} of {len(tested)} clusters with test examples.
- What the clusters are, without the labels (`describe_clusters`): {follows}; the nodes
  most clearly higher in each cluster than in the other: {top_nodes or "none"}.
\"\"\"))"""),
]

# ----------------------------------------------------------------------------- 04
INSIDE: list[Cell] = [
    ("md", """# DCD inside auto-circuit's own experiment loop

`dcd.register()` adds this package's prune algorithms, metrics and tasks to auto-circuit's
`PRUNE_ALGO_DICT`, `PRUNE_METRIC_DICT` and `TASK_DICT`. Then auto-circuit's usual loop
(`run_prune_algos` → `measure_prune_metrics` → `measurement_figs`) runs them next to its own
algorithms, here auto-circuit's Edge Attribution Patching (EAP).

The registered DCD algorithm clusters the task's training examples and returns the circuit
of the **largest cluster**: on a dataset that mixes mechanisms, that is a circuit for the
majority mechanism, not for the whole dataset. We show this on the embedded toy model
(two planted mechanisms), with the circuits found on the mixture evaluated on the mixture
and on each task's test prompts. The registered SmolLM2 tasks (e.g. `"DCD IOI ABBA"`) work
the same way, at a much higher cost for auto-circuit's own EAP.

""" + size_note("04_inside_auto_circuit.ipynb",
                        extra=" (the toy dataset has 320 prompts)")),
    ("code", """import os
import time
from dataclasses import dataclass

import pandas as pd
import torch
from IPython.display import Markdown, display

import auto_circuit_dcd as dcd
from auto_circuit_dcd import keys
from auto_circuit_dcd.toy import toy_dataset_path
from auto_circuit.metrics.prune_metrics.measure_prune_metrics import (measure_prune_metrics,
                                                                      measurement_figs)
from auto_circuit.metrics.prune_metrics.prune_metrics import PRUNE_METRIC_DICT
from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT, run_prune_algos
from auto_circuit.tasks import TASK_DICT, Task
from auto_circuit.types import AblationType, PatchType

torch.set_num_threads(1)
t_start = time.perf_counter()

# parameters
N = int(os.environ.get("DCD_NB_N", 320))           # prompts read from the mixed dataset
SEED = 42"""),
    ("md", """## 1. Register

`register()` is explicit and idempotent; it returns the keys it added."""),
    ("code", """added = dcd.register()
for registry, names in added.items():
    print(f"{registry}: {names}")"""),
    ("md", """## 2. Tasks from loaders

auto-circuit's `Task` loads its model and a JSON file from its own source tree. A task over
loaders we already have is a small subclass whose `init_task` sets the model and the
loaders. The three tasks share the toy model and the mixture's training loader; their test
loaders are the mixture's test split, and its IOI and induction parts."""),
    ("code", """@dataclass
class LoaderTask(Task):
    \"\"\"An auto-circuit Task over a given PatchableModel and train/test loaders.\"\"\"

    loaders: tuple = ()

    def init_task(self) -> None:
        self._model, self._train_loader, self._test_loader = self.loaders
        self._true_edges = None
        self.device = next(self._model.parameters()).device
        self.__init_complete__ = True


pm, train, test = dcd.prepare(dcd.load_model("toy-two-task"), toy_dataset_path("mixed"),
                              n=N, batch_size=32, seed=SEED)
parts = {"mixed": test.example_ids}
for g in sorted(set(test.groups)):
    parts[g] = [i for i, gg in zip(test.example_ids, test.groups) if gg == g]
tasks = {}
for name, ids in parts.items():
    key = f"Toy {name}"
    tasks[name] = LoaderTask(key=key, name=key, batch_size=32, batch_count=1,
                             token_circuit=False, _model_def=pm, _dataset_name="",
                             loaders=(pm, train, test.subset(ids)))
    TASK_DICT[key] = tasks[name]
print({name: len(ids) for name, ids in parts.items()}, f"test examples; {pm.n_edges} edges")"""),
    ("md", """## 3. Prune scores: auto-circuit's EAP and the registered DCD algorithms

`run_prune_algos` calls each algorithm on the mixture's training loader."""),
    ("code", """algo_keys = ["Edge Attribution Patching", keys.ALGO_LARGEST_CLUSTER_EAP,
             keys.ALGO_LARGEST_CLUSTER_EAP_IG]
algos = [PRUNE_ALGO_DICT[k] for k in algo_keys]
task_prune_scores = run_prune_algos([tasks["mixed"]], algos)
# the circuits found on the mixture, evaluated on every test set
task_prune_scores = {t.key: task_prune_scores[tasks["mixed"].key] for t in tasks.values()}"""),
    ("md", """## 4. Measure with auto-circuit, using a registered DCD metric

Faithfulness (DCD's ratio of means, correct minus best wrong logit) next to auto-circuit's
own logit-difference percentage, with resample ablation and tree patching (the method's
setting), at a range of circuit sizes."""),
    ("fig", """edge_counts = sorted({1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, pm.n_edges})
metric_keys = [keys.METRIC_FAITHFULNESS_MAX_DIFF, "Logit Diff Percent"]
measurements = measure_prune_metrics(
    [AblationType.RESAMPLE], [PRUNE_METRIC_DICT[k] for k in metric_keys], task_prune_scores,
    PatchType.TREE_PATCH, test_edge_counts=edge_counts)
for fig in measurement_figs(measurements):
    fig.show()"""),
    ("code", """faith = measurements[AblationType.RESAMPLE][keys.METRIC_FAITHFULNESS_MAX_DIFF]
rows = []
for name, task in tasks.items():
    for algo in algos:
        for count, f in faith[task.key][algo.key]:
            rows.append({"test set": name, "algorithm": algo.short_name, "edges": count, "f": f})
table = pd.DataFrame(rows).pivot_table(index="edges", columns=["test set", "algorithm"],
                                       values="f")
table.round(3)"""),
    ("md", """## 5. Check: the registered metric agrees with `dcd.evaluate_circuits`

The same circuits measured by this package's own evaluation (which patches with its own
masks and computes the empty circuit directly) must give the same numbers."""),
    ("code", """ps_eap = task_prune_scores[tasks["mixed"].key]["Edge Attribution Patching"]
fractions = [c / pm.n_edges for c in edge_counts]
direct = dcd.evaluate_circuits(pm, tasks["mixed"].test_loader, {"eap": ps_eap}, fractions)["eap"]
via_auto_circuit = dict(faith[tasks["mixed"].key]["Edge Attribution Patching"])
same_counts = [i for i, c in enumerate(direct.achieved_counts) if int(c) in via_auto_circuit]
max_diff = max(abs(direct.f[i] - via_auto_circuit[int(direct.achieved_counts[i])])
               for i in same_counts)
print(f"largest difference over {len(same_counts)} circuit sizes: {max_diff:.2e}")"""),
    ("md", """## Conclusion

Computed from the measurements above."""),
    ("code", """def f_at(task: str, algo_key: str, count: int) -> float:
    return dict(faith[tasks[task].key][algo_key])[count]


small = 4 if 4 in edge_counts else edge_counts[1]
names = {a.key: a.short_name for a in algos}
at_small = {t: {names[a.key]: f_at(t, a.key, small) for a in algos} for t in tasks}
eap = "Edge Attribution Patching"
dcd_algos = [a.key for a in algos if a.key != eap]
single_tasks = [t for t in tasks if t != "mixed"]
best_task = {names[k]: max(single_tasks, key=lambda t: f_at(t, k, small)) for k in dcd_algos}
summary = {"edge_counts": edge_counts, "at_small": at_small, "small": small,
           "metric_check_max_diff": float(max_diff), "best_task_for_dcd": best_task,
           "seconds": round(time.perf_counter() - t_start, 1)}
lines = [f"- auto-circuit ran the registered DCD algorithms and metric like its own; the "
         f"registered faithfulness agrees with `dcd.evaluate_circuits` to {max_diff:.1e}.",
         f"- With {small} of {pm.n_edges} edges, auto-circuit's EAP (one circuit for the "
         f"mixture) keeps " + ", ".join(f"f = {f_at(t, eap, small):.2f} on {t}" for t in tasks) + "."]
for k in dcd_algos:
    best = best_task[names[k]]
    others = ", ".join(f"f = {f_at(t, k, small):.2f} on {t}" for t in tasks if t != best)
    lines.append(f"- {names[k]}: its largest cluster is a circuit for **{best}** "
                 f"(f = {f_at(best, k, small):.2f} there vs EAP's {f_at(best, eap, small):.2f}; "
                 f"{others}).")
lines.append("- The registered algorithm gives auto-circuit one cluster's circuit; covering the "
             "whole mixture takes one circuit per cluster (`GroupedDiscovery`, notebook 1).")
display(Markdown("\\n".join(lines)))"""),
]

NOTEBOOKS: dict[str, list[Cell]] = {
    "01_quickstart_toy.ipynb": QUICKSTART,
    "02_dataset_variations_smollm2.ipynb": VARIANTS,
    "03_two_task_mixture_smollm2.ipynb": MIXTURE,
    "04_inside_auto_circuit.ipynb": INSIDE,
}


def build(cells: list[Cell]) -> nbformat.NotebookNode:
    """A notebook without outputs from ``(kind, source)`` cells, for the python3 kernel."""
    def cell(kind: str, src: str) -> nbformat.NotebookNode:
        if kind == "md":
            return new_markdown_cell(src)
        return new_code_cell(src, metadata={"tags": [FIGURE_TAG]} if kind == "fig" else {})

    nb = new_notebook(cells=[cell(kind, src) for kind, src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:02d}"
    return nb


# ----------------------------------------------------------------------------- execution
PLOTLY_MIME = "application/vnd.plotly.v1+json"
# Kernel environment of ``--execute``: offline, one thread, no progress bars; plotly figures
# as their JSON (interactive in JupyterLab and VS Code); the PNG beside each is added here.
EXECUTE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    "PLOTLY_RENDERER": "plotly_mimetype",
}


@contextmanager
def _kernel_env(n: int) -> Iterator[None]:
    """Set the kernel's environment (and a ``python3`` kernelspec running this interpreter)."""
    with tempfile.TemporaryDirectory(prefix="dcd-nb-build-") as tmp:
        spec_dir = Path(tmp, "jupyter", "kernels", "python3")
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python"}))
        Path(tmp, "out").mkdir()
        env = {**EXECUTE_ENV, "JUPYTER_PATH": str(Path(tmp, "jupyter")), "DCD_NB_N": str(n),
               "DCD_NB_OUT": str(Path(tmp, "out"))}
        saved = {k: os.environ.get(k) for k in [*env, "DCD_NB_FRACTIONS"]}
        os.environ.update(env)
        os.environ.pop("DCD_NB_FRACTIONS", None)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _png_renderer() -> Callable[[dict], bytes]:
    """Figure JSON -> PNG bytes, offline: kaleido 0.2.1 with the plotly.js of the installed
    plotly (plotly 6+'s own ``to_image`` needs kaleido >= 1 and a Chrome; kaleido 0.2.1
    bundles its Chromium but loads plotly.js from a CDN unless given a file)."""
    import plotly
    from kaleido.scopes.plotly import PlotlyScope

    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    scope = PlotlyScope(plotlyjs=str(plotly_js), mathjax=False)

    def render(figure: dict) -> bytes:
        fig = {"data": figure.get("data", []), "layout": figure.get("layout", {})}
        return scope.transform(fig, format="png")

    return render


def finish_outputs(nb: nbformat.NotebookNode, render: Callable[[dict], bytes]) -> None:
    """Make executed outputs fit to save: a PNG beside every plotly figure's JSON, no stderr."""
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        c.outputs = [o for o in c.outputs
                     if not (o.output_type == "stream" and o.get("name") == "stderr")]
        for o in c.outputs:
            data = o.get("data", {})
            if PLOTLY_MIME in data:
                data["image/png"] = base64.b64encode(render(data[PLOTLY_MIME])).decode("ascii")
        c.metadata.pop("execution", None)


def execute(names: list[str] | None = None, timeout_s: int = 7200) -> None:
    """Build, execute at ``SAVED_N`` and write the notebooks ``names`` (default: all)."""
    from nbclient import NotebookClient

    render = _png_renderer()
    for name in names or list(NOTEBOOKS):
        nb = build(NOTEBOOKS[name])
        metadata = copy.deepcopy(nb.metadata)
        with _kernel_env(SAVED_N[name]):
            client = NotebookClient(nb, kernel_name="python3", timeout=timeout_s,
                                    record_timing=False,
                                    resources={"metadata": {"path": str(HERE)}})
            t0 = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - t0
        finish_outputs(nb, render)
        nb.metadata = metadata  # no kernel or interpreter versions: only outputs change
        nb.metadata["auto_circuit_dcd"] = {"DCD_NB_N": SAVED_N[name]}
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        size = (HERE / name).stat().st_size
        print(f"executed {name} at DCD_NB_N={SAVED_N[name]} in {seconds:.0f} s; {size} bytes")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", nargs="*", metavar="PREFIX", default=None,
                        help="also execute the notebooks (all, or those whose file name starts "
                             "with a PREFIX, e.g. 02) at their saved size and save the outputs")
    args = parser.parse_args(argv)
    if args.execute is None:
        for name, cells in NOTEBOOKS.items():
            nb = build(cells)
            nbformat.validate(nb)
            nbformat.write(nb, HERE / name)
            print(f"wrote {name}")
        return
    names = [n for n in NOTEBOOKS if not args.execute or any(n.startswith(p) for p in args.execute)]
    if not names:
        parser.error(f"no notebook starts with {args.execute}")
    execute(names)


if __name__ == "__main__":
    main()
