"""Pair quality filters and corpus-wide near-duplicate removal."""

from __future__ import annotations

import json
import random
import unicodedata

import numpy as np
import pyarrow.parquet as pq
import pytest

from hf_ipt.augment import SynthesisConfig
from hf_ipt.filters import (
    FilterConfig,
    KeySet,
    NearDuplicates,
    filter_pairs,
    is_copied_question,
    is_degenerate,
    is_ungrounded,
)
from hf_ipt.jobs import JobConfig, run_job

from .conftest import SYNTH_PAIRS
from .test_builder import SENTENCES, doc

TEXT = doc(0)
CONFIG = FilterConfig()


def test_ungrounded_only_checks_extractive_length_answers():
    assert is_ungrounded(TEXT, "Quantum chromodynamics lectures", CONFIG)
    assert not is_ungrounded(TEXT, "Demand from retailers weakened sharply", CONFIG)
    assert not is_ungrounded(TEXT, "Yes", CONFIG)  # a label, not a span
    assert not is_ungrounded(TEXT, "Contradiction", CONFIG)
    long_answer = "Because the text argues that energy and rates drive the outlook, the answer is B " * 2
    assert not is_ungrounded(TEXT, long_answer, CONFIG)  # free-form: not checked
    assert is_ungrounded(TEXT, "profit of giraffes", FilterConfig(min_grounding=1.0))
    assert is_ungrounded("A museum opened.", "A profit.", CONFIG)  # "a" alone grounds nothing


def test_answers_that_open_with_a_verdict_are_not_checked_as_spans():
    """A yes/no question's answer "Yes, it did." was dropped as ungrounded ("yes", "did": not in the text)."""
    question = "Did demand from retailers weaken?"
    for answer in ("Yes, it did.", "No, it didn't.", "True, it weakened.", "False: it grew"):
        assert not is_ungrounded(TEXT, answer, CONFIG, question)
        assert filter_pairs(TEXT, [(question, answer, "qa")], CONFIG)[0]
    assert is_ungrounded(TEXT, "Quantum chromodynamics lectures, yes", CONFIG)  # a verdict opens it, or it is a span


MC_QUESTION = ("What is the tone of the report?\nOptions:\n- Cautiously optimistic outlook\n"
               "- Deeply pessimistic outlook\n- Entirely neutral summary")


def test_answers_from_the_listed_options_are_grounded():
    """Default settings keep a multiple-choice answer taken from the listed options (not in the text)."""
    assert "optimistic" not in TEXT.lower() and "pessimistic" not in TEXT.lower()
    assert not is_ungrounded(TEXT, "Deeply pessimistic outlook", CONFIG, MC_QUESTION)
    assert not is_ungrounded(TEXT, "deeply  PESSIMISTIC outlook.", FilterConfig(min_grounding=1.0), MC_QUESTION)
    # still removed: words in neither the text nor the options, even if the question names them
    assert is_ungrounded(TEXT, "Purple elephants dancing", CONFIG, MC_QUESTION)
    assert is_ungrounded(TEXT, "Swiss watchmakers", CONFIG, "Which group do Swiss watchmakers belong to?")
    pairs = [(MC_QUESTION, "Cautiously optimistic outlook", "mc"), (MC_QUESTION, "Giraffes on holiday", "mc")]
    assert filter_pairs(TEXT, pairs, CONFIG) == (pairs[:1], {"ungrounded": 1})


