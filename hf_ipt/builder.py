"""The `datasets` builder ``hf_ipt/augmented``: raw corpus in, augmented examples out.

    >>> import hf_ipt, datasets
    >>> ds = datasets.load_dataset("hf_ipt/augmented", corpus="data/*.jsonl", synthesizer="rules",
    ...                            streaming=True, split="train")

datasets >= 4 has no loading scripts and no plugin registry. `register()` (run by
``import hf_ipt``) wraps `datasets.load_dataset_builder` so that this one name builds
`AugmentedBuilder` directly; every other name goes to datasets untouched. Building the
builder directly avoids both traps of the packaged-module table: datasets would scan the
working directory for data files when `data_files` is absent, and the ``/`` in the name
would end up in the Arrow cache path. Prefer no patching? Use `load_augmented(...)` or
`AugmentedBuilder(...)` yourself.

``load_dataset(..., revision=...)`` pins the *synthesizer model* (`AugmentedConfig.revision`);
a dataset corpus is pinned with ``corpus_revision=...``. Both are part of the cache key.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import itertools
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import datasets

from . import __version__
from .augment import Augmenter, SynthesisConfig, features, keywords_pin, synthesizer_pin
from .backends.base import default_of
from .chaining import REJECT_MARKERS_ONLY, ChainStats
from .cli import HubUnreachableError, UsageError
from .corpus import (
    CorpusConfig,
    cached_url_file,
    check_text_column,
    is_local_corpus,
    iter_shard,
    local_files,
    make_shards,
)

logger = logging.getLogger(__name__)

DATASET_NAME = "hf_ipt/augmented"
_CACHE_NAME = "hf_ipt___augmented"  # the cache folder name: no "/" in Arrow paths
_listing_token: contextvars.ContextVar = contextvars.ContextVar("hf_ipt_listing_token", default=None)
_keyed_files: contextvars.ContextVar = contextvars.ContextVar("hf_ipt_keyed_files", default=None)


@dataclass
class AugmentedConfig(datasets.BuilderConfig, CorpusConfig, SynthesisConfig):
    """`CorpusConfig` + `SynthesisConfig`. Every field that changes the output is in the cache key."""

    def __post_init__(self) -> None:
        datasets.BuilderConfig.__post_init__(self)
        SynthesisConfig.__post_init__(self)
        CorpusConfig.__post_init__(self)

    def create_config_id(self, config_kwargs: dict, custom_features=None) -> str:
        """The user's settings plus hf_ipt's version and the corpus files: size and mtime of local
        files; for a dataset or an ``hf://`` URL, its files as URLs that name the commit (as
        `datasets` keys its own Hub datasets), so a new commit of an unpinned corpus is not served
        from cache. A corpus pinned to a commit sha is key enough: nothing is listed then. A
        `domain_keywords` file is keyed by its keywords too, so an edited file is built anew, a
        local synthesizer folder by its files, so a model trained again into it is built anew, and a
        Hub synthesizer by the commit it loads from, so a model pushed again to its repo is too."""
        extra: dict[str, Any] = {"hf_ipt_version": __version__, **keywords_pin(self.domain_keywords)}
        extra.update(synthesizer_pin(self.synthesizer, self.revision))
        config_kwargs = _keyed_kwargs(self, config_kwargs)
        if self.corpus and is_local_corpus(self.corpus):
            files = local_files(self.corpus)
            _keyed_files.set(files)
            extra["corpus_files"] = [(f, *_stamp(f)) for f in files]
        elif self.corpus and not self.pinned:
            try:
                files = self.listed_files(token=_listing_token.get())
            except Exception as error:  # the data read reports it again, or works later
                if isinstance(error, UsageError) and os.path.isdir(self.corpus):
                    raise  # a local folder with no data files or no such split: nothing to retry later
                if isinstance(error, HubUnreachableError):
                    raise  # offline or no network: the read fails the same way, in a longer message
                logger.warning(
                    "hf_ipt: could not list the files of corpus %r for the cache key (%s); the key holds the "
                    "settings only, so a cached build of an earlier commit may be reused. Pin the corpus to a "
                    "commit sha (`corpus_revision`, or @<sha> in an hf:// URL) to make the key exact without a listing.", self.corpus, error,
                )
            else:
                _keyed_files.set(files)
                # URLs as they are (no os.path calls: streaming patches them in this module to fetch);
                # a local folder in Hub layout gives paths, keyed by size and mtime like local files.
                extra["corpus_files"] = [
                    f if "://" in f else (f, *_stamp(f)) for f in files
                ]
        return super().create_config_id({**config_kwargs, **extra}, custom_features)


def _keyed_kwargs(config: AugmentedConfig, config_kwargs: dict) -> dict[str, Any]:
    """`config_kwargs` with its hf_ipt settings keyed by value, not by how they were typed: as
    `config` normalized them (``engine_kwargs`` JSON, ``{}``: unset), and one given at its default
    left out, so ``synthesizer="rules"`` reuses the cache of the same call without it."""
    ours = {f.name for cls in (CorpusConfig, SynthesisConfig) for f in dataclasses.fields(cls)}
    keyed = {name: value for name, value in config_kwargs.items() if name not in ours}
    for name in filter(ours.__contains__, config_kwargs):
        if default_of(config, name) not in (config_kwargs[name], value := getattr(config, name)):
            keyed[name] = value
    return keyed


def _stamp(path: str) -> tuple[int, float]:
    """Size and mtime of a local file: what the cache key holds of it (an edit changes either; as `datasets`
    keys local data files, so that a copy staged with `cp -p` or `rsync -a` reuses the cache)."""
    return os.path.getsize(path), os.path.getmtime(path)


@dataclass
class DocumentCounts:
    """Documents read and, of those, rejected by reason (`hf_ipt.corpus.check_text`, a line that is
    not JSON, or, in templified output, ``markers only``: a text with no row) in the shards a builder
    generated in this process."""

    read: int = 0
    rejects: Counter = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())


class AugmentedBuilder(datasets.GeneratorBasedBuilder):
    """Streams a raw corpus through a synthesizer and templify (see `AugmentedConfig`)."""

    BUILDER_CONFIG_CLASS = AugmentedConfig
    VERSION = datasets.Version(".".join(__version__.split(".")[:3]))  # x.y.z; the cache key has the full version

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("dataset_name", _CACHE_NAME)
        super().__init__(*args, **kwargs)
        # What the examples generated so far, in this process, were made of: a streaming dataset
        # iterated here (no DataLoader workers) counts into it as it goes (`hf-ipt augment`).
        self.documents = DocumentCounts()
        self._ahead: tuple[dict, list, bool] | None = None  # see `more_rows`
        self._shards: list[dict] = []

    # The corpus files the cache key was made of; the data is read from these same files, so a
    # commit landing between the key and the read cannot be stored under the older key.
    _corpus_files: list[str] | None = None

    def _create_builder_config(self, *args, **kwargs):
        # a misspelled setting was a bare TypeError of the config's __init__; the CLI and YAML name the closest
        known = [f.name for f in dataclasses.fields(AugmentedConfig) if f.init]
        if unknown := [key for key in kwargs if key not in known and key not in ("config_name", "custom_features",
                                                                                 "config_id")]:
            from .cli import did_you_mean

            raise ValueError("; ".join(f"unknown setting {key!r}{did_you_mean(key, known)}" for key in unknown) +
                             " (hf_ipt/augmented's settings: AugmentedConfig, docs/builder.md)")
        # `datasets` gives the config no token: lend it the builder's, for the cache key's listing.
        lent, keyed = _listing_token.set(self.token), _keyed_files.set(None)
        try:
            config_and_id = super()._create_builder_config(*args, **kwargs)
            self._corpus_files = _keyed_files.get()
            return config_and_id
        finally:
            _listing_token.reset(lent)
            _keyed_files.reset(keyed)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Instruction-augmented corpus (Instruction Pre-Training, arXiv 2406.14491).",
            features=features(self.config.output),
            citation=CITATION,
        )

    def _split_generators(self, dl_manager):
        cfg = self.config
        if self._corpus_files is None:  # pinned, or the listing failed: resolved now
            files = cfg.files(self.token)
        else:
            files = self._corpus_files
            check_text_column(files, cfg.text_column, self.token)
        if not dl_manager.is_streaming:
            # offline, a Hub file of a cached commit is the cache's copy (what the download gives online):
            # `datasets` would ask the Hub to resolve its URL first
            files = [cached_url_file(f) for f in files]
        files = dl_manager.download(files)  # streaming: urls stay urls, read lazily
        shards = make_shards(list(files), cfg.num_shards)
        self._shards = shards  # in order: `more_rows` reads those after the one a stream stopped in
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"shards": shards})]

    def _as_dataset(self, split=datasets.Split.TRAIN, in_memory: bool = False) -> datasets.Dataset:
        # `datasets` reads no file of a split with no rows ('Instruction "train" corresponds to no
        # data!'): give the empty dataset that streaming gives, and say why it is empty.
        name = str(split).split("[")[0]
        if name in self.info.splits and not self.info.splits[name].num_examples:
            logger.warning("hf_ipt: corpus %r gave no rows: it holds no documents, or every one was rejected (see "
                           "the warnings of its shards); check the corpus and `text_column`", self.config.corpus)
            empty = {column: [] for column in self.info.features}
            return datasets.Dataset.from_dict(empty, features=self.info.features, info=self.info, split=name)
        return super()._as_dataset(split=split, in_memory=in_memory)

    @functools.cached_property
    def augmenter(self) -> Augmenter:
        """One per process: the engine loads once, not once per shard."""
        return Augmenter(self.config, corpus_name=self.config.corpus_name)

    def _generate_examples(self, shards: list[dict]):
        from datasets.builder import Key

        cfg, augment = self.config, self.augmenter
        for index, shard in enumerate(shards):
            rejects: Counter = Counter()
            augment.stats = ChainStats()  # reported per shard
            docs = _accepted(iter_shard(shard, cfg.text_column, token=self.token), rejects, self.documents)
            rows = 0
            window = list(itertools.islice(docs, cfg.window_size))
            while window:
                markers_only = augment.stats.markers_only
                out = augment({"text": [d.text for d in window], "id": [d.id for d in window]})
                if cfg.output == "templified" and (dropped := augment.stats.markers_only - markers_only):
                    self.documents.rejects[REJECT_MARKERS_ONLY] += dropped  # no row: rejected, as jobs count it
                ahead = list(itertools.islice(docs, 1))  # read (not synthesized) for `more_rows`
                made = list(_rows(out))
                for k, row in enumerate(made):
                    self._ahead = (shard, ahead, k < len(made) - 1)
                    # datasets 5's key: the shard (of this call's `shards`) and the row in it, which it records
                    # as the split's original shard lengths
                    yield Key(index, rows), row
                    rows += 1
                window = ahead + list(itertools.islice(docs, cfg.window_size - 1)) if ahead else []
            _report(shard, rejects, augment.stats)

    def more_rows(self) -> bool:
        """Whether the stream iterated in this process, stopped after the row it gave last, would give more:
        rows of its window, a window read, or a usable document in a later shard (read here, not
        synthesized). `hf-ipt augment --max_docs` asks it to tell a sample from the whole corpus; to ask the
        stream for one more row synthesized a whole window (a GPU's minutes) for one bit."""
        if self._ahead is None:
            return False
        shard, ahead, rows_left = self._ahead
        if rows_left:
            return True
        if shard not in self._shards:  # not this builder's split: cannot tell, so not the whole corpus
            return True
        # `datasets` generates one shard a call, in the order `_split_generators` made them; a usable document
        # may give no row (`Augmenter.gives_row`: markers alone), so those read ahead are looked at too
        def usable(doc) -> bool:
            return doc.reject is None and self.augmenter.gives_row(doc.text)

        if ahead and usable(ahead[0]):
            return True
        read = functools.partial(iter_shard, text_column=self.config.text_column, token=self.token)
        # this shard's documents from the one read ahead on (read again: the stream's own reader stays as it is)
        here = itertools.dropwhile(lambda doc: doc.id != ahead[0].id, read(shard)) if ahead else iter(())
        after = self._shards[self._shards.index(shard) + 1:]
        return any(usable(doc) for doc in itertools.chain(here, *(read(other) for other in after)))


def _accepted(docs, rejects: Counter, counts: DocumentCounts):
    """Documents that can be used; the others are counted by reason in `rejects` (this shard's)
    and in `counts` (the builder's), as each is read."""
    for doc in docs:
        counts.read += 1
        if doc.reject is None:
            yield doc
        else:
            rejects[doc.reject] += 1
            counts.rejects[doc.reject] += 1


def _rows(columns: dict[str, list]):
    names = list(columns)
    for values in zip(*columns.values()):
        yield dict(zip(names, values))


def _report(shard: dict, rejects: Counter, stats: ChainStats) -> None:
    """One warning per shard where anything was skipped, truncated or failed."""
    if not (rejects or stats.truncated or stats.errors or stats.markers_only):
        return
    logger.warning(
        "hf_ipt: shard of %s (part %d/%d): skipped %d documents %s; %d texts truncated to fit the prompt "
        "budget, %d engine errors, %d texts of markers or special tokens only (no pairs)",
        _files_named(shard["files"]), shard["part"] + 1, shard["parts"], sum(rejects.values()), dict(rejects),
        stats.truncated, stats.errors, stats.markers_only,
    )


def _files_named(files: list[str], most: int = 3) -> str:
    """The files of a shard for a message: all of them up to `most`, then how many more (a shard of
    `hf-ipt augment` holds every file, and its first alone hid where the skipped documents were)."""
    named = ", ".join(files[:most])
    return named if len(files) <= most else f"{named} and {len(files) - most} more file(s)"


def load_augmented(corpus: str, *, split: str = "train", streaming: bool = False,
                   cache_dir: str | None = None, **config):
    """`load_dataset("hf_ipt/augmented", ...)` without the registration patch.

    Args:
        corpus (`str`): local file/glob or dataset id/folder.
        split (`str`, *optional*, defaults to ``"train"``): the only split.
        streaming (`bool`, *optional*, defaults to `False`): return an `IterableDataset`.
        cache_dir (`str`, *optional*): datasets cache folder.
        **config: any `AugmentedConfig` field (`synthesizer`, `revision` of the synthesizer,
            `corpus_revision`, `rounds`, `output`, ...).
    """
    builder = AugmentedBuilder(cache_dir=cache_dir, corpus=corpus, **config)
    if streaming:
        return builder.as_streaming_dataset(split=split)
    builder.download_and_prepare()
    return builder.as_dataset(split=split)


def register() -> None:
    """Make ``datasets.load_dataset("hf_ipt/augmented", ...)`` build `AugmentedBuilder`."""
    from datasets import load

    original = load.load_dataset_builder
    if getattr(original, "_hf_ipt", False):
        return

    @functools.wraps(original)
    def load_dataset_builder(path, *args, **kwargs):
        if path != DATASET_NAME:
            return original(path, *args, **kwargs)
        return _our_builder(*args, **kwargs)

    load_dataset_builder._hf_ipt = True
    load.load_dataset_builder = load_dataset_builder
    datasets.load_dataset_builder = load_dataset_builder


def _our_builder(name=None, data_dir=None, data_files=None, cache_dir=None, features=None,
                 download_config=None, download_mode=None, revision=None, token=None,
                 storage_options=None, **config_kwargs) -> AugmentedBuilder:
    """`AugmentedBuilder` from `load_dataset_builder`'s arguments.

    `revision` is `load_dataset`'s own parameter; here it names the synthesizer model revision
    and goes into the config (hence the cache key). `None` is not forwarded, so a call without
    it keys the cache exactly like `load_augmented(...)` does.
    """
    if data_files is not None or data_dir is not None:
        raise ValueError(
            f"{DATASET_NAME} reads its input from `corpus=`, not data_files/data_dir: "
            f"load_dataset('{DATASET_NAME}', corpus='path/*.jsonl')"
        )
    if features is not None:
        raise ValueError(f"{DATASET_NAME} sets its own features; choose `output='pairs'` or 'templified'")
    if revision is not None:
        config_kwargs["revision"] = str(revision)  # datasets also accepts a `Version`
    return AugmentedBuilder(cache_dir=cache_dir, config_name=name, token=token,
                            storage_options=storage_options, **config_kwargs)


CITATION = """@inproceedings{cheng2024instruction,
  title={Instruction Pre-Training: Language Models are Supervised Multitask Learners},
  author={Cheng, Daixuan and Gu, Yuxian and Huang, Shaohan and Bi, Junyu and Huang, Minlie and Wei, Furu},
  booktitle={Proceedings of the 2024 Conference on Empirical Methods in Natural Language Processing},
  year={2024}
}"""
