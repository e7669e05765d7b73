"""Templify: a chain of (text, pairs) entries -> pre-training text, in the paper's layouts.

Malformed pairs are dropped first (`pairs.prepare_pair`, the reference's rules); an entry
left with none is emitted as its raw text alone. Layouts (weights as in the reference):
classic 80, dialog 5, numbered questions 5, inline few-shot 5, next-turn dialog 5 when every
entry that keeps pairs has >= 2 of them, else classic 95 / dialog 5; independently, 5% of
classic and dialog texts are inverted (pairs first, then the text; the reference inverts no
other layout). Structure as in the reference (``format_one_pt_rc``, microsoft/LMOps
``instruction_pretrain/utils/read_compre_pt.py``, called from ``utils/read_compre.py``):

- classic: the text, half the time in a wrapper (``Article: {text}``), then half the time a
  lead-in, then the pairs; question and answer are joined by a newline, a blank line, a space
  or a ruled line, and in ~1 chain of 8 the pairs without options or reasoning give the answer
  and then the question it answers;
- dialog: the text, mostly under a header (``Conversation:``), then one exchange per pair,
  speakers named (``User: ``) or bullets (``- ``, about a fifth of styles running inline), each
  one-line turn ended by nothing, ``;`` or ``.`` (none after one that ends in punctuation);
- numbered questions: the text, all questions, then all answers, numbered on lines or inline;
  1 pattern in 11 puts the questions before the text, 1 in 11 gives the answers and then the
  questions;
- inline few-shot: the text in a task-context wrapper, every pair but the last as a worked
  example, then the last pair as the new instance under its own labels;
- next-turn dialog: the text, an instruction around the dialog history (every pair but the
  last), then the final exchange (both turns of the last pair) as the reply, or, for some
  patterns, the final exchange first and the history as the reply.

An entry whose text is empty (a collection row without context) gives its pairs alone, in the
chain's layout, without the wrappers, lead-ins and headers that speak of a text.

Nothing glues onto the last line of a question or answer of several lines (options, a
chain of thought): what follows it starts a line. All wording comes from `pools.json`
(hf_ipt's own), sampled once per chain so every entry of one text shares a format. Sampling
uses `random.Random(str)`, seeded through SHA-512, so output is identical across processes
whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Any, NamedTuple

from ..protocol import question_answer
from .pairs import PreparedPair, ends_in_punctuation, prepare_pair, render_prepared

LAYOUT_WEIGHTS = {"classic": 80, "dialog": 5, "numbered": 5, "inline": 5, "next_turn": 5}
FEW_PAIR_WEIGHTS = {"classic": 95, "dialog": 5}
INVERSION_RATE = 0.05
INVERTIBLE = ("classic", "dialog")
LAYOUTS = tuple(LAYOUT_WEIGHTS)
# Rates of the reference's optional parts (read_compre_pt.py):
TEXT_WRAP_RATE = 0.5  # READ_START_STRING_CANDIDATES: half of them are the bare "{context}"
LEAD_IN_RATE = 0.5  # COMPRE_START_STRING_CANDIDATES: half of them are ""
ANSWER_FIRST_RATE = 10 / 79  # FEWSHOT_PATTERNS["qa"]: 10 of 79 give the answer and ask for the question
DIALOG_HEADER_RATE = 14 / 15  # DIALOG_START_STRING_CANDIDATES: 1 of 15 is ""
EXCHANGE_GAP_RATE = 0.5  # the dialog's example separator: "" or "\n"
NUMBERED_INLINE_RATE = 26 / 64  # QUESTION_ITEM_NAME_CANDIDATES: 26 of 64 start " ", not "\n"
NUMBERED_ORDER_WEIGHTS = {"text_first": 9, "questions_first": 1, "answers_first": 1}  # of 11 patterns

__all__ = [
    "LAYOUTS", "Format", "Rendered", "format_general", "pools", "render", "sample_format", "templify",
    "templify_chain",
]


@cache
def pools() -> dict[str, Any]:
    """The template pools (package data, loaded once)."""
    return json.loads(resources.files(__package__).joinpath("pools.json").read_text("utf-8"))


@dataclass(frozen=True)
class Format:
    """Everything sampled once per chain."""

    layout: str
    inverted: bool  # pairs first, then the text: classic and dialog only
    qa: tuple[str, str]
    qa_joiner: str  # between a classic question and its answer
    answer_first: bool  # classic pairs without options or reasoning: answer, then question
    answer_first_pattern: dict  # a ({a}), q ({q}); both may hold {n}
    text_wrapper: str  # classic, around the text: "{text}" for none
    lead: str  # classic, after the text: "" for none
    lead_joiner: str  # between the text and the lead-in
    inverted_lead: str
    speakers: dict  # user, bot (turn prefixes), inline (turns run on one line)
    turn_end: str  # appended to a dialog turn that does not end in punctuation
    dialog_header: str  # "" for none
    dialog_header_joiner: str  # between the text and the header
    exchange_gap: bool  # a blank line (inline: a line break) between dialog exchanges
    headers: tuple[str, str]
    numbered_pattern: str  # {text}, {questions}, {answers}; {q_header}/{a_header} optional
    numbering: str
    numbered_inline: bool  # numbered items run on one line
    inline_pattern: dict  # context ({text}), example_q/example_a, test_q/test_a ({q}, {a})
    next_turn_pattern: dict  # prompt, reply; {dialog} (the history) and {turn} (the final exchange)
    option_header: str
    option_style: dict
    cot_trigger: str
    cot_final: str
    sep_block: str
    sep_pair: str
    sep_entry: str
    none_option: str = "None of the above"


class Rendered(NamedTuple):
    """One pre-training text: the chain positions it holds, its text, the pairs it renders."""

    members: tuple[int, ...]
    text: str
    num_pairs: int


Prepared = list[tuple[str, list[PreparedPair]]]


class _Pair(NamedTuple):
    """A pair rendered in the chain's format; `basic`: no options and no chain of thought."""

    q: str
    a: str
    basic: bool


