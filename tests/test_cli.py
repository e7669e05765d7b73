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
    return subprocess.run([exe, *args], capture_output=True, text=True, **kwargs)


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


def test_augment_bundled_corpus_name_errors_clearly_or_resolves():
    from hf_ipt.augment_cli import resolve_corpus

    path = resolve_corpus("bbc-business")
    assert path.endswith("bbcnews/data/business/*.txt")
    assert resolve_corpus("data/*.jsonl") == "data/*.jsonl"
