"""The recipes' streams in process: what each yields, and the collection's share of the budget."""

from __future__ import annotations

import itertools
import json

import pytest

from hf_ipt.cli import UsageError
from hf_ipt.templify import templify
from hf_ipt.training.config import (
    ContinualPTConfig,
    PretrainConfig,
    SynthesizerConfig,
    TrainingConfig,
)
from hf_ipt.training.streams import (
    collection_share,
    continual_pt_dataset,
    pretrain_dataset,
    synthesizer_dataset,
)

TEXT = "The company reported a profit of $1.13bn in the third quarter."


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "raw.jsonl").write_text(
        "".join(json.dumps({"text": f"raw {i} {TEXT}"}) + "\n" for i in range(40))
    )
    (tmp_path / "aug.jsonl").write_text(
        "".join(json.dumps({"text": f"aug {i} {TEXT}"}) + "\n" for i in range(40))
    )
    for name, size in (("squad", 6), ("race", 2)):
        shard = tmp_path / "collection" / name / "shard"
        shard.mkdir(parents=True)
        rows = [
            {"context": f"{name} {i} {TEXT}", "QA_list": [{"Q": "What was reported?", "A": "A profit."}]}
            for i in range(size)
        ]
        (shard / "00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def _args(tmp_path, max_steps=50):
    return TrainingConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        max_length=64,
        use_cpu=True,
    )


def test_pretrain_stream_mixes_documents_and_collection(corpus, tiny_tokenizer):
    config = PretrainConfig(
        tokenizer_name_or_path="t",
        raw_dataset=str(corpus / "raw.jsonl"),
        augmented_dataset=str(corpus / "aug.jsonl"),
        collection=str(corpus / "collection"),
        collection_repeats=2,
        shuffle_buffer_size=0,
    )
    args = _args(corpus)
    share = collection_share(config, tiny_tokenizer, args)
    dataset, mix = pretrain_dataset(config, tiny_tokenizer, args)
    # repeats x the templified collection's tokens (BOS + text + EOS each) / the token budget
    collection_tokens = sum(
        len(tiny_tokenizer(text).input_ids) + 1
        for name, size in (("race", 2), ("squad", 6))
        for i in range(size)
        for text in templify([(f"{name} {i} {TEXT}", [("What was reported?", "A profit.")])],
                             seed=f"{name} {i} {TEXT}")[:1]
    )
    assert args.tokens_per_step == 2 * 64
    assert share == pytest.approx(2 * collection_tokens / (50 * 2 * 64), rel=1e-9)
    assert mix[-1]["token_share"] == share and "seen about 2 times" in mix[-1]["note"]
    blocks = list(itertools.islice(dataset, 60))
    assert all(len(b["input_ids"]) == 64 for b in blocks)  # an endless stream: only full blocks
    text = tiny_tokenizer.decode([t for b in blocks for t in b["input_ids"]])
    raw, aug = text.count("raw "), text.count("aug ")
    assert raw == pytest.approx(4 * aug, abs=2)  # 1/5 of the corpus documents are augmented
    assert "What was reported?" in text  # the collection, templified
    # Over the whole budget (50 steps x 2 blocks), the collection's documents hold its token share of the stream
    ids = [t for b in itertools.islice(pretrain_dataset(config, tiny_tokenizer, args)[0], 100) for t in b["input_ids"]]
    docs, start = [], 0
    for end, token in enumerate(ids):
        if token == tiny_tokenizer.eos_token_id:
            docs.append(ids[start:end + 1])
            start = end + 1
    collection = sum(len(d) for d in docs if any(name in tiny_tokenizer.decode(d) for name in ("squad ", "race ")))
    assert collection / len(ids) == pytest.approx(share, abs=0.01)
    with pytest.raises(UsageError, match="exceeds the token budget"):
        collection_share(config, tiny_tokenizer, _args(corpus, max_steps=1))


