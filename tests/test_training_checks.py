"""`check_data`: each recipe's data sources are checked (paths, columns) before any model load."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_ipt.training.checks import check_collection, check_data, check_source
from hf_ipt.training.config import ContinualPTConfig, PretrainConfig, SynthesizerConfig

REPO = Path(__file__).resolve().parents[1]


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture
def data(tmp_path) -> Path:
    _jsonl(tmp_path / "domain.jsonl", [{"text": "a domain text", "id": 0}])
    _jsonl(tmp_path / "body.jsonl", [{"body": "text under another name", "id": 0}])
    _jsonl(tmp_path / "general.jsonl", [{"question": "q?", "response": "r"}])
    _jsonl(tmp_path / "qa.jsonl", [{"instruction": "q?", "output": "r"}])
    pq.write_table(pa.table({"text": ["raw one", "raw two"]}), tmp_path / "raw.parquet")
    (tmp_path / "raw_txt").mkdir()
    (tmp_path / "raw_txt" / "0.txt").write_text("one raw document")
    _jsonl(tmp_path / "folder_ds" / "train.jsonl", [{"text": "a row of a dataset folder"}])
    for name in ("squad", "race"):
        _jsonl(tmp_path / "collection" / name / "shard" / "00000.jsonl",
               [{"context": "c", "QA_list": [{"Q": "q", "A": "a"}]}])
    _jsonl(tmp_path / "pairs_collection" / "squad" / "shard" / "00000.jsonl",
           [{"context": "c", "pairs": [["q", "a"]]}])
    (tmp_path / "flat").mkdir()
    _jsonl(tmp_path / "flat" / "rows.jsonl", [{"context": "c", "QA_list": []}])
    return tmp_path


def _raises(config, *patterns: str) -> None:
    with pytest.raises(ValueError) as info:
        check_data(config)
    for pattern in patterns:
        assert re.search(pattern, str(info.value)), (pattern, str(info.value))


def test_continual_pt_sources(data, monkeypatch):
    good = {"domain_dataset": str(data / "domain.jsonl"), "general_dataset": str(data / "general.jsonl")}
    check_data(ContinualPTConfig(**good))
    check_data(ContinualPTConfig(domain_dataset=str(data / "*.parquet")))
    # a Hub id is no path (offline, as here, `check_data` wants it in the HF cache: test_offline, test_hub_corpus)
    check_source("--general_dataset", "Open-Orca/OpenOrca", {"question": "--question_column"})
    check_data(ContinualPTConfig(domain_dataset=str(data / "folder_ds")))  # a dataset folder
    check_data(ContinualPTConfig(domain_dataset=str(data / "body.jsonl"), text_column="body"))
    missing = str(data / "missing.jsonl")
    _raises(ContinualPTConfig(domain_dataset=missing), "`--domain_dataset`", re.escape(repr(missing)), "matched no file")
    _raises(ContinualPTConfig(domain_dataset="/no/such/folder"), "`--domain_dataset`", "neither an existing local")
    monkeypatch.chdir(data)  # `raw_txt/typo` names a folder that exists here: a mistyped path, not a Hub id
    _raises(ContinualPTConfig(domain_dataset="raw_txt/typo"), "`--domain_dataset`", "neither an existing local")
    _raises(ContinualPTConfig(domain_dataset=str(data / "body.jsonl")),
            "`--domain_dataset`", "no 'text' \\(set by `--text_column`\\) column", re.escape("['body', 'id']"))
    _raises(ContinualPTConfig(domain_dataset=str(data / "folder_ds"), text_column="body"),
            "`--domain_dataset`", "`--text_column`", re.escape("['text']"))
    _raises(ContinualPTConfig(**{**good, "general_dataset": str(data / "qa.jsonl")}),
            "`--general_dataset`", "`--question_column`", "`--response_column`", re.escape("['instruction', 'output']"))
    check_data(ContinualPTConfig(**{**good, "general_dataset": str(data / "qa.jsonl")},
                                 question_column="instruction", response_column="output"))
    # a YAML list passes the parser untyped: refused with the fix, not an AttributeError
    _raises(ContinualPTConfig(domain_dataset=[good["domain_dataset"], good["domain_dataset"]]),
            "`domain_dataset` takes one source", "not list", "one glob")


def test_pretrain_sources(data):
    good = {
        "tokenizer_name_or_path": "t",
        "raw_dataset": str(data / "raw_txt" / "*.txt"),
        "augmented_dataset": str(data / "domain.jsonl"),
        "collection": str(data / "collection"),
    }
    check_data(PretrainConfig(**good))
    check_data(PretrainConfig(**{**good, "raw_dataset": str(data / "raw.parquet")}))
    check_collection("instruction-pretrain/ft-instruction-synthesizer-collection", {"QA_list": "--pairs_column"})
    _raises(PretrainConfig(**{**good, "raw_dataset": str(data / "raw" / "*.parquet")}), "`--raw_dataset`", "matched no file")
    _raises(PretrainConfig(**{**good, "augmented_dataset": str(data / "body.jsonl")}),
            "`--augmented_dataset`", "`--text_column`", re.escape("['body', 'id']"))
    _raises(PretrainConfig(**{**good, "raw_dataset": str(data / "raw_txt" / "*.txt"), "text_column": "body",
                              "augmented_dataset": None}), "`--raw_dataset`", re.escape("['text']"))
    _raises(PretrainConfig(**{**good, "collection": str(data / "nowhere" / "collection")}),
            "`--collection`", "neither a local folder")
    _raises(PretrainConfig(**{**good, "collection": str(data / "flat")}),
            "`--collection`", re.escape("*/shard/*.jsonl"), "'rows.jsonl'")
    _raises(PretrainConfig(**{**good, "collection": str(data / "pairs_collection")}),
            "`--collection`", "'QA_list' \\(set by `--pairs_column`\\)", re.escape("['context', 'pairs']"))
    _raises(PretrainConfig(**good, context_column="passage"), "`--collection`", "`--context_column`")


def test_synthesizer_sources(data):
    check_data(SynthesizerConfig(collection=str(data / "collection")))
    check_data(SynthesizerConfig(collection=str(data / "pairs_collection"), pairs_column="pairs"))
    _raises(SynthesizerConfig(collection=str(data / "missing")), "`--collection`", "neither a local folder")
    _raises(SynthesizerConfig(collection=str(data / "collection"), pairs_column="pairs"),
            "`--collection`", "`--pairs_column`", re.escape("['QA_list', 'context']"))


def test_fixed_columns_and_empty_files(data):
    with pytest.raises(ValueError, match="no 'question' or 'response' columns;.*Rename the data's columns"):
        check_source("--general_dataset", str(data / "qa.jsonl"), {"question": None, "response": None})
    (data / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="`--x` .*hold no rows"):
        check_source("--x", str(data / "empty.jsonl"), {"text": None})
    (data / "bad.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="`--x`: the first line of .* is not JSON"):
        check_source("--x", str(data / "bad.jsonl"), {"text": None})


def test_demo_general_dataset_is_a_usage_error(data, capsys):
    from hf_ipt.demo import DemoConfig, main

    DemoConfig(general_dataset=str(data / "general.jsonl"))
    with pytest.raises(ValueError, match="`--general_dataset`.*'question'.*'response'"):
        DemoConfig(general_dataset=str(data / "qa.jsonl"))
    with pytest.raises(SystemExit) as info:
        main(["--general_dataset", str(data / "genral.jsonl")])
    assert info.value.code == 2
    assert "`--general_dataset`" in capsys.readouterr().err


def test_recipe_checks_data_before_loading_the_model(tmp_path):
    """A missing --domain_dataset is named, with exit status 2, although the model does not exist either (a Hub
    id: a missing local folder is named first, `check_model_args`)."""
    cmd = [sys.executable, "recipes/continual_pt.py", "--domain_dataset", str(tmp_path / "missing.jsonl"),
           "--model_name_or_path", "no-org/no-model", "--output_dir", str(tmp_path / "out"),
           "--max_steps", "1", "--use_cpu", "true", "--bf16", "false", "--report_to", "none"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=os.environ.copy(), timeout=300,
                         check=False)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "`--domain_dataset`" in res.stderr and "missing.jsonl" in res.stderr
    assert "no-model" not in res.stderr  # the model was never looked for


PIN_WORKER = """
import os, sys
import torch.distributed
import hf_ipt.training.checks as checks
from hf_ipt.cli import UsageError
from hf_ipt.training.config import ContinualPTConfig

