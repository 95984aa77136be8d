"""Work over several processes with PyTorch's own runtime (``torchrun``, ``srun``).

1. :func:`launch_from_env` reads what the launcher set: ``torchrun`` (``RANK``,
   ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or SLURM's ``srun``
   (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``; the address of rank 0
   from ``MASTER_ADDR`` or the step's first host, the port from ``MASTER_PORT`` or the
   job id). Without either nothing changes: one process, no group.
2. :func:`process_group` initialises the default group from it (gloo on the CPU, nccl on
   CUDA with one device per local rank, :func:`worker_device`) and destroys it on exit;
   a group the caller initialised is left alone.
3. :func:`map_shards`: the items (batches) are split over the ranks by :func:`assign`
   (largest first, each to the rank with the least work so far, by a weight such as
   examples x tokens; equal weights give rank ``r`` of ``W`` items ``r, r + W, ...``);
   every rank gets every item's result, in item order; a failure on any rank is raised on
   every rank (the failing rank its own exception, the others :class:`WorkerFailed`),
   so no rank waits for one that gave up. Without a group (or with one process) it is a
   plain loop over all items.
4. :func:`from_main` / :func:`main_first`: rank 0 does something first (takes a lock,
   writes a file) and the others get its value or its exception.
5. :class:`Handoff`: rank 0 sends, in order, what the other ranks wait for (the circuits,
   then the report); if rank 0 fails before its last send, the waiting ranks receive
   its exception and end too.

Collectives carry Python objects (pickled by ``torch.distributed``); the wait for rank 0
is bounded by :data:`TIMEOUT_ENV` seconds (default :data:`DEFAULT_TIMEOUT_S`).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from auto_circuit_dcd.errors import ConfigError, WorkerFailed

__all__ = ["Launch", "launch_from_env", "process_group", "worker_device", "is_distributed",
           "rank", "world_size", "is_main", "assign", "shard", "map_shards", "all_gather",
           "broadcast",
           "barrier", "from_main", "main_first", "Handoff", "WorkerFailed", "TIMEOUT_ENV",
           "DEFAULT_TIMEOUT_S"]

T = TypeVar("T")
#: seconds a rank waits in one collective (for rank 0's clustering, say) before failing
TIMEOUT_ENV = "AUTO_CIRCUIT_DCD_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 3600
#: attribute set on an exception that every rank raises (so it is not sent again)
_EVERY_RANK = "_dcd_raised_on_every_rank"
_SLURM_PORT_BASE = 29500


# ----------------------------------------------------------------------------- launch
@dataclass(frozen=True)
class Launch:
    """One process's place in a launch: its rank, the world, its rank on this host."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"{name}={env[name]!r} is not a whole number") from None


def _slurm_first_host(env: Mapping[str, str]) -> str:
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
    if nodes and not any(c in nodes for c in "[,"):
        return nodes
    if nodes and shutil.which("scontrol"):
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True,
                             text=True, check=False).stdout.split()
        if out:
            return out[0]
    raise ConfigError("under srun, rank 0's address could not be found from "
                      f"SLURM_STEP_NODELIST={nodes!r}: export MASTER_ADDR=<first host>")


def launch_from_env(env: Mapping[str, str] | None = None) -> Launch | None:
    """The launch this process belongs to, from torchrun's or srun's variables, or None."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        world = _int(env, "WORLD_SIZE")
        if world <= 1:
            return None
        return Launch(_int(env, "RANK"), world, int(env.get("LOCAL_RANK", "0")),
                      env.get("MASTER_ADDR", "127.0.0.1"),
                      int(env.get("MASTER_PORT", str(_SLURM_PORT_BASE))), "torchrun")
    if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        world = _int(env, "SLURM_STEP_NUM_TASKS")
        if world <= 1:
            return None
        port = env.get("MASTER_PORT")
        job = int(env.get("SLURM_JOB_ID", "0") or 0)
        return Launch(_int(env, "SLURM_PROCID"), world, int(env.get("SLURM_LOCALID", "0")),
                      env.get("MASTER_ADDR") or _slurm_first_host(env),
                      int(port) if port else _SLURM_PORT_BASE + job % 20000, "srun")
    return None


def _timeout() -> timedelta:
    return timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))


def worker_device(device: str = "auto") -> str:
    """The device name this process uses: ``cuda:LOCAL_RANK`` for ``"auto"``/``"cuda"`` in
    a launch on a CUDA machine (one GPU per local rank), else ``device`` unchanged."""
    import torch

    launch = launch_from_env()
    if launch is None or str(device) not in ("auto", "cuda") or not torch.cuda.is_available():
        return str(device)
    return f"cuda:{launch.local_rank % torch.cuda.device_count()}"


@contextmanager
def process_group(device: str = "auto") -> Iterator[Launch | None]:
    """The default process group for the block, from the launcher's variables.

    Yields the :class:`Launch` (None without one: nothing is initialised). nccl where the
    workers run on CUDA (each on ``cuda:LOCAL_RANK``), gloo otherwise. A group that is
    already initialised is used as it is and left alone.
    """
    import torch
    import torch.distributed as tdist

    launch = launch_from_env()
    if launch is None or (tdist.is_available() and tdist.is_initialized()):
        yield launch
        return
    if not tdist.is_available():
        raise ConfigError("this torch build has no torch.distributed: run in one process")
    name = worker_device(device)
    on_cuda = name.startswith("cuda")
    if on_cuda:
        torch.cuda.set_device(torch.device(name))
    tdist.init_process_group(
        backend="nccl" if on_cuda else "gloo",
        init_method=f"tcp://{launch.master_addr}:{launch.master_port}",
        rank=launch.rank, world_size=launch.world_size, timeout=_timeout())
    ok = False
    try:
        yield launch
        ok = True
    finally:
        if ok:
            tdist.barrier()  # no rank leaves while another still reads what it sent
        tdist.destroy_process_group()


# ----------------------------------------------------------------------------- ranks
def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    import torch.distributed as tdist

    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as tdist

    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    import torch.distributed as tdist

    return tdist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return rank() == 0


def assign(weights: Sequence[float], n_ranks: int) -> list[list[int]]:
    """Items per rank (each list ascending): largest weight first, each to the rank with
    the least weight so far (the lowest rank on ties); the same on every rank."""
    loads = [0.0] * n_ranks
    out: list[list[int]] = [[] for _ in range(n_ranks)]
    for i in sorted(range(len(weights)), key=lambda i: (-float(weights[i]), i)):
        r = min(range(n_ranks), key=lambda r: (loads[r], r))
        out[r].append(i)
        loads[r] += float(weights[i])
    return [sorted(items) for items in out]


def shard(n_items: int, weights: Sequence[float] | None = None) -> list[int]:
    """The items this rank does (:func:`assign`; equal weights if none are given)."""
    return assign([1.0] * n_items if weights is None else weights, world_size())[rank()]


# ----------------------------------------------------------------------------- collectives
def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    import torch.distributed as tdist

    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    tdist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any = None, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    import torch.distributed as tdist

    if not is_distributed():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    import torch.distributed as tdist

    if is_distributed():
        tdist.barrier()


def _portable(err: BaseException) -> BaseException:
    """``err`` if it pickles, else a :class:`WorkerFailed` with its text."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - any exception that cannot travel is sent as text
        return WorkerFailed(f"{type(err).__name__}: {err}")


