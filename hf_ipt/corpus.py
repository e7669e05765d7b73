"""Read raw corpora: local files (.txt, .jsonl/.json, .parquet) or a Hub / local dataset repo.

Text and JSON files may be compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``: ``x.jsonl.zst``, as The Pile
ships); they are decompressed as they stream. Parquet compresses inside the file, so ``.parquet`` only.

Documents stream one at a time; shards are `(files, part, parts)` so that a single large
file can still be split across dataloader workers and ranks without any document being
read into two shards' outputs. Undecodable, binary or empty documents are yielded as
rejects (with a reason) instead of raising, so one bad document never stops a shard.

Document ids are ``<name>:<index>``, where ``<name>`` is the file's base name when every
corpus file sits in one folder, else its path relative to the folder the files share (so
``x/train.jsonl`` and ``y/train.jsonl`` never give the same ids).
"""

from __future__ import annotations

import codecs
import functools
import glob
import heapq
import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from .cli import (
    MissingDependencyError,
    MissingFileError,
    UsageError,
    hub_unreachable_error,
    needs_hub,
)
from .models import is_local_path, missing_path_hint

TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
# compression suffix -> (codec, the package that reads it when not the standard library)
COMPRESSIONS = {".gz": ("gzip", None), ".bz2": ("bz2", None), ".xz": ("xz", None), ".zst": ("zstd", "zstandard")}
SUPPORTED = TEXT_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES + tuple(
    data + packed for data in TEXT_SUFFIXES + JSON_SUFFIXES for packed in COMPRESSIONS
)
SUPPORTED_TEXT = ".txt, .jsonl, .json, .parquet; .txt, .jsonl, .json also compressed: .gz, .bz2, .xz, .zst"
HUB_URL = "hf://datasets/"
BOM = b"\xef\xbb\xbf"  # UTF-8 byte order mark: some editors and exports start a file with it
COMMIT = re.compile(r"[0-9a-f]{40}")  # a full git commit sha
_URL_PARTS = re.compile(
    r"hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>refs/(?:pr|convert)/[^/]+|[^/]+))?(?:/(?P<path>.*))?"
)
# A one-word name with a file suffix (``c.jsnl``, ``notes.csv``): no Hub dataset id, a missing file.
FILE_NAME = re.compile(r"[\w-]+\.[A-Za-z][A-Za-z0-9]{0,4}")

_ID_REVISION = re.compile(r"(?P<repo>[^@/]+(?:/[^@/]+)?)@(?P<revision>[^@]+)")

logger = logging.getLogger(__name__)


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
    if os.path.isdir(corpus) or "://" in corpus:
        return False
    return os.path.isfile(corpus) or glob.has_magic(corpus) or corpus.endswith(SUPPORTED)


def corpus_location(corpus: str) -> str:
    """Where `corpus` is: local files, a glob or a folder as an absolute path (links resolved), anything
    else (a Hub id, an ``hf://`` URL) as named. Two runs that both named ``data/*.jsonl``, each in its
    own folder, read two corpora: an output records this so that `hf_ipt.publish` tells them apart."""
    path = os.path.expanduser(corpus)
    return os.path.realpath(path) if is_local_corpus(path) or os.path.isdir(path) else corpus


def is_hub_url(corpus: str) -> bool:
    """A file, glob or folder of a Hub dataset repo by URL: ``hf://datasets/org/name[@revision]/path``."""
    return corpus.startswith(HUB_URL)


def hub_url_parts(url: str) -> tuple[str, str | None, str]:
    """(repo id, revision or `None`, path in the repo) of an ``hf://datasets/`` URL, offline.

    A revision with a slash is %2F-encoded (``@feature%2Fx``), except ``refs/pr/N`` and
    ``refs/convert/...``, which the Hub reads as they are.
    """
    match = _URL_PARTS.fullmatch(url)
    if match is None:
        raise UsageError(
            f"`corpus` {url!r} is not a Hub dataset URL: write {HUB_URL}org/name[@revision]/path/*.jsonl"
        )
    return match["repo"], match["revision"], match["path"] or ""


def url_corpus_name(url: str) -> str:
    """``org/name``, plus the URL's last folder or file when it says more than ``data``:
    ``hf://datasets/org/news/data/*.parquet`` -> ``org/news``, ``.../finance/*.jsonl`` -> ``org/news/finance``."""
    repo, _, path = hub_url_parts(url)
    part = derive_corpus_name(path) if path else ""
    return repo if part in ("", "data") or glob.has_magic(part) else f"{repo}/{part}"


def is_file_corpus(corpus: str) -> bool:
    """Files named by a local path or glob, or by an ``hf://`` URL: not a dataset (id or folder)."""
    return is_local_corpus(corpus) or is_hub_url(corpus)


def check_url(corpus: str, where: str) -> None:
    """Refuse URLs that hf_ipt cannot read or pin to a commit, before any request."""
    if "://" in corpus and not is_hub_url(corpus):
        web = re.match(r"https?://[^/]*huggingface\.co/datasets/([^/]+/[^/]+)", corpus)
        hint = f" (for this repo: {HUB_URL}{web[1]}/<path or glob>, or the id {web[1]!r})" if web else ""
        raise UsageError(
            f"`{where}` {corpus!r}: the only URLs read are files of Hub dataset repos, "
            f"{HUB_URL}org/name[@revision]/path/*.jsonl{hint}; download other files first, or give a Hub dataset id"
        )


def pin_hub_url(url: str, revision: str | None = None, token=None) -> str:
    """`url` (see `is_hub_url`) at the commit its revision (or `revision`, a branch, tag or commit,
    when the URL names none) points to now: ``hf://datasets/org/name@<sha>/path``.

    Raises `MissingFileError` for a repo or revision that does not exist (or a private repo read
    without a token); a URL already at a commit sha is returned as it is, without a request.
    """
    repo, in_url, path = hub_url_parts(url)  # the URL's shape, checked offline
    if in_url is not None and revision is not None and unquote(in_url) != revision:
        raise UsageError(f"`corpus` {url!r}: the revision is given twice (@{in_url} and {revision!r}); keep one")
    revision = unquote(in_url) if in_url is not None else revision
    hint = "written %2F-encoded in the URL, @feature%2Fx, or given as `corpus_revision`"
    commit = _commit(repo, revision, token, f"`corpus` {url!r}", hint)
    return f"{HUB_URL}{repo}@{commit}/{path}".rstrip("/")


def hub_id_parts(dataset: str) -> tuple[str, str | None]:
    """(repo id, revision or `None`) of a Hub dataset id with an optional revision, offline:
    ``org/name@v1`` -> ``("org/name", "v1")``; a branch with a slash is %2F-encoded (``@feature%2Fx``)."""
    match = _ID_REVISION.fullmatch(dataset)
    return (match["repo"], unquote(match["revision"])) if match else (dataset, None)


def pin_hub_dataset(dataset: str, token=None, where: str = "corpus") -> str:
    """A Hub dataset id (``org/name[@revision]``, see `hub_id_parts`) at the commit its revision
    (default: the main branch) points to now: ``org/name@<sha>``. Raises like `pin_hub_url`."""
    repo, revision = hub_id_parts(dataset)
    commit = _commit(repo, revision, token, f"`{where}` {dataset!r}", "written %2F-encoded, org/name@feature%2Fx")
    return f"{repo}@{commit}"


