"""Domain keywords: words frequent in the domain corpus and rare in general text.

Two ways to get them, both giving a plain list of lower-cased words for `RuleMiner`:

- `KeywordStats`, computed from the corpus being processed: a streaming document-frequency
  count, compared with the same count over general text (or, without one, with the
  reference's own proxy for "rare": long words). This is what hf_ipt recommends.
- `keywords_from_tokenizers`, the AdaptLLM reference's way: whole-word tokens of a tokenizer
  trained on the domain that a general tokenizer does not have.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .lexicon import lexicon

# Words are runs of letters of the lower-cased text ("company's" -> "company", "s"; "société"
# is one word), with the combining marks inside them: the same tokenization for counting
# keywords and for finding them in sentences, the pattern built on first use (`_lower_word`).
_ASCII_WORD = re.compile(r"[a-z]+")  # the same words on ASCII text, and a third faster
# Common English function words. Long ones matter to keyword ranking, all of them to the
# miner's "is this English prose?" check.
FUNCTION_WORDS = lexicon("function_words")
# Plain English words no domain owns ("particularly", "themselves", "significant"): frequent in
# every corpus, so a corpus without a general one to compare with ranks them as keywords.
GENERAL_WORDS = lexicon("general_words")
# "-ly" words are adverbs ("previously", "reportedly"), except these endings: "anomaly",
# "monopoly", "supply", "assembly", "butterfly".
_NOT_ADVERB_ENDINGS = ("aly", "oly", "ply", "mbly", "fly")
_WORD_START_MARKERS = ("\u2581", "\u0120")  # SentencePiece "▁" and byte-level BPE "Ġ"


def lower_words(text: str) -> list[str]:
    """The words of `text`, lower-cased, in order (`_lower_word` for non-ASCII text)."""
    text = text.lower()
    return (_ASCII_WORD if text.isascii() else _lower_word()).findall(text)


@functools.cache
def _lower_word() -> re.Pattern[str]:
    """A run of letters with the combining marks inside it: Devanagari vowel signs ("हिन्दी"),
    Thai vowels and a decomposed accent ("e" + U+0301) are part of the word, not breaks in it.

    Python's `re` has no ``\\p{M}``: the marks come from `unicodedata` (~50 ms, once, and only
    for non-ASCII text). Planes 2-13 hold no marks; plane 14 holds variation selectors.
    """
    ranges: list[list[int]] = []
    for code in itertools.chain(range(0x300, 0x20000), range(0xE0100, 0xE01F0)):
        if unicodedata.category(chr(code))[0] == "M":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    marks = "".join(f"{re.escape(chr(start))}-{re.escape(chr(end))}" for start, end in ranges)
    # Marks are tried only where a run of letters stops, not at every character (5x faster).
    return re.compile(rf"[^\W\d_]+(?:[{marks}]+[^\W\d_]*)*")


class KeywordStats:
    """Streaming domain-keyword statistic: per-word document frequencies of a corpus.

    Feed texts one at a time with `update`; memory grows with the vocabulary, not with the
    corpus, and counts of shards combine with `merge`. `top` ranks words that are frequent in
    this corpus and rare in general text:

    - with ``general`` (a `KeywordStats` fed with general text, e.g. other domains or a web
      sample), by ``df * log(lift)`` where ``lift`` is the word's document rate here over its
      add-one-smoothed rate in the general corpus, keeping ``lift >= min_lift``;
    - without it, by document frequency among words of at least ``long_word_chars``
      characters that are not function words: the reference's own proxy for "rare in general
      text" (it keeps domain tokens longer than 10 characters). Weaker; prefer a general corpus.

    Ties break alphabetically, so the ranking never depends on insertion or set order.

    Args:
        min_chars (`int`, *optional*, defaults to 3): shortest word counted.

    Example:
        ```python
        stats, general = KeywordStats(), KeywordStats()
        for text in domain_texts:
            stats.update(text)
        for text in general_texts:
            general.update(text)
        miner = RuleMiner(keywords=stats.top(300, general=general))
        ```
    """

    def __init__(self, min_chars: int = 3) -> None:
        if min_chars < 1:
            raise ValueError(f"`min_chars` must be >= 1, got {min_chars} (KeywordStats.min_chars)")
        self.min_chars = min_chars
        self.num_docs = 0
        self.doc_freq: Counter[str] = Counter()

    def update(self, text: str) -> None:
        """Count the distinct words of one document."""
        words = {word for word in lower_words(text) if len(word) >= self.min_chars}
        self.doc_freq.update(words)  # counting only: the set's order cannot leak into results
        self.num_docs += 1

    def merge(self, other: KeywordStats) -> KeywordStats:
        """Add the counts of `other` (another shard of the same corpus) to these; returns self."""
        self.doc_freq.update(other.doc_freq)
        self.num_docs += other.num_docs
        return self

    def top(
        self,
        n: int,
        general: KeywordStats | None = None,
        *,
        min_df: int = 3,
        max_df_ratio: float = 0.5,
        min_lift: float = 4.0,
        long_word_chars: int = 10,
    ) -> list[str]:
        """The `n` best domain keywords, best first.

        Args:
            n (`int`): how many keywords to return at most.
            general (`KeywordStats`, *optional*): counts over general text.
            min_df (`int`, *optional*, defaults to 3): documents a keyword must appear in.
            max_df_ratio (`float`, *optional*, defaults to 0.5): a word in more than this share
                of the domain documents is too common to be a keyword.
            min_lift (`float`, *optional*, defaults to 4.0): with `general`, how many times more
                often (per document) a keyword must appear here than there.
            long_word_chars (`int`, *optional*, defaults to 10): without `general`, shortest keyword.
        """
        # A slice would take -1 as "all but the last" and None as "all": refuse, not guess.
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(
                f"`n` must be an int >= 1 (how many keywords to return), got {n!r} "
                "(KeywordStats.top)"
            )
        if not 0 < max_df_ratio <= 1:
            raise ValueError(f"`max_df_ratio` must be in (0, 1] (a share of the domain documents), got "
                             f"{max_df_ratio!r} (KeywordStats.top)")
        if self.num_docs == 0:
            return []
        max_df = max(min_df, max_df_ratio * self.num_docs)
        scored: list[tuple[float, str]] = []
        for word, df in self.doc_freq.items():
            if df < min_df or df > max_df or word in FUNCTION_WORDS or is_general_word(word):
                continue
            if general is None:
                if len(word) >= long_word_chars:
                    scored.append((float(df), word))
                continue
            lift = (df / self.num_docs) / ((general.doc_freq[word] + 1) / (general.num_docs + 2))
            if lift >= min_lift:
                scored.append((df * math.log(lift), word))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [word for _, word in scored[:n]]


def is_general_word(word: str) -> bool:
    """Whether a lower-cased word is plain English, never a domain keyword: one of
    `GENERAL_WORDS`, or an adverb in "-ly" of at least 7 letters ("particularly", "reportedly";
    not "rally", "monopoly", "supply")."""
    return word in GENERAL_WORDS or (
        len(word) >= 7 and word.endswith("ly") and not word.endswith(_NOT_ADVERB_ENDINGS)
    )


def keywords_from_tokenizers(
    domain_tokenizer: Any, general_tokenizer: Any, min_chars: int = 10
) -> list[str]:
    """Domain keywords from a tokenizer pair, as the AdaptLLM reference computes them.

    A keyword is a whole-word token (one that starts with ``▁`` or ``Ġ``) of the tokenizer
    trained on the domain, absent from the general tokenizer, of at least `min_chars` letters.
    The miner matches keywords as whole lower-cased words of a sentence.

    Args:
        domain_tokenizer (`PreTrainedTokenizerBase` or `Iterable[str]`): a tokenizer trained
            on the domain corpus, or its vocabulary (token strings).
        general_tokenizer (`PreTrainedTokenizerBase` or `Iterable[str]`): the general model's.
        min_chars (`int`, *optional*, defaults to 10): shortest keyword.

    Returns:
        `list[str]`: lower-cased keywords, sorted.
    """
    general = _whole_words(general_tokenizer)
    return sorted(
        word
        for word in _whole_words(domain_tokenizer) - general
        if len(word) >= min_chars and not is_general_word(word)
    )


def _whole_words(tokenizer: Any) -> set[str]:
    tokens: Iterable[str] = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else tokenizer
    words = set()
    for token in tokens:
        if token.startswith(_WORD_START_MARKERS) and _lower_word().fullmatch(token[1:].lower()):
            words.add(token[1:].lower())
    return words
