"""Several workers under torchrun (2 CPU processes, gloo): the same results as one process,
every rank ending when one fails, and a killed worker's run resumed from the cache.

Both sides compute the same batches with the same code on the same processor, one thread
each (torch and BLAS: torchrun sets OMP_NUM_THREADS=1 in its workers, :func:`one_thread`
does the same here), and gathered rows travel as pickled tensors. What must match exactly
does (labels, example ids, edge sets, integers); floats are compared to a relative 1e-6:
clustering statistics differed in their 16th digit between the two runs on one CI machine,
likely because vectorised sums can depend on how an array is aligned in memory, which
differs between processes.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_examples

import auto_circuit_dcd as dcd
from auto_circuit_dcd.distributed import Launch, launch_from_env
from auto_circuit_dcd.files import folder_lock

TESTS = Path(__file__).parent
ROOT = TESTS.parent
#: a small grid on the toy model: 2 clusters at most, cross-faithfulness at 0.05
TOY = ["run", "--quiet", "--threads", "1", "--max-clusters", "2",
       "--edge-fractions", "0.05,0.2,1"]
#: what differs between two runs of the same job: the folder, the clock, the worker count
VARYING = {"config", "timings", "world_size"}


def torchrun(*args, timeout=240):
    """``torchrun --standalone --nproc-per-node 2 --no-python ARGS`` (a free port; the
    whole process group killed if it outlives ``timeout``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
           "AUTO_CIRCUIT_DCD_TIMEOUT_S": "120", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", "2", "--no-python", *map(str, args)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"torchrun still running after {timeout} s: {cmd}")
    return proc.returncode, out


def console_script():
    """The installed ``auto-circuit-dcd`` command (as the README runs it)."""
    path = Path(sys.executable).with_name("auto-circuit-dcd")
    if not path.exists():
        pytest.skip("the auto-circuit-dcd console script is not installed beside python")
    return path


def one_thread():
    """BLAS on one thread in this process too (numpy's sums, hence clustering statistics,
    depend on the thread count in their last digits)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


#: float agreement between processes: far below any figure the report rounds to
REL, ABS = 1e-6, 1e-9


def assert_match(got, want, where="report"):
    """``got == want`` with floats (and NaN) to REL/ABS; everything else exactly."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            assert_match(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_match(g, w, f"{where}[{i}]")
    elif isinstance(want, float) or isinstance(got, float):
        assert got == pytest.approx(want, rel=REL, abs=ABS, nan_ok=True), where
    elif isinstance(want, (torch.Tensor, np.ndarray)):
        g, w = torch.as_tensor(got), torch.as_tensor(want)
        if w.is_floating_point():
            torch.testing.assert_close(g, w, rtol=REL, atol=ABS, equal_nan=True, msg=where)
        else:
            assert torch.equal(g, w), where
    else:
        assert got == want, where


def report_of(out):
    rep = json.loads((Path(out) / "report.json").read_text())
    return {k: v for k, v in rep.items() if k not in VARYING}, rep


# ----------------------------------------------------------------------- launch
def test_the_launch_is_read_from_torchrun_and_srun_variables():
    torchrun_env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                    "MASTER_ADDR": "node0", "MASTER_PORT": "29400"}
    assert launch_from_env(torchrun_env) == Launch(3, 4, 1, "node0", 29400, "torchrun")
    srun_env = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
                "SLURM_STEP_NODELIST": "gpu07", "SLURM_JOB_ID": "123456"}
    # port: 29500 + job id mod 20000 = 29500 + 3456
    assert launch_from_env(srun_env) == Launch(5, 8, 1, "gpu07", 32956, "srun")
    assert launch_from_env({**srun_env, "MASTER_ADDR": "10.0.0.2"}).master_addr == "10.0.0.2"
    # one process, or a batch script's own step (no srun step): nothing to set up
    assert launch_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert launch_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) is None
    assert launch_from_env({}) is None


# ----------------------------------------------------------------------- library
@pytest.mark.slow
def test_the_library_in_a_process_group_gives_every_rank_the_single_process_result(tmp_path):
    """attribute and evaluate_circuits on 2 ranks (5 batches: 3 on rank 0, 2 on rank 1)
    return, on both ranks, what one process returns; faults end every rank with the error."""
    pm = dcd.make_patchable(dcd.load_model("tiny-random"))
    loader = dcd.make_loader(random_examples(13, lengths=(6,)), batch_size=3)
    busy = tmp_path / "busy"
    A = dcd.attribute(pm, loader, cache_dir=busy, progress=False)
    ref = dcd.evaluate_circuits(pm, loader, {"mean": A.scores.mean(0)}, [0.1, 0.5, 1.0])["mean"]
    [cache_folder] = busy.glob("attribution-*")
    with folder_lock(cache_folder, what="attribution"), folder_lock(tmp_path / "busy-run"):
        code, log = torchrun(sys.executable, TESTS / "dist_worker.py", "library", tmp_path)
    assert code == 0, log
    for r in (0, 1):
        got = torch.load(tmp_path / f"rank-{r}.pt", weights_only=False)
        assert got["world_size"] == 2
        assert got["ids"] == A.example_ids
        assert_match(got["scores"], A.scores, "scores")
        assert_match(got["clean_metric"], A.meta["clean_metric"], "clean_metric")
        assert_match(got["mu"], ref.mu_circuit, "mu")
        assert_match(got["mu_full"], ref.mu_full, "mu_full")
        assert_match(got["f"], ref.f, "f")
    # the ranks wrote their batches into one cache; rank 0 then the finished rows
    [shared] = (tmp_path / "cache").glob("attribution-*")
    assert [p.name for p in shared.glob("*.safetensors")] == ["rows.safetensors"]
    err0, err1 = (json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1))
    assert err1["map_shards"] == "ValueError: boom on rank 1"
    assert err0["map_shards"].startswith("WorkerFailed: rank 1 of 2 failed (ValueError: boom")
    assert err0["from_main"] == err1["from_main"] == "ConfigError: bad value on rank 0"
    for e in (err0, err1):
        assert e["busy_cache"].startswith(f"FolderBusyError: {cache_folder} is in use by "
                                          f"another attribution (process {os.getpid()})")
        assert e["busy_run"].startswith("FolderBusyError: ") and "another run" in e["busy_run"]
    assert err1["handoff"] == err0["handoff"] == "ClusteringError: no two distinct rows"


