"""The batched map function that turns raw texts into augmented rows.

`Augmenter(config)` is a callable usable directly as ``Dataset.map(fn, batched=True)`` or
``IterableDataset.map(fn, batched=True, remove_columns=...)``: one batch is one window of
texts, chained over `config.rounds` rounds (model synthesizers) or mined one by one
(``synthesizer="rules"``). The builder in `hf_ipt.builder` calls the same function.

Document ids (the `id`/`doc_ids` columns and the templify seed) come from the input's id
column; without one, from the global row index under ``Dataset.map(..., with_indices=True)`` (a
streaming dataset counts indices per DataLoader worker and rank: use an id column there), else
from a hash of the text. They never restart per batch, so templify formats vary over the
whole dataset.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from .backends.base import (
    BACKEND_ONLY,
    check_backend_settings,
    check_counts,
    check_dtype,
    check_engine_kwargs,
    check_gpu_memory_utilization,
    check_temperature,
    default_of,
    is_integer,
    model_location,
    refuse_ignored,
)
from .chaining import MARKERS_ONLY, ChainEntry, ChainStats, chain, chains_of, check_prompt_budget
from .corpus import check_text, corpus_location
from .protocol import Pair

logger = logging.getLogger(__name__)

RULES = "rules"
# Settings that shape one kind of synthesizer's output only (see `recorded_settings`).
# Engine tuning: recorded in a job's job.json only when set (jobs of older versions resume).
ENGINE_SETTINGS = {"gpu_memory_utilization": 0.9, "continuous_batching": False, "engine_kwargs": None,
                   "max_batch_tokens": None, "static_cache": False, "prefix_caching": False}
MODEL_SETTINGS = ("backend", "rounds", "max_model_len", "max_new_tokens", "temperature", "batch_size", "dtype",
                  "device", "tensor_parallel_size", "trust_remote_code", "revision", *ENGINE_SETTINGS)
# Engine tuning that a resumed job may change (docs/jobs.md "Resume"): batch sizes and memory, what one lowers
# after running out of memory or on a requeue onto a smaller GPU. They are pinned with the others only because
# how prompts are batched can change greedy tokens in bf16 on a GPU (an equivalent output, not a byte-identical
# one); they never change the model, the prompts or the decoding settings, which stay pinned.
TUNING_SETTINGS = ("batch_size", "max_batch_tokens", "gpu_memory_utilization", "engine_kwargs")
# The `engine_kwargs` (vLLM arguments) of that kind: scheduling, memory, CUDA graphs. Any other key (`quantization`,
# `kv_cache_dtype`, `hf_overrides`, ...) changes the model's numerics or more, and stays pinned.
TUNING_ENGINE_KWARGS = frozenset({
    "max_num_seqs", "max_num_batched_tokens", "enforce_eager", "enable_chunked_prefill", "swap_space",
    "cpu_offload_gb", "block_size", "num_gpu_blocks_override", "kv_cache_memory_bytes", "enable_prefix_caching",
    "max_seq_len_to_capture", "cuda_graph_sizes", "compilation_config", "async_scheduling",
    "disable_custom_all_reduce", "max_num_partial_prefills", "max_long_partial_prefills",
    "long_prefill_token_threshold", "disable_log_stats",
})
RULES_SETTINGS = ("domain_keywords", "num_keywords", "task_types")
# Settings a job.json holds only when set: absent at their defaults, so that jobs of older versions resume.
NEWER_SETTINGS = {**ENGINE_SETTINGS, "task_types": None}
# job.json key (and cache key part) pinning the keywords of a `domain_keywords` file, not only its path;
# absent when no file is used, and from jobs started before it existed (`jobs.prepare` resumes those).
KEYWORDS_DIGEST = "domain_keywords_sha256"
SYNTHESIZER_FILES = "synthesizer_files"  # job.json / cache key: the files of a local synthesizer folder
SYNTHESIZER_COMMIT = "synthesizer_commit"  # job.json / cache key: the Hub commit a model synthesizer loads from
_SHA = re.compile(r"[0-9a-f]{40}")
# Why a model setting is refused with the rule miner, where the reason is not plain.
RULES_IGNORE = {"revision": "it pins the synthesizer model; to pin a dataset corpus use `corpus_revision`"}


@dataclass
class SynthesisConfig:
    """How raw texts become augmented rows (shared by the builder, the map function and jobs)."""

    synthesizer: str = field(
        default=RULES,
        metadata={"help": "'rules' (model-free miner) or a synthesizer model id/path, e.g. "
                  "instruction-pretrain/instruction-synthesizer."},
    )
    backend: Literal["vllm", "transformers"] = field(
        default="vllm", metadata={"help": "Engine for model synthesizers: vllm or transformers."}
    )
    rounds: int = field(default=2, metadata={"help": "M: rounds of chained synthesis (2 general, 3 domain)."})
    max_model_len: int = field(default=4096, metadata={"help": "Prompt + generated tokens limit."})
    max_new_tokens: int = field(default=400, metadata={"help": "Generated tokens per text at most."})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy, as in the reference."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate call (transformers backend; vLLM schedules its own batches)."})
    max_batch_tokens: int | None = field(
        default=None,
        metadata={"help": "transformers: also cut batches so that rows x (longest prompt + --max_new_tokens) stays "
                  "within this token budget: short prompts share larger batches, up to --batch_size."},
    )
    static_cache: bool = field(
        default=False,
        metadata={"help": "transformers: pre-allocate each batch's KV cache (a static cache, not compiled) instead "
                  "of growing it by one token per step."},
    )
    window_size: int = field(
        default=64, metadata={"help": "Texts chained together; memory stays flat at any corpus size."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of templify and sampling."})
    output: Literal["templified", "pairs"] = field(
        default="templified",
        metadata={"help": "'templified': one pre-training text per chain; 'pairs': one row per text."},
    )
    domain_keywords: str | None = field(
        default="window",
        metadata={"help": "Rules only: 'window' ranks domain keywords over each window of texts "
                  "(streaming KeywordStats, long-word proxy for 'rare in general text'); a path to a "
                  "file with one keyword per line; 'none' disables keyword tasks."},
    )
    num_keywords: int = field(default=100, metadata={"help": "Rules only: keywords kept per window."})
    task_types: str | None = field(
        default=None,
        metadata={"help": "Rules only: the miner's task types to mine, comma-separated, among nli, commonsense, "
                  "paraphrase, word2text, summarize, completion (default: all six). Leave out the kinds of your "
                  "held-out evaluation tasks, e.g. 'nli,commonsense,paraphrase,word2text' (docs/miner.md)."},
    )
    dtype: str = field(default="auto", metadata={"help": "Model dtype: auto (bf16 on GPU, fp32 on CPU), bfloat16, "
                                                     "float16 or float32."})
    device: str | None = field(default=None, metadata={"help": "transformers device (default cuda if available)."})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM GPUs per engine."})
    gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "vLLM: share of each GPU's memory for the weights and the KV cache."}
    )
    continuous_batching: bool = field(
        default=False,
        metadata={"help": "transformers: run the prompts through continuous batching (`generate_batch`, paged "
                  "attention) instead of length-sorted padded batches of --batch_size. Slower than the padded "
                  "batches on CPU and GPU as measured with transformers 5.24 (docs/backends.md)."},
    )
    prefix_caching: bool = field(
        default=False,
        metadata={"help": "transformers with --continuous_batching: keep the paged KV cache between calls, so "
                  "round r's prompts reuse the blocks of round r-1's prompts they start with (vLLM caches "
                  "prefixes by itself)."},
    )
    engine_kwargs: str | None = field(
        default=None,
        metadata={"help": "vLLM: a JSON object of further `vllm.LLM` arguments, e.g. "
                  "'{\"enforce_eager\": true, \"max_num_seqs\": 128}' (a dict from Python or YAML also works)."},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the repo."})
    revision: str | None = field(
        default=None,
        metadata={"help": "Synthesizer model revision (branch, tag or commit); not the corpus revision. "
                  "`load_dataset('hf_ipt/augmented', ..., revision=...)` sets this."},
    )

    def __post_init__(self) -> None:
        if self.backend not in ("vllm", "transformers"):
            raise ValueError(f"`backend` must be 'vllm' or 'transformers', got {self.backend!r} (SynthesisConfig.backend)")
        if self.output not in ("templified", "pairs"):
            raise ValueError(f"`output` must be 'templified' or 'pairs', got {self.output!r} (SynthesisConfig.output)")
        check_counts(self, ("rounds", "max_model_len", "max_new_tokens", "batch_size", "window_size",
                            "tensor_parallel_size"), "SynthesisConfig")
        for name in ("num_keywords", "seed"):  # a seed of "1" or 1.5 failed at the first window, mid-stream
            if not is_integer(getattr(self, name)):
                raise TypeError(f"`{name}` must be an integer, got {getattr(self, name)!r} (SynthesisConfig.{name})")
        if self.max_new_tokens >= self.max_model_len:
            raise ValueError(
                f"`max_new_tokens` ({self.max_new_tokens}) must be < `max_model_len` ({self.max_model_len})"
            )
        check_temperature(self.temperature, "SynthesisConfig")
        self.task_types = normalized_task_types(self.task_types)  # one spelling per value: job pins, cache keys
        if keyword_file(self.domain_keywords) is not None:
            self.domain_keywords = os.path.expanduser(self.domain_keywords)  # quoted or from YAML: no shell did it
            read_keyword_file(self.domain_keywords)  # a missing, non-UTF-8 or empty file fails here, not mid-run
        if self.num_keywords < 1:
            raise ValueError(f"`num_keywords` must be >= 1, got {self.num_keywords}; to turn keyword tasks off use "
                             "domain_keywords='none' (SynthesisConfig.num_keywords)")
        if not self.synthesizer or not isinstance(self.synthesizer, str):
            raise ValueError(f"`synthesizer` must be 'rules' or a model id/path, got {self.synthesizer!r}")
        if self.synthesizer != RULES and self.synthesizer.lower() in ("rules", "rule", "miner") \
                and not os.path.exists(self.synthesizer):  # else a model named "RULES" would be looked up
            raise ValueError(f"`synthesizer` {self.synthesizer!r} is neither 'rules' nor a model path: the rule miner "
                             "is synthesizer='rules', in lower case (SynthesisConfig.synthesizer)")
        if self.synthesizer != RULES:
            self.synthesizer = model_location(self.synthesizer, "synthesizer", "SynthesisConfig")
        check_dtype(self.dtype, "SynthesisConfig")
        check_gpu_memory_utilization(self.gpu_memory_utilization, "SynthesisConfig")
        if self.synthesizer != RULES and self.window_size < self.rounds:
            raise ValueError(
                f"`window_size` ({self.window_size}) must be >= `rounds` ({self.rounds}): each window of texts is cut "
                f"into `rounds` slices, and a smaller one is synthesized in fewer rounds, without the few-shot "
                f"chains asked for (SynthesisConfig.window_size)"
            )
        # one spelling per value (a dict from Python/YAML, key order, {} = unset), so that job.json
        # pins and cache keys compare values; a malformed value fails here, before any model loads
        self.engine_kwargs = normalized_engine_kwargs(self.engine_kwargs)
        self._refuse_ignored_settings()

    def _refuse_ignored_settings(self) -> None:
        """Settings the chosen synthesizer would ignore are refused (at their defaults they pass):
        a model's with the rule miner, the miner's with a model, one backend's with the other."""
        if self.synthesizer == RULES:
            if self.domain_keywords != "window":  # a file gives its keywords as they are; 'none' gives none
                refuse_ignored(self, ("num_keywords",), reader="domain_keywords='window' (keywords ranked per window)",
                               ignorer=f"domain_keywords={self.domain_keywords!r}", owner="SynthesisConfig",
                               fix="Use domain_keywords='window' (or list just the keywords you want in a file)")
            refuse_ignored(self, MODEL_SETTINGS, reader="model synthesizers",
                           ignorer="synthesizer='rules' (the miner, no model)", owner="SynthesisConfig",
                           fix="Set `synthesizer` to a model id or path (instruction-pretrain/instruction-synthesizer)",
                           why=RULES_IGNORE)
        else:
            refuse_ignored(self, RULES_SETTINGS, reader="the rule miner (synthesizer='rules')",
                           ignorer=f"synthesizer={self.synthesizer!r}", fix="Use synthesizer='rules'",
                           owner="SynthesisConfig")
            check_backend_settings(self, "SynthesisConfig")
            if self.revision is not None and os.path.isdir(os.path.expanduser(self.synthesizer)):
                raise ValueError(
                    f"`revision` {self.revision!r} pins a Hub model, and `synthesizer` {self.synthesizer!r} is a local "
                    "folder, which has no revisions (it would be read as it is): leave `revision` out "
                    "(SynthesisConfig.revision)"
                )

    def engine_arguments(self) -> dict[str, Any]:
        """`engine_kwargs` parsed: the extra `vllm.LLM` arguments ({} when unset)."""
        return parse_engine_kwargs(self.engine_kwargs)

    def miner_config(self):
        """The rule miner's settings these give: their `seed` and `task_types` (`miner_task_types`)."""
        from .miner import MinerConfig

        return MinerConfig(seed=self.seed, task_types=miner_task_types(self.task_types))

    def backend_config(self):
        from .backends import BackendConfig

        keep = {f.name for f in fields(BackendConfig)} - {"engine_kwargs"}
        values = {k: v for k, v in asdict(self).items() if k in keep}
        return BackendConfig(model_name_or_path=self.synthesizer, engine_kwargs=self.engine_arguments(), **values)


