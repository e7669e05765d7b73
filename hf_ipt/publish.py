"""Publish synthesis output to a Hub dataset repo: one config per corpus, with a generated card.

    >>> from hf_ipt.publish import push_dataset
    >>> push_dataset("outputs/bbc", "my-org/augmented")      # -> "https://huggingface.co/datasets/my-org/augmented"
    >>> load_dataset("my-org/augmented", "bbc-business", split="train")

Input is either layout of a synthesis run: ``data/*.parquet`` + ``manifest.json`` (``hf-ipt
synthesize``) or ``data.parquet`` + ``summary.json`` (``hf-ipt augment``). In the repo a config
is a folder, ``<config>/*.parquet`` plus ``<config>/stats.json`` (the statistics its card section
is rendered from), listed under ``configs:`` in the README YAML. Pushing a second corpus keeps
the configs already there; pushing a corpus again replaces its files; pushing another corpus
under a taken config name is refused unless ``overwrite=True``. Everything lands in one commit,
made on top of the head it was rendered from (``parent_commit``; redone when another push
landed first). `render_dataset_card` is pure; `push_dataset` only reads, renders and commits.
Reading, rendering and pushing share one normalized statistics dict, so they stay in one file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .augment import RULES, recorded_settings
from .cards import public_location, public_values, render_template
from .cli import MissingFileError, UsageError
from .corpus import output_data_files, output_record

logger = logging.getLogger(__name__)

NOT_RECORDED = "not recorded"
STATS_FILE = "stats.json"
RETRY_STATUS = (429, 500, 502, 503, 504)  # rate limit and transient server errors
MAX_ATTEMPTS = 5
CONFLICT_ATTEMPTS = 5  # read-render-commit rounds when another commit lands first (HTTP 412)
BACKOFF_S = 2.0  # doubled after each failed attempt; a Retry-After header wins
_EXTENSIONS = re.compile(r"\.(jsonl|json|txt|parquet|csv|arrow)$")
_CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PR_REF = re.compile(r"refs/pr/(\d+)")  # a pull request's head, which takes commits as a branch does
# Folder and file names that many corpora share: a config name derived from one says little, and
# another project's push derives it too (its corpus is then refused, or, with --overwrite, replaces this).
GENERIC_NAMES = frozenset({"data", "dataset", "datasets", "corpus", "raw", "text", "texts", "docs", "documents",
                           "files", "input", "inputs", "train", "test", "dev", "valid", "validation", "all"})
SELECTION = ("corpus_config", "corpus_split")  # which part of a dataset corpus a job read (its `settings.job`)


# ---------------------------------------------------------------------------- reading output


class ConfigTakenError(UsageError):
    """Config `config_name` of a repo holds other data: another corpus or synthesizer, or data
    that hf_ipt did not push. `with_options` names the ways out as another command spells them."""

    def __init__(self, problem: str, config_name: str, rename: str = "--config_name NEW, `config_name=`",
                 overwrite: str = "--overwrite (`overwrite=True`)") -> None:
        self.problem, self.config_name = problem, config_name
        super().__init__(f"{problem}: pass another config name ({rename}) to publish it beside, or {overwrite} "
                         f"to replace config {config_name!r}")

    def with_options(self, rename: str, overwrite: str) -> ConfigTakenError:
        """The same refusal, naming `rename` and `overwrite` as the fixes (e.g. a command's own flags)."""
        return ConfigTakenError(self.problem, self.config_name, rename, overwrite)


def check_config_name(name: str) -> str:
    """`name` when it can name a config (a folder of the repo), else a `UsageError` saying why."""
    if not _CONFIG_NAME.fullmatch(name):
        raise UsageError(f"`config_name` must be letters, digits, '_', '.', '-' (it names a folder of the repo), "
                         f"got {name!r}")
    return name


def config_name_for(corpus: str) -> str:
    """A config name from a corpus name: last non-glob path part, no extension, safe characters.

    ``"bbc-business"`` -> ``"bbc-business"``, ``"data/finance/*.jsonl"`` -> ``"finance"``,
    ``"/tmp/news.jsonl"`` and ``"/tmp/news.jsonl.gz"`` -> ``"news"``, ``"org/pubmed"`` -> ``"pubmed"``.
    """
    from .corpus import is_compressed

    parts = [p for p in re.split(r"[/\\]", corpus) if p and not re.search(r"[*?\[]", p)]
    name = parts[-1] if parts else ""
    name = _EXTENSIONS.sub("", name.rpartition(".")[0] if is_compressed(name) else name)  # the format under .gz
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    if not name:
        raise UsageError(f"cannot derive a config name from corpus {corpus!r}; pass `config_name` (--config_name)")
    return name


def data_files(output_dir: str | Path) -> list[Path]:
    """The Parquet files of a synthesis output folder, in order.

    A job's ``manifest.json`` lists its files (an unlisted file in ``data/`` is not part of the
    output); otherwise every ``data/*.parquet``, else ``data.parquet``.
    """
    out = Path(output_dir)
    files = [Path(f) for f in output_data_files(str(out))]
    if not files:
        raise MissingFileError(
            f"no Parquet output in {out}: expected data/*.parquet (hf-ipt synthesize) or data.parquet (hf-ipt augment)"
        )
    return files


def hidden_location(location: str | None) -> str | None:
    """A recorded location as pushed in ``stats.json``: a local absolute path as its digest
    (``sha256:<16 hex>``, which the replace check compares: a user's folders are not published), a Hub id
    or URL as it is."""
    if not location or not os.path.isabs(location):
        return location
    return "sha256:" + hashlib.sha256(location.encode("utf-8")).hexdigest()[:16]


def read_output(output_dir: str | Path, config_name: str | None = None) -> dict[str, Any]:
    """The statistics of one synthesis output folder, normalized for the card.

    Reads ``manifest.json`` (``hf-ipt synthesize``) or else ``summary.json`` (``hf-ipt
    augment``); whatever neither records is `None` and renders as "not recorded".
    """
    out = Path(output_dir)
    if (out / "job.json").is_file() and not (out / "manifest.json").is_file():
        raise UsageError(f"the synthesis job in {out} is not finished (no manifest.json): rerun `hf-ipt synthesize` "
                         "with the same settings to complete it, then push")
    record, source = output_record(str(out))
    settings = record.get("settings") or {}
    job = settings.get("job") or {}
    # Older records list every setting, a model's for a rules run too: keep those of its synthesizer.
    synthesis = recorded_settings(settings.get("synthesis") or record.get("synthesis") or {})
    corpus = _first(record, "corpus_name", "corpus")
    if config_name is not None:
        check_config_name(config_name)
    name = config_name or _derive_name(corpus, record.get("corpus"), out.name)
    return {
        "config_name": name,
        # as given, less the folders of a local path (`public_location`); where: its location's digest
        "corpus": public_location(record.get("corpus")),
        # absent in outputs of older hf_ipt: then a local path as given tells corpora apart (its digest)
        "corpus_location": hidden_location(record.get("corpus_location") or _local(record.get("corpus"))),
        "split": record.get("split"),
        **{key: record.get(key, job.get(key)) for key in SELECTION},
        "source": source,
        "hf_ipt_version": record.get("hf_ipt_version"),
        "synthesizer": public_location(synthesis.get("synthesizer")),
        "synthesizer_location": hidden_location(record.get("synthesizer_location") or _local(synthesis.get("synthesizer"))),
        "revision": synthesis.get("revision"),
        "rounds": "n/a (mined text by text)" if synthesis.get("synthesizer") == RULES else synthesis.get("rounds"),
        "output": synthesis.get("output"),
        "docs": record.get("docs"),
        "rows": record.get("rows"),
        "pairs": record.get("pairs"),
        "rejects": record.get("rejects"),
        "filters": _first(record, "filters_removed", "filters"),
        "tokens": _tokens(record.get("tokens")),
        "chain": record.get("chain"),
        "sample": sample_note(record),
        "settings": public_values(synthesis) or None,  # domain_keywords too
        "filter_settings": settings.get("filters"),
        "data_files": [f"{name}/{f.name}" for f in _checked_files(out, record.get("rows"), synthesis.get("output"))],
    }


def _local(value: Any) -> str | None:
    """`value` when it is an absolute or home path (which `public_location` shortens in the card), as
    `corpus.corpus_location` records one (absolute, normalized, links resolved), else `None`."""
    if not isinstance(value, str) or public_location(value) == value:
        return None
    return os.path.realpath(os.path.expanduser(value))


def sample_note(record: dict) -> str | None:
    """What part of the corpus an output that stopped at ``--max_docs`` holds (`None`: all of it)."""
    if not record.get("sample"):
        return None
    return (f"the first {record.get('rows'):,} rows only (`hf-ipt augment --max_docs {record.get('max_docs')}`), "
            "not the whole corpus")


def _checked_files(out: Path, rows: int | None, output: str | None) -> list[Path]:
    """`data_files` of `out`, each a readable Parquet file with the columns of hf_ipt's `output`
    mode (either mode when not recorded), holding the `rows` the record counts: a damaged output,
    or a folder of other data, is refused before anything reaches the Hub."""
    from .jobs import damaged_output, parquet_rows

    files = data_files(out)
    job = (out / "job.json").is_file()
    if (problem := damaged_output([str(f) for f in files], rows)) is not None:
        fix = ("rerun `hf-ipt synthesize` with the same settings (it writes a finished job's missing or damaged "
               "output again from its pairs/; without them, it says the ways on)" if job else
               "rerun the command that wrote it")
        raise UsageError(f"{out}: {problem}: {fix}, then push")
    if (rows if rows is not None else sum(parquet_rows(str(f)) or 0 for f in files)) == 0:
        why = (f"{out / 'rejects.jsonl'} lists each rejected document with its reason" if job else
               f"`rejects` in {out / 'summary.json'} counts the rejected documents by reason"
               if (out / "summary.json").is_file() else "the command that wrote it said why")
        raise UsageError(f"{out} holds no rows: a config with no data cannot be loaded (`load_dataset` fails with "
                         f"\"corresponds to no data\"), so it is not pushed. {why}: fix the corpus (or "
                         "--text_column) and run again, then push")
    _check_columns(files, output)
    return files


def _check_columns(files: list[Path], output: str | None) -> None:
    """Refuse a file whose columns are not those of hf_ipt's `output` mode (either mode when
    `None`): a raw corpus or another tool's Parquet would be published as augmented data."""
    import pyarrow.parquet as pq

    from .augment import features

    modes = [output] if output in ("templified", "pairs") else ["templified", "pairs"]
    expected = {mode: sorted(features(mode)) for mode in modes}
    for path in files:
        columns = sorted(pq.read_schema(path).names)
        if columns not in expected.values():
            wanted = " or ".join(f"{names} ({mode} output)" for mode, names in expected.items())
            raise UsageError(f"{path} has columns {columns}, not {wanted}: it is not hf_ipt output. Point "
                             "--output_dir at the folder `hf-ipt augment` or `hf-ipt synthesize` wrote")


def _first(record: dict, *keys: str) -> Any:
    return next((record[k] for k in keys if record.get(k) is not None), None)


def _derive_name(*candidates: str | None) -> str:
    """The first candidate that makes a valid config name (a job's `corpus_name` may be a bare glob)."""
    for candidate in filter(None, candidates):
        try:
            return config_name_for(candidate)
        except ValueError:
            continue
    raise UsageError(f"cannot derive a config name from {candidates!r}; pass `config_name` (--config_name)")


def _tokens(tokens: Any) -> Any:
    if isinstance(tokens, dict) and set(tokens) == {"count", "unit"}:  # jobs: {"count": 123, "unit": "words"}
        return f"{tokens['count']:,} {tokens['unit']}"
    return tokens


# ---------------------------------------------------------------------------- rendering


def render_dataset_card(info: dict[str, Any]) -> str:
    """The dataset card (README.md with YAML metadata) of a repo of augmented configs.

    Args:
        info (`dict`): ``repo_id``; ``configs``, a list of `read_output` dicts (a config known
            only by name renders its statistics as "not recorded"; its ``yaml`` entry, when
            given, is kept as is); ``metadata`` (*optional*), YAML keys to keep from an
            existing card; ``revision`` (*optional*), the branch the card is pushed to (its load
            snippet names it); ``location`` (*optional*, default ``repo_id``), what its load snippet
            gives `load_dataset` (a local folder's card: the folder).
    """
    from .builder import CITATION

    configs = sorted(info["configs"], key=lambda c: c["config_name"])
    if not configs:
        raise ValueError("`info['configs']` is empty: a dataset card needs at least one config")
    metadata = _metadata(info["repo_id"], configs, info.get("metadata") or {})
    return render_template(
        "dataset_card.md",
        metadata=yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).rstrip(),
        pretty_name=metadata["pretty_name"],
        location=info.get("location") or info["repo_id"],
        example_config=configs[0]["config_name"],
        revision_argument=f", revision={info['revision']!r}" if info.get("revision") else "",
        config_table="\n".join(_table_row(c) for c in configs),
        config_sections="\n\n".join(_section(c) for c in configs),
        citation=CITATION,
    )


