"""The run's summary as plain text: what ``auto-circuit-dcd run`` prints when it ends.

One header line (model, method, split sizes, edges, k), cluster quality against the known
groups, a line per cluster (sizes, f at ``p`` of its own circuit and of the single circuit
on its routed test examples, composition), the headline numbers at ``p``, noise and
dropped examples when there are any, then CPR and CMD per circuit family. Numbers are
shown by the report's rule (:mod:`auto_circuit_dcd.report.values`: rounding noise as 0).
"""

from __future__ import annotations

from auto_circuit_dcd.report.records import RunReport

__all__ = ["summary_table"]


def summary_table(report: RunReport) -> str:
    """Plain text: clusters, sizes, composition, f at p for own vs single circuit, and
    CPR/CMD per circuit family (numbers shown by the report's rule, rounding noise as 0)."""
    from auto_circuit_dcd.report.values import fixed, score_rows

    def num(v: float) -> str:
        return fixed(v)

    fr, j = report.edge_fractions, report.p_index
    lines = [f"{report.model} | {report.method} | {report.n_train} train / "
             f"{report.n_test} test | {report.n_edges} edges | k = {report.n_clusters}"]
    q = report.cluster_quality
    if q is not None:
        lines.append(f"cluster quality vs known groups: ARI {num(q.ari)}, NMI {num(q.nmi)}")
    lines.append(f"{'cluster':>7} {'size':>5} {'test':>5}  {'f own':>7} {'f single':>8}  composition")
    for c in report.dcd.clusters:
        comp = ", ".join(f"{g}:{n}" for g, n in sorted(c.composition.items())) or "-"
        lines.append(f"{c.label:>7} {c.size:>5} {c.n_test:>5}  "
                     f"{num(c.faithfulness_own[j]):>7} {num(c.single_on_group[j]):>8}  {comp}")
    lines.append(f"at p = {fr[j]:g}: single {num(report.single.faithfulness[j])}, "
                 f"DCD routed {num(report.dcd.faithfulness_routed[j])}, "
                 f"DCD oracle {num(report.dcd.faithfulness_oracle[j])}")
    routing = report.routing
    if routing.n_test_noise:
        lines.append(f"{routing.n_test_noise} of {report.n_test} test examples routed to "
                     f"noise: DCD routed sends them to cluster {routing.noise_fallback}; "
                     f"without them {num(report.dcd.faithfulness_routed_excluding_noise[j])}")
    dropped = {split: len(ids) for split, ids in (("train", report.dropped_examples.train),
                                                  ("test", report.dropped_examples.test)) if ids}
    if dropped:
        lines.append("dropped (non-finite attribution rows): "
                     + ", ".join(f"{n} {split}" for split, n in dropped.items()))
    lines.append(f"over edge fractions {fr[0]:g} to {fr[-1]:g}: CPR (higher is better), "
                 "CMD (lower is better)")
    for name, cpr, cmd in score_rows(report):
        lines.append(f"  {name:<52} CPR {num(cpr):>6}   CMD {num(cmd):>6}")
    return "\n".join(lines)
