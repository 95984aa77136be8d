"""Cluster descriptions in sentences, one per cluster, generated from the records alone.

Per cluster: its size; for each associated field (at most ``n_fields``, strongest first)
its most frequent value there when that value is more frequent than over all prompts;
the nodes significantly higher in it than in the rest (at most ``n_nodes``, largest
effect size first); and its most typical prompt.
"""

from __future__ import annotations

from auto_circuit_dcd.explain.records import ClusterDescriptions

__all__ = ["describe_in_words"]


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def describe_in_words(desc: ClusterDescriptions, n_fields: int = 2,
                      n_nodes: int = 3) -> list[str]:
    """One sentence per cluster (see the module docstring), in cluster order."""
    total = sum(desc.sizes)
    associated = [f for f in desc.fields if f.associated][:n_fields]
    out = []
    for c, size, ex in zip(desc.clusters, desc.sizes, desc.exemplars):
        parts = [f"Cluster {c} ({size} of {total} prompts)"]
        shares = []
        for f in associated:
            t = next((t for t in f.typical if t.cluster == c), None)
            if t is not None and t.share > t.overall_share:
                shares.append(f"{f.field} = {t.category} for {t.count} of {t.n} "
                              f"({t.overall_share:.0%} of all)")
        parts.append("; ".join(shares) if shares else "no field value stands out")
        if len(desc.clusters) > 1:
            nodes = desc.contrast(c).nodes.higher[:n_nodes]
            parts.append("more attribution than elsewhere in " + ", ".join(
                f"{u.name} (d = {u.effect_size:.2f})" for u in nodes) if nodes else
                "no node significantly higher than elsewhere")
        if ex.typical:
            e = ex.typical[0]
            parts.append(f"typical prompt: {_clip(e.clean)!r} -> {e.answers[0]!r}"
                         if e.answers else f"typical prompt: {_clip(e.clean)!r}")
        out.append("; ".join([": ".join(parts[:2])] + parts[2:]) + ".")
    return out