def config_entry(name: str, default: bool = False) -> dict[str, Any]:
    """The README ``configs:`` entry of a config pushed by hf_ipt (`default`: the repo's default config)."""
    entry = {"config_name": name, "data_files": [{"split": "train", "path": f"{name}/*.parquet"}]}
    return {**entry, "default": True} if default else entry


def _metadata(repo_id: str, configs: list[dict], kept: dict) -> dict[str, Any]:
    meta = {key: value for key, value in kept.items() if key != "configs"}
    if "dataset_info" in meta:  # `Dataset.push_to_hub` wrote it: features and split sizes per config
        replaced = {c["config_name"] for c in configs if not c.get("yaml")}
        if (infos := _other_dataset_infos(meta.pop("dataset_info"), replaced)) is not None:
            meta["dataset_info"] = infos
    meta.setdefault("pretty_name", repo_id.split("/")[-1])
    meta.setdefault("tags", ["hf_ipt", "instruction-pretraining", "synthetic"])
    meta.setdefault("task_categories", ["text-generation"])
    # A config made the default by hand (`default: true`) stays the default when pushed again.
    defaults = {e.get("config_name") for e in kept.get("configs") or [] if isinstance(e, dict) and e.get("default")}
    meta["configs"] = [c.get("yaml") or config_entry(c["config_name"], c["config_name"] in defaults) for c in configs]
    return meta


