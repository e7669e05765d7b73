"""Check and render one pair: multiple-choice options and chain-of-thought answers in varied styles.

The synthesizer writes options as ``"\\nOptions:\\n- opt1\\n- opt2"`` and chain-of-thought
as a question ending ``"\\nLet's think step by step."`` with an answer ending
``"\\nTherefore, the answer is {final}"``. `prepare_pair` checks a pair against those
conventions and, like the reference templify (``parse_QA_list`` in microsoft/LMOps
``instruction_pretrain``), DROPS a pair that breaks them instead of printing a half-formed
question into pre-training text:

- a chain-of-thought trigger or final-answer phrase without the other, a trigger that does
  not end the question, or a final-answer phrase that occurs more than once;
- an options marker that occurs more than once, an empty stem or option;
- a multiple-choice answer that is none of the options (compared stripped, then
  case-insensitively) and no "none of the above" style answer.

`render_pair` then shuffles the options and re-lists them in the chain's option style; when
that style has letter/number markers, the answer (or the CoT final answer) becomes the
marker. Options that speak of the others ("None of the above", "All of the above") are not
shuffled: they stay last, in their order. A "none of the above" style answer names such a
listed option when there is one, else it becomes the chain's own such option, listed last.
"""

from __future__ import annotations

import random
import string
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from . import Format

OPTIONS_HEADER = "\nOptions:\n"
OPTION_BULLET = "- "
OPTIONS_MARKER = OPTIONS_HEADER + OPTION_BULLET
OPTION_SEPARATOR = "\n" + OPTION_BULLET
COT_TRIGGER = "\nLet's think step by step."
COT_FINAL = "\nTherefore, the answer is "
_ROMAN = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii"]
MARKERS = {
    "upper": list(string.ascii_uppercase),
    "lower": list(string.ascii_lowercase),
    "number": [str(i) for i in range(1, 100)],
    "roman": _ROMAN,
}
# Answers that say no listed option is right (compared lower-cased, without a final period).
UNANSWERABLE = frozenset(
    {
        "none", "none of the above", "none of the above choices", "none of these", "none of them",
        "none of the options", "none of the choices", "none of the given options",
        "none of the provided choices", "no option fits", "no option is correct", "no correct option",
        "no suitable option", "no suitable choice", "no valid option", "nothing fits", "no answer",
        "unanswerable", "not enough information", "not enough info", "insufficient information",
        "cannot be determined", "can't be determined", "unknown",
    }
)
# Options that speak of the other options: shuffled in among them they would read "None of the
# above" first. Compared like UNANSWERABLE.
ABOUT_THE_OTHERS = UNANSWERABLE | {
    "all of the above", "all of these", "all of them", "all of the options", "all of the choices",
    "all of the above choices", "both of the above", "both of these", "neither of the above",
    "neither of these", "neither",
}
# A text ending in one of these (before closing quotes/brackets) needs no added full stop or
# turn end: ASCII, fullwidth/CJK, Arabic, Devanagari and the ellipsis.
SENTENCE_PUNCTUATION = ".?!;:\u2026\u3002\uff1f\uff01\uff1b\uff1a\uff0e\uff61\u061f\u06d4\u0964\u0965"
CLOSING = "\"')]\u201d\u2019\u300d\u300f\uff09"


class ParsedQuestion(NamedTuple):
    stem: str
    options: list[str]
    cot: bool


class PreparedPair(NamedTuple):
    """A well-formed synthesizer pair, split into its parts."""

    stem: str
    options: list[str]
    answer: str  # the answer, or the final answer of a chain of thought
    reasoning: str | None  # the chain of thought, `None` for a plain answer
    cot: bool


def parse_question(question: str) -> ParsedQuestion:
    """Split a synthesizer question into stem, options and the chain-of-thought flag.

    Lenient (for filters): a question that breaks the conventions comes back whole as the stem.
    """
    cot = question.endswith(COT_TRIGGER)
    if cot:
        question = question[: -len(COT_TRIGGER)]
    parts = question.split(OPTIONS_MARKER)
    if len(parts) != 2:
        return ParsedQuestion(question, [], cot)
    return ParsedQuestion(parts[0], [o.strip() for o in parts[1].split(OPTION_SEPARATOR)], cot)