def _commit(repo: str, revision: str | None, token, what: str, slash_hint: str) -> str:
    """The commit sha `revision` (a branch, tag or commit; `None`: main) of dataset `repo` points to now."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

    if COMMIT.fullmatch(revision or ""):
        return revision
    if (folder := cached_dataset(repo, revision, what, token)) is not None:
        return os.path.basename(folder)  # offline: the commit the cache holds for the revision
    try:
        return HfApi(token=token).dataset_info(repo, revision=revision).sha
    except HfHubHTTPError as error:  # no such repo or revision (or private, no token)
        if getattr(error.response, "status_code", None) not in (401, 404):
            raise  # the Hub or the network failed: not the user's value
        missing = f"revision {revision!r} not found in" if isinstance(error, RevisionNotFoundError) else "no"
        raise MissingFileError(
            f"{what}: {missing} dataset repo {repo!r}. Check the repo id and revision (a branch with a slash is "
            f"{slash_hint}); a private repo needs a token (`token=`, HF_TOKEN or `hf auth login`)"
        ) from None


def download_fix(repo: str, option: str) -> str:
    """How to read Hub dataset `repo`, given as `option`, where the Hub cannot be reached (the
    alternative of `hub_unreachable_error`)."""
    return (f"download it there (`hf download {repo} --repo-type dataset`, into the Hugging Face cache, which is "
            f"read offline; or with `--local-dir DIR`, then give that folder or its files as {option})")


def hub_offline() -> bool:
    """Whether Hub datasets are read offline: ``HF_HUB_OFFLINE``, or ``HF_DATASETS_OFFLINE`` (with which
    `datasets` asks the Hub nothing, and so cannot stream a Hub dataset)."""
    import datasets
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE or datasets.config.HF_DATASETS_OFFLINE)


def offline_cause() -> BaseException | None:
    """Why `hub_offline` says offline when ``HF_HUB_OFFLINE`` is not set, for `hub_unreachable_error`."""
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    return None if constants.HF_HUB_OFFLINE else OfflineModeIsEnabled("HF_DATASETS_OFFLINE is set")


def cached_dataset(repo: str, revision: str | None, what: str, token=None,
                   allow_patterns: list[str] | None = None) -> str | None:
    """Offline (``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1``: `hub_offline`), the folder of Hub dataset
    `repo` at `revision` (a branch, tag or
    commit; `None`: main) in the local Hugging Face cache, as ``hf download org/name --repo-type dataset``
    leaves it; `None` online, or when the cache holds no such snapshot (`datasets` cannot stream a Hub
    dataset offline at all, even a cached one). `allow_patterns`: the files needed, when not all.

    Raises:
        `UsageError`: the cached snapshot misses files the download listed (cut short, or ``--include``
            some files only): reading it would silently drop documents. `what` names the value.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
    )

    if not hub_offline():
        return None
    try:
        folder = snapshot_download(repo, repo_type="dataset", revision=revision, local_files_only=True, token=token,
                                   allow_patterns=allow_patterns)
    except IncompleteSnapshotError as error:
        raise UsageError(
            f"{what}: the Hugging Face cache holds part of the dataset only ({str(error).split('. ')[0]}): "
            f"download the rest where the Hub is reachable (`hf download {repo} --repo-type dataset`), or give "
            f"the files it holds as the corpus ({error.snapshot_path}/...)"
        ) from None
    except (LocalEntryNotFoundError, HFValidationError):  # not cached, or no repo id at all
        return None
    logger.info("offline: %s is read from the Hugging Face cache, commit %s (%s)", what, os.path.basename(folder), folder)
    return folder


def snapshot_url(repo: str, folder: str, path: str) -> str:
    """The ``hf://datasets/<repo>@<commit>/...`` URL of `path`, a file in `folder`, the cached snapshot
    of `repo` at a commit (`cached_dataset`): what a listing on the Hub gives, so that offline a job's
    units, a builder's cache key and a recipe's record name the same files as online. `open_file`
    reads it from the cache."""
    relative = os.path.relpath(path, folder).replace(os.sep, "/")
    return f"{HUB_URL}{repo}@{os.path.basename(folder)}/{relative}"


def cached_url_file(url: str) -> str:
    """Offline (`hub_offline`), the Hugging Face cache's copy of an ``hf://`` file URL at a
    commit (``hf://datasets/org/name@<sha>/x.jsonl``, as listings give them); `url` itself online,
    for other paths, or for a URL that names no commit.

    Raises:
        `HubUnreachableError`: offline, the cache does not hold the file (a job started where the Hub
            was reachable, resumed offline on another snapshot).
    """
    from huggingface_hub import constants, try_to_load_from_cache

    if not hub_offline() or not is_hub_url(url):
        return url
    repo, commit, path = hub_url_parts(url)
    if not COMMIT.fullmatch(commit or "") or not path:
        return url
    cached = try_to_load_from_cache(repo, path, revision=commit, repo_type="dataset")
    if isinstance(cached, str):
        return cached
    if not constants.HF_HUB_OFFLINE:  # `datasets` alone offline (its listing asked the Hub): read from there
        return url
    raise hub_unreachable_error(f"{url!r} is read from the Hub", f"download that commit there (`hf download {repo} "
                                f"--repo-type dataset --revision {commit}`, into the Hugging Face cache, which is "
                                "read offline)", offline_cause())


def snapshot_files(folder: str, path: str, pattern: str) -> list[str]:
    """Sorted files matched by `path` (a file, a glob, or a folder: every supported file below it),
    relative to `folder`, a cached snapshot of the repo that the ``hf://`` URL `pattern` names,
    as `hub_url_files` matches them on the Hub."""
    target = os.path.join(folder, path)
    if not glob.has_magic(path) and os.path.isdir(target):
        files = sorted(str(p) for p in Path(target).rglob("*") if p.is_file() and p.name.endswith(SUPPORTED))
    else:
        files = sorted(p for p in glob.glob(target, recursive=True) if os.path.isfile(p))
    if not files:
        raise MissingFileError(
            f"`corpus` matched no file in the Hugging Face cache's snapshot {folder!r}: {pattern!r} (a folder "
            f"is read for its {SUPPORTED_TEXT} files)"
        )
    return _supported(pattern, files)


def hub_url_files(pattern: str, revision: str | None = None, token=None) -> list[str]:
    """Sorted files of a Hub dataset repo matched by `pattern` (see `is_hub_url`), as URLs that
    name the commit the revision points to now (`pin_hub_url`), so that a job reads one fixed
    snapshot.

    The pattern is a file, a glob (``**`` included) or a folder (every supported file below it).
    `revision` (a branch, tag or commit) is the revision when the URL names none.
    """
    from huggingface_hub import HfFileSystem

    pinned = pin_hub_url(pattern, revision, token)
    repo, commit, path = hub_url_parts(pinned)
    if (folder := cached_dataset(repo, commit, f"`corpus` {pattern!r}", token)) is not None:
        return [snapshot_url(repo, folder, f) for f in snapshot_files(folder, path or "", pattern)]
    target = pinned.removeprefix("hf://")
    fs = HfFileSystem(token=token, skip_instance_cache=True)
    if not glob.has_magic(path) and fs.isdir(target):
        found = {p: i for p, i in fs.find(target, detail=True).items() if p.endswith(SUPPORTED)}
    else:
        found = fs.glob(target, detail=True)
    files = sorted("hf://" + p for p, info in found.items() if info.get("type") == "file")
    if not files:
        at = revision or hub_url_parts(pattern)[1] or "main"
        raise MissingFileError(
            f"`corpus` matched no file in {repo!r} at {at!r}: {pattern!r} (a folder is read "
            f"for its {SUPPORTED_TEXT} files)"
        )
    return _supported(pattern, files)


def pattern_files(pattern: str, token=None) -> list[str]:
    """`local_files` of a local path or glob, `hub_url_files` of an ``hf://`` URL."""
    return hub_url_files(pattern, token=token) if is_hub_url(pattern) else local_files(pattern)


def local_files(corpus: str) -> list[str]:
    """Sorted files matched by `corpus`, each with a supported suffix. An existing file is itself,
    even when its name holds glob characters (``report[1].jsonl``)."""
    if os.path.isfile(corpus):
        return _supported(corpus, [corpus])
    # a set: a pattern such as ``data/**/**/*.jsonl`` yields a file once per way it matches
    files = _distinct_files(sorted({p for p in glob.glob(corpus, recursive=True) if os.path.isfile(p)}))
    if not files:
        raise MissingFileError(
            f"`corpus` matched no file: {corpus!r} (a local file or glob; a dataset is a Hub id or a folder)"
        )
    _warn_twins(corpus, files)
    return _supported(corpus, files)


def files_inside(files: list[str], folder: str) -> list[str]:
    """Those of `files` that lie inside `folder` (links resolved): a command's own output that a corpus glob
    matches."""
    inside = os.path.realpath(folder) + os.sep
    return [f for f in files if os.path.realpath(f).startswith(inside)]


