"""Peak RSS of streaming `hf_ipt/augmented` over N vs 10*N texts (rules synthesizer).

    python benchmarks/builder_memory.py --docs 2000

Each size runs in a fresh subprocess that streams every row and reports its own peak
RSS (`ru_maxrss`); the goal (issue 4) is that 10x more texts stay within 10% peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
import datasets, hf_ipt
ds = datasets.load_dataset("hf_ipt/augmented", corpus=sys.argv[1], synthesizer="rules", streaming=True, split="train")
t = time.perf_counter(); rows = 0
for row in ds:
    rows += 1
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PARAGRAPH = (
    "The company reported a profit of $1.13bn in the third quarter, up from last year. "
    "However, sales in the U.S. fell by 3.5% because demand from retailers weakened. "
    "Therefore, the shares of the firm dropped sharply in early trading on Wall Street. "
    "Analysts said the outlook is about energy prices and interest rates rather than demand. "
)


def write_corpus(path: str, docs: int) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps({"text": f"Market report {i}\n" + PARAGRAPH * (1 + i % 5)}) + "\n" for i in range(docs))


def measure(path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000, help="texts in the small run (the large has 10x)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small, large = os.path.join(tmp, "small.jsonl"), os.path.join(tmp, "large.jsonl")
        write_corpus(small, args.docs)
        write_corpus(large, 10 * args.docs)
        a, b = measure(small), measure(large)
    print(f"{'texts':>8} {'rows':>8} {'seconds':>8} {'peak RSS MB':>12}")
    for n, r in ((args.docs, a), (10 * args.docs, b)):
        print(f"{n:>8} {r['rows']:>8} {r['seconds']:>8.1f} {r['peak_rss_mb']:>12.1f}")
    ratio = b["peak_rss_mb"] / a["peak_rss_mb"]
    print(f"peak RSS ratio (10x texts / 1x): {ratio:.3f}  goal <= 1.10: {'PASS' if ratio <= 1.10 else 'FAIL'}")


if __name__ == "__main__":
    main()