def _other_dataset_infos(infos: Any, replaced: set[str]) -> Any:
    """`dataset_info` (one entry, or a list of them) without the entries of the `replaced` configs.

    `load_dataset` checks a config's data against its entry: one left from data that a push
    replaced fails the load (`CastError`, `NonMatchingSplitsSizesError`). `None` when none is left.
    """
    entries = infos if isinstance(infos, list) else [infos]
    kept = [e for e in entries if not isinstance(e, dict) or e.get("config_name", "default") not in replaced]
    if not kept:
        return None
    return kept if isinstance(infos, list) else kept[0]


def _table_row(c: dict) -> str:
    cells = [f"`{c['config_name']}`", _synthesizer(c), *(_fmt(c.get(k)) for k in ("rounds", "output", "rows", "pairs"))]
    if c.get("sample"):
        cells[4] += " (sample)"
    return "| " + " | ".join(cells) + " |"


def _section(c: dict) -> str:
    lines = [
        f"### `{c['config_name']}`",
        "",
        f"- **Corpus:** {_code(c.get('corpus'))}{_selection(c)}",
        *([f"- **Part of the corpus:** {c['split']}"] if c.get("split") else []),
        *([f"- **Sample:** {c['sample']}"] if c.get("sample") else []),
        f"- **Synthesizer:** {_synthesizer(c)}, revision {_revision(c)}",
        f"- **Rounds:** {_fmt(c.get('rounds'))}; **output:** {_fmt(c.get('output'))}",
        f"- **Documents:** {_fmt(c.get('docs'))}; **rows:** {_fmt(c.get('rows'))}; **pairs:** {_fmt(c.get('pairs'))}",
        f"- **Rejected documents:** {_fmt(c.get('rejects'))}",
        f"- **Removed by filters:** {_fmt(c.get('filters'))}",
        f"- **Tokens:** {_fmt(c.get('tokens'))}",
        f"- **Chaining:** {_fmt(c.get('chain'))}",
        f"- **Statistics from:** {_fmt(c.get('source'))}, hf_ipt {_fmt(c.get('hf_ipt_version'))}",
    ]
    for title, values in (("Generation setting", c.get("settings")), ("Filter setting", c.get("filter_settings"))):
        if values:
            lines += ["", f"| {title} | Value |", "|---|---|"]
            lines += [f"| {key} | {_fmt(value, none='none')} |" for key, value in values.items()]
    return "\n".join(lines)


