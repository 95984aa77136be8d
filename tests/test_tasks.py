"""Task generators: every prompt checked against an answer recomputed from its own text,
files that load in plain auto-circuit and in the add-on, seeds, shares, splits, and the
registered auto-circuit tasks running through auto-circuit's own EAP."""

import copy
import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from auto_circuit_dcd import keys
from auto_circuit_dcd.tasks import make_dataset
from auto_circuit_dcd.tasks.common import GenerationError
from auto_circuit_dcd.tasks.mixture import Component, component_counts, entity_addition
from auto_circuit_dcd.tasks.words import NAMES

ALL_TYPES = {
    "ioi": ["ABBA", "BABA", "mixed", "passive", "3-person", "letter", "filler"],
    "entity_binding": ["2-comma", "3-period", "2-comma-colour", "8-comma-q3", "5-period-q5"],
    "arithmetic": ["2-operand", "3-operand", "verbal-addition", "verbal-sum", "verbal-plus"],
    "sequence": ["2-gram", "3-gram", "4-gram"],
}
PER_TYPE = 20


@pytest.fixture(scope="module")
def tok():
    from auto_circuit_dcd.model.smollm2 import load_smollm2_tokenizer

    return load_smollm2_tokenizer()


@pytest.fixture(scope="module")
def datasets(tok, tmp_path_factory):
    """One file per task with every prompt type; task -> (summary, prompts)."""
    out = {}
    root = tmp_path_factory.mktemp("tasks")
    for task, types in ALL_TYPES.items():
        path = root / f"{task}.json"
        summary = make_dataset(task, types, tok, PER_TYPE * len(types), 7, path)
        out[task] = (summary, json.loads(path.read_text())["prompts"], path)
    return out


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------ oracles from the text
def ioi_expected(p):
    """(answer, wrong answers) from the clean prompt: the name said once vs repeated."""
    if p["prompt_type"] == "letter":
        people = re.findall(r"Person ([A-Z])\b", p["clean"])
    else:
        people = [w for w in re.findall(r"[A-Z][a-z]+", p["clean"]) if w in NAMES]
    counts = Counter(people)
    once = [n for n in counts if counts[n] == 1]
    twice = [n for n in counts if counts[n] == 2]
    assert len(once) == 1, p["clean"]
    return [" " + once[0]], sorted(" " + n for n in twice)


def entity_expected(p):
    pairs = re.findall(r"[Tt]he (\w+) is in (?:box ([A-Z])|the (\w+) box)", p["clean"])
    where = {(b or c): e for e, b, c in pairs}
    q = re.search(r"(?:Box ([A-Z])|The (\w+) box) contains the$", p["clean"])
    qc = re.search(r"(?:Box ([A-Z])|The (\w+) box) contains the$", p["corrupt"])
    answer = where[q.group(1) or q.group(2)]
    assert (qc.group(1) or qc.group(2)) not in where  # corrupt asks for an absent box
    return [" " + answer], sorted(" " + e for e in where.values() if e != answer)


def sequence_expected(p):
    first, second = p["clean"].split(". Names: ")
    first = first.removeprefix("Names: ").split(", ")
    second = second.rstrip(",").split(", ")
    assert first[: len(second)] == second
    answer = first[len(second)]
    return [" " + answer], sorted(" " + w for w in first if w != answer)


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("task", list(ALL_TYPES))
def test_every_prompt_meets_the_invariants(datasets, tok, task):
    _, prompts, _ = datasets[task]
    assert {p["prompt_type"] for p in prompts} == set(ALL_TYPES[task])
    for p in prompts:
        assert p["task"] == task and p["group"] == f"{task}/{p['prompt_type']}"
        assert len(ids(tok, p["clean"])) == len(ids(tok, p["corrupt"])), p
        for a in p["answers"] + p["wrong_answers"]:
            assert len(ids(tok, a)) == 1, (a, p)
        assert set(p["answers"]).isdisjoint(p["wrong_answers"])
        if task == "ioi":
            answers, wrong = ioi_expected(p)
            assert (p["answers"], sorted(p["wrong_answers"])) == (answers, wrong)
            # the corrupt prompt repeats no name
            corrupt_names = (re.findall(r"Person ([A-Z])\b", p["corrupt"])
                             if p["prompt_type"] == "letter"
                             else [w for w in re.findall(r"[A-Z][a-z]+", p["corrupt"]) if w in NAMES])
            assert len(set(corrupt_names)) == len(corrupt_names), p["corrupt"]
        elif task == "entity_binding":
            answers, wrong = entity_expected(p)
            assert (p["answers"], sorted(p["wrong_answers"])) == (answers, wrong)
            k = int(p["prompt_type"][0])
            assert len(p["wrong_answers"]) == k - 1
            assert (", the " in p["clean"]) == ("comma" in p["prompt_type"])
        elif task == "arithmetic":
            ops = [int(x) for x in re.findall(r"\d+", p["clean"])]
            bad = [int(x) for x in re.findall(r"\d+", p["corrupt"])]
            assert len(ops) == (3 if p["prompt_type"] == "3-operand" else 2)
            assert all(0 <= x <= 500 for x in ops + bad)
            assert p["answers"] == [str(sum(ops))] and p["wrong_answers"] == [str(sum(bad))]
            assert sum(ops) != sum(bad) and sum(ops) <= 999
        else:
            answers, wrong = sequence_expected(p)
            assert (p["answers"], sorted(p["wrong_answers"])) == (answers, wrong)
            m = int(p["prompt_type"][0])
            assert p["clean"].count(",") - 5 == m - 1  # m - 1 names repeated


