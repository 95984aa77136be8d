"""The main job (``auto-circuit-dcd run``): its configuration (:mod:`.config`), the
orchestration of its stages (:mod:`.pipeline`), the report's assembly from evaluated
circuits (:mod:`.assemble`), the run folder that alone writes and reads the run's files
(:mod:`.run_folder`) and the export of a finished run for MIB (:mod:`.export`).

Importing this package imports nothing heavy; ``auto_circuit_dcd.run`` and
``auto_circuit_dcd.RunConfig`` are the public entry points.
"""
