"""Dataset generators for IOI, entity binding, addition and sequence completion, and
their mixtures, in auto-circuit's JSON format, and the same datasets as auto-circuit tasks.

- :func:`make_dataset` writes one dataset file (one task or a mixture) and returns a
  summary of counts and of what was dropped;
- :func:`registry_entries` gives ``{key: Task}`` for :func:`auto_circuit_dcd.register`;
  the tasks generate their data and load their model only when first used.

Importing this package loads no model and imports neither torch nor auto-circuit.
"""

from __future__ import annotations

from typing import Any

from auto_circuit_dcd.tasks.common import GenerationError, GenStats
from auto_circuit_dcd.tasks.dataset import DEFAULT_PROMPT_TYPES, GENERATORS, TASKS, make_dataset
from auto_circuit_dcd.tasks.mixture import MIXTURES, Component, entity_addition

__all__ = [
    "make_dataset",
    "registry_entries",
    "GenerationError",
    "GenStats",
    "Component",
    "entity_addition",
    "MIXTURES",
    "GENERATORS",
    "DEFAULT_PROMPT_TYPES",
    "TASKS",
]


def registry_entries() -> dict[str, Any]:
    """{key: auto-circuit Task} for every generated dataset (SmolLM2-135M, 200 prompts,
    seed 42); keys are the ``TASK_*`` constants of :mod:`auto_circuit_dcd.keys`."""
    from auto_circuit_dcd.tasks.auto_circuit_tasks import task_entries

    return task_entries()
