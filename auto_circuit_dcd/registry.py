"""One explicit, idempotent ``register()`` that adds this package's entries to auto-circuit.

Nothing is registered at import time. Each part of the package lists its own entries
(``registry_entries()`` in :mod:`auto_circuit_dcd.tasks`, :mod:`auto_circuit_dcd.cluster`
and :mod:`auto_circuit_dcd.evaluation`), under keys defined in :mod:`auto_circuit_dcd.keys`.
A key already present with a value this package did not put there is never overwritten.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["register", "RegistrationError"]

_OWNED_ATTR = "_auto_circuit_dcd_owned"


class RegistrationError(RuntimeError):
    """A key this package wants is taken by someone else."""


def _targets() -> dict[str, tuple]:
    """registry name -> (auto-circuit dict, provider of our entries)."""
    from auto_circuit.metrics.prune_metrics.prune_metrics import PRUNE_METRIC_DICT
    from auto_circuit.prune_algos.prune_algos import PRUNE_ALGO_DICT
    from auto_circuit.tasks import TASK_DICT

    def provider(module: str) -> Callable[[], dict[str, Any]]:
        return lambda: importlib.import_module(module).registry_entries()

    return {
        "tasks": (TASK_DICT, provider("auto_circuit_dcd.tasks")),
        "algos": (PRUNE_ALGO_DICT, provider("auto_circuit_dcd.cluster")),
        "metrics": (PRUNE_METRIC_DICT, provider("auto_circuit_dcd.evaluation")),
    }


def register(tasks: bool = True, algos: bool = True, metrics: bool = True) -> dict[str, list[str]]:
    """Add this package's tasks, prune algorithms and metrics to auto-circuit's dicts.

    Calling it again replaces this package's own entries and nothing else. Returns the
    keys added per registry. Raises :class:`RegistrationError` if a key is taken by an
    entry this package did not register.
    """
    wanted = {"tasks": tasks, "algos": algos, "metrics": metrics}
    added: dict[str, list[str]] = {}
    for name, (target, entries_of) in _targets().items():
        if not wanted[name]:
            continue
        entries = entries_of()
        owned = getattr(register, _OWNED_ATTR, {}).get(name, {})
        for key in entries:
            if key in target and owned.get(key) is not target[key]:
                raise RegistrationError(
                    f"auto-circuit's {name} registry already has {key!r}, not registered "
                    "by auto-circuit-dcd; refusing to overwrite it")
        for key, value in entries.items():
            target[key] = value
        setattr(register, _OWNED_ATTR, {**getattr(register, _OWNED_ATTR, {}),
                                        name: {**owned, **entries}})
        added[name] = sorted(entries)
    return added