def _selection(c: dict) -> str:
    """The config and split of a dataset corpus that `c` was made from ("" for its default config's train split)."""
    parts = [f"config {c['corpus_config']!r}"] if c.get("corpus_config") is not None else []
    if parts or c.get("corpus_split") not in (None, "train"):
        parts.append(f"split {c.get('corpus_split')!r}")
    return f" ({', '.join(parts)})" if parts else ""


def _synthesizer(c: dict) -> str:
    return _code(c.get("synthesizer"))


def _code(value: str | None) -> str:
    return f"`{value}`" if value else NOT_RECORDED


def _revision(c: dict) -> str:
    if c.get("synthesizer") == "rules":
        return "n/a (model-free miner)"
    if c.get("revision"):
        return f"`{c['revision']}`"
    return "not pinned (the default branch when synthesized)" if c.get("settings") else NOT_RECORDED


def _fmt(value: Any, none: str = NOT_RECORDED) -> str:
    if value is None:
        return none
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_fmt(v)}" for key, v in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "none"
    return str(value)


# ---------------------------------------------------------------------------- pushing


def push_dataset(output_dir: str | Path, repo_id: str, *, config_name: str | None = None, token: str | None = None,
                 private: bool | None = None, revision: str | None = None, overwrite: bool = False,
                 license: str | None = None) -> str:
    """Upload a synthesis output folder as config ``config_name`` of the dataset repo ``repo_id``.

    The push reads the branch head (README and the other configs' ``stats.json``), renders the
    card and commits with that head as ``parent_commit``. When another commit lands in between,
    the Hub refuses the commit (HTTP 412) and the push reads, renders and commits again, so a
    concurrent push of another config is never dropped from the card.

    Args:
        output_dir (`str` or `Path`): folder with ``data/*.parquet`` or ``data.parquet``.
        repo_id (`str`): the dataset repo (``owner/name``; a bare name is created under the token's
            user), created when missing.
        config_name (`str`, *optional*): defaults to the corpus name, sanitized (`config_name_for`).
        token (`str`, *optional*): defaults to ``HF_TOKEN`` or the saved login.
        private (`bool`, *optional*): visibility of a newly created repo; `None` (default) keeps
            the owner's default (an organization may make new repos private), `False` forces public.
            An existing repo keeps its own; `True` refuses to push to an existing public one.
        revision (`str`, *optional*): branch to commit to (created when missing), or ``refs/pr/N`` to
            add the commit to open pull request N; default ``main``. A tag or a commit sha is refused.
        overwrite (`bool`, *optional*, defaults to `False`): replace config ``config_name`` even when
            it holds another corpus or synthesizer (or was not pushed by hf_ipt). Re-pushing the same
            corpus with the same synthesizer needs no flag.
        license (`str`, *optional*): the data's license for the card's metadata, as a Hub license id
            (``cc-by-4.0``, ``apache-2.0``, ``other``): the corpus's license decides it. Unset, a license the
            card already has is kept; a card without one shows none. Another license than the card's, while
            the repo holds other configs, raises `UsageError` (one license covers the repo).

    Returns:
        `str`: the URL of the dataset repo (of the branch's tree, or of the pull request, with `revision`).

    Raises:
        `ConfigTakenError` (a `ValueError`): config ``config_name`` already holds different data and
        `overwrite` is `False`.
    """
    from huggingface_hub import get_token

    check_license(license)
    info = read_output(output_dir, config_name)  # a damaged or unfinished output stops here, before the Hub
    if config_name is None and info["config_name"] in GENERIC_NAMES:
        logger.warning("hf_ipt push: config name %r, derived from corpus %r, is a generic folder name that other "
                       "corpora derive too; pass --config_name (`config_name=`) to give this one its own",
                       info["config_name"], info["corpus"])
    if (token or get_token()) is None:
        raise UsageError("no Hub token: set HF_TOKEN, run `hf auth login`, or pass --token (a write token)")
    with _token_refusals(repo_id):
        return _push(output_dir, repo_id, info, token=token, private=private, revision=revision, overwrite=overwrite,
                     license=license)


