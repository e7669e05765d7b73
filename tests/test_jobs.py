"""`hf-ipt synthesize` jobs: SIGKILL + resume, two ranks, bad input, layout and settings."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_ipt.augment import ENGINE_SETTINGS, SynthesisConfig
from hf_ipt.builder import load_augmented
from hf_ipt.chaining import MARKERS_ONLY, ChainEntry
from hf_ipt.cli import COMMANDS
from hf_ipt.filters import FilterConfig
from hf_ipt.jobs import JobConfig, UnitStats, entry_rows, run_job, world_from_env, write_atomic
from hf_ipt.synthesize_cli import main

from .test_builder import doc, write_jsonl
from .test_cli import hf_ipt

NO_FILTERS = FilterConfig(filter_ungrounded=False, filter_degenerate=False, filter_copied_questions=False,
                          dedup=False)


def output_rows(out: Path) -> list[dict]:
    """Every output row, unit after unit, in file order."""
    return [row for f in sorted(glob.glob(str(out / "data" / "*.parquet"))) for row in pq.read_table(f).to_pylist()]


def manifest_of(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["settings"]["job"].pop("output_dir")
    return manifest


def synthesize_cmd(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hf_ipt.synthesize_cli", "--corpus", str(corpus), "--output_dir", str(out),
            "--num_shards", "6", "--window_size", "40", *extra]


def kill_when(cmd: list[str], ready, what: str) -> None:
    """Start `cmd`, SIGKILL it as soon as `ready()` holds; it must die by the kill, not finish."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None and not ready():
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the job ended before the kill {what}: {err.decode()[-2000:]}"


def test_sigkill_at_several_points_then_resume_equals_uninterrupted_run(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", 800)
    write_jsonl(tmp_path / "b.jsonl", 500, start=800)
    corpus, out = tmp_path / "*.jsonl", tmp_path / "killed"
    reference = tmp_path / "reference"  # the same job uninterrupted (in-process: same code, same defaults)
    run_job(JobConfig(corpus=str(corpus), output_dir=str(reference), num_shards=6), SynthesisConfig(window_size=40),
            progress=False)
    cmd = synthesize_cmd(corpus, out)

    def markers() -> list[str]:
        return glob.glob(str(out / "pairs" / "*.json"))

    kill_when(cmd, lambda: len(markers()) >= 1, "after the first unit")
    first_done = sorted(markers())
    stamp = os.stat(first_done[0]).st_mtime_ns
    # mid-write: a unit's Parquet temporary is open and being filled, the marker count is past the last kill
    kill_when(cmd, lambda: len(markers()) > len(first_done) and glob.glob(str(out / "pairs" / "*.parquet.tmp-*")),
              "mid-shard-write")
    assert glob.glob(str(out / "pairs" / "*.parquet.tmp-*"))  # killed with a half-written shard on disk
    kill_when(cmd, lambda: glob.glob(str(out / "data" / "*.parquet")), "while writing the output shards")
    assert not (out / "manifest.json").exists()

    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert os.stat(first_done[0]).st_mtime_ns == stamp  # resumed: finished units were not redone
    rows, expected = output_rows(out), output_rows(reference)
    assert len(rows) == len(expected) == 1300 and rows == expected  # row for row
    assert manifest_of(out) == manifest_of(reference)
    assert [r["id"] for r in rows] == [r["id"] for r in expected] and len({r["id"] for r in rows}) == 1300
    assert not glob.glob(str(out / "**" / "*.tmp*"), recursive=True)


def test_two_ranks_with_torchrun_cover_every_unit_once(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", 70)
    write_jsonl(tmp_path / "b.jsonl", 45, start=70)
    corpus, out = tmp_path / "*.jsonl", tmp_path / "two"
    torchrun = Path(sys.executable).parent / "torchrun"
    launch = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "hf_ipt.synthesize_cli",
                             "--corpus", str(corpus), "--output_dir", str(out), "--num_shards", "4",
                             "--output", "pairs"], check=False, capture_output=True, text=True, timeout=900)
    assert launch.returncode == 0, launch.stderr[-3000:]
    units = [json.loads(Path(f).read_text()) for f in sorted(glob.glob(str(out / "pairs" / "*.json")))]
    assert [u["unit"] for u in units] == [0, 1, 2, 3]  # 2 files x 2 parts
    assert [u["rank"] for u in units] == [0, 1, 0, 1]  # disjoint: unit i is rank i % 2's
    by_rank = {r: [d for u in units if u["rank"] == r for d in _unit_ids(out, u["unit"])] for r in (0, 1)}
    assert by_rank[0] and by_rank[1] and not set(by_rank[0]) & set(by_rank[1])
    expected = sorted([f"a.jsonl:{i}" for i in range(70)] + [f"b.jsonl:{i}" for i in range(45)])
    assert sorted(by_rank[0] + by_rank[1]) == expected  # complete
    single = tmp_path / "one"
    run_job(JobConfig(corpus=str(corpus), output_dir=str(single), num_shards=4), SynthesisConfig(output="pairs"),
            progress=False)
    assert output_rows(out) == output_rows(single)


def _unit_ids(out: Path, unit: int) -> list[str]:
    return pq.read_table(out / "pairs" / f"{unit:05d}.parquet", columns=["id"]).column("id").to_pylist()


def test_bad_documents_one_per_hundred_are_rejected_and_no_good_one_is_lost(tmp_path):
    lines, bad = [], {}
    for i in range(500):
        if i % 100 == 37:
            kind = ["empty", "binary", "not utf-8", "too long", "invalid json"][i // 100]
            bad[f"corpus.jsonl:{i}"] = kind
            lines.append({"empty": b'{"text": "  "}', "binary": b'{"text": "bin\\u0000ary"}',
                          "not utf-8": b'{"text": "caf\xe9"}', "invalid json": b'{"text": ',
                          "too long": json.dumps({"text": "long " * 2000}).encode()}[kind])
        else:
            lines.append(json.dumps({"text": doc(i)}).encode())
    (tmp_path / "corpus.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    result = hf_ipt("synthesize", "--corpus", str(tmp_path / "corpus.jsonl"), "--output_dir", str(out),
                    "--max_doc_chars", "5000", "--num_shards", "3")
    assert result.returncode == 0, result.stderr
    good = sorted(f"corpus.jsonl:{i}" for i in range(500) if f"corpus.jsonl:{i}" not in bad)
    rows = output_rows(out)
    assert sorted(d for r in rows for d in r["doc_ids"]) == good
    for r in rows:  # each good text is whole inside its row
        assert all(doc(int(d.split(":")[1])) in r["text"] for d in r["doc_ids"])
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["id"]: r["reason"] for r in rejects} == bad
    manifest = manifest_of(out)
    assert manifest["rejects"] == {reason: 1 for reason in bad.values()}
    assert manifest["docs"] == {"read": 500, "rejected": 5, "kept": 495}
    assert "5 rejected" in result.stdout


def test_engine_rejected_prompts_go_to_the_rejects():
    ok = ChainEntry(0, 0, 0, "Some text here.", "Some text here.")
    failed = ChainEntry(1, 0, 1, "Other text.", "Other text.", error="prompt of 9000 tokens exceeds the budget")
    stats = UnitStats()
    rows = entry_rows([ok, failed], ["d0", "d1"], 0, FilterConfig(), stats)
    assert [r["id"] for r in rows] == ["d0"]
    assert stats.rejected == [{"id": "d1", "reason": "engine error",
                               "detail": "prompt of 9000 tokens exceeds the budget"}]
    blank = ChainEntry(0, 0, 0, "<s></s>", "  ", error=MARKERS_ONLY)
    assert entry_rows([blank], ["d2"], 0, FilterConfig(), stats) == []
    assert stats.rejected[-1] == {"id": "d2", "reason": "markers only", "detail": ""}


def test_filters_emptying_an_entry_keep_the_chain_synthesis_made():
    """A -> B -> C chained at synthesis; the filters (or dedup) then remove all of B's pairs. C's
    prompt still held A and B, so A and C stay one text (B's raw text apart), as the reference
    renders an entry whose pairs it drops; B must not start a new chain with C."""
    from hf_ipt.augment import Augmenter
    from hf_ipt.jobs import _entry
    from hf_ipt.protocol import Pair

    pairs = [Pair("What rose?", "Sales."), Pair("Who reported?", "The firm.")]
    a = ChainEntry(0, 0, 0, "TEXT A", "TEXT A", pairs=pairs)
    b = ChainEntry(1, 1, 0, "TEXT B", "TEXT B", shots=(0,), parent=0, pairs=pairs)
    c = ChainEntry(2, 2, 0, "TEXT C", "TEXT C", shots=(0, 1), parent=1, pairs=pairs)
    rows = entry_rows([a, b, c], ["a", "b", "c"], 0, NO_FILTERS, UnitStats())
    assert [r["parent_row"] for r in rows] == [None, 0, 1]
    entries = [_entry(i, row, drop={(1, 0), (1, 1)}) for i, row in enumerate(rows)]  # B's pairs removed
    out = Augmenter(SynthesisConfig()).render(entries, ["a", "b", "c"])
    assert out["doc_ids"] == [["a", "c"], ["b"]] and out["num_pairs"] == [4, 0]
    # units written before `parent_row` existed: every entry linked to its last shot, as then
    legacy = [{k: v for k, v in row.items() if k != "parent_row"} for row in rows]
    assert [_entry(i, row, drop=set()).parent for i, row in enumerate(legacy)] == [None, 0, 1]


def test_job_without_filters_equals_the_builder_row_for_row(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", 30)
    synthesis = SynthesisConfig(window_size=8, rounds=2)
    manifest = run_job(JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=3), synthesis,
                       NO_FILTERS, progress=False)
    built = list(load_augmented(str(corpus), streaming=True, num_shards=3, window_size=8))
    assert output_rows(tmp_path / "o") == built
    assert manifest["rows"] == len(built) and manifest["pairs"]["kept"] == sum(r["num_pairs"] for r in built)
    loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "o" / "data" / "*.parquet"), split="train")
    assert loaded.num_rows == len(built)


def test_chained_model_synthesis_job_equals_the_builder_and_resumes_to_the_same_output(
    tmp_path, tiny_synthesizer_dir, monkeypatch
):
    """M-shot chains across windows, rendered by the job from its stage-1 rows (`shot_rows`, parent
    links rebuilt) must equal the builder's texts; a unit redone after a crash changes nothing.
    Report 5's completion is blanked: it gets no pairs, so it is a raw text of its own, and the
    chain before it keeps its layout (the reference's `inherit_from_prev=False`)."""
    import dataclasses

    from hf_ipt.backends.transformers import TransformersBackend

    original = TransformersBackend.generate

    def generate(self, prompts):
        results = original(self, prompts)
        last = [self.tokenizer.decode(ids).rsplit("<CON>", 1)[-1] for ids in prompts]
        return [dataclasses.replace(r, text="") if "Market report 5\n" in c else r for r, c in zip(results, last)]

    monkeypatch.setattr(TransformersBackend, "generate", generate)
    corpus = write_jsonl(tmp_path / "c.jsonl", 8)
    settings = {"synthesizer": str(tiny_synthesizer_dir), "backend": "transformers", "rounds": 2,
                "max_new_tokens": 40, "window_size": 4}
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2)
    manifest = run_job(job, SynthesisConfig(**settings), NO_FILTERS, progress=False)
    rows = output_rows(tmp_path / "o")
    # unit 0 holds reports 0, 2, 4, 6 and unit 1 reports 1, 3, 5, 7 (every 2nd line of the file), one
    # window each, rounds of two texts chained by position: 0->4, 2->6; 1->5, 3->7. Report 5 saw
    # report 1 as its shot but gave no pair: report 1 stands alone, report 5 is raw text.
    assert [(r["doc_ids"], r["num_pairs"]) for r in rows] == [
        (["c.jsonl:0", "c.jsonl:4"], 4), (["c.jsonl:2", "c.jsonl:6"], 4),
        (["c.jsonl:1"], 2), (["c.jsonl:5"], 0), (["c.jsonl:3", "c.jsonl:7"], 4)]
    assert rows[3]["text"] == doc(5)
    assert manifest["chain"]["prompts"] == 8 and manifest["chain"]["chains_cut"] == 0
    built = list(load_augmented(str(corpus), streaming=True, num_shards=2, **settings))
    assert rows == built
    # a crash after unit 1 was synthesized but before the output: the rerun redoes it, same result
    os.remove(tmp_path / "o" / "pairs" / "00001.json")
    os.remove(tmp_path / "o" / "manifest.json")
    for f in glob.glob(str(tmp_path / "o" / "data" / "*.parquet")):
        os.remove(f)
    assert run_job(job, SynthesisConfig(**settings), NO_FILTERS, progress=False)["rows"] == len(rows)
    assert output_rows(tmp_path / "o") == rows


def test_dedup_is_reported_and_rerun_is_refused_with_other_settings(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", 24)  # doc(i) repeats every 4 texts: many duplicate pairs
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2)
    manifest = run_job(job, SynthesisConfig(output="pairs"), progress=False)
    removed = manifest["filters_removed"]["near_duplicate"]
    kept = sum(len(r["pairs"]) for r in output_rows(tmp_path / "o"))
    assert removed > 0 and kept == manifest["pairs"]["kept"] == manifest["pairs"]["synthesized"] - removed
    dedup = json.loads((tmp_path / "o" / "dedup.json").read_text())
    assert sum(len(v) for v in dedup.values()) == removed
    assert run_job(job, SynthesisConfig(output="pairs"), progress=False) == manifest  # done: nothing to do
    with pytest.raises(ValueError, match="holds a different job.*synthesis"):
        run_job(job, SynthesisConfig(output="pairs", seed=1), progress=False)


