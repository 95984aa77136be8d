"""The attribution cache never hands back wrong rows: damaged or foreign files are found and
recomputed, the key covers weights and config, ids and groups come from the current data.

The oracle throughout is the same attribution computed without a cache (or on the changed
model without a cache), compared with ``torch.testing.assert_close``' float32 defaults:
the same computation in one process, so only reordering noise can differ.
"""

import shutil
import warnings
from dataclasses import replace

import pytest
import torch
from conftest import nan_row_for_first, random_examples
from safetensors import safe_open
from safetensors.torch import save_file

import auto_circuit_dcd as dcd
from auto_circuit_dcd.attribution import front as attribution
from auto_circuit_dcd.data import make_loader
from auto_circuit_dcd.errors import FolderBusyError, NonFiniteRowsError
from auto_circuit_dcd.files import folder_lock


@pytest.fixture
def counted(monkeypatch):
    """Counts batches computed by the hooks backend; ``stop_at`` interrupts that call."""
    real = attribution.BACKENDS["hooks"]
    state = {"calls": 0, "stop_at": None}

    def backend(*args, **kwargs):
        state["calls"] += 1
        if state["calls"] == state["stop_at"]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setitem(attribution.BACKENDS, "hooks", backend)
    return state


def run(pm, loader, cache, **kw):
    return dcd.attribute(pm, loader, cache_dir=cache, progress=False, backend="hooks", **kw)


def folder(cache):
    (d,) = list(cache.glob("attribution-*"))
    return d


def interrupted(pm, loader, cache, counted, stop_at):
    """Leave the batches before ``stop_at`` on disk, as a killed run does."""
    counted["stop_at"] = stop_at
    with pytest.raises(KeyboardInterrupt):
        run(pm, loader, cache)
    counted.update(calls=0, stop_at=None)
    return folder(cache)


@pytest.fixture
def loader():
    return make_loader(random_examples(6, lengths=(6,), seed=9), batch_size=2)  # 3 batches


@pytest.fixture
def reference(tiny_pm, loader):
    return dcd.attribute(tiny_pm, loader, progress=False, backend="hooks")