# ----------------------------------------------------------------------- the main job
@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The toy job in one process, counting the attribution batches it computes."""
    from auto_circuit_dcd.attribution import front as attribution
    from auto_circuit_dcd.cli import main

    out = tmp_path_factory.mktemp("single")
    calls = []
    saved = dict(attribution.BACKENDS)
    attribution.BACKENDS.update({k: (lambda *a, _f=f, **kw: calls.append(1) or _f(*a, **kw))
                                 for k, f in saved.items()})
    try:
        with one_thread():
            assert main(TOY + ["--out", str(out)]) == 0
    finally:
        attribution.BACKENDS.update(saved)
    return out, len(calls)


def saved(out):
    from safetensors.torch import load_file

    return {name: load_file(str(out / name)) for name in (
        "circuits.safetensors", "attribution_train/scores.safetensors",
        "attribution_test/scores.safetensors") if (out / name).exists()}


@pytest.mark.slow
def test_two_workers_under_torchrun_write_the_single_process_outputs(tmp_path, single_run):
    """The README's command: report.json (labels, circuits, faithfulness numbers) and the
    saved circuits and matrices equal one process's; report.json records 2 workers."""
    ref_out, _ = single_run
    out = tmp_path / "two"
    code, log = torchrun(console_script(), *TOY, "--out", out)
    assert code == 0, log
    got, full = report_of(out)
    want, _ = report_of(ref_out)
    assert_match(got, want)
    assert full["world_size"] == 2
    assert set(full["timings"]) >= {"attribution", "clustering", "evaluation"}
    a, b = saved(out), saved(ref_out)
    assert a.keys() == b.keys() and "circuits.safetensors" in a
    for name in a:
        for key in a[name]:
            assert_match(a[name][key], b[name][key], f"{name}:{key}")


@pytest.mark.slow
def test_a_worker_killed_mid_attribution_loses_only_its_batch_in_flight(tmp_path, single_run,
                                                                        monkeypatch):
    """Rank 1 is killed as it starts its 2nd batch: torchrun ends rank 0; rank 1's first
    batch is in the cache and the one in flight is not; the same command in one process
    then computes only the batches not cached and writes the single-process report."""
    from safetensors import safe_open

    from auto_circuit_dcd.attribution import front as attribution
    from auto_circuit_dcd.cli import main

    ref_out, n_batches = single_run
    out, started = tmp_path / "killed", tmp_path / "started.txt"
    code, log = torchrun(sys.executable, TESTS / "dist_worker.py", "die-at-batch", 2, started,
                         *TOY, "--out", out)
    assert code != 0, log
    assert not (out / "report.json").exists()
    [cache] = (out / "cache").glob("attribution-*")
    names = {p.name for p in cache.glob("*.safetensors")}
    assert "rows.safetensors" not in names
    cached = set()
    for name in names:
        with safe_open(str(cache / name), framework="pt") as f:
            cached.add(f.metadata()["batch_key"])
    finished, in_flight = started.read_text().split()  # the tokens digests rank 1 started
    assert finished in cached and in_flight not in cached
    calls = []
    for k, f in dict(attribution.BACKENDS).items():
        monkeypatch.setitem(attribution.BACKENDS, k,
                            lambda *a, _f=f, **kw: calls.append(1) or _f(*a, **kw))
    with one_thread():
        assert main(TOY + ["--out", str(out)]) == 0
    assert len(calls) == n_batches - len(names)
    assert_match(report_of(out)[0], report_of(ref_out)[0])


def test_batches_are_split_by_size_largest_first():
    from auto_circuit_dcd.distributed import assign

    # SmolLM2's 64 IOI prompts in batches of 8 (by length): 32 examples each, not 37 / 27
    assert assign([8, 8, 8, 8, 8, 3, 8, 8, 5], 2) == [[0, 2, 4, 7], [1, 3, 5, 6, 8]]
    assert assign([1] * 5, 2) == [[0, 2, 4], [1, 3]]  # equal sizes: round robin
    assert assign([2, 1], 3) == [[0], [1], []]


def test_the_comparison_tolerates_rounding_only():
    """assert_match lets floats differ in their last digits and nothing else."""
    want = {"labels": [0, 1, 1], "gap": 1.131973903636057, "f": torch.tensor([0.5, float("nan")])}
    assert_match({"labels": [0, 1, 1], "gap": 1.1319739036360579,
                  "f": torch.tensor([0.5 + 1e-8, float("nan")])}, want)
    for wrong in ({**want, "labels": [0, 1, 0]}, {**want, "gap": 1.1320},
                  {**want, "f": torch.tensor([0.5, 0.0])}, {**want, "extra": 1}):
        with pytest.raises(AssertionError):
            assert_match(wrong, want)
