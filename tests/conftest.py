"""Shared test setup: one torch thread, offline hub, small fixtures."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from contextlib import contextmanager  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where no CUDA GPU is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


#: IOI prompts for the SmolLM2 tests (answers and wrong answers one token each)
SMOLLM2_IOI = [
    {"clean": "When Mary and John went to the store, John gave a drink to",
     "corrupt": "When Mary and John went to the store, Paul gave a drink to",
     "answers": [" Mary"], "wrong_answers": [" John"]},
    {"clean": "When Tom and Anna went to the park, Tom handed a ball to",
     "corrupt": "When Tom and Anna went to the park, Paul handed a ball to",
     "answers": [" Anna"], "wrong_answers": [" Tom"]},
    {"clean": "When Sarah and David went to the shop, David gave a book to",
     "corrupt": "When Sarah and David went to the shop, James gave a book to",
     "answers": [" Sarah"], "wrong_answers": [" David"]},
]


def failing_after(n: int, metric):
    """``metric`` that raises ``RuntimeError("boom")`` on its ``n``-th call; ``.calls``
    counts the calls (a fault in the middle of a run)."""
    def failing(logits, batch):
        failing.calls += 1
        if failing.calls == n:
            raise RuntimeError("boom")
        return metric(logits, batch)

    failing.calls = 0
    return failing


def reachable(start, step):
    """Nodes reached from ``start`` by depth-first search, ``step(u)`` giving u's neighbours."""
    seen, todo = {start}, [start]
    while todo:
        u = todo.pop()
        for v in step(u):
            if v not in seen:
                seen.add(v)
                todo.append(v)
    return seen


def random_examples(n: int, lengths=(6, 7), d_vocab: int = 50, seed: int = 0,
                    n_wrong: int = 2, groups=None):
    """``n`` random prompt pairs (token ids) for the tiny random models.

    Clean and corrupt differ in two positions; lengths cycle through ``lengths``.
    """
    from auto_circuit_dcd.data import Example

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = lengths[i % len(lengths)]
        clean = torch.randint(0, d_vocab, (length,), generator=g)
        corrupt = clean.clone()
        corrupt[2:4] = torch.randint(0, d_vocab, (2,), generator=g)
        answers = torch.randint(0, d_vocab, (1,), generator=g)
        wrong = torch.randint(0, d_vocab, (n_wrong,), generator=g)
        group = None if groups is None else groups[i % len(groups)]
        out.append(Example(i, clean, corrupt, answers, wrong, group=group))
    return out


def tl_config(**overrides):
    """A tiny TransformerLens config (2 layers, d_model 16, 4 heads) with overrides."""
    from transformer_lens import HookedTransformerConfig

    cfg = dict(n_layers=2, d_model=16, n_heads=4, d_head=4, d_mlp=32, d_vocab=50, n_ctx=32,
               act_fn="gelu", normalization_type="LN", seed=0, device="cpu")
    if overrides.get("positional_embedding_type") == "rotary":
        cfg["rotary_dim"] = 4
    cfg.update(overrides)
    return HookedTransformerConfig(**cfg)


def randomise_weights(model, seed: int = 0):
    """Non-trivial norm weights and biases (TransformerLens initialises them to 1 and 0),
    grouped K/V biases included, so that every weight's place matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith(".w") and p.ndim == 1:
                p.copy_(1 + 0.3 * noise)
            elif name.split(".")[-1].startswith("b") or name.endswith("_b_K") \
                    or name.endswith("_b_V"):
                p.copy_(0.2 * noise)
    return model


@pytest.fixture(scope="module")
def tiny_pm():
    """A patchable random 2-layer model with MLPs (d_vocab 50)."""
    import auto_circuit_dcd as dcd

    return dcd.make_patchable(dcd.load_model("tiny-random"))


@contextmanager
def nan_row_for_first(pm, examples):
    """Example 0's second token gets a NaN embedding (and is replaced in the others), so
    only example 0's attribution row is non-finite; the embedding is restored on exit."""
    poison = int(examples[0].clean[1])
    for e in examples[1:]:
        e.clean[e.clean == poison] = (poison + 1) % 50
        e.corrupt[e.corrupt == poison] = (poison + 1) % 50
    W_E = pm.wrapped_model.embed.W_E
    saved = W_E[poison].clone()
    W_E.data[poison] = float("nan")
    try:
        yield
    finally:
        W_E.data[poison] = saved


def assert_json_close(got, want, *, rel: float, abs_: float, where: str = "value",
                      ordered: bool = False) -> None:
    """``got`` equals ``want`` (JSON data) key for key (in the same order if ``ordered``) and
    item for item; numbers to the given tolerance (None stands for NaN and must match
    None), everything else exactly."""
    kw = dict(rel=rel, abs_=abs_, ordered=ordered)
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert (list(got) == list(want)) if ordered else (set(got) == set(want)), where
        for k in want:
            assert_json_close(got[k], want[k], where=f"{where}.{k}", **kw)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            assert_json_close(a, b, where=f"{where}[{i}]", **kw)
    elif isinstance(want, float) or isinstance(got, float):
        assert got is not None and want is not None, (where, got, want)
        assert got == pytest.approx(want, rel=rel, abs=abs_), (where, got, want)
    else:
        assert got == want, (where, got, want)

