"""Files written whole or not at all, checked when read, and folders used by one process at a time.

1. :func:`atomic_path` yields a temporary path beside the destination (same folder, so
   the rename is atomic), created empty with the mode a plain ``open()`` gives (``0o666``
   less the umask); when the block ends normally the file is given that mode again (a
   writer that makes its own file, as safetensors does with ``0o600``, changes it),
   flushed to disk and renamed over the destination; on any exit by an exception
   (``KeyboardInterrupt`` included) the temporary file is removed and the destination is
   left as it was. :func:`write_text` and :func:`save_tensors` write through it, so every
   output has one mode.
2. :func:`digest` / :func:`tensor_digest` / :func:`file_digest`: xxh3-128 of bytes, of
   tensors' contents (any device, any dtype, read in chunks) and of a file. They are
   checksums and cache keys against damage and stale data, not against an attacker.
3. :func:`folder_lock`: an exclusive advisory lock on ``folder/.lock``, taken without
   waiting (a second process gets :class:`~auto_circuit_dcd.errors.FolderBusyError`
   naming the folder and the holder's process id). The lock file is removed when the
   block ends, normally or by an exception; the lock is removed while still held, and a
   process that locked a file since removed tries again, so two processes never both
   hold a folder. A process killed mid-block leaves the file, naming it, but the
   operating system releases the lock itself, so the next process takes it at once.
4. :func:`save_bundle` / :func:`load_bundle`: tensors with a JSON sidecar in one folder,
   the JSON written last with the tensors' checksum, checked on read.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from auto_circuit_dcd.errors import DamagedFileError, FolderBusyError

__all__ = ["atomic_path", "write_text", "save_tensors", "remove_temporaries", "digest",
           "tensor_digest", "file_digest", "folder_lock", "save_bundle", "load_bundle",
           "LOCK_FILE"]

LOCK_FILE = ".lock"
_TMP_SUFFIX = ".tmp"
#: bytes read at a time when hashing a tensor or a file (bounds the extra memory)
_CHUNK = 1 << 26


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """A temporary path to write ``dest`` through; renamed over ``dest`` on success.

    The file ends with the mode ``open(dest, "w")`` would give a new file (``0o666`` less
    the umask), whichever way the block writes it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
        mode = stat.S_IMODE(os.stat(tmp).st_mode)  # what the umask leaves of 0o666
        yield tmp
        os.chmod(tmp, mode)
        _fsync(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(dest: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` whole or not at all."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)


def save_tensors(dest: str | Path, tensors: Mapping[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors file whole or not at all (tensors moved to the CPU first)."""
    from safetensors.torch import save_file

    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(dest) as tmp:
        save_file(data, str(tmp), metadata=metadata)
    return Path(dest)


def remove_temporaries(folder: str | Path, recursive: bool = False) -> int:
    """Remove temporary files that :func:`atomic_path` left in ``folder`` (and below it, if
    ``recursive``) when a process was killed mid-write; returns how many. Call it only
    while holding the folder's lock."""
    n = 0
    pattern = f".*{_TMP_SUFFIX}"
    for p in (Path(folder).rglob(pattern) if recursive else Path(folder).glob(pattern)):
        p.unlink(missing_ok=True)
        n += 1
    return n


# ----------------------------------------------------------------------------- digests
def _hasher() -> Any:
    import xxhash

    return xxhash.xxh3_128()


def _tensor_chunks(t: torch.Tensor) -> Iterable[memoryview]:
    flat = t.detach().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    step = max(1, _CHUNK // max(1, flat.element_size()))
    for start in range(0, flat.numel(), step):
        part = flat[start:start + step]
        if part.device.type != "cpu":
            part = part.cpu()
        yield part.contiguous().view(torch.uint8).numpy().data


def digest(*parts: bytes | str) -> str:
    """Hex digest of the parts, each length-prefixed (so ``("ab", "c") != ("a", "bc")``)."""
    h = _hasher()
    for part in parts:
        b = part.encode() if isinstance(part, str) else part
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def tensor_digest(*tensors: torch.Tensor) -> str:
    """Hex digest of the tensors' dtypes, shapes and bytes (every value is read)."""
    h = _hasher()
    for t in tensors:
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        for chunk in _tensor_chunks(t):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """Hex digest of a file's bytes, read in chunks."""
    h = _hasher()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- locks
def _try_lock(f: Any) -> bool:
    if sys.platform == "win32":  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(f: Any) -> None:
    if sys.platform == "win32":  # pragma: no cover - Windows
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextmanager
def folder_lock(folder: str | Path, what: str = "run") -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if needed) for the block.

    ``what`` names the holder in the error, e.g. "run" or "attribution".
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    f = _take_lock(path, folder, what)
    try:
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield folder
    finally:
        try:
            path.unlink(missing_ok=True)  # still held: no one can take it in between
        except OSError:  # pragma: no cover - Windows cannot remove an open file
            pass
        _unlock(f)
        f.close()


def _take_lock(path: Path, folder: Path, what: str) -> Any:
    """The open lock file ``path``, locked by this process; ``FolderBusyError`` if another
    process holds it. A file removed by its releasing holder between our open and our
    lock is a dead end (a new one may already be held): open the path again."""
    while True:
        f = open(path, "a+")
        if not _try_lock(f):
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise FolderBusyError(
                f"{folder} is in use by another {what} (process {holder}): wait for it to "
                "finish, or write into another folder")
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(f.fileno()), current):
            return f
        _unlock(f)
        f.close()


# ----------------------------------------------------------------------------- bundles
def save_bundle(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: dict[str, Any],
                tensors_file: str, meta_file: str) -> Path:
    """Write ``path/tensors_file`` then ``path/meta_file`` (with the tensors' checksum).

    The old sidecar is removed first, so an interrupted save leaves a folder that
    :func:`load_bundle` refuses, never a sidecar describing other tensors.
    """
    import json

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / meta_file).unlink(missing_ok=True)
    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_tensors(path / tensors_file, data)
    checksum = tensor_digest(*(data[k] for k in sorted(data)))
    write_text(path / meta_file, json.dumps({**meta, "checksum": checksum}))
    return path


def load_bundle(path: str | Path, tensors_file: str, meta_file: str, what: str,
                check: Callable[[dict[str, torch.Tensor], dict[str, Any]], None] | None = None,
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, meta)`` of a folder written by :func:`save_bundle`, checksum verified
    (:class:`~auto_circuit_dcd.errors.DamagedFileError` naming the folder otherwise).

    ``check(tensors, meta)``, if given, runs before the checksum: a caller's own checks
    (dtype, shape) name what is wrong more precisely than a checksum can.
    """
    import json

    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path / meta_file
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: not a saved {what} (or its save "
                                "was interrupted: save it again)")
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(path / tensors_file))
    except Exception as err:  # noqa: BLE001 - any unreadable pair is reported as such
        raise DamagedFileError(f"{path} holds no readable {what} "
                               f"({type(err).__name__}: {err})") from err
    if check is not None:
        check(tensors, meta)
    expected = meta.get("checksum")
    if expected is not None and expected != tensor_digest(*(tensors[k] for k in sorted(tensors))):
        raise DamagedFileError(f"{path / tensors_file} does not match its checksum in "
                               f"{meta_path}: save the {what} again")
    return tensors, meta
