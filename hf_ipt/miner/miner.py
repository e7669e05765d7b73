"""`RuleMiner`: reading-comprehension pairs mined from a raw text with patterns, no model.

The model-free synthesizer. Its output has the synthesizer's shape, a list of
``(question, answer)`` pairs per text (plus each pair's task), so templify, the builder and
the jobs consume both alike.
"""

from __future__ import annotations

import functools
import random
import string
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from ..protocol import MARKER_PATTERN, Pair, blank_markers
from . import rules, word_rules
from .config import MinerConfig
from .keywords import FUNCTION_WORDS, lower_words
from .sentences import LINE_BREAK, split_sentences
from .templates import SUBTYPES, load_templates, task_type

_ENGLISH_SAMPLE_CHARS = 2000  # ~350 words: a stable ratio, and cheap on very long texts
_MIN_ALPHABETIC_SHARE = 0.5  # ~75% of English prose tokens are pure letters; junk, tables far fewer


class MinedPair(NamedTuple):
    """One mined task: a question, its answer and its sub-type (``"nli.entail"``, ...)."""

    question: str
    answer: str
    task: str


class RuleMiner:
    """Mine reading-comprehension tasks from raw texts (AdaptLLM-style rules, no model).

    Six task types: ``nli``, ``commonsense``, ``paraphrase``, ``word2text``, ``summarize`` and
    ``completion`` (sub-types in `SUBTYPES`). At most ``config.max_per_subtype`` pairs per
    sub-type; pairs of one type stay together and type blocks come in a seeded random order.
    Texts that are not English prose (other languages, binary junk, empty) give ``[]``.

    Args:
        config (`MinerConfig`, *optional*): settings; defaults to `MinerConfig()`.
        keywords (`Iterable[str]`, *optional*): domain keywords for ``word2text.keywords``
            tasks, e.g. from `KeywordStats.top` or `keywords_from_tokenizers`; none, no such task.
            Each is one word of letters ("dividend"), matched case-insensitively.
    """

    def __init__(
        self, config: MinerConfig | None = None, keywords: Iterable[str] | None = None
    ) -> None:
        self.config = config or MinerConfig()
        self.keywords = keyword_set(keywords)
        self._templates = load_templates()
        self._enabled = frozenset(s for s in SUBTYPES if task_type(s) in self.config.task_types)

    def mine(self, text: str, seed: int | None = None) -> list[MinedPair]:
        """Mine one text.

        Args:
            text (`str`): a raw document; a non-string gives ``[]``.
            seed (`int`, *optional*): seed of this text's choices (which candidates, which
                templates, block order); defaults to ``config.seed`` mixed with a CRC32 of the text.

        Returns:
            `list[MinedPair]`: valid synthesizer pairs (non-empty, free of protocol markers).
        """
        if not isinstance(text, str) or not text.strip():
            return []
        rng = random.Random(self._seed(text, seed))
        text = sanitize(text)
        title, body = split_title(text, self.config)
        if not looks_english(body, self.config.min_stopword_ratio):
            return []
        candidates = self._candidates(title, split_sentences(body))
        return self._render(candidates, rng)

    def mine_batch(self, texts: Sequence[str]) -> list[list[MinedPair]]:
        """`mine` each text with its own seed; the result does not depend on the batching."""
        if isinstance(texts, str):  # mined one character at a time
            raise TypeError("mine_batch takes a list of texts, got one str: use mine(text), or mine_batch([text])")
        return [self.mine(text) for text in texts]

    def _seed(self, text: str, seed: int | None) -> int:
        if seed is not None:
            return seed
        # CRC32, not hash(): the same in every process, whatever PYTHONHASHSEED is.
        return self.config.seed * 1_000_003 ^ zlib.crc32(text.encode("utf-8", "surrogatepass"))

    def _candidates(
        self, title: str | None, sentences: list[str]
    ) -> dict[str, list[dict[str, str]]]:
        found: dict[str, list[dict[str, str]]] = {}
        for candidate in self._rules(title, sentences):
            if candidate.subtype in self._enabled:
                found.setdefault(candidate.subtype, []).append(candidate.fields)
        return found

    def _rules(self, title: str | None, sentences: list[str]) -> Iterator[rules.Candidate]:
        """Run only the scans that can give an enabled task type."""
        config, types = self.config, self.config.task_types
        if "nli" in types or "commonsense" in types or "paraphrase" in types:
            yield from rules.connective_candidates(sentences, config)
        if "commonsense" in types:
            yield from rules.cause_candidates(sentences, config)
        if "word2text" in types:
            yield from word_rules.definition_candidates(sentences, config)
            yield from word_rules.acronym_candidates(sentences, config)
            yield from word_rules.topic_candidates(sentences, config)
            yield from word_rules.keyword_candidates(sentences, self.keywords, config)
        if "summarize" in types:
            yield from rules.title_candidates(title, sentences, config)
        if "completion" in types:
            yield from rules.completion_candidates(sentences, config)

    def _render(
        self, candidates: dict[str, list[dict[str, str]]], rng: random.Random
    ) -> list[MinedPair]:
        slots: list[_Slot] = []
        for subtype in SUBTYPES:  # a fixed order keeps the draws reproducible
            found = candidates.get(subtype)
            if not found:
                continue
            picked: Sequence[int] = range(len(found))
            if len(found) > self.config.max_per_subtype:
                picked = sorted(rng.sample(range(len(found)), self.config.max_per_subtype))
            spare = [fields for index, fields in enumerate(found) if index not in picked]
            pool = self._templates[subtype][0]
            for index in picked:
                fields = _cleaned(found[index])
                drawn = self._draw(subtype, fields, rng.choice(pool))
                slots.append(_Slot(subtype, fields, drawn, spare))
        blocks: dict[str, list[MinedPair]] = {}
        for pair in self._distinct(slots, rng):
            blocks.setdefault(task_type(pair.task), []).append(pair)
        order = list(blocks)
        rng.shuffle(order)  # type blocks in random order, each block kept together
        return _unique([pair for name in order for pair in blocks[name]])

    def _distinct(self, slots: list[_Slot], rng: random.Random) -> list[MinedPair]:
        """The slots' pairs, no two from the same source sentences with the same answer.

        A contrast gives both an ``nli.contradict`` and a ``paraphrase.different`` candidate, a
        conclusion an ``nli.entail`` and a ``commonsense.effect`` one: both may ask for the same
        sentence after the same sentence. Later sub-types keep their pair: the earlier (NLI
        first) can ask about the same sentences another way (the link word, the relation).
        A completion pair asks for the same sentence again, its link word kept ("However, Y"
        where the contrast pair answers "Y"): completion, whose candidates are any two adjacent
        sentences, gives way to every other sub-type. A pair that would repeat one is drawn
        again: from a candidate its sub-type did not pick, else from another template of its
        own; with none left, the slot stays empty. Only a repeat draws from `rng`, so a text
        without one mines as before.
        """
        # Rule pairs claim their sources first, later sub-types before earlier ones.
        order = sorted(range(len(slots)), key=lambda i: (slots[i].subtype in _GIVES_WAY, -i))
        taken: list[_Source] = []
        kept: dict[int, MinedPair] = {}
        for index in order:
            slot = slots[index]
            drawn = slot.drawn
            if drawn is not None and _repeats(drawn[1], taken):
                drawn = self._redraw(slot, taken, rng)
            if drawn is not None:
                taken.append(drawn[1])
                kept[index] = drawn[0]
        return [kept[index] for index in sorted(kept)]

    def _redraw(
        self, slot: _Slot, taken: list[_Source], rng: random.Random
    ) -> tuple[MinedPair, _Source] | None:
        """A pair for `slot` that repeats none `taken`: another candidate first (new text)."""
        pool = self._templates[slot.subtype][0]
        for raw in [*rng.sample(slot.spare, len(slot.spare)), None]:
            fields = slot.fields if raw is None else _cleaned(raw)
            for template in rng.sample(pool, len(pool)):
                drawn = self._draw(slot.subtype, fields, template)
                if drawn is not None and not _repeats(drawn[1], taken):
                    if raw is not None:
                        slot.spare.remove(raw)  # no other slot of the sub-type takes it again
                    return drawn
        return None

    def _draw(
        self, subtype: str, fields: dict[str, str], template: tuple[str, str]
    ) -> tuple[MinedPair, _Source] | None:
        """`template` filled in, and the source of the pair: its question's fields and answer."""
        constants = self._templates[subtype][1]
        pair = _fill(template, {**constants, **fields}, subtype)
        if pair is None:
            return None
        names = _source_fields(subtype, template[0])
        shown = frozenset([fields[name] for name in names])
        return pair, _Source(shown, pair.answer, _core(pair.answer))