def test_the_collection_is_counted_once_and_again_when_it_changes(corpus, tiny_tokenizer, tmp_path, monkeypatch):
    from hf_ipt.training.streams import collection_tokens

    monkeypatch.setenv("HF_IPT_CACHE", str(tmp_path / "cache"))
    config = PretrainConfig(tokenizer_name_or_path="t", raw_dataset=str(corpus / "raw.jsonl"),
                            collection=str(corpus / "collection"))
    tokens = collection_tokens(config, tiny_tokenizer)
    assert len(list((tmp_path / "cache" / "collection_tokens").glob("*.json"))) == 1

    class Refusing:  # the same tokenizer, which must not be asked to tokenize again
        backend_tokenizer = tiny_tokenizer.backend_tokenizer

        def __call__(self, *args, **kwargs):
            raise AssertionError("the cached count was not used")

    assert collection_tokens(config, Refusing()) == tokens
    shard = corpus / "collection" / "race" / "shard" / "00000.jsonl"
    row = {"context": f"race 9 {TEXT}", "QA_list": [{"Q": "What was reported?", "A": "A profit."}]}
    shard.write_text(shard.read_text() + json.dumps(row) + "\n")
    assert collection_tokens(config, tiny_tokenizer) > tokens  # another collection: counted again


def test_collection_sources_whose_columns_differ_are_pretrained_on_together(corpus, tiny_tokenizer, tmp_path,
                                                                           monkeypatch):
    """34 datasets in one stream: one with an id column, a task type in its pairs, a number for an answer."""
    monkeypatch.setenv("HF_IPT_CACHE", str(tmp_path / "cache"))
    shard = corpus / "collection" / "convfinqa" / "shard"
    shard.mkdir(parents=True)
    rows = [{"id": i, "context": f"convfinqa {i} {TEXT}", "QA_list": [{"Q": "How much?", "A": 1.13, "type": "num"}]}
            for i in range(4)]
    (shard / "00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = PretrainConfig(tokenizer_name_or_path="t", raw_dataset=str(corpus / "raw.jsonl"),
                            collection=str(corpus / "collection"), collection_repeats=2, shuffle_buffer_size=0)
    dataset, _ = pretrain_dataset(config, tiny_tokenizer, _args(corpus))  # counts the collection's tokens
    text = tiny_tokenizer.decode([t for b in itertools.islice(dataset, 120) for t in b["input_ids"]])
    assert all(f"{name} " in text for name in ("convfinqa", "race", "squad")) and "1.13" in text


def test_augmented_fraction_counts_corpus_texts_not_rows(corpus, tiny_tokenizer):
    """A model synthesizer's row renders a chain of 2 texts: 1/5 of TEXTS, so 1 row per 8 raw."""
    rows = [{"text": f"aug {i} {TEXT}", "doc_ids": [f"d{2 * i}", f"d{2 * i + 1}"]} for i in range(40)]
    (corpus / "aug2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = PretrainConfig(
        tokenizer_name_or_path="t",
        raw_dataset=str(corpus / "raw.jsonl"),
        augmented_dataset=str(corpus / "aug2.jsonl"),
        shuffle_buffer_size=0,
    )
    dataset, _ = pretrain_dataset(config, tiny_tokenizer, _args(corpus))
    blocks = list(itertools.islice(dataset, 60))
    text = tiny_tokenizer.decode([t for b in blocks for t in b["input_ids"]])
    raw, aug = text.count("raw "), text.count("aug ")
    assert raw / aug == pytest.approx(8, rel=0.1)  # 2 texts per aug row = raw / 4 (rows: 4)


def test_synthesizer_stream_keeps_sources_apart(corpus, tiny_tokenizer):
    config = SynthesizerConfig(collection=str(corpus / "collection"), shuffle_buffer_size=0)
    dataset, mix = synthesizer_dataset(config, tiny_tokenizer, _args(corpus))
    assert {row["source"].rsplit("/", 1)[-1] for row in mix} == {"squad", "race"}
    for sequence in itertools.islice(dataset, 12):
        text = tiny_tokenizer.decode(sequence["input_ids"])
        assert ("squad" in text) != ("race" in text)  # one source per sequence
        assert len(sequence["input_ids"]) <= 64 and sequence["labels"][0] == -100