def test_dedup_removes_a_units_pairs_that_an_earlier_unit_holds(tmp_path):
    """Near-duplicates are removed corpus-wide, not per unit: a second file repeating the first one's texts (its
    own unit) keeps none of its pairs but those too short to be deduplicated, and the first file's rows are as
    in a job of that file alone."""
    write_jsonl(tmp_path / "a.jsonl", 4)
    write_jsonl(tmp_path / "b.jsonl", 4)  # the same four texts
    alone = run_job(JobConfig(corpus=str(tmp_path / "a.jsonl"), output_dir=str(tmp_path / "alone"), num_shards=1),
                    SynthesisConfig(output="pairs"), progress=False)
    job = JobConfig(corpus=str(tmp_path / "*.jsonl"), output_dir=str(tmp_path / "o"), num_shards=2)
    manifest = run_job(job, SynthesisConfig(output="pairs"), progress=False)
    assert manifest["num_units"] == 2 and alone["pairs"]["kept"] > 0
    rows = output_rows(tmp_path / "o")
    first = [r for r in rows if r["id"].startswith("a.jsonl")]
    assert [(r["id"], r["pairs"]) for r in first] == [(r["id"], r["pairs"]) for r in output_rows(tmp_path / "alone")]
    from hf_ipt.filters import FilterConfig, words

    # what the second file keeps: only pairs too short to be deduplicated ('Give this text a title.' + its title)
    short = FilterConfig().dedup_min_words
    second = [p for r in rows if r["id"].startswith("b.jsonl") for p in r["pairs"]]
    assert all(len(words(f"{p['question']} {p['answer']}")) < short for p in second), second
    assert manifest["filters_removed"]["near_duplicate"] == (alone["filters_removed"]["near_duplicate"]
                                                             + alone["pairs"]["synthesized"] - len(second))


def test_missing_datasketch_is_refused_before_any_unit_is_synthesized(tmp_path, monkeypatch):
    """It was found by stage 2 only, after every unit was synthesized (hours of GPU time), and the
    fix it named, --no_dedup, was then refused: job.json pinned `dedup` once a unit was done."""
    corpus = write_jsonl(tmp_path / "c.jsonl", 12)
    monkeypatch.setitem(sys.modules, "datasketch", None)  # `import datasketch` raises ImportError
    out = tmp_path / "o"
    with pytest.raises(ImportError, match=r"datasketch.*--no_dedup") as raised:
        run_job(JobConfig(corpus=str(corpus), output_dir=str(out), num_shards=2), progress=False)
    assert isinstance(raised.value, ValueError)  # a usage error: the CLI exits 2 with the message
    assert not glob.glob(str(out / "pairs" / "*"))  # nothing synthesized
    manifest = run_job(JobConfig(corpus=str(corpus), output_dir=str(out), num_shards=2),
                       filters=replace(FilterConfig(), dedup=False), progress=False)
    assert manifest["docs"]["read"] == 12  # the fix it names works


def test_ranks_from_launcher_environment():
    assert world_from_env({}) == (0, 1)
    assert world_from_env({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    slurm = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert world_from_env(slurm) == (2, 4)
    with pytest.raises(ValueError, match="outside a world"):
        world_from_env({"RANK": "2", "WORLD_SIZE": "2"})
    # `srun -n 3`: SLURM_STEP_NUM_TASKS is set by srun only; a batch script's SLURM_NTASKS is not a step
    assert world_from_env({"SLURM_STEP_NUM_TASKS": "3", "SLURM_PROCID": "2", "SLURM_NTASKS": "3"}) == (2, 3)
    assert world_from_env({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}) == (0, 1)
    assert world_from_env({**slurm, "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}) == (5, 8)  # array x step
    with pytest.raises(ValueError, match="WORLD_SIZE=2 is set but RANK is not"):
        world_from_env({"WORLD_SIZE": "2"})
    assert world_from_env({"WORLD_SIZE": "1"}) == (0, 1)
    assert world_from_env({"RANK": "0"}) == (0, 1)
    assert world_from_env({**slurm, "RANK": "1"}) == (2, 4)  # a stray RANK alone: the array decides
    # `--array=0-15:2`: ids 0, 2, ..., 14 are 8 tasks; id 14 was rank 14 of 8 (refused)
    stepped = {"SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_STEP": "2"}
    assert [world_from_env({**stepped, "SLURM_ARRAY_TASK_ID": str(i)}) for i in (0, 2, 14)] == [(0, 8), (1, 8), (7, 8)]
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_ID=3 is not SLURM_ARRAY_TASK_MIN \\+ a multiple of "
                       "SLURM_ARRAY_TASK_STEP=2: give the array as a range"):
        world_from_env({**stepped, "SLURM_ARRAY_TASK_ID": "3"})


def test_a_launcher_environment_that_cannot_work_is_a_usage_error():
    """Reported like a wrong flag (exit status 2, no traceback), with the variable named."""
    from hf_ipt.cli import UsageError

    for env, message in (
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "rank 2 is outside a world of 2"),
        ({"RANK": "one", "WORLD_SIZE": "2"}, "RANK='one' is set in the environment: a whole number is needed"),
        ({"SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_ID is not set in the environment"),
        # by hand, WORLD_SIZE forgotten: each process would silently do every unit
        ({"RANK": "3"}, "RANK=3 is set but WORLD_SIZE is not"),
    ):
        with pytest.raises(UsageError, match=message):
            world_from_env(env)


def test_damaged_units_and_outputs_are_redone(tmp_path, caplog):
    """A pairs Parquet deleted or cut short (its marker kept), or a data file lost after the
    manifest: the rerun redoes what is missing and the output equals the first run's."""
    import logging

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 24)), output_dir=str(tmp_path / "o"), num_shards=4)
    first = run_job(job, progress=False)
    reference = output_rows(tmp_path / "o")
    pairs = tmp_path / "o" / "pairs"
    (pairs / "00001.parquet").unlink()
    with open(pairs / "00002.parquet", "r+b") as f:
        f.truncate(100)
    (tmp_path / "o" / "manifest.json").unlink()
    with caplog.at_level(logging.WARNING, logger="hf_ipt.jobs"):
        assert run_job(job, progress=False) == first
    assert "2 finished unit(s)" in caplog.text and "unit 00001" in caplog.text
    assert output_rows(tmp_path / "o") == reference
    (tmp_path / "o" / "data" / "00003.parquet").unlink()  # after the manifest: not reported complete
    assert run_job(job, progress=False) == first and output_rows(tmp_path / "o") == reference


@pytest.mark.parametrize("where", ["pairs", "data"])
def test_a_passing_io_error_on_an_output_file_is_raised_not_taken_for_damage(tmp_path, monkeypatch, where):
    """An EIO (a stale NFS handle, too many open files) reading one file made a finished unit count as lost
    (synthesized again, stages 2-3's output dropped) or a finished job's output as incomplete (manifest
    removed): the error is raised, nothing is removed, and the next run finds the job as it was."""
    import errno

    import pyarrow.parquet as pq

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 12)), output_dir=str(tmp_path / "o"), num_shards=3)
    first = run_job(job, progress=False)
    if where == "pairs":
        (tmp_path / "o" / "manifest.json").unlink()  # every unit done, stage 3 to finish
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "o").rglob("*.parquet")}
    real = pq.ParquetFile

    def flaky(source, *args, **kwargs):
        if str(source).endswith(os.path.join(where, "00001.parquet")):
            raise OSError(errno.EIO, "Input/output error", str(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", flaky)
    with pytest.raises(OSError, match="Input/output error"):
        run_job(job, progress=False)
    monkeypatch.setattr(pq, "ParquetFile", real)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "o").rglob("*.parquet")} == files
    assert (tmp_path / "o" / "pairs" / "00001.json").exists()
    assert run_job(job, progress=False) == first


def test_a_redo_killed_midway_leaves_no_dedup_decisions_of_the_old_units(tmp_path, monkeypatch):
    """`_redo_damaged` unmarked the damaged units before removing `dedup.json`: killed between, the
    rerun synthesized them again and kept dedup decisions made on the pairs they had before."""
    import hf_ipt.jobs
    from hf_ipt.jobs import _redo_damaged

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 24)), output_dir=str(tmp_path / "o"), num_shards=4)
    run_job(job, progress=False)
    assert (tmp_path / "o" / "dedup.json").is_file()
    (tmp_path / "o" / "pairs" / "00001.parquet").unlink()
    remove = os.remove

    def killed_at_the_first_marker(path):
        if path.endswith(".json") and os.sep + "pairs" + os.sep in path:
            raise KeyboardInterrupt
        remove(path)

    monkeypatch.setattr(hf_ipt.jobs.os, "remove", killed_at_the_first_marker)
    with pytest.raises(KeyboardInterrupt):
        _redo_damaged(job, 4)
    assert not (tmp_path / "o" / "dedup.json").exists() and not (tmp_path / "o" / "manifest.json").exists()
    monkeypatch.setattr(hf_ipt.jobs.os, "remove", remove)
    assert _redo_damaged(job, 4) == [1]  # the rerun finds the same unit damaged


def test_units_written_under_other_settings_are_redone(tmp_path):
    """A run with other settings that wrote a unit after this one took the folder (a race on a
    slow file system): its marker and Parquet carry its settings, and this run redoes that unit."""
    import shutil

    corpus = str(write_jsonl(tmp_path / "c.jsonl", 12))
    other = JobConfig(corpus=corpus, output_dir=str(tmp_path / "other"), num_shards=2, max_doc_chars=100)
    run_job(other, progress=False)  # every document too long: 0 rows
    job = JobConfig(corpus=corpus, output_dir=str(tmp_path / "o"), num_shards=2)
    from hf_ipt.jobs import prepare

    prepare(job, SynthesisConfig(), FilterConfig())
    for name in ("00000.parquet", "00000.json"):
        shutil.copy(tmp_path / "other" / "pairs" / name, tmp_path / "o" / "pairs" / name)
    manifest = run_job(job, progress=False)
    assert manifest["docs"] == {"read": 12, "rejected": 0, "kept": 12} and manifest["rows"] == 12


def test_a_unit_marked_while_the_folder_was_taken_is_unmarked(tmp_path, monkeypatch):
    """The folder is taken by other settings between this run's check and its marker: the marker
    it wrote is removed again, so the other run redoes the unit."""
    from hf_ipt import jobs
    from hf_ipt.augment import Augmenter
    from hf_ipt.cli import UsageError

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 4)), output_dir=str(tmp_path / "o"), num_shards=1)
    units, pinned = jobs.prepare_pinned(job, SynthesisConfig(), NO_FILTERS)
    write_json = jobs.write_json

    def marker_then_takeover(path, value):
        write_json(path, value)
        if path.endswith("00000.json"):
            write_json(str(tmp_path / "o" / "job.json"), {**pinned, "filters": {"other": 1}})

    monkeypatch.setattr(jobs, "write_json", marker_then_takeover)
    with pytest.raises(UsageError, match="taken by a run with other settings"):
        jobs.synthesize_unit(job, 0, units[0], Augmenter(SynthesisConfig(output="pairs")), NO_FILTERS,
                             pinned=pinned)
    assert not (tmp_path / "o" / "pairs" / "00000.json").exists()


def test_empty_units_load_with_datasets(tmp_path):
    """3 documents in 8 units: 5 units have no row, and `load_dataset("parquet")` on the output
    still works (a 0-row group would make datasets fail with batch size 0)."""
    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 3)), output_dir=str(tmp_path / "o"), num_shards=8)
    assert run_job(job, progress=False)["rows"] == 3
    for streaming in (False, True):
        ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "o" / "data" / "*.parquet"), split="train",
                                   streaming=streaming)
        assert sum(1 for _ in ds) == 3


def test_job_folder_errors(tmp_path):
    from hf_ipt.cli import UsageError

    corpus = str(write_jsonl(tmp_path / "c.jsonl", 4))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="`output_dir` .*afile' is a file"):
        JobConfig(corpus=corpus, output_dir=str(tmp_path / "afile"))
    with pytest.raises(ValueError, match="`output_dir` .*afile/job' is inside the file .*afile'"):
        JobConfig(corpus=corpus, output_dir=str(tmp_path / "afile" / "job"))  # not a NotADirectoryError later
    for content in ("x", '{"some": "other tool"}'):
        (tmp_path / "junk").mkdir(exist_ok=True)
        (tmp_path / "junk" / "job.json").write_text(content)
        with pytest.raises(UsageError, match="is not the job.json of an hf_ipt synthesis job"):
            run_job(JobConfig(corpus=corpus, output_dir=str(tmp_path / "junk")), progress=False)
        assert (tmp_path / "junk" / "job.json").read_text() == content  # not overwritten


