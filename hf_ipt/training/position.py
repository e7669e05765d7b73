"""Stream positions: where a training stream stands after each example, saved with every checkpoint.

A resumed `Trainer` normally fast-forwards by drawing, and throwing away, every batch it has
already trained on, so the stream re-reads AND re-tokenizes everything up to the checkpoint:
hours at pre-training scale. hf_ipt's streams instead know where they are:

- each tokenized document carries a snapshot (`RESUME_AT`) of what it moved: how many rows
  its source has given up to and including it (``"rows:<source>"``) and what each token mix
  it went through has emitted (``"mix:<name>"``, the counts `mix_by_tokens` restarts from);
- packing folds the snapshots into the `Position` after each block (`Tracker`): the state
  after the last whole document, and how many tokens of the next one the block holds (`skip`);
- the collator passes the last block's position with each batch, `IPTTrainer` keeps the one of
  the last batch it trained on; at each save the saving process gathers every rank's and
  writes them all into the checkpoint (``checkpoint-N/hf_ipt_stream/rank{r}.json``);
- a resume (`StreamStart.load`) restarts every source past its rows (read, not tokenized),
  every mix at its counts and the packer inside its document, and tells the `Trainer` not
  to skip batches: the stream continues exactly where the checkpoint left it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cli import UsageError

logger = logging.getLogger(__name__)

RESUME_AT = "resume_at"  # a document's snapshot (dict) inside the stream
STREAM_POSITION = "stream_position"  # an example's / a batch's `Position`, as JSON text
FOLDER = "hf_ipt_stream"  # in each checkpoint: one `rank{r}.json` per process


@dataclass(frozen=True)
class Position:
    """Where a stream stands: after the documents of snapshot `after`, `skip` tokens into the next.

    Args:
        after (`dict`): ``"rows:<source>"`` -> rows that source has given, ``"mix:<name>"`` ->
            the counts each source of that mix has emitted; empty at the start of the stream.
        skip (`int`): tokens of the next document that earlier blocks already hold.
    """

    after: dict[str, Any] = field(default_factory=dict)
    skip: int = 0

    def rows(self, source: str) -> int:
        """Rows of `source` that are behind this position."""
        return int(self.after.get(f"rows:{source}", 0))

    def emitted(self, mix: str, num_sources: int) -> list[float]:
        """What each of the `num_sources` sources of mix `mix` has emitted (a fresh list)."""
        counts = self.after.get(f"mix:{mix}")
        if counts is None:
            return [0] * num_sources
        if len(counts) != num_sources:
            raise ValueError(
                f"the saved position of mix {mix!r} has {len(counts)} sources, the stream has {num_sources}: "
                "the data settings changed since the checkpoint"
            )
        return list(counts)

    def to_json(self) -> str:
        return json.dumps({"after": self.after, "skip": self.skip}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Position:
        value = json.loads(text)
        return cls(after=dict(value["after"]), skip=int(value["skip"]))


class StreamStart:
    """Where each rank's stream starts: the beginning, until `load` reads a checkpoint's positions.

    One object is shared (by reference) by a stream's `datasets.IterableDataset` and its
    per-rank generators, which look their rank up when iteration starts, i.e. after the
    `Trainer` has been told which checkpoint to resume.
    """

    def __init__(self) -> None:
        self.positions: dict[int, Position] = {}

    def __call__(self, rank: int) -> Position:
        return self.positions.get(rank, Position())

    def load(self, checkpoint: str | os.PathLike, world_size: int) -> bool:
        """Read every rank's position saved in `checkpoint`; `False` (and nothing read) when one is missing.
        Positions saved by more processes than `world_size` raise: each is a count within its rank's share
        of the sources, which another number of processes splits otherwise."""
        saved = saved_processes(checkpoint)
        if saved > world_size:
            raise UsageError(
                f"{checkpoint} holds the stream positions of {saved} processes, this run has {world_size}: a "
                "position counts the rows of its process's share of each source, which another number of processes "
                f"splits otherwise. Resume with {saved} processes (accelerate launch --num_processes {saved}), or "
                "pass --ignore_data_skip true to start the stream from its beginning"
            )
        paths = {rank: position_file(checkpoint, rank) for rank in range(world_size)}
        if not all(os.path.isfile(path) for path in paths.values()):
            return False
        self.positions = {
            rank: Position.from_json(Path(path).read_text(encoding="utf-8")) for rank, path in paths.items()
        }
        return True


def position_file(checkpoint: str | os.PathLike, rank: int) -> str:
    return os.path.join(checkpoint, FOLDER, f"rank{rank}.json")


def saved_processes(checkpoint: str | os.PathLike) -> int:
    """How many processes saved their position in `checkpoint`: one more than the highest rank saved."""
    folder = os.path.join(checkpoint, FOLDER)
    names = os.listdir(folder) if os.path.isdir(folder) else []
    ranks = [int(match[1]) for match in map(re.compile(r"rank(\d+)\.json").fullmatch, names) if match]
    return max(ranks, default=-1) + 1


def save_position(checkpoint: str | os.PathLike, rank: int, position: str) -> None:
    """Write one rank's `Position` (JSON text) into a checkpoint folder, atomically."""
    from ..files import write_atomic

    path = position_file(checkpoint, rank)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, lambda temp: Path(temp).write_text(position + "\n", encoding="utf-8"))


