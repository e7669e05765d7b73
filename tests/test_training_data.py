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
from hf_ipt.training.position import Position


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


def test_a_txt_file_is_read_as_synthesis_reads_it_not_one_that_stops_the_run(tmp_path, caplog):
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfa document after a byte order mark")
    (tmp_path / "b.txt").write_bytes(b"caf\xe9: latin-1, not UTF-8")
    (tmp_path / "c.txt").write_bytes(b"bin\x00ary")
    (tmp_path / "d.txt").write_text("the last document")
    (tmp_path / "e.txt").write_text("a document in UTF-16, as Notepad saves \u201cUnicode\u201d", encoding="utf-16")
    rows = [row["text"] for row in load_rows(str(tmp_path / "*.txt"))]
    assert rows == ["a document after a byte order mark", "", "", "the last document",
                    "a document in UTF-16, as Notepad saves \u201cUnicode\u201d"]
    assert "b.txt is not utf-8" in caplog.text and "c.txt is binary" in caplog.text


def test_a_parquet_string_that_is_not_utf8_is_a_null_row_not_an_error(tmp_path, caplog):
    """pyarrow raised `UnicodeDecodeError` for the whole batch: a training run stopped at one bad value."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = pa.array([b"first", b"caf\xe9", b"third"], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"text": values, "n": [1, 2, 3]}), tmp_path / "t.parquet")
    for _ in range(2):  # a second pass (a source restarting) warns no more
        rows = list(load_rows(str(tmp_path / "t.parquet")))
        assert rows == [{"text": "first", "n": 1}, {"text": None, "n": 2}, {"text": "third", "n": 3}]
    assert caplog.text.count("1 value(s) of") == 1 and "t.parquet' are strings that are not UTF-8" in caplog.text


def test_json_files_without_rows_read_as_no_rows(tmp_path):
    (tmp_path / "a.json").write_text("")
    assert list(load_rows([str(tmp_path / "a.json")])) == []  # not a bare StopIteration
    with pytest.raises(UsageError, match="no rows for rank 0"):
        next(endless_rows(load_rows(str(tmp_path / "a.json")), rank=0, world_size=1, seed=0,
                          shuffle_buffer_size=0, name="a"))


def test_no_shuffle_buffer_keeps_the_source_order_in_every_epoch(tmp_path):
    for name in "abc":
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": f"{name}{i}"}) + "\n" for i in range(2)))
    rows = endless_rows(load_rows(str(tmp_path / "*.jsonl")), rank=0, world_size=1, seed=0, shuffle_buffer_size=0,
                        name="abc")
    texts = [row["text"] for row in itertools.islice(rows, 6 * 4)]
    assert texts == ["a0", "a1", "b0", "b1", "c0", "c1"] * 4


def test_a_jsonl_line_that_is_no_json_object_is_skipped_as_synthesis_skips_it(tmp_path, caplog):
    lines = [b'\xef\xbb\xbf{"text": "first"}', b"", b'{"text": "an emoji cut in half \\ud83d"}', b"not json", b"[1]",
             b'{"text": "caf\xe9 in latin-1"}', b'{"text": "\\u00e9t\\u00e9", "extra": 1}']
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert list(load_rows(str(tmp_path / "a.jsonl"))) == [{"text": "first"}, {"text": "été", "extra": 1}]
    assert all(f"a.jsonl, line {n}: " in caplog.text for n in (3, 4, 5, 6)) and "line 2" not in caplog.text


def test_sources_of_unequal_files_are_split_by_rows(tmp_path, monkeypatch):
    """Whole files per rank over-sample a source's small files (test below): a domain corpus of one
    large and one small file, on 2 GPUs, was half the small file. Equal files keep whole files."""
    from types import SimpleNamespace

    from hf_ipt.training import streams
    from hf_ipt.training.data import unequal_files

    for name, rows in (("a", 40), ("b", 4), ("c", 40), ("d", 41), ("e", 76)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": f"{name}{i}"}) + "\n" for i in range(rows)))
    a, b, c, d, e = (str(tmp_path / f"{n}.jsonl") for n in "abcde")
    assert unequal_files([a, b], 2) and unequal_files(str(tmp_path / "[ab].jsonl"), 2)
    assert not unequal_files([a, d], 2)  # within 10%
    assert not unequal_files([a, b], 1) and not unequal_files([a, b, c], 2)  # one rank; datasets splits by rows
    assert unequal_files([a, c, b, e], 2) and not unequal_files([a, b, c, e], 2)  # ranks get files 0, 2 and 1, 3
    assert not unequal_files(str(tmp_path / "none*.jsonl"), 2) and not unequal_files("org/name", 2)
    split = {}

    def recorded(dataset, **kwargs):
        split[kwargs["name"]] = kwargs["by_rows"]
        return iter(())

    monkeypatch.setattr(streams, "endless_rows", recorded)
    config = SimpleNamespace(dataset_split="train", shuffle_buffer_size=0)
    for source in ([a, b], [a, d]):
        streams._numbered(source, config, 0, 2, 0, "domain", Position(), text_of=_text, name=str(source))
    assert split == {str([a, b]): True, str([a, d]): False}
    # a resume reads the source as its checkpoint's position records (files grown since, or a checkpoint
    # from before the check: split by files), whatever the sizes say now
    for after, expected in (({"split:domain": "files", "rows:domain": 3}, False), ({"rows:domain": 3}, False),
                            ({"split:domain": "rows", "rows:domain": 3}, True)):
        streams._numbered([a, b], config, 0, 2, 0, "domain", Position(after=after), text_of=_text, name="resumed")
        assert split["resumed"] is expected, after
    monkeypatch.undo()
    rows = streams._numbered([a, b], config, 0, 2, 0, "domain", Position(), text_of=_text)
    assert next(iter(rows))[1] == {"split:domain": "rows", "rows:domain": 1}  # recorded in every snapshot


def _text(row: dict):
    return row["text"]


@pytest.mark.parametrize("shuffle_buffer_size", [0, 8])
def test_split_by_rows_sees_every_row_equally_often_whatever_the_file_sizes(tmp_path, shuffle_buffer_size):
    """Whole files per rank (2 files, 2 ranks): the rank holding the small file went round it 10 times
    while the other read the large one once (3 times vs once with files reshuffled each epoch), so a
    repeated source (the collection) was not seen its number of times file for file."""
    from collections import Counter

    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": f"a{i}"}) + "\n" for i in range(40)))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": f"b{i}"}) + "\n" for i in range(4)))

    def taken(by_rows: bool) -> Counter:
        seen = Counter()
        for rank in range(2):  # 2 passes' worth: 44 rows for each rank
            rows = endless_rows(load_rows(str(tmp_path / "*.jsonl")), rank=rank, world_size=2, seed=3,
                                shuffle_buffer_size=shuffle_buffer_size, name="collection", by_rows=by_rows)
            seen.update(r["text"] for r in itertools.islice(rows, 44))
        return seen

    assert set(taken(by_rows=True).values()) == {2}  # each row twice: two passes, each row on one rank
    assert len(set(taken(by_rows=False).values())) > 1  # whole files: the small file more often (10x unshuffled)


def _rows_per_file(source, shuffle_buffer_size: int, rows_per_rank: int):
    """How many rows of each file (by its first letter) the 2 ranks of a training stream of `source` read."""
    from collections import Counter
    from types import SimpleNamespace

    from hf_ipt.training import streams

    config = SimpleNamespace(dataset_split="train", shuffle_buffer_size=shuffle_buffer_size)
    seen = Counter()
    for rank in range(2):
        rows = streams._numbered(source, config, rank, 2, 0, "domain", Position(), text_of=_text)
        seen.update(text[0] for (_, text), _ in itertools.islice(rows, rows_per_rank))
    return seen


def test_shuffled_files_of_unequal_sizes_are_split_by_rows(tmp_path):
    """Shuffling reorders the files before datasets gives rank r files r, r + 2, ...: files 40, 4, 40, 76
    rows long are equal shares in their listed order (40 + 40, 4 + 76), but seed 0 put the 4- and the
    40-row file on one rank, which read the small file twice while the other read its files once."""
    from hf_ipt.training.data import unequal_files

    sizes = {"a": 40, "b": 4, "c": 40, "e": 76}
    for name, rows in sizes.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": f"{name}{i}"}) + "\n" for i in range(rows)))
    files = [str(tmp_path / f"{name}.jsonl") for name in sizes]
    assert not unequal_files(files, 2) and unequal_files(files, 2, shuffled=True)
    assert _rows_per_file(files, shuffle_buffer_size=8, rows_per_rank=80) == sizes  # one pass over 160 rows
    assert _rows_per_file(files, shuffle_buffer_size=0, rows_per_rank=80) == sizes  # whole files, unshuffled


def test_a_local_dataset_folder_of_unequal_files_is_split_by_rows(tmp_path):
    """A folder is read by datasets as its split's files, whole files per rank: a folder of a 40-row and a
    4-row file trained half on the small one on 2 GPUs (its 4 rows each seen 5 times per pass of the other)."""
    from hf_ipt.training.data import unequal_files

    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, rows in (("a", 40), ("b", 4)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"text": f"{name}{i}"}) + "\n" for i in range(rows)))
    assert unequal_files(str(folder), 2) and not unequal_files(str(folder), 2, split="test")  # no such split
    assert _rows_per_file(str(folder), shuffle_buffer_size=0, rows_per_rank=22) == {"a": 40, "b": 4}


def test_a_local_dataset_folder_is_read_as_the_same_files_named_by_a_glob(tmp_path):
    """Read by datasets, a folder of .txt files gave one row per LINE (each paragraph trained as a document
    of its own, where synthesis and a glob read one document per file), and a folder of JSON-lines files
    that differ in a column stopped the stream with a cast error when it reached the second file."""
    texts = tmp_path / "texts"
    texts.mkdir()
    for name in ("a", "b"):
        (texts / f"{name}.txt").write_text(f"{name}: first paragraph\n\nsecond paragraph\n")
    assert [r["text"] for r in load_rows(str(texts))] == [f"{n}: first paragraph\n\nsecond paragraph\n" for n in "ab"]
    assert list(load_rows(str(texts))) == list(load_rows(str(texts / "*.txt")))
    rows = tmp_path / "rows"
    rows.mkdir()
    (rows / "a.jsonl").write_text(json.dumps({"text": "a0"}) + "\n")
    (rows / "b.jsonl").write_text(json.dumps({"text": "b0", "meta": 1}) + "\n")
    assert list(load_rows(str(rows))) == [{"text": "a0"}, {"text": "b0", "meta": 1}]


def test_json_lines_files_that_differ_in_a_column_are_read_as_jsonl_files_are(tmp_path):
    """.json files of JSON lines went to datasets' JSON reader, which casts every file to the columns of the
    first: general instructions whose second file has an extra field stopped the run with a cast error
    mid-stream. Read as synthesis reads them (lines or one array), each row is as it is."""
    (tmp_path / "a.json").write_text(json.dumps({"question": "q0", "response": "r0"}) + "\n\n")
    (tmp_path / "b.json").write_text(json.dumps({"question": "q1", "response": "r1", "system_prompt": "s"}) + "\n")
    (tmp_path / "c.json").write_text(json.dumps([{"question": "q2", "response": "r2", "id": 2}], indent=1))
    assert [sorted(row) for row in load_rows(str(tmp_path / "*.json"))] == [
        ["question", "response"], ["question", "response", "system_prompt"], ["id", "question", "response"]]


def test_an_old_position_of_a_txt_folder_is_refused_not_skipped_in_files(tmp_path):
    """A folder's .txt files were read one row per LINE (through `datasets`) before a folder was read as its
    files; a position of then (no `split:` recorded) counts lines, and was skipped as that many files."""
    from types import SimpleNamespace

    from hf_ipt.training import streams

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text(f"line one of {i}\nline two of {i}\n")
    config = SimpleNamespace(dataset_split="train", shuffle_buffer_size=0)

    def numbered(source, after):
        rows = streams._numbered(str(source), config, 0, 1, 0, "domain", Position(after=after), text_of=_text)
        return [row["text"] for (row, _), _ in itertools.islice(rows, 2)]

    with pytest.raises(UsageError, match=r"'.*docs'.*old format \(no 'split:domain'.*one row per LINE.*"
                                         r"--ignore_data_skip true"):
        numbered(folder, {"rows:domain": 4})
    assert numbered(folder, {"split:domain": "files", "rows:domain": 1}) == ["line one of 1\nline two of 1\n",
                                                                             "line one of 2\nline two of 2\n"]
    assert len(numbered(folder, {})) == 2  # a fresh stream
    jsonl = tmp_path / "rows"  # a folder of JSON lines was read row by row then too: its old position resumes
    jsonl.mkdir()
    (jsonl / "0.jsonl").write_text("".join(json.dumps({"text": f"r{i}"}) + "\n" for i in range(4)))
    assert numbered(jsonl, {"rows:domain": 1}) == ["r1", "r2"]
