"""`hf-ipt` as users run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq

from .test_builder import doc, write_jsonl


def hf_ipt(*args: str, **kwargs) -> subprocess.CompletedProcess:
    exe = shutil.which("hf-ipt") or f"{sys.prefix}/bin/hf-ipt"
    return subprocess.run([exe, *args], check=False, capture_output=True, text=True, **kwargs)


def test_help_lists_commands():
    out = hf_ipt("--help")
    assert out.returncode == 0 and "augment" in out.stdout
    assert hf_ipt("nonsense").returncode == 2


def test_augment_help():
    out = hf_ipt("augment", "--help")
    assert out.returncode == 0 and "--corpus" in out.stdout and "--synthesizer" in out.stdout


def test_augment_writes_parquet_and_summary(tmp_path):
    corpus = write_jsonl(tmp_path / "news.jsonl", 7)
    out = hf_ipt("augment", "--corpus", str(corpus), "--output_dir", str(tmp_path / "out"), "--seed", "3")
    assert out.returncode == 0, out.stderr
    table = pq.read_table(tmp_path / "out" / "data.parquet").to_pylist()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(table) == summary["rows"] == 7 and summary["pairs"] == sum(r["num_pairs"] for r in table) > 0
    assert all(doc(int(r["id"].split(":")[1])) in r["text"] for r in table)
    assert summary["synthesis"]["seed"] == 3
    # the `corpus` column: the file's name, as the builder and `hf-ipt synthesize` name it
    assert {r["corpus"] for r in table} == {"news.jsonl"} == {summary["corpus_name"]}


def test_augment_bundled_corpus_name_errors_clearly_or_resolves():
    from hf_ipt.augment_cli import resolve_corpus

    path = resolve_corpus("bbc-business")
    assert path.endswith("bbcnews/data/business/*.txt")
    assert resolve_corpus("data/*.jsonl") == "data/*.jsonl"


def test_a_refused_value_is_a_usage_error_not_a_traceback(tmp_path):
    corpus = str(write_jsonl(tmp_path / "news.jsonl", 2))
    for args, message in (
        (["augment", "--corpus", corpus, "--corpus_revision", "v1"], "`corpus_revision` ('v1') applies to a dataset"),
        (["augment", "--corpus", "bbc-business", "--corpus_revision", "v1"], "not to local files"),  # resolved first
        (["synthesize", "--corpus", corpus, "--num_shards", "0"], "`num_shards` must be >= 1, got 0"),
        (["augment", "--output_dir", str(tmp_path / "o")], "`corpus` is required"),
    ):
        out = hf_ipt(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "usage: hf-ipt" in out.stderr and message in out.stderr.splitlines()[-1], out.stderr


def test_augment_passes_corpus_revision_to_the_dataset_corpus(tmp_path, monkeypatch):
    import hf_ipt.corpus
    from hf_ipt.augment_cli import main

    repo = tmp_path / "org_news"
    (repo / "data").mkdir(parents=True)
    write_jsonl(repo / "data" / "train.jsonl", 3)
    asked, original = [], hf_ipt.corpus.repo_files

    def repo_files(corpus, config, split, revision, token=None):
        asked.append((config, split, revision))
        return original(corpus, config, split, revision, token)

    monkeypatch.setattr(hf_ipt.corpus, "repo_files", repo_files)
    assert main(["--corpus", str(repo), "--corpus_revision", "main", "--output_dir", str(tmp_path / "o")]) == 0
    assert asked == [(None, "train", "main")]
    assert len(pq.read_table(tmp_path / "o" / "data.parquet")) == 3
