"""Atomic writes, digests and folder locks (auto_circuit_dcd.files)."""

import os
import subprocess
import sys

import pytest
import torch

from auto_circuit_dcd.errors import FolderBusyError
from auto_circuit_dcd.files import (atomic_path, digest, folder_lock, tensor_digest,
                                    write_text)


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    dest = tmp_path / "report.json"
    write_text(dest, "old, whole")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(dest) as tmp:
            tmp.write_text("new, half")
            raise KeyboardInterrupt
    assert dest.read_text() == "old, whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    write_text(dest, "new, whole")
    assert dest.read_text() == "new, whole"


def test_digests_see_every_value_dtype_and_shape():
    x = torch.arange(10_000, dtype=torch.float32)
    swapped = x.clone()
    swapped[9000], swapped[9001] = x[9001], x[9000]  # same sum, past the first 4096
    assert tensor_digest(swapped) != tensor_digest(x)
    assert tensor_digest(x.view(100, 100)) != tensor_digest(x)
    assert tensor_digest(x.double()) != tensor_digest(x)
    assert tensor_digest(x.clone()) == tensor_digest(x)
    assert tensor_digest(x.to(torch.bfloat16)) == tensor_digest(x.to(torch.bfloat16).clone())
    assert digest("ab", "c") != digest("a", "bc")


HOLD = """
import sys, time
from auto_circuit_dcd.files import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_lock_held_by_another_process_is_refused_and_freed_when_it_dies(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match=f"process {holder.pid}"):
            with folder_lock(tmp_path):
                pass
    finally:
        holder.kill()  # killed, not released: the OS frees the lock
        holder.wait()
    with folder_lock(tmp_path):
        pass
