"""Templify: a chain of (text, pairs) entries -> pre-training text, in the paper's layouts.

Malformed pairs are dropped first (`pairs.prepare_pair`, the reference's rules); an entry
left with none is emitted as its raw text alone. Layouts (weights as in the reference):
classic 80, dialog 5, numbered questions 5, inline few-shot 5, next-turn dialog 5 when every
entry that keeps pairs has >= 2 of them, else classic 95 / dialog 5; independently, 5% of
classic and dialog texts are inverted (pairs first, then the text; the reference inverts no
other layout). Structure as in the reference (``format_one_pt_rc``, microsoft/LMOps
``instruction_pretrain/utils/read_compre_pt.py``): an inline few-shot entry is its text in a
task-context wrapper, then every pair but the last as a worked example, then the last pair
as the new instance under its own labels; a next-turn entry is its text, then an instruction
around the dialog history (every pair but the last), then the final exchange (both turns of
the last pair) as the reply, or, for some patterns, the final exchange first and the history
as the reply. All wording comes from `pools.json` (hf_ipt's own), sampled once per chain so
every entry of one text shares a format. Sampling uses `random.Random(str)`, seeded through
SHA-512, so output is identical across processes whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from .pairs import PreparedPair, prepare_pair, render_prepared

LAYOUT_WEIGHTS = {"classic": 80, "dialog": 5, "numbered": 5, "inline": 5, "next_turn": 5}
FEW_PAIR_WEIGHTS = {"classic": 95, "dialog": 5}
INVERSION_RATE = 0.05
INVERTIBLE = ("classic", "dialog")
LAYOUTS = tuple(LAYOUT_WEIGHTS)

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
    inverted: bool
    qa: tuple[str, str]
    lead: str
    inverted_lead: str
    speakers: tuple[str, str]
    headers: tuple[str, str]
    numbering: str
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


def _prepare(chain: Sequence[Any]) -> Prepared:
    """`(text, well-formed pairs)` per entry; entries are `(text, pairs)` or have `.text`/`.pairs`."""
    prepared = []
    for item in chain:
        text, pairs = (item.text, item.pairs) if hasattr(item, "pairs") else item
        checked = (prepare_pair(p[0], p[1]) for p in pairs)
        prepared.append((text, [pair for pair in checked if pair is not None]))
    return prepared


def sample_format(rng: random.Random, chain: Sequence[Any]) -> Format:
    """Sample a layout (by the reference weights) and every wording slot for `chain`."""
    return _sample(rng, _prepare(chain))


def _sample(rng: random.Random, prepared: Prepared) -> Format:
    # The reference: Classic 95 / Dialog 5 when an entry rendered with pairs has < 2 of them.
    counts = [len(pairs) for _, pairs in prepared if pairs]
    weights = LAYOUT_WEIGHTS if counts and min(counts) >= 2 else FEW_PAIR_WEIGHTS
    layout = rng.choices(list(weights), weights=list(weights.values()))[0]
    inverted = rng.random() < INVERSION_RATE and layout in INVERTIBLE
    p = pools()
    seps = p["separators"]
    return Format(
        layout=layout,
        inverted=inverted,
        qa=tuple(rng.choice(p["qa_prefixes"])),
        lead=rng.choice(p["lead_ins"]),
        inverted_lead=rng.choice(p["inverted_lead_ins"]),
        speakers=tuple(rng.choice(p["speakers"])),
        headers=tuple(rng.choice(p["numbered_headers"])),
        numbering=rng.choice(p["numbering"]),
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


def _turns(pairs: list[tuple[str, str]], fmt: Format) -> list[str]:
    """One dialog exchange per pair: the question turn, then the answer turn."""
    user, bot = fmt.speakers
    return [f"{user}: {q}\n{bot}: {a}" for q, a in pairs]


def _qa_block(pairs: list[tuple[str, str]], fmt: Format) -> str:
    """The pairs of one entry in the chain's layout (without the text)."""
    if fmt.layout == "next_turn" and len(pairs) >= 2:
        return _next_turn(pairs, fmt)
    if fmt.layout == "dialog" or fmt.layout == "next_turn":  # one pair has no history: a dialog
        return "\n".join(_turns(pairs, fmt))
    if fmt.layout == "numbered":
        num = [fmt.numbering.format(n=i + 1) for i in range(len(pairs))]
        questions = "\n".join(f"{n} {q}" for n, (q, _) in zip(num, pairs))
        answers = "\n".join(f"{n} {a}" for n, (_, a) in zip(num, pairs))
        return f"{fmt.headers[0]}\n{questions}{fmt.sep_pair}{fmt.headers[1]}\n{answers}"
    if fmt.layout == "inline":
        return _inline(pairs, fmt)
    qp, ap = fmt.qa
    body = fmt.sep_pair.join(
        f"{qp.format(n=i + 1)} {q}\n{ap.format(n=i + 1)} {a}" for i, (q, a) in enumerate(pairs)
    )
    # Lead-ins point at "the text above"; inverted, the text comes below (`inverted_lead`).
    return body if fmt.inverted else f"{fmt.lead}{fmt.sep_pair}{body}"


def _inline(pairs: list[tuple[str, str]], fmt: Format) -> str:
    """Inline few-shot: every pair but the last as a worked example, the last as the test
    instance under its own labels. Each answer starts a line behind its label, so a question of
    several lines (options, a CoT trigger) never has the answer glued onto its last line."""
    p = fmt.inline_pattern
    shots = [f"{p['example_q'].format(q=q)}\n{p['example_a'].format(a=a)}" for q, a in pairs[:-1]]
    q, a = pairs[-1]
    return fmt.sep_pair.join([*shots, f"{p['test_q'].format(q=q)}\n{p['test_a'].format(a=a)}"])


def _next_turn(pairs: list[tuple[str, str]], fmt: Format) -> str:
    """Next-turn dialog: an instruction around the history (every exchange but the last), then
    the final exchange as the reply; a pattern may give the final exchange first instead."""
    turns = _turns(pairs, fmt)
    parts = {"dialog": "\n".join(turns[:-1]), "turn": turns[-1]}
    p = fmt.next_turn_pattern
    return f"{p['prompt'].format(**parts)}{fmt.sep_pair}{p['reply'].format(**parts)}"


def _render_entry(text: str, pairs: list[tuple[str, str]], fmt: Format) -> str:
    block = _qa_block(pairs, fmt)
    if fmt.inverted:
        return f"{block}{fmt.sep_block}{fmt.inverted_lead}\n{text}"
    if fmt.layout == "inline":  # the text inside the task context, then the examples and the test
        text = fmt.inline_pattern["context"].format(text=text)
    return f"{text}{fmt.sep_block}{block}"


def render(chain: Sequence[Any], fmt: Format, rng: random.Random) -> list[str]:
    """Render `chain` with a given format; entries without pairs come out as raw text alone."""
    return [r.text for r in _render(_prepare(chain), fmt, rng)]


def _render(prepared: Prepared, fmt: Format, rng: random.Random) -> list[Rendered]:
    with_pairs = tuple(i for i, (_, pairs) in enumerate(prepared) if pairs)
    out = []
    if with_pairs:
        blocks = (
            _render_entry(prepared[i][0], [render_prepared(pair, fmt, rng) for pair in prepared[i][1]], fmt)
            for i in with_pairs
        )
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
            `.text` and `.pairs` (pairs are `(question, answer)`).
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
