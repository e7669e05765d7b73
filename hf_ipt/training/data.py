"""Streaming input for the recipes: rows from files or the Hub, endless epochs, tokenization, rank shards.

Every recipe's training set is built the same way: `sharded_stream(build, world_size)` wraps
a function ``build(rank, world_size) -> Iterator[example]``. Accelerate gives each rank its
own shard of that `datasets.IterableDataset` (``dispatch_batches=False``, set by
`TrainingConfig`), so each rank reads and tokenizes only its rows: no rank tokenizes for the
others and batch shapes may differ across ranks. Sources restart (reshuffled) when they end,
so a stream never runs dry before `max_steps`; each restart is logged.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..cli import UsageError
from ..corpus import (
    cached_dataset,
    data_suffix,
    hub_id_parts,
    is_file_corpus,
    is_local_corpus,
    local_files,
    open_file,
    output_files,
    pattern_files,
    repo_files,
    starts_with_array,
    text_bytes,
    utf8_rows,
    warn_left_out,
)

logger = logging.getLogger(__name__)

BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}  # by `data_suffix`


def load_rows(source: str | list[str], *, split: str = "train", name: str | None = None, option: str | None = None):
    """Stream the rows of local files (.txt = one document per file, .jsonl, .parquet; .txt, .jsonl and .json
    also compressed: ``.gz``, ``.bz2``, ``.xz``, ``.zst``) or a dataset.

    Args:
        source (`str` or `list[str]`): a file or glob, files of a Hub dataset by URL
            (``hf://datasets/org/name/data/*.jsonl``), a list of files, a Hub dataset id
            (``org/name``, or ``org/name@revision``: a branch, tag or commit), or a local folder
            in Hub layout.
        split (`str`, *optional*, defaults to ``"train"``): split of a dataset.
        name (`str`, *optional*): config name of a dataset.
        option (`str`, *optional*): the option that gave `source` (``"--domain_dataset"``): a local folder
            whose layout leaves files of another format out is read with a warning naming them under it.

    Returns:
        `datasets.IterableDataset`
    """
    import datasets

    if isinstance(source, str) and not os.path.isdir(source) and not is_file_corpus(source):
        repo, revision = hub_id_parts(source)  # offline, a Hub dataset the cache holds is read as its folder
        source = cached_dataset(repo, revision, f"dataset {source!r}") or source
    if isinstance(source, str) and os.path.isdir(source):
        source = _folder_files(source, name, split, option) or source
    if isinstance(source, list) or is_file_corpus(source):
        files = source if isinstance(source, list) else pattern_files(source)
        builders = {BUILDERS[data_suffix(f)] for f in files}
        if len(builders) > 1:
            raise ValueError(
                f"{source!r} mixes file types ({sorted(builders)}); use one type per source"
            )
        builder = builders.pop()
        if builder == "parquet":
            # datasets' streaming parquet reader sleeps 5 s (SLEEP_TIME_ON_THREADS_SHUTDOWN,
            # apache/arrow#45214) whenever a pass ends inside an interleave: small sources that
            # restart every few steps would stall training. Read row groups with pyarrow instead.
            return datasets.IterableDataset.from_generator(_parquet_rows, gen_kwargs={"files": files})
        if builder == "text":
            return datasets.IterableDataset.from_generator(_text_rows, gen_kwargs={"files": files})
        # .jsonl and .json (JSON lines or one array, as synthesis reads them: `corpus.read_file`), each row as
        # it is: datasets' JSON reader casts every file to the columns of the first, so files that differ in a
        # column (the collection's sources, general instructions with an extra field) would stop the run
        # mid-stream. Compressed files too: a damaged or cut one is an error naming it (`corpus.open_file`),
        # where datasets' reader raises a bare EOFError or Arrow parse error mid-stream.
        return datasets.IterableDataset.from_generator(_jsonl_rows, gen_kwargs={"files": files})
    repo, revision = hub_id_parts(source) if not os.path.isdir(source) else (source, None)
    return datasets.load_dataset(repo, name=name, split=split, streaming=True, revision=revision)


def _folder_files(folder: str, name: str | None, split: str, option: str | None = None) -> list[str] | None:
    """The files of `split` in a local dataset folder, read as the same files named by a glob are (a .txt
    file is one document, JSON-lines files may differ in columns); `None` (datasets reads the folder) when
    the split is not found or a file is of a type hf_ipt does not read. The output folder of ``hf-ipt
    synthesize`` or ``hf-ipt augment`` gives its data files only (`corpus.output_files`), not its job files."""
    import datasets

    if (files := output_files(folder, split)) is not None:
        return files
    data_files = datasets.load_dataset_builder(folder, name).config.data_files or {}
    if option is not None:
        warn_left_out(option, folder, name, data_files)
    files = [str(f) for f in data_files.get(split, [])]
    return files if files and all(data_suffix(f) in BUILDERS for f in files) else None


def _parquet_rows(files: list[str]):
    """The rows of Parquet files; a string value that is not UTF-8 (written from raw bytes) is `None`, a null
    that training skips as it skips empty texts (a warning counts them per file), not an error for its batch."""
    import pyarrow.parquet as pq

    for path in files:
        bad = 0
        with open_file(path) as f:  # a local file or an hf:// URL
            # no pre-buffering: it would fetch every row group of a remote file before the first row
            for batch in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=1024):
                rows, undecodable = utf8_rows(batch)
                bad += undecodable
                yield from rows
        if bad and path not in _NOT_UTF8_WARNED:  # once a file: a small source restarts every few steps
            _NOT_UTF8_WARNED.add(path)
            logger.warning("hf_ipt: %d value(s) of %r are strings that are not UTF-8: read as null (skipped)", bad, path)


_NOT_UTF8_WARNED: set[str] = set()


def _text_rows(files: list[str]):
    """One ``{"text": ...}`` row per file, decoded as synthesis reads a .txt corpus (`corpus.decode_document`):
    UTF-8 without a BOM, or UTF-16/32 by its BOM, and empty (no document, the row still counts) when the file
    is not UTF-8 or is binary, rather than stop the run where datasets' text reader would raise."""
    from ..corpus import decode_document

    for path in files:
        with open_file(path) as f:  # a local file or an hf:// URL
            text, reject = decode_document(f.read())
        if reject not in (None, "empty"):
            logger.warning("%s is %s: it gives no training document", path, reject)
        yield {"text": text}


def _jsonl_rows(files: list[str]):
    """The JSON objects of JSON-lines files, line by line; a line that is not one (not JSON, not
    UTF-8) is skipped with a warning, as synthesis skips it (`corpus`), and a blank line is no row.
    A .json file that holds one array gives its objects (read whole)."""
    from ..corpus import BOM, _decode

    for path in files:
        if data_suffix(path) == ".json" and starts_with_array(path):
            yield from _array_rows(path)
            continue
        with open_file(path) as f:  # a local file or an hf:// URL
            for number, line in enumerate(f, 1):
                text, reject = _decode(line.removeprefix(BOM) if number == 1 else line)
                if reject == "empty":
                    continue
                row = None if reject else _json_object(text)
                if row is None:
                    logger.warning("%s, line %d: not a JSON object of UTF-8 text (%s), skipped", path, number,
                                   reject or "invalid")
                    continue
                yield row


def _array_rows(path: str):
    """The objects of a JSON file holding one top-level array; an item that is no object is skipped."""
    import json

    with open_file(path) as f:
        try:
            items = json.loads(f.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UsageError(f"{path!r} starts with '[' but is not one valid JSON array ({error}): fix the file, "
                             "or write it as JSON lines (.jsonl)") from None
    skipped = sum(not isinstance(item, dict) for item in items)
    if skipped:
        logger.warning("%s: %d items of its array are not JSON objects, skipped", path, skipped)
    yield from (item for item in items if isinstance(item, dict))


def _json_object(line: str) -> dict | None:
    """The JSON object of a line, or `None`: not JSON, not an object, or holding a lone surrogate
    (a JSON "\\ud83d", an emoji cut in half, which no tokenizer takes)."""
    import json

    try:
        row = json.loads(line)
        if "\\u" in line:
            json.dumps(row, ensure_ascii=False).encode("utf-8")
    except (json.JSONDecodeError, UnicodeEncodeError):
        return None
    return row if isinstance(row, dict) else None


UNEQUAL_SHARE = 1.1  # a rank's bytes over another's above which whole files per rank would skew the mix


# How to resume a checkpoint whose position counts a folder's .txt rows as an earlier hf_ipt read them.
LINES_NOT_FILES = (
    "an earlier hf_ipt (0.3.0.dev3 before a dataset folder was read as its files) read a local folder's .txt "
    "files one row per LINE, this one reads one document per file, so the saved stream position counts other "
    "rows than it would skip. Resume with --ignore_data_skip true (the weights, optimizer and schedule resume, "
    "the stream starts from its beginning), or with the hf_ipt that saved the checkpoint"
)


def text_folder(source: Any) -> bool:
    """Whether `source` is a local folder holding .txt files (compressed ones too): `load_rows` reads each as
    one document; hf_ipt before 0.3.0.dev3's folder change read them through `datasets`, one row per line
    (`LINES_NOT_FILES`)."""
    if not isinstance(source, str) or not os.path.isdir(source):
        return False
    return any(data_suffix(f) == ".txt" for _, _, files in os.walk(source) for f in files)


def unequal_files(source: str | list[str], world_size: int, *, split: str = "train", shuffled: bool = False) -> bool:
    """Whether whole files per rank would give the ranks shares of `source` that differ by more than
    `UNEQUAL_SHARE` in bytes (local files or a local dataset folder's files of `split`; a Hub dataset or
    ``hf://`` URL keeps whole files).

    datasets gives each rank whole files when their number divides by the processes. A rank holding
    the small files goes round them many times while another is in its first pass over a large one:
    the small files would make up far more of the training tokens than of the source. `shuffled`
    (a shuffle buffer): datasets shuffles the order of the files before rank ``r`` takes files
    ``r, r + world_size, ...``, anew each epoch, so any files may share a rank: the shares compared
    are those of the smallest files together and of the largest.
    """
    if world_size < 2:
        return False
    try:
        if isinstance(source, list):
            files = source
        elif is_local_corpus(source):
            files = local_files(source)
        else:  # a local dataset folder: its split's files, in the order datasets shards them
            files = repo_files(source, None, split, None) if os.path.isdir(source) else []
        if not files or len(files) % world_size or not all(os.path.isfile(f) for f in files):
            return False  # not whole files per rank (datasets splits by rows), or sizes unknown here
        sizes = [text_bytes(f) for f in files]
    except (OSError, ValueError):
        return False  # `load_rows` reports a missing file or a bad pattern
    if shuffled:
        per_rank, ordered = len(files) // world_size, sorted(sizes)
        shares = [sum(ordered[:per_rank]), sum(ordered[-per_rank:])]
    else:
        shares = [sum(sizes[rank::world_size]) for rank in range(world_size)]
    return max(shares) > UNEQUAL_SHARE * max(min(shares), 1)


def endless_rows(
    dataset, *, rank: int, world_size: int, seed: int, shuffle_buffer_size: int, name: str,
    text_of: Callable[[dict], Any] | None = None, skip: int = 0, by_rows: bool = False,
):
    """This rank's rows of `dataset`, epoch after epoch, reshuffled each epoch.

    Args:
        dataset (`datasets.IterableDataset`): the source, e.g. from `load_rows`.
        rank (`int`), world_size (`int`): this process's shard of the rows.
        seed (`int`): shuffling seed (the same on every rank, so shards stay disjoint).
        shuffle_buffer_size (`int`): rows in the shuffle buffer; 0 keeps the source order.
        name (`str`): the source's name in logs and errors.
        text_of (`Callable`, *optional*): what a row gives for training (its text), `None` for
            nothing. Given, each row comes as ``(row, text_of(row))``, computed once here for the
            consumer too; a pass over the rows in which every one gives `None` raises, rather than
            restart forever with nothing to train.
        skip (`int`): with `text_of`, the first `skip` rows (those a saved stream position has
            behind it, dropped by the consumer) come as ``(row, None)`` without computing their
            text, and count as giving a document.
        by_rows (`bool`): every rank reads every row and keeps rows ``rank, rank + world_size, ...``
            of each pass (the same order on every rank: the same seed and epoch), rather than whole
            files when their number divides by the processes. For a small source seen several
            times (the collection): with whole files, a rank holding small ones would go round
            them many times while another is still in its first pass over a large one, so files
            would be seen unequal numbers of times.
    """
    from datasets.distributed import split_dataset_by_node

    if shuffle_buffer_size > 0:
        dataset = dataset.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
    if not by_rows:
        dataset = split_dataset_by_node(dataset, rank=rank, world_size=world_size)
    for epoch in itertools.count():
        if shuffle_buffer_size > 0:  # reshuffled; datasets would reorder the files of any epoch > 0, shuffled or not
            dataset.set_epoch(epoch)
        rows = kept = 0
        for index, row in enumerate(dataset):
            if by_rows and index % world_size != rank:
                continue
            rows += 1
            if text_of is None:
                kept += 1
                yield row
            elif skip > 0:
                skip -= 1
                kept += 1
                yield row, None
            else:
                text = text_of(row)
                kept += text is not None
                yield row, text
        if rows == 0:
            raise UsageError(
                f"source {name!r} has no rows for rank {rank} of {world_size}: each process reads its own share of "
                "the rows (whole files, when their number divides by the processes) and this one got none; add rows "
                "or files, or launch fewer processes"
            )
        if kept == 0:
            raise UsageError(
                f"source {name!r} gave no training document in a whole pass over its {rows} rows on rank {rank} "
                f"of {world_size}: every text is null, empty or not a string (or every pair of a collection row, or its "
                "question or answer is nothing but protocol markers or special tokens such as '</s>', blanked for "
                "synthesizer tuning); "
                "check the source and its column options (--text_column, --question_column, --response_column, "
                "--pairs_column)"
            )
        logger.info(
            "source %r: epoch %d done on rank %d (%d rows), restarting", name, epoch, rank, rows
        )


def tokenize_texts(
    texts: Iterable[str], tokenizer: Any, batch_size: int = 256
) -> Iterator[list[int]]:
    """Token ids of each text with EOS added, and BOS when the tokenizer adds one by itself.

    The BOS rule is `hf_ipt.models.adds_bos`, the one evaluation follows (`default_add_bos`).
    Texts are tokenized in batches: a fast tokenizer encodes a batch on several threads.
    A literal ``<s>`` or ``</s>`` inside a text is tokenized as text (`split_special_tokens`),
    never as a BOS/EOS that would cut the document in two.
    """
    from ..models import adds_bos

    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no `eos_token`: documents could not be separated")
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) and tokenizer.bos_token_id != eos else []
    texts = iter(texts)
    while batch := list(itertools.islice(texts, batch_size)):
        for ids in tokenizer(batch, add_special_tokens=False, split_special_tokens=True)["input_ids"]:
            yield bos + ids + [eos]


def sharded_stream(build: Callable[..., Iterator[dict]], world_size: int, *, resumable: bool = False):
    """A `datasets.IterableDataset` of ``build(rank, world_size)`` with one shard per rank.

    Args:
        build (`Callable`): yields this rank's training examples; must be picklable (a
            module-level function or a `functools.partial` of one).
        world_size (`int`): number of training processes.
        resumable (`bool`, *optional*, defaults to `False`): `build` also takes ``start``, the
            `position.Position` its rank starts from; the dataset's `stream_start` attribute
            (a `position.StreamStart`) sets it before iteration (`trainer.train_and_save` does).
    """
    import datasets

    from .position import StreamStart

    start = StreamStart() if resumable else None
    dataset = datasets.IterableDataset.from_generator(
        _generate,
        gen_kwargs={"ranks": list(range(world_size)), "world_size": world_size, "build": build, "start": start},
    )
    dataset.stream_start = start
    return dataset


def _generate(ranks: list[int], world_size: int, build: Callable[..., Iterator[dict]], start: Any = None):
    for rank in ranks:
        yield from build(rank, world_size) if start is None else build(rank, world_size, start=start(rank))