def _raise_everywhere(outcomes: Sequence[Any], own: BaseException | None) -> None:
    """If a rank failed, raise on every rank: its own exception (``own``, with its
    traceback) there, WorkerFailed on the others."""
    failed = [(r, o) for r, o in enumerate(outcomes) if isinstance(o, BaseException)]
    if not failed:
        return
    err: BaseException
    if own is not None:
        err = own
    else:
        r, o = failed[0]
        err = WorkerFailed(f"rank {r} of {len(outcomes)} failed ({type(o).__name__}: {o}); "
                           "this rank stops too")
    setattr(err, _EVERY_RANK, True)
    raise err


def map_shards(n_items: int, fn: Callable[[list[int]], dict[int, T]], split: bool = True,
               weights: Sequence[float] | None = None) -> dict[int, T]:
    """``fn(items)`` (item -> result) on this rank's :func:`shard` (by ``weights``, the
    work of each item), gathered: every rank gets ``{item: result}`` for all ``n_items``,
    in item order.

    ``split=False``: every rank does every item (work that cannot be split). An exception
    on any rank is raised on every rank (module docstring, step 3).
    """
    if not is_distributed():
        return fn(list(range(n_items)))
    mine = shard(n_items, weights) if split else list(range(n_items))
    outcome: Any
    own: BaseException | None = None
    try:
        outcome = fn(mine)
    except Exception as err:  # noqa: BLE001 - sent to the others, then raised here
        own, outcome = err, _portable(err)
    if not split:
        _raise_everywhere(all_gather(outcome if own is not None else None), own)
        return outcome
    outcomes = all_gather(outcome)
    _raise_everywhere(outcomes, own)
    merged: dict[int, T] = {}
    for part in outcomes:
        merged.update(part)
    return {i: merged[i] for i in range(n_items)}


def from_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only; its value (or exception) on every rank."""
    if not is_distributed():
        return fn()
    outcome: Any = None
    if is_main():
        try:
            outcome = fn()
        except Exception as err:  # noqa: BLE001 - sent to the others, then raised here
            outcome = _portable(err)
            broadcast(outcome)
            setattr(err, _EVERY_RANK, True)
            raise
    outcome = broadcast(outcome)
    if isinstance(outcome, BaseException):
        setattr(outcome, _EVERY_RANK, True)
        raise outcome
    return outcome


def main_first(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, then, if it succeeded, on the other ranks (rank 0's exception
    raised on every rank). For work whose first run prepares the others' (a lock taken,
    a damaged cache file removed)."""
    if not is_distributed():
        return fn()
    box: list[T] = []
    from_main(lambda: box.append(fn()))  # only success or the exception travels
    return box[0] if is_main() else fn()


class Handoff:
    """Rank 0 sends, in order, what the other ranks wait for (module docstring, step 5).

    Every rank calls ``open()`` at the point where the others start waiting; then
    ``send(obj)`` on rank 0, ``receive()`` on the others (raises rank 0's exception if it
    failed instead); after ``send(obj, last=True)`` nothing more is sent. Use as a context
    manager on every rank: an exception on rank 0 between ``open()`` and its last send is
    sent to the ranks waiting for it (unless every rank raised it already).
    """

    def __init__(self) -> None:
        self.closed = True

    def open(self) -> None:
        self.closed = not is_distributed()

    def __enter__(self) -> Handoff:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if (exc is not None and is_main() and not self.closed
                and isinstance(exc, Exception) and not getattr(exc, _EVERY_RANK, False)):
            self.closed = True
            broadcast((False, _portable(exc)))

    def send(self, obj: Any, last: bool = False) -> None:
        if self.closed:
            return
        broadcast((True, obj))
        self.closed = last

    def receive(self) -> Any:
        ok, obj = broadcast(None)
        if not ok:
            setattr(obj, _EVERY_RANK, True)
            raise obj
        return obj