def _prepare(chain: Sequence[Any]) -> Prepared:
    """`(text, well-formed pairs)` per entry; entries are `(text, pairs)` or have `.text`/`.pairs`."""
    prepared = []
    for i, item in enumerate(chain):
        text, pairs = (item.text, item.pairs) if hasattr(item, "pairs") else item
        if not isinstance(text, str):  # a null text would be rendered as the word "None"
            raise TypeError(f"chain entry {i}: the text must be a str, got {text!r:.200}; drop or fill null texts first")
        checked = (prepare_pair(*question_answer(p, f"chain entry {i}")) for p in (() if pairs is None else pairs))
        prepared.append((text, [pair for pair in checked if pair is not None]))
    return prepared


def sample_format(rng: random.Random, chain: Sequence[Any]) -> Format:
    """Sample a layout (by the reference weights) and every wording slot for `chain`."""
    return _sample(rng, _prepare(chain))


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _sample(rng: random.Random, prepared: Prepared) -> Format:
    # The reference: Classic 95 / Dialog 5 when an entry rendered with pairs has < 2 of them.
    counts = [len(pairs) for _, pairs in prepared if pairs]
    weights = LAYOUT_WEIGHTS if counts and min(counts) >= 2 else FEW_PAIR_WEIGHTS
    layout = _weighted(rng, weights)
    inverted = rng.random() < INVERSION_RATE and layout in INVERTIBLE
    p = pools()
    seps = p["separators"]
    joiners = dict(p["qa_joiners"])
    order = _weighted(rng, NUMBERED_ORDER_WEIGHTS)
    return Format(
        layout=layout,
        inverted=inverted,
        qa=tuple(rng.choice(p["qa_prefixes"])),
        qa_joiner=_weighted(rng, joiners),
        answer_first=rng.random() < ANSWER_FIRST_RATE,
        answer_first_pattern=rng.choice(p["answer_first_patterns"]),
        text_wrapper=rng.choice(p["text_wrappers"]) if rng.random() < TEXT_WRAP_RATE else "{text}",
        lead=rng.choice(p["lead_ins"]) if rng.random() < LEAD_IN_RATE else "",
        lead_joiner=rng.choice(p["lead_joiners"]),
        inverted_lead=rng.choice(p["inverted_lead_ins"]),
        speakers=rng.choice(p["speakers"]),
        turn_end=rng.choice(p["turn_ends"]),
        dialog_header=rng.choice(p["dialog_headers"]) if rng.random() < DIALOG_HEADER_RATE else "",
        dialog_header_joiner=rng.choice(p["dialog_header_joiners"]),
        exchange_gap=rng.random() < EXCHANGE_GAP_RATE,
        headers=tuple(rng.choice(p["numbered_headers"])),
        numbered_pattern=rng.choice(p["numbered_patterns"][order]),
        numbering=rng.choice(p["numbering"]),
        numbered_inline=rng.random() < NUMBERED_INLINE_RATE,
        inline_pattern=rng.choice(p["inline_patterns"]),
        next_turn_pattern=rng.choice(p["next_turn_patterns"]),
        option_header=rng.choice(p["option_headers"]),
        option_style=rng.choice(p["option_styles"]),
        cot_trigger=rng.choice(p["cot_triggers"]),
        cot_final=rng.choice(p["cot_finals"]),
        sep_block=rng.choice(seps),
        sep_pair=rng.choice(seps),
        sep_entry=rng.choice(seps),
        none_option=rng.choice(p["none_options"]),
    )


