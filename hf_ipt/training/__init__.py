"""Training: token-ratio mixing, packing, streams, callbacks, model cards and the recipes' Trainer.

Light to import: names load their module (and torch/transformers) on first use. The
Accelerate configs ship as package data; `accelerate_config_path` finds them:

    accelerate launch --config_file $(python -c "from hf_ipt.training import accelerate_config_path as p; print(p('ddp'))") \\
        recipes/continual_pt.py --config recipes/configs/continual_pt.yaml
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path
from typing import Any

ACCELERATE_CONFIGS = ("single_gpu", "ddp", "fsdp2", "deepspeed_zero3")

_LAZY: dict[str, str] = {
    "mix_by_tokens": "hf_ipt.training.mixing",
    "num_tokens": "hf_ipt.training.mixing",
    "pack_sequences": "hf_ipt.training.packing",
    "collate_packed": "hf_ipt.training.packing",
    "packed_collator": "hf_ipt.training.packing",
    "load_rows": "hf_ipt.training.data",
    "endless_rows": "hf_ipt.training.data",
    "tokenize_texts": "hf_ipt.training.data",
    "sharded_stream": "hf_ipt.training.data",
    "collection_files": "hf_ipt.training.synthesizer_data",
    "blank_shot": "hf_ipt.training.synthesizer_data",
    "encode_shot": "hf_ipt.training.synthesizer_data",
    "multi_shot_sequences": "hf_ipt.training.synthesizer_data",
    "check_data": "hf_ipt.training.checks",
    "check_source": "hf_ipt.training.checks",
    "check_collection": "hf_ipt.training.checks",
    "continual_pt_dataset": "hf_ipt.training.streams",
    "pretrain_dataset": "hf_ipt.training.streams",
    "synthesizer_dataset": "hf_ipt.training.streams",
    "MODEL_SHAPES": "hf_ipt.training.model_init",
    "init_model": "hf_ipt.training.model_init",
    "load_model": "hf_ipt.training.model_init",
    "load_tokenizer": "hf_ipt.training.model_init",
    "num_parameters": "hf_ipt.training.model_init",
    "ThroughputCallback": "hf_ipt.training.callbacks",
    "TokenBudgetProgressCallback": "hf_ipt.training.callbacks",
    "flops_per_token": "hf_ipt.training.callbacks",
    "CardInfo": "hf_ipt.training.card",
    "render_model_card": "hf_ipt.training.card",
    "IPTTrainer": "hf_ipt.training.trainer",
    "build_trainer": "hf_ipt.training.trainer",
    "train_and_save": "hf_ipt.training.trainer",
    "TrainingConfig": "hf_ipt.training.config",
    "ContinualPTConfig": "hf_ipt.training.config",
    "PretrainConfig": "hf_ipt.training.config",
    "SynthesizerConfig": "hf_ipt.training.config",
}

__all__ = ["ACCELERATE_CONFIGS", "accelerate_config_path"]
__all__ += list(_LAZY)


def accelerate_config_path(name: str) -> Path:
    """Path of a packaged Accelerate config: ``single_gpu``, ``ddp``, ``fsdp2`` or ``deepspeed_zero3``."""
    if name not in ACCELERATE_CONFIGS:
        raise ValueError(
            f"unknown Accelerate config {name!r}; choose one of {', '.join(ACCELERATE_CONFIGS)}"
        )
    return Path(str(resources.files("hf_ipt").joinpath(f"templates/accelerate/{name}.yaml")))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_ipt.training' has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too: tab completion, dir()
    return sorted({*globals(), *_LAZY})