def rewrite(path, change):
    """Rewrite a cache file with changed tensors under its original (valid) metadata."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(change(tensors), str(path), metadata=meta)


def test_damaged_batch_files_are_named_and_recomputed(tiny_pm, loader, reference, counted,
                                                      tmp_path):
    d = interrupted(tiny_pm, loader, tmp_path, counted, stop_at=3)
    b0, b1 = d / "batch-000000.safetensors", d / "batch-000001.safetensors"
    b0.write_bytes(b0.read_bytes()[:40])  # truncated
    b1.write_bytes(b"\x00garbage" * 20)  # garbage
    with pytest.warns(UserWarning) as caught:
        A = run(tiny_pm, loader, tmp_path)
    text = " ".join(str(w.message) for w in caught)
    assert str(b0) in text and str(b1) in text and "unreadable" in text
    assert counted["calls"] == 3  # both damaged batches and the missing one
    torch.testing.assert_close(A.scores, reference.scores)


@pytest.mark.parametrize("damage, why", [
    ("copied", "another batch"),
    ("negated", "checksum"),
])
def test_batch_files_with_valid_headers_but_wrong_values_are_refused(
        tiny_pm, loader, reference, counted, tmp_path, damage, why):
    d = interrupted(tiny_pm, loader, tmp_path, counted, stop_at=3)
    b0, b1 = d / "batch-000000.safetensors", d / "batch-000001.safetensors"
    if damage == "copied":
        shutil.copy(b0, b1)
    else:
        rewrite(b1, lambda t: {**t, "rows": -t["rows"]})
    with pytest.warns(UserWarning, match=why):
        A = run(tiny_pm, loader, tmp_path)
    assert counted["calls"] == 2  # batch 1 again, and batch 2
    torch.testing.assert_close(A.scores, reference.scores)


@pytest.mark.parametrize("damage", ["truncated", "negated"])
def test_a_damaged_finished_matrix_is_named_and_recomputed(tiny_pm, loader, reference, counted,
                                                           tmp_path, damage):
    run(tiny_pm, loader, tmp_path)
    rows = folder(tmp_path) / "rows.safetensors"
    assert sorted(p.name for p in folder(tmp_path).iterdir()) == ["rows.safetensors"]
    if damage == "truncated":
        rows.write_bytes(rows.read_bytes()[:-7])
    else:
        rewrite(rows, lambda t: {**t, "rows": -t["rows"]})
    counted["calls"] = 0
    with pytest.warns(UserWarning, match=str(rows)):
        A = run(tiny_pm, loader, tmp_path)
    assert counted["calls"] == 3
    torch.testing.assert_close(A.scores, reference.scores)
    counted["calls"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = run(tiny_pm, loader, tmp_path)  # the rewritten file is good
    assert counted["calls"] == 0
    torch.testing.assert_close(again.scores, reference.scores)


def test_ids_and_groups_come_from_the_current_dataset(tiny_pm, counted, tmp_path):
    examples = random_examples(6, lengths=(6,), seed=9, groups=["a", "b"])
    run(tiny_pm, make_loader(examples, 2), tmp_path)
    renamed = [replace(e, id=f"renamed-{e.id}", group={"a": "x", "b": "y"}[e.group])
               for e in examples]
    counted["calls"] = 0
    A = run(tiny_pm, make_loader(renamed, 2), tmp_path)
    assert counted["calls"] == 0  # same tokens: the cached rows are used
    assert A.example_ids == [f"renamed-{i}" for i in range(6)]
    assert A.groups == ["x", "y"] * 3


def _swap_beyond_4096(model, a, b):
    """Swap two unembedding values of row 14 (flat positions above 4096; sum unchanged)."""
    W = model.wrapped_model.unembed.W_U.data
    W[14, a], W[14, b] = W[14, b].clone(), W[14, a].clone()


def test_the_key_reads_every_weight_value(counted, tmp_path):
    pm = dcd.make_patchable(dcd.load_model("tiny-random", d_vocab=300))
    assert pm.wrapped_model.unembed.W_U.numel() == 4800
    examples = random_examples(4, lengths=(6,), seed=3, d_vocab=300, n_wrong=1)
    loader = make_loader(examples, batch_size=4)
    before = run(pm, loader, tmp_path)
    a, b = int(examples[0].answers[0]), int(examples[0].wrong_answers[0])
    _swap_beyond_4096(pm, a, b)
    after = run(pm, loader, tmp_path)
    fresh = dcd.attribute(pm, loader, progress=False, backend="hooks")
    torch.testing.assert_close(after.scores, fresh.scores)
    assert (after.scores[0] - before.scores[0]).abs().max() > 1e-3  # the swap matters


def test_the_key_reads_the_model_config(counted, tmp_path):
    gelu = dcd.make_patchable(dcd.load_model("tiny-random"))
    relu_model = dcd.load_model("tiny-random", act_fn="relu")
    relu_model.load_state_dict(gelu.wrapped_model.state_dict(), strict=False)
    relu = dcd.make_patchable(relu_model)
    loader = make_loader(random_examples(4, lengths=(6,), seed=4), batch_size=4)
    with_gelu = run(gelu, loader, tmp_path)
    with_relu = run(relu, loader, tmp_path)
    fresh = dcd.attribute(relu, loader, progress=False, backend="hooks")
    torch.testing.assert_close(with_relu.scores, fresh.scores)
    assert (with_relu.scores - with_gelu.scores).abs().max() > 1e-3


def test_nan_tolerance_is_applied_to_cached_rows(tiny_pm, tmp_path):
    examples = random_examples(4, lengths=(6,), seed=8)
    loader = make_loader(examples, batch_size=2)
    with nan_row_for_first(tiny_pm, examples):
        with pytest.warns(UserWarning, match="dropping 1 example"):
            A = run(tiny_pm, loader, tmp_path, nan_tolerance=0.5)
        assert A.n_examples == 3
        with pytest.raises(NonFiniteRowsError, match="ids \\[0\\]"):
            run(tiny_pm, loader, tmp_path, nan_tolerance=0.0)


def test_a_cache_folder_in_use_is_refused_and_temporaries_are_removed(tiny_pm, loader,
                                                                      tmp_path):
    run(tiny_pm, loader, tmp_path)
    d = folder(tmp_path)
    leftover = d / ".batch-000001.safetensors.4242.tmp"
    leftover.write_bytes(b"half a file")
    with folder_lock(d):
        with pytest.raises(FolderBusyError, match=f"{d} is in use by another"):
            run(tiny_pm, loader, tmp_path)
    assert leftover.exists()  # nothing was touched while the folder was in use
    run(tiny_pm, loader, tmp_path)
    assert not leftover.exists()
