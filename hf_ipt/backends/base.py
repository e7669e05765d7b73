"""What every synthesis backend takes and returns."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal


@dataclass
class BackendConfig:
    """Settings of a model synthesizer backend.

    Args:
        model_name_or_path (`str`): the synthesizer, e.g. ``instruction-pretrain/instruction-synthesizer``.
        backend (`str`, *optional*, defaults to ``"vllm"``): ``"vllm"`` or ``"transformers"``.
        max_model_len (`int`, *optional*, defaults to 4096): prompt + generated tokens limit.
        max_new_tokens (`int`, *optional*, defaults to 400): tokens generated per prompt at most.
        temperature (`float`, *optional*, defaults to 0.0): 0 means greedy, as in the reference.
        seed (`int`, *optional*, defaults to 0): sampling seed (unused when greedy); transformers
            starts each `generate` call from it, vLLM each request.
        batch_size (`int`, *optional*, defaults to 16): prompts per `generate` call (transformers).
        max_batch_tokens (`int`, *optional*): transformers only: also cut the length-sorted batches
            so that rows x (longest prompt + `max_new_tokens`), the tokens a batch's KV cache holds at
            its end, stays within this; short prompts then share large batches (up to `batch_size`).
            A prompt over the budget alone runs as a batch of one.
        static_cache (`bool`, *optional*, defaults to `False`): transformers only: pre-allocate each
            batch's KV cache (`cache_implementation="static"`, not compiled) instead of growing it
            by one token per step.
        continuous_batching (`bool`, *optional*, defaults to `False`): transformers only: run all
            prompts through `generate_batch` (continuous batching, paged attention) instead of
            length-sorted padded batches of `batch_size`. Measured slower than the padded path on
            CPU and GPU (transformers 5.24), and not token-identical to it on GPU: see
            docs/backends.md.
        prefix_caching (`bool`, *optional*, defaults to `False`): transformers with
            `continuous_batching` only: keep the paged KV cache (and the `generate_batch` manager,
            warm) from one call to the next, so that a prompt starting with an earlier call's
            prompt reuses that prefix's cached blocks instead of computing them again. Chained
            synthesis pays: round r's prompt starts with round r-1's prompt and its pairs. The
            same tokens as without it (tested on CPU in fp32).
        dtype (`str`, *optional*, defaults to ``"auto"``): transformers backend: ``"auto"`` = bf16 on
            GPU, fp32 on CPU; vLLM: its own ``"auto"`` (the checkpoint's dtype, fp32 ones in bf16).
        device (`str`, *optional*): transformers device; default ``cuda`` when available.
        tensor_parallel_size (`int`, *optional*, defaults to 1): vLLM GPUs per engine.
        gpu_memory_utilization (`float`, *optional*, defaults to 0.9): vLLM KV-cache share.
        trust_remote_code (`bool`, *optional*, defaults to `False`): run model code from the repo.
        revision (`str`, *optional*): model revision (branch, tag or commit).
    """

    model_name_or_path: str
    backend: Literal["vllm", "transformers"] = "vllm"
    max_model_len: int = 4096
    max_new_tokens: int = 400
    temperature: float = 0.0
    seed: int = 0
    batch_size: int = 16
    max_batch_tokens: int | None = None
    static_cache: bool = False
    continuous_batching: bool = False
    prefix_caching: bool = False
    dtype: str = "auto"
    device: str | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    trust_remote_code: bool = False
    revision: str | None = None
    engine_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in ("vllm", "transformers"):
            raise ValueError(
                f"`backend` must be 'vllm' or 'transformers', got {self.backend!r} (BackendConfig.backend)"
            )
        check_counts(self, ("max_model_len", "max_new_tokens", "batch_size", "tensor_parallel_size"), "BackendConfig")
        if self.max_new_tokens >= self.max_model_len:
            raise ValueError(
                f"`max_new_tokens` ({self.max_new_tokens}) must be < `max_model_len` "
                f"({self.max_model_len}): no room would be left for the prompt"
            )
        self.model_name_or_path = model_location(self.model_name_or_path, "model_name_or_path", "BackendConfig")
        check_temperature(self.temperature, "BackendConfig")
        check_dtype(self.dtype, "BackendConfig")
        check_gpu_memory_utilization(self.gpu_memory_utilization, "BackendConfig")
        check_backend_settings(self, "BackendConfig")
        check_engine_kwargs(self.engine_kwargs)

    @property
    def prompt_budget(self) -> int:
        """Most prompt tokens that still leave room for `max_new_tokens`."""
        return self.max_model_len - self.max_new_tokens


DTYPES = ("auto", "bfloat16", "float16", "float32")


def model_location(name: str, field: str, owner: str) -> str:
    """`name` (a model folder or a Hub id) with a leading ``~`` expanded (a quoted flag or a YAML value:
    no shell did it); a local path that does not exist is refused now, not when the model loads (transformers
    and vLLM took it for a malformed Hub id: "Repo id must be in the form 'repo_name' or
    'namespace/repo_name'"), and so is a folder with no ``config.json`` (nor vLLM's Mistral-format
    ``params.json``): the tokenizer load failed on it asking for sentencepiece (`hf_ipt.models.check_model_path`).
    An existing file passes: vLLM loads a GGUF file by its path."""
    from ..cli import UsageError
    from ..models import check_model_path, is_adapter_folder, merge_adapter_hint

    if os.path.isfile(os.path.expanduser(name)):
        return os.path.expanduser(name)
    if is_adapter_folder(name):
        raise UsageError(f"`{field}` {name!r} {merge_adapter_hint(name)} ({owner}.{field})")
    try:
        return check_model_path(name, f"`{field}`", ("config.json", "params.json"))
    except UsageError as error:
        raise type(error)(f"{error} ({owner}.{field})") from None


def is_integer(value: Any) -> bool:
    """An `int` and not a `bool` (``True`` is an int to Python, not a count to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_counts(config: Any, names: Sequence[str], owner: str) -> None:
    """Each of `names` an integer >= 1: a string from Python or YAML (``"8"``) failed deep in the builder or
    an engine with a bare ``TypeError``."""
    for name in names:
        value = getattr(config, name)
        if not is_integer(value):
            raise TypeError(f"`{name}` must be an integer, got {value!r} ({owner}.{name})")
        if value < 1:
            raise ValueError(f"`{name}` must be >= 1, got {value} ({owner}.{name})")


def check_gpu_memory_utilization(value: Any, owner: str) -> None:
    """A number in (0, 1]: vLLM's share of each GPU's memory."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1):
        raise ValueError(f"`gpu_memory_utilization` must be a number in (0, 1], got {value!r} "
                         f"({owner}.gpu_memory_utilization)")


def check_temperature(value: float, owner: str) -> None:
    """A finite `temperature` >= 0 (0: greedy); NaN would pass a plain ``< 0`` check and sample garbage."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"`temperature` must be a finite number >= 0 (0: greedy), got {value!r} ({owner}.temperature)")


def check_dtype(dtype: str, owner: str) -> None:
    """Refuse a `dtype` no backend loads (``fp16``, ``bf16``) before anything is written or loaded."""
    if dtype not in DTYPES:
        names = ", ".join(repr(d) for d in DTYPES[:-1]) + f" or {DTYPES[-1]!r}"
        raise ValueError(f"`dtype` must be {names}, got {dtype!r}; 'auto' is bf16 on GPU, fp32 on CPU ({owner}.dtype)")


# Settings that one backend reads and the other ignores, with why the other one needs none:
# set to anything but their default with the other backend, they are refused
# (`check_backend_settings`), never silently dropped. ``{value}`` is the value given.
BACKEND_ONLY: dict[str, dict[str, str]] = {
    "vllm": {
        "tensor_parallel_size": "the transformers backend runs on one device (`device`)",
        "gpu_memory_utilization": "the transformers backend allocates memory as it goes",
        "engine_kwargs": "they are arguments of `vllm.LLM`",
    },
    "transformers": {
        "batch_size": "vLLM schedules its own batches: use --engine_kwargs '{\"max_num_seqs\": {value}}'",
        "max_batch_tokens": "vLLM schedules its own batches: use --engine_kwargs "
                            "'{\"max_num_batched_tokens\": {value}}'",
        "static_cache": "vLLM pages its KV cache itself",
        "continuous_batching": "vLLM batches continuously anyway",
        "prefix_caching": "hf_ipt turns vLLM's own prefix caching on (`enable_prefix_caching`)",
        "device": "vLLM runs on the visible GPUs (CUDA_VISIBLE_DEVICES, `tensor_parallel_size`)",
    },
}


def default_of(config: Any, name: str) -> Any:
    """The default of dataclass field `name` of `config`."""
    spec = next(f for f in fields(config) if f.name == name)
    return spec.default_factory() if spec.default is MISSING else spec.default


def refuse_ignored(config: Any, names: Iterable[str], *, reader: str, ignorer: str, fix: str, owner: str,
                   why: Mapping[str, str] | None = None) -> None:
    """Raise a `ValueError` for the first of `names` that `config` sets to other than its default:
    it is a setting of `reader` only, and `ignorer` (what `config` runs) would silently ignore it.
    The message names the setting, `why` the ignorer needs none (per name) and the `fix`."""
    for name in names:
        value = getattr(config, name)
        if value == default_of(config, name):
            continue
        reason = (why or {}).get(name, "")
        reason = f"; {reason.replace('{value}', str(value))}" if reason else ""
        raise ValueError(f"`{name}` ({value!r}) would be ignored: it is a setting of {reader}, not of {ignorer}"
                         f"{reason}. {fix}, or leave `{name}` unset ({owner}.{name})")


def check_backend_settings(config: Any, owner: str) -> None:
    """Refuse settings that `config.backend` would ignore: those only the other backend reads
    (`BACKEND_ONLY`), and the padded-batch tuning of transformers with continuous batching."""
    tokens = config.max_batch_tokens
    if tokens is not None and not (is_integer(tokens) and tokens >= 1):
        raise ValueError(f"`max_batch_tokens` must be an integer >= 1 or unset, got {tokens!r} "
                         f"({owner}.max_batch_tokens)")
    other = "transformers" if config.backend == "vllm" else "vllm"
    refuse_ignored(config, BACKEND_ONLY[other], reader=f"the {other} backend", ignorer=f"backend={config.backend!r}",
                   fix=f"Use backend={other!r}", owner=owner, why=BACKEND_ONLY[other])
    for name in [n for n in ("max_batch_tokens", "static_cache") if getattr(config, n) not in (None, False)]:
        if config.continuous_batching:
            raise ValueError(
                f"`{name}` tunes padded batches, and continuous batching sizes its own batches and cache: pass "
                f"one of the two ({owner}.{name})"
            )
    if config.prefix_caching and not config.continuous_batching:
        raise ValueError(
            "`prefix_caching` keeps continuous batching's paged KV cache from one call to the next: set "
            f"`continuous_batching` too, or leave `prefix_caching` unset ({owner}.prefix_caching)"
        )


# `vllm.LLM` arguments that hf_ipt sets from its own settings: `engine_kwargs` may not hold them,
# else the engine and hf_ipt's prompt budget, seed or model pin would disagree. Values: the
# setting to use instead, as `BackendConfig` and as `SynthesisConfig` (the CLIs and the builder).
VLLM_SETTINGS = {
    "model": ("model_name_or_path", "synthesizer"), "revision": ("revision", "revision"),
    "dtype": ("dtype", "dtype"), "max_model_len": ("max_model_len", "max_model_len"),
    "tensor_parallel_size": ("tensor_parallel_size", "tensor_parallel_size"),
    "gpu_memory_utilization": ("gpu_memory_utilization", "gpu_memory_utilization"),
    "trust_remote_code": ("trust_remote_code", "trust_remote_code"), "seed": ("seed", "seed"),
}


def check_engine_kwargs(engine_kwargs: Mapping[str, Any], synthesis_names: bool = False) -> None:
    """Refuse `engine_kwargs` that repeat a setting hf_ipt passes to `vllm.LLM` itself; the error
    names the setting to use (`SynthesisConfig`'s names when `synthesis_names`)."""
    taken = sorted(set(engine_kwargs) & set(VLLM_SETTINGS))
    if taken:
        prefix = "--" if synthesis_names else ""
        fixes = ", ".join(f"{prefix}{VLLM_SETTINGS[name][synthesis_names]}" for name in taken)
        raise ValueError(f"`engine_kwargs` sets {taken}, which hf_ipt passes to vllm.LLM from its own settings; "
                         f"drop them from engine_kwargs and set {fixes} instead")


@dataclass
class Generation:
    """One prompt's result. A failed or rejected prompt has `error` set and `text` empty."""

    text: str
    num_prompt_tokens: int
    num_generated_tokens: int = 0
    finished: bool = True  # False when cut by max_new_tokens
    error: str | None = None
    token_ids: list[int] = field(default_factory=list)  # generated ids, a final EOS included


def check_open(engine: Any, owner: str) -> None:
    """Refuse a `generate` call on a backend whose model or engine `close()` dropped (`engine` is `None`)."""
    if engine is None:
        raise RuntimeError(f"{owner}.generate() was called after close(): the model is unloaded; "
                           f"create a new {owner} to generate again")


def check_prompts(
    prompts: list[list[int]], prompt_budget: int, vocab_size: int | None = None
) -> tuple[list[Generation | None], list[int]]:
    """Reject empty and over-long prompts, and ids outside ``[0, vocab_size)``, before they reach
    an engine (on a GPU, an embedding lookup out of range is a device-side assert that leaves the
    CUDA context unusable for every later prompt).

    Returns:
        `tuple[list[Generation | None], list[int]]`: one slot per prompt, holding an error
        `Generation` for a rejected prompt and `None` for the others, and the indices of the
        accepted prompts.
    """
    if isinstance(prompts, str) or any(isinstance(p, str) for p in prompts):  # a caller's mistake, not a prompt's
        raise TypeError("generate takes token-id prompts (lists of ints): encode each with "
                        "`hf_ipt.protocol.encode_prompt(tokenizer, build_prompt(text))`, or use `chain`/`Augmenter` "
                        "for raw texts")
    results: list[Generation | None] = [None] * len(prompts)
    valid = []
    for i, prompt in enumerate(prompts):
        if not prompt:
            results[i] = Generation(text="", num_prompt_tokens=0, error="empty prompt")
        elif len(prompt) > prompt_budget:
            results[i] = Generation(
                text="",
                num_prompt_tokens=len(prompt),
                error=f"prompt of {len(prompt)} tokens exceeds the budget of {prompt_budget} "
                "(max_model_len - max_new_tokens)",
            )
        elif vocab_size is not None and not 0 <= min(prompt) <= max(prompt) < vocab_size:
            bad = next(t for t in prompt if not 0 <= t < vocab_size)
            results[i] = Generation(text="", num_prompt_tokens=len(prompt),
                                    error=f"token id {bad} is out of the model's vocabulary ({vocab_size} ids)")
        else:
            valid.append(i)
    return results, valid


def is_fatal_device_error(error: BaseException) -> bool:
    """A CUDA fault ("CUDA error: an illegal memory access ...", a device-side assert) leaves the
    device unusable: every later call fails too, so it must stop the work, not be recorded per
    prompt. Running out of memory is not one (smaller batches recover)."""
    return "CUDA error" in str(error)


def is_memory_error(error: BaseException) -> bool:
    """Running out of memory (``torch.OutOfMemoryError``, CPU's "can't allocate memory"): smaller batches
    may recover, and a prompt too large alone is the one prompt lost. Any other error of a generate call is
    no property of its prompts (a missing kernel, a bad setting, a bug) and would fail every prompt: it
    stops the work rather than rejecting every document."""
    import torch

    message = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in message \
        or "can't allocate memory" in message


def stop_token_ids(tokenizer: Any, model_eos: int | list[int] | None = None, model: str = "") -> list[int]:
    """The tokenizer's EOS (the synthesizer's ``</s>``) first, then any other EOS the model's
    generation config names (`model_eos`), as vLLM stops at both.

    Raises:
        `UsageError`: neither names one (generation could not stop at the end of a completion);
            the message names `model` and what to set.
    """
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    for token_id in model_eos if isinstance(model_eos, list) else [model_eos]:
        if token_id is not None and token_id not in ids:
            ids.append(token_id)
    if not ids:
        from ..cli import UsageError

        raise UsageError(
            f"the synthesizer {model!r} has no EOS token: its tokenizer sets no `eos_token` and its generation "
            "config (or config.json) no `eos_token_id`, so generation could not stop where a completion ends; set "
            '"eos_token": "</s>" (the token that closes its completions) in its tokenizer_config.json, or '
            '"eos_token_id" in its generation_config.json (BackendConfig.model_name_or_path)'
        )
    return ids


def check_eos_before_load(tokenizer: Any, model: str, revision: str | None, trust_remote_code: bool) -> None:
    """Refuse a synthesizer with no EOS (`stop_token_ids`) from its tokenizer and its configuration files,
    before its weights load or an engine starts: a tokenizer without one was a traceback after the load.
    The model's files are read only when the tokenizer has none (its generation config, else its config,
    as transformers and vLLM read them)."""
    if tokenizer.eos_token_id is not None:
        return
    from transformers import AutoConfig, GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model, revision=revision).eos_token_id
    except OSError:  # no generation_config.json: transformers and vLLM take the model config's
        config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
        eos = getattr(config.get_text_config(), "eos_token_id", None)
    stop_token_ids(tokenizer, eos, model)


def local_rank(environ: Mapping[str, str]) -> int | None:
    """``LOCAL_RANK`` as set by torchrun / ``accelerate launch``, or `None` when unset.

    Raises:
        `ValueError`: the variable is set but not a non-negative integer.
    """
    value = environ.get("LOCAL_RANK")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise ValueError(
            f"LOCAL_RANK must be a non-negative integer, got {value!r}; unset it, fix the launcher or pass "
            "an explicit `device` (BackendConfig.device)"
        )
    return int(value)
