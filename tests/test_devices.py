"""Devices and dtypes: names resolved with clear errors, batches and circuits where the model is.

On the CPU the moves are checked with PyTorch's ``meta`` device (tensors without data);
the tests marked ``cuda`` run the method on a GPU against the CPU's results (the oracle)
and are skipped without one (``pytest -m cuda`` runs them; ``benchmarks/gpu_check.py``
too).
"""

import json

import numpy as np
import pytest
import torch
from conftest import random_examples

import auto_circuit_dcd as dcd
from auto_circuit_dcd.data import batch_to, make_loader
from auto_circuit_dcd.model.devices import model_device, resolve_device, resolve_dtype

CUDA = pytest.mark.cuda


def _pairs(n=6, seed=3):
    examples = random_examples(n, lengths=(7,), seed=seed, groups=["a", "b"])
    return [e for e in examples if not torch.isin(e.answers, e.wrong_answers).any()]


# ----------------------------------------------------------------------------- names
def test_device_and_dtype_names_resolve_or_say_what_to_use():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="float32.*float16.*bfloat16"):
        resolve_dtype("int8")


def test_load_model_casts_to_the_dtype_asked_for():
    full = dcd.load_model("tiny-random")
    half = dcd.load_model("tiny-random", device="cpu", dtype="bfloat16")
    assert half.cfg.dtype is torch.bfloat16
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    tokens = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = full(tokens)[:, -1], half(tokens)[:, -1].float()
    assert float((a - b).norm() / a.norm()) < 5e-2  # bf16 keeps 8 bits of mantissa


def test_load_model_checks_the_device_before_loading(monkeypatch):
    from auto_circuit_dcd.model import load as model_load

    def never(**kwargs):
        raise AssertionError("the model was loaded before the device was checked")

    monkeypatch.setitem(model_load.MODEL_LOADERS, "tiny-random", never)
    with pytest.raises(ValueError, match="unknown device"):
        dcd.load_model("tiny-random", device="gpu0")


# ----------------------------------------------------------------------------- batches
def test_batches_move_to_a_device_with_their_key():
    examples = _pairs()
    loader = make_loader(examples, 3)
    batch = next(iter(loader))
    moved = batch_to(batch, "meta")
    assert moved.key == batch.key
    assert {t.device.type for t in (moved.clean, moved.corrupt, moved.answers,
                                    moved.wrong_answers)} == {"meta"}
    assert batch_to(batch, "cpu") is batch and batch_to(batch, None) is batch
    ragged = examples[:1] + [dcd.data.Example(99, examples[1].clean, examples[1].corrupt,
                                              examples[1].answers,
                                              examples[1].wrong_answers[:1])]
    listed = next(iter(make_loader(ragged, 2)))
    assert isinstance(listed.wrong_answers, list)  # one 1-D tensor per example
    assert all(t.device.type == "meta" for t in batch_to(listed, "meta").wrong_answers)


def test_example_loader_yields_batches_on_its_device_and_keeps_it_in_subsets():
    loader = make_loader(_pairs(), 2, device="meta")
    assert all(b.clean.device.type == "meta" for b in loader)
    sub = loader.subset(loader.example_ids[:2])
    assert sub.device == torch.device("meta")
    assert next(iter(sub)).answers.device.type == "meta"
    assert loader.subset(loader.example_ids[:2], device="cpu").device == torch.device("cpu")
    # batch keys are hashed from the CPU tensors, so they do not depend on the device
    assert [b.key for b in loader] == [b.key for b in make_loader(_pairs(), 2)]


def test_prepare_puts_the_loaders_on_the_model_device(tmp_path):
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"prompts": [
        {"clean": e.clean.tolist(), "corrupt": e.corrupt.tolist(),
         "answers": e.answers.tolist(), "wrong_answers": e.wrong_answers.tolist()}
        for e in _pairs()]}))
    pm, train, test = dcd.prepare(dcd.load_model("tiny-random"), data, batch_size=2)
    assert train.device == test.device == model_device(pm)


# ----------------------------------------------------------------------------- command
def _dataset_file(path):
    """24 token-id prompt pairs of two groups as an auto-circuit JSON dataset at ``path``."""
    prompts = [{"clean": e.clean.tolist(), "corrupt": e.corrupt.tolist(),
                "answers": e.answers.tolist(), "wrong_answers": e.wrong_answers.tolist(),
                "group": e.group} for e in _pairs(24, seed=4)]
    path.write_text(json.dumps({"prompts": prompts}))
    return path


