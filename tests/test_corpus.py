"""`hf_ipt.corpus`: shard counts, rank partitions, JSON arrays and document ids."""

from __future__ import annotations

import codecs
import json
import os
import re
from pathlib import Path

import pytest

from hf_ipt.builder import load_augmented
from hf_ipt.cli import UsageError
from hf_ipt.corpus import common_root, derive_corpus_name, iter_shard, make_shards, read_file

from .test_builder import doc, write_jsonl


def shard_ids(shards: list[dict]) -> list[list[str]]:
    return [[d.id for d in iter_shard(s)] for s in shards]


def all_ids(shards: list[dict]) -> list[str]:
    return sorted(i for ids in shard_ids(shards) for i in ids)


@pytest.mark.parametrize("num_files,num_shards", [(3, 8), (3, 9), (4, 6), (5, 3), (2, 2), (1, 7)])
def test_make_shards_returns_exactly_num_shards_covering_each_document_once(tmp_path, num_files, num_shards):
    files = [str(write_jsonl(tmp_path / f"f{k}.jsonl", 10 + k, start=100 * k)) for k in range(num_files)]
    shards = make_shards(files, num_shards)
    assert len(shards) == num_shards
    ids = [i for s in shard_ids(shards) for i in s]
    assert sorted(ids) == sorted(f"f{k}.jsonl:{i}" for k in range(num_files) for i in range(10 + k))
    assert len(ids) == len(set(ids))