def test_the_jobs_own_outputs_are_left_out_of_its_corpus(tmp_path, caplog):
    import logging

    (tmp_path / "c").mkdir()
    pq.write_table(pa.table({"text": [doc(i) for i in range(6)]}), tmp_path / "c" / "a.parquet")
    job = JobConfig(corpus=str(tmp_path / "c" / "**" / "*.parquet"), output_dir=str(tmp_path / "c" / "job"),
                    num_shards=2)
    first = run_job(job, progress=False)
    with caplog.at_level(logging.WARNING, logger="hf_ipt.jobs"):
        assert run_job(job, progress=False) == first  # the rerun finds data/ and pairs/ under the glob
    assert "inside `output_dir`" in caplog.text and first["docs"]["read"] == 6


def test_yaml_values_are_converted_as_flags_would_be(tmp_path, capsys):
    from hf_ipt.synthesize_cli import parse_args

    corpus = str(write_jsonl(tmp_path / "c.jsonl", 4))

    def config(text: str) -> str:
        path = tmp_path / "job.yaml"
        path.write_text(f"corpus: {corpus}\noutput_dir: {tmp_path / 'o'}\n{text}")
        return str(path)

    job, synthesis, filters = parse_args(["--config", config("num_shards: 2\ntemperature: 0\ndedup: false\n")])
    assert (job.num_shards, synthesis.temperature, filters.dedup) == (2, 0.0, False)
    for text, message in [("num_shards: true\n", "invalid int value: 'True'"),
                          ("window_size: 2.5\n", "invalid int value: '2.5'"),
                          (f"corpus: [{corpus}, {corpus}]\n", "takes one value, not a list")]:
        with pytest.raises(SystemExit) as exit_:
            parse_args(["--config", config(text)])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_rank_without_all_units_leaves_the_output_to_the_last_rank(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", 12)
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=4)
    assert run_job(job, rank=1, world_size=2, progress=False) is None
    assert sorted(os.listdir(tmp_path / "o" / "pairs")) == ["00001.json", "00001.parquet", "00003.json",
                                                            "00003.parquet"]
    manifest = run_job(job, rank=0, world_size=2, progress=False)
    assert manifest["rows"] == 12 and len(manifest["data_files"]) == 4


def test_more_ranks_than_units_says_which_ranks_are_idle(tmp_path, caplog):
    """A world larger than the job's units left ranks idle without a word: a user paying for 8 GPUs used 2."""
    corpus = write_jsonl(tmp_path / "c.jsonl", 6)
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2)
    with caplog.at_level("WARNING", logger="hf_ipt"):
        assert run_job(job, rank=3, world_size=4, progress=False) is None
    assert not (tmp_path / "o" / "pairs").exists() or not os.listdir(tmp_path / "o" / "pairs")
    assert ("the job has 2 units for 4 processes: 2 of them have no unit and exit (this rank (3) is one of them); "
            "a new job with `num_shards` a multiple of 4") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_ipt"):
        run_job(job, rank=1, world_size=4, progress=False)  # busy and not rank 0: nothing to say
    assert "no unit" not in caplog.text
    with caplog.at_level("WARNING", logger="hf_ipt"):
        assert run_job(job, rank=0, world_size=4, progress=False)["rows"] == 6
    assert "(ranks 2..3)" in caplog.text


def test_a_job_that_writes_no_row_says_why(tmp_path, capsys):
    """Empty corpus files, or every document rejected: the last line said "0 rows, 0 pairs from 0 documents"
    and the output folder could not be loaded."""
    (tmp_path / "a.jsonl").write_text("")
    assert main(["--corpus", str(tmp_path / "a.jsonl"), "--output_dir", str(tmp_path / "o"), "--num_shards", "1"]) == 0
    assert capsys.readouterr().out.startswith("0 rows: the corpus files hold no document (empty files?), nothing was "
                                              "synthesized; check the corpus and --text_column -> ")
    (tmp_path / "b.jsonl").write_text('{"text": ""}\n{"text": "A text too long."}\n')
    assert main(["--corpus", str(tmp_path / "b.jsonl"), "--output_dir", str(tmp_path / "p"), "--num_shards", "1",
                 "--max_doc_chars", "5"]) == 0
    assert "0 rows: all 2 documents were rejected (empty 1, too long 1; rejects.jsonl)" in capsys.readouterr().out
    assert main(["--corpus", str(write_jsonl(tmp_path / "c.jsonl", 3)), "--output_dir", str(tmp_path / "q")]) == 0
    assert capsys.readouterr().out.startswith("3 rows, ")


def test_task_types_are_pinned_when_set_and_recorded_by_name(tmp_path, capsys):
    """`--task_types` reaches the miner through a job, is pinned in job.json (absent when unset: older jobs
    resume) and refused changed once a unit is done; the manifest names the task types mined."""
    from hf_ipt.jobs import job_spec, job_units

    corpus = str(write_jsonl(tmp_path / "c.jsonl", 6))
    args = ["--corpus", corpus, "--output_dir", str(tmp_path / "o"), "--num_shards", "1", "--output", "pairs"]
    assert main([*args, "--task_types", "completion,nli"]) == 0
    spec = json.loads((tmp_path / "o" / "job.json").read_text())
    assert spec["synthesis"]["task_types"] == "nli,completion"
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["settings"]["synthesis"]["task_types"] == "nli,completion"
    rows = pq.read_table(str(tmp_path / "o" / "data" / "00000.parquet")).to_pylist()
    tasks = {p["task"].split(".")[0] for row in rows for p in row["pairs"]}
    assert tasks == {"nli", "completion"}
    with pytest.raises(SystemExit, match="2"):
        main([*args, "--task_types", "nli"])
    assert "changed: synthesis.task_types 'nli,completion' -> 'nli'" in capsys.readouterr().err
    job = JobConfig(corpus=corpus, output_dir=str(tmp_path / "p"), num_shards=1)
    assert "task_types" not in job_spec(job, SynthesisConfig(), NO_FILTERS, job_units(job))["synthesis"]
    assert main(["--corpus", corpus, "--output_dir", str(tmp_path / "p"), "--num_shards", "1"]) == 0
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["settings"]["synthesis"]["task_types"] == "nli,commonsense,paraphrase,word2text,summarize,completion"


def test_a_relative_corpus_given_again_another_way_is_named_as_such(tmp_path, monkeypatch):
    """A job started with `--corpus 'c/*.jsonl'` and resumed with the absolute spelling was refused as if the
    files had changed ("file_sizes of 4 corpus file(s)"), or from another folder with no word of why."""
    from hf_ipt.cli import UsageError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c").mkdir()
    for i in range(2):
        write_jsonl(tmp_path / "c" / f"{i}.jsonl", 2)
    run_job(JobConfig(corpus="c/*.jsonl", output_dir="o", num_shards=2), progress=False)
    with pytest.raises(UsageError, match=r"corpus files: the same files, named another way \(the job holds "
                                         r"'c/0.jsonl'\): give `corpus` as the job was started \('c/\*.jsonl'\), "
                                         r"from the folder it was started in\)"):
        run_job(JobConfig(corpus=str(tmp_path / "c" / "*.jsonl"), output_dir="o", num_shards=2), progress=False)
    (tmp_path / "elsewhere" / "c").mkdir(parents=True)
    write_jsonl(tmp_path / "elsewhere" / "c" / "0.jsonl", 3)
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match=r"the job's corpus files are relative \('c/0.jsonl'\): they are read from "
                                         r"the folder a command runs in"):
        run_job(JobConfig(corpus="c/*.jsonl", output_dir=str(tmp_path / "o"), num_shards=2), progress=False)


def test_cli_help_and_yaml_config(tmp_path):
    out = hf_ipt("synthesize", "--help")
    assert out.returncode == 0 and "--config" in out.stdout and "--dedup_threshold" in out.stdout
    assert COMMANDS["synthesize"][0] == "hf_ipt.synthesize_cli"  # listed by `hf-ipt --help`
    corpus = write_jsonl(tmp_path / "c.jsonl", 5)
    config = tmp_path / "job.yaml"
    config.write_text(f"corpus: {corpus}\noutput_dir: {tmp_path / 'o'}\nnum_keywords: 30\nnum_shards: 2\n")
    assert main(["--config", str(config), "--seed", "7"]) == 0
    settings = manifest_of(tmp_path / "o")["settings"]
    assert settings["synthesis"]["num_keywords"] == 30 and settings["synthesis"]["seed"] == 7  # YAML + flag
    # A rules run records the miner's settings, not a model's defaults (backend, rounds, dtype ...)
    assert "backend" not in settings["synthesis"] and "rounds" not in settings["synthesis"]
    config.write_text("corpuss: x\n")
    with pytest.raises(SystemExit) as exit_:  # a usage error, as argparse reports its own
        main(["--config", str(config)])
    assert exit_.value.code == 2


def test_dataset_repo_corpus(tmp_path):
    repo = tmp_path / "org_news"
    (repo / "data").mkdir(parents=True)
    pq.write_table(pa.table({"content": [doc(i) for i in range(5)]}), repo / "data" / "train-00000.parquet")
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: business\n  data_files:\n  - split: train\n"
                                    "    path: data/train-*.parquet\n---\n")
    job = JobConfig(corpus=str(repo), corpus_config="business", text_column="content",
                    output_dir=str(tmp_path / "o"), num_shards=2)
    manifest = run_job(job, SynthesisConfig(output="pairs"), NO_FILTERS, progress=False)
    assert sorted(r["context"] for r in output_rows(tmp_path / "o")) == sorted(doc(i) for i in range(5))
    assert manifest["corpus_name"] == "org_news" and manifest["num_units"] == 2