def test_main_job_takes_device_and_dtype(tmp_path):
    from auto_circuit_dcd.cli import build_parser, main
    from auto_circuit_dcd.job.pipeline import RunConfig

    args = build_parser().parse_args(["run"])
    assert (args.device, args.dtype) == ("auto", "float32")
    assert (RunConfig().device, RunConfig().dtype) == ("auto", "float32")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--dtype", "int8"])
    data = _dataset_file(tmp_path / "d.json")
    out = tmp_path / "run"
    assert main(["run", "--model", "tiny-random", "--dataset", str(data), "--out", str(out),
                 "--quiet", "--batch-size", "4", "--max-clusters", "3",
                 "--edge-fractions", "0.1,1", "--p-cross", "0.1", "--device", "cpu",
                 "--dtype", "bfloat16"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["config"]["dtype"] == "bfloat16" and rep["config"]["device"] == "cpu"
    assert rep["single"]["faithfulness"][-1] == pytest.approx(1.0)
    meta = json.loads((out / "attribution_train" / "attribution.json").read_text())
    assert meta["meta"]["backend"] == "fast"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_main_job_says_in_one_line_when_cuda_is_missing(tmp_path, capsys):
    from auto_circuit_dcd.cli import main

    code = main(["run", "--model", "tiny-random", "--device", "cuda", "--out",
                 str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "CUDA is not available" in err[0]


# ----------------------------------------------------------------------------- on a GPU
def _cpu_and_cuda(name="tiny-random-gqa", dtype=None):
    cpu = dcd.make_patchable(dcd.load_model(name))
    gpu = dcd.make_patchable(dcd.load_model(name, device="cuda", dtype=dtype))
    return cpu, gpu


@CUDA
@pytest.mark.parametrize("method", ["eap", "eap-ig"])
@pytest.mark.parametrize("backend", ["fast", "hooks"])
def test_cuda_rows_equal_the_cpu_rows(method, backend):
    cpu, gpu = _cpu_and_cuda()
    examples = _pairs(8)
    A = dcd.attribute(cpu, make_loader(examples, 4), method=method, ig_steps=3,
                      progress=False, backend=backend)
    # an auto-circuit style loader on the CPU is moved too
    B = dcd.attribute(gpu, make_loader(examples, 4), method=method, ig_steps=3,
                      progress=False, backend=backend)
    assert B.scores.device.type == "cpu"
    # float32 on both; other kernels sum in other orders (no TF32: torch's default)
    torch.testing.assert_close(B.scores, A.scores, rtol=1e-4, atol=1e-5 * float(
        A.scores.abs().max()))


@CUDA
def test_cuda_bfloat16_rows_are_within_the_half_precision_bound():
    from test_half_precision import ROW_BOUND

    cpu, gpu = _cpu_and_cuda(dtype="bfloat16")
    examples = _pairs(8)
    A = dcd.attribute(cpu, make_loader(examples, 8), progress=False)
    B = dcd.attribute(gpu, make_loader(examples, 8, device="cuda"), progress=False)
    assert B.meta["backend"] == "fast"
    err = float(((B.scores - A.scores).norm(dim=1) / A.scores.norm(dim=1)).max())
    assert err <= ROW_BOUND[torch.bfloat16]


@CUDA
def test_cuda_circuits_and_faithfulness_live_on_the_model_device():
    from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores

    cpu, gpu = _cpu_and_cuda()
    examples = _pairs(12, seed=6)
    loader = make_loader(examples, 4, device="cuda")
    A = dcd.attribute(gpu, loader, progress=False)
    ps = A.prune_scores(model=gpu)
    assert {t.device.type for t in ps.values()} == {"cuda"}
    gd = dcd.GroupedDiscovery(n_clusters=2, random_state=0).fit(A)
    circuits = dcd.cluster_circuits(A, gd.labels_, model=gpu)
    assert {t.device.type for c in circuits.values()
            for t in c.to_prune_scores(device="cuda").values()} == {"cuda"}
    for base in (dcd.single_circuit(A, model=gpu), dcd.k_random_circuits(A, 2, model=gpu),
                 dcd.random_circuits(A, 1, model=gpu)):
        assert {t.device.type for c in base.values() for t in c.values()} == {"cuda"}
    # auto-circuit's own algorithm indexes the model's device with the loader's batches
    ref = mask_gradient_prune_scores(gpu, loader, None, grad_function="logit",
                                     answer_function="avg_diff", mask_val=0.0)
    assert {t.device.type for t in ref.values()} == {"cuda"}
    on_gpu = dcd.evaluate_circuits(gpu, loader, {"single": ps}, [0.1, 1.0])["single"]
    on_cpu = dcd.evaluate_circuits(cpu, make_loader(examples, 4), {"single": ps},
                                   [0.1, 1.0])["single"]
    np.testing.assert_allclose(on_gpu.mu_circuit, on_cpu.mu_circuit, rtol=1e-4, atol=1e-5)
    assert on_gpu.f[-1] == pytest.approx(1.0)


@CUDA
def test_cuda_runs_without_float64_on_the_device(monkeypatch):
    """Apple MPS has no float64: nothing may call .double() on a device tensor."""
    real = torch.Tensor.double

    def cpu_only(self, *args, **kwargs):
        if self.device.type != "cpu":
            raise AssertionError(f".double() on a {self.device} tensor")
        return real(self, *args, **kwargs)

    _, gpu = _cpu_and_cuda()
    loader = make_loader(_pairs(8), 4, device="cuda")
    monkeypatch.setattr(torch.Tensor, "double", cpu_only)
    A = dcd.attribute(gpu, loader, progress=False)
    gd = dcd.GroupedDiscovery(n_clusters=2, random_state=0).fit(A)
    circuits = dcd.cluster_circuits(A, gd.labels_, model=gpu)
    for ablation in ("resample", "mean", "zero"):
        dcd.evaluate_circuits(gpu, loader, circuits, [0.2, 1.0], ablation=ablation)


@CUDA
def test_cuda_main_job_in_bfloat16(tmp_path):
    from auto_circuit_dcd.cli import main

    data = _dataset_file(tmp_path / "d.json")
    out = tmp_path / "run"
    assert main(["run", "--model", "tiny-random-gqa", "--dataset", str(data), "--out",
                 str(out), "--quiet", "--batch-size", "4", "--max-clusters", "3",
                 "--edge-fractions", "0.1,1", "--device", "cuda", "--dtype", "bfloat16"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["single"]["faithfulness"][-1] == pytest.approx(1.0)