def _join_all(items: list[str], joiner: str) -> str:
    """`joiner.join(items)`, but a line break after an item of several lines, so that nothing
    glues onto its last line (an option, a chain of thought's closing)."""
    parts = items[:1]
    for previous, item in pairwise(items):
        parts += ["\n" if "\n" in previous and "\n" not in joiner else joiner, item]
    return "".join(parts)


def _classic(pairs: list[_Pair], fmt: Format) -> str:
    """Question, joiner, answer per pair; with `answer_first`, a basic pair gives its answer
    and asks for the question (the reference's inverted question templates)."""
    qp, ap = fmt.qa
    out = []
    for n, (q, a, basic) in enumerate(pairs, 1):
        if basic and fmt.answer_first:
            p = fmt.answer_first_pattern
            first, second = p["a"].format(a=a, n=n), p["q"].format(q=q, n=n)
        else:
            first, second = f"{qp.format(n=n)} {q}", f"{ap.format(n=n)} {a}"
        out.append(_join_all([first, second], fmt.qa_joiner))
    return fmt.sep_pair.join(out)


def _turn(prefix: str, text: str, fmt: Format) -> str:
    """A dialog turn; the turn end only after one line that ends in no punctuation mark."""
    end = fmt.turn_end if "\n" not in text and not ends_in_punctuation(text) else ""
    return f"{prefix}{text}{end}"


def _exchanges(pairs: list[_Pair], fmt: Format) -> list[str]:
    """One dialog exchange per pair: the question turn, then the answer turn."""
    s = fmt.speakers
    joiner = " " if s.get("inline") else "\n"
    return [_join_all([_turn(s["user"], q, fmt), _turn(s["bot"], a, fmt)], joiner) for q, a, _ in pairs]


def _dialog(exchanges: list[str], fmt: Format) -> str:
    if fmt.speakers.get("inline"):
        return _join_all(exchanges, "\n" if fmt.exchange_gap else " ")
    return _join_all(exchanges, "\n\n" if fmt.exchange_gap else "\n")


def _numbered_list(items: list[str], fmt: Format) -> str:
    numbered = [f"{fmt.numbering.format(n=n)} {item}" for n, item in enumerate(items, 1)]
    return _join_all(numbered, " " if fmt.numbered_inline else "\n")


def _numbered(text: str, pairs: list[_Pair], fmt: Format) -> str:
    """The chain's numbered pattern: text, questions and answers, in the pattern's order."""
    return fmt.numbered_pattern.format(
        text=text, questions=_numbered_list([p.q for p in pairs], fmt),
        answers=_numbered_list([p.a for p in pairs], fmt), q_header=fmt.headers[0], a_header=fmt.headers[1],
    )


def _inline(pairs: list[_Pair], fmt: Format) -> str:
    """Inline few-shot: every pair but the last as a worked example, the last as the test
    instance under its own labels. Each answer starts a line behind its label, so a question of
    several lines (options, a CoT trigger) never has the answer glued onto its last line."""
    p = fmt.inline_pattern
    shots = [f"{p['example_q'].format(q=q)}\n{p['example_a'].format(a=a)}" for q, a, _ in pairs[:-1]]
    q, a, _ = pairs[-1]
    return fmt.sep_pair.join([*shots, f"{p['test_q'].format(q=q)}\n{p['test_a'].format(a=a)}"])


def _next_turn(pairs: list[_Pair], fmt: Format) -> str:
    """Next-turn dialog: an instruction around the history (every exchange but the last), then
    the final exchange as the reply; a pattern may give the final exchange first instead."""
    exchanges = _exchanges(pairs, fmt)
    parts = {"dialog": _dialog(exchanges[:-1], fmt), "turn": exchanges[-1]}
    p = fmt.next_turn_pattern
    return f"{p['prompt'].format(**parts)}{fmt.sep_pair}{p['reply'].format(**parts)}"