def test_two_processes_on_the_same_unit_leave_it_intact(tmp_path, monkeypatch):
    """A task rerun (e.g. `sbatch --array=3`) while the first still runs: both synthesize unit 0."""
    import hf_ipt.jobs

    ran, synthesize_unit = [], hf_ipt.jobs.synthesize_unit

    def spy(job, index, *args, **kwargs):
        ran.append((index, proc.poll() is None))  # which unit, and whether the other process was alive
        return synthesize_unit(job, index, *args, **kwargs)

    monkeypatch.setattr(hf_ipt.jobs, "synthesize_unit", spy)
    corpus = write_jsonl(tmp_path / "a.jsonl", 1000)
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "hf_ipt.synthesize_cli", "--corpus", str(corpus), "--output_dir", str(out),
           "--num_shards", "2", "--window_size", "20", "--output", "pairs"]
    proc = subprocess.Popen(cmd, env={**os.environ, "RANK": "0", "WORLD_SIZE": "2"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and not glob.glob(str(out / "pairs" / "00000.parquet.tmp*")):
            time.sleep(0.002)
        assert proc.poll() is None, "the other process finished before this one started"
        job = JobConfig(corpus=str(corpus), output_dir=str(out), num_shards=2)
        synthesis = SynthesisConfig(window_size=20, output="pairs")
        assert run_job(job, synthesis, rank=0, world_size=2, progress=False) is None  # unit 0, concurrently
        assert ran == [(0, True)], ran  # this process really synthesized unit 0 while the other one ran
    finally:
        _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert _unit_ids(out, 0) == [f"a.jsonl:{i}" for i in range(0, 1000, 2)]  # whole and readable
    manifest = run_job(job, synthesis, rank=1, world_size=2, progress=False)
    assert manifest["rows"] == 1000 and sorted(r["id"] for r in output_rows(out)) == sorted(
        f"a.jsonl:{i}" for i in range(1000))
    assert not glob.glob(str(out / "**" / "*.tmp*"), recursive=True)


def test_a_run_that_finishes_a_unit_after_another_one_drops_its_output(tmp_path):
    """Parquet and marker of a unit come from one run: with vLLM two runs may differ, so a late
    finisher must not rename its Parquet over the one that the first run's marker describes."""
    from hf_ipt.augment import Augmenter
    from hf_ipt.jobs import job_units, synthesize_unit

    corpus = write_jsonl(tmp_path / "a.jsonl", 12)
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=1)
    (tmp_path / "o" / "pairs").mkdir(parents=True)
    parquet, marker = tmp_path / "o" / "pairs" / "00000.parquet", tmp_path / "o" / "pairs" / "00000.json"
    unit = job_units(job)[0]
    augment = Augmenter(SynthesisConfig(output="pairs"))
    synthesize_unit(job, 0, unit, augment, NO_FILTERS)
    first = parquet.read_bytes(), marker.read_bytes()
    parquet.write_bytes(b"the first run's parquet")  # stands for a different (vLLM) output of the first run
    synthesize_unit(job, 0, unit, augment, NO_FILTERS)  # the second run finishes later
    assert parquet.read_bytes() == b"the first run's parquet" and marker.read_bytes() == first[1]
    assert not list((tmp_path / "o" / "pairs").glob("*.tmp*"))
    marker.unlink()  # not done (a killed run): the unit is written again
    synthesize_unit(job, 0, unit, augment, NO_FILTERS)
    assert parquet.read_bytes() == first[0] and marker.exists()


def test_engine_settings_reach_the_backend_and_are_pinned_only_when_set(tmp_path, capsys):
    from hf_ipt.jobs import job_spec, job_units, prepare

    synthesis = SynthesisConfig(synthesizer="org/model", engine_kwargs='{"enforce_eager": true, "max_num_seqs": 64}',
                                gpu_memory_utilization=0.75)
    backend = synthesis.backend_config()
    assert backend.engine_kwargs == {"enforce_eager": True, "max_num_seqs": 64}
    assert backend.gpu_memory_utilization == 0.75
    batching = SynthesisConfig(synthesizer="org/model", backend="transformers", continuous_batching=True,
                               prefix_caching=True)
    assert batching.backend_config().continuous_batching and batching.backend_config().prefix_caching
    budget = SynthesisConfig(synthesizer="org/model", backend="transformers", max_batch_tokens=65536, static_cache=True)
    assert (budget.backend_config().max_batch_tokens, budget.backend_config().static_cache) == (65536, True)
    # Refused where it would be ignored: vLLM (named the engine argument to use) and continuous batching.
    with pytest.raises(ValueError, match="max_batch_tokens` must be an integer >= 1"):
        SynthesisConfig(synthesizer="org/model", backend="transformers", max_batch_tokens=0)
    with pytest.raises(ValueError, match='max_num_batched_tokens": 8192'):
        SynthesisConfig(synthesizer="org/model", max_batch_tokens=8192)
    with pytest.raises(ValueError, match="pass one"):
        SynthesisConfig(synthesizer="org/model", backend="transformers", continuous_batching=True, max_batch_tokens=8)
    with pytest.raises(ValueError, match="prefix_caching.*set `continuous_batching` too.*SynthesisConfig"):
        SynthesisConfig(synthesizer="org/model", backend="transformers", prefix_caching=True)
    with pytest.raises(ValueError, match="prefix_caching.*vLLM's own prefix caching"):
        SynthesisConfig(synthesizer="org/model", prefix_caching=True)
    with pytest.raises(ValueError, match="`engine_kwargs` must be a JSON object"):
        SynthesisConfig(engine_kwargs="enforce_eager=true")
    with pytest.raises(ValueError, match="gpu_memory_utilization` must be a number in"):
        SynthesisConfig(gpu_memory_utilization=1.5)
    # A dict (Python, YAML) and any key order are one value; {} is unset; hf_ipt's own settings are refused.
    as_dict = SynthesisConfig(synthesizer="org/model", engine_kwargs={"max_num_seqs": 64, "enforce_eager": True})
    assert as_dict.engine_kwargs == synthesis.engine_kwargs == '{"enforce_eager": true, "max_num_seqs": 64}'
    assert SynthesisConfig(engine_kwargs="{}").engine_kwargs is None
    with pytest.raises(ValueError, match=r"sets \['max_model_len', 'model'\].*set --max_model_len, --synthesizer inst"):
        SynthesisConfig(engine_kwargs={"max_model_len": 8192, "model": "x", "enforce_eager": True})

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "a.jsonl", 4)), output_dir=str(tmp_path / "o"), num_shards=1)
    units = job_units(job)
    # At their defaults they are not in job.json: a job started by an older hf_ipt resumes.
    assert not set(ENGINE_SETTINGS) & set(job_spec(job, SynthesisConfig(), NO_FILTERS, units)["synthesis"])
    assert {"continuous_batching", "max_batch_tokens", "static_cache", "prefix_caching"} <= set(ENGINE_SETTINGS)
    assert job_spec(job, synthesis, NO_FILTERS, units)["synthesis"]["gpu_memory_utilization"] == 0.75
    assert {k: job_spec(job, budget, NO_FILTERS, units)["synthesis"][k] for k in ("max_batch_tokens", "static_cache")
            } == {"max_batch_tokens": 65536, "static_cache": True}
    assert {k: job_spec(job, batching, NO_FILTERS, units)["synthesis"][k] for k in ("continuous_batching", "prefix_caching")
            } == {"continuous_batching": True, "prefix_caching": True}
    model = SynthesisConfig(synthesizer="org/model")
    prepare(job, model, NO_FILTERS)
    (tmp_path / "o" / "pairs" / "00000.json").write_text("{}")  # a finished unit: the settings are pinned now
    with pytest.raises(Exception, match=r"changed: synthesis.engine_kwargs"):
        prepare(job, replace(model, engine_kwargs='{"quantization": "fp8"}'), NO_FILTERS)
    # job.json of the version before normalization holds the value as typed: it still resumes.
    path = tmp_path / "o" / "job.json"
    for typed, given in (('{"max_num_seqs": 128, "enforce_eager":true}', {"enforce_eager": True, "max_num_seqs": 128}),
                         ("{}", None)):
        spec = json.loads(path.read_text())
        spec["synthesis"]["engine_kwargs"] = typed
        path.write_text(json.dumps(spec))
        prepare(job, replace(model, engine_kwargs=given), NO_FILTERS)
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert all(flag in help_text for flag in ("--engine_kwargs", "--gpu_memory_utilization", "--continuous_batching",
                                              "--max_batch_tokens", "--prefix_caching"))


def test_failed_write_removes_its_temporary_and_finalize_removes_leftovers(tmp_path):
    target = tmp_path / "f.parquet"

    def fail(temp: str) -> None:
        Path(temp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(str(target), fail)
    assert os.listdir(tmp_path) == []
    corpus = write_jsonl(tmp_path / "c.jsonl", 8)
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2)
    assert run_job(job, rank=0, world_size=2, progress=False) is None
    leftovers = [tmp_path / "o" / "pairs" / "00001.parquet.tmp-other-host-4242",  # killed on another node
                 tmp_path / "o" / "data" / "00000.parquet.tmp-other-host-4242"]
    for leftover in leftovers:
        leftover.write_text("half")
    assert run_job(job, rank=1, world_size=2, progress=False)["rows"] == 8
    assert not any(leftover.exists() for leftover in leftovers)


def test_per_rank_device_is_not_part_of_the_job(tmp_path):
    from hf_ipt.jobs import prepare

    corpus = write_jsonl(tmp_path / "c.jsonl", 8)
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2)

    def on(device: str) -> SynthesisConfig:
        return SynthesisConfig(synthesizer="org/model", backend="transformers", device=device)

    prepare(job, on("cuda:1"), NO_FILTERS)  # rank 1
    assert json.loads((tmp_path / "o" / "job.json").read_text())["synthesis"]["device"] == "cuda"
    (tmp_path / "o" / "pairs" / "00001.json").write_text("{}")  # its unit is done
    assert len(prepare(job, on("cuda:0"), NO_FILTERS)) == 2  # rank 0, on another GPU: the same job
    with pytest.raises(ValueError, match="holds a different job.*synthesis.device 'cuda' -> 'cpu'"):
        prepare(job, on("cpu"), NO_FILTERS)  # the device type still counts


def test_job_started_with_older_units_resumes_with_them(tmp_path):
    """3 files cut into 9 units by an older `make_shards` (num_shards=8): the rerun keeps those units."""
    from hf_ipt.jobs import prepare

    files = [write_jsonl(tmp_path / f"{name}.jsonl", 6) for name in "abc"]
    job = JobConfig(corpus=str(tmp_path / "*.jsonl"), output_dir=str(tmp_path / "o"), num_shards=8)
    units = prepare(job, SynthesisConfig(), FilterConfig())
    assert len(units) == 8
    spec_path = tmp_path / "o" / "job.json"
    spec = json.loads(spec_path.read_text())
    spec["units"] = [{"files": [str(f)], "part": p, "parts": 3} for f in files for p in range(3)]
    spec_path.write_text(json.dumps(spec))
    assert prepare(job, SynthesisConfig(), FilterConfig()) == spec["units"]
    assert run_job(job, progress=False)["num_units"] == 9


def test_a_corpus_file_that_changed_size_is_refused_and_named(tmp_path):
    from hf_ipt.cli import UsageError

    corpus = write_jsonl(tmp_path / "c.jsonl", 4)
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2)
    run_job(job, SynthesisConfig(), NO_FILTERS, progress=False)
    with corpus.open("a") as f:  # the corpus grew after the job ran: its output no longer matches
        f.write(json.dumps({"text": doc(9)}) + "\n")
    with pytest.raises(UsageError, match=r"changed: file_sizes of 1 corpus file\(s\), e\.g\. .*c\.jsonl"):
        run_job(job, SynthesisConfig(), NO_FILTERS, progress=False)


def test_counts_are_the_pairs_in_the_output_and_malformed_pairs_are_named(tmp_path, monkeypatch):
    """Pairs that break the synthesizer's conventions are dropped by templify: the job removes them
    first, under `malformed`, so `pairs.kept` (the CLI line, the dataset card) is what the data holds."""
    from hf_ipt.augment import Augmenter
    from hf_ipt.protocol import Pair

    good = Pair("Is this a market report?", "Yes")
    malformed = [Pair("Which way did sales go?\nOptions:\n- Up\n- Down", "Sideways"),  # none of the options
                 Pair("Did the shares drop?\nLet's think step by step.", "The text says that they dropped in "
                      "early trading on Wall Street today, so yes.")]  # no "Therefore, the answer is"

    def synthesize(self, texts):
        return [ChainEntry(i, 0, i, t, t, pairs=[good, *malformed]) for i, t in enumerate(texts)]

    monkeypatch.setattr(Augmenter, "synthesize", synthesize)
    corpus = write_jsonl(tmp_path / "c.jsonl", 6)
    for output, count in (("templified", lambda r: r["num_pairs"]), ("pairs", lambda r: len(r["pairs"]))):
        out = tmp_path / output
        manifest = run_job(JobConfig(corpus=str(corpus), output_dir=str(out), num_shards=2),
                           SynthesisConfig(output=output), NO_FILTERS, progress=False)
        assert sum(count(r) for r in output_rows(out)) == manifest["pairs"]["kept"] == 6, output
        assert manifest["pairs"]["synthesized"] == 18 and manifest["filters_removed"]["malformed"] == 12
    pairs = [p for r in output_rows(tmp_path / "pairs") for p in r["pairs"]]
    assert {(p["question"], p["answer"]) for p in pairs} == {(good.question, good.answer)}


