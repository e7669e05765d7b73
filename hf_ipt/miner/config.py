"""Settings of the rule-based reading-comprehension miner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Task types in the order their blocks are listed before shuffling; sub-types are "type.name".
TASK_TYPES = ("nli", "commonsense", "paraphrase", "word2text", "summarize", "completion")
TITLE_MODES = ("auto", "first_line", "none")


@dataclass
class MinerConfig:
    """Settings of `RuleMiner`.

    Args:
        min_sentence_chars (`int`, *optional*, defaults to 50): shortest sentence a
            two-sentence rule (NLI, cause-effect, paraphrase), a keyword task or a completion
            may use; the AdaptLLM reference uses 50.
        max_sentence_chars (`int`, *optional*, defaults to 600): longer "sentences" are
            tables, lists or junk glued together and are never used.
        min_clause_chars (`int`, *optional*, defaults to 10): shortest cause, effect or
            definition cut out of a sentence.
        max_per_subtype (`int`, *optional*, defaults to 2): pairs kept per sub-type and text.
        seed (`int`, *optional*, defaults to 0): base seed; each text's own seed mixes it with
            a CRC32 of the text, so results do not depend on the process or the batch.
        title (`str`, *optional*, defaults to ``"auto"``): ``"first_line"`` takes the first
            line as the title (the reference), ``"auto"`` only when it looks like a headline,
            ``"none"`` never.
        max_title_chars (`int`, *optional*, defaults to 150): longest first line ``"auto"``
            accepts as a title.
        domain (`str`, *optional*, defaults to ``"domain-specific"``): adjective naming the
            domain in keyword questions ("finance", "biomedical", ...).
        min_keywords (`int`, *optional*, defaults to 3): domain keywords a sentence needs for
            a keyword task (and how many the question lists).
        max_keyword_sentence_words (`int`, *optional*, defaults to 100): longest sentence, in
            words, used for a keyword task.
        min_stopword_ratio (`float`, *optional*, defaults to 0.15): share of common English
            function words a text needs to be mined at all; English prose has about 0.4,
            other languages and binary junk almost none.
        task_types (`list[str]`, *optional*): task types to mine; defaults to all six.
    """

    min_sentence_chars: int = field(
        default=50, metadata={"help": "Shortest sentence a two-sentence rule may use."}
    )
    max_sentence_chars: int = field(
        default=600, metadata={"help": "Longer sentences (tables, junk) are never used."}
    )
    min_clause_chars: int = field(
        default=10, metadata={"help": "Shortest cause, effect or definition cut from a sentence."}
    )
    max_per_subtype: int = field(default=2, metadata={"help": "Pairs kept per sub-type and text."})
    seed: int = field(default=0, metadata={"help": "Base seed, mixed with a CRC32 of each text."})
    title: Literal["auto", "first_line", "none"] = field(
        default="auto", metadata={"help": "Title detection: 'auto', 'first_line' or 'none'."}
    )
    max_title_chars: int = field(
        default=150, metadata={"help": "Longest first line 'auto' accepts as a title."}
    )
    domain: str = field(
        default="domain-specific", metadata={"help": "Domain adjective used in keyword questions."}
    )
    min_keywords: int = field(
        default=3, metadata={"help": "Domain keywords a sentence needs for a keyword task."}
    )
    max_keyword_sentence_words: int = field(
        default=100, metadata={"help": "Longest sentence, in words, used for a keyword task."}
    )
    min_stopword_ratio: float = field(
        default=0.15, metadata={"help": "Share of English function words a text needs."}
    )
    task_types: list[str] = field(
        default_factory=lambda: list(TASK_TYPES),
        metadata={"help": f"Task types to mine, among {', '.join(TASK_TYPES)}."},
    )

    def __post_init__(self) -> None:
        from ..backends.base import is_integer

        for name in ("min_sentence_chars", "max_sentence_chars", "min_clause_chars", "max_per_subtype", "seed",
                     "max_title_chars", "min_keywords", "max_keyword_sentence_words"):  # "50" failed mid-mining
            if not is_integer(getattr(self, name)):
                raise TypeError(f"`{name}` must be an integer, got {getattr(self, name)!r} (MinerConfig.{name})")
        if isinstance(self.min_stopword_ratio, bool) or not isinstance(self.min_stopword_ratio, (int, float)):
            raise TypeError(f"`min_stopword_ratio` must be a number, got {self.min_stopword_ratio!r} "
                            "(MinerConfig.min_stopword_ratio)")
        for name in ("min_sentence_chars", "min_clause_chars", "max_per_subtype", "min_keywords"):
            _check_at_least(name, getattr(self, name), 1)
        _check_at_least("max_sentence_chars", self.max_sentence_chars, self.min_sentence_chars)
        _check_at_least("max_title_chars", self.max_title_chars, 1)
        _check_at_least(
            "max_keyword_sentence_words", self.max_keyword_sentence_words, self.min_keywords
        )
        if self.title not in TITLE_MODES:
            raise ValueError(
                f"`title` must be one of {TITLE_MODES}, got {self.title!r} (MinerConfig.title)"
            )
        if not 0.0 <= self.min_stopword_ratio <= 1.0:
            raise ValueError(
                f"`min_stopword_ratio` must be in [0, 1], got {self.min_stopword_ratio} "
                "(MinerConfig.min_stopword_ratio); use 0 to mine every text"
            )
        unknown = [name for name in self.task_types if name not in TASK_TYPES]
        if unknown or not self.task_types:
            raise ValueError(
                f"`task_types` must be a non-empty list among {TASK_TYPES}, got {self.task_types!r} "
                "(MinerConfig.task_types)"
            )
        if not self.domain.strip():
            raise ValueError(
                "`domain` must be a non-empty adjective such as 'finance', got "
                f"{self.domain!r} (MinerConfig.domain)"
            )


def _check_at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value} (MinerConfig.{name})")
