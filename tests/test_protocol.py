"""The synthesizer protocol: byte-exact prompts and the reference parsing rules."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_ipt import Pair, build_prompt, encode_prompt, format_pairs, parse_pairs
from hf_ipt.protocol import MARKERS, context_block, format_shot


def test_context_block_exact():
    assert context_block("Some text.") == "<s> <CON> Some text. </CON>\n\n"
    assert context_block("") == "<s>"


def test_build_prompt_zero_shot_is_the_context_block():
    assert build_prompt("Hello world") == "<s> <CON> Hello world </CON>\n\n"


def test_build_prompt_with_shots_byte_exact():
    shots = [
        ("First text.", [("Q1?", "A1."), ("Q2?", "A2.")]),
        ("Second text.", [Pair("Q3?", "A3.")]),
    ]
    expected = (
        "<s> <CON> First text. </CON>\n\n"
        "<QUE> Q1? <ANS> A1. </END>\n\n<QUE> Q2? <ANS> A2. </END></s>"
        "<s> <CON> Second text. </CON>\n\n"
        "<QUE> Q3? <ANS> A3. </END></s>"
        "<s> <CON> New text. </CON>\n\n"
    )
    assert build_prompt("New text.", shots) == expected


def test_shot_with_empty_context_and_no_separator_between_shots():
    assert format_shot("", [("q", "a")]) == "<s><QUE> q <ANS> a </END></s>"
    assert build_prompt("x", [("", [("q", "a")])]).startswith("<s><QUE> q <ANS> a </END></s><s> <CON>")


def test_a_shot_without_pairs_is_refused_not_sent_as_an_empty_answer():
    # "<s> <CON> Old. </CON>\n\n</s>" would teach the synthesizer in-context to stop at once
    with pytest.raises(ValueError, match="at least one .* pair, got none for the text 'Old.'"):
        build_prompt("New.", [("Old.", [])])
    with pytest.raises(ValueError, match="at least one"):
        format_shot("Old.", iter(()))


def test_pairs_given_as_mappings_format_as_their_question_and_answer():
    """A dict pair unpacked as a tuple gave its keys: ``<QUE> question <ANS> answer``; a builder row's pair
    (with its ``task`` key) failed with a bare "too many values to unpack"."""
    expected = build_prompt("New.", [("Old.", [("Why?", "Because.")])])
    for pair in ({"question": "Why?", "answer": "Because."}, {"question": "Why?", "answer": "Because.", "task": "qa"},
                 {"Q": "Why?", "A": "Because."}, Pair("Why?", "Because."), ["Why?", "Because."]):
        assert build_prompt("New.", [("Old.", [pair])]) == expected, pair
    for bad in ("Q?", {"question": "Why?"}, ("Why?", None)):
        with pytest.raises(TypeError, match=r"^pair 0: a pair is \(question, answer\) or a mapping"):
            format_pairs([bad])


def test_parse_reference_rules():
    completion = (
        "<QUE> What is X? <ANS> X is Y. </END>\n\n"
        "<QUE> what is x? <ANS> duplicate, dropped </END>\n\n"
        "no question marker <ANS> dropped </END>\n\n"
        "<QUE> Two <ANS> answers <ANS> dropped </END>\n\n"
        "<QUE> Empty answer <ANS>    </END>\n\n"
        "<QUE> <QUE>Nested marker removed <ANS> kept </END>\n\n"
        "<QUE> Truncated <ANS> never finished"
    )
    assert parse_pairs(completion) == [
        Pair("What is X?", "X is Y."),
        Pair("Nested marker removed", "kept"),
    ]


def test_parse_keeps_last_piece_only_when_terminated():
    assert parse_pairs("<QUE> a <ANS> b </END>") == [("a", "b")]
    assert parse_pairs("<QUE> a <ANS> b </END><QUE> c <ANS> d") == [("a", "b")]
    assert parse_pairs("<QUE> a <ANS> b") == []


def test_parse_strips_leading_whitespace_before_que():
    assert parse_pairs("  \n<QUE>  q  <ANS>\n a \n</END>") == [("q", "a")]


def test_parse_never_raises_on_odd_input():
    for value in (None, 3, b"<QUE> a <ANS> b </END>", "", "</END>", "<ANS></END>", "\x00\uffff"):
        assert parse_pairs(value) == []


_plain = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40
).map(str.strip).filter(lambda s: s and not any(m in s for m in MARKERS))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_plain, _plain), min_size=0, max_size=6))
def test_parse_inverts_format(pairs):
    unique, seen = [], set()
    for q, a in pairs:
        if q.lower() not in seen:
            seen.add(q.lower())
            unique.append((q, a))
    assert parse_pairs(format_pairs(unique)) == unique


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(list(string.printable) + list(MARKERS) + ["é", "\x00"])).map("".join))
def test_parse_never_raises(text):
    pairs = parse_pairs(text)
    # the reference keeps an empty question ("<QUE><ANS>a</END>"), never an empty answer
    assert all(isinstance(p, Pair) and isinstance(p.question, str) and p.answer for p in pairs)


def test_empty_question_is_kept_like_the_reference():
    assert parse_pairs("<QUE><ANS>a</END>") == [Pair("", "a")]


def test_encode_prompt_adds_no_second_bos(tiny_tokenizer):
    prompt = build_prompt("The company reported a profit.")
    ids = encode_prompt(tiny_tokenizer, prompt)
    bos = tiny_tokenizer.bos_token_id
    assert ids[0] == bos and bos not in ids[1:]
    # the tokenizer's default WOULD add one: the helper is what prevents it
    assert tiny_tokenizer(prompt)["input_ids"][:2] == [bos, bos]


def test_encode_prompt_round_trips_with_a_real_small_tokenizer(smollm2_dir):
    """SmolLM2's tokenizer (a real one, offline): the prompt's ids decode to the prompt. Its `<s>` is plain
    text, not a special token; the synthesizer's Mistral-style BOS is checked with `mistral_style_model_dir`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    prompt = build_prompt("Banks lend money.", [("Old text.", [("Q?", "A.")])])
    ids = encode_prompt(tok, prompt)
    assert tok.decode(ids) == prompt


def test_encode_prompt_gives_one_bos_with_a_mistral_style_tokenizer(mistral_style_model_dir):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(mistral_style_model_dir)
    prompt = build_prompt("Banks lend money.", [("Old text.", [("Q?", "A.")])])
    ids = encode_prompt(tok, prompt)
    # the prompt's own <s> and </s> as the special ids, each once, and no second BOS before the first
    assert ids[0] == tok.bos_token_id != ids[1]
    assert (ids.count(tok.bos_token_id), ids.count(tok.eos_token_id)) == (prompt.count("<s>"), prompt.count("</s>")) == (2, 1)
