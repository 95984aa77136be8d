"""Dataset loading: auto-circuit's JSON format, every example kept, errors that name the prompt."""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import auto_circuit_dcd as dcd
from auto_circuit_dcd.data import DatasetError, load_examples, make_loader, split_examples

WORDS = ["<bos>", "the", "cat", "dog", "sat", "ran", "on", "mat", "a", "big", "red"]


@pytest.fixture(scope="module")
def tok():
    vocab = {w: i for i, w in enumerate(WORDS)}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<bos>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<bos>")


def prompt(clean, corrupt, answers=(" mat",), wrong=(" dog",), **extra):
    return {"clean": clean, "corrupt": corrupt, "answers": list(answers),
            "wrong_answers": list(wrong), **extra}


def test_every_example_is_kept_with_ids_and_groups(tok):
    prompts = [prompt("the cat sat on the", "the dog sat on the", group="g1") for _ in range(5)]
    prompts += [prompt("the big cat sat on a", "the big dog sat on a", group="g2") for _ in range(2)]
    examples = load_examples({"prompts": prompts}, tok)
    assert [e.id for e in examples] == list(range(7))
    assert examples[0].clean.tolist() == [0, 1, 2, 4, 6, 1]  # BOS prepended
    loader = make_loader(examples, batch_size=4)
    sizes = [b.clean.shape[0] for b in loader]
    assert sorted(sizes) == [1, 2, 4]  # 5 of length 6 -> 4 + 1; 2 of length 7
    assert sorted(loader.example_ids) == list(range(7))
    assert loader.groups == [examples[i].group for i in loader.example_ids]
    for b, ids in zip(loader, loader.batch_example_ids):
        assert torch.equal(b.clean, torch.stack([examples[i].clean for i in ids]))


def test_unequal_clean_corrupt_lengths_name_the_prompt(tok):
    data = {"prompts": [prompt("the cat sat", "the dog sat"),
                        prompt("the cat sat", "the big dog sat")]}
    with pytest.raises(DatasetError, match="prompt 1: clean and corrupt .* \\(4 vs 5\\)"):
        load_examples(data, tok)


def test_multi_token_answers_are_refused(tok):
    data = {"prompts": [prompt("the cat", "the dog", answers=(" big mat",))]}
    with pytest.raises(DatasetError, match="prompt 0: answer ' big mat' is 2 tokens"):
        load_examples(data, tok)


@pytest.mark.parametrize("data, message", [
    ({"prompts": []}, "empty"),
    ({"examples": []}, "no 'prompts' list"),
    ({"prompts": [{"clean": "the cat"}]}, "lacks"),
])
def test_malformed_files_are_explained(tok, data, message):
    with pytest.raises(DatasetError, match=message):
        load_examples(data, tok)


def test_reads_files_and_pre_tokenized_prompts(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"prompts": [
        {"clean": [1, 2, 3], "corrupt": [1, 4, 3], "answers": [5], "wrong_answers": [6, 7]}]}))
    (ex,) = load_examples(path, tokenizer=None, prepend_bos=False)
    assert ex.clean.tolist() == [1, 2, 3] and ex.wrong_answers.tolist() == [6, 7]
    with pytest.raises(DatasetError, match="does not exist"):
        load_examples(tmp_path / "missing.json", None)


def test_split_uses_split_fields_or_a_seeded_shuffle(tok):
    prompts = [prompt("the cat", "the dog", split=s) for s in ["train", "test", "val", "train"]]
    train, test = split_examples(load_examples({"prompts": prompts}, tok))
    assert [e.id for e in train] == [0, 3] and [e.id for e in test] == [1]
    plain = load_examples({"prompts": [prompt("the cat", "the dog")] * 10}, tok)
    a = split_examples(plain, 0.3, seed=1)
    b = split_examples(plain, 0.3, seed=1)
    assert [e.id for e in a[1]] == [e.id for e in b[1]] and len(a[1]) == 3
    assert sorted(e.id for e in a[0] + a[1]) == list(range(10))


def test_subset_loader_keeps_the_requested_examples(tok):
    examples = load_examples({"prompts": [prompt("the cat", "the dog")] * 5}, tok)
    loader = make_loader(examples, batch_size=2)
    sub = loader.subset([4, 1, 3])
    assert sorted(sub.example_ids) == [1, 3, 4]
    with pytest.raises(KeyError):
        loader.subset([9])


def test_prepare_wraps_the_model_and_splits(tmp_path):
    prompts = [{"clean": [1, i, 3, 4], "corrupt": [1, i + 1, 3, 4], "answers": [5],
                "wrong_answers": [6], "group": "g"} for i in range(10)]
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"prompts": prompts}))
    pm, train, test = dcd.prepare(dcd.load_model("tiny-random"), path, test_fraction=0.2,
                                  batch_size=3, prepend_bos=False)
    assert len(train.examples) == 8 and len(test.examples) == 2
    assert pm.n_edges > 0 and dcd.make_patchable(pm) is pm


@pytest.mark.parametrize("field, value, word", [
    ("clean", "When Mary and Zed went to the store , then Mary gave a drink to", "Zed"),
    ("answers", [" Zed"], "Zed"),
    ("wrong_answers", [" Mary", " Quux"], "Quux"),
])
def test_words_the_toy_tokenizer_does_not_know_are_refused(field, value, word):
    """The toy tokenizer maps unknown words to <unk>: refused with the prompt and the word."""
    from auto_circuit_dcd.toy import toy_tokenizer

    good = {"clean": "When Mary and John went to the store , then Mary gave a drink to",
            "corrupt": "When Mary and John went to the store , then John gave a drink to",
            "answers": [" John"], "wrong_answers": [" Mary"]}
    load_examples({"prompts": [good]}, toy_tokenizer())  # known words load
    bad = {**good, field: value}
    if field == "clean":
        bad["corrupt"] = value.replace("then Mary", "then Zed")
    with pytest.raises(DatasetError, match=f"prompt 1, {field.rstrip('s').replace('_', ' ')}"
                                           f".*\\['{word}'\\].*<unk>"):
        load_examples({"prompts": [good, bad]}, toy_tokenizer())


def test_a_literal_unknown_token_is_not_an_unknown_word():
    from auto_circuit_dcd.model.tokens import encode, unknown_words
    from auto_circuit_dcd.toy import toy_tokenizer

    tok = toy_tokenizer()
    assert unknown_words(tok, "Mary <unk> John") == []
    assert encode(tok, " Mary") == [tok.convert_tokens_to_ids("Mary")]
