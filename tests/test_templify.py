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
    FEW_PAIR_WEIGHTS,
    INVERTIBLE,
    LAYOUT_WEIGHTS,
    LAYOUTS,
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


def forced(chain, layout, inverted=False, seed=0):
    rng = random.Random(seed)
    fmt = dataclasses.replace(sample_format(rng, chain), layout=layout, inverted=inverted)
    return render(chain, fmt, rng), fmt


def test_pools_are_data_with_dozens_of_variants():
    p = pools()
    for slot in ("qa_prefixes", "lead_ins", "inverted_lead_ins", "speakers", "numbered_headers",
                 "next_turn_patterns", "option_headers", "option_styles", "cot_triggers", "cot_finals",
                 "numbering", "inline_patterns", "none_options"):
        assert len(p[slot]) >= 24, slot
        assert len({json.dumps(v) for v in p[slot]}) == len(p[slot]), f"duplicates in {slot}"
    assert p["separators"] == ["\n", "\n\n", "\n\n\n"]


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
    if inverted:  # pairs first, then the text; no lead-in that points at "the text above"
        assert out.index("Who reported?") < out.index(CHAIN[0][0])
        assert fmt.inverted_lead in out and fmt.lead not in out
    else:
        assert out.index(CHAIN[0][0]) < out.index("Who reported?")


def test_layout_shapes():
    classic, fmt = forced(CHAIN, "classic")
    assert fmt.lead in classic[0] and f"{fmt.qa[0].format(n=2)} Who reported?" in classic[0]
    dialog, fmt = forced(CHAIN, "dialog")
    user, bot = fmt.speakers
    assert f"{user}: Who reported?\n{bot}: The company." in dialog[0]
    numbered, fmt = forced(CHAIN, "numbered")
    out = numbered[0]
    assert out.index(fmt.headers[0]) < out.index("Who reported?") < out.index(fmt.headers[1]) < out.index("The company.")
    inline, fmt = forced(CHAIN, "inline")
    assert inline[0].startswith(fmt.inline_pattern["context"].format(text=CHAIN[0][0]))
    test = fmt.inline_pattern["test_q"].format(q="Who reported?")
    assert f"{test}\n{fmt.inline_pattern['test_a'].format(a='The company.')}" in inline[0]
    nxt, fmt = forced(CHAIN, "next_turn")
    user, bot = fmt.speakers
    assert nxt[0].startswith(f"{CHAIN[0][0]}{fmt.sep_block}")
    assert f"{user}: Who reported?\n{bot}: The company." in nxt[0]


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
    out, fmt = forced(PLAIN, "next_turn", seed=seed)
    user, bot = fmt.speakers
    p = fmt.next_turn_pattern

    def entry(text, pairs):
        turns = [f"{user}: {q}\n{bot}: {a}" for q, a in pairs]
        parts = {"dialog": "\n".join(turns[:-1]), "turn": turns[-1]}
        return f"{text}{fmt.sep_block}{p['prompt'].format(**parts)}{fmt.sep_pair}{p['reply'].format(**parts)}"

    assert out == [fmt.sep_entry.join(entry(text, pairs) for text, pairs in PLAIN)]


def test_next_turn_history_comes_before_the_final_exchange_or_after_it_as_the_pattern_says():
    rng = random.Random(0)
    fmt = dataclasses.replace(sample_format(rng, PLAIN), layout="next_turn", inverted=False, sep_block="\n",
                              sep_pair="\n", sep_entry="\n\n", speakers=("User", "Bot"))
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


def test_entries_share_one_format():
    out, fmt = forced(CHAIN, "classic")
    assert out[0].count(fmt.lead) == 2


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