class _Source(NamedTuple):
    """What a pair is built from: the field values its question shows (the source sentences)
    and its answer. Two pairs of one text never share one, nor nearly (`_repeats`)."""

    shown: frozenset[str]
    answer: str
    core: str  # `_core` of the answer


# Sub-types whose candidates are any two adjacent sentences: plenty to draw another from.
_GIVES_WAY = frozenset(("completion",))
_QUOTES_AND_SPACE = "\"'\u201c\u201d\u2018\u2019 "
# The link word a rule found ("However"): some questions show it, but it is no source sentence.
_NOT_SOURCES = frozenset(("connective",))


class _Slot(NamedTuple):
    """A picked candidate of a sub-type, its drawn pair (None: unusable) and the sub-type's
    candidates not picked (shared by its slots)."""

    subtype: str
    fields: dict[str, str]
    drawn: tuple[MinedPair, _Source] | None
    spare: list[dict[str, str]]


def _core(text: str) -> str:
    """What a cut of `text` keeps verbatim: all but the quotes at its ends (a cut pairs them)
    and its first letter (a cut capitalizes it): '"However, it is," he said' ->
    'owever, it is," he said'."""
    stripped = text.strip(_QUOTES_AND_SPACE)
    return stripped[1:] or stripped or text


def _repeats(source: _Source, taken: list[_Source]) -> bool:
    """Whether a pair from `source` nearly repeats one `taken`: one answer holds the other but
    for its first letter and end quotes, which a cut changes ("However, y." and "Y.", or "But,
    he said, y." and "Y.": only a link word, an attribution or the punctuation tell them
    apart), and the questions show the same sentences. Answers are compared first: they
    seldom match."""
    shown, answer, core = source
    for other_shown, other, other_core in taken:  # a loop, not any(): this runs for every pair
        if (core in other or other_core in answer) and (
            shown == other_shown or _same_sentences(shown, other_shown)
        ):
            return True
    return False