def test_default_num_shards_groups_small_files(tmp_path, monkeypatch):
    """One shard per file, at least 8, at most one per SHARD_BYTES of local files: windows never
    span shards, and a shard per small file would synthesize its texts one at a time."""
    from hf_ipt import corpus as corpus_module

    files = [str(write_jsonl(tmp_path / f"f{k}.jsonl", 3)) for k in range(12)]
    assert len(make_shards(files[:3], None)) == 8  # fewer files than 8: split into parts, as before
    assert len(make_shards(files, None)) == 8  # 12 small files: 8 shards of whole files, not 12
    size = sum(os.path.getsize(f) for f in files)
    monkeypatch.setattr(corpus_module, "SHARD_BYTES", size // 10)  # as if each file were ~1.2 shards' worth
    assert len(make_shards(files, None)) == 11
    monkeypatch.setattr(corpus_module, "SHARD_BYTES", 1)
    assert len(make_shards(files, None)) == 12  # never more than one per file
    urls = [f"hf://datasets/org/name@{'a' * 40}/f{k}.jsonl" for k in range(12)]
    assert corpus_module.default_num_shards(urls) == 12  # sizes unknown: one per file


def test_default_shards_of_txt_files_hold_several_documents(tmp_path):
    """A .txt file is one document: 5 of them in 8 shards were 5 texts synthesized alone (the other parts
    empty), never chained; a Hub dataset of 1,000 .txt files was 1,000 shards of one text each."""
    from hf_ipt.corpus import TEXT_FILES_PER_SHARD, default_num_shards

    assert TEXT_FILES_PER_SHARD == 4
    files = []
    for k in range(40):
        (tmp_path / f"{k:02d}.txt").write_text(doc(k))
        files.append(str(tmp_path / f"{k:02d}.txt"))
    # 1, 2 or 4 below 8 (12 files: 2, not 3): what ranks of 2 or 4 split, as they split 8
    assert [default_num_shards(files[:n]) for n in (1, 5, 8, 12, 16, 31, 40)] == [1, 1, 2, 2, 4, 4, 8]
    assert default_num_shards([f"hf://datasets/o/n@{'a' * 40}/{k}.txt" for k in range(100)]) == 24  # 25 -> 24
    shards = make_shards(files[:5], None)
    assert shard_ids(shards) == [[f"{k:02d}.txt" for k in range(5)]]
    urls = [f"hf://datasets/org/name@{'a' * 40}/{k}.txt" for k in range(1000)]
    assert default_num_shards(urls) == 248  # a multiple of 8: ranks of 2, 4 or 8 read disjoint shards
    assert default_num_shards([*files[:5], str(write_jsonl(tmp_path / "rows.jsonl", 3))]) == 8  # rows split
    assert len(make_shards(files[:5], 5)) == 5  # as given


def test_three_ranks_read_disjoint_shards_that_partition_the_corpus(tmp_path):
    """4 files, num_shards=6: 6 shards, so `split_dataset_by_node` gives each of 3 ranks 2 whole shards
    (with 8 shards it would fall back to every 3rd example: each rank reading the whole corpus)."""
    from datasets.distributed import split_dataset_by_node

    for k in range(4):
        write_jsonl(tmp_path / f"f{k}.jsonl", 7, start=10 * k)
    ds = load_augmented(str(tmp_path / "*.jsonl"), streaming=True, num_shards=6, output="pairs")
    assert ds.num_shards == 6
    ranks = [split_dataset_by_node(ds, rank=r, world_size=3) for r in range(3)]
    assert [rank.num_shards for rank in ranks] == [2, 2, 2]  # each rank reads only its own shards
    ids = [[row["id"] for row in rank] for rank in ranks]
    assert all(ids) and not set(ids[0]) & set(ids[1]) | set(ids[0]) & set(ids[2]) | set(ids[1]) & set(ids[2])
    assert sorted(i for rank in ids for i in rank) == sorted(f"f{k}.jsonl:{i}" for k in range(4) for i in range(7))


def test_json_array_file_yields_its_objects(tmp_path):
    path = tmp_path / "docs.json"
    items = [{"text": doc(0)}, {"text": doc(1), "meta": 1}, "not an object", {"other": 1}, {"text": doc(2)}]
    path.write_text("\ufeff  \n" + json.dumps(items, indent=2))  # a BOM and blank space before the array
    docs = list(read_file(str(path)))
    assert [(d.id, d.text, d.reject) for d in docs] == [
        ("docs.json:0", doc(0), None), ("docs.json:1", doc(1), None), ("docs.json:2", "", "invalid json"),
        ("docs.json:3", "", "no string in column 'text'"), ("docs.json:4", doc(2), None)]
    shards = make_shards([str(path)], 2)  # parts of an array file: disjoint and complete
    assert all_ids(shards) == [f"docs.json:{i}" for i in range(5)]


def test_json_lines_in_a_json_file_still_work_and_a_broken_array_names_the_file(tmp_path):
    lines = tmp_path / "lines.json"
    lines.write_text(json.dumps({"text": doc(0)}) + "\n" + json.dumps({"text": doc(1)}) + "\n")
    assert [d.text for d in read_file(str(lines))] == [doc(0), doc(1)]
    broken = tmp_path / "broken.json"
    broken.write_text('[{"text": "a"},\n{"text": ')
    with pytest.raises(UsageError, match=r"broken\.json.*starts with '\['.*JSON lines"):  # exit 2 in the CLIs
        list(read_file(str(broken)))
    arrays = tmp_path / "arrays.json"  # JSON lines, but an array per line: not one array
    arrays.write_text('["a", "b"]\n["c"]\n')
    with pytest.raises(UsageError, match=r"arrays\.json.*not one valid JSON array \(Extra data.*not an array per line"):
        list(read_file(str(arrays)))


def test_a_part_of_a_json_lines_file_parses_only_its_own_lines(tmp_path, monkeypatch):
    """Each of a file's parts (8 by default for a one-file corpus) decoded and parsed every line of it, so the
    corpus was parsed 8 times over; the ids stay the lines' own."""
    import hf_ipt.corpus

    path = write_jsonl(tmp_path / "c.jsonl", 12)
    parsed = []
    real = json.loads
    monkeypatch.setattr(hf_ipt.corpus.json, "loads", lambda text, *a, **k: parsed.append(text) or real(text, *a, **k))
    shard = {"files": [str(path)], "part": 1, "parts": 4}
    assert [(d.id, d.text) for d in iter_shard(shard)] == [(f"c.jsonl:{i}", doc(i)) for i in (1, 5, 9)]
    assert len(parsed) == 3
    monkeypatch.undo()
    whole = [d.id for d in read_file(str(path))]
    parts = [i for ids in shard_ids([{**shard, "part": p} for p in range(4)]) for i in ids]
    assert sorted(parts, key=whole.index) == whole  # the parts together: every line once


def test_a_utf8_bom_before_json_lines_costs_no_document(tmp_path):
    for name in ("bom.jsonl", "bom.json"):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps({"text": doc(i)}) + "\n" for i in range(3)).encode())
        assert [(d.id, d.text, d.reject) for d in read_file(str(path))] == [
            (f"{name}:{i}", doc(i), None) for i in range(3)]


def test_a_utf8_bom_before_a_txt_document_is_not_part_of_it(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + doc(0).encode())
    assert [(d.text, d.reject) for d in read_file(str(tmp_path / "bom.txt"))] == [(doc(0), None)]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