def glob_matches(pattern: str, path: str) -> bool:
    """Whether `glob.glob(pattern, recursive=True)` would match `path` were it there: ``**`` a whole part for
    any number of folders, other wildcards within one part, names starting with ``.`` only by a part that does
    too (as `glob` has it); both taken as absolute paths, without resolving links."""
    import fnmatch

    def parts(value: str) -> list[str]:
        return os.path.abspath(os.path.expanduser(value)).split(os.sep)[1:]

    def match(pattern_parts: list[str], path_parts: list[str]) -> bool:
        if not pattern_parts:
            return not path_parts
        head, rest = pattern_parts[0], pattern_parts[1:]
        if head == "**":
            return any(match(rest, path_parts[i:]) for i in range(len(path_parts) + 1)
                       if not any(part.startswith(".") for part in path_parts[:i]))
        if not path_parts or (path_parts[0].startswith(".") and not head.startswith(".") and glob.has_magic(head)):
            return False
        return fnmatch.fnmatchcase(path_parts[0], head) and match(rest, path_parts[1:])

    return match(parts(pattern), parts(path))


def _warn_twins(corpus: str, files: list[str]) -> None:
    """Warn of a file matched with its compressed copy (``a.jsonl`` and ``a.jsonl.gz``, as ``gunzip -k``
    leaves them): each is read, so their documents would be synthesized and trained on twice."""
    copies: dict[str, list[str]] = {}
    for path in files:
        stem, suffix = os.path.splitext(path)
        copies.setdefault(stem if suffix in COMPRESSIONS else path, []).append(path)
    for twins in (group for group in copies.values() if len(group) > 1):
        _warn_once(f"hf_ipt: `corpus` {corpus!r} matched {' and '.join(repr(p) for p in twins)}: the same file "
                   "compressed and not? Both are read; match one of them (e.g. *.jsonl.gz)")


@functools.cache
def _warn_once(message: str) -> None:
    """Log `message` once in a process: one command lists its corpus in each config that checks it."""
    logger.warning(message)


def _distinct_files(files: list[str]) -> list[str]:
    """`files` less the links to a file listed before (``latest.jsonl -> v2.jsonl``): each file's
    documents are read once, not twice under two names."""
    first: dict[str, str] = {}
    for path in files:
        target = os.path.realpath(path)
        if target in first:
            _warn_once(f"hf_ipt: corpus file {path!r} is a link to {first[target]!r}, also matched: read once")
            continue
        first[target] = path
    return list(first.values())


def _supported(pattern: str, files: list[str]) -> list[str]:
    bad = [f for f in files if not f.endswith(SUPPORTED)]
    if bad:
        case = " (in lower case: rename it)" if bad[0].lower().endswith(SUPPORTED) else ""
        raise UsageError(
            f"`corpus` {pattern!r} matched unsupported files such as {bad[0]!r}; "
            f"supported suffixes: {SUPPORTED_TEXT}{case}"
        )
    if undecodable := [f for f in files if not _utf8(f)]:  # names in ids, records and Parquet are UTF-8
        raise UsageError(
            f"`corpus` {pattern!r} matched {len(undecodable)} file(s) whose name is not UTF-8, such as "
            f"{undecodable[0]!r}: rename them (e.g. `convmv -f latin1 -t utf8 --notest FILE`)"
        )
    return files


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes the file system's encoding could not decode (surrogate escapes)
        return False
    return True


OUTPUT_RECORDS = ("manifest.json", "summary.json")  # `hf-ipt synthesize`'s, `hf-ipt augment`'s


def output_record(folder: str) -> tuple[dict, str | None]:
    """The record of a synthesis output folder and its file name: ``manifest.json`` (``hf-ipt
    synthesize``, once the job is finished) or else ``summary.json`` (``hf-ipt augment``); ``({}, None)``."""
    for name in OUTPUT_RECORDS:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f), name
    return {}, None


def output_data_files(folder: str) -> list[str]:
    """The Parquet files of a synthesis output folder, in order: those its ``manifest.json`` lists (an
    unlisted file in ``data/`` is not part of the output), else every ``data/*.parquet``, else
    ``data.parquet``; none when it has none."""
    record, _ = output_record(folder)
    if record.get("data_files"):
        return [os.path.join(folder, name) for name in record["data_files"]]
    return sorted(glob.glob(os.path.join(glob.escape(folder), "data", "*.parquet"))) or sorted(
        glob.glob(os.path.join(glob.escape(folder), "data.parquet")))


def output_files(folder: str, split: str = "train") -> list[str] | None:
    """The data files of a folder ``hf-ipt synthesize`` wrote (it holds ``job.json``) or ``hf-ipt
    augment`` wrote (``summary.json`` and ``data.parquet``), as `output_data_files`; `None` for any other
    folder. Read as a dataset folder, such a folder gave `datasets` its job files (``job.json``, the
    done-markers and pairs of ``pairs/``, ``rejects.jsonl``) as rows too, or instead of the data.

    Raises:
        `UsageError`: a synthesis job that is not finished (no ``manifest.json``: ``data/`` is written
            last, when every unit is done), or a `split` other than ``train`` (the output's one split).
    """
    job = os.path.isfile(os.path.join(folder, "job.json"))
    if not job and not all(os.path.isfile(os.path.join(folder, f)) for f in ("summary.json", "data.parquet")):
        return None
    command = "hf-ipt synthesize" if job else "hf-ipt augment"
    if job and not os.path.isfile(os.path.join(folder, "manifest.json")):
        raise UsageError(f"{folder!r} holds an `{command}` job that is not finished (no manifest.json): rerun "
                         "`hf-ipt synthesize` with the same settings to complete it, then read its output")
    if split != "train":
        raise UsageError(f"split {split!r} not found in {folder!r}, the output of `{command}`: its rows are "
                         "one split, 'train'")
    if not (files := output_data_files(folder)):
        raise MissingFileError(f"{folder!r} holds no data.parquet or data/*.parquet: the output of `{command}` "
                               "was removed or not written; run it again")
    return files


def output_mode(path: str) -> tuple[str, str | None]:
    """(folder, output mode) of the synthesis output that `path` (its folder, or one of its data files)
    belongs to: the mode its record gives (``templified`` or ``pairs``), `None` when `path` is no
    such output or its record gives none."""
    folders = [path] if os.path.isdir(path) else [os.path.dirname(path), os.path.dirname(os.path.dirname(path))]
    for folder in folders:
        record, name = output_record(folder or ".")
        if name is not None:
            # augment's summary.json gives the mode under "synthesis" ("output" is its file); the manifest as "output"
            if name == "summary.json":
                return folder, (record.get("synthesis") or {}).get("output")
            return folder, record.get("output")
    return path, None


def refuse_pairs_output(option: str, source: str, path: str, needed: str, fix: str) -> None:
    """Raise a `UsageError` when `path` (the folder `source` names, or one of its files) is the output of
    ``hf-ipt synthesize`` or ``hf-ipt augment`` with ``--output pairs``: question-answer pairs per text, not
    the `needed` rows (e.g. ``"training text"``); `fix` says what to give `option` instead."""
    folder, mode = output_mode(path)
    if mode == "pairs":
        where = "" if folder == source else f" (of {folder!r})"
        raise UsageError(f"`{option}` {source!r} is synthesis output{where} written with `--output pairs`: rows of "
                         f"question-answer pairs, not {needed}. {fix}")


