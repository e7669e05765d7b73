"""Stream positions: a stream started at a saved position goes on exactly as the uninterrupted one,
and it gets there by reading the rows behind it, not by tokenizing them."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import pytest
from datasets.distributed import split_dataset_by_node

from hf_ipt.training.config import ContinualPTConfig, PretrainConfig, SynthesizerConfig
from hf_ipt.training.mixing import mix_by_tokens
from hf_ipt.training.packing import pack_sequences
from hf_ipt.training.position import (
    RESUME_AT,
    STREAM_POSITION,
    Position,
    StreamStart,
    numbered_rows,
    save_position,
)
from hf_ipt.training.streams import continual_pt_dataset, pretrain_dataset, synthesizer_dataset

WORDS = ["the", "company", "reported", "a", "profit", "in", "the", "third", "quarter", "up", "from", "last", "year", "as", "sales", "grew"]


def _text(i: int) -> str:
    # Lengths from 3 to 40 words: documents end inside blocks and run across them.
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(3 + (i * 7) % 38)) + f" {i}"


@pytest.fixture
def data(tmp_path):
    def jsonl(name, rows):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    # Small sources: every one restarts (a new, reshuffled epoch) several times within the test.
    jsonl("domain.jsonl", [{"text": _text(i)} for i in range(30)])
    jsonl("general.jsonl", [{"question": f"Q{i}? {_text(i + 5)}", "response": _text(i + 9)} for i in range(14)])
    jsonl("aug.jsonl", [{"text": _text(i + 3), "doc_ids": [str(i), str(i + 1)][: 1 + i % 2]} for i in range(18)])
    for name, size in (("squad", 9), ("race", 5)):
        shard = tmp_path / "collection" / name / "shard"
        shard.mkdir(parents=True)
        rows = [{"context": f"{name} {_text(i)}", "QA_list": [{"Q": f"What in {i}?", "A": _text(i + 2)}] * (1 + i % 3)}
                for i in range(size)]
        rows[2]["QA_list"] = []  # a row without pairs: read, gives nothing
        (shard / "00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def _args(world_size: int = 2, max_length: int = 64):
    return SimpleNamespace(max_length=max_length, seed=3, world_size=world_size, max_steps=100, tokens_per_step=128)


def _dataset(recipe: str, data, tokenizer):
    common = {"shuffle_buffer_size": 8}
    if recipe == "continual_pt":
        config = ContinualPTConfig(domain_dataset=str(data / "domain.jsonl"),
                                   general_dataset=str(data / "general.jsonl"), **common)
        return continual_pt_dataset(config, tokenizer, _args())[0]
    if recipe == "pretrain":
        config = PretrainConfig(raw_dataset=str(data / "domain.jsonl"), augmented_dataset=str(data / "aug.jsonl"),
                                collection=str(data / "collection"), collection_token_share=0.3,
                                tokenizer_name_or_path="tiny", **common)
        return pretrain_dataset(config, tokenizer, _args())[0]
    config = SynthesizerConfig(collection=str(data / "collection"), **common)
    return synthesizer_dataset(config, tokenizer, _args(max_length=160))[0]


def _take(dataset, count: int, rank: int = 1, world_size: int = 2) -> list[dict]:
    return list(itertools.islice(split_dataset_by_node(dataset, rank=rank, world_size=world_size), count))


@pytest.mark.parametrize("recipe", ["continual_pt", "pretrain", "train_synthesizer"])
def test_a_stream_started_at_a_saved_position_goes_on_exactly(recipe, data, tiny_tokenizer):
    straight = _take(_dataset(recipe, data, tiny_tokenizer), 60)
    positions = [Position.from_json(example[STREAM_POSITION]) for example in straight]
    if recipe != "train_synthesizer":  # packed: some blocks end inside a document
        assert any(p.skip for p in positions) and any(not p.skip for p in positions)
    sources = {key for p in positions for key in p.after if not key.startswith("split:")}
    assert len(sources) == {"continual_pt": 3, "pretrain": 5, "train_synthesizer": 3}[recipe]  # rows: and mix: keys
    assert {key.removeprefix("split:") for p in positions for key in p.after if key.startswith("split:")} == {
        key.removeprefix("rows:") for key in sources if key.startswith("rows:")}  # how each source is read
    for k in (0, 9, 26, 47):
        dataset = _dataset(recipe, data, tiny_tokenizer)
        dataset.stream_start.positions = {1: positions[k]}
        assert _take(dataset, 12) == straight[k + 1 : k + 13], f"resumed after example {k}"


def test_each_rank_starts_at_its_own_position(data, tiny_tokenizer):
    ranks = [_take(_dataset("continual_pt", data, tiny_tokenizer), 20, rank=r) for r in (0, 1)]
    dataset = _dataset("continual_pt", data, tiny_tokenizer)
    dataset.stream_start.positions = {r: Position.from_json(ranks[r][k][STREAM_POSITION]) for r, k in ((0, 4), (1, 11))}
    assert _take(dataset, 5, rank=0) == ranks[0][5:10]
    assert _take(dataset, 5, rank=1) == ranks[1][12:17]


class CountingTokenizer:
    """The tokenizer, counting the texts it encodes."""

    def __init__(self, tokenizer):
        self.tokenizer, self.texts = tokenizer, 0

    def __call__(self, texts, **kwargs):
        self.texts += len(texts) if isinstance(texts, list) else 1
        return self.tokenizer(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_a_resume_reads_the_rows_behind_it_without_tokenizing_them(tmp_path, tiny_tokenizer):
    (tmp_path / "big.jsonl").write_text("".join(json.dumps({"text": _text(i)}) + "\n" for i in range(3000)))
    config = ContinualPTConfig(domain_dataset=str(tmp_path / "big.jsonl"), shuffle_buffer_size=0)
    straight = CountingTokenizer(tiny_tokenizer)
    blocks = _take(continual_pt_dataset(config, straight, _args(world_size=1))[0], 700, rank=0, world_size=1)
    position = Position.from_json(blocks[-2][STREAM_POSITION])
    behind = position.rows("domain")
    assert behind > 1000 and straight.texts >= behind

    resumed = CountingTokenizer(tiny_tokenizer)
    dataset = continual_pt_dataset(config, resumed, _args(world_size=1))[0]
    dataset.stream_start.positions = {0: position}
    assert _take(dataset, 1, rank=0, world_size=1) == blocks[-1:]
    assert resumed.texts <= 256 + 1  # one tokenizer batch (+ the BOS probe), not the rows behind


def test_packing_records_where_each_block_ends():
    docs = [{"input_ids": [n] * size, RESUME_AT: {"rows:s": n}} for n, size in enumerate([3, 6, 1, 2], 1)]
    blocks = list(pack_sequences(docs, 4))
    assert [Position.from_json(b[STREAM_POSITION]) for b in blocks[:3]] == [
        Position({"rows:s": 1}, 1),  # block 1: doc 1 and one token of doc 2
        Position({"rows:s": 1}, 5),  # block 2: four more tokens of doc 2
        Position({"rows:s": 4}, 0),  # block 3: the end of doc 2, docs 3 and 4
    ]
    resumed = list(pack_sequences(docs[1:], 4, start=Position({"rows:s": 1}, 1)))
    assert resumed == blocks[1:]


def test_a_resumed_mix_keeps_its_counts():
    a, b = [[1] * n for n in (3, 5, 2, 4, 4, 1)], [[2] * n for n in (2, 2, 6, 1, 3, 3)]
    emitted: list[float] = []
    straight = []
    for doc in mix_by_tokens([a, b], [1, 1], emitted=(counts := [0, 0])):
        straight.append(doc)
        emitted.append(list(counts))
    # After the 4th document: source a gave its first 2, b its first 2.
    assert emitted[3] == [8, 4]
    rest = list(mix_by_tokens([a[2:], b[2:]], [1, 1], emitted=[8, 4]))
    assert rest == straight[4 : 4 + len(rest)]
    with pytest.raises(ValueError, match="one count per source"):
        next(mix_by_tokens([a, b], [1, 1], emitted=[0]))


def test_numbered_rows_skip_what_is_behind_and_refuse_a_short_source():
    rows = [{"i": i} for i in range(5)]
    assert list(numbered_rows(rows, "s", Position({"rows:s": 3}))) == [({"i": 3}, {"rows:s": 4}), ({"i": 4}, {"rows:s": 5})]
    with pytest.raises(ValueError, match="ended before the 7 rows"):
        list(numbered_rows(rows, "s", Position({"rows:s": 7})))


def test_stream_start_loads_every_rank_or_none(tmp_path):
    start = StreamStart()
    save_position(tmp_path, 0, Position({"rows:s": 2}, 1).to_json())
    assert start.load(tmp_path, world_size=2) is False and start(0) == Position()  # rank 1's is missing
    save_position(tmp_path, 1, Position({"rows:s": 5}).to_json())
    assert start.load(tmp_path, world_size=2) is True
    assert (start(0), start(1)) == (Position({"rows:s": 2}, 1), Position({"rows:s": 5}))
    with pytest.raises(ValueError, match="has 2 sources, the stream has 3"):
        Position({"mix:m": [1, 2]}).emitted("m", 3)


def test_examples_without_positions_are_collated_as_before():
    from hf_ipt.training.packing import collate_packed

    blocks = list(pack_sequences([list(range(8))], 4))
    assert STREAM_POSITION not in collate_packed(blocks)
    docs = [{"input_ids": list(range(8)), RESUME_AT: {"rows:s": 1}}]
    batch = collate_packed(list(pack_sequences(docs, 4)))
    assert Position.from_json(batch[STREAM_POSITION]) == Position({"rows:s": 1}, 0)