rank = int(os.environ["RANK"])
if sys.argv[1] == "moving":  # the branch moves between the ranks' lookups: each would see another commit
    checks.pin_hub_url = lambda url: url.replace("hf://datasets/org/news/", f"hf://datasets/org/news@{rank:040d}/")
else:  # the lookup fails on the main process only: the others must not wait forever
    def fail(url):
        raise UsageError(f"`corpus` {url!r}: no dataset repo 'org/news'")
    checks.pin_hub_url = fail if rank == 0 else (lambda url: url)
torch.distributed.init_process_group("gloo")  # as the recipes' TrainingArguments do
config = ContinualPTConfig(domain_dataset="hf://datasets/org/news/data/*.jsonl")
try:
    line = f"rank {rank}: {checks.pin_hub_sources(config)['domain_dataset']}"
except UsageError as error:
    line = f"rank {rank} error: {error}"
os.write(1, (line + "\\n").encode())  # one write: two ranks' print() parts interleaved on the shared pipe
"""


@pytest.mark.parametrize("case", ["moving", "failing"])
def test_url_sources_are_pinned_once_for_every_rank(tmp_path, case):
    from .test_recipes import _free_port, _port_taken, _Retry, _run

    script = tmp_path / "pin.py"
    script.write_text(PIN_WORKER)
    for attempt in (1, 2):  # the recipes' launcher: a free port, a hang shows stacks, a taken port retried once
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                   _free_port(), str(script), case]
        try:
            output = _run(command, timeout=300, retry_if=_port_taken if attempt == 1 else None)
            break
        except _Retry:
            continue
    lines = sorted(line for line in output.splitlines() if line.startswith("rank "))
    if case == "moving":
        pinned = f"hf://datasets/org/news@{0:040d}/data/*.jsonl"
        assert lines == [f"rank 0: {pinned}", f"rank 1: {pinned}"]  # rank 0's commit on both
    else:
        assert lines == [f"rank {r} error: `--domain_dataset` 'hf://datasets/org/news/data/*.jsonl': no dataset repo "
                         "'org/news'" for r in (0, 1)]


def test_an_empty_json_file_first_in_a_glob_is_skipped_as_the_stream_skips_it(tmp_path):
    """datasets' JSON reader raised a bare StopIteration on an empty first file; the stream reads the others."""
    from hf_ipt.training.data import load_rows

    (tmp_path / "part-0.json").write_text("")  # an export shard that came out empty
    (tmp_path / "part-1.json").write_text(json.dumps([{"text": "a document"}]))
    source = str(tmp_path / "part-*.json")
    check_source("--domain_dataset", source, {"text": "--text_column"})
    assert [row["text"] for row in load_rows(source)] == ["a document"]
    with pytest.raises(ValueError, match="its files hold no rows"):
        check_source("--domain_dataset", str(tmp_path / "part-0.json"), {"text": "--text_column"})
    with pytest.raises(ValueError, match="has no 'body'"):
        check_source("--domain_dataset", source, {"body": "--text_column"})


