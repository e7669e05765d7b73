"""M-shot chaining with an exact token budget."""

from __future__ import annotations

from hf_ipt.backends import Generation
from hf_ipt.chaining import MARKERS_ONLY, ChainStats, chain, chains_of, no_room, split_rounds
from hf_ipt.protocol import build_prompt, encode_prompt, format_pairs


def fake_engine(tokenizer, replies=None):
    """Stands in for a model: answers each prompt with pairs naming the prompt's last text."""
    seen: list[str] = []

    def generate(prompts):
        out = []
        for ids in prompts:
            prompt = tokenizer.decode(ids)
            seen.append(prompt)
            last = prompt.rsplit("<CON>", 1)[-1].split("</CON>")[0].strip()
            reply = (replies or {}).get(last, format_pairs([(f"About {last[:15]}?", "Yes."), ("Why?", "Because.")]))
            out.append(Generation(text=reply, num_prompt_tokens=len(ids)))
        return out

    return generate, seen


def test_split_rounds_consecutive_and_balanced():
    assert split_rounds(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split_rounds([1], 2) == [[1], []]
    assert [i for part in split_rounds(list(range(10)), 3) for i in part] == list(range(10))


def test_round_prompts_contain_earlier_rounds_pairs(tiny_tokenizer):
    texts = [f"Text number {i} about markets." for i in range(6)]
    generate, seen = fake_engine(tiny_tokenizer)
    entries = chain(texts, generate, tiny_tokenizer, rounds=3, prompt_budget=3696)
    assert [e.text for e in entries] == texts
    # round 2, position 0 = text 4 chains to text 2 (round 1) and text 0 (round 0)
    e = entries[4]
    assert (e.round, e.position, e.shots, e.parent) == (2, 0, (0, 2), 2)
    expected = build_prompt(
        texts[4], [(texts[0], entries[0].pairs), (texts[2], entries[2].pairs)]
    )
    assert e.prompt_ids == encode_prompt(tiny_tokenizer, expected)
    assert seen[4] == tiny_tokenizer.decode(e.prompt_ids)  # and the engine was given that prompt
    assert entries[0].pairs and entries[0].pairs[0].question.startswith("About Text number 0")
    assert [len(c) for c in chains_of(entries)] == [3, 3]


def test_entry_without_pairs_cuts_the_chain(tiny_tokenizer):
    texts = ["Alpha text.", "Beta text.", "Gamma text.", "Delta text."]
    generate, _ = fake_engine(tiny_tokenizer, replies={"Alpha text.": "nothing parseable"})
    entries = chain(texts, generate, tiny_tokenizer, rounds=2)
    assert entries[2].shots == () and entries[2].parent is None  # Alpha had no pairs
    assert entries[3].shots == (1,) and entries[3].parent == 1
    assert sorted(len(c) for c in chains_of(entries)) == [1, 1, 2]


def test_exact_budget_keeps_the_whole_chain_or_cuts_it(tiny_tokenizer):
    """The reference's rule (`get_dataset`): all earlier rounds as shots if they fit, else none."""
    long = " ".join(["The company reported a profit."] * 20)
    texts = [long + " A", long + " B", "Short text C."]
    generate, _ = fake_engine(tiny_tokenizer)
    full = chain(texts, generate, tiny_tokenizer, rounds=3, prompt_budget=100_000)
    need_two = len(full[2].prompt_ids)
    assert full[2].shots == (0, 1) and full[2].parent == 1
    need_one = len(encode_prompt(tiny_tokenizer, build_prompt(texts[2], [(texts[1], full[1].pairs)])))
    assert need_one < need_two
    # exactly enough room: the whole chain is used
    stats = ChainStats()
    entries = chain(texts, generate, tiny_tokenizer, rounds=3, prompt_budget=need_two, stats=stats)
    assert entries[2].shots == (0, 1) and len(entries[2].prompt_ids) == need_two
    assert stats.chains_cut == stats.shots_dropped == stats.truncated == 0
    # one token less: the last shot alone would fit, but a chain is never shortened from the
    # front (the pre-training text A+B+C would hold shots C's prompt never saw): zero-shot
    stats = ChainStats()
    entries = chain(texts, generate, tiny_tokenizer, rounds=3, prompt_budget=need_two - 1, stats=stats)
    assert entries[2].shots == () and entries[2].parent is None
    assert entries[2].prompt_ids == encode_prompt(tiny_tokenizer, build_prompt(texts[2]))
    assert (stats.chains_cut, stats.shots_dropped, stats.truncated) == (1, 2, 0)
    assert [[e.id for e in c] for c in chains_of(entries)] == [[0, 1], [2]]
    # every text still ends up in exactly one chain: nothing is lost
    assert sorted(e.id for c in chains_of(entries) for e in c) == [0, 1, 2]


def test_entry_whose_completion_has_no_pairs_leaves_the_chain_before_it_whole(tiny_tokenizer):
    """Reference `inherit_from_prev=False`: B saw A as a shot but produced nothing; B is its own
    (raw) text and A's chain keeps only A, so B's empty pair list cannot change A's layout."""
    texts = ["Alpha text.", "Beta text."]
    generate, _ = fake_engine(tiny_tokenizer, replies={"Beta text.": "nothing parseable"})
    entries = chain(texts, generate, tiny_tokenizer, rounds=2)
    assert entries[1].shots == (0,) and entries[1].pairs == [] and entries[1].parent is None
    assert [[e.id for e in c] for c in chains_of(entries)] == [[0], [1]]


def test_a_text_of_markers_alone_is_sent_to_no_engine(tiny_tokenizer):
    """`<s></s>` is blank once its markers are: prompted with an empty context, the synthesizer
    invented pairs about nothing (the fake engine answers every prompt it gets)."""
    texts = ["Alpha text.", "<s> </s>", "Gamma text.", "<CON></CON>"]
    generate, seen = fake_engine(tiny_tokenizer)
    stats = ChainStats()
    entries = chain(texts, generate, tiny_tokenizer, rounds=2, stats=stats)
    assert len(seen) == 2 and all("Alpha" in p or "Gamma" in p for p in seen)
    assert [bool(e.pairs) for e in entries] == [True, False, True, False]
    assert [e.error for e in entries] == [None, MARKERS_ONLY, None, MARKERS_ONLY]
    assert (stats.markers_only, stats.errors) == (2, 0)
    assert entries[3].parent is None and entries[2].shots == (0,)  # the chain A -> C is unchanged


def test_a_text_of_markers_alone_gets_no_shots_and_cuts_no_chain(tiny_tokenizer):
    """Round 1's `<s> </s>` follows round 0's Alpha, which has pairs: it was planned with Alpha as its
    shot though no engine ever saw that prompt (its pairs row listed the shot), and where that prompt
    was over the budget it counted a chain cut that cut nothing."""
    texts = ["Alpha text.", "Beta text.", "<s> </s>", "Delta text."]
    generate, _ = fake_engine(tiny_tokenizer)
    alone = chain(texts[:1], generate, tiny_tokenizer, rounds=1)[0]
    # room for a shot, or for one text's prompt alone (Delta's chain to Beta is cut, nothing else)
    for budget, cut, chains in ((3696, 0, [[0], [2], [1, 3]]), (len(alone.prompt_ids) + 3, 1, [[0], [1], [2], [3]])):
        stats = ChainStats()
        entries = chain(texts, generate, tiny_tokenizer, rounds=2, prompt_budget=budget, stats=stats)
        markers = entries[2]
        assert (markers.error, markers.shots, markers.parent, markers.prompt_ids) == (MARKERS_ONLY, (), None, [])
        assert (stats.prompts, stats.chains_cut, stats.shots_dropped, stats.markers_only) == (3, cut, cut, 1)
        assert [[e.id for e in c] for c in chains_of(entries)] == chains


def test_a_budget_with_no_room_for_text_says_so(tiny_tokenizer):
    """A budget below the prompt's own markers cut every text to nothing: each was reported as
    markers only, the wrong reason, and nothing named the settings to change."""
    generate, seen = fake_engine(tiny_tokenizer)
    stats = ChainStats()
    entries = chain(["Alpha text.", "Beta text."], generate, tiny_tokenizer, rounds=1, prompt_budget=3, stats=stats)
    assert seen == [] and (stats.markers_only, stats.errors) == (0, 2)
    assert all(e.error == no_room(3) and not e.pairs for e in entries)
    assert "raise max_model_len or lower max_new_tokens" in no_room(3)


def test_overlong_text_truncated_at_token_boundary(tiny_tokenizer):
    text = " ".join(f"word{i}" for i in range(500))
    generate, _ = fake_engine(tiny_tokenizer)
    stats = ChainStats()
    entries = chain([text], generate, tiny_tokenizer, rounds=1, prompt_budget=64, stats=stats)
    e = entries[0]
    assert stats.truncated == 1 and e.truncated
    assert len(e.prompt_ids) <= 64 and len(e.prompt_ids) >= 50
    assert text.startswith(e.context) and e.text == text  # the raw text is kept whole


def test_truncation_never_leaves_half_a_character(tiny_tokenizer):
    text = "经济增长" * 200  # 3 UTF-8 bytes per character, one token per byte here
    generate, _ = fake_engine(tiny_tokenizer)
    for budget in (60, 61, 62):  # one of these cuts inside a character
        e = chain([text], generate, tiny_tokenizer, rounds=1, prompt_budget=budget)[0]
        assert e.truncated and e.context and "\ufffd" not in e.context
        assert text.startswith(e.context) and len(e.prompt_ids) <= budget


def test_markers_in_raw_text_do_not_become_special_tokens(tiny_tokenizer):
    texts = ["Prices <s>fell</s> sharply <QUE> today.", "Shares rose </END> again <CON> later."]
    generate, _ = fake_engine(tiny_tokenizer)
    entries = chain(texts, generate, tiny_tokenizer, rounds=2)
    assert [e.text for e in entries] == texts  # templify still renders the raw text
    assert entries[1].shots == (0,)
    bos, eos = tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id
    ids = entries[1].prompt_ids  # one shot + the new context: 2 BOS, 1 EOS, nothing more
    assert ids.count(bos) == 2 and ids.count(eos) == 1 and ids[0] == bos
    assert entries[0].context == "Prices  fell  sharply   today."


def test_markers_in_parsed_pairs_do_not_become_special_tokens_in_the_next_round(tiny_tokenizer):
    """A pair about markup (``The </s> tag``) parses fine; as a shot of the next round it used to
    put an EOS and a BOS in the middle of the shot's answer."""
    reply = "<QUE> What tag ends it? <ANS> The </s> tag, then <s> and <CON> </END>"
    generate, _ = fake_engine(tiny_tokenizer, replies={"first text": reply})
    entries = chain(["first text", "second text"], generate, tiny_tokenizer, rounds=2)
    assert entries[0].pairs[0].answer == "The </s> tag, then <s> and <CON>"  # kept as parsed for templify
    assert entries[1].shots == (0,)
    ids = entries[1].prompt_ids  # one shot + the new context: 2 BOS, 1 EOS, at the shot's boundary
    bos, eos = tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id
    assert ids.count(bos) == 2 and ids.count(eos) == 1 and ids.index(eos) + 1 == len(ids) - ids[::-1].index(bos) - 1
    assert ids == encode_prompt(tiny_tokenizer, build_prompt(
        "second text", [("first text", [("What tag ends it?", "The   tag, then   and  ")])]))


def test_a_parsed_pair_blank_once_its_markers_are_is_not_shown_in_the_next_round(tiny_tokenizer):
    """An answer of markers only (``<s>``) parses as a pair; shown as a shot it would be an empty
    answer, and a text with no other pair would be a shot answered by nothing: neither is shown."""
    replies = {"first text": "<QUE> Which tag? <ANS> <s> </END><QUE> Why? <ANS> To cross out. </END>",
               "lone text": "<QUE> What else? <ANS> <CON> </END>"}
    generate, _ = fake_engine(tiny_tokenizer, replies=replies)
    entries = chain(["first text", "lone text", "second text", "third text"], generate, tiny_tokenizer, rounds=2)
    assert [len(e.pairs) for e in entries[:2]] == [2, 1]  # kept as parsed for templify
    assert entries[2].shots == (0,) and entries[3].shots == () and entries[3].parent is None
    assert entries[2].prompt_ids == encode_prompt(tiny_tokenizer, build_prompt(
        "second text", [("first text", [("Why?", "To cross out.")])]))
    assert entries[3].prompt_ids == encode_prompt(tiny_tokenizer, build_prompt("third text"))


def test_a_text_whose_pairs_are_all_blank_ends_its_chain(tiny_tokenizer):
    """Its ancestors were still given to the next round as shots, with one of them as parent: two entries had
    the same parent, and `chains_of` rendered that parent in both chains (the same text trained on twice)."""
    replies = {"beta text": "<QUE> Which tag strikes text? <ANS> <s> </END>"}
    generate, _ = fake_engine(tiny_tokenizer, replies=replies)
    entries = chain(["alpha text", "beta text", "gamma text"], generate, tiny_tokenizer, rounds=3)
    assert [(e.shots, e.parent) for e in entries] == [((), None), ((0,), 0), ((), None)]
    chains = [[e.id for e in c] for c in chains_of(entries)]
    assert sorted(i for c in chains for i in c) == [0, 1, 2]  # each text in one chain, once


def test_other_special_tokens_in_raw_text_are_blanked(tiny_tokenizer):
    """Mistral's ``<unk>`` (any special token of the tokenizer) in raw text would be encoded as its
    special id: blanked like the protocol's markers."""
    special = tiny_tokenizer.unk_token or tiny_tokenizer.pad_token
    assert special and special not in ("<s>", "</s>")
    generate, _ = fake_engine(tiny_tokenizer)
    entries = chain([f"markup {special} here"], generate, tiny_tokenizer, rounds=1)
    assert entries[0].context == "markup   here" and entries[0].text == f"markup {special} here"
    assert tiny_tokenizer.convert_tokens_to_ids(special) not in entries[0].prompt_ids


def test_engine_errors_recorded_not_fatal(tiny_tokenizer):
    def generate(prompts):
        return [Generation("", len(p), error="rejected") if i == 0 else Generation("<QUE> q <ANS> a </END>", len(p))
                for i, p in enumerate(prompts)]

    stats = ChainStats()
    entries = chain(["one", "two"], generate, tiny_tokenizer, rounds=1, stats=stats)
    assert entries[0].error == "rejected" and entries[0].pairs == []
    assert entries[1].pairs == [("q", "a")] and stats.errors == 1


def test_an_engine_that_returns_too_few_results_is_named(tiny_tokenizer):
    """`chain` and its `generate` are public: a short list was a bare 'zip() argument 2 is shorter'."""
    import pytest

    with pytest.raises(ValueError, match=r"`generate` must return one result per prompt, in order: got 1 for 2"):
        chain(["one", "two"], lambda prompts: [Generation("", 1)], tiny_tokenizer, rounds=1)


def test_a_failed_request_with_partial_text_gives_no_pairs_and_no_shot(tiny_tokenizer):
    """An engine may end a request with an error after some text (vLLM's "abort"): that text is
    no completion. Parsed, the next round took the failed entry as a shot, and a job, which drops
    failed entries, crashed looking up the shot's row."""
    failed = iter([True])

    def generate(prompts):
        reply = format_pairs([("What is it?", "A text.")])
        return [Generation(reply, len(p), error="vLLM finished the request with 'abort'" if next(failed, False) else None)
                for p in prompts]

    entries = chain(["Alpha text.", "Beta text.", "Gamma text.", "Delta text."], generate, tiny_tokenizer, rounds=2)
    assert entries[0].error and entries[0].pairs == []
    assert entries[2].shots == () and entries[2].parent is None  # Gamma is zero-shot, not chained to Alpha
    assert entries[3].shots == (1,) and entries[3].pairs


def test_unnamed_special_tokens_in_raw_text_are_blanked():
    """A tokenizer's added tokens flagged special but not named (reserved or chat tokens) are in
    no `all_special_tokens`; in raw text they were encoded as their special id."""
    from transformers import AddedToken

    from .conftest import train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer()
    tokenizer.add_tokens([AddedToken("<|reserved_0|>", special=True)])
    reserved = tokenizer.convert_tokens_to_ids("<|reserved_0|>")
    generate, _ = fake_engine(tokenizer)
    entries = chain(["chat <|reserved_0|> log"], generate, tokenizer, rounds=1)
    assert entries[0].context == "chat   log" and reserved not in entries[0].prompt_ids
