"""Compressed corpus files (.gz, .bz2, .xz, .zst): the documents, ids, jobs and training rows of
the uncompressed files; a damaged file, a missing codec or a compressed Parquet file fail clearly."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
import sys
from pathlib import Path

import datasets
import pytest
import zstandard

import hf_ipt  # noqa: F401  (registers hf_ipt/augmented)
from hf_ipt.augment import SynthesisConfig
from hf_ipt.cli import UsageError
from hf_ipt.corpus import CorpusConfig, file_parts, iter_shard, local_files, make_shards, read_file
from hf_ipt.jobs import JobConfig, run_job
from hf_ipt.synthesize_cli import main as synthesize_main
from hf_ipt.training.checks import check_source
from hf_ipt.training.data import load_rows

from .test_builder import doc
from .test_hub_corpus import REPO, hf_url, hub  # noqa: F401  (`hub`: the fake Hub fixture)
from .test_jobs import NO_FILTERS, output_rows

PACK = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
        ".zst": lambda data: zstandard.ZstdCompressor().compress(data)}


def jsonl(start: int, n: int) -> bytes:
    return "".join(json.dumps({"text": doc(i), "n": i}) + "\n" for i in range(start, start + n)).encode()


# name, uncompressed content, compression suffix: JSON lines, a JSON array, a .txt document
FILES = [
    ("a.jsonl", jsonl(0, 9), ".gz"),
    ("b.jsonl", jsonl(20, 7), ".zst"),
    ("c.json", json.dumps([{"text": doc(i)} for i in range(40, 46)]).encode(), ".bz2"),
    ("d.txt", doc(60).encode(), ".xz"),
]


def write_corpora(tmp_path: Path) -> tuple[Path, Path]:
    """`plain/` with the FILES as they are, `packed/` with each one compressed."""
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir()
    packed.mkdir()
    for name, data, suffix in FILES:
        (plain / name).write_bytes(data)
        (packed / (name + suffix)).write_bytes(PACK[suffix](data))
    return plain, packed


def unpacked(doc_id: str) -> str:
    """`doc_id` with the compression suffix taken out of its file name: ``a.jsonl.gz:3`` -> ``a.jsonl:3``."""
    return re.sub(r"\.(gz|bz2|xz|zst)(?=:|$)", "", doc_id)


def documents(shards: list[dict]) -> list[tuple[str, str, str | None]]:
    return sorted((unpacked(d.id), d.text, d.reject) for s in shards for d in iter_shard(s))


def test_compressed_files_give_the_documents_and_ids_of_the_plain_files(tmp_path):
    plain, packed = write_corpora(tmp_path)
    plain_files = CorpusConfig(corpus=str(plain / "*")).files()
    packed_files = CorpusConfig(corpus=str(packed / "*")).files()  # the text column is checked: readable
    assert [Path(f).name for f in packed_files] == ["a.jsonl.gz", "b.jsonl.zst", "c.json.bz2", "d.txt.xz"]
    for plain_file, packed_file in zip(plain_files, packed_files):
        want = [(d.id, d.text, d.reject) for d in read_file(plain_file)]
        got = [(unpacked(d.id), d.text, d.reject) for d in read_file(packed_file)]
        assert got == want and len(got) == {"a": 9, "b": 7, "c": 6, "d": 1}[Path(plain_file).name[0]]
    assert [d.id for d in read_file(packed_files[0])][:2] == ["a.jsonl.gz:0", "a.jsonl.gz:1"]  # the file's name
    for num_shards in (4, 11):  # whole files; files in parts
        assert documents(make_shards(packed_files, num_shards)) == documents(make_shards(plain_files, num_shards))
    assert len(documents(make_shards(packed_files, 11))) == 23


def test_a_glob_matches_plain_and_compressed_files(tmp_path):
    (tmp_path / "x.jsonl").write_bytes(jsonl(0, 2))
    (tmp_path / "y.jsonl.gz").write_bytes(gzip.compress(jsonl(5, 3)))
    files = CorpusConfig(corpus=str(tmp_path / "*.jsonl*")).files()
    assert [Path(f).name for f in files] == ["x.jsonl", "y.jsonl.gz"]
    ids = [d.id for s in make_shards(files, 2) for d in iter_shard(s)]
    assert ids == ["x.jsonl:0", "x.jsonl:1", "y.jsonl.gz:0", "y.jsonl.gz:1", "y.jsonl.gz:2"]


@pytest.mark.parametrize("name", ["x.csv.gz", "x.parquet.gz", "x.gz"])
def test_a_compressed_file_of_an_unsupported_type_is_refused_naming_the_supported_ones(tmp_path, name):
    (tmp_path / name).write_bytes(gzip.compress(b"text,n\nhello,1\n"))
    with pytest.raises(UsageError, match=r"unsupported files such as .*\.jsonl.*\.gz, \.bz2, \.xz, \.zst"):
        local_files(str(tmp_path / "*"))
    with pytest.raises(ValueError, match="unsupported corpus file"):
        list(read_file(str(tmp_path / name)))


def test_a_file_matched_with_its_compressed_copy_is_warned_about(tmp_path, caplog):
    """`gunzip -k` leaves a.jsonl beside a.jsonl.gz: `data/*` (which refused the .gz file before compressed
    files were read) now reads every document twice, silently."""
    _, packed = write_corpora(tmp_path)
    (packed / "a.jsonl").write_bytes(FILES[0][1])
    assert len(local_files(str(packed / "*"))) == 5
    assert "matched '" + str(packed / "a.jsonl") + "' and '" + str(packed / "a.jsonl.gz") + "'" in caplog.text
    caplog.clear()
    assert len(local_files(str(packed / "*.*z*"))) == 4 and "matched" not in caplog.text


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_a_cut_or_damaged_compressed_file_is_an_error_naming_it(tmp_path, suffix):
    """Cut short (an interrupted download): gzip, bz2 and xz raise a bare EOFError, and zstandard's
    reader ends silently, dropping the rest of the file, as if the corpus were smaller."""
    packed = PACK[suffix](jsonl(0, 400))
    cut = tmp_path / f"cut.jsonl{suffix}"
    cut.write_bytes(packed[: len(packed) // 2])
    garbage = tmp_path / f"garbage.jsonl{suffix}"
    garbage.write_bytes(b"this was never compressed\n" * 20)
    for path in (cut, garbage):
        with pytest.raises(UsageError, match=rf"corpus file '{re.escape(str(path))}' does not decompress"):
            list(read_file(str(path)))
        with pytest.raises(UsageError, match=re.escape(str(path))):
            list(load_rows(str(path)))


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_an_empty_compressed_file_is_an_error_naming_it_whatever_the_codec(tmp_path, suffix):
    """A file of no bytes is cut before its first (an interrupted download): an empty text compresses to
    a header at least. bz2 and xz raised, but gzip and zstd read it as a file of no documents, silently."""
    empty = tmp_path / f"empty.jsonl{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(UsageError, match=rf"corpus file '{re.escape(str(empty))}' does not decompress"):
        list(read_file(str(empty)))
    with pytest.raises(UsageError, match=re.escape(str(empty))):
        list(load_rows(str(empty)))
    (tmp_path / f"none.jsonl{suffix}").write_bytes(PACK[suffix](b""))  # an empty text, compressed: no rows
    assert list(read_file(str(tmp_path / f"none.jsonl{suffix}"))) == []


def test_a_cut_compressed_json_file_is_an_error_in_training_too(tmp_path):
    """A .json file (read by datasets when plain) that is compressed and cut: an error naming it,
    not datasets' bare EOFError or Arrow parse error."""
    packed = zstandard.ZstdCompressor().compress(jsonl(0, 400))
    (tmp_path / "cut.json.zst").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(UsageError, match="cut.json.zst' does not decompress as zstd"):
        list(load_rows(str(tmp_path / "cut.json.zst")))


