"""Word-to-text rules: definitions, abbreviations, topics and domain keywords."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from .config import MinerConfig
from .keywords import lower_words
from .lexicon import lexicon
from .rules import Candidate, capitalize, clause, clean, drop_attribution, is_prose

_DEFINED = re.compile(
    r"(?P<term>.{2,60}?)\s+(?:is|are|was|were|can be|has been|have been)\s+"
    r"(?:(?:broadly|commonly|generally|usually|often|formally|officially)\s+)?defined\s+as\s+(?P<definition>\S.*)",
    re.DOTALL,
)
_STANDS_FOR = re.compile(
    r"(?P<term>\S{2,12})\s+(?:stands|stood)\s+for\s+(?P<definition>\S.*)", re.DOTALL
)
# "The term W means D" or a quoted, CLOSED term: an open quote alone starts a quotation.
_REFERS = re.compile(
    r"(?:The\s+(?:term|word|phrase|expression|acronym|abbreviation)\s+"
    r"[\"\u201c'\u2018]?(?P<term>[^\"\u201d'\u2019,]{2,50}?)[\"\u201d'\u2019]?"
    r"|[\"\u201c'\u2018](?P<quoted>[^\"\u201d'\u2019,]{2,50}?)[\"\u201d'\u2019]),?\s+"
    r"(?:refers to|means|denotes)\s+(?P<definition>\S.*)",
    re.DOTALL,
)
_TOPIC = re.compile(
    r"(?P<subject>[^,;:]{8,80}?)(?:\s+(?:is|was|are|were)\s+(?:(?:all|mainly|mostly|largely|really)\s+)?about"
    r"|\s+(?:talks|talked)\s+about|'s\s+(?:main\s+)?topic\s+is)\s+(?P<topic>\S.*)",
    re.DOTALL,
)
# A topic's subject is a noun phrase: not a clause opener, no reporting verb or relative word.
_NOT_SUBJECT_START = lexicon("not_subject_start")
_NOT_IN_SUBJECT = lexicon("not_in_subject")
_NOT_SUBJECT_END = lexicon("not_subject_end")
# "about" meaning "approximately" or "going to": "is about 5%", "is about to", "about a third".
_NOT_TOPIC = lexicon("not_topic")
_QUANTITIES = lexicon("quantities")
_ACRONYM = re.compile(r"\((?P<acronym>[A-Z][A-Za-z&]{1,9})\)")
_EXPANSION_WORD = re.compile(r"[^\s-]+")  # the words `_expansion` counts: "Anti-Doping" is two
_WORD_QUOTES = "\"'\u201c\u201d,"
_MINOR_WORDS = lexicon("minor_words")
_PRONOUNS = lexicon("pronouns")
_LOWER_FIRST = lexicon("lower_first")
# "Normally adults are defined as": the adverb belongs to the sentence, not to the term.
_TERM_ADVERBS = lexicon("term_adverbs")
# "the New York Stock Exchange's (NYSE)": a possessive on an organisation's head noun is the
# sentence's; a name's own "'s" ("Standard & Poor's (S&P)") stays.
_POSSESSIVE_HEADS = lexicon("possessive_heads")
# Where a topic or definition runs into a second clause: "Search engines are about discovering
# information | and RSS is the ideal way...", "... growth | , although the government ...".
# "and" / "but" then a pronoun, or then up to three capitalised words and a finite verb; a
# comma then a clause opener; a dash or a semicolon.
_SECOND_CLAUSE = re.compile(
    r",?\s+(?:and|but)\s+(?:I|we|you|he|she|it|they|there)\b"
    r"|,?\s+(?:and|but)\s+(?:[A-Z][\w'\u2019&-]*\s+){1,3}"
    r"(?:is|are|was|were|has|have|had|will|would|can|could|says|said)\b"
    r"|,\s+(?:and|but|while|whereas|although|though|which|so|yet)\s"
    r"|\s+[-\u2013\u2014]\s|\s*[;\u2014]"
)


def definition_candidates(sentences: Sequence[str], config: MinerConfig) -> Iterator[Candidate]:
    """Definition tasks: ``W is defined as D``, ``W stands for D``, ``The term W refers to D``."""
    for sentence in sentences:
        match = _definition_match(sentence) if len(sentence) <= config.max_sentence_chars else None
        if match is None:
            continue
        term = _bare_term(_drop_adverb(clause(match["term"] or match.groupdict().get("quoted") or "")))
        definition = _first_clause(clause(match["definition"]))
        if match.re is _STANDS_FOR:
            definition = definition.split(",", 1)[0]  # "Rhythm And Blues, remember"
        if _is_term(term) and len(definition) >= config.min_clause_chars:
            fields = {"term": term, "definition": capitalize(definition)}
            yield Candidate("word2text.definition", fields)


def _definition_match(sentence: str) -> re.Match | None:
    # Substring tests first: they are far cheaper than the regexes and rarely pass.
    if "defined as" in sentence:
        return _DEFINED.match(sentence)
    if " stands for " in sentence or " stood for " in sentence:
        match = _STANDS_FOR.match(sentence)
        # An abbreviation has capitals; "Labour stands for fairness" is a value, not a definition.
        return match if match and sum(c.isupper() for c in match["term"]) >= 2 else None
    if " refers to " in sentence or " means " in sentence or " denotes " in sentence:
        return _REFERS.match(sentence)
    return None


def _is_term(term: str) -> bool:
    words = term.split()
    return (
        0 < len(words) <= 6
        and words[0].lower() not in _PRONOUNS
        and words[0].lower() not in _NOT_SUBJECT_START
    )


def _drop_adverb(term: str) -> str:
    """The term without a sentence adverb before it ("Normally adults" -> "adults")."""
    first, _, rest = term.partition(" ")
    return rest.lstrip(", ") if rest and first.rstrip(",").lower() in _TERM_ADVERBS else term


def _first_clause(text: str) -> str:
    """`text` up to a second clause joined to it (`_SECOND_CLAUSE`), without final marks."""
    match = _SECOND_CLAUSE.search(text)
    return clause(text[: match.start()]) if match else text


def _bare_term(term: str) -> str:
    """The term without its article ("A recession" -> "recession"): that belongs to the sentence."""
    first, _, rest = term.partition(" ")
    return rest if rest and first in ("A", "An", "The", "a", "an", "the") else term


def acronym_candidates(sentences: Sequence[str], config: MinerConfig) -> Iterator[Candidate]:
    """Abbreviation tasks from ``Words Spelling It Out (WSIO)``, checked letter by letter."""
    seen: set[str] = set()  # membership only, never iterated
    for sentence in sentences:
        if "(" not in sentence or len(sentence) > config.max_sentence_chars:
            continue
        for match in _ACRONYM.finditer(sentence):
            acronym = match["acronym"]
            expansion = _expansion(sentence[: match.start()], acronym)
            if expansion and acronym not in seen:
                seen.add(acronym)
                yield Candidate("word2text.acronym", {"acronym": acronym, "expansion": expansion})


def _expansion(before: str, acronym: str) -> str | None:
    """The words just before an acronym whose initials spell it (minor words may be skipped)."""
    letters = acronym[:-1] if acronym.endswith("s") and acronym[:-1].isupper() else acronym
    letters = letters.replace("&", "")
    # Minor words spell a letter only in mixed-case acronyms ("DoD", "BoE"), never in "Opec".
    mixed_case = sum(c.isupper() for c in letters) >= 2
    words = before.replace("-", " ").split()[-(2 * len(letters) + 2) :]
    position = len(letters) - 1
    for start in range(len(words) - 1, -1, -1):
        word = words[start].strip(_WORD_QUOTES)
        minor = word.lower() in _MINOR_WORDS
        letter = letters[position]
        if word[:1].lower() == letter.lower() and (not minor or (mixed_case and letter.islower())):
            position -= 1
            if position < 0:
                expansion = _without_possessive(_tail_span(before, len(words) - start))
                return (
                    expansion
                    if len(letters) >= 2 and expansion.lower() != acronym.lower()
                    else None
                )
        elif not minor:
            return None
    return None


def _without_possessive(expansion: str) -> str:
    """`expansion` without the possessive "'s" of an organisation's head noun (`_POSSESSIVE_HEADS`)."""
    if expansion.endswith(("'s", "\u2019s")):
        head = expansion[:-2].rsplit(" ", 1)[-1]
        if head.lower() in _POSSESSIVE_HEADS:
            return expansion[:-2]
    return expansion


