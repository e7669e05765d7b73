"""Synthesis with transformers: batched greedy `generate`, CPU or GPU.

Prompts are sorted by length and cut into batches of `BackendConfig.batch_size` (and, with
`BackendConfig.max_batch_tokens`, of at most that many tokens of KV cache), so each batch pads
little; batches are left-padded (decoder-only generation appends on the right).
Generation stops at the tokenizer's EOS (the synthesizer's ``</s>``) and at any EOS the
model's generation config adds, as vLLM does. With `BackendConfig.continuous_batching` all
prompts go through `generate_batch` instead, and `BackendConfig.prefix_caching` keeps its paged
KV cache from one call (one round of chained synthesis) to the next.

With no `BackendConfig.device`, a process started by torchrun / ``accelerate launch``
(``LOCAL_RANK`` set) takes GPU ``LOCAL_RANK % device_count``, so ranks spread over the GPUs
of their node instead of all loading onto GPU 0 (see `default_device`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ..models import load_causal_lm
from .base import (
    BackendConfig,
    Generation,
    check_eos_before_load,
    check_open,
    check_prompts,
    is_fatal_device_error,
    is_memory_error,
    local_rank,
    stop_token_ids,
)

logger = logging.getLogger(__name__)


class _KeptManagerNotice(logging.Filter):
    """transformers warns at every ``generate_batch(persistent_manager=True)`` that the kept
    manager was sized for that call's requests; with `prefix_caching` that is intended, and the
    cache is sized by `TransformersBackend._continuous_batching_config`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Since you passed `persistent_manager=True`")


_KEPT_MANAGER_NOTICE = _KeptManagerNotice()


def _window_spans(model_config: Any, max_model_len: int) -> bool:
    """Whether a model whose config sets `sliding_window` (for every layer: no `layer_types`)
    attends exactly as full attention does for sequences of up to `max_model_len` tokens."""
    window = getattr(model_config, "sliding_window", None)
    return window is not None and getattr(model_config, "layer_types", None) is None and window >= max_model_len


def default_device(environ: Mapping[str, str], device_count: int) -> str:
    """The device of a backend given no `device`: ``cpu`` without GPUs, ``cuda:{LOCAL_RANK %
    device_count}`` under a launcher that sets ``LOCAL_RANK`` (torchrun, accelerate), else ``cuda``.

    Args:
        environ (`Mapping[str, str]`): the process environment (`os.environ`).
        device_count (`int`): GPUs this process sees (`torch.cuda.device_count()`).
    """
    if device_count < 1:
        return "cpu"
    rank = local_rank(environ)
    return "cuda" if rank is None else f"cuda:{rank % device_count}"


def check_context(model_config: Any, max_model_len: int) -> None:
    """Refuse a `max_model_len` beyond the model's context (``max_position_embeddings``), as vLLM
    does: past it, learned positions (GPT-2) fail with an `IndexError` per prompt and rotary ones
    (Llama) run on positions the model never saw, silently. A model without one is left alone, and
    so is one with scaled rotary positions (a `rope_type` other than ``"default"``), whose context
    is not it.

    Raises:
        `UsageError`: naming `max_model_len` and the model's context.
    """
    context = getattr(model_config, "max_position_embeddings", None)
    rope = getattr(model_config, "rope_parameters", None)
    scaled = isinstance(rope, dict) and rope.get("rope_type", "default") != "default"
    if isinstance(context, int) and max_model_len > context and not scaled:
        from ..cli import UsageError

        raise UsageError(
            f"`max_model_len` {max_model_len} exceeds the synthesizer's context (max_position_embeddings "
            f"{context}): set max_model_len to {context} or less (BackendConfig.max_model_len)"
        )