def test_zstandard_frames_one_after_another_are_all_read(tmp_path):
    """`zstd -T0` and concatenated files hold several frames; each is read, in order."""
    path = tmp_path / "frames.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(jsonl(0, 3)) + zstandard.ZstdCompressor().compress(jsonl(3, 4)))
    assert [d.text for d in read_file(str(path))] == [doc(i) for i in range(7)]


def test_a_zst_file_written_with_a_long_window_is_read(tmp_path):
    """`zstd --long=28` or more from a stream: a window zstandard refuses by default ("Frame requires
    too much memory"), which would read as a damaged file."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=28)
    stream = zstandard.ZstdCompressor(compression_params=params).compressobj()
    path = tmp_path / "long.jsonl.zst"
    path.write_bytes(stream.compress(jsonl(0, 3)) + stream.flush())
    assert [d.text for d in read_file(str(path))] == [doc(i) for i in range(3)]


def test_a_zst_file_without_zstandard_names_the_package_to_install(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(jsonl(0, 2)))
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install zstandard"):
        CorpusConfig(corpus=str(path)).files()


def test_a_compressed_file_gets_parts_by_its_text_not_its_size_on_disk(tmp_path):
    """A .jsonl.gz a third the size of a .jsonl holds more text: it gets more parts, not fewer."""
    (tmp_path / "big.jsonl.gz").write_bytes(b"x" * 1000)
    (tmp_path / "small.jsonl").write_bytes(b"x" * 3000)
    big, small = file_parts([str(tmp_path / "big.jsonl.gz"), str(tmp_path / "small.jsonl")], 8)
    assert big > small


def rows_without_ids(rows: list[dict]) -> list[dict]:
    def plain(value):
        if isinstance(value, str):
            return unpacked(value)
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return [{key: plain(value) for key, value in row.items()} for row in rows]


def test_builder_on_compressed_files_equals_the_plain_files(tmp_path):
    plain, packed = write_corpora(tmp_path)

    def built(folder: Path, **settings) -> list[dict]:
        ds = datasets.load_dataset("hf_ipt/augmented", corpus=str(folder / "*"), corpus_name="news",
                                   synthesizer="rules", streaming=True, split="train", num_shards=4, window_size=6,
                                   **settings)
        return list(ds)

    rows = built(packed, output="pairs")
    assert rows_without_ids(rows) == built(plain, output="pairs")
    assert sorted(r["id"] for r in rows)[:2] == ["a.jsonl.gz:0", "a.jsonl.gz:1"]
    assert sum(len(r["pairs"]) for r in rows) > 0
    # templified: the same texts chained; the templates are drawn per document id, so they differ
    texts = {unpacked(r["id"]): r["context"] for r in rows}
    templified = built(packed)
    assert sorted(unpacked(d) for r in templified for d in r["doc_ids"]) == sorted(texts)
    assert all(texts[unpacked(d)] in r["text"] for r in templified for d in r["doc_ids"])


def test_synthesis_job_on_compressed_files_equals_the_plain_files(tmp_path):
    plain, packed = write_corpora(tmp_path)
    for folder in (plain, packed):
        job = JobConfig(corpus=str(folder / "*"), corpus_name="news", output_dir=str(tmp_path / f"out-{folder.name}"),
                        num_shards=4)
        manifest = run_job(job, SynthesisConfig(window_size=6, output="pairs"), NO_FILTERS, progress=False)
        assert manifest["rows"] == 23
    packed_rows = output_rows(tmp_path / "out-packed")
    assert rows_without_ids(packed_rows) == output_rows(tmp_path / "out-plain")
    assert any(r["id"] == "d.txt.xz" for r in packed_rows) and sum(len(r["pairs"]) for r in packed_rows) > 0


def test_synthesize_cli_stops_at_a_cut_file_naming_it_and_resumes_once_it_is_whole(tmp_path, capsys):
    _, packed = write_corpora(tmp_path)
    whole = (packed / "b.jsonl.zst").read_bytes()
    (packed / "b.jsonl.zst").write_bytes(whole[: len(whole) // 2])
    args = ["--corpus", str(packed / "*"), "--output_dir", str(tmp_path / "out"), "--num_shards", "4",
            "--output", "pairs", "--window_size", "6"]
    with pytest.raises(SystemExit) as stopped:
        synthesize_main(args)
    assert stopped.value.code == 2
    assert "b.jsonl.zst' does not decompress as zstd" in capsys.readouterr().err
    (packed / "b.jsonl.zst").write_bytes(whole)  # downloaded again
    assert synthesize_main(args) == 0
    assert "from 23 documents" in capsys.readouterr().out
    assert len({r["id"] for r in output_rows(tmp_path / "out")}) == 23


def test_training_rows_and_data_checks_of_compressed_files(tmp_path):
    plain, packed = write_corpora(tmp_path)
    for name, _, suffix in FILES:
        source = str(packed / (name + suffix))
        assert list(load_rows(source)) == list(load_rows(str(plain / name)))
        check_source("--domain_dataset", source, {"text": "--text_column"})
        with pytest.raises(UsageError, match=r"has no 'body' .*has columns \["):
            check_source("--domain_dataset", source, {"body": "--text_column"})
    json_lines = packed / "lines.json.gz"  # a .json file of JSON lines, not one array
    json_lines.write_bytes(gzip.compress(jsonl(0, 3)))
    assert [r["n"] for r in load_rows(str(json_lines))] == [0, 1, 2]
    mixed = [str(plain / "a.jsonl"), str(packed / "b.jsonl.zst"), str(packed / "c.json.bz2")]
    assert len(list(load_rows(mixed))) == 9 + 7 + 6
    with pytest.raises(ValueError, match="mixes file types"):
        load_rows([str(packed / "a.jsonl.gz"), str(packed / "d.txt.xz")])


def test_compressed_files_of_a_hub_dataset(hub):  # noqa: F811
    """A Hub dataset folder of ``*.jsonl.gz`` files: by URL (a folder, a glob) and by dataset id."""
    commit = hub.put(REPO, {"data/train-0.jsonl.gz": gzip.compress(jsonl(0, 3)),
                            "data/train-1.jsonl.gz": gzip.compress(jsonl(10, 2))})
    want = [f"train-0.jsonl.gz:{i}" for i in range(3)] + [f"train-1.jsonl.gz:{i}" for i in range(2)]
    for corpus in (f"hf://datasets/{REPO}/data", f"hf://datasets/{REPO}/data/*.jsonl.gz", REPO):
        files = CorpusConfig(corpus=corpus).files()
        assert files == [hf_url(commit, "data/train-0.jsonl.gz"), hf_url(commit, "data/train-1.jsonl.gz")]
        docs = [d for s in make_shards(files, 2) for d in iter_shard(s)]
        assert [d.id for d in docs] == want
        assert [d.text for d in docs] == [doc(i) for i in (0, 1, 2, 10, 11)]