def test_abstractive_answers_and_inflected_words_are_grounded():
    """Short answers that are not spans by design (a title, a tone, a summary) and answers that inflect or
    derive the text's words were dropped as ungrounded: good synthesizer pairs lost by a default filter."""
    text = ("The economy of Japan grew by 2% last quarter as exports to China recovered, the government said. "
            "Consumers were told that prices will rise sharply next year.")
    good = [("What would be a good title for this text?", "Quiet Recovery Ahead"),
            ("How would you describe the tone of the government statement?", "Cautiously upbeat"),
            ("Summarize the text in a few words.", "Growth returns"),
            ("Which economy grew last quarter?", "The Japanese economy"),  # Japan-ese, economy
            ("What recovered last quarter?", "Chinese exports recovering")]  # China-ese, recover-ing: 2 of 3
    for question, answer in good:
        assert not is_ungrounded(text, answer, CONFIG, question), (question, answer)
    assert filter_pairs(text, [(q, a, "qa") for q, a in good], CONFIG) == ([(q, a, "qa") for q, a in good], {})
    # still removed: an extractive question answered with words the text does not have, even inflected
    assert is_ungrounded(text, "Swiss watchmakers", CONFIG, "Who said the economy grew?")
    assert is_ungrounded(text, "Banana and mango exporters", CONFIG, "Which exports recovered?")  # 1 word of 4
    assert is_ungrounded(text, "Purple elephants", CONFIG, "What is the title?\nOptions:\n- Growth\n- Decline")
    assert not is_ungrounded(text, "Japanese economy", CONFIG, "Pick the title.\nOptions:\n- Japanese economy\n- x")
    # what must stay caught: a span question that names a title or a description, words that merely start
    # alike, numbers (found by a review of the change)
    sport = ("Manchester United won the league title on Sunday. Senator Warren described the plan as reckless. "
             "The bank raised interest rates to control inflation. The town had 1,000,000 residents.")
    for question, answer in [("Which club won the league title?", "Real Madrid"),
                             ("Who described the plan as reckless?", "Governor Jones"),
                             ("What did the company sign?", "International contracts"),
                             ("What did the company sign?", "Internet contracts"),
                             ("How many residents were there?", "1,000,900 people")]:
        assert is_ungrounded(sport, answer, CONFIG, question), (question, answer)
    assert not is_ungrounded(sport, "Interests controlled", CONFIG, "What happened?")  # interest-s, control-led
    assert not is_ungrounded(sport, "Manchester United", CONFIG, "Which club won the league title?")


def test_degenerate_pairs():
    loop = "the shares dropped " * 8
    assert is_degenerate("What happened?", loop, CONFIG)
    assert is_degenerate(loop, "Yes", CONFIG)
    assert is_degenerate("  ", "Yes", CONFIG) and is_degenerate("Why?", "", CONFIG)
    assert not is_degenerate("What did sales do in the U.S. this quarter?", SENTENCES[1], CONFIG)


def test_copied_questions():
    assert is_copied_question(TEXT, "however, sales in the U.S. fell by 3.5%   because demand", CONFIG)
    assert not is_copied_question(TEXT, "Which sentence follows this one? " + SENTENCES[0], CONFIG)
    assert not is_copied_question(TEXT, "Market report 0", CONFIG)  # too short to call a copy
    # a question the text itself asks (an FAQ, an interview) is a question, and its pair the natural one
    faq = "FAQ\nHow long does shipping take to Canada? Shipping to Canada takes five to seven business days."
    assert not is_copied_question(faq, "How long does shipping take to Canada?", CONFIG)
    assert filter_pairs(faq, [("How long does shipping take to Canada?", "Five to seven business days", "qa")],
                        CONFIG)[1] == {}
    assert is_copied_question(faq, "Shipping to Canada takes five to seven business days.", CONFIG)


def test_filter_pairs_counts_each_removal_once():
    pairs = [("What is reported?", "A profit of $1.13bn", "qa"), ("Why?", "Purple elephants dancing", "qa"),
             (SENTENCES[2], "Yes", "nli"), ("Go on.", "and on " * 10, "x")]
    kept, removed = filter_pairs(TEXT, pairs, CONFIG)
    assert kept == pairs[:1]
    assert removed == {"ungrounded": 1, "copied_question": 1, "degenerate": 1}
    off = FilterConfig(filter_ungrounded=False, filter_degenerate=False, filter_copied_questions=False)
    assert filter_pairs(TEXT, pairs, off) == (pairs, {})


def test_malformed_pairs_are_removed_and_counted_with_every_filter_off():
    """What templify would drop (`prepare_pair`) is removed here, under its own name, so the job's
    counts are the pairs of its output; it cannot be turned off, as templify would drop them anyway."""
    pairs = [(MC_QUESTION, "Cautiously optimistic outlook", "mc"), (MC_QUESTION, "Sideways", "mc"),
             ("Did sales fall?\nLet's think step by step.", "Demand weakened, so sales fell.", "cot"),
             ("Did sales fall?\nLet's think step by step.", "Demand weakened.\nTherefore, the answer is yes", "cot")]
    off = FilterConfig(filter_ungrounded=False, filter_degenerate=False, filter_copied_questions=False)
    assert filter_pairs(TEXT, pairs, off) == ([pairs[0], pairs[3]], {"malformed": 2})
    # each pair once, under the first filter that removes it: the optional filters come first
    both = (MC_QUESTION, "Purple elephants dancing", "mc")  # ungrounded, and none of the options
    assert filter_pairs(TEXT, [*pairs, both], CONFIG) == ([pairs[0], pairs[3]], {"malformed": 2, "ungrounded": 1})