def test_a_job_that_finished_no_unit_takes_new_settings(tmp_path, monkeypatch, caplog):
    """A mistake found when the synthesizer loads (here: vLLM not installed) pins nothing, and a job stopped
    before it finished a unit does not lock the folder."""
    import logging

    from hf_ipt.cli import UsageError
    from hf_ipt.jobs import prepare

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` fails
    corpus = write_jsonl(tmp_path / "c.jsonl", 6)
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2)
    with pytest.raises(ImportError, match="vllm"):
        run_job(job, SynthesisConfig(synthesizer="org/model"), progress=False)
    assert not (tmp_path / "o" / "job.json").exists()
    prepare(job, SynthesisConfig(seed=3), NO_FILTERS)  # a job that pinned its settings and was stopped
    with caplog.at_level(logging.WARNING, logger="hf_ipt.jobs"):
        manifest = run_job(job, SynthesisConfig(), progress=False)
    assert manifest["rows"] == 6 and manifest["settings"]["synthesis"]["seed"] == 0
    assert "finished no unit" in caplog.text and "synthesis.seed 3 -> 0" in caplog.text
    with pytest.raises(UsageError, match=r"\(changed: synthesis.seed 0 -> 1\) with 2 finished unit\(s\)"):
        run_job(job, SynthesisConfig(seed=1), progress=False)  # units are done: refused as before


def test_a_run_whose_job_was_taken_by_other_settings_marks_no_unit_done(tmp_path):
    """Two runs with different settings before any unit was done: the later one takes the folder,
    and the earlier one must not add a unit made with its own settings."""
    from hf_ipt.augment import Augmenter
    from hf_ipt.cli import UsageError
    from hf_ipt.jobs import job_units, prepare, prepare_pinned, read_json, synthesize_unit

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 4)), output_dir=str(tmp_path / "o"), num_shards=1)
    _, pinned = prepare_pinned(job, SynthesisConfig(), NO_FILTERS)
    assert pinned == read_json(str(tmp_path / "o" / "job.json"))
    prepare(job, SynthesisConfig(seed=1), NO_FILTERS)  # the other run
    # What this process pinned is what it wrote, not what the file holds by the time it looks again.
    assert pinned["synthesis"]["seed"] == 0 and prepare_pinned(job, SynthesisConfig(seed=1), NO_FILTERS)[1] == read_json(
        str(tmp_path / "o" / "job.json"))
    with pytest.raises(UsageError, match=r"taken by a run with other settings .*synthesis.seed 0 -> 1"):
        synthesize_unit(job, 0, job_units(job)[0], Augmenter(SynthesisConfig(output="pairs")), NO_FILTERS,
                        pinned=pinned)
    assert os.listdir(tmp_path / "o" / "pairs") == []  # no Parquet, no marker, no temporary


@pytest.mark.parametrize(("settings", "message"), [
    ({"rounds": 3}, (r"`rounds` \(3\) would be ignored: it is a setting of model synthesizers, not of "
                     r"synthesizer='rules'.*Set `synthesizer` to a model")),
    ({"backend": "transformers"}, r"`backend` \('transformers'\) would be ignored.*synthesizer='rules'"),
    ({"temperature": 0.7}, "`temperature`.*synthesizer='rules'"),
    ({"engine_kwargs": {"enforce_eager": True}}, "`engine_kwargs`.*synthesizer='rules'"),
    ({"synthesizer": "org/m", "num_keywords": 30}, r"`num_keywords` \(30\).*rule miner.*Use synthesizer='rules'"),
    ({"synthesizer": "org/m", "backend": "transformers", "tensor_parallel_size": 2},
     (r"`tensor_parallel_size` \(2\) would be ignored: it is a setting of the vllm backend, not of "
      r"backend='transformers'.*Use backend='vllm'")),
    ({"synthesizer": "org/m", "backend": "transformers", "gpu_memory_utilization": 0.5}, "`gpu_memory_utilization`"),
    ({"synthesizer": "org/m", "backend": "transformers", "engine_kwargs": '{"enforce_eager": true}'},
     "`engine_kwargs`.*arguments of `vllm.LLM`"),
    ({"synthesizer": "org/m", "continuous_batching": True}, "`continuous_batching`.*Use backend='transformers'"),
    ({"synthesizer": "org/m", "device": "cuda:1"}, "`device`.*not of backend='vllm'"),
])
def test_settings_the_synthesizer_would_ignore_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        SynthesisConfig(**settings)


def test_ignored_settings_at_their_defaults_pass():
    """Only a value other than the default is refused: YAML files and the builder pass every field."""
    SynthesisConfig(rounds=2, backend="vllm", temperature=0.0, tensor_parallel_size=1, engine_kwargs="{}")
    SynthesisConfig(synthesizer="org/m", backend="transformers", device="cpu", batch_size=4, num_keywords=100,
                    tensor_parallel_size=1, gpu_memory_utilization=0.9, engine_kwargs=None)
    SynthesisConfig(synthesizer="org/m", tensor_parallel_size=2, engine_kwargs={"enforce_eager": True})
    with pytest.raises(ValueError, match=r"`dtype` must be 'auto', 'bfloat16', 'float16' or 'float32', got 'fp16'"):
        SynthesisConfig(synthesizer="org/m", dtype="fp16")  # before job.json pins it, and with the rule miner too
    with pytest.raises(ValueError, match="`dtype` must be"):
        SynthesisConfig(dtype="bf16")


def test_a_job_saved_with_options_that_were_ignored_resumes_without_them(tmp_path):
    """Older hf_ipt accepted options it ignored (`--no_dedup --dedup_threshold 0.8`, `num_keywords`
    with `domain_keywords none`) and saved them in job.json; they are refused now, and the job
    resumes with the command that leaves them out."""
    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 8)), output_dir=str(tmp_path / "o"), num_shards=2)
    synthesis, filters = SynthesisConfig(domain_keywords="none"), FilterConfig(dedup=False)
    assert run_job(job, synthesis, filters, rank=0, world_size=2, progress=False) is None  # unit 0 done
    spec_path = tmp_path / "o" / "job.json"
    spec = json.loads(spec_path.read_text())
    spec["filters"]["dedup_threshold"], spec["synthesis"]["num_keywords"] = 0.8, 10  # as an older version saved
    spec_path.write_text(json.dumps(spec))
    assert run_job(job, synthesis, filters, progress=False)["rows"] == 8


def test_an_edited_keyword_file_is_refused_on_resume_and_older_jobs_resume(tmp_path, caplog):
    """job.json pins a keyword file's keywords, not only its path: units made with other keywords
    are never mixed in. A job started before that (no digest in job.json) still resumes."""
    import logging

    from hf_ipt.augment import KEYWORDS_DIGEST
    from hf_ipt.cli import UsageError
    from hf_ipt.jobs import job_spec, job_units, prepare

    kw = tmp_path / "kw.txt"
    kw.write_text("sales\ndemand\nretailers\n")
    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 8)), output_dir=str(tmp_path / "o"), num_shards=2)
    keywords = SynthesisConfig(domain_keywords=str(kw))
    assert run_job(job, keywords, NO_FILTERS, rank=0, world_size=2, progress=False) is None  # killed after unit 0
    spec_path = tmp_path / "o" / "job.json"
    assert KEYWORDS_DIGEST in json.loads(spec_path.read_text())["synthesis"]
    assert KEYWORDS_DIGEST not in job_spec(job, SynthesisConfig(), NO_FILTERS, job_units(job))["synthesis"]
    kw.write_text("sales\ndemand\nshares\n")
    with pytest.raises(UsageError, match=r"changed: synthesis.domain_keywords: the keywords in file '.*kw\.txt' were "
                                         r"edited \(sha256 [0-9a-f]{12} -> [0-9a-f]{12}\); restore the file"):
        run_job(job, keywords, NO_FILTERS, progress=False)
    kw.write_text("\ufeffsales\n\n demand \nretailers\n")  # the same keywords as at the start: it resumes
    assert run_job(job, keywords, NO_FILTERS, progress=False)["rows"] == 8
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["settings"]["synthesis"][KEYWORDS_DIGEST] == json.loads(spec_path.read_text())["synthesis"][
        KEYWORDS_DIGEST]
    # A job started by an older hf_ipt: the path alone. It resumes under its own job.json (the units'
    # markers record its digest), with a warning that the file's keywords cannot be checked.
    spec = json.loads(spec_path.read_text())
    del spec["synthesis"][KEYWORDS_DIGEST]
    spec_path.write_text(json.dumps(spec))
    kw.write_text("sales\ndemand\nshares\n")
    with caplog.at_level(logging.WARNING, logger="hf_ipt.jobs"):
        assert len(prepare(job, keywords, NO_FILTERS)) == 2
    assert "older hf_ipt" in caplog.text and "kw.txt" in caplog.text and json.loads(spec_path.read_text()) == spec
    fresh = replace(job, output_dir=str(tmp_path / "fresh"))  # an older job that finished no unit is taken over
    prepare(fresh, keywords, NO_FILTERS)
    spec_path = tmp_path / "fresh" / "job.json"
    spec = json.loads(spec_path.read_text())
    del spec["synthesis"][KEYWORDS_DIGEST]
    spec_path.write_text(json.dumps(spec))
    prepare(fresh, keywords, NO_FILTERS)
    assert KEYWORDS_DIGEST in json.loads(spec_path.read_text())["synthesis"]


def test_a_keyword_file_edited_between_the_check_and_the_read_is_caught(tmp_path, monkeypatch):
    """job.json is checked first, the miner's keywords read a moment later: an edit in between
    would mine with keywords job.json does not pin."""
    import hf_ipt.jobs
    from hf_ipt.augment import Augmenter
    from hf_ipt.cli import UsageError

    class EditedMeanwhile(Augmenter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.keywords_digest = "0" * 64

    (tmp_path / "kw.txt").write_text("sales\n")
    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 4)), output_dir=str(tmp_path / "o"), num_shards=1)
    monkeypatch.setattr(hf_ipt.jobs, "Augmenter", EditedMeanwhile)
    with pytest.raises(UsageError, match="were edited while this run started"):
        run_job(job, SynthesisConfig(domain_keywords=str(tmp_path / "kw.txt")), NO_FILTERS, progress=False)
    assert run_job(replace(job, output_dir=str(tmp_path / "none")), SynthesisConfig(domain_keywords="none"), NO_FILTERS,
                   progress=False)["rows"] == 4  # no keyword file, nothing to compare


def test_a_resumed_or_finished_job_says_so(tmp_path, caplog, capsys):
    import logging

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 12)), output_dir=str(tmp_path / "o"), num_shards=3)
    assert run_job(job, rank=0, world_size=3, progress=False) is None  # unit 0 done, as before a kill
    capsys.readouterr()
    with caplog.at_level(logging.WARNING, logger="hf_ipt.jobs"):
        manifest = run_job(job, progress=True)
    assert "1 of 3 units already done, resuming with the other 2" in caplog.text
    assert " 1/3 " in capsys.readouterr().err  # the bar starts at the units already done
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_ipt.jobs"):
        assert run_job(job, progress=False) == manifest
    assert "already complete" in caplog.text and "nothing to do" in caplog.text
    caplog.clear()
    (tmp_path / "o" / "manifest.json").unlink()  # killed while writing the output: every unit is done
    with caplog.at_level(logging.WARNING, logger="hf_ipt.jobs"):
        assert run_job(job, rank=1, world_size=2, progress=False) == manifest
    assert "1 of 1 units of rank 1/2 already done" in caplog.text


def test_a_finished_job_whose_pairs_were_deleted_keeps_its_settings(tmp_path):
    """`pairs/` is intermediate: a user who deletes it to save space keeps `data/` + the manifest. A
    rerun with other settings must be refused, not take the folder (job.json rewritten) and then
    report the old output as this run's ("already complete")."""
    import shutil

    from hf_ipt.cli import UsageError

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 8)), output_dir=str(tmp_path / "o"), num_shards=2)
    manifest = run_job(job, SynthesisConfig(output="pairs"), progress=False)
    spec = (tmp_path / "o" / "job.json").read_text()
    shutil.rmtree(tmp_path / "o" / "pairs")
    with pytest.raises(UsageError, match=r"holds a different job \(changed: synthesis.output 'pairs' -> "
                                         r"'templified'\) with its output written \(manifest.json\)"):
        run_job(job, SynthesisConfig(output="templified"), progress=False)
    assert (tmp_path / "o" / "job.json").read_text() == spec
    assert run_job(job, SynthesisConfig(output="pairs"), progress=False) == manifest  # the same job: complete


def test_a_job_made_again_after_its_pairs_and_a_data_file_were_deleted_keeps_no_old_dedup_decision(
        tmp_path, monkeypatch, caplog):
    """`pairs/` deleted (to save space) and a data file lost: a rerun refuses to wipe the rest (it synthesized
    the whole job again, unasked); the user removes the manifest, every unit is synthesized again, and the old
    `dedup.json` and data files were kept, so the old dedup decisions (pair positions) were applied to the new
    pairs and the manifest counted the old duplicates. Synthesis that gives other pairs this time (vLLM's
    run-to-run differences; here the miner's answers changed) must give what a new job gives."""
    import shutil

    from hf_ipt.augment import Augmenter

    run_job(dedup_job(tmp_path), filters=replace(FilterConfig(), dedup=True), progress=False)
    shutil.rmtree(tmp_path / "o" / "pairs")
    (tmp_path / "o" / "data" / "00003.parquet").unlink()
    synthesize = Augmenter.synthesize

    def other_pairs(self, texts):  # every other pair gets another answer: other duplicates, other positions
        entries = synthesize(self, texts)
        for entry in entries:
            entry.pairs = [p if k % 2 else type(p)(p.question, p.answer + " (again)") for k, p in enumerate(entry.pairs)]
        return entries

    monkeypatch.setattr(Augmenter, "synthesize", other_pairs)
    from hf_ipt.cli import UsageError

    # a rerun does not wipe the other data files to synthesize the whole job again: the user decides
    kept = sorted(os.listdir(tmp_path / "o" / "data"))
    with pytest.raises(UsageError, match=r"is incomplete \(.*00003.parquet is missing or not a readable Parquet "
                                         r"file\) and the pairs of 4 of its 4 units \(such as 00000\) are gone: .*"
                                         r"remove '.*manifest.json' and rerun"):
        run_job(dedup_job(tmp_path), filters=replace(FilterConfig(), dedup=True), progress=False)
    assert sorted(os.listdir(tmp_path / "o" / "data")) == kept and (tmp_path / "o" / "manifest.json").exists()
    (tmp_path / "o" / "manifest.json").unlink()  # the user's call: make the job again
    with caplog.at_level("WARNING", logger="hf_ipt.jobs"):
        again = run_job(dedup_job(tmp_path), filters=replace(FilterConfig(), dedup=True), progress=False)
    assert "beside the output of stages 2-3" in caplog.text
    fresh = run_job(dedup_job(tmp_path, out="fresh"), filters=replace(FilterConfig(), dedup=True), progress=False)
    assert output_rows(tmp_path / "o") == output_rows(tmp_path / "fresh")
    assert again["pairs"] == fresh["pairs"] and again["filters_removed"] == fresh["filters_removed"]


def test_a_unit_finished_by_another_process_meanwhile_is_not_synthesized_again(tmp_path, monkeypatch, caplog):
    """A duplicate task (a Slurm array rerun) decided its units at its start: it synthesized in full those the
    other process finished meanwhile."""
    import hf_ipt.jobs

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 8)), output_dir=str(tmp_path / "o"), num_shards=4)
    synthesized, synthesize_unit = [], hf_ipt.jobs.synthesize_unit

    def other_finishes_unit_2(job, index, *args, **kwargs):
        synthesized.append(index)
        synthesize_unit(job, index, *args, **kwargs)
        if index == 1:  # meanwhile, the other process finished unit 2
            synthesize_unit(job, 2, *args, **kwargs)

    monkeypatch.setattr(hf_ipt.jobs, "synthesize_unit", other_finishes_unit_2)
    with caplog.at_level("WARNING", logger="hf_ipt.jobs"):
        assert run_job(job, progress=False)["num_units"] == 4
    assert synthesized == [0, 1, 3] and "unit 00002 was finished by another process meanwhile" in caplog.text


def test_a_unit_whose_pairs_pages_are_damaged_is_named_and_redone_on_the_rerun(tmp_path):
    """Pages of a pairs Parquet damaged, its footer intact (the start checks footers only): stage 2 failed with
    a bare pyarrow error on every rerun. Now the error names the unit and the rerun, which synthesizes it again."""
    from hf_ipt.cli import UsageError

    job = dedup_job(tmp_path)
    reference = run_job(job, progress=False)
    rows = output_rows(tmp_path / "o")
    for name in ("manifest.json", "dedup.json"):
        (tmp_path / "o" / name).unlink()
    damage(tmp_path / "o" / "pairs" / "00002.parquet")
    with pytest.raises(UsageError, match=r"the pairs of unit 00002.parquet cannot be read \(.*\): the unit is marked "
                                         r"undone; rerun the job to synthesize it again"):
        run_job(job, progress=False)
    assert run_job(job, progress=False) == reference and output_rows(tmp_path / "o") == rows


def damage(path: Path) -> None:
    """Zero the bytes of a Parquet file's first data page, its footer left intact."""
    data = bytearray(path.read_bytes())
    data[4:min(2004, len(data) - 1000)] = bytes(min(2000, len(data) - 1004))
    path.write_bytes(bytes(data))


def test_a_damaged_corpus_parquet_an_undecodable_file_name_or_output_inside_the_corpus_folder_are_named(tmp_path):
    """Corpus Parquet pages damaged: a bare `OSError: Corrupt snappy compressed data` with no path, after job.json
    was pinned. A file name that is not UTF-8: `UnicodeEncodeError` on every rerun. `output_dir` inside a
    dataset-folder corpus: its own files were read as corpus on the rerun."""
    from hf_ipt.cli import UsageError

    corpus = tmp_path / "cpq"
    corpus.mkdir()
    pq.write_table(pa.table({"text": [doc(i) * 20 for i in range(200)]}), corpus / "a.parquet")
    damage(corpus / "a.parquet")
    with pytest.raises(UsageError, match=r"corpus file '.*a\.parquet' is damaged \(.*\): download or copy it again"):
        run_job(JobConfig(corpus=str(corpus / "*.parquet"), output_dir=str(tmp_path / "o1")), progress=False)
    named = tmp_path / "names"
    named.mkdir()
    write_jsonl(named / os.fsdecode(b"caf\xe9.jsonl"), 2)
    with pytest.raises(UsageError, match=r"1 file\(s\) whose name is not UTF-8, such as '.*caf\\udce9\.jsonl': rename"):
        JobConfig(corpus=str(named / "*.jsonl"), output_dir=str(tmp_path / "o2")).listed_files()
    folder = tmp_path / "folder"
    folder.mkdir()
    write_jsonl(folder / "news.jsonl", 4)
    with pytest.raises(UsageError, match=r"`output_dir` '.*folder/job' is inside the dataset folder `corpus` "
                                         r"'.*folder', which would read the job's own files as corpus"):
        run_job(JobConfig(corpus=str(folder), output_dir=str(folder / "job")), progress=False)
    assert not (folder / "job").exists()
    gz = tmp_path / "gz"  # the glob suggested has the folder's own suffix (it said *.jsonl for any folder)
    gz.mkdir()
    pq.write_table(pa.table({"text": [doc(0)]}), gz / "a.parquet")
    with pytest.raises(UsageError, match=r"give an `output_dir` outside it, or the corpus as a glob "
                                         r"\(corpus='.*gz/\*\.parquet'\)"):
        run_job(JobConfig(corpus=str(gz), output_dir=str(gz / "job")), progress=False)
    (gz / "a.parquet").unlink()
    import gzip

    (gz / "b.jsonl.gz").write_bytes(gzip.compress(write_jsonl(gz / "b.jsonl", 2).read_bytes()))
    (gz / "b.jsonl").unlink()
    with pytest.raises(UsageError, match=r"\(corpus='.*gz/\*\.jsonl\.gz'\)"):
        run_job(JobConfig(corpus=str(gz), output_dir=str(gz / "job")), progress=False)
    (gz / "b.jsonl.gz").unlink()
    (gz / "sub").mkdir()
    write_jsonl(gz / "sub" / "c.jsonl", 2)  # data below the top only: a glob of the top would match nothing
    with pytest.raises(UsageError, match=r"\(corpus='.*gz/\*\*/\*\.jsonl'\)"):
        run_job(JobConfig(corpus=str(gz), output_dir=str(gz / "job")), progress=False)
    # a README that chooses the files may read the job's too (`configs:` with `**/*.jsonl`): refused as well
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    write_jsonl(chosen / "news.jsonl", 4)
    (chosen / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files: '**/*.jsonl'\n---\n")
    with pytest.raises(UsageError, match=r"`output_dir` '.*chosen/synth' is inside the dataset folder"):
        run_job(JobConfig(corpus=str(chosen), output_dir=str(chosen / "synth")), progress=False)
    # a layout by split names (data/train-*) reads no file of the job: it may sit inside, and resume
    (tmp_path / "ds" / "data").mkdir(parents=True)
    write_jsonl(tmp_path / "ds" / "data" / "train-00000-of-00001.jsonl", 4)
    inside = JobConfig(corpus=str(tmp_path / "ds"), output_dir=str(tmp_path / "ds" / "synth"), num_shards=2)
    first = run_job(inside, progress=False)
    (tmp_path / "ds" / "synth" / "manifest.json").unlink()
    assert run_job(inside, progress=False)["rows"] == first["rows"] == 4


