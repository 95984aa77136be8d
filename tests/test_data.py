"""Dataset loading: auto-circuit's JSON format, every example kept, errors that name the prompt."""

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import auto_circuit_dcd as dcd
from auto_circuit_dcd.data import DatasetError, load_examples, make_loader, split_examples

#: how an error names a prompt without an 'id' (after "prompt number N of M "), as a regex
NO_ID = r"\(counting from 1; it has no 'id'\)"

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
    with pytest.raises(DatasetError,
                       match="prompt number 2 of 2 " + NO_ID
                       + r": clean and corrupt .* \(4 vs 5\)"):
        load_examples(data, tok)


def test_multi_token_answers_are_refused(tok):
    data = {"prompts": [prompt("the cat", "the dog", answers=(" big mat",))]}
    with pytest.raises(DatasetError,
                       match="prompt number 1 of 1 " + NO_ID + ": answer ' big mat' is 2 tokens"):
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
    with pytest.raises(DatasetError, match="prompt number 2 of 2 " + NO_ID
                       + f", {field.rstrip('s').replace('_', ' ')}.*\\['{word}'\\].*<unk>"):
        load_examples({"prompts": [good, bad]}, toy_tokenizer())


def test_a_literal_unknown_token_is_not_an_unknown_word():
    from auto_circuit_dcd.model.tokens import encode, unknown_words
    from auto_circuit_dcd.toy import toy_tokenizer

    tok = toy_tokenizer()
    assert unknown_words(tok, "Mary <unk> John") == []
    assert encode(tok, " Mary") == [tok.convert_tokens_to_ids("Mary")]


@pytest.mark.parametrize("bad, message", [
    ({"answers": []}, "'answers' must be a non-empty list"),
    ({"wrong_answers": [" big mat"]}, "wrong answer ' big mat' is 2 tokens"),
    ({"corrupt": "the big dog sat"}, "clean and corrupt prompts have different token lengths"),
])
def test_a_bad_prompt_is_named_by_its_id(tok, bad, message):
    """Oracle: the id written in the file and the prompt's place counted by hand (4th of 5)."""
    prompts = [prompt("the cat sat", "the dog sat", id=f"q{i}") for i in range(5)]
    prompts[3].update(bad)
    with pytest.raises(DatasetError) as err:
        load_examples({"prompts": prompts}, tok)
    assert str(err.value).startswith("prompt id 'q3' (number 4 of 5)")
    assert message in str(err.value)


def test_a_prompt_lacking_a_field_is_named(tok):
    prompts = [prompt("the cat", "the dog") for _ in range(3)]
    del prompts[2]["answers"]
    with pytest.raises(DatasetError, match=r"prompt number 3 of 3 " + NO_ID
                       + r" of the given dict lacks \['answers'\]"):
        load_examples({"prompts": prompts}, tok)
    prompts[2].update(answers=[" mat"], id=7)
    del prompts[0]["clean"]
    with pytest.raises(DatasetError, match=r"prompt number 1 of 3 .* lacks \['clean'\]"):
        load_examples({"prompts": prompts}, tok)
    prompts[0]["clean"] = "the cat"
    prompts[0]["id"] = 7
    with pytest.raises(DatasetError, match=r"unique: 1 id\(s\) repeat, e.g. '7' at prompt "
                                           r"numbers \[1, 3\]"):
        load_examples({"prompts": prompts}, tok)


@pytest.mark.parametrize("n_train, n_prompts, max_clusters, ask", [
    (3, 5, 8, 40),    # 24 training prompts wanted at 3 of 5: ceil(24 * 5 / 3) = 40
    (10, 12, 8, 29),  # ceil(24 * 12 / 10) = 29
    (5, 6, 2, 8),     # 6 wanted: ceil(6 * 6 / 5) = 8
])
def test_a_training_split_too_small_for_the_clusters_is_warned_about(n_train, n_prompts,
                                                                      max_clusters, ask):
    from auto_circuit_dcd.data import SmallSplitWarning, check_split_sizes

    with pytest.warns(SmallSplitWarning, match=f"has {n_train} prompt.*--n {ask}\\b"):
        check_split_sizes(n_train, n_prompts, max_clusters)


def test_enough_training_prompts_pass_quietly_and_too_few_to_cluster_are_refused():
    import warnings

    from auto_circuit_dcd.data import check_split_sizes

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_split_sizes(24, 30, 8)
        check_split_sizes(6, 8, 2)
    with pytest.raises(DatasetError, match=r"has 2 prompt\(s\) \(of 3 read.*at least 3.*--n 5\b"):
        check_split_sizes(2, 3, 1)  # 3 wanted: ceil(3 * 3 / 2) = 5
