"""Tokenizing text without silent unknown words.

A word-level tokenizer (the embedded toy model's) turns any word outside its vocabulary
into its unknown token; byte-level tokenizers (GPT-2, SmolLM2) never do. An unknown
word in a prompt or an answer changes what the model is asked (an unknown answer even
passes the one-token check), so :func:`encode`:

1. tokenizes without special tokens (auto-circuit's convention; callers add BOS);
2. finds the tokens equal to the tokenizer's unknown token, and the text they came from
   (character offsets of a fast tokenizer; else each whitespace-separated word alone);
3. raises :class:`UnknownWordError` naming those words, unless the text spells the
   unknown token itself.
"""

from __future__ import annotations

from typing import Any

from auto_circuit_dcd.errors import UserError

__all__ = ["UnknownWordError", "encode", "unknown_words"]


class UnknownWordError(UserError, ValueError):
    """Text with words the tokenizer does not know; ``words`` lists them."""

    def __init__(self, text: str, words: list[str], unk: str):
        self.text, self.words = text, words
        super().__init__(f"{text!r} has word(s) {words} that the tokenizer does not know "
                         f"(each would become {unk})")


def _ids_and_words(tokenizer: Any, text: str) -> list[tuple]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(i, text[s:e]) for i, (s, e) in zip(enc["input_ids"], enc["offset_mapping"])]
    except (NotImplementedError, TypeError, KeyError):  # a slow tokenizer: word by word
        out = []
        for word in text.split():
            out += [(i, word) for i in tokenizer(word, add_special_tokens=False)["input_ids"]]
        return out


def unknown_words(tokenizer: Any, text: str) -> list[str]:
    """The words of ``text`` that ``tokenizer`` turns into its unknown token (in order)."""
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is None:
        return []
    unk = getattr(tokenizer, "unk_token", None)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if unk_id not in ids:
        return []
    words = [w for i, w in _ids_and_words(tokenizer, text) if i == unk_id and w.strip() != unk]
    return list(dict.fromkeys(w.strip() for w in words))


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` (no special tokens); :class:`UnknownWordError` on unknown words."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is not None and unk_id in ids:
        words = unknown_words(tokenizer, text)
        if words:
            raise UnknownWordError(text, words, str(getattr(tokenizer, "unk_token", unk_id)))
    return ids