def test_continual_pt_stream_mixes_general_instructions_by_tokens(corpus, tiny_tokenizer):
    """`general_fraction=0.25`: a quarter of the TOKENS (not documents) are general instructions."""
    (corpus / "domain.jsonl").write_text(
        "".join(json.dumps({"text": f"dom {i} {TEXT}"}) + "\n" for i in range(40))
    )
    general = [{"question": f"What? {i}", "response": f"{TEXT} {TEXT} {TEXT}"} for i in range(40)]
    (corpus / "general.jsonl").write_text("".join(json.dumps(r) + "\n" for r in general))
    config = ContinualPTConfig(
        domain_dataset=str(corpus / "domain.jsonl"),
        general_dataset=str(corpus / "general.jsonl"),
        general_fraction=0.25,
        shuffle_buffer_size=0,
    )
    dataset, mix = continual_pt_dataset(config, tiny_tokenizer, _args(corpus))
    assert [row["token_share"] for row in mix] == [0.75, 0.25]
    blocks = list(itertools.islice(dataset, 120))
    assert all(len(b["input_ids"]) == 64 for b in blocks)
    # Cut the stream back into documents at EOS (the last one may be cut: left out).
    eos = tiny_tokenizer.eos_token_id
    tokens = {"dom": 0, "What?": 0}
    lengths = {"dom": set(), "What?": set()}
    document: list[int] = []
    for token in (t for b in blocks for t in b["input_ids"]):
        document.append(token)
        if token == eos:
            source = tiny_tokenizer.decode(document, skip_special_tokens=True).split()[0]
            tokens[source] += len(document)
            lengths[source].add(len(document))
            document = []
    # General documents are much longer: a mix by documents would give them ~45%, not 25%.
    assert min(lengths["What?"]) > 2 * max(lengths["dom"])
    assert tokens["What?"] / sum(tokens.values()) == pytest.approx(0.25, abs=0.02)