def test_a_txt_document_in_utf16_or_utf32_with_a_byte_order_mark_is_read(tmp_path, codec):
    """Notepad's "Unicode" saves UTF-16 LE after a byte order mark: such a corpus gave no document at all
    (every file a "binary" reject). Its mark names the encoding; without one, a file is still read as UTF-8."""
    from hf_ipt.corpus import CorpusConfig

    text = "Caf\u00e9 prices rose 5% \u2014 \U0001F4C8 analysts said.\r\nSecond line."
    mark = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-be": codecs.BOM_UTF32_BE}
    (tmp_path / "doc.txt").write_bytes(mark.get(codec, b"") + text.encode(codec))
    assert [(d.text, d.reject) for d in read_file(str(tmp_path / "doc.txt"))] == [(text, None)]
    assert [row["context"] for row in load_augmented(str(tmp_path / "doc.txt"), streaming=True, output="pairs")] == [text]
    assert CorpusConfig(corpus=str(tmp_path)).files()  # the folder reads too
    (tmp_path / "bare.txt").write_bytes(text.encode("utf-16-le"))  # no mark: not guessed
    assert [d.reject for d in read_file(str(tmp_path / "bare.txt"))] == ["binary"]
    (tmp_path / "binary.txt").write_bytes(codecs.BOM_UTF16_LE + b"A\x00\x00\x00\x01\x00")  # NUL after a mark
    assert [d.reject for d in read_file(str(tmp_path / "binary.txt"))] == ["binary"]


def test_a_lone_surrogate_is_rejected_not_passed_on(tmp_path):
    """``"\\ud83d"`` (an emoji cut in half) is valid JSON, but no UTF-8 file can hold the string:
    it used to stop a job's Parquet write on every rerun."""
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "emoji cut \\ud83d here"}\n' + json.dumps({"text": doc(1)}) + "\n")
    assert [(d.text, d.reject) for d in read_file(str(path))] == [("", "not utf-8"), (doc(1), None)]