def test_an_error_of_the_system_reading_a_units_pairs_leaves_its_marker(tmp_path, monkeypatch):
    """EIO, EMFILE, a stale NFS handle, memory: not the unit's damage. Unmarking it cost a resynthesis."""
    import errno

    import pyarrow.parquet

    job = dedup_job(tmp_path)
    run_job(job, progress=False)
    for name in ("manifest.json", "dedup.json"):
        (tmp_path / "o" / name).unlink()
    read_table = pyarrow.parquet.read_table
    for error in (OSError(errno.EIO, "Input/output error"), OSError(errno.EMFILE, "Too many open files"),
                  pa.ArrowMemoryError("malloc failed")):
        def failing(path, *args, error=error, **kwargs):
            if str(path).endswith("00002.parquet"):
                raise error
            return read_table(path, *args, **kwargs)

        monkeypatch.setattr(pyarrow.parquet, "read_table", failing)
        with pytest.raises(type(error)):
            run_job(job, progress=False)
        assert (tmp_path / "o" / "pairs" / "00002.json").exists()


def test_the_manifest_records_the_keywords_the_units_were_mined_with(tmp_path, monkeypatch):
    """A keyword file edited (for the next job) while this one runs: the units were mined with the
    keywords job.json pins, and the manifest must say so, not the digest of the file as edited."""
    import hf_ipt.jobs
    from hf_ipt.augment import KEYWORDS_DIGEST

    kw = tmp_path / "kw.txt"
    kw.write_text("sales\ndemand\n")
    finalize = hf_ipt.jobs.finalize

    def edited_then_finalize(*args, **kwargs):
        kw.write_text("sales\nshares\n")
        return finalize(*args, **kwargs)

    monkeypatch.setattr(hf_ipt.jobs, "finalize", edited_then_finalize)
    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 8)), output_dir=str(tmp_path / "o"), num_shards=2)
    manifest = run_job(job, SynthesisConfig(domain_keywords=str(kw)), progress=False)
    pinned = json.loads((tmp_path / "o" / "job.json").read_text())["synthesis"][KEYWORDS_DIGEST]
    assert manifest["settings"]["synthesis"][KEYWORDS_DIGEST] == pinned


def test_an_unquoted_corpus_glob_is_named(tmp_path, capsys):
    """`--corpus data/*.jsonl` without quotes: the shell passes every file, and the second one is
    not "an argument not used" but a glob that needs quotes."""
    files = [str(write_jsonl(tmp_path / f"{name}.jsonl", 2)) for name in ("a", "b", "c")]
    with pytest.raises(SystemExit) as exit_:
        main(["--corpus", *files, "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "2 path(s) follow" in err and "quote it" in err and files[1] in err
    assert not (tmp_path / "o").exists()


def test_run_job_takes_rank_and_world_size_together(tmp_path):
    """`run_job(job, rank=1)` alone read the environment (a world of one) and did every unit."""
    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 4)), output_dir=str(tmp_path / "o"), num_shards=2)
    for kwargs, message in (({"rank": 1}, "give `rank` and `world_size` together"),
                            ({"world_size": 2}, "give `rank` and `world_size` together"),
                            ({"rank": 2, "world_size": 2}, "`rank` must be in 0..world_size-1, got rank=2")):
        with pytest.raises(ValueError, match=message):
            run_job(job, progress=False, **kwargs)
    assert not glob.glob(str(tmp_path / "o" / "pairs" / "*.json"))  # no unit done by a wrong rank


def test_a_rerun_removes_the_temporaries_of_its_hosts_killed_runs(tmp_path):
    """Each run killed mid-unit (SIGKILL, an OOM kill) leaves a partial Parquet temporary; a rank
    that is rerun again and again without being the last to finish must not pile them up."""
    import socket

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "c.jsonl", 4)), output_dir=str(tmp_path / "o"), num_shards=2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (tmp_path / "o" / "pairs").mkdir(parents=True)
    killed = tmp_path / "o" / "pairs" / f"00000.parquet.tmp-{socket.gethostname()}-{dead}"
    alive = tmp_path / "o" / "pairs" / f"00001.parquet.tmp-{socket.gethostname()}-{os.getpid()}"
    elsewhere = tmp_path / "o" / "pairs" / f"00001.parquet.tmp-otherhost-{dead}"
    for temp in (killed, alive, elsewhere):
        temp.write_bytes(b"PAR1 half a unit")
    assert run_job(job, rank=0, world_size=2, progress=False) is None  # not the last rank: no finalize
    assert not killed.exists() and alive.exists() and elsewhere.exists()  # a live writer's, another host's: kept


def record_order(monkeypatch, module, events: list[str]) -> None:
    """Append to `events` "engine" when a backend loads and "read" when `module` starts reading a shard."""
    import hf_ipt.backends

    load, read = hf_ipt.backends.load_backend, module.iter_shard

    def load_backend(config):
        events.append("engine")
        return load(config)

    def iter_shard(*args, **kwargs):
        events.append("read")
        yield from read(*args, **kwargs)

    monkeypatch.setattr(hf_ipt.backends, "load_backend", load_backend)
    monkeypatch.setattr(module, "iter_shard", iter_shard)


def test_the_progress_bar_starts_once_the_synthesizer_has_loaded(tmp_path, tiny_model_dir, monkeypatch):
    """The model loaded at the first window, after the bar was made: the engine start (minutes for vLLM)
    counted into the bar's rate and ETA. It loads first, once, before any document is read."""
    import hf_ipt.jobs

    events: list[str] = []
    record_order(monkeypatch, hf_ipt.jobs, events)
    start = hf_ipt.jobs.Progress.__init__

    def progress(self, *args, **kwargs):
        events.append("bar")
        start(self, *args, **kwargs)

    monkeypatch.setattr(hf_ipt.jobs.Progress, "__init__", progress)
    corpus = write_jsonl(tmp_path / "c.jsonl", 4)
    synthesis = SynthesisConfig(synthesizer=str(tiny_model_dir), backend="transformers", max_model_len=256,
                                max_new_tokens=4)
    run_job(JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2), synthesis, NO_FILTERS)
    assert events == ["engine", "bar", "read", "read"]


def test_settings_refused_as_the_synthesizer_loads_are_not_pinned(tmp_path, tiny_model_dir, monkeypatch, caplog,
                                                                   capsys):
    """`job.json` was written before the synthesizer loaded: a device this machine lacks or a misspelt engine
    argument was pinned, and the corrected rerun replaced it with a warning. A first start refused as the
    synthesizer loads now writes no `job.json`, and the corrected command starts the job as new."""
    import dataclasses
    import logging

    import torch

    import hf_ipt.backends.vllm as vllm_backend

    class FakeLLM:
        def __init__(self, **kwargs):
            raise AssertionError("the engine started")

    fake = {"LLM": FakeLLM, "EngineArgs": dataclasses.make_dataclass("EngineArgs", [("max_num_seqs", int, 8)]),
            "__version__": "0"}
    monkeypatch.setattr(vllm_backend, "_import_vllm", lambda: type("vllm", (), fake))
    corpus, out = write_jsonl(tmp_path / "c.jsonl", 4), tmp_path / "o"
    model = ["--corpus", str(corpus), "--output_dir", str(out), "--num_shards", "2", "--synthesizer",
             str(tiny_model_dir), "--max_model_len", "256", "--max_new_tokens", "4", "--no_dedup"]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for bad, message in ((["--backend", "transformers", "--device", f"cuda:{gpus + 3}"], f"`device` 'cuda:{gpus + 3}'"),
                         (["--engine_kwargs", '{"max_num_seqz": 8}'], "`engine_kwargs` names 'max_num_seqz'")):
        with pytest.raises(SystemExit) as exit_:
            main([*model, *bad])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
        assert not (out / "job.json").exists()
    with caplog.at_level(logging.WARNING, logger="hf_ipt.jobs"):
        assert main([*model, "--backend", "transformers", "--device", "cpu"]) == 0
    assert json.loads((out / "job.json").read_text())["synthesis"]["device"] == "cpu"
    assert (out / "manifest.json").exists() and "other settings" not in caplog.text