def test_a_collection_row_whose_pairs_templify_drops_adds_nothing(tmp_path):
    """Its bare context is no instruction data: only rows that keep a pair reach the stream."""
    from types import SimpleNamespace

    from hf_ipt.training.streams import _collection_texts

    shard = tmp_path / "col" / "squad" / "shard"
    shard.mkdir(parents=True)
    rows = [
        {"context": "Kept context.", "QA_list": [{"Q": "What rose?", "A": "Sales."}]},
        {"context": "Dropped context.", "QA_list": [{"Q": "Why?\nLet's think step by step.", "A": "Because."}]},
        {"context": "", "QA_list": []},
    ]
    (shard / "00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = SimpleNamespace(collection=str(tmp_path / "col"), context_column="context", pairs_column="QA_list")
    texts = list(_collection_texts(config))
    assert len(texts) == 1 and "Kept context." in texts[0] and "Sales." in texts[0]


def test_general_rows_with_a_null_question_or_response_are_skipped(corpus, tiny_tokenizer):
    """As domain rows with a null text are; `format_general` used to fail on them mid-training."""
    (corpus / "domain.jsonl").write_text("".join(json.dumps({"text": f"dom {i} {TEXT}"}) + "\n" for i in range(8)))
    general = [{"question": f"What? {i}", "response": f"Reply {i}."} for i in range(8)]
    general[1]["response"] = general[2]["question"] = None
    (corpus / "general.jsonl").write_text("".join(json.dumps(r) + "\n" for r in general))
    config = ContinualPTConfig(
        domain_dataset=str(corpus / "domain.jsonl"), general_dataset=str(corpus / "general.jsonl"), shuffle_buffer_size=0
    )
    dataset, _ = continual_pt_dataset(config, tiny_tokenizer, _args(corpus))
    text = tiny_tokenizer.decode([t for b in itertools.islice(dataset, 12) for t in b["input_ids"]])
    assert "What? 0 Reply 0." in text and "What? 3 Reply 3." in text
    assert "What? 1" not in text and "Reply 2." not in text
    # A row without the column (a later file of another layout) is skipped as a null one is.
    from hf_ipt.training.streams import _column, _general_text

    assert _general_text({"question": "What?"}, "question", "response") is None
    assert _column("text")({"body": "no text column"}) is None


@pytest.mark.parametrize("bad", ["domain", "general", "raw", "collection", "shots"])
def test_a_source_that_gives_no_document_raises_instead_of_hanging(corpus, tiny_tokenizer, bad):
    """Every text null, blank or not a string (every pair of a collection row null): the source
    used to restart forever with nothing to train, printing nothing."""
    def write(name: str, rows: list[dict]) -> str:
        (corpus / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(corpus / name)

    good = write("good.jsonl", [{"text": f"dom {i} {TEXT}"} for i in range(8)])
    texts = write("texts.jsonl", [{"text": v} for v in (None, "", "  ", 7)])
    general = write("general.jsonl", [{"question": "What?", "response": None}, {"question": " ", "response": ""}])
    shard = corpus / "nulls" / "squad" / "shard"
    shard.mkdir(parents=True)
    (shard / "0.jsonl").write_text(json.dumps({"context": TEXT, "QA_list": [{"Q": "Why?", "A": None}]}) + "\n")
    if bad == "shots":  # synthesizer tuning on the same collection
        dataset, _ = synthesizer_dataset(SynthesizerConfig(collection=str(corpus / "nulls"), shuffle_buffer_size=0),
                                         tiny_tokenizer, _args(corpus))
        source = "squad"
    elif bad in ("domain", "general"):
        config = ContinualPTConfig(domain_dataset=texts if bad == "domain" else good,
                                   general_dataset=general if bad == "general" else None, shuffle_buffer_size=0)
        dataset, _ = continual_pt_dataset(config, tiny_tokenizer, _args(corpus))
        source = texts if bad == "domain" else general
    else:
        config = PretrainConfig(tokenizer_name_or_path="t", raw_dataset=texts if bad == "raw" else good,
                                collection=str(corpus / "nulls") if bad == "collection" else None,
                                collection_repeats=1, shuffle_buffer_size=0)
        if bad == "collection":  # its tokens are counted first: none
            with pytest.raises(UsageError, match="the collection .*nulls' gives no training text"):
                pretrain_dataset(config, tiny_tokenizer, _args(corpus))
            return
        dataset, _ = pretrain_dataset(config, tiny_tokenizer, _args(corpus))
        source = texts
    with pytest.raises(UsageError, match=f"source '{source}.*gave no training document in a whole pass"):
        next(iter(dataset))


def test_a_collection_pair_with_a_null_part_is_not_trained_as_none(corpus, tiny_tokenizer):
    shard = corpus / "nullpair" / "squad" / "shard"
    shard.mkdir(parents=True)
    rows = [{"context": f"{TEXT} {i}", "QA_list": [{"Q": "What is reported?", "A": None},
                                                    {"Q": "Who reported?", "A": "The company."}]} for i in range(4)]
    (shard / "0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = SynthesizerConfig(collection=str(corpus / "nullpair"), shuffle_buffer_size=0)
    dataset, _ = synthesizer_dataset(config, tiny_tokenizer, _args(corpus))
    text = tiny_tokenizer.decode(next(iter(dataset))["input_ids"])
    assert "Who reported?" in text and "What is reported?" not in text and "None" not in text


def test_a_collection_pair_of_markers_only_is_not_trained_as_an_empty_answer(corpus, tiny_tokenizer):
    """An answer ``"</s>"`` (or the tokenizer's ``<unk>``) is non-blank text, so it passed the row's check;
    blanked in the shot, it was trained as an empty answer. A row left with no pair gives no shot, and
    a source of only such rows raises after a whole pass, as one of null pairs does."""
    shard = corpus / "markers" / "squad" / "shard"
    shard.mkdir(parents=True)
    rows = [{"context": f"{TEXT} {i}", "QA_list": [{"Q": "Which tag closes it?", "A": "</s>"},
                                                    {"Q": "Who reported?", "A": "The company."}]} for i in range(2)]
    rows += [{"context": "   ", "QA_list": [{"Q": "<unk>", "A": "Nothing."}, {"Q": "What is 6 x 7?", "A": "42"}]},
             {"context": TEXT, "QA_list": [{"Q": "Why?", "A": " <s> "}]}]  # no pair left: no shot
    (shard / "0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = SynthesizerConfig(collection=str(corpus / "markers"), shuffle_buffer_size=0)
    args = _args(corpus)
    args.max_length = 4096
    dataset, _ = synthesizer_dataset(config, tiny_tokenizer, args)
    text = tiny_tokenizer.decode(next(iter(dataset))["input_ids"], clean_up_tokenization_spaces=False)
    expected = "".join([
        *(f"<s> <CON> {TEXT} {i} </CON>\n\n<QUE> Who reported? <ANS> The company. </END></s>" for i in range(2)),
        "<s><QUE> What is 6 x 7? <ANS> 42 </END></s>",  # a blank context: the empty context block
    ])
    assert text.startswith(expected) and "Which tag" not in text and "Nothing." not in text and "Why?" not in text
    (shard / "0.jsonl").write_text("".join(json.dumps({"context": TEXT, "QA_list": [{"Q": "Why?", "A": a}]}) + "\n"
                                           for a in ("</s>", "<s>", "<pad>")))
    dataset, _ = synthesizer_dataset(config, tiny_tokenizer, args)
    with pytest.raises(UsageError, match="source 'squad'.*gave no training document in a whole pass.*special tokens"):
        next(iter(dataset))


def test_each_collection_row_is_templified_once(corpus, tiny_tokenizer, monkeypatch):
    """The check that a source gives some document and the tokenizing share one text per row:
    templify (the collection's text) used to run twice on every row the stream read."""
    import collections

    import hf_ipt.templify
    from hf_ipt.training import streams

    read, calls = collections.Counter(), collections.Counter()
    endless_rows, templify_chain = streams.endless_rows, hf_ipt.templify.templify_chain

    def counted_rows(*args, **kwargs):  # every row the stream reads, by source
        for item in endless_rows(*args, **kwargs):
            read[kwargs["name"]] += 1
            yield item

    def counted_templify(shots, **kwargs):
        calls[shots[0][0]] += 1
        return templify_chain(shots, **kwargs)

    monkeypatch.setattr(streams, "endless_rows", counted_rows)
    monkeypatch.setattr(hf_ipt.templify, "templify_chain", counted_templify)
    config = PretrainConfig(tokenizer_name_or_path="t", raw_dataset=str(corpus / "raw.jsonl"),
                            collection=str(corpus / "collection"), collection_token_share=0.3, shuffle_buffer_size=0)
    dataset, _ = pretrain_dataset(config, tiny_tokenizer, _args(corpus))
    text = tiny_tokenizer.decode([t for b in itertools.islice(dataset, 20) for t in b["input_ids"]])
    assert "What was reported?" in text
    # 8 rows, read in batches over many passes: each read of a row templifies it once
    assert read[config.collection] > 8 and set(calls) == {f"{name} {i} {TEXT}" for name, size in
                                                         (("squad", 6), ("race", 2)) for i in range(size)}
    assert sum(calls.values()) == read[config.collection]


def test_rows_behind_a_saved_position_are_dropped_without_computing_their_text(corpus):
    """On resume, the rows already trained on are read and dropped: their text (templify, for a
    collection) is not computed, and the rows after them come with theirs."""
    from types import SimpleNamespace

    from hf_ipt.training import streams
    from hf_ipt.training.position import Position

    computed = []

    def text_of(row):
        computed.append(row["text"])
        return row["text"]

    config = SimpleNamespace(dataset_split="train", shuffle_buffer_size=0)
    source = str(corpus / "raw.jsonl")
    whole = list(itertools.islice(streams._numbered(source, config, 0, 1, 0, "raw", Position(), text_of), 6))
    computed.clear()
    resumed = list(itertools.islice(
        streams._numbered(source, config, 0, 1, 0, "raw", Position({"rows:raw": 4}), text_of), 2))
    assert resumed == whole[4:6]  # the same rows, texts and snapshots as without the resume
    assert computed == [text for (_, text), _ in whole[4:6]]  # no text of the 4 rows behind


def test_data_seed_sets_the_streams_shuffling_as_it_does_the_trainers_sampling(corpus, tiny_tokenizer):
    """`--data_seed` was accepted and ignored: the streams shuffled by `seed` whatever it said."""
    config = ContinualPTConfig(domain_dataset=str(corpus / "raw.jsonl"), shuffle_buffer_size=40)

    def first_blocks(**seeds) -> list[list[int]]:
        args = TrainingConfig(output_dir=str(corpus / "out"), max_steps=5, max_length=64, use_cpu=True, **seeds)
        dataset, _ = continual_pt_dataset(config, tiny_tokenizer, args)
        return [b["input_ids"] for b in itertools.islice(dataset, 4)]

    assert first_blocks(seed=1, data_seed=7) == first_blocks(seed=7)  # the data order follows data_seed ...
    assert first_blocks(seed=1, data_seed=7) != first_blocks(seed=1)  # ... not seed, when set


def test_raw_text_in_another_column_than_the_augmented_text(corpus, tiny_tokenizer):
    """RefinedWeb keeps its text in `content`, the builder writes the augmented 1/5 to `text`: one
    `text_column` for both made the paper's pre-training setup need its raw data rewritten."""
    from hf_ipt.training.checks import check_data

    (corpus / "web.jsonl").write_text(
        "".join(json.dumps({"content": f"raw {i} {TEXT}", "url": "u"}) + "\n" for i in range(40)))
    config = PretrainConfig(tokenizer_name_or_path="t", raw_dataset=str(corpus / "web.jsonl"),
                            augmented_dataset=str(corpus / "aug.jsonl"), raw_text_column="content",
                            shuffle_buffer_size=0)
    check_data(config)  # each source's column is checked as its own
    dataset, _ = pretrain_dataset(config, tiny_tokenizer, _args(corpus))
    text = tiny_tokenizer.decode([t for b in itertools.islice(dataset, 40) for t in b["input_ids"]])
    assert text.count("raw ") == pytest.approx(4 * text.count("aug "), abs=2)
    assert PretrainConfig(tokenizer_name_or_path="t", raw_dataset="r.jsonl").raw_text_column == "text"
    with pytest.raises(UsageError, match="--raw_text_column"):
        check_data(PretrainConfig(tokenizer_name_or_path="t", raw_dataset=str(corpus / "web.jsonl"),
                                  augmented_dataset=str(corpus / "aug.jsonl")))


def test_collection_rows_without_context_do_not_all_share_one_layout():
    """Seeded by the context alone, every row without one had seed "" and so one and the same layout."""
    from hf_ipt.training.streams import _collection_text

    config = PretrainConfig(tokenizer_name_or_path="t", raw_dataset="r.jsonl")
    rows = [{"context": "", "QA_list": [{"Q": f"What is {i} plus {i}?", "A": str(2 * i)}]} for i in range(40)]
    texts = [_collection_text(row, config) for row in rows]
    assert all(f"What is {i} plus {i}?" in t for i, t in enumerate(texts))
    layouts = {t.replace(f"What is {i} plus {i}?", "Q").replace(str(2 * i), "A") for i, t in enumerate(texts)}
    assert len(layouts) > 3
    assert _collection_text(rows[7], config) == texts[7]  # still the same text for the same row


def test_the_pretrain_collection_is_split_between_ranks_by_rows(corpus, tiny_tokenizer, monkeypatch):
    """Its sources' files differ in size: whole files per rank would repeat some far more than others."""
    from hf_ipt.training import streams

    split = {}
    endless_rows = streams.endless_rows

    def recorded(*args, **kwargs):
        split[kwargs["name"]] = kwargs["by_rows"]
        return endless_rows(*args, **kwargs)

    monkeypatch.setattr(streams, "endless_rows", recorded)
    config = PretrainConfig(tokenizer_name_or_path="t", raw_dataset=str(corpus / "raw.jsonl"),
                            collection=str(corpus / "collection"), collection_token_share=0.3, shuffle_buffer_size=0)
    dataset, _ = pretrain_dataset(config, tiny_tokenizer, _args(corpus))
    next(iter(dataset))
    assert split == {str(corpus / "raw.jsonl"): False, str(corpus / "collection"): True}


def test_a_compressed_collection_source_is_weighted_by_its_text_not_its_bytes_on_disk(tmp_path, tiny_tokenizer):
    """Sources are mixed by size as a proxy for their tokens: weighed on disk, a source shipped as .jsonl.gz
    (about 4 times smaller than its text) was drawn about 4 times less often than the same rows uncompressed,
    so one pass over the mix no longer saw each source about once."""
    import gzip
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(50)]
    rows = "".join(
        json.dumps({"context": " ".join(rng.choice(words) for _ in range(60)), "QA_list": [{"Q": f"Q{i}?", "A": "A."}]})
        + "\n" for i in range(40)
    )
    for name in ("plain", "packed"):
        (tmp_path / name / "shard").mkdir(parents=True)
    (tmp_path / "plain" / "shard" / "00000.jsonl").write_text(rows)
    with gzip.open(tmp_path / "packed" / "shard" / "00000.jsonl.gz", "wt") as f:
        f.write(rows)
    ratio = len(rows.encode()) / (tmp_path / "packed" / "shard" / "00000.jsonl.gz").stat().st_size
    assert 3 < ratio < 5  # as real text compresses
    config = SynthesizerConfig(collection=str(tmp_path), shuffle_buffer_size=0)
    _, mix = synthesizer_dataset(config, tiny_tokenizer, _args(tmp_path))
    shares = {row["source"].rsplit("/", 1)[1]: row["token_share"] for row in mix}
    assert shares["packed"] == pytest.approx(0.5, abs=0.15), shares