def test_a_save_to_disk_folder_is_refused_naming_the_export(tmp_path):
    """The builder's non-streaming output saved with `save_to_disk` failed with datasets' "Please use
    `load_from_disk` instead", which no recipe flag can do."""
    import datasets

    from hf_ipt.cli import UsageError

    rows = datasets.Dataset.from_dict({"text": ["one document", "another"]})
    rows.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": rows}).save_to_disk(str(tmp_path / "saved_dict"))
    for folder in ("saved", "saved_dict"):
        with pytest.raises(UsageError, match=r"is a dataset written by `save_to_disk` .* export it once, e\.g\. "
                                             r"`datasets\.load_from_disk\("):
            check_source("--domain_dataset", str(tmp_path / folder), {"text": "--text_column"})


def test_a_folder_whose_layout_leaves_files_of_another_format_out_says_so(tmp_path, caplog):
    """As synthesis says it of a corpus folder (`corpus.warn_left_out`): `datasets` reads one format of a
    folder, so the .jsonl beside .txt documents were left out of training silently. Warned now, under the
    option that named the folder; a folder of one format is not."""
    folder = tmp_path / "domain"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text(f"domain document {i}")
    _jsonl(folder / "_more" / "extra.jsonl", [{"text": "left out"}])  # `datasets` reads `_` folders, not `__`
    _jsonl(folder / "__pycache__" / "skipped.jsonl", [{"text": "skipped on purpose"}])
    with caplog.at_level("WARNING", logger="hf_ipt"):
        check_source("--domain_dataset", str(folder), {"text": "--text_column"})
    assert re.search(r"`--domain_dataset` '.*domain' is read as `datasets` lays a dataset folder out, files of one "
                     r"format \(text here\): 1 json file\(s\) below it are not read, such as '.*extra\.jsonl'.* "
                     r"--domain_dataset '.*domain/\*\*/\*\.\*'", caplog.text)
    (folder / "_more" / "extra.jsonl").unlink()
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_ipt"):
        check_source("--domain_dataset", str(folder), {"text": "--text_column"})
    assert "are not read" not in caplog.text


