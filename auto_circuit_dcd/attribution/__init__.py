"""Per-example attribution: the front (:func:`~.front.attribute`, which chooses a backend),
the fast and hooks backends (:mod:`.fast`, :mod:`.hooks`) over the passes they share
(:mod:`.passes`), the checksummed row cache (:mod:`.cache`), the matrix it produces
(:class:`~.matrix.AttributionMatrix`) and chunked work on saved matrices (:mod:`.streaming`).

Importing this package imports nothing heavy; ``auto_circuit_dcd.attribute`` is the public
entry point.
"""
