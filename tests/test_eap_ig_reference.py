"""EAP-IG rows against a textbook reference written independently of the package's passes.

The reference is EAP-IG on the input embeddings as MIB and the method define it, run the
slow, plain way: TransformerLens with auto-circuit's per-head flags on (every head's Q/K/V
input and output a hook point of its own), one forward + backward per step at the input
embeddings ``corrupt + alpha (clean - corrupt)`` (``alpha = k / steps``, ``k = 1..steps``),
the gradients at every destination hook averaged over the steps, then every edge scored
one by one as ``(clean - corrupt source output) . mean gradient``, summed over positions.
It shares nothing with the package but auto-circuit's edge list (for the column order) and
the metric's definition; the package stacks the steps, sums the destination gradients over
them before one contraction and (fast backend) pulls the Q/K/V gradients through the norm
in closed form.
"""

import pytest
import torch
from conftest import random_examples
from test_fast_attribution import patchable  # noqa: F401  (the nine architectures)

import auto_circuit_dcd as dcd
from auto_circuit_dcd.data import make_loader


def _mu(logits, example):
    """max_diff at the last position: mean correct logit - max wrong logit."""
    last = logits[0, -1]
    return last[example.answers].mean() - last[example.wrong_answers].max()


def reference_eap_ig(pm, example, steps: int) -> torch.Tensor:
    """One example's EAP-IG row, the slow way (see the module docstring)."""
    model = pm.wrapped_model
    edges = dcd.sorted_edges(pm)
    srcs = sorted({e.src.module_name for e in edges})
    dests = sorted({e.dest.module_name for e in edges})
    embed = "blocks.0.hook_resid_pre"

    def record(store):
        def hook(t, hook):
            store[hook.name] = t.detach().clone()
        return hook

    clean_acts, corrupt_acts = {}, {}
    with torch.no_grad():
        model.run_with_hooks(example.clean[None],
                             fwd_hooks=[(n, record(clean_acts)) for n in srcs])
        model.run_with_hooks(example.corrupt[None],
                             fwd_hooks=[(n, record(corrupt_acts)) for n in srcs])
    grads = dict.fromkeys(dests, 0.0)
    for k in range(1, steps + 1):
        alpha = k / steps
        kept = {}

        def interpolate(t, hook, alpha=alpha):
            x = corrupt_acts[embed] + alpha * (clean_acts[embed] - corrupt_acts[embed])
            return x.requires_grad_(True)

        def keep(t, hook):
            t.retain_grad()
            kept[hook.name] = t
            return t

        with torch.enable_grad():
            logits = model.run_with_hooks(
                example.clean[None],
                fwd_hooks=[(embed, interpolate)] + [(n, keep) for n in dests])
            _mu(logits, example).backward()
        for n in dests:
            grads[n] = grads[n] + kept[n].grad.detach() / steps

    def node(acts, name, head):
        a = acts[name][0]
        return a if head is None else a[:, head]  # [pos, d_model]

    row = torch.empty(len(edges), dtype=torch.float64)
    for i, e in enumerate(edges):
        diff = (node(clean_acts, e.src.module_name, e.src.head_idx)
                - node(corrupt_acts, e.src.module_name, e.src.head_idx))
        row[i] = float((diff.double() * node(grads, e.dest.module_name, e.dest.head_idx)
                        .double()).sum())
    return row


@pytest.mark.parametrize("backend", ["fast", "hooks"])
def test_eap_ig_rows_equal_the_textbook_reference(patchable, backend):
    """Every architecture, both backends, all steps in one stack and one step per stack."""
    examples = random_examples(4, lengths=(7, 9), seed=12)
    loader = make_loader(examples, batch_size=2)
    expected = torch.stack([reference_eap_ig(patchable, e, steps=5) for e in examples])
    assert expected.abs().max() > 1e-3  # a real signal
    for max_stack_gib in (None, 1e-9):  # 1e-9: every step its own stack
        A = dcd.attribute(patchable, loader, method="eap-ig", ig_steps=5, backend=backend,
                          progress=False, max_stack_gib=max_stack_gib)
        got = A.scores[[A.example_ids.index(e.id) for e in examples]].double()
        torch.testing.assert_close(got, expected, rtol=1e-4,
                                   atol=1e-5 * float(expected.abs().max()))


def test_eap_is_the_reference_with_one_step(tiny_pm):
    ex = random_examples(1, lengths=(8,), seed=13)[0]
    A = dcd.attribute(tiny_pm, make_loader([ex], 1), method="eap", progress=False)
    expected = reference_eap_ig(tiny_pm, ex, steps=1)
    torch.testing.assert_close(A.scores[0].double(), expected, rtol=1e-4,
                               atol=1e-5 * float(expected.abs().max()))