@contextlib.contextmanager
def _token_refusals(repo_id: str) -> Iterator[None]:
    """Inside, the Hub refusing the token (HTTP 401 or 403) is a `UsageError` naming the fix.

    Not only at `create_repo`: with ``exist_ok=True`` it lets a wrong or read-only token through
    when the repo exists and the token can read it, and the refusal comes at the commit.
    """
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status not in (401, 403):
            raise
        said = f" (the Hub said: {err.server_message.strip()})" if err.server_message else ""
        raise UsageError(f"the Hub refused the token (HTTP {status}) for creating, reading or writing to {repo_id}"
                         f"{said}: give a write token with access to it (HF_TOKEN, `hf auth login` or --token)"
                         ) from None


def _push(output_dir: str | Path, repo_id: str, info: dict, *, token: str | None, private: bool | None,
          revision: str | None, overwrite: bool, license: str | None = None) -> str:
    """`push_dataset` once its output is read and checked: create the repo, commit (again on HTTP 412)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    url = _retrying(api.create_repo, repo_id, repo_type="dataset", private=private, exist_ok=True)
    repo_id = url.repo_id  # "name" alone becomes "<user>/name": every later call needs the full id
    if private and not _retrying(api.repo_info, repo_id, repo_type="dataset").private:
        raise UsageError(f"the dataset repo {repo_id} exists and is public, and `private=True` (--private) only sets "
                         "the visibility of a repo the push creates: make it private on the Hub (its Settings) "
                         "and push again, or push to a new repo")
    if revision:
        _check_push_target(api, repo_id, revision)
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            _commit_config(api, output_dir, repo_id, info, token=token, revision=revision, overwrite=overwrite,
                           license=license)
            break
        except HfHubHTTPError as err:
            if not _is_conflict(err) or attempt == CONFLICT_ATTEMPTS:
                raise
            logger.warning("hf_ipt push: %s changed while pushing (HTTP 412); reading it again, attempt %d/%d",
                           repo_id, attempt + 1, CONFLICT_ATTEMPTS)
    return revision_url(str(url), revision)


def _check_push_target(api, repo_id: str, revision: str) -> None:
    """Make sure a commit can land on `revision`: an existing branch or open pull request
    (``refs/pr/N``) of the repo, or a new branch name (the branch is created from main).

    Raises:
        `UsageError`: `revision` is a tag, a commit sha, a pull request the repo does not have, or
        another ``refs/...`` name: none of them can take a commit, and `create_branch` would fail on
        them (or, for a tag or sha, make a branch that shadows it).
    """
    from .corpus import COMMIT

    refs = _retrying(api.list_repo_refs, repo_id, repo_type="dataset", include_pull_requests=True)
    if revision in {ref.name for ref in refs.branches}:
        return
    fix = "pass a branch name (created when missing) or refs/pr/N of an open pull request (--revision)"
    if _PR_REF.fullmatch(revision):
        if revision not in {ref.ref for ref in refs.pull_requests or []}:
            raise UsageError(f"`revision` {revision!r}: {repo_id} has no such pull request: open it on the Hub "
                             f"(or with `HfApi.create_pull_request`) first, or {fix}")
        return
    if revision in {ref.name for ref in refs.tags}:
        raise UsageError(f"`revision` {revision!r} is a tag of {repo_id}, and a tag cannot take a commit: {fix}, "
                         "then tag the pushed commit (`HfApi.create_tag`)")
    if COMMIT.fullmatch(revision):
        raise UsageError(f"`revision` {revision!r} is a commit sha, and a commit cannot take a commit: {fix}")
    if revision.startswith("refs/"):
        raise UsageError(f"`revision` {revision!r} is not a branch name nor refs/pr/N: {fix}")
    _retrying(api.create_branch, repo_id, repo_type="dataset", branch=revision, exist_ok=True)


# A Hub license id: lowercase letters, digits, ".", "-" and "+" (cc-by-nc-sa-4.0, apache-2.0, gpl-3.0+, other)
_LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")


def _refuse_relabel(repo_id: str, current: Any, license: str, others: list[dict]) -> None:
    """Refuse a `license` other than the one the repo's card gives, while it holds other configs: one license
    covers the repo, so theirs would be relabelled (pushed as cc-by-4.0, shown as mit), or labelled when the
    card gives none (pushed with no license, shown as mit)."""
    if current == license or not others:
        return
    names = ", ".join(entry["config_name"] for entry in others)
    if current is None:
        raise UsageError(f"{repo_id}'s card gives no license, and it holds other configs ({names}): --license "
                         f"{license} would label them too (one license covers a repo). Leave --license out, push this "
                         "corpus to another repo, or set the repo's license on the Hub (its card) first")
    raise UsageError(f"{repo_id}'s card gives the license {current!r}, which covers its other configs ({names}): "
                     f"--license {license} would relabel them. Give the same license (or leave --license out), push "
                     "this corpus to another repo, or change the repo's license on the Hub (its card) first")


def check_license(license: str | None) -> None:
    """Refuse a `license` that is no Hub license id, before anything is read or sent."""
    if license is not None and not _LICENSE_ID.fullmatch(license):
        raise UsageError(f"`license` {license!r} is no Hub license id: give one such as cc-by-4.0, apache-2.0, mit "
                         "or other (the list: https://huggingface.co/docs/hub/repositories-licenses)")


def revision_url(repo_url: str, revision: str | None) -> str:
    """The web page of `revision` of the repo at `repo_url`: the pull request's for ``refs/pr/N``, else
    the branch's tree (a ``/`` in a branch name percent-encoded, as the Hub's own links write it)."""
    from urllib.parse import quote

    if not revision:
        return repo_url
    if pr := _PR_REF.fullmatch(revision):
        return f"{repo_url}/discussions/{pr[1]}"
    return f"{repo_url}/tree/{quote(revision, safe='')}"


def _commit_config(api, output_dir: str | Path, repo_id: str, info: dict, *, token: str | None,
                   revision: str | None, overwrite: bool, license: str | None = None) -> None:
    """Read the branch head, render the card and commit on top of that head (HTTP 412 if it moved)."""
    from huggingface_hub import get_token

    parent = _retrying(api.repo_info, repo_id, repo_type="dataset", revision=revision).sha
    metadata, others, previous = _existing_configs(api, repo_id, parent, info, overwrite)
    if license is not None:
        _refuse_relabel(repo_id, metadata.get("license"), license, others)
        metadata = {**metadata, "license": license}
    # A pull request's card is main's once merged: its load snippet names no `refs/pr/N`.
    shown = None if revision and _PR_REF.fullmatch(revision) else revision
    card = render_dataset_card({"repo_id": repo_id, "configs": [*others, info], "metadata": metadata,
                                "revision": shown})
    stats = json.dumps(info, indent=2)
    _refuse_secret(token or get_token(), card=card, stats=stats)
    name, pushed = info["config_name"], set(info["data_files"])
    present = _config_files(api, repo_id, parent, name)
    if theirs := _other_configs_files(metadata, name, present - set(previous)):  # ours, read by a union config too
        path = min(theirs)
        raise UsageError(f"folder {name}/ of {repo_id} holds data files of config {theirs[path]!r}, such as {path!r}: "
                         f"config {name!r} there would serve them as its rows, and replacing it (--overwrite) would "
                         "delete them from under that config. Push under another config name (--config_name)")
    # Parquet files in the config's folder that no push of it listed: its `name/*.parquet` glob
    # would serve them with the pushed rows (a folder a hand-made commit or `push_to_hub` filled).
    foreign = sorted(p for p in present - pushed - set(previous) if p.endswith(".parquet"))
    if foreign and not overwrite:
        raise ConfigTakenError(f"folder {name}/ of {repo_id} holds Parquet files that no hf_ipt push of config "
                               f"{name!r} listed, such as {foreign[0]!r}: its data files glob ({name}/*.parquet) "
                               "would serve them with the pushed rows", name)
    stale = sorted(p for p in present - pushed if p.endswith(".parquet") and (overwrite or p in previous))
    operations = _operations(output_dir, info, card, stats, stale=stale)
    _retrying(api.create_commit, repo_id, operations, repo_type="dataset", revision=revision, parent_commit=parent,
              commit_message=f"hf_ipt: publish config {info['config_name']}")


def _is_conflict(err) -> bool:
    """Whether the `HfHubHTTPError` `err` answers a commit whose ``parent_commit`` is no longer the head."""
    return err.response is not None and err.response.status_code == 412


def _operations(output_dir: str | Path, info: dict, card: str, stats: str, stale: list[str]) -> list:
    """One commit: remove the config's files that are gone, add its data, stats and the card."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    name = info["config_name"]
    operations = [CommitOperationDelete(path_in_repo=path) for path in stale]
    operations += [CommitOperationAdd(path_in_repo=f"{name}/{f.name}", path_or_fileobj=str(f))
                   for f in data_files(output_dir)]
    operations += [CommitOperationAdd(path_in_repo=f"{name}/{STATS_FILE}", path_or_fileobj=stats.encode()),
                   CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode())]
    logger.info("hf_ipt push: config %r, %d data files (%d stale removed)", name, len(info["data_files"]), len(stale))
    return operations


