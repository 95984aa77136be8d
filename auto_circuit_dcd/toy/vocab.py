"""The toy model's word-level vocabulary and its tokenizer.

One token per word: special tokens, 20 names, 40 induction symbols, then the template
words (in template order). The tokenizer is a ``tokenizers`` WordLevel model with a
whitespace pre-tokenizer (``"Mary,"`` is ``Mary`` + ``,``), wrapped in a
``transformers.PreTrainedTokenizerFast`` whose BOS is ``<bos>``. It adds no special
token by itself, so ``tokenizer(" Mary")`` is one token with or without
``add_special_tokens``: datasets and answers tokenize the way auto-circuit expects, and
callers prepend BOS explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "BOS", "EOS", "PAD", "UNK", "SPECIAL_TOKENS", "NAMES", "SYMBOLS", "IOI_TEMPLATES",
    "PROMPT_WORDS", "vocabulary", "build_word_tokenizer", "wrap_tokenizer",
]

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
SPECIAL_TOKENS: list[str] = [BOS, EOS, PAD, UNK]

NAMES: list[str] = [
    "Mary", "John", "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry",
    "Irene", "Jack", "Kate", "Louis", "Maria", "Nick", "Olivia", "Paul", "Rose", "Sam",
]

SYMBOLS: list[str] = [
    "apple", "river", "stone", "cloud", "tiger", "lamp", "chair", "piano", "orange",
    "violet", "candle", "mirror", "rocket", "garden", "hammer", "pepper", "silver",
    "window", "basket", "anchor", "button", "castle", "dragon", "feather", "guitar",
    "island", "jacket", "kettle", "lemon", "marble", "needle", "pillow", "rabbit",
    "saddle", "tunnel", "walnut", "yogurt", "zipper", "copper", "meadow",
]

# IOI-like templates: {A} and {B} are introduced, {S} (one of them) is repeated, the
# answer is the other. Every template is 15 words, so prompts never need padding.
IOI_TEMPLATES: list[str] = [
    "When {A} and {B} went to the store , then {S} gave a drink to",
    "Then , {A} and {B} had a long talk . {S} handed a book to",
    "After {A} and {B} met at the old park , {S} sent a gift to",
    "While {A} and {B} were working at the office , {S} passed a note to",
    "{A} and {B} went to the beach together . There {S} threw a ball to",
    "Yesterday {A} and {B} cooked dinner at home , and {S} gave a plate to",
]

PROMPT_WORDS = 15  # words per prompt, BOS not counted


def _template_words() -> list[str]:
    words: list[str] = []
    for template in IOI_TEMPLATES:
        for w in template.split():
            if not w.startswith("{") and w not in words:
                words.append(w)
    return words


def vocabulary() -> dict[str, int]:
    """word -> id: special tokens, names, symbols, template words (a fixed order)."""
    words = SPECIAL_TOKENS + NAMES + SYMBOLS + _template_words()
    if len(set(words)) != len(words):
        raise ValueError("the toy vocabulary has a repeated word")
    return {w: i for i, w in enumerate(words)}


def build_word_tokenizer() -> Any:
    """The raw ``tokenizers.Tokenizer`` (WordLevel + whitespace pre-tokenizer)."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocabulary(), unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS])
    return tok


def wrap_tokenizer(tokenizer_file: str | Path | None = None) -> Any:
    """A ``PreTrainedTokenizerFast`` over the word tokenizer (from ``tokenizer_file`` if given).

    ``add_bos_token=True`` is only a marker for TransformerLens (which otherwise tries to
    reload the tokenizer from the hub): no post-processor adds BOS, so ``to_tokens``
    prepends it itself.
    """
    from transformers import PreTrainedTokenizerFast

    source: dict[str, Any] = ({"tokenizer_file": str(tokenizer_file)} if tokenizer_file
                              else {"tokenizer_object": build_word_tokenizer()})
    return PreTrainedTokenizerFast(
        **source, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        add_bos_token=True, name_or_path="toy-two-task",
        model_input_names=["input_ids", "attention_mask"],
    )