def _same_sentences(first: frozenset[str], second: frozenset[str]) -> bool:
    """Whether two questions show the same sentences, each one of the other's or a rule's cut
    of it (the effect "Learning via The Sims may mean ..." of "By contrast, said Mr
    Purushotma, learning via The Sims may mean ...", shown before "This was because")."""
    return len(first) == len(second) and all(
        any(_cut_of(one, other) for other in second) for one in first
    )


def _cut_of(first: str, second: str) -> bool:
    """Whether one of two field values is the other or a cut of it: the shorter's `_core` is
    within the longer, and it is over half as long (a term or an acronym is no cut of its
    sentence)."""
    short, long = (first, second) if len(first) <= len(second) else (second, first)
    return 2 * len(short) > len(long) and _core(short) in long


def _cleaned(fields: dict[str, str]) -> dict[str, str]:
    # Quotes paired here, on the few kept: a sentence of a quotation over several sentences
    # has only its opening or closing mark.
    return {name: rules.balance_quotes(rules.clean(value)) for name, value in fields.items()}


@functools.cache
def _source_fields(subtype: str, question: str) -> tuple[str, ...]:
    """The rule fields a question template of `subtype` shows, its link word and constants left
    out: ``"{premise} {connective},"`` -> ``("premise",)``. Cached: a few dozen templates."""
    constants = load_templates()[subtype][1]
    return tuple(
        name
        for _, name, _, _ in string.Formatter().parse(question)
        if name and name not in _NOT_SOURCES and name not in constants
    )


