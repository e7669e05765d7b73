"""Up-front checks of a recipe's data sources, run before any tokenizer or model loads.

A wrong path or column would otherwise surface only once training streams its first rows,
minutes into a large model's load. Each local source is resolved as training will resolve
it (`hf_ipt.corpus.local_files`, `synthesizer_data.collection_files`) and the first row of
its first non-empty file is read to see that the configured columns are there; so are the
files of an ``hf://datasets/...`` URL (a listing and the first file's first rows or Parquet
footer). A value that is not a path but looks like a Hub dataset id (``org/name[@revision]``) is
pinned to its commit when the Hub can be reached (`check_data`), else left alone; its rows are
checked when it streams.

Errors are `hf_ipt.cli.UsageError` (a `ValueError`) naming the option, its value, what was
found and the fix; the recipes report them like argparse errors (exit status 2).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..cli import UsageError, hub_unreachable_error, is_hub_unreachable
from ..corpus import (
    cached_dataset,
    check_url,
    data_suffix,
    download_fix,
    hub_id_parts,
    hub_offline,
    hub_url_parts,
    is_file_corpus,
    is_hub_url,
    is_local_corpus,
    offline_cause,
    open_file,
    pattern_files,
    pin_hub_dataset,
    pin_hub_url,
    refuse_pairs_output,
    starts_with_array,
)
from ..models import few_names, is_local_path, missing_path_hint
from .data import BUILDERS

logger = logging.getLogger(__name__)

_HUB_DATASET = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

# Data-config attribute -> the column attributes its rows must have (see `streams`).
SOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("domain_dataset", ("text_column",)),
    ("general_dataset", ("question_column", "response_column")),
    ("raw_dataset", ("raw_text_column",)),
    ("augmented_dataset", ("text_column",)),
)


def check_data(config: Any) -> None:
    """Check every data source of a recipe's data config before any model load, and pin each
    ``hf://`` URL source and Hub dataset id to the commit its revision points to now (in place:
    the model card and the resume check, `hf_ipt_data_stream.json`, record the commit, so a
    resume after the branch moved is refused instead of reading other data).

    Args:
        config (`ContinualPTConfig`, `PretrainConfig` or `SynthesizerConfig`): the sources are
            its set ``*_dataset`` attributes and ``collection``, each checked for the columns
            `hf_ipt.training.streams` reads from it.

    Raises:
        `UsageError`: a local source that matches nothing, or whose first row lacks a column.
    """
    for attribute in [a for a, _ in SOURCES] + ["collection"]:
        value = getattr(config, attribute, None)
        if value is not None and not isinstance(value, str):
            raise UsageError(f"`{attribute}` takes one source (a file, a glob, an hf:// URL or a dataset), not "
                             f"{type(value).__name__} {value!r}: match several files with one glob, e.g. "
                             "'data/*.jsonl'")
    split = getattr(config, "dataset_split", "train")
    for attribute, pinned in pin_hub_sources(config).items():
        setattr(config, attribute, pinned)
    for attribute, column_attributes in SOURCES:
        source = getattr(config, attribute, None)
        if source:
            columns = {getattr(config, c): f"--{c}" for c in column_attributes}
            check_source(f"--{attribute}", source, columns, split=split)
    if getattr(config, "collection", None):
        check_collection(
            config.collection,
            {config.pairs_column: "--pairs_column", config.context_column: "--context_column"},
        )


def pin_hub_sources(config: Any) -> dict[str, str]:
    """Each ``hf://`` URL source of `config` at its commit (`pin_hub_url`), and each Hub dataset
    id as ``org/name@<sha>`` (`pin_hub_dataset`), by attribute.

    Pinned once, by rank 0, and sent to the others when `torch.distributed` is initialized (in
    the recipes, by their parsed `TrainingArguments`), so that every rank reads the same
    snapshot even if the branch moves while they start; an error is raised on every rank.
    Offline (``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1``), each is pinned to the commit the
    Hugging Face cache holds for its revision (`corpus.cached_dataset`: ``hf download org/name
    --repo-type dataset`` fills it), and streams from there; an id the cache lacks, or any Hub source
    when there is no network, is a `HubUnreachableError` naming it and the download, here rather than
    where it streams, once the model has loaded. An id whose pinning the Hub refuses otherwise (a
    server error) is left as it is, with a warning.
    """

    urls = {a: s for a, _ in SOURCES if (s := getattr(config, a, None)) and is_hub_url(s)}
    attributes = [a for a, _ in SOURCES] + ["collection"]  # a collection is a folder or a Hub id, no URL
    ids = {a: s for a in attributes if (s := getattr(config, a, None)) and _is_hub_dataset(s)}
    if ids and hub_offline():
        # pinned to the commit the Hugging Face cache holds, as online to the branch's: a resume online
        # reads the same snapshot; one the cache lacks stops the run here, not once the model has loaded
        for attribute, source in ids.items():
            if cached_dataset(*hub_id_parts(source), f"--{attribute} {source!r}") is None:
                raise hub_unreachable_error(f"`--{attribute}` {source!r} is read from the Hub",
                                            download_fix(hub_id_parts(source)[0], f"`--{attribute}`"), offline_cause())
    urls.update(ids)
    if not urls:
        return {}
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return _pin(urls)
    shared: list[Any] = [None]
    failure: Exception | None = None
    if dist.get_rank() == 0:
        try:
            shared[0] = _pin(urls)
        except Exception as error:  # noqa: BLE001 - sent on, so that no rank waits forever
            failure = error
            shared[0] = UsageError(str(error)) if isinstance(error, UsageError) else RuntimeError(
                f"pinning the hf:// sources failed on the main process: {error!r}")
    dist.broadcast_object_list(shared, src=0)
    if failure is not None:
        raise failure
    if isinstance(shared[0], Exception):
        raise shared[0]
    return shared[0]


def _pin(sources: dict[str, str]) -> dict[str, str]:
    pinned = {}
    for attribute, source in sources.items():
        url = is_hub_url(source)
        try:
            pinned[attribute] = pin_hub_url(source) if url else pin_hub_dataset(source, where=f"--{attribute}")
        except UsageError as error:
            raise UsageError(str(error).replace("`corpus`", f"`--{attribute}`").replace(
                "or given as `corpus_revision`", "or as a commit sha").replace("`token=`, ", "")) from None
        except Exception as error:
            if is_hub_unreachable(error):  # no network: `datasets` could not stream it either
                repo = hub_url_parts(source)[0] if url else hub_id_parts(source)[0]
                fix = download_fix(repo, f"`--{attribute}`")
                if not url:
                    fix += "; if it is in the Hugging Face cache already, set HF_HUB_OFFLINE=1 to read it from there"
                raise hub_unreachable_error(f"--{attribute} {source!r} is read from the Hub", fix, error) from None
            if url:
                raise
            logger.warning("hf_ipt: could not pin --%s %r to a commit (%s: %s): it is read unpinned",
                           attribute, source, type(error).__name__, error)
    return pinned


def _is_hub_dataset(source: str) -> bool:
    """Not an existing local path, no file pattern, and shaped like ``name`` or ``org/name`` (with
    an optional ``@revision``), whose ``org`` is not a local folder (``data/genral`` is a typo of a
    path, not a Hub id).

    A source may be a canonical dataset without an owner, e.g. ``squad``: `pin_hub_sources` then
    asks the Hub. The card lists such a one-word id only once pinned (`trainer.hub_datasets`).
    """
    return (
        not os.path.exists(source)
        and not is_local_corpus(source)
        and bool(_HUB_DATASET.fullmatch(hub_id_parts(source)[0]))
        and not is_local_path(hub_id_parts(source)[0])
    )


def check_source(
    option: str, source: str, columns: Mapping[str, str | None], *, split: str = "train"
) -> None:
    """Check one row source: a local file/glob, a local dataset folder, or (left alone) a Hub id.

    Args:
        option (`str`): the option that set `source`, e.g. ``"--domain_dataset"``, for errors.
        source (`str`): the value as `streams.load_rows` takes it.
        columns (`Mapping[str, str | None]`): each column the rows need -> the option naming it
            (e.g. ``{"text": "--text_column"}``), or `None` where the column is fixed.
        split (`str`, *optional*, defaults to ``"train"``): split of a dataset folder.
    """
    check_url(source, option)
    if os.path.isdir(source):
        where, keys = _first_folder_row(option, source, split)
        output = source
    elif is_file_corpus(source):
        files = _files(option, source)
        found = _first_file_row(option, source, files)
        if found is None:
            return
        where, keys = found
        output = files[0]
    elif _is_hub_dataset(source):
        return
    else:
        raise UsageError(
            f"`{option}` {source!r} is neither an existing local file, glob or folder{_relative(source)}"
            f"{missing_path_hint(source)} nor a "
            "Hub dataset id (`org/name`): fix the path"
        )
    if any(c not in keys for c in columns):
        refuse_pairs_output(option, source, output, "training text", "Synthesize with `--output templified` (the "
                            f"default) into another --output_dir and point `{option}` at that folder")
    _require(option, source, columns, where, keys)


def check_collection(
    collection: str, columns: Mapping[str, str | None], option: str = "--collection"
) -> None:
    """Check a local collection folder (``{name}/shard/*.jsonl``): its layout and, in the first
    row of each source's first file, the `columns`; a Hub id is left alone."""
    from .synthesizer_data import SHARD_GLOB, collection_files

    if not os.path.isdir(collection):
        if _is_hub_dataset(collection):
            return
        raise UsageError(
            f"`{option}` {collection!r} is neither a local folder{_relative(collection)} nor a Hub dataset id "
            f"(`org/name`); it must be the folder (or dataset) holding `{SHARD_GLOB}` files: fix the path"
        )
    try:
        files = collection_files(collection)
    except FileNotFoundError:
        found = sorted(os.listdir(collection))
        raise UsageError(
            f"`{option}` {collection!r} holds no `{SHARD_GLOB}` files; found {few_names(found) or 'an empty folder'}. "
            "Point it at the collection's root folder (one subfolder per source, each with a `shard/` folder)"
        ) from None
    for name, source_files in files.items():
        found = _first_file_row(option, f"{collection}/{name}", source_files)
        if found is not None:
            _require(option, collection, columns, *found)


def _files(option: str, source: str) -> list[str]:
    try:
        files = pattern_files(source)
    except FileNotFoundError as error:
        if "://" in source:
            raise UsageError(str(error).replace("`corpus`", f"`{option}`")) from None
        raise UsageError(
            f"`{option}` {source!r} matched no file{_relative(source)}: give an existing local file or glob "
            "(.txt, .jsonl, .json, .parquet; the first three also .gz, .bz2, .xz, .zst), a dataset folder, "
            "or a Hub dataset id (`org/name`)"
        ) from None
    except ValueError as error:  # unsupported suffixes
        raise UsageError(str(error).replace("`corpus`", f"`{option}`")) from None
    kinds = {BUILDERS[data_suffix(f)] for f in files}
    if len(kinds) > 1:
        raise UsageError(
            f"`{option}` {source!r} matched files of several types ({sorted(kinds)}): use one type per source"
        )
    return files


def _first_file_row(option: str, source: str, files: Iterable[str]) -> tuple[str, list[str]] | None:
    """(where, column names) of the first row of the first file that has one; `None` for a remote
    JSON array, which is read whole (its columns are checked as it streams)."""
    for path in files:
        if "://" in path and data_suffix(path) == ".json" and starts_with_array(path):
            return None
        keys = _row_keys(option, path)
        if keys is not None:
            return f"the first row of {path!r}", keys
    raise UsageError(f"`{option}` {source!r}: its files hold no rows")


def _row_keys(option: str, path: str) -> list[str] | None:
    """Columns of the file's first row, as `streams.load_rows` reads it; `None` when it has none."""
    suffix = data_suffix(path)
    if suffix == ".txt":
        return ["text"]  # datasets' text builder, one document per file
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        with open_file(path) as f:  # a local file or an hf:// URL (its footer only)
            pf = pq.ParquetFile(f, pre_buffer=False)
            return pf.schema_arrow.names if pf.metadata.num_rows else None
    if suffix == ".jsonl":
        with open_file(path) as f:
            line = next((line for line in f if line.strip()), None)
        if line is None:
            return None
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UsageError(
                f"`{option}`: the first line of {path!r} is not JSON ({error})"
            ) from None
        if not isinstance(row, dict):
            raise UsageError(
                f"`{option}`: the first line of {path!r} is a JSON {type(row).__name__}, not an object of columns"
            )
        return sorted(row)
    # .json: a top-level array or JSON lines, however datasets reads it.
    if "://" not in path and os.path.getsize(path) == 0:
        return None  # datasets' JSON reader stops (StopIteration) on an empty first file; the stream skips it
    from .data import load_rows

    row = next(iter(load_rows([path])), None)
    return None if row is None else sorted(row)


def _first_folder_row(option: str, source: str, split: str) -> tuple[str, list[str]]:
    from ..corpus import refuse_saved_to_disk
    from .data import load_rows

    refuse_saved_to_disk(option, source, "the recipes")
    try:
        row = next(iter(load_rows(source, split=split, option=option)), None)
    except UsageError:  # says what is wrong with the folder itself (an unfinished synthesis job)
        raise
    except Exception as error:  # noqa: BLE001 - any reader error is the user's folder or split
        raise UsageError(
            f"`{option}` {source!r} is a folder that does not read as a dataset (split {split!r}): {error}"
        ) from None
    if row is None:
        raise UsageError(f"`{option}` {source!r} has no rows in split {split!r}")
    return f"the first row of {source!r} (split {split!r})", sorted(row)


def _require(
    option: str, source: str, columns: Mapping[str, str | None], where: str, keys: list[str]
) -> None:
    missing = [c for c in columns if c not in keys]
    if not missing:
        return
    named = " or ".join(
        f"{c!r} (set by `{columns[c]}`)" if columns[c] else repr(c) for c in missing
    )
    settable = [columns[c] for c in missing if columns[c]]
    fix = (
        f"Set {' / '.join(f'`{o}`' for o in settable)} to one of these columns"
        if settable
        else "Rename the data's columns"
    )
    raise UsageError(
        f"`{option}` {source!r} has no {named} column{'s' if len(missing) > 1 else ''}; {where} has columns {keys}. "
        f"{fix}, or point `{option}` at other data"
    )


def _relative(path: str) -> str:
    return "" if os.path.isabs(path) else f" (relative to {os.getcwd()})"
