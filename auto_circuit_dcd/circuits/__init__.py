"""Circuits: :class:`~.circuit.Circuit` (scores with edge names, layout and graph, and the
edges chosen from them), the graph of which node each edge leaves and enters
(:mod:`.graph`), the top-n and cumulative-mass selection rules (:mod:`.selection`) and
EAP-IG's graph JSON, the format MIB's circuit track reads (:mod:`.mib`).

Importing this package imports nothing heavy.
"""