def _existing_configs(api, repo_id: str, commit: str, info: dict,
                      overwrite: bool) -> tuple[dict, list[dict], list[str]]:
    """The README metadata at `commit`, its other configs (with their stats) and the files our config lists.

    Refuses, unless `overwrite`, to replace a config of the same name that holds other data.
    """
    readme = _read_remote(api, repo_id, "README.md", commit)
    metadata = _front_matter(readme.decode("utf-8")) if readme else {}
    # `datasets` lays data out as a config of its own while the card lists none: the first listed would hide it;
    # files in the config's own folder are replaced with --overwrite (`_commit_config`)
    laid_out = [] if metadata.get("configs") else \
        [f for f in _data_files(api, repo_id, commit) if not f.startswith(f"{info['config_name']}/")]
    if laid_out:
        raise UsageError(f"{repo_id} holds data files that its README lists in no `configs:` entry, such as "
                         f"{laid_out[0]!r} ({len(laid_out)} in all): `datasets` finds them by their layout, and a "
                         "config pushed beside them would hide them (`load_dataset` then reads the pushed config "
                         "only). Add a `configs:` entry for them to its README (e.g. `- config_name: default` with "
                         "their `data_files`), or push to another repo")
    others, previous = [], []
    for entry in metadata.get("configs") or []:
        raw = _read_remote(api, repo_id, f"{entry['config_name']}/{STATS_FILE}", commit)
        stats = json.loads(raw) if raw else None
        if entry["config_name"] == info["config_name"]:
            if not overwrite:
                _refuse_replacing(repo_id, stats, info)
            previous = (stats or {}).get("data_files") or []
        else:  # rendered again: an older push's full local paths are shown by their last part too
            shown = public_values(stats or {"config_name": entry["config_name"]})  # nested values too
            others.append({**shown, "yaml": entry})
    return metadata, others, previous


