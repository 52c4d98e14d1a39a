"""Prompts tokenised in bounded time: the heap merges are open_clip's merges exactly, a prompt
whose tokens fit is tokenised exactly as open_clip does, and a megabyte of text takes well
under a second (open_clip alone: 61 s for a 128,000-character word)."""

from __future__ import annotations

import random
import string
import time

import numpy as np
import open_clip
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from open_clip.tokenizer import SimpleTokenizer

from autodistill_metaclip import MetaCLIP
from autodistill_metaclip.engine import prompts
from autodistill_metaclip.engine.checkpoints import resolve
from autodistill_metaclip.engine.encoder import Encoder
from autodistill_metaclip.engine.prompts import (
    BoundedTokenizer,
    fit,
    merge_word,
    text_budget,
    token_characters,
)

REFERENCE = open_clip.get_tokenizer("ViT-B-32")
"""open_clip's own tokenizer, never wrapped."""
BYTE_CHARACTERS = "".join(REFERENCE.byte_encoder.values())
"""The alphabet the merges run on (each UTF-8 byte as one character)."""


def _letters(count: int, seed: int) -> str:
    """Random lower-case letters: a word that the merges take long on."""
    return "".join(random.Random(seed).choices(string.ascii_lowercase, k=count))


def _open_clip_merges(word: str) -> str:
    REFERENCE.cache.pop(word, None)
    return SimpleTokenizer.bpe(REFERENCE, word)


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.text(st.sampled_from("abcde"), min_size=1, max_size=60),  # many overlapping merges
        st.text(st.sampled_from(string.ascii_lowercase), min_size=1, max_size=60),
        st.text(st.sampled_from(BYTE_CHARACTERS), min_size=1, max_size=40),
        st.text(st.sampled_from("aaaab"), min_size=1, max_size=80),
    )
)
def test_heap_merges_are_open_clips(word: str) -> None:
    assert merge_word(word, REFERENCE.bpe_ranks) == _open_clip_merges(word)


def test_heap_merges_of_real_and_long_words() -> None:
    words = ["photography", "blackandwhitephotography", "a", "zz", "ðŁĺĤðŁĺĤðŁĺĤ"]
    words += [_letters(2000, seed) for seed in range(3)]
    for word in words:
        assert merge_word(word, REFERENCE.bpe_ranks) == _open_clip_merges(word)


PROMPTS = [
    "a photo of a cat",
    "A PHOTO of  the  Ünïcödé thing &amp; more!!! 😀😀😀 it's 42",
    "  lots   of \n\n spaces,\ttabs  " * 40,  # fits in tokens, longer than the budget in text
    " ".join(["word"] * 500),  # over the context: cut as open_clip cuts it
    "x" * 5000 + " y",
    _letters(3000, 1),
    "",
]


@pytest.mark.parametrize("text", PROMPTS, ids=range(len(PROMPTS)))
def test_prompts_tokenise_as_open_clip_does(text: str) -> None:
    bounded = BoundedTokenizer(open_clip.get_tokenizer("ViT-B-32"))
    assert np.array_equal(bounded([text]), REFERENCE([text]))


def test_the_budget_covers_the_context() -> None:
    """CLIP's longest token covers 24 characters; 77 tokens of those, a space before each,
    twice over."""
    assert token_characters(REFERENCE) == 24
    assert BoundedTokenizer(open_clip.get_tokenizer("ViT-B-32")).budget == text_budget(77, 24)
    assert text_budget(77, 24) == 3850
    assert fit("a  b", 3) == "a b" and fit("abc", 3) == "abc"
    assert fit("a" * 10, 4) == "aaaa"


@pytest.mark.parametrize(
    "text",
    [
        _letters(128_000, 2),
        _letters(1_000_000, 3),
        " ".join(_letters(2000, seed) for seed in range(500)),
        "&amp;" * 200_000,
    ],
    ids=["128k-word", "1MB-word", "1MB-of-2000-letter-words", "1MB-of-entities"],
)
def test_a_megabyte_prompt_embeds_in_well_under_a_second(demo_model: MetaCLIP, text) -> None:
    started = time.monotonic()
    vector = demo_model.embed_text(text)
    assert time.monotonic() - started < 1.0
    assert vector.shape == (64,) and np.isfinite(vector).all()


def test_a_normal_prompts_embedding_is_unchanged() -> None:
    """The encoder's text path against its own model fed by open_clip's tokenizer, unwrapped."""
    encoder = Encoder(resolve("demo"), device=torch.device("cpu"), precision="fp32")
    texts = ["a photo of a red circle", "a blue square", PROMPTS[1], PROMPTS[2], PROMPTS[3]]
    with torch.inference_mode():
        features = encoder.model.encode_text(REFERENCE(texts))
    expected = torch.nn.functional.normalize(features, dim=-1).numpy()
    assert np.array_equal(encoder.encode_texts(texts), expected)


def test_the_word_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompts, "MAX_CACHED_WORDS", 10)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    BoundedTokenizer(tokenizer)([f"word{i}x" * 3 for i in range(100)])
    assert len(tokenizer.cache) <= 10
