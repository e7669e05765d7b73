"""Streaming input: file types, endless epochs, rank shards, BOS/EOS, the per-rank dataset."""

from __future__ import annotations

import functools
import itertools
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_ipt.cli import UsageError
from hf_ipt.training.data import endless_rows, load_rows, sharded_stream, tokenize_texts


def _write_sources(tmp_path):
    (tmp_path / "txt").mkdir()
    for i in range(3):
        (tmp_path / "txt" / f"{i}.txt").write_text(f"document {i}\nwith two lines")
    (tmp_path / "rows.jsonl").write_text(
        "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(5))
    )
    pq.write_table(pa.table({"text": [f"pq {i}" for i in range(4)]}), tmp_path / "rows.parquet")


def test_load_rows_reads_each_file_type(tmp_path):
    _write_sources(tmp_path)
    assert sorted(r["text"] for r in load_rows(str(tmp_path / "txt" / "*.txt"))) == [
        f"document {i}\nwith two lines"
        for i in range(3)  # a .txt file is ONE document
    ]
    assert [r["text"] for r in load_rows(str(tmp_path / "rows.jsonl"))] == [
        f"row {i}" for i in range(5)
    ]
    assert [r["text"] for r in load_rows([str(tmp_path / "rows.parquet")])] == [
        f"pq {i}" for i in range(4)
    ]
    with pytest.raises(ValueError, match="mixes file types"):
        load_rows([str(tmp_path / "rows.jsonl"), str(tmp_path / "rows.parquet")])
    bracketed = tmp_path / "rows[1].jsonl"  # glob characters in a file name: the file itself
    bracketed.write_bytes((tmp_path / "rows.jsonl").read_bytes())
    assert [r["text"] for r in load_rows(str(bracketed))] == [f"row {i}" for i in range(5)]


def test_endless_rows_restart_reshuffled_and_split_ranks(tmp_path):
    _write_sources(tmp_path)
    rows = load_rows(str(tmp_path / "rows.jsonl"))
    kwargs = {"seed": 0, "shuffle_buffer_size": 10, "name": "rows"}
    first = [
        r["text"] for r in itertools.islice(endless_rows(rows, rank=0, world_size=1, **kwargs), 15)
    ]
    assert sorted(first[:5]) == sorted(first[5:10]) == [f"row {i}" for i in range(5)]
    assert first[:5] != first[5:10] or first[5:10] != first[10:15]  # each epoch reshuffled
    rank0 = [
        r["text"] for r in itertools.islice(endless_rows(rows, rank=0, world_size=2, **kwargs), 3)
    ]
    rank1 = [
        r["text"] for r in itertools.islice(endless_rows(rows, rank=1, world_size=2, **kwargs), 2)
    ]
    assert sorted(rank0 + rank1) == [f"row {i}" for i in range(5)]  # disjoint, complete
    with pytest.raises(UsageError, match="no rows for rank 5 of 6.*launch fewer processes"):
        next(endless_rows(rows, rank=5, world_size=6, **kwargs))


def test_training_and_evaluation_agree_on_bos(smollm2_dir, tiny_tokenizer):
    """SmolLM2-Instruct declares <|im_start|> as BOS but never adds it: no chat token in training."""
    from transformers import AutoTokenizer

    from hf_ipt.evaluation.scoring import default_add_bos

    smol = AutoTokenizer.from_pretrained(smollm2_dir)
    (ids,) = tokenize_texts(["Shares rose."], smol)
    assert smol.bos_token_id not in ids and ids[-1] == smol.eos_token_id
    assert default_add_bos(smol) is False
    (ids,) = tokenize_texts(["Shares rose."], tiny_tokenizer)  # adds BOS by itself: both add it
    assert ids[0] == tiny_tokenizer.bos_token_id and default_add_bos(tiny_tokenizer) is True


def test_tokenize_texts_adds_bos_and_eos(tiny_tokenizer):
    (ids,) = tokenize_texts(["The company reported a profit."], tiny_tokenizer)
    assert ids[0] == tiny_tokenizer.bos_token_id and ids[-1] == tiny_tokenizer.eos_token_id
    assert (
        ids[1:-1]
        == tiny_tokenizer("The company reported a profit.", add_special_tokens=False)["input_ids"]
    )
    assert (
        len(list(tokenize_texts((f"text {i}" for i in range(7)), tiny_tokenizer, batch_size=3)))
        == 7
    )


def test_literal_special_tokens_in_a_text_are_text_not_document_boundaries(tiny_tokenizer):
    """A text quoting ``<s>`` or ``</s>`` (e.g. a page about tokenizers) stays one document."""
    (ids,) = tokenize_texts(["price <s> old </s> new"], tiny_tokenizer)
    special = {tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id}
    assert ids[0] == tiny_tokenizer.bos_token_id and ids[-1] == tiny_tokenizer.eos_token_id
    assert not special & set(ids[1:-1]), ids
    assert "<s>" in tiny_tokenizer.decode(ids[1:-1]) and "</s>" in tiny_tokenizer.decode(ids[1:-1])


def _numbers(rank: int, world_size: int, count: int):
    for i in range(rank, count, world_size):
        yield {"input_ids": [i]}


def test_sharded_stream_gives_each_rank_its_shard():
    dataset = sharded_stream(functools.partial(_numbers, count=10), world_size=2)
    assert dataset.n_shards == 2
    # What accelerate does with dispatch_batches=False: one shard per process.
    assert [x["input_ids"][0] for x in dataset.shard(num_shards=2, index=1)] == [1, 3, 5, 7, 9]
    assert sorted(x["input_ids"][0] for x in dataset) == list(range(10))