def test_near_duplicates_keep_the_first_and_ignore_short_pairs():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(500)]
    base = " ".join(rng.choices(vocab, k=40))
    other = " ".join(rng.choices(vocab, k=40))
    dedup = NearDuplicates(CONFIG)
    assert [dedup.seen(t) for t in (base, other, base, base.upper(), other + " extra")] == [
        False, False, True, True, True]
    assert not dedup.seen("Give this text a title.") and not dedup.seen("Give this text a title.")


@pytest.mark.parametrize("threshold", [0.9, 0.5])
def test_near_duplicates_decide_as_datasketch_lsh_does(threshold):
    """The `KeySet` index (a fortieth of the memory of datasketch's) must take the decisions that `MinHashLSH`
    query-then-insert takes, on texts that are near copies of each other to varying degrees."""
    from datasketch import MinHashLSH

    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(300)]
    bases = [rng.choices(vocab, k=30) for _ in range(40)]
    texts = []
    for _ in range(600):  # copies of a base with 0-8 words changed: some over the threshold, some under
        text = list(rng.choice(bases))
        for _ in range(rng.randrange(9)):
            text[rng.randrange(len(text))] = rng.choice(vocab)
        texts.append(" ".join(text))
    config = FilterConfig(dedup_threshold=threshold)
    lsh, expected, hashing = MinHashLSH(threshold=threshold, num_perm=config.dedup_num_perm), [], NearDuplicates(config)
    for i, text in enumerate(texts):
        minhash = hashing.minhash(text)
        expected.append(bool(lsh.query(minhash)))
        if not expected[-1]:
            lsh.insert(str(i), minhash)
    for keys in (KeySet(), KeySet(min_buffer=7, max_buffer=20)):  # all keys in the Python set; merged often
        dedup = NearDuplicates(config, keys)
        assert [dedup.seen(t) for t in texts] == expected
        assert len(dedup.keys) == dedup.count * len(dedup.ranges)
    assert len(dedup.keys.sorted) > 0 and 0 < sum(expected) < len(texts)  # merged; both decisions taken
    # as a synthesis job takes them: keys computed apart, decided a batch (a unit) at a time, copies inside a batch too
    rows = np.array([hashing.band_keys(text) for text in texts], dtype=np.uint64)
    for size in (1, 37, 600):
        dedup = NearDuplicates(config, KeySet(min_buffer=7, max_buffer=20))
        assert [bool(s) for start in range(0, len(rows), size) for s in dedup.seen_keys(rows[start:start + size])] \
            == expected
        assert len(dedup.keys) == dedup.count * len(dedup.ranges)


def test_key_set_merge_adds_keys_found_by_later_batches():
    """`KeySet.merge` restores a saved index (a resumed dedup): its keys are found, others are not."""
    keys, saved = KeySet(), np.array([9, 3, 2**63 + 5], dtype=np.uint64)
    keys.merge(saved)
    assert list(keys.sorted) == [3, 9, 2**63 + 5] and len(keys) == 3
    assert np.shares_memory(keys.sorted, saved)  # adopted, not copied: a restored index is held once
    found = keys.insert_new(np.array([[1, 2], [4, 9], [1, 7], [2**63 + 5, 8], [6, 2], [6, 7]], dtype=np.uint64))
    assert found.tolist() == [False, True, True, True, True, False] and keys.recent == {1, 2, 6, 7}
    assert keys.insert_new(np.empty((0, 2), dtype=np.uint64)).tolist() == []


def test_numeric_answers_are_one_word_and_never_checked():
    """A computed number ("12.5%", "1,250") is a one-word answer, as `extractive_max_words` promises,
    not two "words" that the text lacks."""
    text = "Revenue rose from 120 million dollars in 2022 to 135 million dollars in 2023."
    for answer in ("12.5%", "12.5", "-3.75", "1,250", "$1,250.50"):
        assert not is_ungrounded(text, answer, CONFIG, "By what percentage did revenue rise?"), answer
    assert not is_ungrounded(text, "135 million dollars", CONFIG)
    assert is_ungrounded(text, "12.5 giraffes galloping", CONFIG)  # still checked: words the text lacks


