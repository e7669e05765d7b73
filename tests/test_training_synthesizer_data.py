"""Synthesizer tuning data: collection layout, pairs-only labels, multi-shot sequences of one source."""

from __future__ import annotations

import json

import pytest

from hf_ipt.protocol import context_block, format_pairs, format_shot
from hf_ipt.training.data import load_rows
from hf_ipt.training.packing import IGNORE_INDEX
from hf_ipt.training.synthesizer_data import (
    collection_files,
    encode_shot,
    multi_shot_sequences,
    row_shot,
)

SHOTS = [
    (
        "The company reported a profit of $1.13bn.",
        [("What was reported?", "A profit."), ("How much?", "$1.13bn")],
    ),
    ("However, sales in the U.S. fell by 3.5%.", [("Where did sales fall?", "In the U.S.")]),
    ("", [("What is the answer?", "42")]),  # an empty context is a bare "<s>"
]


def _decode(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def test_labels_mask_everything_but_the_pairs(tiny_tokenizer):
    encoded = [encode_shot(tiny_tokenizer, context, pairs) for context, pairs in SHOTS]
    (sequence,) = multi_shot_sequences(encoded, max_length=4096)
    ids, labels = sequence["input_ids"], sequence["labels"]
    learned = [t for t, label in zip(ids, labels) if label != IGNORE_INDEX]
    masked = [t for t, label in zip(ids, labels) if label == IGNORE_INDEX]
    assert all(label in (IGNORE_INDEX, t) for t, label in zip(ids, labels))
    assert _decode(tiny_tokenizer, learned) == "".join(format_pairs(p) + "</s>" for _, p in SHOTS)
    assert _decode(tiny_tokenizer, masked) == "".join(context_block(c) for c, _ in SHOTS)
    # The sequence is the shots in the synthesizer's exact format, tokenized as the backends do.
    text = "".join(format_shot(c, p) for c, p in SHOTS)
    assert ids == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert sequence["position_ids"] == list(range(len(ids)))


def test_markers_in_the_text_are_blanked_as_in_synthesis(tiny_tokenizer):
    shot = encode_shot(tiny_tokenizer, "Prices <s>fell</s> sharply.", [("Why <ANS> it?", "Costs </END> rose.")])
    ids = shot["input_ids"]
    bos, eos = tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id
    assert ids.count(bos) == 1 and ids[0] == bos and ids.count(eos) == 1 and ids[-1] == eos
    from hf_ipt.protocol import parse_pairs

    text = tiny_tokenizer.decode(ids)
    assert parse_pairs(text.split("</CON>")[1].replace("</s>", "")) == [("Why   it?", "Costs   rose.")]


def test_sequences_fill_max_length_and_skip_only_overlong_shots(tiny_tokenizer, caplog):
    encoded = [encode_shot(tiny_tokenizer, c, p) for c, p in SHOTS * 4]
    lengths = [len(e["input_ids"]) for e in encoded]
    limit = lengths[0] + lengths[1] + 1
    sequences = list(multi_shot_sequences(encoded, max_length=limit))
    assert all(len(s["input_ids"]) <= limit for s in sequences)
    assert sum(len(s["input_ids"]) for s in sequences) == sum(lengths)  # no shot cut or lost
    assert len(sequences) < len(encoded)  # several shots per sequence
    too_long = list(multi_shot_sequences(encoded[:2], max_length=min(lengths[:2])))
    assert len(too_long) == 1 and "skipped 1 shot(s) of the collection longer" in caplog.text


def test_a_source_whose_shots_are_all_too_long_is_refused_not_looped_on_forever(tiny_tokenizer):
    import itertools

    shot = encode_shot(tiny_tokenizer, *SHOTS[0])
    endless = itertools.repeat(shot)  # an endless source (epoch after epoch) of over-long shots
    from hf_ipt.cli import UsageError

    # a usage error (the recipe's usage line, exit 2), not a traceback after the model loaded
    with pytest.raises(UsageError, match="first 50 shots of source 'race' are all longer than max_length=4"):
        next(multi_shot_sequences(endless, max_length=4, name="source 'race'", max_unusable=50))
    fits = {**shot, "input_ids": shot["input_ids"][:3], "labels": shot["labels"][:3]}
    mixed = itertools.chain([fits], itertools.repeat(shot, 60), [fits])  # one usable shot first: no error
    assert [len(s["input_ids"]) for s in multi_shot_sequences(mixed, max_length=4, max_unusable=50)] == [3, 3]


def test_encode_shot_needs_a_fast_tokenizer():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast tokenizer"):
        encode_shot(Slow(), "text", [("q", "a")])


def test_encode_shot_refuses_a_tokenizer_whose_eos_is_not_the_protocols_end(smollm2_dir, tiny_tokenizer):
    """SmolLM2's `</s>` is plain text ("</END></s>" even merges into "></"): tuned on it, a synthesizer
    would write the characters and never emit the EOS that generation stops at."""
    from transformers import AutoTokenizer

    with pytest.raises(ValueError, match=r"BOS is '<s>' and EOS is '</s>'.*never stop"):
        encode_shot(AutoTokenizer.from_pretrained(smollm2_dir), "text", [("q", "a")])
    ids = encode_shot(tiny_tokenizer, "text", [("q", "a")])["input_ids"]
    assert (ids[0], ids[-1]) == (tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id)


def test_row_shot_reads_the_pair_layouts():
    # default: the reference's read-collection entry (read_compre.py: entry['QA_list'], {'Q', 'A'})
    assert row_shot({"context": "c", "QA_list": [{"Q": "q", "A": "a"}]}) == ("c", [("q", "a")])
    assert row_shot({"context": "c", "pairs": [["q", "a"]]}, pairs_column="pairs") == ("c", [("q", "a")])
    assert row_shot(
        {"context": "c", "pairs": [{"question": "q", "answer": "a", "task": "x"}]}, pairs_column="pairs"
    ) == ("c", [("q", "a")])
    assert row_shot({"context": "c", "QA_list": []}) is None
    assert row_shot({"context": "c", "QA_list": [{"Q": "q", "A": 5}]}) == ("c", [("q", "5")])
    assert row_shot({"context": "c"}) is None  # a line without the column: read as they are, rows may be ragged


@pytest.mark.parametrize("pairs", [
    {"Q": "q", "A": "a"},  # one pair, not a list of pairs
    "qa",
    ["qa"],  # not a question "q" and an answer "a"
    [["q", "a", "extra"]],
    [5],
    [{"Q": "q", "A": ["a", "b"]}],  # not the text "['a', 'b']"
])
def test_a_malformed_pair_gives_nothing_rather_than_stop_the_run_or_train_garbage(pairs):
    assert row_shot({"context": "c", "QA_list": pairs}) is None
    assert row_shot({"context": "c", "QA_list": [["q", "a", "extra"], ["q", "a"]]}) == ("c", [("q", "a")])


@pytest.mark.parametrize("context", [["para one", "para two"], {"title": "t"}, 12345])
def test_a_context_that_is_not_text_gives_nothing_rather_than_stop_the_run(context):
    row = {"context": context, "QA_list": [{"Q": "What?", "A": "That."}]}
    assert row_shot(row) is None  # was `(context, pairs)`, and encode_shot then raised a bare TypeError
    assert row_shot({**row, "context": None}) == ("", [("What?", "That.")])  # null: an empty context


def test_collection_files_follow_the_layout(tmp_path):
    for name in ("squad", "race"):
        (tmp_path / name / "shard").mkdir(parents=True)
        (tmp_path / name / "shard" / "00000.jsonl").write_text(
            json.dumps({"context": "c", "pairs": [["q", "a"]]})
        )
    (tmp_path / "README.md").write_text("not data")
    files = collection_files(str(tmp_path))
    assert sorted(files) == ["race", "squad"]
    assert files["race"] == [str(tmp_path / "race" / "shard" / "00000.jsonl")]
    with pytest.raises(FileNotFoundError, match="shard"):
        collection_files(str(tmp_path / "race" / "shard"))
    # a source compressed by its maker (`gzip squad/shard/*.jsonl`) is found too, with its rows
    import gzip

    (tmp_path / "squad" / "shard" / "00001.jsonl.gz").write_bytes(gzip.compress(b'{"context": "z", "pairs": []}\n'))
    assert collection_files(str(tmp_path))["squad"][-1].endswith("00001.jsonl.gz")
    assert [r["context"] for r in load_rows(collection_files(str(tmp_path))["squad"])] == ["c", "z"]


@pytest.mark.parametrize("part", ["</s>", "<s>", " <s> </s> ", "<unk>", "<pad><QUE>", "</END>"])
def test_a_pair_of_markers_only_gives_nothing_not_an_empty_answer_or_question(tiny_tokenizer, part):
    """`_pair` keeps a pair whose answer is ``"</s>"`` (non-blank text); blanked, it was trained as an
    empty answer. Which strings are special depends on the tokenizer (`<unk>`, `<pad>`): checked after blanking."""
    from hf_ipt.protocol import special_tokens
    from hf_ipt.training.synthesizer_data import blank_shot

    special = special_tokens(tiny_tokenizer)
    good = ("Who reported?", "The company.")
    for pair in ((good[0], part), (part, good[1])):
        assert blank_shot("c", [pair, good], special) == ("c", [good])
        assert blank_shot("c", [pair], special) is None  # no pair left: no shot
        with pytest.raises(ValueError, match="no pair of the shot .* blanked"):
            encode_shot(tiny_tokenizer, "c", [pair])
    shot = encode_shot(tiny_tokenizer, "c", [(good[0], part), good])
    assert shot == encode_shot(tiny_tokenizer, "c", [good])


@pytest.mark.parametrize("context", ["", "   ", "\n\t", "<s></s>", " <CON> </CON> ", "<unk>"])
def test_a_blank_context_is_the_empty_context_block_as_an_empty_one(tiny_tokenizer, context):
    """A context blank once markers are is no text, as synthesis reads it: the protocol's block for no text,
    ``"<s>"``, as a null or empty context gets, not ``"<s> <CON>   </CON>"`` around nothing."""
    pairs = [("What is the answer?", "42")]
    shot = encode_shot(tiny_tokenizer, context, pairs)
    assert shot == encode_shot(tiny_tokenizer, "", pairs)
    assert _decode(tiny_tokenizer, shot["input_ids"]) == format_shot("", pairs)
    assert _decode(tiny_tokenizer, shot["input_ids"]).startswith("<s><QUE>")