def keyword_set(keywords: Iterable[str] | None) -> frozenset[str]:
    """The lower-cased `keywords`, each a word as `lower_words` finds words in sentences.

    A string is refused (its letters would become the keywords), and so is a keyword that is
    not one word of letters ("interest rate", "e-mail", "co2"): it could never match.
    """
    if isinstance(keywords, str):
        raise TypeError(
            f"`keywords` must be a list of words, got the string {keywords!r}: pass "
            f"[{keywords!r}] (RuleMiner keywords)"
        )
    words = frozenset(word.lower() for word in keywords or ())
    unmatchable = sorted(word for word in words if lower_words(word) != [word])
    if unmatchable:
        raise ValueError(
            f"keywords must be single words of letters, got {unmatchable[:5]!r}"
            f"{' ...' if len(unmatchable) > 5 else ''}: a sentence's words never match them; "
            "split them into words or drop them (RuleMiner keywords)"
        )
    return words


def _fill(template: tuple[str, str], fields: dict[str, str], subtype: str) -> MinedPair | None:
    question = _sentence_case(template[0].format(**fields).strip())
    answer = template[1].format(**fields).strip()
    if not question or not answer or MARKER_PATTERN.search(question) or MARKER_PATTERN.search(answer):
        return None
    return MinedPair(question, answer, subtype)


def _sentence_case(question: str) -> str:
    """A question opened by a field written for mid-sentence use ("{subject} is about what?" with the
    subject "the second half") starts with a capital; a first word with a capital inside ("eBay") stays."""
    first = question.split(maxsplit=1)[0] if question else ""
    return rules.capitalize(question) if first.islower() else question


def _unique(pairs: list[MinedPair]) -> list[MinedPair]:
    """Drop pairs whose question (lower-cased) was already asked, as the protocol parser does."""
    seen: set[str] = set()  # membership only
    kept = []
    for pair in pairs:
        key = pair.question.lower()
        if key not in seen:
            seen.add(key)
            kept.append(pair)
    return kept


def sanitize(text: str) -> str:
    """Blank out protocol markers and binary debris (control characters, U+FFFD, surrogates)."""
    text = blank_markers(text)
    if rules.JUNK.search(text):
        text = rules.JUNK.sub(" ", text)
    return text


def split_title(text: str, config: MinerConfig) -> tuple[str | None, str]:
    """``(title, body)``: the first line is the title per ``config.title``; else ``(None, text)``."""
    if config.title == "none":
        return None, text
    lines = LINE_BREAK.split(text.lstrip(), maxsplit=1)  # "\r" or "\r\n" end a line as "\n" does
    line = rules.clean(lines[0])
    if len(lines) < 2 or not line:
        return None, text
    rest = lines[1]
    if config.title == "first_line" or _looks_like_title(line, config.max_title_chars):
        return line, rest
    return None, text


def _looks_like_title(line: str, max_chars: int) -> bool:
    """A headline: short, a few words with letters, one "sentence" without a final full stop.

    Its first character is free: headlines open with "$1m", "eBay" or a quote.
    """
    if len(line) > max_chars or not 2 <= line.count(" ") + 1 <= 25:
        return False
    if line.endswith((".", ",", ";", ":")) or not any(c.isalpha() for c in line):
        return False
    return len(split_sentences(line)) == 1


def looks_english(text: str, min_stopword_ratio: float) -> bool:
    """English prose: mostly alphabetic tokens, with enough common English function words.

    Only the first characters are looked at, so the check costs the same on a huge text.
    A ratio of 0 accepts every text.
    """
    if min_stopword_ratio <= 0:
        return True
    words = text[:_ENGLISH_SAMPLE_CHARS].lower().split()
    if not words:
        return False
    # map() keeps both counts in C: this check runs on every text.
    alphabetic = sum(map(str.isalpha, words)) / len(words)
    common = sum(map(FUNCTION_WORDS.__contains__, words)) / len(words)
    return alphabetic >= _MIN_ALPHABETIC_SHARE and common >= min_stopword_ratio


def mine_pairs(text: str, **kwargs) -> list[Pair]:
    """Mine `text` into protocol pairs (question and answer only) with a one-off `RuleMiner`.

    Args:
        text (`str`): the raw text.
        kwargs: `MinerConfig` fields, plus ``keywords`` (`Iterable[str]`) for keyword tasks.
            To mine many texts, build one `RuleMiner` instead.

    Returns:
        `list[Pair]`
    """
    keywords = kwargs.pop("keywords", None)
    miner = RuleMiner(MinerConfig(**kwargs), keywords=keywords)
    return [Pair(pair.question, pair.answer) for pair in miner.mine(text)]