def repo_files(corpus: str, config: str | None, split: str, revision: str | None, token=None,
               snapshot: bool = False) -> list[str]:
    """Data files of `split` in a Hub dataset (or a local folder in the same layout). Offline, a Hub
    dataset's are paths in the Hugging Face cache when it holds the snapshot (`cached_dataset`). A local
    folder (not a Hub `snapshot`) whose layout leaves files of another format out (`left_out_files`, e.g. the
    .jsonl beside .txt files) is read all the same, with a warning that names them."""
    import datasets
    from datasets.data_files import EmptyDatasetError
    from datasets.exceptions import DataFilesNotFoundError

    if not os.path.isdir(corpus):
        repo, in_id = hub_id_parts(corpus)
        if (folder := cached_dataset(repo, in_id or revision, f"`corpus` {corpus!r}", token)) is not None:
            return [snapshot_url(repo, folder, f) for f in repo_files(folder, config, split, None, snapshot=True)]
    elif (files := output_files(corpus, split)) is not None:  # of `hf-ipt synthesize` / `augment`: its data only
        return files

    if os.path.isdir(corpus) and not snapshot:
        refuse_saved_to_disk("corpus", corpus, "hf_ipt")
    try:
        builder = datasets.load_dataset_builder(corpus, config, revision=revision, token=token)
    except (EmptyDatasetError, DataFilesNotFoundError) as error:
        if isinstance(error, DataFilesNotFoundError) and not os.path.isdir(corpus):
            raise  # a Hub dataset's: its own message
        upper = upper_case_suffixes(corpus) if os.path.isdir(corpus) else []
        case = f"; {upper[0]!r} and {len(upper) - 1} more have an upper-case suffix: rename them" if upper else ""
        raise MissingFileError(
            f"`corpus` {corpus!r} holds no data files ({SUPPORTED_TEXT}{case}): point it at the folder that holds "
            "them, or give a file or glob (corpus='data/*.jsonl')"
        ) from None
    except ValueError as error:
        if config is None or "BuilderConfig" not in str(error):
            raise
        raise UsageError(f"`corpus_config` {config!r} not found in {corpus!r} ({error})") from None
    data_files = builder.config.data_files or {}
    if os.path.isdir(corpus) and not snapshot:
        warn_left_out("corpus", corpus, config, data_files)
    if split not in data_files:
        raise UsageError(
            f"`corpus_split` {split!r} not found in {corpus!r}; available: {sorted(str(s) for s in data_files)}"
        )
    return _supported(corpus, [str(f) for f in data_files[split]])


def refuse_saved_to_disk(option: str, folder: str, reader: str) -> None:
    """Refuse a folder `Dataset.save_to_disk` wrote (Arrow files, read by `load_from_disk` only): its layout was
    taken for a corpus of text files, with a warning about `.arrow` as text and then unsupported files."""
    def has(name: str) -> bool:
        return os.path.isfile(os.path.join(folder, name))

    # a DatasetDict's index, or a Dataset's state beside its info or Arrow files (a `state.json` alone may be data)
    if has("dataset_dict.json") or (has("state.json") and (has("dataset_info.json") or glob.glob(
            os.path.join(glob.escape(folder), "*.arrow")))):
        raise UsageError(
            f"`{option}` {folder!r} is a dataset written by `save_to_disk` (Arrow files), which {reader} does not "
            f"stream: export it once, e.g. `datasets.load_from_disk({folder!r}).to_parquet('data.parquet')` (a "
            "DatasetDict: its split, `load_from_disk(...)['train']`), and give that file"
        )


def warn_left_out(option: str, folder: str, config: str | None, data_files: dict) -> None:
    """Warn that the local dataset `folder` (given as `option`) is read without the files of other formats
    its layout (`data_files`, by `datasets`) leaves out (`left_out_files`), unless it chooses its files."""
    if chosen_files(folder, config):
        return
    candidates = _layout_candidates(folder)  # one walk of the folder for both checks
    if upper := upper_case_suffixes(folder, candidates):
        logger.warning("hf_ipt: `%s` %r holds %d file(s) whose suffix is in upper case, such as %r: `datasets` reads "
                       "lower-case suffixes only, so they are not read; rename them (e.g. .JSONL -> .jsonl)", option,
                       folder, len(upper), upper[0])
    if not (left := left_out_files(folder, data_files, candidates)):
        return
    read = sorted({data_format(str(f)) for files in data_files.values() for f in files})
    logger.warning("hf_ipt: `%s` %r is read as `datasets` lays a dataset folder out, files of one format (%s here): "
                   "%d %s file(s) below it are not read, such as %r. To read them too, give a glob that matches "
                   "every file to read, e.g. %s when the folder holds nothing else", option, folder, ", ".join(read),
                   len(left), "/".join(sorted({data_format(f) for f in left})), left[0],
                   f"{option}{' ' if option.startswith('--') else '='}'{folder.rstrip('/')}/**/*.*'")


def chosen_files(folder: str, config: str | None) -> bool:
    """Whether the dataset folder's files are chosen on purpose: a config named, or ``configs:`` in the YAML
    header of its README.md (its data files listed there)."""
    readme = os.path.join(folder, "README.md")
    if config is not None:
        return True
    if not os.path.isfile(readme):
        return False
    with open(readme, encoding="utf-8-sig", errors="replace") as f:  # -sig: a BOM before the header
        header = f.read(1 << 20).split("\n---", 1)[0]
    return header.startswith("---") and re.search(r"^configs:", header, re.MULTILINE) is not None


# Files beside a dataset's data that are not data: `datasets` leaves them out on purpose, and so does the check
NOT_DATA = re.compile(r"(readme|licen[cs]e|notice|citation|copying|changelog)([-._].*)?|dataset_infos?\.json|"
                      r".*stats\.json|.*metadata\.jsonl?", re.IGNORECASE)


def data_format(path: str) -> str:
    """The `datasets` loader a file's suffix picks: ``text``, ``json`` (.json and .jsonl) or ``parquet``."""
    suffix = data_suffix(path)
    return "parquet" if suffix in PARQUET_SUFFIXES else "json" if suffix in JSON_SUFFIXES else "text"


def left_out_files(folder: str, data_files: dict, candidates: list[str] | None = None) -> list[str]:
    """Supported files below the local `folder` of another format than those the splits in `data_files` (a
    `datasets` layout of it) read: `datasets` picks the format most of its files have and reads only that one.
    Files of the format read that no split names (``holdout.jsonl``), hidden files and folders (``.``), folders
    `datasets` skips (``__pycache__``), and files that are no data (`NOT_DATA`: a licence,
    ``dataset_infos.json``) are what a layout leaves out on purpose: not counted."""
    listed = [str(f) for files in data_files.values() for f in files]
    read, formats = {os.path.realpath(f) for f in listed}, {data_format(f) for f in listed}
    candidates = _layout_candidates(folder) if candidates is None else candidates
    return sorted(path for path in candidates if path.endswith(SUPPORTED)
                  and os.path.realpath(path) not in read and data_format(path) not in formats)


def upper_case_suffixes(folder: str, candidates: list[str] | None = None) -> list[str]:
    """Files below the local `folder` (its `_layout_candidates`, when listed already) whose suffix is a supported
    one in other case (``B.JSONL``): `datasets` and hf_ipt match suffixes in lower case, so it is never read."""
    candidates = _layout_candidates(folder) if candidates is None else candidates
    return sorted(path for path in candidates if not path.endswith(SUPPORTED) and path.lower().endswith(SUPPORTED))


def _layout_candidates(folder: str) -> list[str]:
    """The files below `folder` that a dataset layout could read: not hidden (``.``), not in a folder `datasets`
    skips (``__pycache__``), no `NOT_DATA` (a licence, ``dataset_infos.json``)."""
    return [str(path) for path in Path(folder).rglob("*")
            if path.is_file() and not NOT_DATA.fullmatch(path.name)
            and not any(part.startswith(".") for part in path.relative_to(folder).parts)
            and not any(part.startswith("__") for part in path.relative_to(folder).parts[:-1])]


def folder_reads(folder: str, path: str) -> bool:
    """Whether `datasets`' layout of the dataset `folder` would read a file at `path` below it (its split
    patterns match it: a folder without split names reads every file; one whose README chooses the files
    is taken to)."""
    import fnmatch

    from datasets.data_files import EmptyDatasetError, get_data_patterns

    if chosen_files(folder, None):  # its README's patterns may read anything: taken as reading it
        return True
    try:
        patterns = get_data_patterns(folder)
    except EmptyDatasetError:
        return False
    relative = os.path.relpath(path, folder).replace(os.sep, "/")
    return any(fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, pattern.removeprefix("**/"))
               for split in patterns.values() for pattern in split)


def derive_corpus_name(pattern: str) -> str:
    """The last path part without glob characters: ``data/finance/*.jsonl`` -> ``finance``,
    ``/tmp/news.jsonl`` -> ``news.jsonl``; a bare glob (``*.jsonl``) stays as it is."""
    parts = [part for part in pattern.replace(os.sep, "/").split("/") if part and not glob.has_magic(part)]
    return parts[-1] if parts else pattern


