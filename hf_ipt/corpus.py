"""Read raw corpora: local files (.txt, .jsonl/.json, .parquet) or a Hub / local dataset repo.

Documents stream one at a time; shards are `(files, part, parts)` so that a single large
file can still be split across dataloader workers and ranks without any document being
read into two shards' outputs. Undecodable, binary or empty documents are yielded as
rejects (with a reason) instead of raising, so one bad document never stops a shard.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED = TEXT_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES


@dataclass
class Document:
    """One raw document; `reject` says why it cannot be used (then `text` is empty)."""

    id: str
    text: str
    reject: str | None = None


def is_local_corpus(corpus: str) -> bool:
    """A file or a glob of files; a directory or anything else is a dataset (repo id or folder).

    A pattern with glob characters or a supported suffix counts as local even when it
    matches nothing, so a typo gives "matched no file" rather than a Hub lookup.
    """
    if os.path.isdir(corpus):
        return False
    return os.path.isfile(corpus) or glob.has_magic(corpus) or corpus.endswith(SUPPORTED)


def local_files(corpus: str) -> list[str]:
    """Sorted files matched by `corpus`, each with a supported suffix."""
    files = sorted(p for p in glob.glob(corpus, recursive=True) if os.path.isfile(p))
    if not files:
        raise FileNotFoundError(f"`corpus` matched no file: {corpus!r}")
    bad = [f for f in files if not f.endswith(SUPPORTED)]
    if bad:
        raise ValueError(
            f"`corpus` {corpus!r} matched unsupported files such as {bad[0]!r}; "
            f"supported suffixes: {', '.join(SUPPORTED)}"
        )
    return files


def repo_files(corpus: str, config: str | None, split: str, revision: str | None, token=None) -> list[str]:
    """Data files of `split` in a Hub dataset (or a local folder in the same layout)."""
    import datasets

    builder = datasets.load_dataset_builder(corpus, config, revision=revision, token=token)
    data_files = builder.config.data_files or {}
    if split not in data_files:
        raise ValueError(
            f"`corpus_split` {split!r} not found in {corpus!r}; available: {sorted(data_files)}"
        )
    return [str(f) for f in data_files[split]]


def _decode(raw: bytes) -> tuple[str, str | None]:
    if b"\x00" in raw:
        return "", "binary"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "", "not utf-8"
    return (text, None) if text.strip() else ("", "empty")


def _text_docs(path: str, doc_prefix: str) -> Iterator[Document]:
    from datasets.utils.file_utils import xopen

    with xopen(path, "rb") as f:
        text, reject = _decode(f.read())
    yield Document(doc_prefix, text, reject)


def _jsonl_docs(path: str, doc_prefix: str, text_column: str) -> Iterator[Document]:
    from datasets.utils.file_utils import xopen

    with xopen(path, "rb") as f:
        for i, line in enumerate(f):
            doc_id = f"{doc_prefix}:{i}"
            text, reject = _decode(line)
            if reject:
                yield Document(doc_id, "", "empty" if reject == "empty" else reject)
                continue
            try:
                value = json.loads(text).get(text_column)
            except (json.JSONDecodeError, AttributeError):
                yield Document(doc_id, "", "invalid json")
                continue
            yield _checked(doc_id, value, text_column)


def _parquet_docs(path: str, doc_prefix: str, text_column: str) -> Iterator[Document]:
    import pyarrow.parquet as pq
    from datasets.utils.file_utils import xopen

    with xopen(path, "rb") as f:
        pf = pq.ParquetFile(f)
        if text_column not in pf.schema_arrow.names:
            raise ValueError(
                f"`text_column` {text_column!r} not in {path!r}; columns: {pf.schema_arrow.names}"
            )
        i = 0
        for batch in pf.iter_batches(columns=[text_column], batch_size=1024):
            for value in batch.column(0).to_pylist():
                yield _checked(f"{doc_prefix}:{i}", value, text_column)
                i += 1


def _checked(doc_id: str, value, text_column: str) -> Document:
    if not isinstance(value, str):
        return Document(doc_id, "", f"no string in column {text_column!r}")
    if "\x00" in value:
        return Document(doc_id, "", "binary")
    return Document(doc_id, value, None if value.strip() else "empty")


def read_file(path: str, text_column: str = "text") -> Iterator[Document]:
    """Documents of one file: a .txt file is ONE document; .jsonl lines and parquet rows are one each."""
    prefix = Path(path.split("::")[-1]).name
    if path.endswith(TEXT_SUFFIXES):
        return _text_docs(path, prefix)
    if path.endswith(JSON_SUFFIXES):
        return _jsonl_docs(path, prefix, text_column)
    if path.endswith(PARQUET_SUFFIXES):
        return _parquet_docs(path, prefix, text_column)
    raise ValueError(f"unsupported corpus file {path!r}; supported suffixes: {', '.join(SUPPORTED)}")


def make_shards(files: list[str], num_shards: int | None) -> list[dict]:
    """Shards over `files`: whole files when there are enough, else each file split in parts.

    A part keeps every `parts`-th document of its file, so parts are disjoint and complete.
    """
    if not files:
        return []
    wanted = num_shards or max(len(files), 8)
    if wanted <= len(files):
        groups = [files[i::wanted] for i in range(wanted)]
        return [{"files": g, "part": 0, "parts": 1} for g in groups if g]
    parts = -(-wanted // len(files))
    return [{"files": [f], "part": p, "parts": parts} for f in files for p in range(parts)]


def iter_shard(shard: dict, text_column: str = "text") -> Iterator[Document]:
    """The documents of one shard, in file order."""
    part, parts = shard["part"], shard["parts"]
    for path in shard["files"]:
        for i, doc in enumerate(read_file(path, text_column)):
            if i % parts == part:
                yield doc