def split_cot_answer(answer: str) -> tuple[str, str] | None:
    """``(reasoning, final)`` for a chain-of-thought answer with exactly one final-answer phrase, else `None`."""
    parts = answer.split(COT_FINAL)
    if len(parts) != 2:
        return None
    return parts[0].strip(), parts[1].strip()


def is_unanswerable(answer: str) -> bool:
    return answer.strip().rstrip(".").casefold() in UNANSWERABLE


def _about_the_others(option: str) -> bool:
    return option.strip().rstrip(".").casefold() in ABOUT_THE_OTHERS


def ends_in_punctuation(text: str) -> bool:
    """`text` ends a sentence itself ('He said: "We are happy."' and '是的。' too)."""
    last = text.rstrip(CLOSING)[-1:]
    return last != "" and last in SENTENCE_PUNCTUATION


def _match_option(answer: str, options: list[str]) -> str | None:
    """The option `answer` names: equal when stripped, else ignoring case, else without a final period."""
    answer = answer.strip()
    tests = (
        lambda o: o == answer,
        lambda o: o.casefold() == answer.casefold(),
        lambda o: o.rstrip(".").casefold() == answer.rstrip(".").casefold(),
    )
    return next((o for test in tests for o in options if test(o)), None)


def prepare_pair(question: str, answer: str) -> PreparedPair | None:
    """Check a synthesizer pair against its conventions: its parts, or `None` when malformed."""
    question, answer = question.strip(), answer.strip()
    reasoning = None
    cot = COT_TRIGGER in question or COT_FINAL in answer
    if cot:
        split = split_cot_answer(answer)
        if not question.endswith(COT_TRIGGER) or split is None:
            return None
        question = question[: -len(COT_TRIGGER)].strip()
        reasoning, answer = split
        if not reasoning:
            return None
    options: list[str] = []
    if OPTIONS_MARKER in question:
        parsed = parse_question(question)
        if parsed.stem == question:  # the marker more than once
            return None
        question, options = parsed.stem.strip(), parsed.options
        if not all(options):
            return None
        matched = _match_option(answer, options)
        if matched is None and is_unanswerable(answer):  # "None of the above" names a listed "None of these"
            matched = next((o for o in options if is_unanswerable(o)), None)
        elif matched is None:
            return None
        answer = matched if matched is not None else answer
    if not question or not answer:
        return None
    return PreparedPair(question, options, answer, reasoning, cot)


def _option_lines(options: list[str], style: dict) -> tuple[list[str], dict[str, str]]:
    """Listed options and, for marker styles, option -> answer marker."""
    markers = MARKERS.get(style["marker"])
    if markers is None or len(options) > len(markers):
        return [f"- {o}" if markers is not None else style["line"].format(option=o) for o in options], {}
    lines = [style["line"].format(m=m, option=o) for m, o in zip(markers, options)]
    to_marker = {o: style["answer"].format(m=m) for m, o in zip(markers, options)}
    return lines, to_marker


def render_prepared(pair: PreparedPair, fmt: Format, rng: random.Random) -> tuple[str, str]:
    """Render a checked pair in the chain's sampled format."""
    q, answer = pair.stem, pair.answer
    if pair.options:
        options = [o for o in pair.options if not _about_the_others(o)]
        rng.shuffle(options)
        options += [o for o in pair.options if _about_the_others(o)]
        if answer not in options:  # a "none of the above" answer: the chain's wording, listed last
            answer = fmt.none_option
            options.append(answer)
        lines, to_marker = _option_lines(options, fmt.option_style)
        q = f"{q}\n{fmt.option_header}\n" + "\n".join(lines)
        answer = to_marker.get(answer, answer)
    if not pair.cot:
        return q, answer
    closing = fmt.cot_final.format(final=answer)
    if closing.endswith(f"{answer}.") and ends_in_punctuation(answer):  # not "yes!." nor "是。."
        closing = closing[:-1]
    return f"{q}\n{fmt.cot_trigger}", f"{pair.reasoning}\n{closing}"


def render_pair(question: str, answer: str, fmt: Format, rng: random.Random) -> tuple[str, str]:
    """Render a synthesizer pair in the chain's sampled format (`ValueError` when it is malformed)."""
    pair = prepare_pair(question, answer)
    if pair is None:
        raise ValueError(f"malformed pair, templify drops it: {question!r} -> {answer!r}")
    return render_prepared(pair, fmt, rng)