def check_device(device: str) -> None:
    """Refuse a `device` that torch cannot place the model on, before the model loads: a name torch does not
    know (``gpu``), ``meta`` (shapes only, no weights), a device type this machine lacks (a GPU where torch sees
    none, ``mps`` off a Mac, ``xpu``, ``hpu``...), an index past the visible devices of its type. Each was a
    traceback once the first window of documents was read.

    Raises:
        `UsageError`: naming the device and the fix.
    """
    import torch

    from ..cli import UsageError

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"`device` {device!r} is not a torch device: use 'cpu', 'cuda' or 'cuda:N' (a GPU's index), or "
                         "leave it unset for a GPU when there is one, else the CPU (BackendConfig.device)") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "meta":
        raise UsageError(f"`device` {device!r} holds no weights (tensor shapes only), so nothing can be generated on "
                         f"it: use {usable_devices()}, or leave `device` unset (BackendConfig.device)")
    count = device_count(parsed.type)
    if not count:
        if parsed.type != "cuda":
            why = f"needs torch's {parsed.type} backend, but this torch finds no {parsed.type} device here"
        elif torch.version.cuda is None and getattr(torch.version, "hip", None) is None:  # ROCm GPUs are "cuda" too
            why = "asks for a GPU, but this torch is built without CUDA"
        else:
            why = "asks for a GPU, but no GPU is visible"
        raise UsageError(f"`device` {device!r} {why}: use {usable_devices()}, or leave `device` unset for a GPU when "
                         "there is one, else the CPU (BackendConfig.device)")
    if parsed.index is not None and parsed.index >= count:
        renumbered = "; CUDA_VISIBLE_DEVICES renumbers them" if parsed.type == "cuda" else ""
        raise UsageError(f"`device` {device!r} names {parsed.type} device {parsed.index}, but {count} are visible "
                         f"({parsed.type}:0 to {parsed.type}:{count - 1}{renumbered}): use one of those "
                         "(BackendConfig.device)")


def device_count(device_type: str) -> int:
    """How many devices of `device_type` (``cuda``, ``mps``, ``xpu``...) torch can use here; 0 for a type whose
    backend this torch lacks or cannot reach (no driver, no device, no plugin such as ``torch_npu``). Asks the
    backend's module (``torch.cuda``, ``torch.mps``, ``torch.xpu``, or one a plugin registers), else
    `torch.accelerator` for the build's accelerator."""
    import torch

    backend = getattr(torch, device_type, None)
    if callable(getattr(backend, "is_available", None)):
        if not backend.is_available():
            return 0
        return backend.device_count() if callable(getattr(backend, "device_count", None)) else 1
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    current = accelerator.current_accelerator() if accelerator is not None else None
    return accelerator.device_count() if current is not None and current.type == device_type else 0


def usable_devices() -> str:
    """The device types this machine offers, for a message: ``'cpu'``, or ``'cpu' or 'cuda'`` (``'mps'``...)."""
    import torch

    accelerator = getattr(torch, "accelerator", None)
    current = accelerator.current_accelerator() if accelerator is not None else None
    candidates = dict.fromkeys(["cuda", *([current.type] if current is not None else [])])
    kinds = ["cpu", *(kind for kind in candidates if device_count(kind))]
    return " or ".join(repr(kind) for kind in kinds)


def _resolve_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)  # one of `base.DTYPES`: `BackendConfig` checks it


def check_loaded_as_configured(model: Any, config: BackendConfig) -> None:
    """Refuse a `config.device` or `config.dtype` that a model already loaded does not have: `from_model`
    neither moves nor casts it, and a setting it ignored would be read as applied."""
    import torch

    where, wanted = model.device, None if config.device is None else torch.device(config.device)
    if wanted is not None and not (wanted.type == where.type and wanted.index in (None, where.index)):
        raise ValueError(f"`device` {config.device!r} in the config, but the model given is on {str(where)!r}: "
                         "move the model there first, or leave `device` unset")
    if config.dtype != "auto" and getattr(torch, config.dtype) != model.dtype:
        raise ValueError(f"`dtype` {config.dtype!r} in the config, but the model given is in "
                         f"{str(model.dtype).removeprefix('torch.')}: cast it first (`model.to(torch.{config.dtype})`), "
                         "or leave `dtype` 'auto'")