def _pairs_alone(pairs: list[_Pair], fmt: Format) -> str:
    """The pairs of an entry without text (a collection row without context) in the chain's layout,
    with nothing that frames or points at a text ("Text: {text}", "the passage above")."""
    if fmt.layout == "numbered":
        questions, answers = _numbered_list([p.q for p in pairs], fmt), _numbered_list([p.a for p in pairs], fmt)
        return f"{fmt.headers[0]}\n{questions}{fmt.sep_block}{fmt.headers[1]}\n{answers}"
    if fmt.layout == "inline":
        return _inline(pairs, fmt)
    if fmt.layout == "next_turn" and len(pairs) >= 2:
        return _next_turn(pairs, fmt)
    return _classic(pairs, fmt) if fmt.layout == "classic" else _dialog(_exchanges(pairs, fmt), fmt)


def _render_entry(text: str, pairs: list[_Pair], fmt: Format) -> str:
    if not text.strip():
        return _pairs_alone(pairs, fmt)
    layout = fmt.layout
    if layout == "numbered":
        return _numbered(text, pairs, fmt)
    if layout == "next_turn" and len(pairs) >= 2:
        return f"{text}{fmt.sep_block}{_next_turn(pairs, fmt)}"
    if layout == "inline":  # the text inside the task context, then the examples and the test
        return f"{fmt.inline_pattern['context'].format(text=text)}{fmt.sep_block}{_inline(pairs, fmt)}"
    dialog = layout != "classic"  # dialog, or next_turn with one pair (no history): a dialog
    block = _dialog(_exchanges(pairs, fmt), fmt) if dialog else _classic(pairs, fmt)
    if fmt.inverted:  # lead-ins point at "the text above"; inverted, the text comes below
        return f"{block}{fmt.sep_block}{fmt.inverted_lead}\n{text}"
    if dialog:  # the header is the dialog layout's (the reference's next-turn dialog has none)
        if layout != "dialog" or not fmt.dialog_header:
            return f"{text}{fmt.sep_block}{block}"
        after = " " if fmt.speakers.get("inline") else "\n"
        return f"{text}{fmt.dialog_header_joiner}{fmt.dialog_header}{after}{block}"
    head = fmt.text_wrapper.format(text=text)
    if not fmt.lead:
        return f"{head}{fmt.sep_block}{block}"
    return f"{head}{fmt.lead_joiner}{fmt.lead}{fmt.sep_pair}{block}"


def render(chain: Sequence[Any], fmt: Format, rng: random.Random) -> list[str]:
    """Render `chain` with a given format; entries without pairs come out as raw text alone."""
    return [r.text for r in _render(_prepare(chain), fmt, rng)]


def _rendered_pairs(pairs: list[PreparedPair], fmt: Format, rng: random.Random) -> list[_Pair]:
    return [_Pair(*render_prepared(pair, fmt, rng), not pair.options and not pair.cot) for pair in pairs]


def _render(prepared: Prepared, fmt: Format, rng: random.Random) -> list[Rendered]:
    with_pairs = tuple(i for i, (_, pairs) in enumerate(prepared) if pairs)
    out = []
    if with_pairs:
        blocks = (_render_entry(prepared[i][0], _rendered_pairs(prepared[i][1], fmt, rng), fmt) for i in with_pairs)
        out.append(Rendered(with_pairs, fmt.sep_entry.join(blocks), sum(len(prepared[i][1]) for i in with_pairs)))
    return out + [Rendered((i,), text, 0) for i, (text, pairs) in enumerate(prepared) if not pairs and text]


def templify_chain(chain: Sequence[Any], seed: int | str = 0) -> list[Rendered]:
    """`templify` with each text's chain positions and pair count (what the builder's rows record)."""
    rng = random.Random(f"hf_ipt.templify:{seed}")
    prepared = _prepare(chain)
    return _render(prepared, _sample(rng, prepared), rng)


def templify(chain: Sequence[Any], seed: int | str = 0) -> list[str]:
    """Turn one chain of entries into pre-training text(s).

    Args:
        chain (`Sequence`): entries oldest first, each `(text, pairs)` or an object with
            `.text` and `.pairs`; a pair is `(question, answer)` or a mapping with ``question``
            and ``answer`` (the builder's pairs rows) or ``Q`` and ``A``. Texts and pair parts
            must be `str` (`TypeError` otherwise: a null would print as "None").
        seed (`int` or `str`, *optional*, defaults to 0): example seed (e.g. the document id).

    Returns:
        `list[str]`: the chain's entries with well-formed pairs as ONE text, then each entry
        left without pairs as its raw text alone (malformed pairs are dropped, see
        `pairs.prepare_pair`).
    """
    return [r.text for r in templify_chain(chain, seed)]


def format_general(question: str, response: str) -> str:
    """General instruction data for the continual pre-training mix: ``"{question} {response}"``.

    No chat template: the paper trains a base model on plain concatenation.
    """
    return f"{question.strip()} {response.strip()}"