def read_keyword_file(path: str) -> list[str]:
    """The keywords of a `domain_keywords` file, one per line (a UTF-8 byte order mark is skipped);
    a missing, non-UTF-8 or empty file is a `ValueError` naming it and the fix."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            keywords = [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError as error:
        raise ValueError(f"`domain_keywords` file {path!r} is not UTF-8 ({error}): save it as UTF-8 "
                         "(SynthesisConfig.domain_keywords)") from None
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ValueError(f"`domain_keywords` must be 'window', 'none' or a keyword file, got {path!r} "
                         "(SynthesisConfig.domain_keywords)") from None
    if not keywords:
        raise ValueError(f"`domain_keywords` file {path!r} holds no keyword: write one per line, or use "
                         "domain_keywords='none' to turn keyword tasks off (SynthesisConfig.domain_keywords)")
    from .miner.miner import keyword_set

    try:  # at config time, not when the miner is built in a worker
        keyword_set(keywords)
    except ValueError as error:
        raise ValueError(f"`domain_keywords` file {path!r}: {error} (SynthesisConfig.domain_keywords)") from None
    return keywords


def normalized_task_types(value: str | Sequence[str] | None) -> str | None:
    """`SynthesisConfig.task_types` in one spelling: the task types named (a comma-separated string, or a list
    from Python or YAML) in the miner's order, comma-joined; `None` for all six (the default), however given.
    An unknown or missing name is a `ValueError` naming the choices."""
    from .miner.config import TASK_TYPES

    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f"`task_types` must be task type names, got {value!r} (SynthesisConfig.task_types)")
    names = [name.strip() for name in names if name.strip()]
    if not names or (unknown := [n for n in names if n not in TASK_TYPES]):
        from .cli import did_you_mean

        what = "; ".join(f"unknown task type {n!r}{did_you_mean(n, list(TASK_TYPES))}" for n in unknown) \
            if names else f"no task type in {value!r}"
        raise ValueError(f"`task_types`: {what}; give a comma-separated list among {', '.join(TASK_TYPES)}, or leave "
                         "it out to mine all six (SynthesisConfig.task_types)")
    kept = [name for name in TASK_TYPES if name in names]
    return None if len(kept) == len(TASK_TYPES) else ",".join(kept)


def miner_task_types(task_types: str | None) -> list[str]:
    """The `MinerConfig.task_types` that `SynthesisConfig.task_types` (normalized) selects."""
    from .miner.config import TASK_TYPES

    return list(TASK_TYPES) if task_types is None else task_types.split(",")


def keyword_file(domain_keywords: str | None) -> str | None:
    """The keyword file that `domain_keywords` names; `None` for ``'window'``, ``'none'`` and `None`."""
    return None if domain_keywords in (None, "none", "window") else domain_keywords


def keywords_digest(keywords: Sequence[str]) -> str:
    """SHA-256 (hex) of a keyword list as `read_keyword_file` gives it: blank lines, surrounding
    spaces and a byte order mark do not count, order does (it can change what the miner picks)."""
    return hashlib.sha256(json.dumps(list(keywords), ensure_ascii=False).encode("utf-8")).hexdigest()


def keywords_pin(domain_keywords: str | None) -> dict[str, str]:
    """``{KEYWORDS_DIGEST: digest}`` of the keyword file `domain_keywords` names (read now), for a
    job.json, a manifest or a cache key; empty when it names none."""
    path = keyword_file(domain_keywords)
    return {} if path is None else {KEYWORDS_DIGEST: keywords_digest(read_keyword_file(path))}


def synthesizer_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a Hub synthesizer id loads from, for a cache key or a job's pin: `None` when
    `revision` is a commit sha already; else the Hub's answer for it (the default branch when
    `None`), as the backends resolve it, with the same saved login; offline (``HF_HUB_OFFLINE``) or when the Hub cannot be
    reached, the commit the local Hugging Face cache holds for it, which the model then loads from.
    `None` when neither knows it: the model load downloads it or fails, naming the id."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    if revision and _SHA.fullmatch(revision):
        return None  # the revision, in the settings, names the commit already
    if not constants.HF_HUB_OFFLINE:
        try:
            return HfApi().model_info(repo_id, revision=revision).sha
        except Exception as error:  # noqa: BLE001 - any failure: the model load reports it again, or loads from the cache
            logger.warning("hf_ipt: could not look up the commit of synthesizer %r on the Hub (%s); using the commit "
                           "the local cache holds, if any. Pass `revision=<commit sha>` to pin it without a lookup.", repo_id, error)
    try:
        cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a repo id at all (a path that does not exist, say): the model load names it
        return None
    return os.path.basename(os.path.dirname(cached)) if isinstance(cached, str) else None


def synthesizer_pin(synthesizer: str, revision: str | None) -> dict[str, Any]:
    """What pins the model a run used, for a cache key or a job.json: ``{SYNTHESIZER_COMMIT: sha}`` for a Hub
    synthesizer id (`synthesizer_commit`), though its repo moved on; ``{SYNTHESIZER_FILES: ...}`` for a local
    folder (`hf_ipt.models.folder_fingerprint`), though it was trained further in place. Empty for the rule
    miner, a `revision` that is a commit sha, or a commit not known."""
    if synthesizer == RULES:
        return {}
    if os.path.isdir(synthesizer):
        from .models import folder_fingerprint

        return {SYNTHESIZER_FILES: folder_fingerprint(synthesizer)}
    commit = synthesizer_commit(synthesizer, revision)
    return {} if commit is None else {SYNTHESIZER_COMMIT: commit}


def locations(corpus: str, synthesizer: str) -> dict[str, str]:
    """``corpus_location`` (`corpus.corpus_location`) and ``synthesizer_location`` (a local model
    folder as an absolute path, a Hub id or the rule miner as named) for an output's record: what
    `hf_ipt.publish` compares to tell a re-push of the same corpus from another one of the same name."""
    local = synthesizer != RULES and os.path.isdir(synthesizer)
    return {"corpus_location": corpus_location(corpus),
            "synthesizer_location": os.path.realpath(synthesizer) if local else synthesizer}


def parse_engine_kwargs(value: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """`SynthesisConfig.engine_kwargs` (a JSON object, a mapping or `None`) as a dict, checked."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        parsed: Any = dict(value)
    else:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"`engine_kwargs` must be a JSON object, got {value!r}: {error} "
                             "(SynthesisConfig.engine_kwargs)") from error
    if not isinstance(parsed, dict):
        raise ValueError(f"`engine_kwargs` must be a JSON object of `vllm.LLM` arguments, got "  # noqa: TRY004 - a usage error, as the others
                         f"{value!r} (SynthesisConfig.engine_kwargs)")
    check_engine_kwargs(parsed, synthesis_names=True)
    return parsed