class TransformersBackend:
    """Generate synthesizer completions with `model.generate`.

    Args:
        config (`BackendConfig`): model, limits and decoding settings; `batch_size` prompts
            go through one `generate` call.
    """

    def __init__(self, config: BackendConfig) -> None:
        import torch

        device = config.device
        if device is not None:
            check_device(device)
        else:
            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
            device = default_device(os.environ, gpus)
            if device.startswith("cuda:"):
                torch.cuda.set_device(device)  # kernels and caches that use "the current GPU" too
                logger.info("hf_ipt: LOCAL_RANK=%s: synthesizer on %s", os.environ["LOCAL_RANK"], device)
        model, tokenizer = load_causal_lm(
            config.model_name_or_path,
            dtype=_resolve_dtype(config.dtype, device),
            device=device,
            trust_remote_code=config.trust_remote_code,
            revision=config.revision,
            check_tokenizer=lambda tokenizer: check_eos_before_load(
                tokenizer, config.model_name_or_path, config.revision, config.trust_remote_code),
        )
        self._setup(config, model, tokenizer)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, config: BackendConfig) -> TransformersBackend:
        """Wrap a model that is already loaded (`config.model_name_or_path` is not read).

        For a model in memory: random weights in a benchmark, or a model being trained. A tokenizer loaded
        from a folder or the Hub gets the text pipeline of the tokenizer.json there back where transformers
        built another (`hf_ipt.models.keep_shipped_pipeline`), in place.

        Raises:
            `ValueError`: `config` sets a `device` or `dtype` other than the model's (it would be ignored).
        """
        from ..models import keep_shipped_pipeline

        check_loaded_as_configured(model, config)
        if name := getattr(tokenizer, "name_or_path", None):  # the revision of the model's, when it is that one
            keep_shipped_pipeline(tokenizer, name, config.revision if name == config.model_name_or_path else None)
        backend = cls.__new__(cls)
        backend._setup(config, model.eval(), tokenizer)
        return backend

    def _setup(self, config: BackendConfig, model: Any, tokenizer: Any) -> None:
        check_context(model.config.get_text_config(), config.max_model_len)
        self.config, self.model, self.tokenizer = config, model, tokenizer
        self._cache_blocks: int | None = None  # blocks of the kept paged cache (`prefix_caching`, CPU)
        self._kept_manager: Any = None  # the `generate_batch` manager this backend keeps (`prefix_caching`)
        window = getattr(model.config, "sliding_window", None)
        if config.prefix_caching and window is not None and not _window_spans(model.config, config.max_model_len):
            logger.warning(
                "hf_ipt: prefix_caching will share no page: transformers shares no page of sliding-window layers, "
                "and this model's (window %s tokens, max_model_len %s) cannot be run as full attention",
                window, config.max_model_len,
            )
        self.device = str(model.device)
        self.eos_token_ids = stop_token_ids(tokenizer, model.generation_config.eos_token_id, config.model_name_or_path)
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.eos_token_ids[0]

    def generate(self, prompts: list[list[int]]) -> list[Generation]:
        """One `Generation` per token-id prompt, in order; bad or failing prompts get `error`."""
        check_open(self.model, type(self).__name__)
        vocab = self.model.get_input_embeddings().num_embeddings
        results, valid = check_prompts(prompts, self.config.prompt_budget, vocab)
        with self._seeded(), self._own_decoding():
            if self.config.continuous_batching:
                for i, generation in zip(valid, self._generate_continuous([prompts[i] for i in valid])):
                    results[i] = generation
                return results
            # Longest first: the widest batch runs first, so memory trouble shows up at once (with
            # `max_batch_tokens`, every batch is held to the same token budget instead).
            order = sorted(valid, key=lambda i: len(prompts[i]), reverse=True)
            for batch in self._batches(order, [len(prompts[i]) for i in order]):
                for i, generation in zip(batch, self._generate_batch([prompts[i] for i in batch])):
                    results[i] = generation
        return results

    @contextlib.contextmanager
    def _own_decoding(self) -> Iterator[None]:
        """Inside, the model's generation config holds its special token ids only: `generate` fills every
        setting that `_generation_config` leaves unset from it, so a synthesizer's generation_config.json
        (a ``repetition_penalty``, ``no_repeat_ngram_size``, ``num_beams``, ``top_p``) changed the padded
        path's tokens, not `generate_batch`'s or vLLM's, and greedy was no longer the reference's greedy."""
        from transformers import GenerationConfig

        kept = self.model.generation_config
        self.model.generation_config = GenerationConfig(
            **{key: getattr(kept, key) for key in ("bos_token_id", "eos_token_id", "pad_token_id")})
        try:
            yield
        finally:
            self.model.generation_config = kept

    @contextlib.contextmanager
    def _seeded(self) -> Iterator[None]:
        """When sampling, each `generate` call starts from `seed` (`generate` samples from torch's
        global generator, forked here): a call's samples depend on its prompts alone, not on the
        calls before it (a resumed job samples as an uninterrupted one), and the caller's random
        state (a model being trained) is left as it was."""
        if self.config.temperature == 0:
            yield
            return
        import torch

        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            yield

    def _batches(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """`order` (longest prompt first; `lengths` alike) cut into batches of at most `batch_size`
        rows and, when `max_batch_tokens` is set, rows x (first row's length + `max_new_tokens`)
        tokens at most. A prompt over the budget runs alone."""
        size, budget, new = self.config.batch_size, self.config.max_batch_tokens, self.config.max_new_tokens
        batches: list[list[int]] = []
        width = 0  # the current batch's longest prompt: its first
        for index, length in zip(order, lengths):
            rows = len(batches[-1]) + 1 if batches else 0
            if batches and rows <= size and (budget is None or rows * (width + new) <= budget):
                batches[-1].append(index)
            else:
                batches.append([index])
                width = length
        return batches

    def _generate_batch(self, prompts: list[list[int]]) -> list[Generation]:
        try:
            return self._generate_padded(prompts)
        except Exception as error:
            # A CUDA fault leaves the device gone for every later prompt too; any other error than memory
            # would fail every prompt as well: stop, do not reject them all (a job would mark its units done).
            if is_fatal_device_error(error) or not is_memory_error(error):
                raise
            self._free_memory()
            if len(prompts) == 1:
                return [Generation(text="", num_prompt_tokens=len(prompts[0]), error=repr(error))]
        # Out of memory: retry by halves, so a batch too large for the memory still runs in smaller ones,
        # and only a prompt too large alone is lost.
        half = len(prompts) // 2
        return self._generate_batch(prompts[:half]) + self._generate_batch(prompts[half:])

    def _generate_padded(self, prompts: list[list[int]]) -> list[Generation]:
        import torch

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention_mask[row, width - len(prompt) :] = 1
        if self.config.static_cache:
            # `generate` sizes a static cache to the longest it made before (to spare a compile we turn off): the
            # longest batch comes first, so every later, shorter batch would attend over that whole length
            with contextlib.suppress(AttributeError):
                del self.model._previous_max_cache_length
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                generation_config=self._generation_config(),
            )
        new_tokens = output[:, width:].tolist()
        return [self._to_generation(len(p), ids) for p, ids in zip(prompts, new_tokens)]

    def _generate_continuous(self, prompts: list[list[int]]) -> list[Generation]:
        """All prompts through transformers continuous batching (`generate_batch`)."""
        if not prompts:
            return []
        try:
            with self._kept_manager_scope():
                outputs = self.model.generate_batch(
                    prompts,
                    generation_config=self._generation_config(),
                    continuous_batching_config=self._continuous_batching_config(prompts),
                    persistent_manager=self.config.prefix_caching,
                )
        except Exception as error:
            if is_fatal_device_error(error) or not is_memory_error(error):  # as `_generate_batch`
                if self.config.prefix_caching:
                    self._drop_kept_cache()  # a manager whose call failed is not reused
                raise
            outputs, failure = {}, repr(error)
        else:
            failure = "no result from generate_batch"
        # Request ids are internal: match each output to its prompt by the prompt's tokens.
        by_prompt: dict[tuple[int, ...], list[Any]] = {}
        for output in outputs.values():
            by_prompt.setdefault(tuple(output.prompt_ids), []).append(output)
        generations: list[Generation] = []
        for prompt in prompts:
            output = (by_prompt.get(tuple(prompt)) or [None]).pop(0)
            if output is None or output.error is not None:
                error = failure if output is None else output.error
                generations.append(Generation(text="", num_prompt_tokens=len(prompt), error=error))
            else:
                generations.append(self._to_generation(len(prompt), list(output.generated_tokens)))
        failed = [i for i, g in enumerate(generations) if g.error]
        if failed and self.config.prefix_caching:
            self._drop_kept_cache()  # a manager whose call failed (or did not stop in time) is not reused
        if len(prompts) == 1 or not failed:
            return generations
        # A failing forward pass fails every request in it: bisect the failed ones so only
        # the prompts that really fail are lost.
        half = len(failed) // 2 or 1
        retried = self._generate_continuous([prompts[i] for i in failed[:half]])
        retried += self._generate_continuous([prompts[i] for i in failed[half:]])
        for i, generation in zip(failed, retried):
            generations[i] = generation
        return generations

    def _continuous_batching_config(self, prompts: list[list[int]]) -> Any:
        """On a GPU, transformers sizes the paged KV cache from free memory. On CPU it would take
        60% of the machine's RAM: size it to this workload instead.

        With `prefix_caching` the manager and its cache outlive the call, and a kept manager
        ignores the configs of later calls: its limits are set for any call (transformers would
        derive them from this call's requests), and on CPU its cache has room for this many
        prompts at `max_model_len` each, plus a quarter (transformers evicts every cached page
        when under 15% is free). A later call with more prompts gets a new, larger one (what
        was cached is lost once)."""
        from transformers import ContinuousBatchingConfig

        page = ContinuousBatchingConfig().page_size
        pages_per_prompt = -(-self.config.max_model_len // page)
        limits: dict[str, int] = {}
        if self.config.prefix_caching:
            limits["max_requests_per_batch"] = 1024  # transformers' own default for an unknown workload
            if "flash" in str(getattr(self.model.config, "_attn_implementation", "")):  # its decode fast path
                limits["max_blocks_per_request"] = pages_per_prompt + 1 + (pages_per_prompt + 1) % 2
        if self.device.startswith("cuda"):
            return ContinuousBatchingConfig(**limits)
        if self.config.prefix_caching:
            need = len(prompts) * pages_per_prompt
            if self._cache_blocks is not None and self._cache_blocks < need:
                self._drop_kept_cache()
            if self._cache_blocks is None:
                self._cache_blocks = need + need // 4
            return ContinuousBatchingConfig(num_blocks=self._cache_blocks, max_batch_tokens=2048, **limits)
        tokens = [len(p) + self.config.max_new_tokens for p in prompts]
        return ContinuousBatchingConfig(
            num_blocks=sum(-(-n // page) for n in tokens), max_batch_tokens=min(sum(tokens), 2048)
        )

    @contextlib.contextmanager
    def _kept_manager_scope(self) -> Iterator[None]:
        """Around a `generate_batch` call with `prefix_caching`: a manager kept on the model by
        anyone else (another backend, a direct call) is dropped, not reused with its settings;
        transformers' notice that a kept manager was sized for one call is silenced (this
        backend sizes it, `_continuous_batching_config`); a sliding window that spans
        `max_model_len` is lifted for the call, since transformers shares no page of
        sliding-window layers (Mistral-7B's config sets one of 4,096 tokens: within it,
        attention is the same)."""
        if not self.config.prefix_caching:
            yield
            return
        if getattr(self.model, "_cached_continuous_batching_manager", None) not in (None, self._kept_manager):
            self.model.destroy_cached_continuous_batching_manager()
        config, window = self.model.config, getattr(self.model.config, "sliding_window", None)
        lift = _window_spans(config, self.config.max_model_len)
        cb_logger = logging.getLogger("ContinuousBatchingLogger")
        cb_logger.addFilter(_KEPT_MANAGER_NOTICE)
        if lift:
            config.sliding_window = None
        try:
            yield
        finally:
            if lift:
                config.sliding_window = window
            cb_logger.removeFilter(_KEPT_MANAGER_NOTICE)
            self._kept_manager = getattr(self.model, "_cached_continuous_batching_manager", None)

    def _drop_kept_cache(self) -> None:
        """Free the `generate_batch` manager and paged cache kept by `prefix_caching`."""
        if self.model is not None and hasattr(self.model, "destroy_cached_continuous_batching_manager"):
            self.model.destroy_cached_continuous_batching_manager()
        self._cache_blocks = self._kept_manager = None

    def _generation_config(self) -> Any:
        from transformers import GenerationConfig

        sample = self.config.temperature > 0
        return GenerationConfig(
            max_new_tokens=self.config.max_new_tokens,
            do_sample=sample,
            temperature=self.config.temperature if sample else None,
            # the whole distribution, as vLLM samples (unset, transformers' default top_k is 50)
            top_p=1.0 if sample else None,
            top_k=0 if sample else None,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            # `generate` would compile the forward for a static cache on GPU: measured slower (BENCHMARKS.md, static cache + compile)
            cache_implementation="static" if self.config.static_cache else None,
            disable_compile=True if self.config.static_cache else None,
        )

    def _to_generation(self, num_prompt_tokens: int, new_tokens: list[int]) -> Generation:
        """Cut at the first EOS (kept in the count, not in the text); rows after it are padding."""
        stop = next((k for k, t in enumerate(new_tokens) if t in self.eos_token_ids), None)
        tokens = new_tokens if stop is None else new_tokens[: stop + 1]
        return Generation(
            # the EOS is left out of the text even when it is no special token (a generation config's
            # extra stop id), as vLLM leaves it out
            text=self.tokenizer.decode(tokens if stop is None else tokens[:stop], skip_special_tokens=True),
            num_prompt_tokens=num_prompt_tokens,
            num_generated_tokens=len(tokens),
            finished=stop is not None,
            token_ids=tokens,
        )

    def _free_memory(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the model (and a cache kept by `prefix_caching`) so their memory can be reclaimed."""
        if self.config.prefix_caching:
            self._drop_kept_cache()
        self.model = None
        self._free_memory()