def _refuse_replacing(repo_id: str, remote: dict | None, info: dict) -> None:
    """Fail when config ``info["config_name"]`` of the repo holds another corpus or synthesizer.

    Two corpora can derive one config name (``/x/train.jsonl`` and ``/y/train.jsonl`` are both
    ``train``); pushing the second would delete the first's shards and overwrite its card section.
    """
    name = info["config_name"]
    if remote is None:
        raise ConfigTakenError(f"config {name!r} of {repo_id} was not pushed by hf_ipt (no {name}/{STATS_FILE}), so "
                               f"pushing {info['corpus']!r} would replace data it cannot identify", name)
    # Two configs of one dataset corpus are two corpora; stats.json of older pushes does not record them.
    selection = [key for key in SELECTION if key in remote]
    if not all(_same_place(remote, info, key) for key in ("corpus", "synthesizer")) \
            or any(remote.get(key) != info.get(key) for key in selection):
        raise ConfigTakenError(f"config {name!r} of {repo_id} holds corpus {_named(remote, 'corpus')}{_selection(remote)} "
                               f"(synthesizer {_named(remote, 'synthesizer')}), not corpus {_named(info, 'corpus')}"
                               f"{_selection(info)} (synthesizer {_named(info, 'synthesizer')}); pushing would "
                               "replace it", name)


def _same_place(remote: dict, info: dict, key: str) -> bool:
    """Whether the ``corpus`` or ``synthesizer`` (`key`) of two configs' stats is one: by their
    recorded locations (``data/*.jsonl`` run in two folders is two corpora), else, when a config
    pushed by an older hf_ipt records none, by the name as given."""
    location = f"{key}_location"
    if remote.get(location) and info.get(location):
        return remote[location] == info[location]
    if not remote.get(location) and info.get(location) and (path := _local(remote.get(key))):
        return hidden_location(path) == info[location]  # pushed by an older hf_ipt, with the path in full
    return remote.get(key) == info.get(key)


def _named(stats: dict, key: str) -> str:
    """The ``corpus`` or ``synthesizer`` (`key`) as given, and where it is when that says more."""
    location = stats.get(f"{key}_location")
    if location and location.startswith("sha256:"):  # a local path, published as its digest (`hidden_location`)
        return f"{stats.get(key)!r} (local path digest {location})"
    return f"{stats.get(key)!r}" + (f" at {location!r}" if location and location != stats.get(key) else "")


def _config_files(api, repo_id: str, commit: str, name: str) -> set[str]:
    """The paths of the files under folder `name` at `commit` (empty when there is no such folder).

    Only these can be deleted: a file listed in the old ``stats.json`` may be gone already (a
    hand-made commit removed it), and deleting a missing file fails the whole commit (HTTP 404).
    """
    from huggingface_hub import RepoFile
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        tree = api.list_repo_tree(repo_id, name, recursive=True, revision=commit, repo_type="dataset")
        return {entry.path for entry in tree if isinstance(entry, RepoFile)}
    except RemoteEntryNotFoundError:
        return set()


# what `datasets` lays out by itself (and .txt, which notes and licences often are: not counted)
DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".csv", ".tsv")
COMPRESSED = ("", ".gz", ".bz2", ".xz", ".zst", ".zip")


