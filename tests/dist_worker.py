"""A torchrun worker for test_distributed.py (``--no-python python tests/dist_worker.py``).

``library OUT``: the library inside a process group on the tiny random model: each rank
saves what ``attribute`` and ``evaluate_circuits`` returned to it (``OUT/rank-R.pt``) and
the errors each fault gave it (``OUT/rank-R.json``).
``die-at-batch K LOG ARGS...``: the command line ``auto-circuit-dcd ARGS...``, with rank 1
killed (SIGKILL) when it starts its K-th attribution batch; the tokens digest of each batch
it starts is appended to LOG first.
"""

import json
import os
import signal
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
RANK = int(os.environ.get("RANK", "0"))


def library(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import random_examples

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd import distributed as dist
    from auto_circuit_dcd.errors import ClusteringError, ConfigError
    from auto_circuit_dcd.job.run_folder import RunFolder

    pm = dcd.make_patchable(dcd.load_model("tiny-random"))
    loader = dcd.make_loader(random_examples(13, lengths=(6,)), batch_size=3)  # 5 batches
    errors = {}
    with dist.process_group("cpu"):
        A = dcd.attribute(pm, loader, cache_dir=out / "cache", progress=False)
        res = dcd.evaluate_circuits(pm, loader, {"mean": A.scores.mean(0)}, [0.1, 0.5, 1.0])
        torch.save({"scores": A.scores, "ids": A.example_ids,
                    "clean_metric": A.meta["clean_metric"], "f": res["mean"].f,
                    "mu": res["mean"].mu_circuit, "mu_full": res["mean"].mu_full,
                    "world_size": dist.world_size()}, out / f"rank-{RANK}.pt")

        def fails_on_rank_1(items):
            if dist.rank() == 1:
                raise ValueError("boom on rank 1")
            return {i: i for i in items}

        def fails_on_rank_0():
            raise ConfigError("bad value on rank 0")

        for name, call in (("map_shards", lambda: dist.map_shards(4, fails_on_rank_1)),
                           ("from_main", lambda: dist.from_main(fails_on_rank_0)),
                           ("busy_cache", lambda: dcd.attribute(pm, loader, progress=False,
                                                                cache_dir=out / "busy")),
                           ("busy_run", lambda: RunFolder(out / "busy-run").hold().__enter__())):
            try:
                call()
                errors[name] = None
            except Exception as err:  # noqa: BLE001 - recorded for the test to check
                errors[name] = f"{type(err).__name__}: {err}"
        try:
            with dist.Handoff() as handoff:
                handoff.open()
                if dist.is_main():
                    raise ClusteringError("no two distinct rows")
                handoff.receive()
        except Exception as err:  # noqa: BLE001
            errors["handoff"] = f"{type(err).__name__}: {err}"
    (out / f"rank-{RANK}.json").write_text(json.dumps(errors))


def die_at_batch(k: int, log: Path, args: list) -> int:
    from auto_circuit_dcd.attribution import front as attribution
    from auto_circuit_dcd.attribution.cache import batch_digest
    from auto_circuit_dcd.cli import main

    if RANK == 1:
        calls = [0]
        for name, real in list(attribution.BACKENDS.items()):
            def dying(model, graph, batch, *a, _real=real, **kw):
                calls[0] += 1
                with open(log, "a") as f:
                    f.write(batch_digest(batch) + "\n")
                if calls[0] == k:
                    os.kill(os.getpid(), signal.SIGKILL)
                return _real(model, graph, batch, *a, **kw)
            attribution.BACKENDS[name] = dying
    return main(args)


if __name__ == "__main__":
    if sys.argv[1] == "library":
        library(Path(sys.argv[2]))
    elif sys.argv[1] == "die-at-batch":
        sys.exit(die_at_batch(int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]))
