"""The embedded toy model: offline loading, accuracy, planted mechanisms, datasets."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import auto_circuit_dcd as dcd
from auto_circuit_dcd.data import load_examples
from auto_circuit_dcd.toy import toy_dataset_path, toy_metadata, toy_tokenizer
from auto_circuit_dcd.toy.analysis import ablated_accuracy, logit_diff
from auto_circuit_dcd.toy.model import ASSETS_DIR, CHECKPOINT_FILE, CONFIG_FILE, encode
from auto_circuit_dcd.toy.tasks import name_pair_split
from auto_circuit_dcd.toy.vocab import NAMES, build_word_tokenizer, vocabulary


@pytest.fixture(scope="module")
def model():
    return dcd.load_model("toy-two-task")


def _prompts(name, split=None, task=None):
    ps = json.loads(toy_dataset_path(name).read_text())["prompts"]
    return [p for p in ps if (split is None or p["split"] == split)
            and (task is None or p["task"] == task)]


def _accuracy(model, examples):
    tokens = torch.stack([e.clean for e in examples])
    answers = torch.stack([e.answers[0] for e in examples])
    with torch.no_grad():
        return float((model(tokens)[:, -1].argmax(-1) == answers).float().mean())


# ----------------------------------------------------------------------------- tokenizer
def test_tokenizer_is_word_level_with_bos():
    tok = toy_tokenizer()
    vocab = vocabulary()
    assert tok.bos_token_id == vocab["<bos>"]
    for name in NAMES:
        assert tok(" " + name, add_special_tokens=False)["input_ids"] == [vocab[name]]
        assert tok(" " + name)["input_ids"] == [vocab[name]]  # auto-circuit's answer call
    assert tok("Mary, John.")["input_ids"] == [vocab[w] for w in ["Mary", ",", "John", "."]]
    # the shipped tokenizer file is the vocabulary of the code
    assert json.loads((ASSETS_DIR / "tokenizer.json").read_text())["model"]["vocab"] == vocab
    assert build_word_tokenizer().get_vocab() == tok.get_vocab()


def test_fast_encoder_matches_tokenizer():
    tok = toy_tokenizer()
    for p in _prompts("mixed")[:20]:
        expected = [tok.bos_token_id] + tok(p["clean"], add_special_tokens=False)["input_ids"]
        assert encode([p["clean"]])[0].tolist() == expected


# ----------------------------------------------------------------------------- model
def test_loads_offline_with_tokenizer(model):
    from transformer_lens import HookedTransformer

    assert isinstance(model, HookedTransformer)
    assert model.cfg.n_layers == 2 and model.cfg.n_heads == 4 and model.cfg.attn_only
    assert model.cfg.use_attn_result and model.cfg.use_split_qkv_input
    assert model.tokenizer.bos_token_id == vocabulary()["<bos>"]
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    n_params = sum(p.numel() for p in model.parameters())
    assert 40_000 < n_params < 60_000 and n_params == toy_metadata()["n_parameters"]
    assert (ASSETS_DIR / CHECKPOINT_FILE).stat().st_size < 500_000
    # TransformerLens' own tokenization prepends BOS once
    assert model.to_tokens(" Mary")[0].tolist() == [vocabulary()["<bos>"], vocabulary()["Mary"]]


@pytest.mark.parametrize("task", ["ioi", "induction"])
def test_held_out_accuracy(model, task):
    examples = [e for e in load_examples(toy_dataset_path(task), model.tokenizer)
                if e.split == "test"]
    assert len(examples) >= 100
    assert _accuracy(model, examples) >= 0.98


def test_ioi_test_pairs_never_seen_in_training():
    train_pairs, test_pairs = name_pair_split()
    assert not set(train_pairs) & set(test_pairs)
    assert sorted(map(tuple, toy_metadata()["held_out_name_pairs"])) == test_pairs
    for name in ("ioi", "mixed"):
        def pairs(split):
            out = set()
            for p in _prompts(name, split, "ioi"):
                names = sorted({w for w in p["clean"].split() if w in NAMES})
                assert len(names) == 2
                out.add(tuple(names))
            return out
        assert pairs("test") and pairs("test") <= set(test_pairs)
        assert not pairs("test") & pairs("train")


# ----------------------------------------------------------------------------- mechanisms
def _mean_ablation_effects(model, prompts, reference):
    """[layer, head] share of the mean logit difference lost when one head is mean-ablated."""
    vocab = vocabulary()
    tokens = encode([p["clean"] for p in prompts])
    ref = encode([p["clean"] for p in reference])
    good = torch.tensor([vocab[p["answers"][0].strip()] for p in prompts])
    bad = torch.tensor([vocab[p["wrong_answers"][0].strip()] for p in prompts])
    with torch.no_grad():
        _, cache = model.run_with_cache(ref, names_filter=lambda n: n.endswith("hook_z"))
        base = logit_diff(model(tokens), good, bad).mean()
        effects = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
        for layer, head in itertools.product(range(model.cfg.n_layers), range(model.cfg.n_heads)):
            name = f"blocks.{layer}.attn.hook_z"
            mean = cache[name][:, :, head].mean(0)

            def hook(z, hook, h=head, m=mean):
                z[:, :, h] = m
                return z
            ablated = logit_diff(model.run_with_hooks(tokens, fwd_hooks=[(name, hook)]), good, bad)
            effects[layer, head] = 1 - ablated.mean() / base
    return effects


def test_each_task_has_its_own_heads(model):
    """Heads picked by their mean-ablation effect: ablating one task's own heads (large
    effect on it, little on the other) breaks that task and leaves the other intact."""
    tasks = {t: _prompts(t, "test") for t in ("ioi", "induction")}
    reference = tasks["ioi"] + tasks["induction"]
    effects = {t: _mean_ablation_effects(model, ps, reference) for t, ps in tasks.items()}
    for task, other in (("ioi", "induction"), ("induction", "ioi")):
        own = [(l, h) for l, h in itertools.product(range(2), range(4))
               if effects[task][l, h] >= 0.3 and effects[other][l, h] <= 0.1]
        assert own, f"no head specific to {task}: {effects}"
        acc_task = ablated_accuracy(model, tasks[task], own, reference)
        acc_other = ablated_accuracy(model, tasks[other], own, reference)
        assert acc_task <= 0.7, (task, own, acc_task)
        assert acc_other >= 0.95, (task, own, acc_other)
    # and no single head carries both tasks
    both = (effects["ioi"] >= 0.3) & (effects["induction"] >= 0.3)
    assert not both.any()


def test_eap_rows_separate_the_tasks(model):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    pm, train, _ = dcd.prepare(model, toy_dataset_path("mixed"), batch_size=64)
    am = dcd.attribute(pm, train, progress=False)
    truth = np.array([g == "ioi" for g in am.groups])
    labels = KMeans(2, n_init=10, random_state=42).fit_predict(am.to_numpy())
    assert adjusted_rand_score(truth, labels) >= 0.9


# ----------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("name", ["ioi", "induction", "mixed"])
def test_datasets_load_in_auto_circuit_and_dcd(model, name):
    from auto_circuit.data import load_datasets_from_json

    prompts = _prompts(name)
    assert {"group", "task", "prompt_type", "split", "id"} <= set(prompts[0])
    n = len(prompts)
    train, test = load_datasets_from_json(model, Path(toy_dataset_path(name)), torch.device("cpu"),
                                          batch_size=8, train_test_size=(n - 8, 8),
                                          shuffle=False, return_seq_length=True)
    assert train.seq_len == 16
    ac = torch.cat([b.clean for b in train] + [b.clean for b in test])
    ac_ans = torch.cat([b.answers for b in train] + [b.answers for b in test])
    ours = load_examples(toy_dataset_path(name), model.tokenizer)
    assert len(ours) == n
    assert torch.equal(ac, torch.stack([e.clean for e in ours]))  # auto-circuit agrees
    assert torch.equal(ac_ans[:, 0], torch.stack([e.answers[0] for e in ours]))
    assert all(not torch.equal(e.clean, e.corrupt) for e in ours)


def test_prepare_mixed():
    pm, train, test = dcd.prepare(dcd.load_model("toy-two-task"), toy_dataset_path("mixed"))
    assert len(train.examples) + len(test.examples) == len(_prompts("mixed"))
    assert set(train.groups) == set(test.groups) == {"ioi", "induction"}
    assert all(e.split == "test" for e in test.examples)


# ----------------------------------------------------------------------------- training
def test_training_is_deterministic():
    from auto_circuit_dcd.toy.train import TrainSettings, train_toy_model

    pairs, _ = name_pair_split()
    settings = TrainSettings(seed=3, steps=20, batch_per_task=16, eval_every=10, eval_per_task=16)
    a, rec_a = train_toy_model(settings, pairs, progress=False)
    b, rec_b = train_toy_model(settings, pairs, progress=False)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert rec_a["history"] == rec_b["history"]
    c, _ = train_toy_model(TrainSettings(**{**settings.__dict__, "seed": 4}), pairs, progress=False)
    assert not torch.equal(sa["embed.W_E"], c.state_dict()["embed.W_E"])


#: Largest relative difference (Frobenius norm of the difference over that of the shipped
#: tensor) allowed between retrained and shipped weights, and between their logits (over
#: the largest logit). One thread on one machine gives bit-identical weights; other x86-64
#: processors (other vector instructions, other summation orders in the kernels) gave
#: 1e-7 to 6e-6 per tensor and 2e-6 on the logits, reproducibly on each machine. 1e-4 is
#: 15x the largest drift seen and still catches any real change (another seed or setting
#: moves every tensor by order 1).
RETRAIN_REL_TOL = 1e-4
#: Key biases shift every query's scores by a constant over key positions, which the
#: softmax removes: their gradient is zero up to rounding, so their trained value is
#: rounding noise (norm ~1e-3, 100% apart across machines). They are checked by what they
#: do, through the logits.
FUNCTION_FREE = ("attn.b_K",)


@pytest.mark.slow
def test_training_reproduces_shipped_weights(tmp_path):
    """Retrain the shipped seed (about 2 minutes on one thread): the same weights up to
    the float drift between processors, and a model that passes what the shipped one
    was chosen for (held-out accuracy and the EAP separation of the tasks)."""
    import runpy
    import sys

    from safetensors.torch import load_file

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_toy.py"
    meta = toy_metadata()
    argv = sys.argv
    sys.argv = [str(script), "--seeds", str(meta["seed"]), "--steps",
                str(meta["training"]["settings"]["steps"]), "--out", str(tmp_path)]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    assert done.value.code == 0  # the script writes a model only if it passed its checks
    new, old = load_file(str(tmp_path / CHECKPOINT_FILE)), load_file(str(ASSETS_DIR / CHECKPOINT_FILE))
    assert new.keys() == old.keys()
    for k in new:
        assert new[k].shape == old[k].shape and new[k].dtype == old[k].dtype, k
        if k.endswith(FUNCTION_FREE):
            continue
        rel = float((new[k].double() - old[k].double()).norm() / old[k].double().norm())
        assert rel <= RETRAIN_REL_TOL, (k, rel)
    # what the shipped model was chosen for, measured on the retrained one by the script
    retrained = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert retrained["seed"] == meta["seed"]
    assert min(retrained["held_out_accuracy"].values()) >= 0.98
    assert retrained["eap_separation"]["kmeans2_ari"] >= 0.9
    # and measured here, on the retrained weights loaded as the package loads its model
    shipped = dcd.load_model("toy-two-task")
    model = dcd.load_model("toy-two-task")
    model.load_state_dict(new, strict=False)
    tokens = torch.stack([e.clean for e in load_examples(toy_dataset_path("mixed"),
                                                         model.tokenizer)])
    with torch.no_grad():
        ref, got = shipped(tokens)[:, -1], model(tokens)[:, -1]
    assert float((got - ref).abs().max()) <= RETRAIN_REL_TOL * float(ref.abs().max())
    for task in ("ioi", "induction"):
        examples = [e for e in load_examples(toy_dataset_path(task), model.tokenizer)
                    if e.split == "test"]
        assert _accuracy(model, examples) >= 0.98, task
    # the datasets come from Python's own seeded generator: identical on every machine
    for name in ("ioi", "induction", "mixed"):
        assert (tmp_path / f"{name}.json").read_text() == toy_dataset_path(name).read_text()