def _tail_span(before: str, num_words: int) -> str:
    """The last `num_words` words of `before` as the text has them ("Anti-Doping", "Bankers'")."""
    start = list(_EXPANSION_WORD.finditer(before))[-num_words].start()
    return before[start:].rstrip().strip(_WORD_QUOTES)


def topic_candidates(sentences: Sequence[str], config: MinerConfig) -> Iterator[Candidate]:
    """Topic tasks from ``S is about T``, ``S talks about T`` and ``S's topic is T``."""
    for sentence in sentences:
        if len(sentence) > config.max_sentence_chars:
            continue
        if " about " not in sentence and "topic is" not in sentence:
            continue
        match = _TOPIC.match(sentence)
        if match is None:
            continue
        subject = clean(match["subject"]).lstrip("\"'\u201c\u2018")
        topic = _first_clause(clause(drop_attribution(match["topic"])))
        if not topic[:1].isalpha() or len(topic) < 4 or _approximate(topic):
            continue
        words = subject.split()
        if not words:
            continue  # the subject was only quote marks
        first = words[0].lower()
        if first in _PRONOUNS or first in _NOT_SUBJECT_START or len(words) > 8:
            continue
        if words[-1].lower() in _NOT_SUBJECT_END:
            continue  # "the two sides held | talks about a deal": "talks" was a noun
        if any(word in _NOT_IN_SUBJECT for word in words):
            continue
        if words[0] in _LOWER_FIRST:
            subject = subject[0].lower() + subject[1:]
        yield Candidate("word2text.topic", {"subject": subject, "topic": capitalize(topic)})


def _approximate(topic: str) -> bool:
    """Whether "about" means "approximately" or "going to" rather than "on the subject of"."""
    words = topic.lower().split(" ", 3)
    if words[0] in ("the", "a", "an") and len(words) > 1:
        return words[1] in _QUANTITIES or words[1] in _NOT_TOPIC
    return words[0] in _NOT_TOPIC


def keyword_candidates(
    sentences: Sequence[str], keywords: frozenset[str], config: MinerConfig
) -> Iterator[Candidate]:
    """Keyword tasks: a sentence holding at least ``config.min_keywords`` domain keywords."""
    if not keywords:
        return
    for sentence in sentences:
        if not is_prose(sentence, config):
            continue
        words = lower_words(sentence)
        if (
            len(words) > config.max_keyword_sentence_words
            or len(keywords.intersection(words)) < config.min_keywords
        ):
            continue  # the set intersection is a fast filter; most sentences stop here
        found = list(dict.fromkeys(word for word in words if word in keywords))  # first-seen order
        if len(found) >= config.min_keywords:
            yield Candidate(
                "word2text.keywords",
                {"keywords": ", ".join(found), "sentence": sentence, "domain": config.domain},
            )