def test_a_synthesis_output_folder_is_read_as_its_data_files_only(tmp_path):
    """An `hf-ipt synthesize` job folder given as a source was read by `datasets` as a dataset folder:
    its JSON job files (job.json, the done-markers in pairs/, rejects.jsonl, ...) were the rows, and the
    check said the folder had no 'text' column; the stream's file record and the multi-process split
    counted those files too. Now the source is the data files its manifest lists, as for the corpus of
    `hf-ipt augment`; an unfinished job and a `--output pairs` job are refused naming the folder."""
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.augment_cli import AugmentArguments
    from hf_ipt.augment_cli import run as augment
    from hf_ipt.cli import UsageError
    from hf_ipt.corpus import repo_files
    from hf_ipt.jobs import JobConfig, run_job
    from hf_ipt.training.data import load_rows, unequal_files
    from hf_ipt.training.trainer import source_files

    from .test_builder import write_jsonl

    corpus = str(write_jsonl(tmp_path / "news.jsonl", 6))
    job, pairs = str(tmp_path / "job"), str(tmp_path / "pairs")
    manifest = run_job(JobConfig(corpus=corpus, output_dir=job, num_shards=2), progress=False)
    run_job(JobConfig(corpus=corpus, output_dir=pairs, num_shards=2), SynthesisConfig(output="pairs"), progress=False)
    assert {"job.json", "pairs", "rejects.jsonl"} <= set(os.listdir(job))  # the job files beside data/
    data = [os.path.join(job, f) for f in manifest["data_files"]]
    text = {"text": "--text_column"}
    check_source("--augmented_dataset", job, text)
    assert list(load_rows(job)) == pa.concat_tables([pq.read_table(f) for f in data]).to_pylist()
    assert repo_files(job, None, "train", None) == data  # as a corpus (`hf-ipt augment --corpus job`)
    assert source_files({"augmented_dataset": job})["augmented_dataset"].startswith("2 files ")
    sizes = [os.path.getsize(f) for f in data]
    assert unequal_files(job, 2) == (max(sizes) > 1.1 * min(sizes))  # decided on the data files alone

    augmented = str(tmp_path / "augmented")
    augment(AugmentArguments(corpus=corpus, output_dir=augmented), SynthesisConfig())
    check_source("--augmented_dataset", augmented, text)
    assert source_files({"augmented_dataset": augmented})["augmented_dataset"].startswith("1 files ")  # not summary.json

    for source in (pairs, os.path.join(pairs, "data", "*.parquet")):
        where = "" if source == pairs else f" (of {pairs!r})"
        with pytest.raises(UsageError, match=re.escape(
                f"`--augmented_dataset` {source!r} is synthesis output{where} written with `--output pairs`: rows of "
                "question-answer pairs, not training text. Synthesize with `--output templified` (the default)")):
            check_source("--augmented_dataset", source, text)
    os.unlink(os.path.join(job, "manifest.json"))  # as if its last rank had not finished
    with pytest.raises(UsageError, match=re.escape(f"{job!r} holds an `hf-ipt synthesize` job that is not finished "
                                                   "(no manifest.json): rerun `hf-ipt synthesize`")):
        check_source("--augmented_dataset", job, text)


def test_a_misspelled_local_source_names_the_closest_file(tmp_path, monkeypatch):
    """`data/genral` (data/ exists) is no Hub id; the error said only "fix the path"."""
    from hf_ipt.cli import UsageError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "general.jsonl").write_text('{"text": "a"}\n')
    with pytest.raises(UsageError, match=r"^`--domain_dataset` 'data/genral' is neither an existing local file, glob or "
                                         r"folder \(relative to .*\) \(did you mean 'data/general.jsonl'\?\) nor a Hub"):
        check_source("--domain_dataset", "data/genral", {"text": "--text_column"})