def numbered_rows(rows: Iterable[dict], source: str, start: Position,
                  recorded: Mapping[str, Any] | None = None) -> Iterator[tuple[dict, dict]]:
    """The rows of `source` after the ones `start` has behind it, each with its snapshot (holding
    `recorded` too: how the source is read, for a resume to read it so again).

    The rows already trained on are read and dropped here, before any tokenization.
    """
    rows = iter(rows)
    skip = start.rows(source)
    if skip:
        logger.info("resuming source %r: skipping the %d rows already trained on (read, not tokenized)", source, skip)
        if sum(1 for _ in itertools.islice(rows, skip)) < skip:
            raise ValueError(f"source {source!r} ended before the {skip} rows of the saved stream position")
    for number, row in enumerate(rows, skip + 1):
        yield row, {**(recorded or {}), f"rows:{source}": number}


def mix_documents(
    sources: list[Iterable[Mapping]], ratios: list[float], *, name: str, start: Position, count: Any = None
) -> Iterator[dict]:
    """`mix_by_tokens` of documents that carry snapshots, restarted at `start`'s counts; each
    document's snapshot gains the counts of this mix after it."""
    from .mixing import mix_by_tokens, num_tokens

    emitted = start.emitted(name, len(sources))
    for document in mix_by_tokens(sources, ratios, count=count or num_tokens, emitted=emitted):
        yield {**document, RESUME_AT: {**document[RESUME_AT], f"mix:{name}": list(emitted)}}


class Tracker:
    """The whole stream's state from `start` and the (partial) snapshots of the documents since.

    A document's snapshot holds only what it moved: its source's rows and the counts of the
    mixes it went through. The consumer of the stream (packing, `with_positions`) folds them in.
    """

    def __init__(self, start: Position) -> None:
        self.state = dict(start.after)

    def after(self, at: Mapping[str, Any]) -> dict[str, Any]:
        """The state after a document with snapshot `at`, without moving past it."""
        return {**self.state, **at}

    def passed(self, at: Mapping[str, Any]) -> None:
        self.state.update(at)


def with_positions(examples: Iterable[Mapping], start: Position) -> Iterator[dict]:
    """Examples that are whole documents (not packed), each with the `Position` after it."""
    tracker = Tracker(start)
    for example in examples:
        example = dict(example)
        tracker.passed(example.pop(RESUME_AT))
        example[STREAM_POSITION] = Position(after=tracker.state).to_json()
        yield example
