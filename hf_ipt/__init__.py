"""hf_ipt: Instruction Pre-Training (Cheng et al., arXiv 2406.14491) on the Hugging Face stack.

The protocol is exported here; other names load their module on first use, so
``import hf_ipt`` never imports torch or vllm (it imports `datasets` to register the
``hf_ipt/augmented`` builder). Templify lives in
``hf_ipt.templify`` (``from hf_ipt.templify import templify``): a top-level ``templify``
function would be shadowed by the subpackage of the same name.
"""

from __future__ import annotations

import importlib
from typing import Any

from .protocol import Pair, build_prompt, count_tokens, encode_prompt, format_pairs, parse_pairs

__version__ = "0.3.0.dev5"

# public name -> submodule that defines it, imported lazily on first attribute access
_LAZY: dict[str, str] = {
    "chain": "hf_ipt.chaining",
    "ChainEntry": "hf_ipt.chaining",
    "split_rounds": "hf_ipt.chaining",
    "chains_of": "hf_ipt.chaining",
    "mine_pairs": "hf_ipt.miner",
    "Augmenter": "hf_ipt.augment",
    "SynthesisConfig": "hf_ipt.augment",
    "AugmentedBuilder": "hf_ipt.builder",
    "AugmentedConfig": "hf_ipt.builder",
    "CorpusConfig": "hf_ipt.corpus",
    "load_augmented": "hf_ipt.builder",
    "RuleMiner": "hf_ipt.miner",
}

__all__ = [
    "AugmentedBuilder",
    "AugmentedConfig",
    "Augmenter",
    "ChainEntry",
    "CorpusConfig",
    "Pair",
    "RuleMiner",
    "SynthesisConfig",
    "build_prompt",
    "chain",
    "chains_of",
    "count_tokens",
    "encode_prompt",
    "format_pairs",
    "load_augmented",
    "mine_pairs",
    "parse_pairs",
    "split_rounds",
]  # the names of _LAZY listed (a test keeps them in step): static tools read only literals


def _register_builder() -> None:
    """``datasets.load_dataset("hf_ipt/augmented", ...)`` works after ``import hf_ipt``."""
    from .builder import register

    register()


_register_builder()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_ipt' has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too: tab completion, dir()
    return sorted({*globals(), *_LAZY})