@pytest.mark.parametrize(("held", "named"), [
    ({"data.parquet": b"x", "summary.json": b'{"output": "o", "rows": 1, "synthesis": {}}'},
     r"the output of `hf-ipt augment` \(data.parquet, summary.json\)"),
    ({"config.json": b"{}", "model.safetensors": b"x"}, r"a saved model \(config.json\)"),
    ({"checkpoint-10/trainer_state.json": b"{}"}, r"training checkpoints \(checkpoint-10\)"),
    ({"notes.txt": b"mine"}, r"files of no `hf-ipt synthesize` job \('notes.txt'\)"),
])
def test_a_folder_of_another_command_or_other_files_is_refused_before_the_model_loads(tmp_path, monkeypatch,
                                                                                     held, named):
    from hf_ipt.augment import Augmenter
    from hf_ipt.cli import UsageError

    corpus = write_jsonl(tmp_path / "c.jsonl", 3)
    out = tmp_path / "out"
    for name, content in held.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(content)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    monkeypatch.setattr(Augmenter, "load_engine", lambda self: pytest.fail("the synthesizer loaded"))
    with pytest.raises(UsageError, match=rf"'{out}' holds {named}, not an `hf-ipt synthesize` job.*another "
                       "--output_dir"):
        run_job(JobConfig(corpus=str(corpus), output_dir=str(out), num_shards=1), rank=0, world_size=1,
                progress=False)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing written beside


def test_a_job_folder_left_before_job_json_and_a_finished_job_are_still_jobs(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", 3)
    out = tmp_path / "out"
    (out / "pairs").mkdir(parents=True)  # a run stopped as the synthesizer loaded: no job.json yet
    (out / "data").mkdir()
    (out / ".gitkeep").write_text("")  # a hidden file is no other output
    job = JobConfig(corpus=str(corpus), output_dir=str(out), num_shards=1)
    first = run_job(job, rank=0, world_size=1, progress=False)
    assert first is not None and (out / "job.json").is_file()
    assert run_job(job, rank=0, world_size=1, progress=False) == first  # resumes (complete) as before


def test_the_engine_is_released_before_the_output_is_written(tmp_path, tiny_model_dir, monkeypatch):
    """The engine stayed referenced through stages 2-3, so the rank that wrote the output held its GPU memory
    (a vLLM engine's, a model's) for all of dedup and render: it is closed before stage 2 now."""
    import hf_ipt.jobs
    from hf_ipt.backends.transformers import TransformersBackend

    events: list[str] = []
    record_order(monkeypatch, hf_ipt.jobs, events)
    close, finalize = TransformersBackend.close, hf_ipt.jobs.finalize

    def closing(self):
        events.append("close")
        close(self)

    def finalizing(*args, **kwargs):
        events.append("finalize")
        return finalize(*args, **kwargs)

    monkeypatch.setattr(TransformersBackend, "close", closing)
    monkeypatch.setattr(hf_ipt.jobs, "finalize", finalizing)
    corpus = write_jsonl(tmp_path / "c.jsonl", 4)
    synthesis = SynthesisConfig(synthesizer=str(tiny_model_dir), backend="transformers", max_model_len=256,
                                max_new_tokens=4)
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2)
    assert run_job(job, synthesis, NO_FILTERS, progress=False)["num_units"] == 2
    assert events == ["engine", "read", "read", "close", "finalize"]
    # Every unit done, the output not written (a kill in stage 2; or a rerun on a CPU node to finalize there):
    # the rerun writes it without loading the synthesizer.
    events.clear()
    for path in [tmp_path / "o" / "manifest.json", *(tmp_path / "o" / "data").iterdir()]:
        path.unlink()
    assert run_job(job, synthesis, NO_FILTERS, progress=False)["num_units"] == 2
    assert events == ["finalize"]


def test_dedup_and_render_show_progress_bars(tmp_path, capsys):
    """Stages 2-3 ran silently: at hundreds of millions of pairs, hours with no sign of life. They show
    bars over pairs and documents where stage 1 shows its own, and none with progress off."""
    corpus = write_jsonl(tmp_path / "c.jsonl", 24)
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2)
    manifest = run_job(job, progress=True)
    bars = capsys.readouterr().err
    pairs, docs = manifest["pairs"]["kept"] + manifest["filters_removed"]["near_duplicate"], manifest["docs"]["kept"]
    assert re.search(rf"dedup pairs: 100%.* {pairs}(\.0)?/{pairs}(\.0)? .*pair/s, unit 2/2, "  # 1.2M/200M at scale
                     rf"{manifest['filters_removed']['near_duplicate']} duplicates", bars)
    assert re.search(rf"render docs: 100%.* {docs}(\.0)?/{docs}(\.0)? .*doc/s, unit 2/2", bars)
    (tmp_path / "o" / "data" / "00001.parquet").unlink()  # a rerun renders what is missing; the bar starts past the rest
    (tmp_path / "o" / "manifest.json").unlink()
    run_job(job, progress=True)
    assert "render docs" in capsys.readouterr().err
    for path in [tmp_path / "o" / "manifest.json", tmp_path / "o" / "dedup.json"]:
        path.unlink()
    run_job(job, progress=False)
    assert "dedup" not in capsys.readouterr().err


def test_a_resume_may_change_engine_tuning_and_the_manifest_says_which_units_ran_how(tmp_path, tiny_model_dir,
                                                                                      caplog):
    """Lowering `batch_size` (or `max_batch_tokens`, `gpu_memory_utilization`, tuning `engine_kwargs`) after an
    out-of-memory error was refused once a unit was done ("changed: synthesis.batch_size 16 -> 8"), locking the
    user out of the finished units. It resumes now, with a warning; the model and decoding stay pinned."""
    import logging

    corpus = write_jsonl(tmp_path / "c.jsonl", 4)
    job = JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "o"), num_shards=2)
    synthesis = SynthesisConfig(synthesizer=str(tiny_model_dir), backend="transformers", max_model_len=256,
                                max_new_tokens=4, batch_size=16)
    assert run_job(job, synthesis, NO_FILTERS, rank=0, world_size=2, progress=False) is None  # unit 0 done
    smaller = replace(synthesis, batch_size=8, max_batch_tokens=512)
    with caplog.at_level(logging.WARNING, logger="hf_ipt.jobs"):
        manifest = run_job(job, smaller, NO_FILTERS, rank=1, world_size=2, progress=False)
    assert "other engine tuning (synthesis.batch_size 16 -> 8; synthesis.max_batch_tokens None -> 512)" in caplog.text
    assert "units done under the old settings stay as they are" in caplog.text
    assert json.loads((tmp_path / "o" / "job.json").read_text())["synthesis"]["batch_size"] == 16  # as it started
    assert manifest["engine_tuning"] == [
        {"settings": {"batch_size": 16, "max_batch_tokens": None, "gpu_memory_utilization": 0.9, "engine_kwargs": None},
         "units": [0]},
        {"settings": {"batch_size": 8, "max_batch_tokens": 512, "gpu_memory_utilization": 0.9, "engine_kwargs": None},
         "units": [1]}]
    assert manifest["rows"] == 4
    for decoding in ({"max_new_tokens": 5}, {"temperature": 0.7}, {"rounds": 3}):  # decoding stays pinned
        with pytest.raises(ValueError, match=f"holds a different job \\(changed: synthesis.{next(iter(decoding))} "):
            run_job(job, replace(smaller, **decoding), NO_FILTERS, progress=False)


def test_a_job_on_a_local_synthesizer_refuses_a_model_trained_further_in_its_folder(tmp_path, tiny_model_dir,
                                                                                   caplog):
    """The loop of docs/training.md (train a synthesizer into a folder, synthesize with it): a rank that
    started after the folder was trained further joined the job with the new model, and the job mixed
    two models' units; job.json held the path alone. A copy of the folder (new mtimes) is the same model."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from hf_ipt.jobs import prepare
    from hf_ipt.models import folder_fingerprint

    folder = tmp_path / "synth"
    shutil.copytree(tiny_model_dir, folder)
    job = JobConfig(corpus=str(write_jsonl(tmp_path / "a.jsonl", 4)), output_dir=str(tmp_path / "o"), num_shards=1)
    model = SynthesisConfig(synthesizer=str(folder), backend="transformers")
    prepare(job, model, NO_FILTERS)
    pinned = json.loads((tmp_path / "o" / "job.json").read_text())["synthesis"]["synthesizer_files"]
    assert set(pinned) >= {"config.json", "model.safetensors"} and pinned == folder_fingerprint(folder)
    for name in os.listdir(folder):  # copied byte for byte, with new mtimes: the same fingerprint
        shutil.copyfile(folder / name, tmp_path / name)
        os.replace(tmp_path / name, folder / name)
    assert folder_fingerprint(folder) == pinned
    (tmp_path / "o" / "pairs" / "00000.json").write_text("{}")  # a finished unit: the model is pinned now
    prepare(job, model, NO_FILTERS)
    trained = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(1e-3)
    trained.save_pretrained(folder)  # trained further, saved in place
    with pytest.raises(ValueError, match=r"synthesis.synthesizer: the model in folder .* changed since the job started "
                                         r"\('model.safetensors' differ; a job's units come from one model\)"):
        prepare(job, model, NO_FILTERS)
    spec = json.loads((tmp_path / "o" / "job.json").read_text())
    del spec["synthesis"]["synthesizer_files"]  # a job started before folders were pinned resumes as it ran
    (tmp_path / "o" / "job.json").write_text(json.dumps(spec))
    prepare(job, model, NO_FILTERS)
    os.remove(tmp_path / "o" / "pairs" / "00000.json")  # no unit done: its job.json gets the pin, said as such
    with caplog.at_level("WARNING", logger="hf_ipt.jobs"):
        prepare(job, model, NO_FILTERS)
    assert "is now pinned by its files (synthesizer_files; a job started by an hf_ipt before 0.3.0.dev4" in caplog.text
    assert "changed since the job started" not in caplog.text


def test_engine_kwargs_that_tune_may_change_on_resume_and_others_stay_pinned(tmp_path, caplog):
    import logging

    from hf_ipt.jobs import prepare

    job = JobConfig(corpus=str(write_jsonl(tmp_path / "a.jsonl", 4)), output_dir=str(tmp_path / "o"), num_shards=1)
    model = SynthesisConfig(synthesizer="org/model", engine_kwargs={"max_num_seqs": 256, "quantization": "fp8"})
    prepare(job, model, NO_FILTERS)
    (tmp_path / "o" / "pairs" / "00000.json").write_text("{}")  # a finished unit: the settings are pinned now
    with caplog.at_level(logging.WARNING, logger="hf_ipt.jobs"):
        prepare(job, replace(model, gpu_memory_utilization=0.7,
                             engine_kwargs={"max_num_seqs": 64, "enforce_eager": True, "quantization": "fp8"}), NO_FILTERS)
    assert ("synthesis.engine_kwargs '{\"max_num_seqs\": 256, \"quantization\": \"fp8\"}' -> '{\"enforce_eager\": "
            "true, \"max_num_seqs\": 64, \"quantization\": \"fp8\"}'; synthesis.gpu_memory_utilization 0.9 -> 0.7"
            ) in caplog.text
    with pytest.raises(ValueError, match=r"changed: synthesis.engine_kwargs '\{\"quantization\": \"fp8\"\}' -> None\)"):
        prepare(job, replace(model, engine_kwargs={"max_num_seqs": 64}), NO_FILTERS)  # the model's numerics


def dedup_job(tmp_path: Path, **settings) -> JobConfig:
    """24 texts where doc(i) repeats every 4 (many duplicate pairs, across units too), in 4 units."""
    corpus = tmp_path / "c.jsonl"
    if not corpus.exists():
        write_jsonl(corpus, 24)
    return JobConfig(corpus=str(corpus), output_dir=str(tmp_path / settings.pop("out", "o")), num_shards=4, **settings)


def test_stages_2_3_in_a_pool_of_processes_write_what_one_process_writes(tmp_path, monkeypatch):
    """Stage 2's MinHash signatures and stage 3's units in spawned processes: the same dedup decisions (taken
    in corpus order in the main process) and the same rows as without a pool; `num_proc` is not pinned."""
    import hf_ipt.jobs

    alone = run_job(dedup_job(tmp_path, out="one", num_proc=1), progress=False)
    monkeypatch.setattr(hf_ipt.jobs, "MIN_PAIRS_PER_PROCESS", 1)  # a pool even for these few pairs
    monkeypatch.setattr(hf_ipt.jobs, "MIN_DOCS_PER_PROCESS", 1)
    started = []
    pool = hf_ipt.jobs.process_pool

    def counted(processes: int):
        started.append(processes)
        return pool(processes)

    monkeypatch.setattr(hf_ipt.jobs, "process_pool", counted)
    pooled = run_job(dedup_job(tmp_path, out="two", num_proc=2), progress=False)
    assert started == [2, 2]  # dedup, render
    assert alone["filters_removed"]["near_duplicate"] > 0 and manifest_of(tmp_path / "one") == manifest_of(tmp_path / "two")
    assert (tmp_path / "one" / "dedup.json").read_text() == (tmp_path / "two" / "dedup.json").read_text()
    assert output_rows(tmp_path / "one") == output_rows(tmp_path / "two") and pooled["rows"] == alone["rows"]
    assert "num_proc" not in json.loads((tmp_path / "two" / "job.json").read_text())["job"]
    assert "num_proc" not in pooled["settings"]["job"]
    assert not (tmp_path / "two" / "dedup").exists()  # its checkpoints go once the manifest is written
    (tmp_path / "two" / "manifest.json").unlink()
    (tmp_path / "two" / "dedup.json").unlink()
    assert run_job(dedup_job(tmp_path, out="two", num_proc=3), progress=False)["rows"] == alone["rows"]


def test_dedup_killed_midway_resumes_after_the_last_unit_it_saved(tmp_path, monkeypatch, caplog):
    """Stage 2 kept no checkpoint: a run killed in it (hours at scale) started over from the first pair. Each
    unit's decisions are saved as taken; the rerun goes on from the next unit, with the same result."""
    import hf_ipt.jobs

    reference = run_job(dedup_job(tmp_path, out="ref"), progress=False)
    signatures = hf_ipt.jobs.unit_band_keys
    read = []

    def killed_at_unit_2(path: str, filters: FilterConfig):
        read.append(os.path.basename(path))
        if path.endswith("00002.parquet"):
            raise KeyboardInterrupt
        return signatures(path, filters)

    monkeypatch.setattr(hf_ipt.jobs, "unit_band_keys", killed_at_unit_2)
    job = dedup_job(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_job(job, progress=False)
    assert sorted(os.listdir(tmp_path / "o" / "dedup")) == ["00000.npz", "00001.npz"] and read[-1] == "00002.parquet"
    assert not (tmp_path / "o" / "dedup.json").exists()
    monkeypatch.setattr(hf_ipt.jobs, "unit_band_keys", lambda path, filters: read.append(path) or signatures(path, filters))
    read.clear()
    with caplog.at_level("WARNING", logger="hf_ipt"):
        run_job(job, progress=False)
    assert manifest_of(tmp_path / "ref") == manifest_of(tmp_path / "o")
    assert [os.path.basename(p) for p in read] == ["00002.parquet", "00003.parquet"]
    assert "dedup resumes after unit 00001 (2 of 4 units deduplicated by an earlier run)" in caplog.text
    assert (tmp_path / "ref" / "dedup.json").read_text() == (tmp_path / "o" / "dedup.json").read_text()
    assert reference["filters_removed"]["near_duplicate"] > 0 and output_rows(tmp_path / "ref") == output_rows(tmp_path / "o")
    assert not (tmp_path / "o" / "dedup").exists()


def test_dedup_checkpoints_of_redone_units_are_dropped(tmp_path):
    """A unit synthesized again (its pairs Parquet lost) changes what dedup decides from it on: the saved
    decisions go with `dedup.json`."""
    from hf_ipt.jobs import _redo_damaged

    job = dedup_job(tmp_path)
    run_job(job, progress=False)
    (tmp_path / "o" / "dedup").mkdir()
    for name in ("00000.npz", "00001.npz"):
        (tmp_path / "o" / "dedup" / name).write_bytes(b"saved")
    (tmp_path / "o" / "pairs" / "00003.parquet").unlink()
    assert _redo_damaged(job, 4) == [3]
    assert os.listdir(tmp_path / "o" / "dedup") == [] and not (tmp_path / "o" / "dedup.json").exists()


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "4"])
def test_num_proc_must_be_a_positive_integer(tmp_path, value):
    with pytest.raises(ValueError, match=r"`num_proc` must be an integer >= 1 or None"):
        dedup_job(tmp_path, num_proc=value)