def test_a_parquet_string_that_is_not_utf8_rejects_its_document_only(tmp_path):
    """A string column written from raw bytes (``caf\\xe9``): pyarrow raised `UnicodeDecodeError` for its whole
    batch of 1024 rows, which stopped a job at the column check or in its unit, and on every rerun."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = [doc(i).encode() for i in range(2000)]
    values[3] = values[1500] = b"caf\xe9 latin-1"
    pq.write_table(pa.table({"text": pa.array(values, pa.binary()).view(pa.string())}), tmp_path / "c.parquet")
    docs = list(read_file(str(tmp_path / "c.parquet")))
    assert len(docs) == 2000 and [d.id for d in docs if d.reject] == ["c.parquet:3", "c.parquet:1500"]
    assert {d.reject for d in docs if d.reject} == {"not utf-8"} and docs[4].text == doc(4)
    from hf_ipt.corpus import CorpusConfig

    assert CorpusConfig(corpus=str(tmp_path / "c.parquet")).files()  # the column check reads past it


@pytest.mark.parametrize(("name", "content", "message"), [
    ("utf16.jsonl", json.dumps({"text": "Market report."}).encode("utf-16"), r"\(\d+ binary\).*save it as UTF-8"),
    ("latin1.jsonl", b'{"text": "caf\xe9"}\n{"text": "na\xefve"}\n', r"\(2 not utf-8\): save the file as UTF-8"),
    ("pretty.jsonl", b'{\n  "text": "Market report."\n}\n', r"\(3 invalid json\): a .jsonl file holds one JSON object"),
    ("notes.jsonl", b"Plain text, not JSON.\nAnother line.\n", r"\(2 invalid json\)"),
])
def test_a_file_none_of_whose_rows_can_be_read_stops_before_any_work(tmp_path, name, content, message):
    """Every row rejected for its format would give an empty output and exit 0: refused up front."""
    from hf_ipt.corpus import CorpusConfig

    (tmp_path / name).write_bytes(content)
    with pytest.raises(UsageError, match=f"no document of corpus file .*{name}' can be read {message}"):
        CorpusConfig(corpus=str(tmp_path / name)).files()


def test_a_damaged_or_non_text_parquet_file_is_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hf_ipt.corpus import CorpusConfig

    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(UsageError, match="corpus file .*empty.parquet' is not a readable Parquet file"):
        CorpusConfig(corpus=str(tmp_path / "empty.parquet")).files()
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(UsageError, match="`text_column` 'text' of .*ints.parquet' holds int64, not text"):
        CorpusConfig(corpus=str(tmp_path / "ints.parquet")).files()
    pq.write_table(pa.table({"text": pa.array(["a b", "c d"]).dictionary_encode()}), tmp_path / "dict.parquet")
    assert [d.text for d in read_file(str(tmp_path / "dict.parquet"))] == ["a b", "c d"]


def test_corpus_settings_that_cannot_apply_are_refused(tmp_path):
    from hf_ipt.corpus import CorpusConfig

    corpus = str(write_jsonl(tmp_path / "c.jsonl", 2))
    for settings in ({"corpus_config": "default"}, {"corpus_split": "test"}):
        with pytest.raises(ValueError, match="select the files of a dataset .*the local files .* are all read"):
            CorpusConfig(corpus=corpus, **settings)
    with pytest.raises(FileNotFoundError, match="'./typo/folder/': no such local file or folder; check the path"):
        CorpusConfig(corpus="./typo/folder/")
    (tmp_path / "ds").mkdir()
    write_jsonl(tmp_path / "ds" / "a.jsonl", 2)
    (tmp_path / "ds" / "b.jsonl.lz4").write_bytes(b"")  # a codec hf_ipt does not read
    with pytest.raises(UsageError, match="matched unsupported files such as .*b.jsonl.lz4"):
        CorpusConfig(corpus=str(tmp_path / "ds")).files()


def test_same_file_names_in_different_folders_get_distinct_ids(tmp_path):
    for folder, start in (("x", 0), ("y", 50), ("y/z", 90)):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        write_jsonl(tmp_path / folder / "train.jsonl", 3, start=start)
    files = sorted(str(p) for p in tmp_path.rglob("train.jsonl"))
    assert common_root(files) == str(tmp_path)
    ids = all_ids(make_shards(files, 4))
    assert ids == sorted(f"{f}/train.jsonl:{i}" for f in ("x", "y", "y/z") for i in range(3))
    rows = load_augmented(str(tmp_path / "**" / "train.jsonl"), streaming=True, output="pairs")
    assert sorted(r["id"] for r in rows) == ids  # the builder (and jobs) use the same ids


def test_one_folder_keeps_base_name_ids_and_unchanged_shards(tmp_path):
    files = [str(write_jsonl(tmp_path / f"{n}.jsonl", 2)) for n in "ab"]
    assert common_root(files) is None
    assert make_shards(files, 2) == [{"files": [files[0]], "part": 0, "parts": 1},
                                     {"files": [files[1]], "part": 0, "parts": 1}]
    assert all_ids(make_shards(files, 4)) == ["a.jsonl:0", "a.jsonl:1", "b.jsonl:0", "b.jsonl:1"]
    assert common_root([str(Path("rel") / "a.jsonl"), "b.jsonl"]) == ""  # nothing shared: paths as given


def _corpus_classes():
    from hf_ipt.augment_cli import AugmentArguments
    from hf_ipt.builder import AugmentedConfig
    from hf_ipt.jobs import JobConfig

    return [AugmentedConfig, JobConfig, AugmentArguments]


@pytest.mark.parametrize("cls", _corpus_classes(), ids=lambda c: c.__name__)
def test_builder_job_and_cli_share_one_corpus_config(cls, tmp_path):
    from dataclasses import fields

    from hf_ipt.corpus import CorpusConfig

    assert {f.name for f in fields(CorpusConfig)} <= {f.name for f in fields(cls)}
    corpus = write_jsonl(tmp_path / "news.jsonl", 2)
    for bad, match in [({}, "`corpus` is required"), ({"corpus": str(corpus), "num_shards": 0}, "num_shards"),
                       ({"corpus": str(corpus), "corpus_revision": "v1"}, "corpus_revision")]:
        with pytest.raises(ValueError, match=match) as error:
            cls(**bad)
        assert f"({cls.__name__}." in str(error.value)  # names the class the user filled in
    assert cls(corpus=str(corpus)).corpus_name == "news.jsonl"
    assert cls(corpus="org/news").corpus_name == "org/news"
    (tmp_path / "finance").mkdir(exist_ok=True)
    write_jsonl(tmp_path / "finance" / "a.jsonl", 1)
    assert cls(corpus=str(tmp_path / "finance" / "*.jsonl")).corpus_name == "finance"  # not "*.jsonl"
    assert cls(corpus=str(corpus)).files() == [str(corpus)]


def test_derive_corpus_name_is_the_last_part_without_glob_characters():
    assert derive_corpus_name("data/finance/*.jsonl") == "finance"
    assert derive_corpus_name("data/**/*.parquet") == "data"
    assert derive_corpus_name("/tmp/news.jsonl") == "news.jsonl"
    assert derive_corpus_name("*.jsonl") == "*.jsonl"  # nothing else to name it by


def test_a_row_without_the_text_column_is_rejected_but_a_wrong_column_stops_with_the_keys(tmp_path, caplog):
    from hf_ipt.cli import UsageError
    from hf_ipt.corpus import CorpusConfig, check_text_column

    some = tmp_path / "some.jsonl"  # two bad rows among good ones: rejected, counted, no error
    rows = [{"text": doc(0)}, {"body": "x"}, {"text": doc(2)}, {"title": "y"}]
    some.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [d.reject for d in read_file(str(some))] == [None, "no string in column 'text'", None,
                                                        "no string in column 'text'"]
    check_text_column([str(some)], "text")
    wrong = tmp_path / "wrong.jsonl"  # the column is in no row: a wrong `text_column`
    wrong.write_text("".join(json.dumps({"body": doc(i)}) + "\n" for i in range(3)))
    message = r"'text' is in none of the first 3 JSON objects.*keys \['body'\].*--text_column"
    with pytest.raises(UsageError, match=message):
        check_text_column([str(some), str(wrong)], "text")
    with pytest.raises(UsageError, match=message):  # up front, when the files are resolved
        CorpusConfig(corpus=str(tmp_path / "*.jsonl")).files()
    # while streaming, the file is only warned about: its rows are rejected, the run goes on
    assert [d.reject for d in read_file(str(wrong))] == ["no string in column 'text'"] * 3
    assert "none of the first 3 JSON objects" in caplog.text
    assert [d.text for d in read_file(str(wrong), text_column="body")] == [doc(i) for i in range(3)]
    # a long file is judged on its first 100 objects, not read to its end
    long = tmp_path / "long.json"
    long.write_text(json.dumps([{"body": doc(i)} for i in range(500)]))
    seen = []
    with pytest.raises(UsageError, match="none of the first 100 JSON objects"):
        seen.extend(read_file(str(long), strict=True))
    assert len(seen) == 99
    parquet = tmp_path / "p.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["a"]}), parquet)
    with pytest.raises(UsageError, match=r"columns: \['body'\].*--text_column"):
        check_text_column([str(parquet)], "text")


def test_a_local_corpus_that_matches_nothing_fails_when_the_config_is_made(tmp_path):
    from hf_ipt.cli import UsageError
    from hf_ipt.corpus import CorpusConfig

    for error in (UsageError, FileNotFoundError):  # either is caught: CLIs turn it into exit status 2
        with pytest.raises(error, match="matched no file"):
            CorpusConfig(corpus=str(tmp_path / "missing" / "*.jsonl"))


def test_an_existing_file_with_glob_characters_in_its_name_is_itself(tmp_path):
    from hf_ipt.corpus import CorpusConfig

    path = write_jsonl(tmp_path / "report[1].jsonl", 2)
    assert CorpusConfig(corpus=str(path)).files() == [str(path)]
    assert [d.id for d in iter_shard(make_shards([str(path)], 1)[0])] == ["report[1].jsonl:0", "report[1].jsonl:1"]


def test_a_local_folder_without_data_or_split_is_a_usage_error(tmp_path):
    """An empty folder, a split or config the folder lacks: errors that name the fix, no traceback of
    `datasets` (and the builder reports them as they are, not as a failed listing of a Hub commit)."""
    from hf_ipt.builder import AugmentedBuilder
    from hf_ipt.cli import MissingFileError
    from hf_ipt.corpus import CorpusConfig

    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match=r"'.*empty' holds no data files \(.txt, .jsonl, .json, .parquet; "):
        CorpusConfig(corpus=str(tmp_path / "empty")).files()
    with pytest.raises(MissingFileError, match="holds no data files"):
        AugmentedBuilder(corpus=str(tmp_path / "empty"))
    (tmp_path / "ds").mkdir()
    write_jsonl(tmp_path / "ds" / "train.jsonl", 2)
    with pytest.raises(UsageError, match=r"`corpus_split` 'validation' not found in .*; available: \['train'\]"):
        CorpusConfig(corpus=str(tmp_path / "ds"), corpus_split="validation").files()
    with pytest.raises(UsageError, match="`corpus_config` 'business' not found in"):
        CorpusConfig(corpus=str(tmp_path / "ds"), corpus_config="business").files()


def test_a_dataset_folder_whose_layout_leaves_files_of_another_format_out_says_so(tmp_path, caplog):
    """`datasets` reads a folder's most common format only: .txt files beside a .jsonl and a .parquet read
    3 of 6 documents, silently. Said now, naming a glob that reads them all. What a layout leaves out on
    purpose is not: a split it does not name (holdout.jsonl), a licence or `dataset_infos.json` beside the
    data, files a README lists under `configs:` (with a BOM too), hidden folders."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hf_ipt.corpus import CorpusConfig

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(3):
        (folder / f"note{i}.txt").write_text(f"Plain text note {i}.")
    write_jsonl(folder / "b.jsonl", 2)
    pq.write_table(pa.table({"text": ["Parquet doc."]}), folder / "c.parquet")
    with caplog.at_level("WARNING", logger="hf_ipt.corpus"):
        assert len(CorpusConfig(corpus=str(folder)).files()) == 3
    assert re.search(r"'.*mixed' is read as `datasets` lays a dataset folder out, files of one format \(text here\): "
                     r"2 json/parquet file\(s\) below it are not read, such as '.*b\.jsonl'.*corpus='.*mixed/\*\*/\*\.\*'",
                     caplog.text)
    rows = list(load_augmented(f"{folder}/**/*.*", streaming=True, output="pairs"))
    assert len(rows) == 6  # the named glob reads every document

    def warned(path: Path) -> bool:
        caplog.clear()
        with caplog.at_level("WARNING", logger="hf_ipt.corpus"):
            CorpusConfig(corpus=str(path)).files()
        return "are not read" in caplog.text

    (folder / "README.md").write_text("\ufeff---\nconfigs:\n- config_name: default\n  data_files: '*.txt'\n---\n")
    assert not warned(folder)  # chosen on purpose
    layout = tmp_path / "layout"
    (layout / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a", "b"]}), layout / "data" / "train-00000-of-00001.parquet")
    (layout / "LICENSE.txt").write_text("MIT")
    (layout / "dataset_infos.json").write_text("{}")
    (layout / ".cache").mkdir()
    write_jsonl(layout / ".cache" / "x.jsonl", 1)  # hidden: skipped by `datasets` on purpose
    assert not warned(layout)
    splits = tmp_path / "splits"
    splits.mkdir()
    for name in ("train", "test", "holdout"):
        write_jsonl(splits / f"{name}.jsonl", 1)
    assert not warned(splits) and [os.path.basename(f) for f in CorpusConfig(corpus=str(splits)).files()] == [
        "train.jsonl"]


def test_files_with_an_upper_case_suffix_are_named_not_skipped_without_a_word(tmp_path, caplog):
    """`datasets` lays a folder out by lower-case suffixes: `B.JSONL` beside `a.jsonl` was left out silently,
    a folder of only such files said it held no data files, and a glob refused them without saying why."""
    from hf_ipt.corpus import CorpusConfig, MissingFileError

    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", 2)
    write_jsonl(folder / "B.JSONL", 2)
    with caplog.at_level("WARNING", logger="hf_ipt.corpus"):
        assert [os.path.basename(f) for f in CorpusConfig(corpus=str(folder)).files()] == ["a.jsonl"]
    assert re.search(r"`corpus` '.*data' holds 1 file\(s\) whose suffix is in upper case, such as '.*B\.JSONL': "
                     r"`datasets` reads lower-case suffixes only, so they are not read; rename them", caplog.text)
    with pytest.raises(UsageError, match=r"unsupported files such as '.*B\.JSONL'; .*\(in lower case: rename it\)"):
        CorpusConfig(corpus=str(folder / "*")).files()
    (folder / "a.jsonl").unlink()
    with pytest.raises(MissingFileError, match=r"holds no data files \(.*; '.*B\.JSONL' and 0 more have an "
                                               r"upper-case suffix: rename them\)"):
        CorpusConfig(corpus=str(folder)).files()
    (folder / "B.JSONL").rename(folder / "b.jsonl")
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_ipt.corpus"):
        assert len(CorpusConfig(corpus=str(folder)).files()) == 1
    assert "upper case" not in caplog.text


def test_only_a_parquet_files_content_errors_say_it_is_damaged():
    """`HfHubHTTPError` (a 429 reading a remote corpus Parquet) and system errors are `OSError`s too: they were
    reported as a damaged file to download again (and a unit's pairs were unmarked on them)."""
    import errno

    import pyarrow as pa
    from huggingface_hub.errors import HfHubHTTPError

    from hf_ipt.corpus import is_damage

    class TooManyRequests(HfHubHTTPError):
        def __init__(self) -> None:
            OSError.__init__(self, "429 Client Error: Too Many Requests")

    assert is_damage(OSError("Corrupt snappy compressed data.")) and is_damage(pa.ArrowInvalid("bad page"))
    for error in (TooManyRequests(), OSError(errno.EIO, "Input/output error"), pa.ArrowMemoryError("malloc"),
                  ConnectionError("reset"), TimeoutError(), FileNotFoundError("/x/pairs/00002.parquet")):
        assert not is_damage(error), error


def test_a_corpus_given_as_a_path_object_or_a_folder_is_named_by_its_last_part(tmp_path, monkeypatch):
    """`pathlib.Path` corpora failed (`startswith`); a folder's `corpus` column held its path as typed
    (`./news`, `/home/me/news/`: the home path in every row of a published dataset)."""
    from hf_ipt.corpus import CorpusConfig

    (tmp_path / "news").mkdir()
    write_jsonl(tmp_path / "news" / "train.jsonl", 2)
    assert CorpusConfig(corpus=tmp_path / "news" / "train.jsonl").corpus == str(tmp_path / "news" / "train.jsonl")
    monkeypatch.chdir(tmp_path)
    for given in ("news", "news/", "./news", f"{tmp_path}/news/"):
        assert CorpusConfig(corpus=given).corpus_name == "news", given
    monkeypatch.chdir(tmp_path / "news")
    assert CorpusConfig(corpus=".").corpus_name == "news"
    assert {r["corpus"] for r in load_augmented(tmp_path / "news", streaming=True, output="pairs")} == {"news"}


def test_a_corpus_under_the_home_folder_is_found_when_the_shell_did_not_expand_it(tmp_path, monkeypatch):
    """`--corpus "~/data/*.jsonl"` is quoted to keep the glob from the shell, so `~` reaches hf_ipt."""
    from hf_ipt.corpus import CorpusConfig

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "a.jsonl", 2)
    config = CorpusConfig(corpus="~/data/*.jsonl")
    assert config.files() == [str(tmp_path / "data" / "a.jsonl")] and config.corpus_name == "data"
    # the same for the other paths a YAML file or a quoted flag may give
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.jobs import JobConfig

    (tmp_path / "kw.txt").write_text("sales\n")
    assert SynthesisConfig(domain_keywords="~/kw.txt").domain_keywords == str(tmp_path / "kw.txt")
    assert JobConfig(corpus="~/data/*.jsonl", output_dir="~/out").output_dir == str(tmp_path / "out")