@dataclass
class CorpusConfig:
    """Where raw documents come from: one set of corpus settings for the builder, jobs and CLIs.

    Args:
        corpus (`str`): local file or glob (.txt, .jsonl/.json, .parquet; the text ones also compressed:
            .gz, .bz2, .xz, .zst), files of a Hub dataset by
            URL (``hf://datasets/org/name[@revision]/data/*.jsonl``), or a dataset (Hub id or folder
            in a Hub layout). Required.
        corpus_config, corpus_split, corpus_revision: select a dataset corpus' files.
        text_column (`str`, defaults to ``"text"``): the raw-text column of .jsonl/.parquet files.
        corpus_name (`str`, *optional*): value of the output's `corpus` column (default: the file
            pattern's base name, or the dataset id).
        num_shards (`int`, *optional*): shards (work units) the corpus is cut into.
    """

    corpus: str | None = field(
        default=None,
        metadata={"help": "Required. Local file/glob (.txt .jsonl .json .parquet; .txt/.jsonl/.json also as .gz .bz2 "
                  ".xz .zst), hf://datasets/org/name/<glob> URL, or a dataset id/folder."}
    )
    corpus_config: str | None = field(default=None, metadata={"help": "Config name of a dataset corpus."})
    corpus_split: str = field(default="train", metadata={"help": "Split of a dataset corpus."})
    corpus_revision: str | None = field(
        default=None,
        metadata={"help": "Revision (branch, tag or commit) of a dataset corpus or hf:// URL. Local files have none."},
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the raw text (.jsonl, .parquet)."})
    corpus_name: str | None = field(default=None, metadata={"help": "Value of the `corpus` column (default: derived)."})
    num_shards: int | None = field(
        default=None,
        metadata={"help": "Shards the corpus is cut into (default: one per file, at least 8, at most one per 16 MB of "
                  "local files' text, a compressed file counting 4 times its size, and for .txt files at most one "
                  "per 4 files; windows of texts never span shards). For a job they are the work units, fixed "
                  "whatever the number of ranks: a unit is the work redone after a kill."},
    )

    def __post_init__(self) -> None:
        where = type(self).__name__
        if isinstance(self.corpus, os.PathLike):
            self.corpus = os.fspath(self.corpus)
        if self.corpus and not isinstance(self.corpus, str):  # a list of files, a Dataset: 'no attribute startswith'
            raise TypeError(
                f"`corpus` must be one path, glob, URL or dataset id, got {type(self.corpus).__name__}: for several "
                "files give a glob (corpus='data/*.jsonl'); for a Dataset in memory map it with "
                f"`ds.map(Augmenter(...), batched=True)` (docs/builder.md) ({where}.corpus)"
            )
        if not self.corpus:
            raise ValueError(
                "`corpus` is required: a local file or glob (.txt, .jsonl, .parquet) or a dataset id, "
                f"e.g. corpus='data/*.jsonl' ({where}.corpus)"
            )
        if self.num_shards is not None:  # "4" (Python, YAML) or 2.5 failed deep in the sharding with a TypeError
            from .backends.base import check_counts

            check_counts(self, ("num_shards",), where)
        if self.corpus_name is not None and not (isinstance(self.corpus_name, str) and self.corpus_name.strip()):
            raise ValueError(f"`corpus_name` must be a name (the output's `corpus` column), got {self.corpus_name!r}: "
                             f"give one, or leave it unset to derive it from `corpus` ({where}.corpus_name)")
        if self.corpus.startswith("~"):  # a quoted glob ("~/data/*.jsonl") or a YAML value: no shell expanded it
            self.corpus = os.path.expanduser(self.corpus)
        check_url(self.corpus, "corpus")
        local = is_local_corpus(self.corpus)
        if is_hub_url(self.corpus):
            in_url = hub_url_parts(self.corpus)[1]  # a malformed URL fails here, offline
            if self.corpus_config is not None or self.corpus_split != "train":
                raise ValueError(
                    f"`corpus_config` and `corpus_split` select the files of a dataset id; the URL {self.corpus!r} "
                    f"names its files itself: drop them, or give the dataset id ({where}.corpus)"
                )
            if in_url is not None and self.corpus_revision is not None:
                raise ValueError(
                    f"the revision is given twice: @{in_url} in {self.corpus!r} and `corpus_revision` "
                    f"{self.corpus_revision!r}; keep one ({where}.corpus_revision)"
                )
        if local and (self.corpus_config is not None or self.corpus_split != "train"):
            raise ValueError(
                f"`corpus_config` and `corpus_split` select the files of a dataset (repo id or folder); the local "
                f"files {self.corpus!r} are all read: drop them, or point `corpus` at the dataset ({where}.corpus)"
            )
        if not local and not is_hub_url(self.corpus) and is_local_path(self.corpus.partition("@")[0]) \
                and not os.path.isdir(self.corpus):  # `data/genral` where data/ exists: a typo, not a Hub id
            raise MissingFileError(
                f"`corpus` {self.corpus!r}: no such local file or folder{missing_path_hint(self.corpus)}; check the "
                f"path (a Hub dataset id is 'name' or 'org/name') ({where}.corpus)"
            )
        if not local and not os.path.exists(self.corpus) and FILE_NAME.fullmatch(self.corpus):
            # `c.jsnl`, `notes.csv`: a file name, which would have been looked up as a Hub dataset id
            raise MissingFileError(
                f"`corpus` {self.corpus!r}: no such local file{missing_path_hint(self.corpus)}, and a one-word Hub "
                f"dataset id has no file suffix; a corpus file is {SUPPORTED_TEXT} ({where}.corpus)"
            )
        if self.corpus_revision is not None and local:
            raise ValueError(
                f"`corpus_revision` ({self.corpus_revision!r}) applies to a dataset corpus (repo id or folder), "
                f"not to local files such as {self.corpus!r} ({where}.corpus_revision)"
            )
        if local:
            local_files(self.corpus)  # a typo fails here, not after a model has loaded
        if self.corpus_name is None:
            if is_hub_url(self.corpus):
                self.corpus_name = url_corpus_name(self.corpus)
            else:
                if local:
                    self.corpus_name = derive_corpus_name(self.corpus)
                elif os.path.isdir(self.corpus):  # by its name (`data/news/`, `./news`: `news`), not its path as typed
                    self.corpus_name = os.path.basename(os.path.abspath(self.corpus))
                else:
                    self.corpus_name = self.corpus

    def files(self, token=None) -> list[str]:
        """The corpus files (`listed_files`), checked for `text_column` first (`check_text_column`),
        so a wrong column stops a builder or a job before any work, not halfway through it."""
        files = self.listed_files(token)
        check_text_column(files, self.text_column, token)
        return files

    def listed_files(self, token=None) -> list[str]:
        """Matched local files; files of an ``hf://`` URL or the split's data files of a dataset,
        as URLs that name the commit. `token` reads a private Hub dataset. Offline
        (``HF_HUB_OFFLINE=1``), the same URLs, listed in the Hugging Face cache when it holds the
        snapshot (`cached_dataset`), and read from there (`open_file`)."""
        if is_local_corpus(self.corpus):
            return local_files(self.corpus)
        repo = hub_url_parts(self.corpus)[0] if is_hub_url(self.corpus) else hub_id_parts(self.corpus)[0]
        with needs_hub(f"`corpus` {self.corpus!r} is read from the Hub", download_fix(repo, "`corpus`")):
            if is_hub_url(self.corpus):
                return hub_url_files(self.corpus, self.corpus_revision, token)
            return repo_files(self.corpus, self.corpus_config, self.corpus_split, self.corpus_revision, token)

    @property
    def pinned(self) -> bool:
        """Whether the corpus names its snapshot: local files, or a commit sha (`corpus_revision`,
        or ``@<sha>`` in an ``hf://`` URL)."""
        if os.path.isdir(self.corpus):  # a local folder in Hub layout: its revision pins nothing
            return False
        revision = hub_url_parts(self.corpus)[1] if is_hub_url(self.corpus) else None
        return is_local_corpus(self.corpus) or bool(COMMIT.fullmatch(self.corpus_revision or revision or ""))


# Byte order marks of the UTF-16/32 encodings a .txt document may be saved in (Windows "Unicode" text); UTF-32
# LE's starts with UTF-16 LE's, so it is looked for first
UNICODE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
                (codecs.BOM_UTF16_BE, "utf-16"))


