"""Atomic writes, digests and folder locks (auto_circuit_dcd.files)."""

import os
import subprocess
import sys

import pytest
import torch

from auto_circuit_dcd.errors import FolderBusyError
from auto_circuit_dcd.files import atomic_path, digest, folder_lock, tensor_digest, write_text


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


def test_a_released_lock_leaves_no_file_also_after_an_error(tmp_path):
    with folder_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()
    with pytest.raises(ZeroDivisionError):
        with folder_lock(tmp_path):
            raise ZeroDivisionError
    assert not (tmp_path / ".lock").exists()
    with folder_lock(tmp_path):  # and it can be taken again
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_stale_lock_file_of_a_killed_process_does_not_block(tmp_path):
    """A holder killed mid-block cannot remove its file; the next process takes the
    lock at once (the operating system freed it), then removes the file."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".lock").read_text() == str(holder.pid)  # stale: a dead process
    with folder_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


def test_a_lock_file_removed_under_a_waiting_process_is_not_taken(tmp_path, monkeypatch):
    """The race a removed lock file opens: a process opens ``.lock``, the holder releases
    and removes it, a third process creates a new ``.lock`` and holds it; the first
    process's lock on the removed file must not count. Oracle: the first process ends
    refused, naming the third's holder, and never yields."""
    import auto_circuit_dcd.files as files

    real_try_lock = files._try_lock
    third = {}

    def try_lock_after_a_swap(f):
        if not third:  # between our open and our lock: the file is replaced and held
            (tmp_path / ".lock").unlink()
            third["file"] = open(tmp_path / ".lock", "a+")
            assert real_try_lock(third["file"])
            third["file"].write("4242")
            third["file"].flush()
        return real_try_lock(f)

    monkeypatch.setattr(files, "_try_lock", try_lock_after_a_swap)
    try:
        with pytest.raises(FolderBusyError, match="process 4242"):
            with folder_lock(tmp_path):
                raise AssertionError("took a lock on a removed file")
    finally:
        third["file"].close()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_written_file_has_the_mode_open_gives(tmp_path, umask):
    """Oracle: the mode ``open()`` gives a new file under the same umask."""
    import stat

    from auto_circuit_dcd.files import save_tensors

    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        expected = stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)
        assert expected == 0o666 & ~umask
        write_text(tmp_path / "a.json", "{}")
        save_tensors(tmp_path / "b.safetensors", {"x": torch.zeros(3)})
        with atomic_path(tmp_path / "c.bin") as tmp:
            tmp.unlink()  # a writer that makes its own file with another mode
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
    finally:
        os.umask(old)
    for name in ("a.json", "b.safetensors", "c.bin"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == expected, name
