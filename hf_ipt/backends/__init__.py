"""Synthesis backends: sibling classes with one small interface (`generate(prompt_ids)`).

- ``"transformers"``: `TransformersBackend`, batched `generate`, CPU or GPU;
- ``"vllm"``: `VLLMBackend`, offline `LLM.generate` (needs the ``vllm`` extra).

The rule-based miner (`hf_ipt.miner`) needs no prompts and is not a backend class.
Engines are imported lazily: importing this package imports neither torch nor vllm.
"""

from __future__ import annotations

from typing import Any

from .base import BackendConfig, Generation

__all__ = ["BackendConfig", "Generation", "load_backend"]


def load_backend(config: BackendConfig) -> Any:
    """Instantiate the backend named by `config.backend`."""
    if config.backend == "vllm":
        from .vllm import VLLMBackend

        return VLLMBackend(config)
    if config.backend == "transformers":
        from .transformers import TransformersBackend

        return TransformersBackend(config)
    raise ValueError(
        f"`backend` must be 'vllm' or 'transformers', got {config.backend!r} (BackendConfig.backend)"
    )
