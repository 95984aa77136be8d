"""The model stage: loading models by name (:mod:`.load`, from the table in :mod:`.table`),
devices and dtypes, grouped-query attention made multi-head (:mod:`.grouped_query`),
SmolLM2 offline (:mod:`.smollm2`), the package's fixed edge order (:mod:`.edges`), the
plain forward shared by attribution and evaluation (:mod:`.forward`), the task metric
(:mod:`.task_metric`) and tokenizing without silent unknown words (:mod:`.tokens`).

Importing this package imports nothing heavy; ``auto_circuit_dcd.load_model`` and
``auto_circuit_dcd.make_patchable`` are the public entry points.
"""