def decode_document(raw: bytes) -> tuple[str, str | None]:
    """A whole .txt document and why it gives no text (`None` when it does): UTF-8, after a UTF-8 byte order
    mark if any, or UTF-16/32 when its byte order mark says so (Notepad's "Unicode")."""
    codec = next((codec for bom, codec in UNICODE_BOMS if raw.startswith(bom)), None)
    if codec is None:
        return _decode(raw.removeprefix(BOM))
    try:
        text = raw.decode(codec)  # the codec reads the mark for the byte order and drops it
    except UnicodeDecodeError:
        return "", "binary"
    if "\x00" in text:  # binary data after a mark, as a NUL byte is in UTF-8
        return "", "binary"
    return (text, None) if text.strip() else ("", "empty")


def _decode(raw: bytes) -> tuple[str, str | None]:
    if b"\x00" in raw:
        return "", "binary"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "", "not utf-8"
    return (text, None) if text.strip() else ("", "empty")


def open_file(path: str, token=None):
    """A local file, or a URL (an ``hf://`` file of a Hub dataset: read with `token` when given; offline,
    from the Hugging Face cache, `cached_url_file`), in binary mode; a compressed file (``x.jsonl.gz``,
    see `COMPRESSIONS`) is decompressed as it is read."""
    from datasets import DownloadConfig
    from datasets.utils.file_utils import xopen

    codec = compression(path)  # before opening: a missing package fails before any request
    path = cached_url_file(path)
    f = xopen(path, "rb", download_config=None if token is None else DownloadConfig(token=token))
    return f if codec is None else io.BufferedReader(_Decompressed(f, codec, path), buffer_size=2**20)


def is_compressed(path: str) -> bool:
    """Whether `path` ends in a compression suffix (`COMPRESSIONS`): ``x.jsonl.gz``."""
    return os.path.splitext(_location(path))[1] in COMPRESSIONS


def data_suffix(path: str) -> str:
    """The suffix of a file's format, under its compression suffix: ``x.jsonl.gz`` -> ``.jsonl``."""
    stem, suffix = os.path.splitext(_location(path))
    return os.path.splitext(stem)[1] if suffix in COMPRESSIONS else suffix


def compression(path: str) -> str | None:
    """The compression codec of `path` by its suffix (`None`: not compressed); raises `ImportError`
    naming the package to install when the codec's package is missing (`MissingDependencyError`)."""
    import importlib.util

    codec, package = COMPRESSIONS.get(os.path.splitext(_location(path))[1], (None, None))
    if package is not None and importlib.util.find_spec(package) is None:
        raise MissingDependencyError(
            f"corpus file {path!r} is {codec}-compressed; reading it needs the {package!r} package: pip install {package}"
        )
    return codec


class _DamagedData(Exception):
    """Compressed data that does not decompress (raised by `_ZstdStream` for zstandard's error)."""


class _Decompressed(io.RawIOBase):
    """The decompressed bytes of the open compressed file `raw`; closing closes `raw` too.

    Damaged data, or a file cut short (a download that stopped halfway), raises `UsageError` naming
    the file, as a damaged Parquet file does: its documents past the damage are lost, so going on
    would silently leave them out.
    """

    def __init__(self, raw, codec: str, path: str) -> None:
        self.raw, self.codec, self.path = raw, codec, path
        opener, self.damage = _reader(codec)
        self.stream = opener(raw)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._checked(self.stream.readinto, buffer)

    def readall(self) -> bytes:
        return self._checked(self.stream.read)

    def _checked(self, read, *args):
        try:
            data = read(*args)
            if not data and self._no_byte_read():  # even an empty text compresses to some bytes (gzip: 20)
                raise EOFError("the file is empty")  # gzip and zstd read no byte as no text, bz2 and xz raise
            return data
        except (EOFError, *self.damage) as error:  # EOFError: cut short, in every codec
            damage = error
        except OSError as error:  # bz2 raises a bare OSError for damaged data; keep I/O and network errors
            if type(error) is not OSError or error.errno is not None:
                raise
            damage = error
        raise UsageError(
            f"corpus file {self.path!r} does not decompress as {self.codec} ({damage}): it is damaged or cut "
            "short (an interrupted download?); download it again, or leave it out"
        ) from None

    def _no_byte_read(self) -> bool:
        try:
            return self.raw.tell() == 0
        except (OSError, ValueError):  # a stream that cannot tell where it is: not known
            return False

    def close(self) -> None:
        if not self.closed:
            try:
                self.stream.close()
            finally:
                self.raw.close()
                super().close()


def _reader(codec: str) -> tuple:
    """(a function of an open file giving its decompressed stream, the errors of damaged data) of
    `codec`; only its module is imported (a Python built without lzma still reads .gz files)."""
    if codec == "gzip":
        import gzip
        import zlib

        return (lambda f: gzip.GzipFile(fileobj=f)), (gzip.BadGzipFile, zlib.error)
    if codec == "bz2":
        import bz2

        return bz2.BZ2File, ()
    if codec == "xz":
        import lzma

        return lzma.LZMAFile, (lzma.LZMAError,)
    return _ZstdStream, (_DamagedData,)


class _ZstdStream(io.RawIOBase):
    """The Zstandard frames of the open file `raw`, decompressed one after another. A file that ends
    inside a frame raises `EOFError`: zstandard's own `stream_reader` returns what it read, silently."""

    chunk = 2**16

    def __init__(self, raw) -> None:
        import zstandard

        # windows up to 2 GB, as `zstd --long=31` writes (zstd's own reader stops above 128 MB)
        self.context = zstandard.ZstdDecompressor(max_window_size=2**31)
        self.raw, self.error = raw, zstandard.ZstdError
        self.frame, self.pending, self.out, self.position, self.ended = None, b"", b"", 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self.position == len(self.out) and not self.ended:
            self._decompress()
        n = min(len(buffer), len(self.out) - self.position)
        buffer[:n] = self.out[self.position:self.position + n]
        self.position += n
        return n

    def _decompress(self) -> None:
        data, self.pending = self.pending or self.raw.read(self.chunk), b""
        if not data:
            if self.frame is not None:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            self.ended = True
            return
        self.frame = self.frame or self.context.decompressobj()
        try:
            self.out, self.position = self.frame.decompress(data), 0
        except self.error as error:
            raise _DamagedData(str(error)) from None
        if self.frame.eof:  # the next frame, if any, starts in the data left over
            self.pending, self.frame = self.frame.unused_data, None


def _text_docs(path: str, doc_prefix: str, token=None) -> Iterator[Document]:
    with open_file(path, token) as f:
        text, reject = decode_document(f.read())
    yield Document(doc_prefix, text, reject)


def starts_with_array(path: str, token=None) -> bool:
    """Whether the file's first non-blank character (after a UTF-8 BOM) is ``[``."""
    with open_file(path, token) as f:
        while chunk := f.read(4096):
            head = chunk.removeprefix(BOM).lstrip()
            if head:
                return head.startswith(b"[")
    return False


def _json_array_docs(path: str, doc_prefix: str, text_column: str, strict: bool = False,
                     token=None) -> Iterator[Document]:
    """The objects of a ``.json`` file holding one top-level array (read whole into memory)."""
    with open_file(path, token) as f:
        raw = f.read()
    try:
        items = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(
            f"corpus file {path!r} starts with '[' but is not one valid JSON array ({error}); a .json file holds "
            "one top-level array of objects, or JSON lines with one object per line (not an array per line): "
            "fix the file, or write it as JSON lines (.jsonl)"
        ) from None
    column = _ColumnCheck(path, text_column, strict)
    for i, item in enumerate(items):
        doc_id = f"{doc_prefix}:{i}"
        if not isinstance(item, dict):
            yield Document(doc_id, "", "invalid json")
        else:
            column.saw(item)
            yield check_text(doc_id, item.get(text_column), text_column)
    column.done()


