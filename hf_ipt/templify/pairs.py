"""Render one pair: multiple-choice options and chain-of-thought answers in varied styles.

The synthesizer writes options as ``"\\nOptions:\\n- opt1\\n- opt2"`` and chain-of-thought
as a question ending ``"\\nLet's think step by step."`` with an answer ending
``"\\nTherefore, the answer is {final}"``. Here options are shuffled and re-listed in the
chain's option style; when that style has letter/number markers, an answer (or CoT final
answer) equal to an option becomes the marker.
"""

from __future__ import annotations

import random
import string
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from . import Format

OPTIONS_HEADER = "\nOptions:\n"
OPTION_BULLET = "- "
COT_TRIGGER = "\nLet's think step by step."
COT_FINAL = "\nTherefore, the answer is "
_ROMAN = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii"]
MARKERS = {
    "upper": list(string.ascii_uppercase),
    "lower": list(string.ascii_lowercase),
    "number": [str(i) for i in range(1, 100)],
    "roman": _ROMAN,
}


class ParsedQuestion(NamedTuple):
    stem: str
    options: list[str]
    cot: bool


def parse_question(question: str) -> ParsedQuestion:
    """Split a synthesizer question into stem, options and the chain-of-thought flag."""
    cot = question.endswith(COT_TRIGGER)
    if cot:
        question = question[: -len(COT_TRIGGER)]
    if OPTIONS_HEADER not in question:
        return ParsedQuestion(question, [], cot)
    stem, listing = question.split(OPTIONS_HEADER, 1)
    lines = listing.split("\n")
    if not all(line.startswith(OPTION_BULLET) for line in lines):
        return ParsedQuestion(question, [], cot)  # not the synthesizer's layout: keep verbatim
    return ParsedQuestion(stem, [line[len(OPTION_BULLET) :].strip() for line in lines], cot)


def split_cot_answer(answer: str) -> tuple[str, str] | None:
    """``(reasoning, final)`` for a chain-of-thought answer, else `None`."""
    if COT_FINAL not in answer:
        return None
    reasoning, final = answer.rsplit(COT_FINAL, 1)
    return reasoning.strip(), final.strip()


def _option_lines(options: list[str], style: dict) -> tuple[list[str], dict[str, str]]:
    """Listed options and, for marker styles, option (casefolded) -> answer marker."""
    markers = MARKERS.get(style["marker"])
    if markers is None or len(options) > len(markers):
        return [f"- {o}" if markers is not None else style["line"].format(option=o) for o in options], {}
    lines = [style["line"].format(m=m, option=o) for m, o in zip(markers, options)]
    to_marker = {o.casefold(): style["answer"].format(m=m) for m, o in zip(markers, options)}
    return lines, to_marker


def render_pair(question: str, answer: str, fmt: Format, rng: random.Random) -> tuple[str, str]:
    """Render a synthesizer pair in the chain's sampled format."""
    parsed = parse_question(question)
    q, to_marker = parsed.stem, {}
    if parsed.options:
        options = list(parsed.options)
        rng.shuffle(options)
        lines, to_marker = _option_lines(options, fmt.option_style)
        q = f"{q}\n{fmt.option_header}\n" + "\n".join(lines)
    if parsed.cot:
        q = f"{q}\n{fmt.cot_trigger}"
    cot = split_cot_answer(answer)
    if cot is not None:
        reasoning, final = cot
        final = to_marker.get(final.rstrip(".").casefold(), to_marker.get(final.casefold(), final))
        closing = fmt.cot_final.format(final=final)
        closing = closing[:-1] if closing.endswith("..") else closing
        return q, f"{reasoning}\n{closing}" if reasoning else closing
    return q, to_marker.get(answer.casefold(), answer)