def test_ioi_orders_and_variants(datasets):
    _, prompts, _ = datasets["ioi"]
    for p in prompts:
        names = (re.findall(r"Person ([A-Z])\b", p["clean"]) if p["prompt_type"] == "letter"
                 else [w for w in re.findall(r"[A-Z][a-z]+", p["clean"]) if w in NAMES])
        io = p["answers"][0].strip()
        if p["prompt_type"] == "ABBA":
            assert names[0] == io
        if p["prompt_type"] == "BABA":
            assert names[1] == io
        if p["prompt_type"] == "passive":
            assert " was given " in p["clean"] or " was handed " in p["clean"]
        if p["prompt_type"] == "filler":
            assert len(re.findall(r"[.]", p["clean"])) >= 2
    orders = Counter(p["answers"][0].strip() == [w for w in re.findall(r"[A-Z][a-z]+", p["clean"])
                                                if w in NAMES][0]
                     for p in prompts if p["prompt_type"] == "mixed")
    assert orders[True] > 0 and orders[False] > 0  # mixed has both orders


def test_summary_counts_splits_and_drops(datasets, tok):
    summary, prompts, _ = datasets["ioi"]
    assert summary["n"] == len(prompts) == PER_TYPE * 7
    for group, c in summary["counts"].items():
        assert (c["train"], c["val"], c["test"], c["total"]) == (12, 4, 4, 20)
        assert sum(p["split"] == "train" for p in prompts if p["group"] == group) == 12
    assert len({p["id"] for p in prompts}) == len(prompts)
    # SmolLM2 splits numbers into digits: only the ten sums 0..9 are one token.
    summary, prompts, _ = datasets["arithmetic"]
    assert summary["dropped"]["arithmetic/2-operand"]["dropped_words"]["sums"] == 990
    assert all(int(p["answers"][0]) <= 9 for p in prompts)
    assert len({p["clean"] for p in prompts}) == len(prompts)


def test_pool_exhaustion_is_reported(tok, tmp_path):
    # 2-operand sums 0..9: 55 distinct prompts at most.
    s = make_dataset("arithmetic", ["2-operand"], tok, 80, 0, tmp_path / "a.json")
    assert s["n"] == 55 and s["dropped"]["arithmetic/2-operand"]["short"] == 25


def test_files_load_in_the_add_on_and_in_plain_auto_circuit(datasets, tok):
    from auto_circuit.data import load_datasets_from_json

    from auto_circuit_dcd.data import load_examples

    _, prompts, path = datasets["ioi"]
    examples = load_examples(path, tok)
    assert [e.group for e in examples] == [p["group"] for p in prompts]
    assert [e.split for e in examples] == [p["split"] for p in prompts]
    # auto-circuit prepends tokenizer.bos_token as text and tokenizes answers with
    # special tokens: a tokenizer that adds BOS by itself would double it.
    plain_tok = copy.deepcopy(tok)
    plain_tok.add_bos_token = False
    n = len(prompts)
    train, test = load_datasets_from_json(
        SimpleNamespace(tokenizer=plain_tok), Path(path), device=torch.device("cpu"),
        batch_size=1, train_test_size=(n, 0), shuffle=False, pad=True)
    pad = plain_tok.pad_token_id

    def unpad(row):  # auto-circuit pads on the left to the longest prompt
        row = row.tolist()
        while row and row[0] == pad:
            row = row[1:]
        return row

    for ex, batch in zip(examples, train):
        assert unpad(batch.clean[0]) == ex.clean.tolist()
        assert unpad(batch.corrupt[0]) == ex.corrupt.tolist()
        assert batch.answers[0].tolist() == ex.answers.tolist()
        assert batch.wrong_answers[0].tolist() == ex.wrong_answers.tolist()
    assert len(train) == n