def test_text_of_scripts_without_spaces_is_split_into_characters():
    """Without spaces a Chinese text was a few long "words": a span answer was ungrounded, an identical
    pair never a duplicate, a loop never degenerate."""
    text = "他去过北京，也去过上海。公司的收入增长了百分之十二。"
    assert not is_ungrounded(text, "北京，上海", CONFIG, "他去过哪些城市？")
    assert is_ungrounded(text, "东京，大阪", CONFIG, "他去过哪些城市？")
    thai = "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย มีประชากรมากกว่าสิบล้านคน"
    assert not is_ungrounded(thai, "กรุงเทพ มหานคร", CONFIG)
    assert is_degenerate("收入？", "的增长" * 12, CONFIG)
    assert not is_degenerate("收入增长了多少？", "公司的收入增长了百分之十二，是近年来最快的增长速度。", CONFIG)
    pair = "这家公司去年的收入增长了多少？\n公司的收入增长了百分之十二，这是近年来最快的增长速度。"
    dedup = NearDuplicates(CONFIG)
    assert [dedup.seen(pair), dedup.seen(pair), dedup.seen("東京の人口はどのくらいですか？\n約千四百万人です。")] == [
        False, True, False]


def test_unicode_normalization_variants_compare_equal():
    """Composed and decomposed accents, full-width digits and case variants are the same words."""
    composed = "Le café de Zoë et la crème brûlée sont célèbres à Montréal depuis très longtemps déjà"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    dedup = NearDuplicates(CONFIG)
    assert [dedup.seen(composed), dedup.seen(decomposed), dedup.seen(decomposed.upper())] == [False, True, True]
    assert not is_ungrounded(composed, unicodedata.normalize("NFD", "crème brûlée célèbres"), CONFIG)
    assert not is_ungrounded("Sales rose by 12 percent in 2023.", "１２ percent", CONFIG)
    assert not is_ungrounded("Die Straße ist lang.", "Die STRASSE", CONFIG)


def test_config_validation():
    with pytest.raises(ValueError, match="min_grounding"):
        FilterConfig(min_grounding=0)
    with pytest.raises(ValueError, match="dedup_num_perm"):
        FilterConfig(dedup_num_perm=0)


def test_an_option_of_a_filter_that_is_off_is_refused_not_ignored():
    with pytest.raises(ValueError, match=r"`dedup_threshold` \(0.5\) would be ignored: `dedup` is off"):
        FilterConfig(dedup=False, dedup_threshold=0.5)
    with pytest.raises(ValueError, match=r"`min_grounding` \(0.8\) would be ignored: `filter_ungrounded` is off"):
        FilterConfig(filter_ungrounded=False, min_grounding=0.8)
    with pytest.raises(ValueError, match="`copied_min_words`"):
        FilterConfig(filter_copied_questions=False, copied_min_words=3)
    FilterConfig(dedup=False, dedup_threshold=0.9)  # at its default: nothing is lost
    FilterConfig(dedup_threshold=0.5)


def test_filters_on_real_synthesizer_output_in_a_job(tmp_path, tiny_synthesizer_dir):
    """The tiny synthesizer answers every text with SYNTH_PAIRS ("A profit.", "Sales fell."): grounded in
    the market reports, not in texts about something else."""
    off_topic = "The museum opened a new wing for modern art, and visitors praised its bright galleries."
    texts = [doc(0), off_topic, doc(1), off_topic + " Tickets are free.", doc(2), doc(3)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    synthesis = SynthesisConfig(synthesizer=str(tiny_synthesizer_dir), backend="transformers", rounds=2,
                                max_new_tokens=40, output="pairs", window_size=6)
    manifest = run_job(JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=1), synthesis,
                       progress=False)
    rows = pq.read_table(tmp_path / "o" / "data" / "00000.parquet").to_pylist()
    kept = {r["id"]: [(p["question"], p["answer"]) for p in r["pairs"]] for r in rows}
    assert kept == {f"c.jsonl:{i}": [] if i in (1, 3) else SYNTH_PAIRS for i in range(6)}
    assert manifest["filters_removed"] == {"degenerate": 0, "copied_question": 0, "ungrounded": 4,
                                           "malformed": 0, "near_duplicate": 0}
    assert manifest["pairs"] == {"synthesized": 12, "kept": 8}
    assert manifest["tokens"]["unit"] == "prompt tokens" and manifest["tokens"]["count"] > 0
    assert manifest["chain"]["prompts"] == 6