def normalized_engine_kwargs(value: str | Mapping[str, Any] | None) -> str | None:
    """One spelling per value (sorted keys; a dict from Python/YAML; ``{}`` = `None`), so that
    job.json pins and cache keys compare values, not the way they were typed."""
    parsed = parse_engine_kwargs(value)
    return json.dumps(parsed, sort_keys=True) if parsed else None


def device_type(device: str | None) -> str | None:
    """``"cuda:3"`` -> ``"cuda"``: which GPU a rank uses is placement, not part of a run's settings."""
    return None if device is None else device.split(":", 1)[0]


def recorded_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The synthesis settings to record for a run (summaries, manifests, dataset cards).

    Only those of its kind of synthesizer: a rules run has no backend, rounds, dtype or model
    revision (its defaults would read as if a model had run), a model run no keyword settings; a rules
    run's `task_types` are named (all six when unset). `device` keeps its type. Takes
    `asdict(SynthesisConfig)` or the record of an older run.
    """
    drop = set(MODEL_SETTINGS if values.get("synthesizer") == RULES else RULES_SETTINGS)
    if values.get("synthesizer") != RULES and values.get("backend") in ("vllm", "transformers"):
        # the other backend's settings, at their defaults (others are refused): a transformers run recorded vLLM's
        drop |= set(BACKEND_ONLY["transformers" if values["backend"] == "vllm" else "vllm"])
    kept = {key: value for key, value in values.items() if key not in drop}
    if values.get("synthesizer") == RULES:  # named, not `None`: a card's "task_types: none" read as no task mined
        kept["task_types"] = ",".join(miner_task_types(values.get("task_types")))  # older records: all six
    if "device" in kept:
        kept["device"] = device_type(kept["device"])
    return kept


def engine_tuning(values: Mapping[str, Any]) -> dict[str, Any]:
    """The engine tuning (`TUNING_SETTINGS`) of synthesis settings `values` (`asdict(SynthesisConfig)`, or a
    job.json's, where one at its default may be absent), for a unit's done-marker and a job's manifest."""
    tuning = {name: values.get(name, default_of(SynthesisConfig, name)) for name in TUNING_SETTINGS}
    return {**tuning, "engine_kwargs": normalized_engine_kwargs(tuning["engine_kwargs"])}  # as typed in older jobs


def without_tuning(values: Mapping[str, Any]) -> dict[str, Any]:
    """Synthesis settings `values` less their engine tuning: what a resumed job must match. `engine_kwargs`
    keeps its keys that are no tuning (`TUNING_ENGINE_KWARGS`), absent when none is left."""
    kept = {k: v for k, v in values.items() if k not in TUNING_SETTINGS}
    pinned = {k: v for k, v in parse_engine_kwargs(values.get("engine_kwargs")).items() if k not in TUNING_ENGINE_KWARGS}
    if pinned:
        kept["engine_kwargs"] = normalized_engine_kwargs(pinned)
    return kept


def features(output: str):
    """The `datasets.Features` of rows in each output mode."""
    import datasets

    pair = {"question": datasets.Value("string"), "answer": datasets.Value("string"), "task": datasets.Value("string")}
    if output == "pairs":
        return datasets.Features({
            "id": datasets.Value("string"), "corpus": datasets.Value("string"),
            "context": datasets.Value("string"), "pairs": datasets.List(pair),
            "round": datasets.Value("int32"), "shots": datasets.List(datasets.Value("string")),
            "truncated": datasets.Value("bool"), "error": datasets.Value("string"),
        })
    return datasets.Features({
        "id": datasets.Value("string"), "corpus": datasets.Value("string"),
        "text": datasets.Value("string"), "doc_ids": datasets.List(datasets.Value("string")),
        "num_pairs": datasets.Value("int32"),
    })


class Augmenter:
    """Batched map function: ``{"text": [...], "id": [...]}`` -> augmented rows.

    Args:
        config (`SynthesisConfig`): what to synthesize with and how to lay out the output.
        corpus_name (`str`, *optional*, defaults to ``""``): value of the `corpus` column.
        text_column (`str`, *optional*, defaults to ``"text"``): input column with raw text.
        id_column (`str`, *optional*, defaults to ``"id"``): input column with document ids. When
            absent, ids are the global row indices under ``map(..., with_indices=True)``, else
            a hash of each text (see `document_ids`).
    """

    def __init__(self, config: SynthesisConfig | None = None, corpus_name: str = "",
                 text_column: str = "text", id_column: str = "id", **overrides: Any) -> None:
        if config is not None and not isinstance(config, SynthesisConfig):
            raise TypeError(f"Augmenter takes a SynthesisConfig, got {type(config).__name__}: pass the settings as "
                            "keywords, Augmenter(output='pairs', ...), or Augmenter(SynthesisConfig(...))")
        # settings given beside a config change it (they were dropped without a word)
        self.config = SynthesisConfig(**overrides) if config is None else replace(config, **overrides) if overrides \
            else config
        self.corpus_name, self.text_column, self.id_column = corpus_name, text_column, id_column
        self.stats = ChainStats()
        self._engine = None
        # Read once, here: the miner uses these, and as part of the pickled state they enter
        # `Dataset.map`'s fingerprint, so an edited keyword file is not served from the map's cache.
        path = keyword_file(self.config.domain_keywords)
        self._keywords = [] if path is None else read_keyword_file(path)
        self.keywords_digest = None if path is None else keywords_digest(self._keywords)  # what this run mines with

    def __getstate__(self) -> dict:
        # never pickle a loaded model (workers, fingerprinting), nor the counts of the batches done so far: they
        # entered `Dataset.map`'s fingerprint, so the same map run again missed its cache and synthesized anew
        return {**self.__dict__, "_engine": None, "stats": ChainStats()}

    @property
    def engine(self):
        """The miner or the model backend, created on first use in each process."""
        if self._engine is None:
            if self.config.synthesizer == RULES:
                from .miner import RuleMiner

                self._engine = RuleMiner(self.config.miner_config(), keywords=self._keywords)
            else:
                from .backends import load_backend

                self._engine = load_backend(self.config.backend_config())
        return self._engine

    def load_engine(self) -> None:
        """Create the engine now rather than at the first window: a command loads the model (minutes for
        vLLM) before it reads any document and starts its progress bar, whose rate and ETA then count
        synthesis alone, and a mistake in the engine settings stops it before any work (a prompt budget
        too small for any text, too: `chaining.check_prompt_budget`)."""
        engine = self.engine
        if self.config.synthesizer != RULES:
            check_prompt_budget(engine.tokenizer, self.config.max_model_len - self.config.max_new_tokens)

    def close(self) -> None:
        """Release the engine: a model backend's `close()` frees its (GPU) memory, where dropping the reference
        would wait for the garbage collector, and vLLM's engine core process for the interpreter's exit. The next
        use loads it again."""
        engine, self._engine = self._engine, None
        if (close := getattr(engine, "close", None)) is not None:  # the rule miner holds no memory to release
            close()

    def gives_row(self, text: str) -> bool:
        """Whether a usable text (`check_text`) makes an output row: every one does, but, in templified output, a
        text of markers alone (`MARKERS_ONLY`: blank once the protocol's markers and, with a model synthesizer,
        its tokenizer's special tokens are), which `_text_rows` leaves out."""
        if self.config.output == "pairs":
            return True
        from .protocol import blank_markers, special_tokens

        special = () if self.config.synthesizer == RULES else special_tokens(self.engine.tokenizer)
        return bool(blank_markers(text, special).strip())

    def synthesize(self, texts: Sequence[str]) -> list[ChainEntry]:
        """Entries with pairs for one window of texts (rules: each text alone, no chaining)."""
        if self.config.synthesizer == RULES:
            from .protocol import blank_markers

            mined = self._miner_for(texts).mine_batch(list(texts))
            entries = [
                ChainEntry(i, 0, i, text, text, pairs=[Pair(p.question, p.answer) for p in found],
                           tasks=[p.task for p in found],
                           error=None if blank_markers(text).strip() else MARKERS_ONLY)  # as a model run has it
                for i, (text, found) in enumerate(zip(texts, mined))
            ]
            self.stats.markers_only += sum(e.error == MARKERS_ONLY for e in entries)
            return entries
        engine = self.engine
        budget = self.config.max_model_len - self.config.max_new_tokens
        return chain(texts, engine.generate, engine.tokenizer, rounds=self.config.rounds,
                     prompt_budget=budget, stats=self.stats)

    def _miner_for(self, texts: Sequence[str]):
        """The miner, with keywords ranked over this window when `domain_keywords='window'`.

        Per window (not a running count) so that output depends only on the window's texts,
        never on which worker or rank processed which shard first.
        """
        if self.config.domain_keywords != "window":
            return self.engine
        from .miner import KeywordStats, RuleMiner

        stats = KeywordStats()
        for text in texts:
            stats.update(text)
        return RuleMiner(self.engine.config, keywords=stats.top(self.config.num_keywords))

    def __call__(self, batch: dict[str, list], indices: Sequence[int] | None = None) -> dict[str, list]:
        """Augment one batch; `indices` are passed by ``map(..., with_indices=True)``.

        A text the builder and jobs would reject (`corpus.check_text`: not a string, e.g. a null
        row of Parquet; empty or whitespace only; a NUL byte; a lone surrogate) reaches no engine
        and gets no pairs. With ``output="pairs"`` it keeps its row (empty `pairs`, the reason in
        `error`), so rows stay one per text; templified, it has no row. Ids are the `id_column`'s
        values as strings; a row without one (no such column, a null) gets `document_ids`'.
        """
        if self.text_column not in batch:
            raise KeyError(f"the batch has no column {self.text_column!r} (its columns: {sorted(batch)}): name the "
                           "column of raw text with Augmenter(text_column=...)")
        texts = batch[self.text_column]
        if indices is not None and _in_a_loader_worker():
            _warn_worker_indices()
        if not isinstance(texts, (list, tuple)):  # a str would be read as one document per character
            raise TypeError(f"Augmenter takes a batch (a dict of lists), got {self.text_column!r} = "
                            f"{type(texts).__name__}: map it with `Dataset.map(augmenter, batched=True, ...)`")
        ids = document_ids(texts, indices)
        given = batch.get(self.id_column)
        if given:  # the declared `id` is a string; a null id keeps the fallback
            ids = [fallback if doc_id is None else str(doc_id) for doc_id, fallback in zip(given, ids)]
        docs = [check_text(doc_id, text, self.text_column) for doc_id, text in zip(ids, texts)]
        usable = [d for d in docs if d.reject is None]
        rows = self._rows(self.synthesize([d.text for d in usable]) if usable else [], [d.id for d in usable])
        if self.config.output == "pairs":  # rows follow the input order: a skipped text keeps its place
            made = iter(rows)
            rows = [next(made) if d.reject is None else self._skipped_row(d.id, d.text, d.reject) for d in docs]
        return self._columns(rows)

    def render(self, entries: list[ChainEntry], ids: Sequence[str]) -> dict[str, list]:
        """Output columns for synthesized `entries` (indexed by `.id`); `ids[e.id]` is each text's id.

        Separate from synthesis so that jobs can filter pairs and deduplicate them across the
        corpus between the two steps.
        """
        return self._columns(self._rows(entries, ids))

    def _rows(self, entries: list[ChainEntry], ids: Sequence[str]) -> list[dict]:
        return self._pair_rows(entries, ids) if self.config.output == "pairs" else self._text_rows(entries, ids)

    def _columns(self, rows: list[dict]) -> dict[str, list]:
        return {name: [row[name] for row in rows] for name in features(self.config.output)}

    def _skipped_row(self, doc_id: str, text: str, reason: str) -> dict:
        return {"id": doc_id, "corpus": self.corpus_name, "context": text, "pairs": [], "round": 0, "shots": [],
                "truncated": False, "error": reason}

    def _pair_rows(self, entries: list[ChainEntry], ids: Sequence[str]) -> list[dict]:
        return [
            {
                "id": ids[e.id], "corpus": self.corpus_name, "context": e.text,
                "pairs": [{"question": q, "answer": a, "task": t} for (q, a), t in _with_tasks(e)],
                "round": e.round, "shots": [ids[s] for s in e.shots],
                "truncated": e.truncated, "error": e.error or "",
            }
            for e in entries  # entry ids follow the window's input order (round 0 first)
        ]

    def _text_rows(self, entries: list[ChainEntry], ids: Sequence[str]) -> list[dict]:
        """One row per chain text, then one per entry without pairs (its raw text alone), but for a text of
        markers alone (`MARKERS_ONLY`), as jobs reject it."""
        from .templify import templify_chain

        rows = []
        for links in chains_of(entries):
            if links[-1].error == MARKERS_ONLY:  # nothing to pre-train on: `<s></s>` would become BOS/EOS ids
                continue
            for rendered in templify_chain(links, seed=f"{self.config.seed}:{ids[links[-1].id]}"):
                members = [ids[links[i].id] for i in rendered.members]
                rows.append({"id": members[-1], "corpus": self.corpus_name, "text": rendered.text,
                             "doc_ids": members, "num_pairs": rendered.num_pairs})
        return rows


def _in_a_loader_worker() -> bool:
    """Whether this runs in a `torch.utils.data.DataLoader` worker (torch is not imported for the question)."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.utils.data.get_worker_info() is not None


@functools.cache
def _warn_worker_indices() -> None:
    logger.warning("hf_ipt: `with_indices=True` in a DataLoader worker: a streaming dataset counts its indices per "
                   "worker (and per rank), so ids repeat across workers and the output changes with num_workers. "
                   "Give the corpus an `id` column, or leave `with_indices` out (ids are then hashes of the texts)")


def document_ids(texts: Sequence[str], indices: Sequence[int] | None = None) -> list[str]:
    """Ids for texts that came without any: global row `indices`, else a hash of each text.

    Never positions within the batch: those restart at ``"0"`` in every batch of
    ``Dataset.map(batched=True)``, repeating templify seeds (and so formats) batch after batch.

    Args:
        texts (`Sequence[str]`): the batch's texts.
        indices (`Sequence[int]`, *optional*): their row indices in the whole dataset.

    Returns:
        `list[str]`: ``str(index)``, or ``"sha1-"`` + 16 hex digits of the text's SHA-1 (identical
        texts then share an id).
    """
    if indices is not None:
        if len(indices) != len(texts):
            raise ValueError(f"got {len(indices)} indices for {len(texts)} texts")
        return [str(i) for i in indices]
    # a missing text (None, a null row of Parquet) hashes as "": it is skipped, its id names no format
    return ["sha1-" + hashlib.sha1((t if isinstance(t, str) else "").encode("utf-8", "surrogatepass")).hexdigest()[:16]
            for t in texts]


def _with_tasks(entry: ChainEntry) -> list[tuple[tuple[str, str], str]]:
    tasks = entry.tasks or [""] * len(entry.pairs)
    return list(zip(entry.pairs, tasks))