def test_stage_processes_are_capped_by_units_and_work(monkeypatch):
    import hf_ipt.jobs
    from hf_ipt.jobs import stage_processes

    monkeypatch.setattr(hf_ipt.jobs, "available_cpus", lambda: 16)
    assert stage_processes(None, 100, 10_000_000, 20_000) == 16  # default: every CPU
    assert stage_processes(4, 100, 10_000_000, 20_000) == 4
    assert stage_processes(None, 3, 10_000_000, 20_000) == 3  # a unit per process at most
    assert stage_processes(None, 100, 50_000, 20_000) == 2  # ~5 s of work per process at least
    assert stage_processes(None, 100, 5_000, 20_000) == stage_processes(8, 0, 0, 20_000) == 1  # no pool


def test_a_pool_outlives_no_sigkilled_job(tmp_path):
    """SIGKILL gives a job no chance to stop its stage-2/3 pool: its processes waited for work forever (one per
    CPU, each holding hf_ipt's imports). They end once the process that started them is gone."""
    script = ("import os, sys, time\nfrom hf_ipt.jobs import process_pool\n"
              "with process_pool(2) as pool:\n"
              "    busy = [pool.submit(time.sleep, 60) for _ in range(2)]\n"
              "    while len(pool._processes) < 2: time.sleep(0.05)\n"
              "    print(*pool._processes, flush=True)\n"
              "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in proc.stdout.readline().split()]
    assert len(workers) == 2
    proc.kill()
    proc.wait()

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1][0] != "Z"  # a zombie has ended
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 60
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(alive, workers))


def test_a_script_without_a_main_guard_is_told_how_to_fix_it(tmp_path):
    """The pool's spawned processes import the script that started the job: an unguarded `run_job` call ran the
    job again in each, which then failed with multiprocessing's bootstrapping error and a misleading "killed"."""
    write_jsonl(tmp_path / "c.jsonl", 24)
    call = ("import hf_ipt.jobs as jobs\njobs.MIN_PAIRS_PER_PROCESS = jobs.MIN_DOCS_PER_PROCESS = 1\n"
            f"job = jobs.JobConfig(corpus={str(tmp_path / 'c.jsonl')!r}, output_dir={str(tmp_path / '{}')!r}, "
            "num_shards=4, num_proc=2)\n")
    bare = tmp_path / "bare.py"
    bare.write_text(call.format("bare") + "jobs.run_job(job, progress=False)\n")
    done = subprocess.run([sys.executable, str(bare)], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "outside `if __name__ == \"__main__\":`" in done.stderr
    assert "ended abruptly" in done.stderr.splitlines()[-1]
    guarded = tmp_path / "guarded.py"
    guarded.write_text(call.format("guarded") + "if __name__ == '__main__':\n    jobs.run_job(job, progress=False)\n")
    subprocess.run([sys.executable, str(guarded)], check=True, timeout=300)
    assert (tmp_path / "guarded" / "manifest.json").is_file()


def test_ctrl_c_in_a_pooled_stage_stops_its_processes_at_once(tmp_path):
    """Ctrl-C waited for every running unit and one more (minutes at scale, results dropped), and a second
    Ctrl-C during that wait left the job hung with its pool alive. The pool's processes are killed now."""
    # Ctrl-C as a terminal delivers it: a suite started in the background passes SIGINT on ignored, and Python
    # then installs no KeyboardInterrupt handler (test_cli's interrupt test says more)
    script = ("import signal, time\nfrom hf_ipt.jobs import process_pool\n"
              "if __name__ == '__main__':\n"
              "    signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "    with process_pool(2) as pool:\n"
              "        busy = [pool.submit(time.sleep, 60) for _ in range(4)]\n"
              "        while len(pool._processes) < 2: time.sleep(0.05)\n"
              "        print(*pool._processes, flush=True)\n"
              "        busy[0].result()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in proc.stdout.readline().split()]
    time.sleep(1)  # the units are running
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=45)  # the units would take 60 s, and 60 more for the queued one
    assert proc.returncode == -signal.SIGINT and "KeyboardInterrupt" in err  # ended by Ctrl-C, as Python does
    assert not any(os.path.exists(f"/proc/{pid}") and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]
                   for pid in workers)


def test_one_process_at_a_time_runs_stages_2_3(tmp_path, caplog):
    """Every rank that found all units done ran stages 2-3: a Slurm array resubmitted after a time limit in
    stage 2 started one dedup per task, each with its index and a pool. A lock lets one run them; the lock of
    a process that is gone is taken over."""
    import socket

    job = dedup_job(tmp_path, num_proc=1)
    run_job(job, filters=replace(FilterConfig(), dedup=True), progress=False)
    (tmp_path / "o" / "manifest.json").unlink()
    (tmp_path / "o" / "dedup.json").unlink()
    lock = tmp_path / "o" / "finalize.lock"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": live.pid}))  # a live process here
        with caplog.at_level("WARNING", logger="hf_ipt"):
            assert run_job(job, progress=False) is None
        assert "another process runs stages 2-3" in caplog.text and f"pid {live.pid} on {socket.gethostname()}" in caplog.text
        assert not (tmp_path / "o" / "dedup.json").exists() and lock.exists()
        # its pid alive but the lock untouched for an hour (a holder touches it every minute): the pid was reused
        # (a restarted container numbers its processes anew) and the holder is gone
        old = time.time() - 3600
        os.utime(lock, (old, old))
        assert run_job(job, progress=False)["rows"] == 24 and not lock.exists()
    finally:
        live.kill()
        live.wait()
    (tmp_path / "o" / "manifest.json").unlink()
    # this process's own pid, touched just now: another container on a host of the same name (each has its pid 1)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    assert run_job(job, progress=False) is None and lock.exists()
    lock.write_text(json.dumps({"host": "other-node", "pid": 1}))  # another host's: judged by its last touch
    assert run_job(job, progress=False) is None
    old = time.time() - 3600
    os.utime(lock, (old, old))
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_ipt"):
        assert run_job(job, progress=False)["rows"] == 24
    assert "taking over stages 2-3" in caplog.text and "pid 1 on other-node" in caplog.text
    assert not lock.exists() and (tmp_path / "o" / "manifest.json").exists()
    (tmp_path / "o" / "manifest.json").unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))  # gone, on this host
    assert run_job(job, progress=False)["rows"] == 24 and not lock.exists()
    (tmp_path / "o" / "manifest.json").unlink()
    lock.write_text('{"host": "other')  # cut short by a kill as it was written: judged by its age
    assert run_job(job, progress=False) is None
    os.utime(lock, (old, old))
    assert run_job(job, progress=False)["rows"] == 24 and not lock.exists()


def test_a_lock_taken_over_meanwhile_is_not_removed(tmp_path, monkeypatch, caplog):
    """Two processes that both judged a lock stale: the first takes it over and writes its own; the second
    must not remove that fresh lock (it removed whatever lay at the path, and both ran stages 2-3)."""

    from hf_ipt import jobs

    job = dedup_job(tmp_path, num_proc=1)
    run_job(job, filters=replace(FilterConfig(), dedup=True), progress=False)
    (tmp_path / "o" / "manifest.json").unlink()
    lock = tmp_path / "o" / "finalize.lock"
    lock.write_text(json.dumps({"host": "other-node", "pid": 1}))
    old = time.time() - 3600
    os.utime(lock, (old, old))
    first = {"host": "other-node", "pid": 2}
    judge = jobs._lock_stale

    def judged_then_overtaken(path):
        verdict = judge(path)
        lock.unlink()  # the first process takes it over between this one's look and its removal
        lock.write_text(json.dumps(first))
        return verdict

    monkeypatch.setattr(jobs, "_lock_stale", judged_then_overtaken)
    with caplog.at_level("WARNING", logger="hf_ipt"):
        assert run_job(job, progress=False) is None
    assert json.loads(lock.read_text()) == first and "took the lock over first" in caplog.text
    assert not (tmp_path / "o" / "manifest.json").exists()
    assert sorted(p.name for p in (tmp_path / "o").iterdir() if "lock" in p.name) == ["finalize.lock"]
    monkeypatch.setattr(jobs, "_lock_stale", judge)  # the judged lock itself is taken over as before
    os.utime(lock, (old, old))
    assert run_job(job, progress=False)["rows"] == 24 and not lock.exists()


def test_a_fresh_lock_moved_aside_is_put_back_without_hard_links_and_a_vanished_one_is_no_crash(tmp_path,
                                                                                              monkeypatch):
    """`_take_over` puts back a lock it moved aside that is not the one it judged: by a hard link, which
    object-store mounts (gcsfuse, s3fs) refuse; the lock was then lost. The lock moved aside may also be
    removed meanwhile with a finished job's temporaries: no FileNotFoundError from the takeover."""
    from hf_ipt import jobs

    lock = tmp_path / "finalize.lock"
    lock.write_text(json.dumps({"host": "a", "pid": 1}))
    judged = jobs._lock_stale(str(lock))[2]
    fresh = {"host": "b", "pid": 2}
    lock.unlink()
    lock.write_text(json.dumps(fresh))  # another process took it over meanwhile (another inode)

    def no_hard_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(jobs.os, "link", no_hard_links)
    assert jobs._take_over(str(lock), judged) is False
    assert json.loads(lock.read_text()) == fresh and [p.name for p in tmp_path.iterdir()] == ["finalize.lock"]
    monkeypatch.undo()
    stat = os.stat

    def vanished(path, *args, **kwargs):
        if ".tmp-" in str(path):
            raise FileNotFoundError(2, "No such file", str(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(jobs.os, "stat", vanished)
    assert jobs._take_over(str(lock), judged) is False


def test_dedup_checkpoints_left_by_a_kill_after_the_manifest_are_removed(tmp_path):
    job = dedup_job(tmp_path)
    manifest = run_job(job, progress=False)
    (tmp_path / "o" / "dedup").mkdir()
    (tmp_path / "o" / "dedup" / "00000.npz").write_bytes(b"left")
    assert run_job(job, progress=False) == manifest and not (tmp_path / "o" / "dedup").exists()


def test_cpu_quota_of_a_cgroup():
    from hf_ipt.jobs import cpu_quota

    assert [cpu_quota(text) for text in ("400000 100000\n", "150000 100000", "max 100000\n", "50000 100000", "", "x y")] \
        == [4, 2, None, 1, None, None]
