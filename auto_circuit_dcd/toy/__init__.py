"""The embedded toy model with two planted, separate mechanisms (``"toy-two-task"``).

A two-layer attention-only TransformerLens model over a word-level vocabulary, trained
on an IOI-like task and on induction, shipped with its tokenizer and datasets:

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.toy import toy_dataset_path
    pm, train, test = dcd.prepare(dcd.load_model("toy-two-task"), toy_dataset_path("mixed"))

Nothing heavy is imported until a function is called.
"""

from __future__ import annotations

from auto_circuit_dcd.toy.model import load_toy_model, toy_dataset_path, toy_metadata, toy_tokenizer

__all__ = ["load_toy_model", "toy_dataset_path", "toy_tokenizer", "toy_metadata"]