class _ColumnCheck:
    """A missing text column in a row or two is a bad document (rejected, counted); missing from
    the first `window` JSON objects of a file it is most likely a wrong `text_column`, which
    rejects every document into an empty output. `check_text_column` (run by
    `CorpusConfig.files` on local files, before any work) raises then; while streaming, a file
    is only warned about, so one stray file never stops a long run halfway."""

    window = 100

    def __init__(self, path: str, column: str, strict: bool) -> None:
        self.path, self.column, self.strict = path, column, strict
        self.objects, self.found, self.first_keys, self.reported = 0, False, None, False

    def saw(self, item: dict) -> None:
        if self.found:
            return
        self.found = self.column in item
        self.objects += 1
        self.first_keys = sorted(item) if self.first_keys is None else self.first_keys
        if not self.found and self.objects >= self.window:
            self.done()

    def done(self) -> None:
        if not self.objects or self.found or self.reported:
            return
        self.reported = True
        message = (
            f"`text_column` {self.column!r} is in none of the first {self.objects} JSON objects of "
            f"{self.path!r}; the first has keys {self.first_keys}. Set `text_column` (--text_column) "
            "to the key that holds the text"
        )
        if self.strict:
            raise UsageError(message)
        logger.warning("hf_ipt: %s (its rows are rejected)", message)


def check_text_column(files: list[str], text_column: str, token=None) -> None:
    """Raise `UsageError` for a file whose rows lack `text_column` (see `_ColumnCheck`).

    Reads each local file only until a row that has the column (the first, normally). Of remote
    files (``hf://``) only the first is checked, a Parquet file by its footer alone, a JSON-lines
    file by its first rows: a few requests, not a download; the others, and a remote ``.json``
    array (which would be downloaded whole), are checked as they stream.
    """
    first_remote = next((p for p in files if not os.path.isfile(p) and data_suffix(p) not in TEXT_SUFFIXES), None)
    for path in files:
        if data_suffix(path) in TEXT_SUFFIXES or not (os.path.isfile(path) or path == first_remote):
            continue  # a .txt file is its own text
        if path == first_remote and path.endswith(PARQUET_SUFFIXES):
            with open_file(path, token) as f:
                _check_parquet_column(parquet_file(f, path), path, text_column)
            continue
        if path == first_remote and data_suffix(path) == ".json" and starts_with_array(path, token):
            continue
        reasons = Counter()
        for doc in read_file(path, text_column, strict=True, token=token):
            if doc.reject is None:  # a row with the column as a string
                break
            if doc.reject != "empty":  # a blank line proves nothing: it has no column at all
                reasons[doc.reject] += 1
        else:
            if reasons:
                raise UsageError(_unreadable(path, text_column, reasons))


def _unreadable(path: str, text_column: str, reasons: Counter) -> str:
    """Why no row of a file gave a document, with the likely fix."""
    found = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    hints = {
        "binary": "a binary or UTF-16 file (.jsonl and .json files are read as UTF-8): save it as UTF-8",
        "not utf-8": "save the file as UTF-8",
        "invalid json": "a .jsonl file holds one JSON object per line, a .json file one array of objects or "
                        "JSON lines (no pretty-printed objects, no wrapping object)",
    }
    hint = next((hints[r] for r, _ in reasons.most_common() if r in hints),
                f"the {text_column!r} values must be strings: set `text_column` (--text_column) to the text's column")
    return f"no document of corpus file {path!r} can be read ({found}): {hint}"


def _jsonl_docs(path: str, doc_prefix: str, text_column: str, strict: bool = False,
                token=None, part: tuple[int, int] = (0, 1)) -> Iterator[Document]:
    keep, parts = part
    if data_suffix(path) == ".json" and starts_with_array(path, token):
        yield from part_of(_json_array_docs(path, doc_prefix, text_column, strict, token), part)
        return
    column = _ColumnCheck(path, text_column, strict)
    with open_file(path, token) as f:
        for i, line in enumerate(f):
            if i % parts != keep:  # another part's line: counted, not decoded or parsed
                continue
            doc_id = f"{doc_prefix}:{i}"
            text, reject = _decode(line.removeprefix(BOM) if i == 0 else line)
            if reject:
                yield Document(doc_id, "", "empty" if reject == "empty" else reject)
                continue
            try:
                item = json.loads(text)
                value = item.get(text_column)
            except (json.JSONDecodeError, AttributeError):
                yield Document(doc_id, "", "invalid json")
                continue
            column.saw(item)
            yield check_text(doc_id, value, text_column)
    column.done()


def _parquet_docs(path: str, doc_prefix: str, text_column: str, token=None) -> Iterator[Document]:
    with open_file(path, token) as f:
        pf = parquet_file(f, path)
        _check_parquet_column(pf, path, text_column)
        i = 0
        for batch in _parquet_batches(pf, path, text_column):
            for value in utf8_values(batch.column(0)):
                doc_id = f"{doc_prefix}:{i}"
                yield Document(doc_id, "", "not utf-8") if value is NOT_UTF8 else check_text(doc_id, value, text_column)
                i += 1


NOT_UTF8 = object()  # `utf8_values`: a string value whose bytes are not UTF-8


def utf8_values(array) -> list:
    """``array.to_pylist()`` of a pyarrow array, with each value that holds a string that is not UTF-8 (a
    Parquet string column written from raw bytes) as `NOT_UTF8`: pyarrow raises `UnicodeDecodeError` for the
    whole batch, which stopped a job at one bad document and again on every rerun."""
    try:
        return array.to_pylist()
    except UnicodeDecodeError:
        return [_utf8_value(scalar) for scalar in array]


def _utf8_value(scalar):
    try:
        return scalar.as_py()
    except UnicodeDecodeError:
        return NOT_UTF8


def utf8_rows(batch) -> tuple[list[dict], int]:
    """``batch.to_pylist()`` of a pyarrow record batch, with each value that is not UTF-8 (`utf8_values`) as
    `None`, as a null value, and how many there were."""
    try:
        return batch.to_pylist(), 0
    except UnicodeDecodeError:
        columns = {name: utf8_values(batch.column(name)) for name in batch.schema.names}
        bad = sum(value is NOT_UTF8 for values in columns.values() for value in values)
        columns = {name: [None if v is NOT_UTF8 else v for v in values] for name, values in columns.items()}
        return [dict(zip(columns, row)) for row in zip(*columns.values())], bad


def _parquet_batches(pf, path: str, column: str) -> Iterator:
    """`pf.iter_batches` of `column`; pages that cannot be read (a damaged file whose footer reads) are a
    `UsageError` that names the file."""
    import pyarrow as pa

    batches = pf.iter_batches(columns=[column], batch_size=1024)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as error:
            if not is_damage(error):  # the system's or a connection's error, not the file's content
                raise
            raise UsageError(f"corpus file {path!r} is damaged ({type(error).__name__}: {' '.join(str(error).split())}): "
                             "download or copy it again, or leave it out of `corpus`") from None
        yield batch


def is_damage(error: BaseException) -> bool:
    """Whether an error reading a Parquet file says its content is damaged (pyarrow's decode errors), not the
    system's (an errno: EIO, EMFILE, a stale NFS handle), memory, or a remote file's connection or HTTP
    status (a `requests`/`huggingface_hub` error, which are `OSError`s too)."""
    if isinstance(error, (MemoryError, ConnectionError, TimeoutError, FileNotFoundError)) or \
            getattr(error, "errno", None) is not None:
        return False
    remote = ("requests", "huggingface_hub", "urllib3", "httpx", "aiohttp", "fsspec")
    return not any(cls.__module__.startswith(remote) for cls in type(error).__mro__)