def test_blank_lines_before_the_rows_do_not_hide_a_wrong_text_column(tmp_path):
    """A blank first line has no column at all: it must not pass the file's `text_column` check."""
    from hf_ipt.corpus import CorpusConfig

    path = tmp_path / "lead.jsonl"
    path.write_text("\n  \r\n" + "".join(json.dumps({"body": doc(i)}) + "\n" for i in range(3)))
    with pytest.raises(UsageError, match=r"'text' is in none of the first 3 JSON objects.*keys \['body'\]"):
        CorpusConfig(corpus=str(path)).files()
    assert CorpusConfig(corpus=str(path), text_column="body").files() == [str(path)]
    empty_text = tmp_path / "empty_text.jsonl"  # the column is there, its text empty: the column is right
    empty_text.write_text(json.dumps({"text": ""}) + "\n" + json.dumps({"text": doc(0)}) + "\n")
    assert CorpusConfig(corpus=str(empty_text)).files() == [str(empty_text)]


def test_a_file_matched_twice_or_through_a_link_is_read_once(tmp_path, caplog):
    """Every document once: a pattern that matches a file twice, or a link to a matched file,
    must not give its documents (and ids) twice."""
    from hf_ipt.corpus import CorpusConfig

    (tmp_path / "d" / "sub").mkdir(parents=True)
    write_jsonl(tmp_path / "d" / "a.jsonl", 2)
    write_jsonl(tmp_path / "d" / "sub" / "b.jsonl", 2, start=10)
    files = CorpusConfig(corpus=str(tmp_path / "d" / "**" / "**" / "*.jsonl")).files()
    assert files == [str(tmp_path / "d" / "a.jsonl"), str(tmp_path / "d" / "sub" / "b.jsonl")]
    assert all_ids(make_shards(files, 2)) == ["a.jsonl:0", "a.jsonl:1", "sub/b.jsonl:0", "sub/b.jsonl:1"]
    (tmp_path / "d" / "latest.jsonl").symlink_to("a.jsonl")
    assert CorpusConfig(corpus=str(tmp_path / "d" / "*.jsonl")).files() == [str(tmp_path / "d" / "a.jsonl")]
    assert "latest.jsonl' is a link to" in caplog.text