def _data_files(api, repo_id: str, commit: str) -> list[str]:
    """The data files of the repo at `commit` (`DATA_SUFFIXES`, compressed too), hidden files and folders left out."""
    from datasets.data_files import FILES_TO_IGNORE  # the metadata files `datasets` skips
    from huggingface_hub import RepoFile

    suffixes = tuple(data + packed for data in DATA_SUFFIXES for packed in COMPRESSED)
    tree = api.list_repo_tree(repo_id, recursive=True, revision=commit, repo_type="dataset")
    return sorted(entry.path for entry in tree if isinstance(entry, RepoFile) and entry.path.endswith(suffixes)
                  and entry.path.rsplit("/", 1)[-1] not in FILES_TO_IGNORE
                  and not any(part.startswith((".", "__")) for part in entry.path.split("/")))


def _other_configs_files(metadata: dict, name: str, paths: set[str]) -> dict[str, str]:
    """Those of `paths` that another config than `name` of the card's ``configs:`` reads (its ``data_files``
    patterns), with that config's name."""
    import fnmatch

    taken = {}
    for entry in metadata.get("configs") or []:
        if entry.get("config_name") == name:
            continue
        patterns = _patterns(entry.get("data_files")) or ["**"]
        if data_dir := str(entry.get("data_dir") or "").strip("/"):  # its patterns are under `data_dir`
            patterns = [f"{data_dir}/{pattern}" for pattern in patterns]
        # `**` also matches no folder at all (`news/**/*.parquet` reads `news/x.parquet`)
        patterns += [pattern.replace("**/", "") for pattern in patterns if "**/" in pattern]
        for path in paths:
            if any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
                taken[path] = entry.get("config_name")
    return taken


def _patterns(data_files: Any) -> list[str]:
    """The path patterns of a config's ``data_files`` (a pattern, a list of them, or ``{split, path}`` entries)."""
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, dict):
        return _patterns(data_files.get("path"))
    if isinstance(data_files, list):
        return [pattern for item in data_files for pattern in _patterns(item)]
    return []


def _read_remote(api, repo_id: str, filename: str, revision: str) -> bytes | None:
    """A file of the repo at `revision` (a commit sha), or `None` when the repo has no such file.

    Not `hf_hub_download`: when the Hub fails to answer, it falls back to a cached copy, which
    may be stale, and a stale README would drop configs pushed since. `http_backoff` retries
    429, 500, 502, 503 or 504 (`RETRY_STATUS`); any other failure fails the push.
    """
    from huggingface_hub import hf_hub_url
    from huggingface_hub.errors import RemoteEntryNotFoundError
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

    url = hf_hub_url(repo_id, filename, repo_type="dataset", revision=revision, endpoint=api.endpoint)
    response = http_backoff("GET", url, headers=build_hf_headers(token=api.token))
    try:
        hf_raise_for_status(response)
    except RemoteEntryNotFoundError:
        return None
    return response.content


def _front_matter(card: str) -> dict:
    """The YAML metadata block at the top of a card (empty when there is none), read as the Hub
    reads it (`huggingface_hub.RepoCard`: leading blank lines and CRLF line ends allowed)."""
    from huggingface_hub import RepoCard

    try:
        return RepoCard(card, ignore_metadata_errors=True).data.to_dict()
    except yaml.YAMLError as err:
        raise UsageError(f"the repo's README.md has invalid YAML metadata, so its configs cannot be kept: fix the "
                         f"README on the Hub, then push again ({' '.join(str(err).split())})") from err


def _retrying(call, *args, **kwargs):
    """`call(*args, **kwargs)`, retried on HTTP 429, 500, 502, 503 or 504 (`RETRY_STATUS`) with exponential backoff.

    huggingface_hub retries preupload and LFS transfers itself, but not `create_repo`,
    `create_branch`, `repo_info` or the final commit POST (`_send_commit(retry_on_error=False)`).
    Re-sending a commit is safe here: it names its ``parent_commit``, so when the first one did
    land (a lost answer) the Hub refuses the copy with HTTP 412 and `push_dataset` starts over
    from the new head.
    """
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return call(*args, **kwargs)
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else None
            if status not in RETRY_STATUS or attempt == MAX_ATTEMPTS:
                raise
            wait = _retry_after(err.response) or BACKOFF_S * 2 ** (attempt - 1)
            problem = f"HTTP {status}"
        except _connection_errors() as err:
            if attempt == MAX_ATTEMPTS:
                raise
            wait, problem = BACKOFF_S * 2 ** (attempt - 1), f"{type(err).__name__}: {err}"
        logger.warning("hf_ipt push: %s got %s; retry %d/%d in %.1f s", call.__name__, problem, attempt,
                       MAX_ATTEMPTS - 1, wait)
        time.sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Failures with no HTTP status: a dropped connection or timeout of the HTTP client that
    huggingface_hub uses (httpx2, httpx or requests, by version), and a proxy's HTML error page
    where the client expected JSON (`huggingface_hub` parses some answers before their status)."""
    import importlib

    errors: list[type[BaseException]] = [json.JSONDecodeError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return min(float(value), 60.0) if value.isdigit() else None


def _refuse_secret(token: str | None, **texts: str) -> None:
    """Fail before uploading anything that contains the token."""
    leaked = [name for name, text in texts.items() if token and token in text]
    if leaked:
        raise ValueError(f"refusing to push: the Hub token appears in the {' and '.join(leaked)} to upload")
