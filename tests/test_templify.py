"""Templify: layouts, weights, option/CoT rendering, determinism."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from collections import Counter

import pytest

from hf_ipt.templify import (
    ANSWER_FIRST_RATE,
    DIALOG_HEADER_RATE,
    FEW_PAIR_WEIGHTS,
    INVERTIBLE,
    LAYOUT_WEIGHTS,
    LAYOUTS,
    NUMBERED_INLINE_RATE,
    NUMBERED_ORDER_WEIGHTS,
    format_general,
    pools,
    render,
    sample_format,
    templify,
    templify_chain,
)
from hf_ipt.templify.pairs import MARKERS, parse_question, prepare_pair, render_pair

MC_Q = "Which way did sales go?\nOptions:\n- up\n- down\n- flat"
COT_Q = "How much did profit grow?\nLet's think step by step."
COT_A = "Profit went from 10 to 15, a rise of 5.\nTherefore, the answer is 50%"
CHAIN = [
    ("Sales fell in the third quarter.", [(MC_Q, "down"), ("Who reported?", "The company.")]),
    ("Profit rose from 10 to 15.", [(COT_Q, COT_A), ("Was it a record?", "No.")]),
]
# plain one-line pairs: rendered verbatim, so a layout's exact text can be written out
PLAIN = [
    ("Text one.", [("Q1?", "A1."), ("Q2?", "A2."), ("Q3?", "A3.")]),
    ("Text two.", [("Q4?", "A4."), ("Q5?", "A5.")]),
]


def forced(chain, layout, inverted=False, seed=0, **fields):
    rng = random.Random(seed)
    fmt = dataclasses.replace(sample_format(rng, chain), layout=layout, inverted=inverted, **fields)
    return render(chain, fmt, rng), fmt


def exact(chain, layout, **fields):
    """Render `chain` in `layout` with plain separators and the given fields (no random wording)."""
    rng = random.Random(0)
    plain = {"inverted": False, "sep_block": "\n", "sep_pair": "\n", "sep_entry": "\n\n", "qa": ("Q:", "A:"),
             "qa_joiner": "\n",
             "answer_first": False, "text_wrapper": "{text}", "lead": "", "speakers": {"user": "U: ", "bot": "B: "},
             "turn_end": "", "dialog_header": "", "exchange_gap": False, "numbering": "{n}.",
             "numbered_inline": False}
    fmt = dataclasses.replace(sample_format(rng, chain), layout=layout, **{**plain, **fields})
    return render(chain, fmt, rng)


def test_pools_are_data_with_dozens_of_variants():
    p = pools()
    for slot in ("qa_prefixes", "lead_ins", "inverted_lead_ins", "speakers", "numbered_headers",
                 "next_turn_patterns", "option_headers", "option_styles", "cot_triggers", "cot_finals",
                 "numbering", "inline_patterns", "none_options", "text_wrappers", "answer_first_patterns",
                 "dialog_headers"):
        assert len(p[slot]) >= 24, slot
        assert len({json.dumps(v) for v in p[slot]}) == len(p[slot]), f"duplicates in {slot}"
    numbered = [v for order in NUMBERED_ORDER_WEIGHTS for v in p["numbered_patterns"][order]]
    assert len(numbered) >= 24 and len(set(numbered)) == len(numbered)
    assert p["separators"] == ["\n", "\n\n", "\n\n\n"]
    # the reference's READ_END, DIALOG_ITEM_END and dialog-start separators
    assert p["lead_joiners"] == [" ", "\n", "\n\n"]
    assert p["turn_ends"] == ["", ";", "."]
    assert p["dialog_header_joiners"] == ["\n\n", "\n", " ", " | "]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("inverted", [False, True])
def test_every_layout_keeps_every_text_question_and_answer(layout, inverted):
    texts, fmt = forced(CHAIN, layout, inverted)
    assert len(texts) == 1
    out = texts[0]
    for text, pairs in CHAIN:
        assert text in out
        for q, a in pairs:
            assert parse_question(q).stem in out
    for needed in ("up", "down", "flat", "Profit went from 10 to 15, a rise of 5.", "50%", "The company.", "No."):
        assert needed in out
    if inverted and layout in INVERTIBLE:  # pairs first, then the text; no lead-in about "the text above"
        assert out.index("Who reported?") < out.index(CHAIN[0][0])
        assert fmt.inverted_lead in out and (not fmt.lead or fmt.lead not in out)
    elif layout != "numbered":  # some numbered patterns put the questions first
        assert out.index(CHAIN[0][0]) < out.index("Who reported?")


def test_layout_shapes():
    classic, fmt = forced(CHAIN, "classic", answer_first=False)
    assert fmt.lead in classic[0] and f"{fmt.qa[0].format(n=2)} Who reported?" in classic[0]
    dialog, fmt = forced(CHAIN, "dialog")
    user, bot = fmt.speakers["user"], fmt.speakers["bot"]
    assert f"{user}Who reported?" in dialog[0] and f"{bot}The company." in dialog[0]
    pattern = pools()["numbered_patterns"]["text_first"][0]
    numbered, fmt = forced(CHAIN, "numbered", numbered_pattern=pattern)
    out = numbered[0]
    assert out.index(fmt.headers[0]) < out.index("Who reported?") < out.index(fmt.headers[1]) < out.index("The company.")
    inline, fmt = forced(CHAIN, "inline")
    assert inline[0].startswith(fmt.inline_pattern["context"].format(text=CHAIN[0][0]))
    test = fmt.inline_pattern["test_q"].format(q="Who reported?")
    assert f"{test}\n{fmt.inline_pattern['test_a'].format(a='The company.')}" in inline[0]
    nxt, fmt = forced(CHAIN, "next_turn", speakers={"user": "User: ", "bot": "Bot: "})
    assert nxt[0].startswith(f"{CHAIN[0][0]}{fmt.sep_block}")
    assert "User: Who reported?\nBot: The company." in nxt[0]


def test_pattern_pools_of_inline_and_next_turn_are_complete():
    """Every inline pattern wraps the text and labels example and test pairs; every next-turn
    pattern holds the history and the final exchange once each, in either order (as the
    reference's pool, which also asks for the preceding dialog of a given last turn)."""
    for p in pools()["inline_patterns"]:
        assert set(p) == {"context", "example_q", "example_a", "test_q", "test_a"}, p
        assert p["context"].count("{text}") == 1 and "{q}" not in p["context"], p
        assert all(p[k].count("{q}") == 1 for k in ("example_q", "test_q")), p
        assert all(p[k].count("{a}") == 1 and "{q}" not in p[k] for k in ("example_a", "test_a")), p
    orders = Counter()
    for p in pools()["next_turn_patterns"]:
        assert set(p) == {"prompt", "reply"}, p
        both = p["prompt"] + p["reply"]
        assert both.count("{dialog}") == 1 and both.count("{turn}") == 1, p
        orders["{dialog}" in p["prompt"]] += 1
    assert orders[True] > orders[False] > 0


@pytest.mark.parametrize("seed", range(8))
def test_inline_is_text_in_context_then_examples_then_the_test_instance(seed):
    """The reference's Inline_FS: per entry, the text in a task-context wrapper, then every pair
    but the last as a worked example (separated alike), then the last pair as the new instance
    under its own labels; each answer on its own line behind its label."""
    out, fmt = forced(PLAIN, "inline", seed=seed)
    p, sep = fmt.inline_pattern, fmt.sep_pair

    def shot(q, a):
        return f"{p['example_q'].format(q=q)}\n{p['example_a'].format(a=a)}"

    def test(q, a):
        return f"{p['test_q'].format(q=q)}\n{p['test_a'].format(a=a)}"

    first = p["context"].format(text="Text one.") + fmt.sep_block
    first += sep.join([shot("Q1?", "A1."), shot("Q2?", "A2."), test("Q3?", "A3.")])
    second = p["context"].format(text="Text two.") + fmt.sep_block
    second += sep.join([shot("Q4?", "A4."), test("Q5?", "A5.")])
    assert out == [f"{first}{fmt.sep_entry}{second}"]


def test_inline_answers_to_questions_of_several_lines_start_a_line():
    """A joiner without a newline (' ', ' - ') once glued the answer onto the last option
    ('C) Grey B'): every answer, after options or a CoT trigger too, starts a line behind its label."""
    for seed in range(30):
        rng = random.Random(seed)
        fmt = dataclasses.replace(sample_format(rng, CHAIN), layout="inline", inverted=False)
        text = render(CHAIN, fmt, rng)[0]
        example_label = fmt.inline_pattern["example_a"].split("{a}")[0]
        assert text.count(f"\n{example_label}") >= 2, text  # the MC example and the CoT example
        assert f"\n{fmt.inline_pattern['test_a'].format(a='The company.')}" in text


@pytest.mark.parametrize("seed", range(8))
def test_next_turn_is_text_then_history_then_the_final_exchange(seed):
    """The reference's Next_turn_dialog: per entry, the raw text, then an instruction around the
    dialog history (every pair but the last), then the final exchange, both its turns, as the reply."""
    out, fmt = forced(PLAIN, "next_turn", seed=seed, speakers={"user": "User: ", "bot": "Bot: "}, exchange_gap=False)
    p = fmt.next_turn_pattern

    def entry(text, pairs):
        turns = [f"User: {q}\nBot: {a}" for q, a in pairs]
        parts = {"dialog": "\n".join(turns[:-1]), "turn": turns[-1]}
        return f"{text}{fmt.sep_block}{p['prompt'].format(**parts)}{fmt.sep_pair}{p['reply'].format(**parts)}"

    assert out == [fmt.sep_entry.join(entry(text, pairs) for text, pairs in PLAIN)]


def test_next_turn_history_comes_before_the_final_exchange_or_after_it_as_the_pattern_says():
    rng = random.Random(0)
    fmt = dataclasses.replace(sample_format(rng, PLAIN), layout="next_turn", inverted=False, sep_block="\n",
                              sep_pair="\n", sep_entry="\n\n", speakers={"user": "User: ", "bot": "Bot: "},
                              turn_end="", exchange_gap=False)
    forward = dataclasses.replace(
        fmt, next_turn_pattern={"prompt": "Dialog:\n{dialog}", "reply": "Next turn:\n{turn}"})
    assert render(PLAIN[:1], forward, rng) == [
        "Text one.\nDialog:\nUser: Q1?\nBot: A1.\nUser: Q2?\nBot: A2.\nNext turn:\nUser: Q3?\nBot: A3."
    ]
    backward = dataclasses.replace(
        fmt, next_turn_pattern={"prompt": "Last turn:\n{turn}", "reply": "Before it:\n{dialog}"})
    assert render(PLAIN[:1], backward, rng) == [
        "Text one.\nLast turn:\nUser: Q3?\nBot: A3.\nBefore it:\nUser: Q1?\nBot: A1.\nUser: Q2?\nBot: A2."
    ]
    # one pair has no history (the sampler never picks next_turn for it): a plain dialog
    assert render([("Solo.", [("Q?", "A.")])], forward, rng) == ["Solo.\nUser: Q?\nBot: A."]


def _formats(n=4000):
    return [sample_format(random.Random(f"hf_ipt.templify:{seed}"), PLAIN) for seed in range(n)]


def _share(formats, test):
    return sum(1 for fmt in formats if test(fmt)) / len(formats)


CLASSIC_PAIRS = "Q: Q1?\nA: A1.\nQ: Q2?\nA: A2.\nQ: Q3?\nA: A3."


def test_classic_wraps_the_text_and_adds_a_lead_in_each_half_the_time():
    """The reference's Classic: READ_START ("Article: {context}", half of them the bare text), then
    READ_END + COMPRE_START (a lead-in, half of them empty), then the pairs."""
    one = PLAIN[:1]
    assert exact(one, "classic") == [f"Text one.\n{CLASSIC_PAIRS}"]
    assert exact(one, "classic", text_wrapper="Article: {text}") == [f"Article: Text one.\n{CLASSIC_PAIRS}"]
    assert exact(one, "classic", lead="Answer these.", lead_joiner=" ", sep_pair="\n\n") == [
        "Text one. Answer these.\n\nQ: Q1?\nA: A1.\n\nQ: Q2?\nA: A2.\n\nQ: Q3?\nA: A3."]
    assert exact(one, "classic", text_wrapper="Read this:\n{text}", lead="Now the questions:", lead_joiner="\n") == [
        f"Read this:\nText one.\nNow the questions:\n{CLASSIC_PAIRS}"]
    for wrapper in pools()["text_wrappers"]:
        assert wrapper.count("{text}") == 1 and wrapper != "{text}", wrapper
    formats = _formats()
    assert abs(_share(formats, lambda f: f.text_wrapper != "{text}") - 0.5) <= 0.03
    assert abs(_share(formats, lambda f: f.lead != "") - 0.5) <= 0.03
    assert {f.lead_joiner for f in formats} == {" ", "\n", "\n\n"}


def test_classic_question_and_answer_joiners_as_the_reference_mixes_them():
    """The reference's question templates join question and answer by a newline (33 of 79), a blank
    line (27), a space (6) or a ruled line (13); after a question of several lines the answer still
    starts a line."""
    one = PLAIN[:1]
    assert exact(one, "classic", qa_joiner=" ") == ["Text one.\nQ: Q1? A: A1.\nQ: Q2? A: A2.\nQ: Q3? A: A3."]
    assert exact(one, "classic", qa_joiner="\n----\n") == [
        "Text one.\nQ: Q1?\n----\nA: A1.\nQ: Q2?\n----\nA: A2.\nQ: Q3?\n----\nA: A3."]
    assert exact([("T.", [("Line one\nline two?", "Yes.")])], "classic", qa_joiner=" ") == [
        "T.\nQ: Line one\nline two?\nA: Yes."]
    joiners = dict(pools()["qa_joiners"])
    assert sum(joiners.values()) == 79 and (joiners["\n"], joiners["\n\n"], joiners[" "]) == (33, 27, 6)
    assert all(j.startswith("\n") and j.endswith("\n") for j in joiners if j not in ("\n", "\n\n", " "))
    formats = _formats()
    for joiner in ("\n", "\n\n", " "):
        assert abs(_share(formats, lambda f, j=joiner: f.qa_joiner == j) - joiners[joiner] / 79) <= 0.025, joiner
    assert abs(_share(formats, lambda f: f.qa_joiner not in ("\n", "\n\n", " ")) - 13 / 79) <= 0.025


def test_classic_answer_first_for_pairs_without_options_or_reasoning():
    """About 1 in 8 of the reference's basic question templates give the answer and ask for the
    question; its option and chain-of-thought templates keep the question first."""
    pattern = {"a": "Given: {a}", "q": "Asked: {q}"}
    assert exact(PLAIN[:1], "classic", answer_first=True, answer_first_pattern=pattern) == [
        "Text one.\nGiven: A1.\nAsked: Q1?\nGiven: A2.\nAsked: Q2?\nGiven: A3.\nAsked: Q3?"]
    assert exact(PLAIN[:1], "classic", answer_first=True, answer_first_pattern={"a": "A{n}: {a}", "q": "Q{n}: {q}"},
                 qa_joiner=" ") == ["Text one.\nA1: A1. Q1: Q1?\nA2: A2. Q2: Q2?\nA3: A3. Q3: Q3?"]
    (out,) = exact(CHAIN, "classic", answer_first=True, answer_first_pattern=pattern)
    assert "Given: The company.\nAsked: Who reported?" in out and "Given: No.\nAsked: Was it a record?" in out
    assert "Q: Which way did sales go?\n" in out and "Q: How much did profit grow?\n" in out
    for p in pools()["answer_first_patterns"]:
        assert set(p) == {"a", "q"} and p["a"].count("{a}") == 1 and p["q"].count("{q}") == 1, p
        assert p["q"].endswith("{q}") and (p["a"].endswith("{a}") or "{a}\n" in p["a"]), p  # nothing after them
    assert abs(_share(_formats(), lambda f: f.answer_first) - ANSWER_FIRST_RATE) <= 0.025


def test_dialog_header_bullet_speakers_and_turn_ends():
    """The reference's Dialog: the text, a header ("Conversation:", 1 in 15 none), then the turns
    under named or bullet prefixes (some running inline), each ended by "", ";" or "."."""
    chain = [("Text one.", [("Q1", "A1"), ("Q2?", "A2.")])]
    bullets = {"user": "- ", "bot": "- "}
    inline = {**bullets, "inline": True}
    assert exact(chain, "dialog", speakers=bullets, turn_end=";", dialog_header="Conversation:",
                 dialog_header_joiner="\n") == ["Text one.\nConversation:\n- Q1;\n- A1;\n- Q2?\n- A2."]
    assert exact(chain, "dialog", speakers=inline, turn_end=".", dialog_header="Dialog:",
                 dialog_header_joiner=" | ") == ["Text one. | Dialog: - Q1. - A1. - Q2? - A2."]
    # no header; a gap between exchanges (a blank line, inline a line break)
    assert exact(chain, "dialog", speakers=bullets, exchange_gap=True) == ["Text one.\n- Q1\n- A1\n\n- Q2?\n- A2."]
    assert exact(chain, "dialog", speakers=inline, exchange_gap=True) == ["Text one.\n- Q1 - A1\n- Q2? - A2."]
    # inverted: the turns, then the text, no header
    assert exact(chain, "dialog", inverted=True, inverted_lead="The text:", speakers=bullets,
                 dialog_header="Conversation:") == ["- Q1\n- A1\n- Q2?\n- A2.\nThe text:\nText one."]
    # a question of several lines: the answer turn, and the next exchange, start a line; no turn
    # end after a list
    assert exact([("T.", [("Line one\nline two", "Yes"), ("Q2", "No"), ("Q3", "Maybe")])], "dialog",
                 speakers=inline, turn_end=";") == ["T.\n- Line one\nline two\n- Yes;\n- Q2; - No; - Q3; - Maybe;"]
    formats = _formats()
    assert abs(_share(formats, lambda f: f.dialog_header != "") - DIALOG_HEADER_RATE) <= 0.02
    assert 0.35 <= _share(formats, lambda f: f.speakers["user"] == f.speakers["bot"]) <= 0.6
    assert 0.1 <= _share(formats, lambda f: f.speakers.get("inline", False)) <= 0.3
    for end in ("", ";", "."):
        assert abs(_share(formats, lambda f, e=end: f.turn_end == e) - 1 / 3) <= 0.03


def test_numbered_questions_first_answers_first_and_inline_numbering():
    """The reference's Numbered_Questions: 9 of its 11 patterns give text, questions, answers; one
    gives the questions before the text, one the answers and asks for the questions. Its item
    names run on lines or inline (" 1. ", 26 of 64)."""
    one = PLAIN[:1]
    pattern = "{text}\n{q_header}\n{questions}\n{a_header}\n{answers}"
    assert exact(one, "numbered", numbered_pattern=pattern, headers=("Qs:", "As:")) == [
        "Text one.\nQs:\n1. Q1?\n2. Q2?\n3. Q3?\nAs:\n1. A1.\n2. A2.\n3. A3."]
    assert exact(one, "numbered", numbered_pattern=pattern, headers=("Qs:", "As:"), numbered_inline=True) == [
        "Text one.\nQs:\n1. Q1? 2. Q2? 3. Q3?\nAs:\n1. A1. 2. A2. 3. A3."]
    two_lines = [("T.", [("Line one\nline two?", "Yes."), ("Q2?", "No."), ("Q3?", "Maybe.")])]
    assert exact(two_lines, "numbered", numbered_pattern="{text}\n{questions}\n{answers}", numbered_inline=True) == [
        "T.\n1. Line one\nline two?\n2. Q2? 3. Q3?\n1. Yes. 2. No. 3. Maybe."]
    orders = {"text_first": ("Text one.", "Q1?", "A1."), "questions_first": ("Q1?", "Text one.", "A1."),
              "answers_first": ("Text one.", "A1.", "Q1?")}
    patterns = pools()["numbered_patterns"]
    assert set(patterns) == set(NUMBERED_ORDER_WEIGHTS) and NUMBERED_ORDER_WEIGHTS == {
        "text_first": 9, "questions_first": 1, "answers_first": 1}
    for order, expected in orders.items():
        assert len(patterns[order]) >= 10
        for p in patterns[order]:
            assert all(p.count(f"{{{k}}}") == 1 for k in ("text", "questions", "answers")), p
            (out,) = exact(one, "numbered", numbered_pattern=p)
            positions = [out.index(part) for part in expected]
            assert positions == sorted(positions), (order, p)
    formats = _formats()
    for order, weight in NUMBERED_ORDER_WEIGHTS.items():
        share = _share(formats, lambda f, o=order: f.numbered_pattern in patterns[o])
        assert abs(share - weight / 11) <= 0.025, order
    assert abs(_share(formats, lambda f: f.numbered_inline) - NUMBERED_INLINE_RATE) <= 0.03


# multi-line questions and answers, and one-line pairs without a final punctuation mark
GLUE = [
    ("Sales fell in the third quarter.", [(MC_Q, "down"), ("Who reported", "The company"),
                                          ("Two lines:\nwhich quarter?", "The third.")]),
    ("Profit rose from 10 to 15.", [(COT_Q, COT_A), ("Was it a record?", "No.")]),
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_text_question_and_answer_appears_and_nothing_glues_onto_a_last_line(layout):
    """Across seeds (every wording slot sampled): each entry's text and each pair's rendered question
    and answer appear whole, and whatever follows a question or answer of several lines (options, a
    chain of thought) starts a new line."""
    for seed in range(150):
        rng = random.Random(f"hf_ipt.templify:{seed}")
        fmt = sample_format(rng, GLUE)
        fmt = dataclasses.replace(fmt, layout=layout, inverted=layout in INVERTIBLE and seed % 4 == 0)
        state = rng.getstate()
        (out,) = render(GLUE, fmt, rng)
        rng.setstate(state)  # replay the option shuffles: each pair as `render` rendered it
        rendered = [render_pair(q, a, fmt, rng) for _, pairs in GLUE for q, a in pairs]
        assert all(text in out for text, _ in GLUE), (seed, out)
        for part in (part for pair in rendered for part in pair):
            assert part in out, (seed, part, out)
            start = out.find(part)
            while "\n" in part and start >= 0:
                assert out[start + len(part):][:1] in ("", "\n"), (seed, part, out)
                start = out.find(part, start + 1)


def test_entries_share_one_format():
    out, fmt = forced(CHAIN, "classic", lead="Now try these questions.", text_wrapper="Article: {text}")
    assert out[0].count(fmt.lead) == 2 and out[0].count("Article: ") == 2


def test_entry_without_pairs_is_raw_text_alone():
    chain = CHAIN + [("A closing text with no pairs.", [])]
    out = templify(chain, seed=3)
    assert out[-1] == "A closing text with no pairs." and len(out) == 2
    assert templify([("Only raw.", [])], seed=1) == ["Only raw."]


def test_multiple_choice_marker_answer_and_shuffle():
    seen_orders = set()
    for seed in range(200):
        rng = random.Random(seed)
        fmt = sample_format(rng, CHAIN)
        q, a = render_pair(MC_Q, "down", fmt, rng)
        style = fmt.option_style
        assert fmt.option_header in q
        lines = q.split(fmt.option_header + "\n")[1].split("\n")
        seen_orders.add(tuple(line.split()[-1] for line in lines))
        if style["marker"] == "none":
            assert a == "down"
        else:  # the answer is exactly the marker of the option "down"
            i = next(k for k, line in enumerate(lines) if line.endswith(" down"))
            m = {"upper": "ABC", "lower": "abc", "number": "123", "roman": ("i", "ii", "iii")}[style["marker"]][i]
            assert lines[i] == style["line"].format(m=m, option="down")
            assert a == style["answer"].format(m=m)
    assert len(seen_orders) == 6  # all permutations of three options occur


def test_chain_of_thought_renders_reasoning_and_final():
    for seed in range(50):
        rng = random.Random(seed)
        fmt = sample_format(rng, CHAIN)
        q, a = render_pair(COT_Q, COT_A, fmt, rng)
        assert q == f"How much did profit grow?\n{fmt.cot_trigger}"
        closing = fmt.cot_final.format(final="50%")
        assert a == f"Profit went from 10 to 15, a rise of 5.\n{closing}"


def test_cot_multiple_choice_final_becomes_marker():
    q = "Which?\nOptions:\n- red\n- blue\nLet's think step by step."
    a = "It is the sky's colour.\nTherefore, the answer is blue"
    rng = random.Random(0)
    fmt = dataclasses.replace(
        sample_format(rng, CHAIN), option_style={"marker": "upper", "line": "({m}) {option}", "answer": "({m})"},
        cot_final="So the answer is {final}.",
    )
    rq, ra = render_pair(q, a, fmt, rng)
    marker = next(line.split()[0] for line in rq.split("\n") if line.endswith("blue"))
    assert ra.endswith(f"So the answer is {marker}.")


def test_non_reference_option_layout_is_kept_verbatim():
    assert parse_question("Pick:\nOptions:\nred or blue").options == []


def _layout_frequencies(chain, n=5000):
    counts, inverted = Counter(), Counter()
    for seed in range(n):
        rng = random.Random(f"hf_ipt.templify:{seed}")
        fmt = sample_format(rng, chain)
        counts[fmt.layout] += 1
        inverted[fmt.layout] += fmt.inverted
    return {k: 100 * v / n for k, v in counts.items()}, inverted, counts


def test_the_rates_are_the_reference_scripts_own_numbers():
    """The sampling tests compare frequencies with these constants, so the constants are pinned here to the
    reference's numbers (ipt-facts section 3; LMOps instruction_pretrain read_compre_pt.py's candidate lists),
    written out, not imported: an edited constant would pass those tests."""
    import hf_ipt.templify as t

    assert LAYOUT_WEIGHTS == {"classic": 80, "dialog": 5, "numbered": 5, "inline": 5, "next_turn": 5}
    assert FEW_PAIR_WEIGHTS == {"classic": 95, "dialog": 5} and t.INVERSION_RATE == 0.05
    assert INVERTIBLE == ("classic", "dialog")
    assert (ANSWER_FIRST_RATE, DIALOG_HEADER_RATE, NUMBERED_INLINE_RATE) == (10 / 79, 14 / 15, 26 / 64)
    assert (t.TEXT_WRAP_RATE, t.LEAD_IN_RATE, t.EXCHANGE_GAP_RATE) == (0.5, 0.5, 0.5)
    assert NUMBERED_ORDER_WEIGHTS == {"text_first": 9, "questions_first": 1, "answers_first": 1}


def test_layout_frequencies_match_weights_within_two_points():
    freqs, inverted, counts = _layout_frequencies(CHAIN)
    for layout, weight in LAYOUT_WEIGHTS.items():
        assert abs(freqs.get(layout, 0) - weight) <= 2, (layout, freqs)
    # the reference inverts only Classic and Dialog texts, 5% of them
    assert all(inverted[layout] == 0 for layout in LAYOUTS if layout not in INVERTIBLE), inverted
    share = sum(inverted.values()) / sum(counts[layout] for layout in INVERTIBLE)
    assert abs(100 * share - 5) <= 1, share
    one_pair = [("t", [("q", "a")]), ("u", [("q", "a"), ("r", "b")])]
    # malformed pairs are dropped before counting: this entry keeps one pair
    one_valid = [("t", [("q", "a"), ("r", "b")]), ("u", [("q", "a"), ("r?\nLet's think step by step.", "b")])]
    for few in (one_pair, one_valid):
        freqs, _, _ = _layout_frequencies(few)
        assert set(freqs) <= set(FEW_PAIR_WEIGHTS)
        for layout, weight in FEW_PAIR_WEIGHTS.items():
            assert abs(freqs.get(layout, 0) - weight) <= 2, (layout, freqs)
    # an entry without pairs is its own raw text (the reference never chains it): it does not
    # restrict the layouts of the entries that have pairs
    freqs, _, _ = _layout_frequencies([("t", [("q", "a"), ("r", "b")]), ("u", [])], n=2000)
    assert set(freqs) == set(LAYOUT_WEIGHTS)


@pytest.mark.parametrize(
    ("question", "answer", "why"),
    [
        ("Why?\nLet's think step by step.", "Because.", "trigger without a final answer"),
        ("Why?", "Because.\nTherefore, the answer is yes", "final answer without the trigger"),
        ("Why?\nLet's think step by step. Really.", "B.\nTherefore, the answer is yes", "trigger not at the end"),
        ("Why?\nLet's think step by step.", "A.\nTherefore, the answer is x\nTherefore, the answer is y",
         "two final answers"),
        ("\nLet's think step by step.", "A.\nTherefore, the answer is yes", "empty question"),
        ("Why?\nLet's think step by step.", "\nTherefore, the answer is yes", "empty reasoning"),
        ("Why?\nLet's think step by step.", "A.\nTherefore, the answer is ", "empty final answer"),
        ("Pick:\nOptions:\n- a\n- b\nOptions:\n- c", "a", "two option lists"),
        ("Pick:\nOptions:\n- red\n- blue", "green", "answer is none of the options"),
        ("Pick:\nOptions:\n- red\n- \n- blue", "red", "empty option"),
        ("Who?", "   ", "empty answer"),
    ],
)
def test_malformed_pairs_are_dropped(question, answer, why):
    assert prepare_pair(question, answer) is None, why
    with pytest.raises(ValueError, match="malformed pair"):
        render_pair(question, answer, sample_format(random.Random(0), CHAIN), random.Random(0))


def test_well_formed_pairs_are_kept():
    cot = prepare_pair(COT_Q, COT_A)
    assert (cot.stem, cot.reasoning, cot.answer, cot.cot) == (
        "How much did profit grow?", "Profit went from 10 to 15, a rise of 5.", "50%", True)
    mc = prepare_pair(MC_Q, " Down ")  # matched ignoring case and surrounding spaces
    assert (mc.stem, mc.options, mc.answer) == ("Which way did sales go?", ["up", "down", "flat"], "down")
    # an option that runs over two lines stays one option, as the synthesizer's layout implies
    two_lines = prepare_pair("Pick:\nOptions:\n- a long\noption\n- b", "b")
    assert two_lines.options == ["a long\noption", "b"]
    # no options marker: the question is kept verbatim
    assert prepare_pair("Pick:\nOptions:\nred or blue", "red").stem == "Pick:\nOptions:\nred or blue"


def test_none_of_the_above_answer_becomes_the_chains_own_listed_option():
    for seed in range(30):
        rng = random.Random(seed)
        fmt = sample_format(rng, CHAIN)
        q, a = render_pair("Which colour?\nOptions:\n- red\n- blue", "None of the above.", fmt, rng)
        lines = q.split(fmt.option_header + "\n")[1].split("\n")
        style = fmt.option_style
        if style["marker"] == "none":
            assert lines[-1] == style["line"].format(option=fmt.none_option) and a == fmt.none_option
        else:  # listed third, answered with the third marker
            m = MARKERS[style["marker"]][2]
            assert lines[-1] == style["line"].format(m=m, option=fmt.none_option)
            assert a == style["answer"].format(m=m)
        assert len(lines) == 3


def test_malformed_pairs_never_reach_the_text_and_an_entry_left_without_pairs_is_raw():
    bad = "Why did it fall?\nLet's think step by step."
    chain = [("Sales fell.", [(bad, "Costs rose."), ("Who said so?", "The firm.")]),
             ("Profit rose.", [(bad, "Costs rose.")])]
    for seed in range(40):
        out = templify_chain(chain, seed=seed)
        assert [(r.members, r.num_pairs) for r in out] == [((0,), 1), ((1,), 0)]
        assert "Why did it fall?" not in out[0].text and out[1].text == "Profit rose."


def test_deterministic_across_processes_and_hash_seeds():
    code = (
        "import json; from hf_ipt.templify import templify; from tests.test_templify import CHAIN;"
        "print(json.dumps([templify(CHAIN, seed=s) for s in range(300)]))"
    )
    outs = []
    for hash_seed in ("1", "987"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
        outs.append(res.stdout)
    assert outs[0] == outs[1] and len(json.loads(outs[0])) == 300
    assert json.loads(outs[0])[:5] == [templify(CHAIN, seed=s) for s in range(5)]


def test_seed_changes_output():
    assert len({templify(CHAIN, seed=s)[0] for s in range(20)}) > 10


def test_format_general_plain_concatenation():
    assert format_general(" What is 2+2? ", "4\n") == "What is 2+2? 4"


def test_no_turn_end_after_punctuation_inside_a_closing_quote():
    from types import SimpleNamespace

    from hf_ipt.templify import _turn

    fmt = SimpleNamespace(turn_end=";")
    assert _turn("Bot: ", 'He said: "We are happy."', fmt) == 'Bot: He said: "We are happy."'
    assert _turn("User: ", 'Why "now?"', fmt) == 'User: Why "now?"'
    assert _turn("User: ", "Who reported it", fmt) == "User: Who reported it;"


def test_null_texts_and_pair_parts_are_refused_and_mapping_pairs_are_read():
    """A null text was printed as the word "None" into pre-training text, and a null or missing
    pair part crashed deep inside with `AttributeError`/`IndexError`; the builder's own pairs rows
    (``{"question", "answer", "task"}``) failed with ``KeyError: 0``."""
    with pytest.raises(TypeError, match=r"chain entry 1: the text must be a str, got None"):
        templify([("Fine.", [("Q?", "A.")]), (None, [("Q?", "A.")])])
    for bad in (("Q?", None), ("Q?",), {"question": "Q?"}, "Q?"):
        with pytest.raises(TypeError, match=r"chain entry 0: a pair is \(question, answer\)"):
            templify([("Text.", [bad])])
    plain = [("Text.", [("Q1?", "A1."), (MC_Q, "down")])]
    rows = [("Text.", [{"question": "Q1?", "answer": "A1.", "task": "qa"}, {"question": MC_Q, "answer": "down"}])]
    reference = [("Text.", [{"Q": "Q1?", "A": "A1."}, {"Q": MC_Q, "A": "down"}])]
    for seed in range(20):
        assert templify(rows, seed=seed) == templify(reference, seed=seed) == templify(plain, seed=seed)
    assert templify([("Only raw.", None)]) == ["Only raw."]  # a null pair list: no pairs


def _option_lines_of(q, fmt):
    return q.split(fmt.option_header + "\n")[1].split("\n")


def test_none_of_the_above_answer_names_a_listed_none_option_instead_of_adding_a_second():
    """The answer "None of the above" with "None of these" already listed gave two such options
    and marked only the appended one right."""
    for seed in range(30):
        rng = random.Random(seed)
        fmt = sample_format(rng, CHAIN)
        q, a = render_pair("Which colour?\nOptions:\n- red\n- blue\n- None of these", "None of the above.", fmt, rng)
        lines = _option_lines_of(q, fmt)
        assert len(lines) == 3 and fmt.none_option not in q.replace("None of these", ""), q
        style = fmt.option_style
        expected = "None of these" if style["marker"] == "none" else style["answer"].format(m=MARKERS[style["marker"]][2])
        assert lines[2] == style["line"].format(m=MARKERS.get(style["marker"], [""] * 3)[2], option="None of these")
        assert a == expected


def test_options_about_the_other_options_stay_last():
    """Shuffled in among the others, "None of the above" was listed first a third of the time."""
    orders = set()
    for seed in range(40):
        rng = random.Random(seed)
        fmt = dataclasses.replace(sample_format(rng, CHAIN), option_style={"marker": "none", "line": "- {option}"})
        q, a = render_pair("Pick:\nOptions:\n- All of the above\n- red\n- blue\n- None of the above.", "red", fmt, rng)
        lines = _option_lines_of(q, fmt)
        assert lines[2:] == ["- All of the above", "- None of the above."] and a == "red", q
        orders.add(tuple(lines[:2]))
    assert orders == {("- red", "- blue"), ("- blue", "- red")}  # the other options are still shuffled


def test_no_turn_end_or_full_stop_after_non_ascii_or_exclamation_punctuation():
    """Dialog turns got a turn end after their own sentence punctuation in other scripts
    ('这是什么？;'), and a chain of thought's closing a full stop after "!" or "。" ('yes!.')."""
    from types import SimpleNamespace

    from hf_ipt.templify import _turn

    fmt = SimpleNamespace(turn_end=";")
    for text in ("这是什么？", "这是测试。", "هل هذا صحيح؟", "यह परीक्षण है।", "「はい。」", "Wait…"):
        assert _turn("U: ", text, fmt) == f"U: {text}", text
    assert _turn("U: ", "没有标点", fmt) == "U: 没有标点;"
    rng = random.Random(0)
    fmt = dataclasses.replace(sample_format(rng, CHAIN), cot_final="So the answer is {final}.")
    for final in ("yes!", "是的。", "No?", "done."):
        _, a = render_pair(COT_Q, f"Because.\nTherefore, the answer is {final}", fmt, rng)
        assert a == f"Because.\nSo the answer is {final}", a
    _, a = render_pair(COT_Q, "Because.\nTherefore, the answer is 42", fmt, rng)
    assert a == "Because.\nSo the answer is 42."


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_entry_without_text_gives_its_pairs_without_wording_about_a_text(layout):
    """A collection row without context came out as 'Text:  Questions and answers about this
    text:' or 'Use the passage below ...' over nothing, or began with blank lines."""
    chain = [("", [("What is 2+2?", "4"), (MC_Q, "down"), ("Why?", "Because.")]), PLAIN[1]]
    for seed in range(60):
        rng = random.Random(f"hf_ipt.templify:{seed}")
        fmt = dataclasses.replace(sample_format(rng, chain), layout=layout, inverted=layout in INVERTIBLE and seed % 3 == 0,
                                  lead=pools()["lead_ins"][seed % 5], text_wrapper="Text: {text}",
                                  dialog_header="A conversation about the text:")
        (alone,) = render(chain[:1], fmt, rng)
        assert alone == alone.strip("\n"), (seed, alone)  # (a bullet speaker may start " - ")
        framing = [fmt.lead, fmt.inverted_lead, "Text: ", fmt.dialog_header,
                   *fmt.inline_pattern["context"].split("{text}"), fmt.numbered_pattern.split("{")[0]]
        for words in (w.strip() for w in framing):
            assert not words or words not in alone, (seed, words, alone)
        for needed in ("What is 2+2?", "4", "Which way did sales go?", "down", "Why?", "Because."):
            assert needed in alone, (seed, needed, alone)
        (both,) = render(chain, fmt, rng)
        assert both.startswith(alone[:12]) and "Text two." in both, (seed, both)
