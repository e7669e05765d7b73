"""Quality filters on synthesized pairs, and near-duplicate pair removal across a corpus.

Per-pair filters are pure functions of ``(context, question, answer)``; `filter_pairs` runs
the enabled ones and counts what each removed. Defaults are conservative: they only catch
output that cannot be a useful task (an extractive answer made of words the text does not
contain, a looping generation, a "question" that is a sentence pasted from the text). An
answer taken from the options a multiple-choice question lists is grounded.

`NearDuplicates` is the corpus-wide pass: MinHash LSH (`datasketch`) over word shingles of
``question + answer``; the first occurrence in corpus order is kept, so the decisions are
deterministic for a fixed order of pairs.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .backends.base import default_of
from .templify.pairs import parse_question, prepare_pair

# Scripts written without spaces (Thai, Lao, Myanmar, Khmer, kana, Han): each character is a word,
# or a Chinese or Thai text would be a handful of "words" (never deduplicated, never checked). A
# decimal or grouped number ("12.5", "1,250") is one word, as the help of `extractive_max_words` says.
_UNSPACED = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"\d+(?:[.,]\d+)+|[{_UNSPACED}]|[^\W{_UNSPACED}]+")


_VERDICTS = frozenset({"yes", "no", "true", "false"})  # an answer opening with one judges, it does not extract
# A question that asks for a judgment on the text or a new text about it (a title for it, its tone, a summary):
# the answer is abstractive by design ("Cautiously optimistic", "Japan's Quiet Recovery"), not a span. Asked
# as such: "Which club won the league title?" or "Who described the plan as reckless?" want a span
_ABSTRACTIVE = re.compile(
    r"\b(?:good|best|suitable|appropriate|possible|short|catchy|fitting|new)\s+(?:title|headline|heading)\b"
    r"|\b(?:title|headline|heading)\s+for\b"
    r"|\b(?:give|suggest|write|propose|create|generate|come up with)\b.*\b(?:title|headline|heading)\b"
    r"|\b(?:tone|sentiment|attitude|mood)\b|\bsummar(?:y|ize|ise)\b|\bmain\s+(?:idea|point|topic)\b|\bgist\b"
    r"|^\s*(?:describe|characteri[sz]e|paraphrase|rephrase|reword)\b"
    r"|\bhow\s+would\s+you\s+(?:describe|characteri[sz]e)\b",
    re.IGNORECASE,
)
_STEM = 5  # a word found by its stem: sharing its first 5 characters, and 3/4 of the shorter word, with one of the text


def _stems(vocabulary: set[str]) -> dict[str, list[str]]:
    """The vocabulary's words of `_STEM` letters or more (no digits: "1,000,900" is no form of "1,000,000"),
    by their first `_STEM` characters."""
    index: dict[str, list[str]] = {}
    for word in vocabulary:
        if len(word) >= _STEM and word.isalpha():
            index.setdefault(word[:_STEM], []).append(word)
    return index


def _stem_found(word: str, index: dict[str, list[str]]) -> bool:
    """Whether a word of the text is `word` inflected or derived ("japanese": "japan"; "economic": "economy"),
    not a word that merely starts alike ("international": "interest"; "contracts": "control")."""
    if len(word) < _STEM or not word.isalpha():
        return False
    return any(len(os.path.commonprefix((word, other))) >= 0.75 * min(len(word), len(other))
               for other in index.get(word[:_STEM], ()))


@dataclass
class FilterConfig:
    """Which pairs to drop. Every filter can be turned off; removals are counted per filter."""

    filter_ungrounded: bool = field(
        default=True,
        metadata={"help": "Drop extractive answers (2..extractive_max_words words) whose words are mostly "
                  "in neither the text nor the options the question lists (multiple choice); answers to "
                  "questions that ask for a title, a tone or sentiment, a summary or a description are "
                  "abstractive and never checked."},
    )
    extractive_max_words: int = field(
        default=8, metadata={"help": "Answers of 2 to this many words count as extractive spans; one-word "
                             "answers (labels, yes/no, numbers), answers that open with yes/no/true/false "
                             "(\"Yes, it did.\") and longer ones are never checked."},
    )
    min_grounding: float = field(
        default=0.5,
        metadata={"help": "Fraction of an extractive answer's words that must occur in the text or the listed options."},
    )
    filter_degenerate: bool = field(
        default=True, metadata={"help": "Drop pairs with an empty side or a looping question/answer."}
    )
    max_repeat_fraction: float = field(
        default=0.5,
        metadata={"help": "A question/answer with >= 6 word 3-grams is degenerate when more than this "
                  "fraction of them are repeats."},
    )
    filter_copied_questions: bool = field(
        default=True, metadata={"help": "Drop questions that are a verbatim span of the text and no question "
                                "(no final '?'): a sentence of the text pasted as the question."}
    )
    copied_min_words: int = field(
        default=6, metadata={"help": "Only questions with at least this many words count as copied."}
    )
    dedup: bool = field(default=True, metadata={"help": "Remove near-duplicate pairs across the corpus."})
    dedup_threshold: float = field(
        default=0.9, metadata={"help": "Estimated Jaccard similarity of word 3-grams at which pairs are duplicates."}
    )
    dedup_num_perm: int = field(default=128, metadata={"help": "MinHash permutations."})
    dedup_min_words: int = field(
        default=10,
        metadata={"help": "Pairs shorter than this (question + answer words) are never deduplicated: "
                  "short pairs such as 'Give this text a title.' are context-dependent, not copies."},
    )

    def __post_init__(self) -> None:
        for name in ("min_grounding", "max_repeat_fraction", "dedup_threshold"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"`{name}` must be in (0, 1], got {getattr(self, name)} (FilterConfig.{name})")
        for name in ("extractive_max_words", "copied_min_words", "dedup_num_perm", "dedup_min_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)} (FilterConfig.{name})")
        self._refuse_options_of_disabled_filters()

    def _refuse_options_of_disabled_filters(self) -> None:
        """An option of a filter that is off would be ignored (and still pinned in a job's job.json):
        refused, unless it is at its default."""
        for switch, options in FILTER_OPTIONS.items():
            if getattr(self, switch):
                continue
            for name in options:
                if getattr(self, name) != default_of(self, name):
                    raise ValueError(f"`{name}` ({getattr(self, name)!r}) would be ignored: `{switch}` is off. Turn it "
                                     f"on (--{switch}), or leave `{name}` unset (FilterConfig.{name})")


# filter switch -> the options that only that filter reads
FILTER_OPTIONS = {
    "filter_ungrounded": ("extractive_max_words", "min_grounding"),
    "filter_degenerate": ("max_repeat_fraction",),
    "filter_copied_questions": ("copied_min_words",),
    "dedup": ("dedup_threshold", "dedup_num_perm", "dedup_min_words"),
}


def words(text: str) -> list[str]:
    """Case-folded words of `text` after NFKC normalization: an accent composed or decomposed
    (``é`` or ``e`` + U+0301) and full-width forms (``１２``) give the same words."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def is_ungrounded(context: str, answer: str, config: FilterConfig, question: str = "") -> bool:
    """An extractive-length answer whose content words mostly occur in neither `context` nor `question`.

    The options a multiple-choice question lists (``"...\\nOptions:\\n- a\\n- b"``, the
    synthesizer's layout) ground an answer too: answering from them is what the task asks for.
    The rest of the question does not, or an answer that merely repeats it would pass. A word
    occurs when the text has it, or a form of it (`_stem_found`: "economic" in a text about the
    "economy"). A question that asks for a title, a tone, a summary or a description (`_ABSTRACTIVE`)
    wants new words: its answer is not checked.

    Args:
        context (`str`): the raw text the pair was synthesized from.
        answer (`str`): the answer to check.
        config (`FilterConfig`): `extractive_max_words` and `min_grounding`.
        question (`str`, *optional*, defaults to ``""``): the pair's question.
    """
    answer_words = words(answer)
    if not 2 <= len(answer_words) <= config.extractive_max_words or answer_words[0] in _VERDICTS:
        return False  # "Yes, it did.": a verdict on the question, not a span of the text
    parsed = parse_question(question)
    if not parsed.options and _ABSTRACTIVE.search(parsed.stem):  # listed options are the answers it may give
        return False
    content = [w for w in answer_words if len(w) > 2] or answer_words  # "a", "of", "in" prove nothing
    vocabulary = set(words(context)) | set(words(" ".join(parsed.options)))
    missing = [w for w in content if w not in vocabulary]
    if missing:  # the stem index only for an answer with words the text lacks as they are (it runs on every pair)
        index = _stems(vocabulary)
        missing = [w for w in missing if not _stem_found(w, index)]
    return (len(content) - len(missing)) / len(content) < config.min_grounding


def _repeat_fraction(text: str) -> float:
    w = words(text)
    grams = list(zip(w, w[1:], w[2:]))
    if len(grams) < 6:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def is_degenerate(question: str, answer: str, config: FilterConfig) -> bool:
    """An empty side, or a question/answer that loops (a typical greedy-decoding failure)."""
    if not words(question) or not words(answer):
        return True
    return max(_repeat_fraction(question), _repeat_fraction(answer)) > config.max_repeat_fraction


def is_copied_question(context: str, question: str, config: FilterConfig) -> bool:
    """The whole question (case and spacing aside) is a span of the text and asks nothing (no final
    ``?``): a sentence pasted as the question. A text's own question (an FAQ, an interview) is a question."""
    if question.rstrip().endswith(("?", "\uff1f")):  # full-width too
        return False
    q = words(question)
    return len(q) >= config.copied_min_words and f" {' '.join(q)} " in f" {' '.join(words(context))} "


def filter_pairs(context: str, pairs: Sequence[tuple[str, str, str]],
                 config: FilterConfig) -> tuple[list[tuple[str, str, str]], Counter]:
    """Keep the `(question, answer, task)` pairs that pass; count removals by filter name.

    A pair is counted once, under the first filter that removes it (in the order below). The
    last, ``malformed``, is always on: a pair that breaks the synthesizer's conventions
    (`templify.pairs.prepare_pair`: a multiple-choice answer that is none of the options, a
    chain of thought without its final answer, ...) would be dropped by templify anyway, so it
    is removed and counted here, and both output modes hold the same pairs.
    """
    kept, removed = [], Counter()
    for question, answer, task in pairs:
        if config.filter_degenerate and is_degenerate(question, answer, config):
            removed["degenerate"] += 1
        elif config.filter_copied_questions and is_copied_question(context, question, config):
            removed["copied_question"] += 1
        elif config.filter_ungrounded and is_ungrounded(context, answer, config, question):
            removed["ungrounded"] += 1
        elif prepare_pair(question, answer) is None:
            removed["malformed"] += 1
        else:
            kept.append((question, answer, task))
    return kept, removed


class NearDuplicates:
    """Streaming near-duplicate detector: `seen(text)` is True when a similar text came before.

    MinHash LSH as `datasketch.MinHashLSH` queries and inserts, with its band layout for the threshold (``b``
    bands of ``r`` values), but each band is kept as an 8-byte digest of (band, values) in one `KeySet`, not as
    its bytes under a key per text: the same decisions (a digest collision aside: about 2^-64 per pair of
    keys) in a fraction of the memory (BENCHMARKS.md, "Stages 2-3"); the whole corpus's bands are held until the
    pass ends. The two halves can run apart: `band_keys` (the costly part: shingles, MinHash, digests) in
    any process, `seen_keys` (the decisions, in order) in one.
    """

    def __init__(self, config: FilterConfig, keys: KeySet | None = None) -> None:
        try:
            from datasketch import MinHash, MinHashLSH
        except ImportError as error:
            raise ImportError("near-duplicate removal needs `datasketch`: pip install 'datasketch>=1.6', "
                              "or turn it off with --no_dedup (FilterConfig.dedup=False)") from error

        self.config = config
        # datasketch chooses the bands that fit the threshold; only their ranges are kept
        self.ranges = MinHashLSH(threshold=config.dedup_threshold, num_perm=config.dedup_num_perm).hashranges
        self.keys = KeySet() if keys is None else keys
        self.empty = MinHash(num_perm=config.dedup_num_perm, seed=1)  # copies skip permutation setup (5x)
        self.count = 0

    def minhash(self, text: str) -> Any:
        """The `datasketch.MinHash` of `text`'s word 3-grams; `None` under `dedup_min_words` words."""
        w = words(text)
        if len(w) < self.config.dedup_min_words:
            return None
        minhash = self.empty.copy()
        minhash.update_batch([" ".join(g).encode() for g in zip(w, w[1:], w[2:])])
        return minhash

    def band_keys(self, text: str) -> list[int] | None:
        """`text`'s key in each LSH band: a 64-bit digest of the band's MinHash values; `None` under
        `dedup_min_words` words (such a text is never a duplicate)."""
        if (minhash := self.minhash(text)) is None:
            return None
        values = minhash.hashvalues
        return [_digest(band, values[start:end].tobytes()) for band, (start, end) in enumerate(self.ranges)]

    def seen(self, text: str) -> bool:
        """Whether `text` duplicates an earlier one; a new text is remembered."""
        if (keys := self.band_keys(text)) is None:
            return False
        import numpy as np

        return bool(self.seen_keys(np.array([keys], dtype=np.uint64))[0])

    def seen_keys(self, rows: Any) -> Any:
        """`seen` on texts given by their `band_keys` (a 2-D ``uint64`` array, a row per text, in order):
        a boolean array, True for a duplicate of an earlier text (rows before it included)."""
        seen = self.keys.insert_new(rows)
        self.count += len(seen) - int(seen.sum())
        return seen


def _digest(band: int, values: bytes) -> int:
    """A band's values, with the band's index, as a 64-bit integer (the same in every process, unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(values, digest_size=8, salt=band.to_bytes(16, "little")).digest(), "little")


class KeySet:
    """A set of 64-bit keys in about 8 bytes each: the keys added last in a Python set (about 60 bytes each),
    merged into one sorted NumPy array once they are a quarter as many as the array holds (at least
    `min_buffer`, at most `max_buffer`, checked after each `insert_new`: a batch may overshoot it by its own
    keys): merges are few (their total work linear in the keys until the buffer reaches `max_buffer`), and a
    merge briefly holds the array twice."""

    def __init__(self, min_buffer: int = 1 << 16, max_buffer: int = 1 << 24) -> None:
        import numpy as np

        self.sorted = np.empty(0, dtype=np.uint64)
        self.recent: set[int] = set()
        self.min_buffer, self.max_buffer = min_buffer, max_buffer

    def __len__(self) -> int:
        return len(self.sorted) + len(self.recent)

    def insert_new(self, rows: Any) -> Any:
        """For each row of keys (a 2-D ``uint64`` array), in order: whether any of its keys is in the set,
        the keys of the rows before it included (a boolean array); the other rows' keys are added.

        The sorted array is searched for every row at once; only the keys added since the last merge are
        looked up one row at a time."""
        import numpy as np

        found = np.zeros(len(rows), dtype=bool)
        if len(self.sorted) and rows.size:
            at = np.minimum(np.searchsorted(self.sorted, rows), len(self.sorted) - 1)
            found = (self.sorted[at] == rows).any(axis=1)
        recent = self.recent
        for i, row in enumerate(rows.tolist()):
            if found[i] or any(key in recent for key in row):
                found[i] = True
            else:
                recent.update(row)
        if len(recent) >= min(self.max_buffer, max(self.min_buffer, len(self.sorted) // 4)):
            self.merge(np.fromiter(recent, dtype=np.uint64, count=len(recent)))
            self.recent = set()
        return found

    def merge(self, keys: Any) -> None:
        """Add `keys` (a 1-D ``uint64`` array, none of them in the set yet) to the sorted array; into an empty
        one, `keys` itself is sorted in place and kept (no copy)."""
        import numpy as np

        if not len(self.sorted):
            keys.sort()
            self.sorted = keys
            return
        new = np.sort(keys)
        self.sorted = np.concatenate([self.sorted, new])  # the old array is freed here
        self.sorted.sort(kind="stable")  # timsort finds the two sorted runs: a linear merge