def test_seed_reproducibility(tok, tmp_path):
    a = make_dataset("all-tasks", None, tok, 30, 3, tmp_path / "a.json")
    b = make_dataset("all-tasks", None, tok, 30, 3, tmp_path / "b.json")
    make_dataset("all-tasks", None, tok, 30, 4, tmp_path / "c.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a["counts"] == b["counts"]
    pa = json.loads((tmp_path / "a.json").read_text())["prompts"]
    pc = json.loads((tmp_path / "c.json").read_text())["prompts"]
    assert {p["clean"] for p in pa} != {p["clean"] for p in pc}
    # A component's prompts depend only on the seed and its name, not on its company.
    alone = make_dataset("ioi", ["letter"], tok, 5, 3, tmp_path / "d.json")
    pd = json.loads((tmp_path / "d.json").read_text())["prompts"]
    assert alone["n"] == 5
    assert {p["clean"] for p in pd} == {p["clean"] for p in pa
                                        if p["group"] == "ioi/letter"}


def test_mixture_shares(tok, tmp_path):
    assert component_counts([Component("a", "x", 0.3), Component("b", "y", 0.7)], 10) == [3, 7]
    assert component_counts([Component("a", "x"), Component("b", "y"),
                             Component("c", "z")], 10) == [4, 3, 3]
    assert component_counts(list(entity_addition(0.0)), 7) == [0, 7]
    s = make_dataset("mixture", ["entity_binding/2-comma:0.25", "ioi/BABA:0.75"], tok, 40, 0,
                     tmp_path / "m.json")
    assert s["requested"] == {"entity_binding/2-comma": 10, "ioi/BABA": 30}
    assert {g: c["total"] for g, c in s["counts"].items()} == s["requested"]
    s = make_dataset("mixture", ["entity_binding/2-comma:1", "arithmetic/2-operand:0"], tok, 10,
                     0, tmp_path / "e.json")
    assert list(s["counts"]) == ["entity_binding/2-comma"]
    s = make_dataset("all-tasks", None, tok, 12, 0, tmp_path / "all.json")
    assert sorted(s["counts"]) == ["ioi/3-person", "ioi/letter", "ioi/mixed",
                                   "sequence/2-gram", "sequence/3-gram", "sequence/4-gram"]
    assert all(c["total"] == 2 for c in s["counts"].values())


def test_bad_requests_say_what_to_change(tok, tmp_path):
    with pytest.raises(GenerationError, match="unknown task"):
        make_dataset("nope", None, tok, 5, 0, tmp_path / "x.json")
    with pytest.raises(ValueError, match="query position"):
        make_dataset("entity_binding", ["3-comma-q4"], tok, 5, 0, tmp_path / "x.json")
    with pytest.raises(ValueError, match="task/prompt_type"):
        make_dataset("mixture", ["ioi"], tok, 5, 0, tmp_path / "x.json")
    with pytest.raises(GenerationError, match="needs a model"):
        make_dataset("ioi", None, tok, 5, 0, tmp_path / "x.json", only_correct=True)


def test_the_toy_tokenizer_drops_unknown_words_and_refuses_unknown_template_words(
        tmp_path, capsys):
    """The toy vocabulary has 20 of the names and none of some template words."""
    from auto_circuit_dcd.cli import main
    from auto_circuit_dcd.tasks.common import GenStats, one_token_words
    from auto_circuit_dcd.toy import toy_tokenizer
    from auto_circuit_dcd.toy.vocab import NAMES as TOY_NAMES

    stats = GenStats()
    kept = one_token_words(toy_tokenizer(), NAMES, stats, "names")
    assert kept == [n for n in NAMES if n in TOY_NAMES]  # unknown names never pass as <unk>
    assert stats.dropped_words["names"] == len(NAMES) - len(kept) > 0
    with pytest.raises(GenerationError, match=r"prompt '.*' has word\(s\) \[.*\] that the "
                                              r"tokenizer does not know"):
        make_dataset("ioi", ["ABBA"], toy_tokenizer(), 5, 0, tmp_path / "x.json")
    out = tmp_path / "toy.json"
    assert main(["make-dataset", "--task", "ioi", "--model", "toy-two-task", "--n", "5",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not know" in err[0] and not out.exists()


class _AlwaysSays(torch.nn.Module):
    """A fake model whose last-position logits favour one token everywhere."""

    def __init__(self, token: int, vocab: int):
        super().__init__()
        self.token, self.vocab = token, vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, self.vocab)
        logits[..., self.token] = 1.0
        return logits


def test_only_correct_keeps_what_the_model_gets_right(tok, tmp_path):
    model = _AlwaysSays(ids(tok, " Mary")[0], len(tok))
    s = make_dataset("ioi", ["ABBA"], tok, 3, 0, tmp_path / "c.json", model=model,
                     only_correct=True)
    prompts = json.loads((tmp_path / "c.json").read_text())["prompts"]
    assert prompts and all(p["answers"] == [" Mary"] for p in prompts)
    d = s["dropped"]["ioi/ABBA"]
    assert d["incorrect"] > 0 and d["short"] == 3 - len(prompts)
    # the dropped ones are exactly those not answered " Mary" among those scored
    plain = make_dataset("ioi", ["ABBA"], tok, 3 * 16, 0, tmp_path / "p.json")
    pool = json.loads((tmp_path / "p.json").read_text())["prompts"]
    pool.sort(key=lambda p: int(p["id"].rsplit("/", 1)[1]))
    kept = [p for p in pool if p["answers"] == [" Mary"]][:3]
    assert sorted(p["clean"] for p in prompts) == sorted(p["clean"] for p in kept)
    assert plain["n"] == 48


# ------------------------------------------------------------------ auto-circuit tasks
def test_registry_entries_are_lazy(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTO_CIRCUIT_DCD_CACHE", str(tmp_path))
    from auto_circuit.tasks import Task

    from auto_circuit_dcd.tasks import auto_circuit_tasks, registry_entries

    entries = registry_entries()
    task_keys = {v for k, v in vars(keys).items() if k.startswith("TASK_") and k != "TASK_PREFIX"}
    assert set(entries) == task_keys
    assert all(isinstance(t, Task) and t.key == k for k, t in entries.items())
    assert not any(t.__init_complete__ for t in entries.values())
    assert not list(tmp_path.iterdir()) and not auto_circuit_tasks._PATCHABLE


def _tiny_model_with(tok):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16,
                                  d_vocab=len(tok), n_ctx=64, act_fn="gelu",
                                  normalization_type="LN", seed=0, device="cpu")
    model = HookedTransformer(cfg, tokenizer=tok)
    model.eval()
    model.requires_grad_(False)
    return model


def test_generated_task_runs_through_auto_circuit_eap(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTO_CIRCUIT_DCD_CACHE", str(tmp_path))
    from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT, run_prune_algos

    from auto_circuit_dcd.data import load_examples
    from auto_circuit_dcd.tasks.auto_circuit_tasks import GeneratedTask

    model = _tiny_model_with(tok)
    task = GeneratedTask(key="t", name="t", batch_size=2, batch_count=(3, 1),
                         token_circuit=False, _model_def=model, _dataset_name="ioi-mixed",
                         dataset_task="ioi", dataset_prompt_types=("ABBA", "BABA"),
                         dataset_n=20, dataset_seed=1)
    assert not task.dataset_path.exists()
    scores = run_prune_algos([task], [PRUNE_ALGO_DICT["Edge Attribution Patching"]])
    assert task.dataset_path.exists()
    expected = load_examples(task.dataset_path, tok)
    train = [e.clean.tolist() for e in expected if e.split == "train"][:6]
    got = [row.tolist() for b in task.train_loader for row in b.clean]
    assert sorted(got) == sorted(train)
    assert len(list(task.test_loader.examples)) == 2
    ps = scores["t"]["Edge Attribution Patching"]
    assert set(ps) == {e.dest.module_name for e in task.model.edges}
    flat = torch.cat([v.flatten() for v in ps.values()])
    assert torch.isfinite(flat).all() and flat.abs().sum() > 0


@pytest.mark.slow
def test_registered_task_runs_on_smollm2(tmp_path, monkeypatch):
    from auto_circuit_dcd.model.smollm2 import smollm2_cache_dir

    converted = smollm2_cache_dir()
    if converted.is_dir():  # datasets are generated into the empty cache; the model is reused
        (tmp_path / converted.name).symlink_to(converted, target_is_directory=True)
    monkeypatch.setenv("AUTO_CIRCUIT_DCD_CACHE", str(tmp_path))
    from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT, run_prune_algos

    from auto_circuit_dcd.tasks.auto_circuit_tasks import task_entries

    task = task_entries(n=10, batch_size=2)[keys.TASK_MIX_ENTITY_ADDITION]
    scores = run_prune_algos([task], [PRUNE_ALGO_DICT["Edge Attribution Patching"]])
    ps = scores[keys.TASK_MIX_ENTITY_ADDITION]["Edge Attribution Patching"]
    flat = torch.cat([v.flatten() for v in ps.values()])
    assert torch.isfinite(flat).all() and flat.abs().sum() > 0
    groups = {e.group for e in task.train_loader.examples}
    assert groups == {"entity_binding/2-comma", "arithmetic/2-operand"}