def parquet_file(f, path: str):
    """`pyarrow.parquet.ParquetFile` of the open file `f`; a damaged file is a `UsageError` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # no pre-buffering: it would fetch every row group of a remote file before the first row
        return pq.ParquetFile(f, pre_buffer=False)
    except (pa.ArrowException, OSError) as error:
        raise UsageError(f"corpus file {path!r} is not a readable Parquet file ({error}): replace it, or leave "
                         "it out of `corpus`") from None


def _check_parquet_column(pf, path: str, text_column: str) -> None:
    import pyarrow as pa

    schema = pf.schema_arrow
    if text_column not in schema.names:
        if os.path.isfile(path):  # an output of pairs has no text column: named as such, with what to give
            refuse_pairs_output("--corpus", path, path, "texts to synthesize from", "Give `--corpus` the corpus "
                                "it was synthesized from, or an output written with `--output templified`")
        raise UsageError(
            f"`text_column` {text_column!r} not in {path!r}; columns: {schema.names}. "
            "Set `text_column` (--text_column) to the column that holds the text"
        )
    kind = schema.field(text_column).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)
            or getattr(pa.types, "is_string_view", lambda _: False)(kind)):
        raise UsageError(
            f"`text_column` {text_column!r} of {path!r} holds {kind}, not text; columns: {schema}. "
            "Set `text_column` (--text_column) to the column that holds the text"
        )


def check_text(doc_id: str, value, text_column: str) -> Document:
    """`value` of `text_column` as a document, or rejected: not a string, a NUL byte, empty."""
    if not isinstance(value, str):
        return Document(doc_id, "", f"no string in column {text_column!r}")
    if "\x00" in value:
        return Document(doc_id, "", "binary")
    try:  # a JSON "\ud83d" (an emoji cut in half) decodes to a lone surrogate that no file can hold
        value.encode("utf-8")
    except UnicodeEncodeError:
        return Document(doc_id, "", "not utf-8")
    return Document(doc_id, value, None if value.strip() else "empty")


def read_file(
    path: str, text_column: str = "text", name: str | None = None, strict: bool = False, token=None,
    part: tuple[int, int] = (0, 1),
) -> Iterator[Document]:
    """Documents of one file: a .txt file is ONE document; .jsonl lines, the objects of a .json
    array and parquet rows are one each; a compressed file (``x.jsonl.gz``) is read decompressed.
    Ids are ``<name>:<index>`` (default name: the base name, ``x.jsonl.gz`` for a compressed file).
    `strict`: a text column missing from a JSON file's first 100 objects raises (else a warning).
    `token`: for a file of a private Hub dataset (default: the saved login, as `huggingface_hub`).
    `part`: ``(p, n)`` keeps the documents of index ``i % n == p`` (a shard's part of the file, `iter_shard`);
    a JSON-lines file's other lines are not decoded or parsed (8 parts of one file parsed it 8 times)."""
    prefix = name or Path(path.split("::")[-1]).name
    suffix = data_suffix(path) if path.endswith(SUPPORTED) else None  # no x.parquet.gz
    if suffix in TEXT_SUFFIXES:
        docs = _text_docs(path, prefix, token)
    elif suffix in JSON_SUFFIXES:
        return _jsonl_docs(path, prefix, text_column, strict, token, part)
    elif suffix in PARQUET_SUFFIXES:
        docs = _parquet_docs(path, prefix, text_column, token)
    else:
        raise ValueError(f"unsupported corpus file {path!r}; supported suffixes: {SUPPORTED_TEXT}")
    return part_of(docs, part)


def part_of(docs: Iterator[Document], part: tuple[int, int]) -> Iterator[Document]:
    """The documents of part ``(keep, parts)`` of a file: every `parts`-th from the `keep`-th."""
    keep, parts = part
    return docs if parts == 1 else (doc for i, doc in enumerate(docs) if i % parts == keep)


def _location(path: str) -> str:
    """The file part of a (possibly chained ``inner::outer``) path or URL, with ``/`` separators."""
    return path.split("::")[-1].replace(os.sep, "/")


def common_root(files: list[str]) -> str | None:
    """The folder all `files` share, or `None` when they sit in one folder (ids keep base names)."""
    folders = {_location(f).rpartition("/")[0] for f in files}
    if len(folders) <= 1:
        return None
    parts = [folder.split("/") for folder in folders]
    shared = []
    for names in zip(*parts):
        if len(set(names)) > 1:
            break
        shared.append(names[0])
    return "/".join(shared)


def file_name(path: str, root: str | None) -> str:
    """The name in a document id: the base name (no `root`), else the path under `root`."""
    location = _location(path)
    if root is None:
        return location.rpartition("/")[2]
    return location[len(root):].lstrip("/")


SHARD_BYTES = 16 * 2**20  # default shards: about one per 16 MB of local text (see `default_num_shards`)
TEXT_FILES_PER_SHARD = 4  # default shards of .txt files (one document each): texts to chain in a window
COMPRESSION_RATIO = 4  # text compresses about 3-5 times (gzip to xz): a compressed file counts as 4 times its size


def text_bytes(path: str) -> int:
    """The size of a local file's text: its size, times `COMPRESSION_RATIO` when it is compressed."""
    size = os.path.getsize(path)
    return size * COMPRESSION_RATIO if is_compressed(path) else size


def default_num_shards(files: list[str]) -> int:
    """The number of shards when none is given: one per file, at least 8, and for local files at
    most one per `SHARD_BYTES` (16 MB) of text (`text_bytes`: a compressed file counts 4 times its size);
    for ``.txt`` files alone, at most one per `TEXT_FILES_PER_SHARD` files (a multiple of 8 from 8 shards on,
    else 1, 2 or 4).

    Windows of texts (chaining, batching, the miner's keyword statistics) never span shards, so
    a shard per small file would synthesize a corpus of one document per ``.txt`` file one text
    at a time: no M-shot chain, batches of one prompt. 16 MB of text is about 4M tokens, 10-30
    minutes of one GPU with a 7B synthesizer (a job's unit of work to redo after a kill). A ``.txt``
    file is one document, so its parts beyond the first are empty: 5 of them in 8 shards were 5 texts
    synthesized alone.
    """
    wanted = max(len(files), 8)
    if files and all(os.path.isfile(f) for f in files):
        total = sum(text_bytes(f) for f in files)
        wanted = max(8, min(len(files), -(-total // SHARD_BYTES)))
    if files and all(data_suffix(f) in TEXT_SUFFIXES for f in files):
        cap = max(1, len(files) // TEXT_FILES_PER_SHARD)
        if cap < wanted:  # a multiple of 8 from 8 on, else 1, 2 or 4: what ranks of 2, 4 or 8 split (`make_shards`)
            wanted = cap - cap % 8 if cap >= 8 else 1 << (cap.bit_length() - 1)
    return wanted


def make_shards(files: list[str], num_shards: int | None) -> list[dict]:
    """Exactly `num_shards` shards over `files` (default: `default_num_shards`).

    With at least as many files as shards, shard ``i`` holds files ``i, i + n, ...``; with
    fewer, each file is split into parts, a part keeping every `parts`-th document of its file,
    so parts are disjoint and complete. Local files get parts by size (`file_parts`: a 1 GB
    file beside two small ones gets most of the shards, not a third), files of equal or unknown
    size (remote) equal numbers, the first ones one more. A file is read once per part.

    For `datasets.distributed.split_dataset_by_node`, choose `num_shards` divisible by the
    world size: otherwise datasets gives every rank every shard and keeps each rank's
    every-Nth example, so each rank reads (and synthesizes) the whole corpus.
    """
    if not files:
        return []
    wanted = num_shards or default_num_shards(files)
    if wanted < 1:
        raise ValueError(f"`num_shards` must be >= 1, got {num_shards}")
    root = common_root(files)
    extra = {} if root is None else {"root": root}  # one folder: no key, ids and shards as before
    if wanted <= len(files):
        logger.info("hf_ipt: %d corpus files -> %d shards of whole files", len(files), wanted)
        return [{"files": files[i::wanted], "part": 0, "parts": 1, **extra} for i in range(wanted)]
    parts = file_parts(files, wanted)
    logger.info("hf_ipt: %d corpus files -> %d shards, files in %d to %d parts", len(files), wanted,
                min(parts), max(parts))
    return [{"files": [f], "part": p, "parts": n, **extra} for f, n in zip(files, parts) for p in range(n)]


def file_parts(files: list[str], shards: int) -> list[int]:
    """Parts per file, `shards` in all (at least one each), so that the largest part is as small as can be:
    each further part goes to the file whose parts are largest now (the earlier file on a tie).
    Sizes are those of local files' text (`text_bytes`); when any file is remote, every file counts as the
    same size."""
    local = all(os.path.isfile(f) for f in files)
    sizes = [text_bytes(f) if local else 1 for f in files]
    parts = [1] * len(files)
    heap = [(-size, k) for k, size in enumerate(sizes)]
    heapq.heapify(heap)
    for _ in range(shards - len(files)):
        _, k = heapq.heappop(heap)
        parts[k] += 1
        heapq.heappush(heap, (-sizes[k] / parts[k], k))
    return parts


def iter_shard(shard: dict, text_column: str = "text", token=None) -> Iterator[Document]:
    """The documents of one shard, in file order (`token`: see `read_file`)."""
    part, parts, root = shard["part"], shard["parts"], shard.get("root")
    for path in shard["files"]:
        yield from read_file(path, text_column, file_name(path, root), token=token, part=(part, parts))
