"""Prompts tokenised in bounded time, whatever their length: :class:`BoundedTokenizer`.

open_clip's CLIP tokenizer runs its byte-pair merges on the whole text before keeping the first
``context_length`` tokens, in time quadratic in a word's length (a 128,000-character word took
61 s). Two changes bound it without changing any prompt whose tokens fit the context:

- A text longer than :func:`text_budget` characters (twice what the context can hold: its tokens
  times the most characters one vocabulary token covers, plus a space each) has its whitespace
  runs reduced to their first character, which the tokenizer's own cleaning collapses anyway,
  and is then cut to that budget: the cut text still yields more tokens than the context keeps.
- The merges run with a heap (:func:`merge_word`), the same merges in the same order as
  open_clip's loop, in ``O(n log n)`` rather than ``O(n^2)``.

Only text that the tokenizer's cleaning deletes (control characters, HTML entities) beyond the
budget could make a fitting prompt differ; texts longer than the context are cut as open_clip
cuts them, up to the last tokens of a word that the budget cuts.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Sequence
from typing import Any

from open_clip.tokenizer import SimpleTokenizer

DEFAULT_TOKEN_CHARACTERS = 64
"""Characters one token covers at most, for a tokenizer whose vocabulary cannot be read."""
MAX_CACHED_WORDS = 100_000
"""Merged words kept for reuse (open_clip's own cache grows without limit)."""
_WHITESPACE_RUN = re.compile(r"(\s)\s+")


class BoundedTokenizer:
    """An open_clip tokenizer that cuts each text to :func:`text_budget` characters first,
    and runs the CLIP tokenizer's merges with :func:`merge_word`.

    Args:
        tokenizer: What ``open_clip.get_tokenizer`` returned.

    Examples:
        >>> import open_clip
        >>> tokenize = BoundedTokenizer(open_clip.get_tokenizer("ViT-B-32"))
        >>> tokenize(["a photo of a cat", "x" * 1_000_000]).shape
        torch.Size([2, 77])
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.context_length = int(getattr(tokenizer, "context_length", None) or 77)
        self.budget = text_budget(self.context_length, token_characters(tokenizer))
        if isinstance(tokenizer, SimpleTokenizer):
            tokenizer.bpe = lambda word: _cached_merge(tokenizer, word)

    def __call__(self, texts: Sequence[str]) -> Any:
        """Token ids, ``(len(texts), context_length)``, as the wrapped tokenizer gives them."""
        return self.tokenizer([fit(text, self.budget) for text in texts])


def text_budget(context_length: int, characters_per_token: int) -> int:
    """Characters of text kept: twice what ``context_length`` tokens can cover (each token
    at most ``characters_per_token`` characters, with a space before it)."""
    return 2 * context_length * (characters_per_token + 1)


def fit(text: str, budget: int) -> str:
    """``text`` as it is if at most ``budget`` characters; else with each whitespace run
    reduced to its first character, and cut to ``budget`` characters."""
    if len(text) <= budget:
        return text
    return _WHITESPACE_RUN.sub(r"\1", text)[:budget]


def token_characters(tokenizer: Any) -> int:
    """The most characters of text one token of ``tokenizer``'s vocabulary covers."""
    if isinstance(tokenizer, SimpleTokenizer):  # byte-level tokens: count the characters
        decode, special = tokenizer.byte_decoder, set(tokenizer.all_special_ids)
        return max(
            _characters_touched(bytes(decode[c] for c in token.removesuffix("</w>")))
            for token, number in tokenizer.encoder.items()
            if number not in special
        )
    vocabulary = getattr(getattr(tokenizer, "tokenizer", None), "get_vocab", None)
    if callable(vocabulary):  # Hugging Face: a piece's length bounds the characters it covers
        return max(len(piece) for piece in vocabulary())
    return DEFAULT_TOKEN_CHARACTERS


def merge_word(word: str, ranks: dict[tuple[str, str], int]) -> str:
    """open_clip's ``SimpleTokenizer.bpe`` (uncached), in ``O(n log n)``: the merged word,
    its symbols separated by spaces.

    open_clip merges, round after round, every occurrence (left to right, not overlapping) of
    the lowest-ranked adjacent pair. Here the pairs wait in a heap by ``(rank, position)``:
    each round pops every entry of the lowest rank and merges those still current, left to
    right. A merge makes pairs only with the merged symbol, never one of the round's rank (its
    two halves are the pair), so each round is open_clip's.
    """
    symbols: list[str | None] = [*word[:-1], word[-1] + "</w>"]
    if len(symbols) == 1:
        return word + "</w>"
    following = [*range(1, len(symbols)), -1]
    preceding = list(range(-1, len(symbols) - 1))

    def rank_at(i: int) -> int | None:  # of the pair starting at symbol i
        j = following[i]
        left, right = symbols[i], symbols[j] if j != -1 else None
        return None if left is None or right is None else ranks.get((left, right))

    heap = [(rank, i) for i in range(len(symbols) - 1) if (rank := rank_at(i)) is not None]
    heapq.heapify(heap)
    while heap:
        lowest = heap[0][0]
        starts = []
        while heap and heap[0][0] == lowest:
            starts.append(heapq.heappop(heap)[1])
        for i in starts:  # ascending positions
            if rank_at(i) != lowest:
                continue  # merged away, or no longer this pair
            j = following[i]
            symbols[i] = f"{symbols[i]}{symbols[j]}"
            symbols[j] = None
            following[i] = following[j]
            if following[i] != -1:
                preceding[following[i]] = i
            for start in (preceding[i], i):
                if start != -1 and (rank := rank_at(start)) is not None:
                    heapq.heappush(heap, (rank, start))
    return " ".join(s for s in symbols if s is not None)


def _cached_merge(tokenizer: SimpleTokenizer, word: str) -> str:
    cache = tokenizer.cache
    if word in cache:
        return cache[word]
    merged = merge_word(word, tokenizer.bpe_ranks)
    if len(cache) < MAX_CACHED_WORDS:
        cache[word] = merged
    return merged


def _characters_touched(token: bytes) -> int:
    """The characters of UTF-8 text a token's bytes belong to (partly, at its ends)."""
    if not token:
        return 0
    starts = sum(1 for b in token if b & 0xC0 != 0x80)  # a byte that begins a character
    return starts + (token[0] & 0xC0 == 0x80)  # and the character the token starts inside