def test_a_large_file_beside_small_ones_gets_parts_by_size(tmp_path):
    """Units are the work of a rank: a file 150x the size of the others is cut into most of the
    shards, not into as many as each small file, which left 3 of 8 units with all the work."""
    files = [str(write_jsonl(tmp_path / "big.jsonl", 3000)), str(write_jsonl(tmp_path / "s1.jsonl", 20, start=5000)),
             str(write_jsonl(tmp_path / "s2.jsonl", 20, start=6000))]
    shards = make_shards(files, 8)
    assert [(Path(s["files"][0]).name, s["parts"]) for s in shards] == [("big.jsonl", 6)] * 6 + [
        ("s1.jsonl", 1), ("s2.jsonl", 1)]
    assert [len(ids) for ids in shard_ids(shards)] == [500] * 6 + [20, 20]
    assert len(all_ids(shards)) == len(set(all_ids(shards))) == 3040  # every document in exactly one unit
    equal = [str(write_jsonl(tmp_path / f"e{k}.jsonl", 10, start=0)) for k in range(3)]  # same size: as before
    assert [s["parts"] for s in make_shards(equal, 8)] == [3, 3, 3, 3, 3, 3, 2, 2]


def test_a_misspelled_local_file_is_named_as_such_not_looked_up_on_the_hub(tmp_path, monkeypatch):
    """`data/genral` where data/ exists was taken for the Hub dataset data/genral (a 404, or offline an
    unreachable Hub); it is a local file that does not exist, and the closest one is named."""
    from hf_ipt.cli import MissingFileError
    from hf_ipt.corpus import CorpusConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "general.jsonl", 2)
    with pytest.raises(MissingFileError, match=r"^`corpus` 'data/genral': no such local file or folder \(did you "
                                               r"mean 'data/general.jsonl'\?\)"):
        CorpusConfig(corpus="data/genral")
    for name in ("c.jsnl", "news.csv"):  # a misspelt or unsupported file name was looked up as a Hub dataset id
        with pytest.raises(MissingFileError, match=rf"^`corpus` '{name}': no such local file, and a one-word Hub "
                                                   r"dataset id has no file suffix; a corpus file is \.txt, \.jsonl"):
            CorpusConfig(corpus=name)
    assert CorpusConfig(corpus="imdb").corpus == "imdb"
    assert CorpusConfig(corpus="org/news").corpus == "org/news"  # a Hub id: read when the corpus is


def test_glob_matches_says_what_glob_would_match(tmp_path, monkeypatch):
    """`glob_matches` (an output that a corpus glob would read back once written) agrees with `glob.glob` on
    the files that are there: ``**``, wildcards, hidden names, relative and absolute patterns."""
    import glob

    from hf_ipt.corpus import glob_matches

    monkeypatch.chdir(tmp_path)
    paths = ["data/a.jsonl", "data/out/data.parquet", "data/out/summary.json", "data/x/y/z.jsonl",
             "data/.hid/q.jsonl", "data/.h.jsonl", "other/b.jsonl", "data/out3/data.parquet"]
    for path in paths:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    patterns = ["data/**", "data/**/*", "data/*", "data/*/*.parquet", "data/**/*.parquet", "**/*.jsonl",
                "*/out*/data.parquet", "data/**/**/*.json", "data/o?t/*.json", "data/[ox]*/*", "data/.*",
                "data/.hid/*", "./data/**", f"{tmp_path}/data/**/*.parquet", "data/*/../a.jsonl"]
    for pattern in patterns:
        found = {os.path.abspath(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)}
        assert found  # each pattern matches something here
        for path in paths:
            assert glob_matches(pattern, path) == (os.path.abspath(path) in found), (pattern, path)
