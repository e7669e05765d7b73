"""Models for the recipes: the paper's shapes built from a config, or a checkpoint with optional (Q)LoRA.

Shapes (vocabulary from the tokenizer, 32000 for the Mistral tokenizer):
- ``mistral-500m`` / ``mistral-1.3b``: the paper's from-scratch models (Mistral architecture).
  The paper gives only their sizes; these shapes hit them (494M / 1.36B parameters at a 32k
  vocabulary) but are not checked against the released checkpoints' configs.
- ``llama-551m``: the shape of the project's H100 training baselines (551M; see BENCHMARKS.md).
- ``tiny``: 2 layers, hidden 64, for CPU tests.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from typing import Any

from . import varlen

MODEL_SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "llama-551m": {
        "model_type": "llama",
        "hidden_size": 1536,
        "intermediate_size": 4096,
        "num_hidden_layers": 16,
        "num_attention_heads": 12,
        "num_key_value_heads": 12,
    },
    "mistral-500m": {
        "model_type": "mistral",
        "hidden_size": 1536,
        "intermediate_size": 4096,
        "num_hidden_layers": 14,
        "num_attention_heads": 12,
        "num_key_value_heads": 12,
        "sliding_window": None,
    },
    "mistral-1.3b": {
        "model_type": "mistral",
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "sliding_window": None,
    },
}


def shape_config(shape: str, *, vocab_size: int, max_length: int, tokenizer: Any = None):
    """The `PretrainedConfig` of a named shape.

    Args:
        shape (`str`): a key of `MODEL_SHAPES`.
        vocab_size (`int`): tokenizer size; rounded up to a multiple of 64 (faster matmuls).
        max_length (`int`): training sequence length, used as `max_position_embeddings`.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): gives the BOS/EOS/pad ids.
    """
    from transformers import AutoConfig

    if shape not in MODEL_SHAPES:
        raise ValueError(f"unknown model shape {shape!r}; choose one of {sorted(MODEL_SHAPES)}")
    kwargs = dict(MODEL_SHAPES[shape])
    special = {}
    if tokenizer is not None:
        special = {
            f"{k}_token_id": getattr(tokenizer, f"{k}_token_id") for k in ("bos", "eos", "pad")
        }
    return AutoConfig.for_model(
        kwargs.pop("model_type"),
        **kwargs,
        vocab_size=-(-vocab_size // 64) * 64,
        max_position_embeddings=max_length,
        tie_word_embeddings=False,
        **special,
    )


def init_model(
    shape: str,
    tokenizer: Any,
    max_length: int,
    *,
    attn_implementation: str | None = None,
    dtype: str | None = None,
    seed: int = 42,
):
    """A randomly initialized causal LM of a named shape, sized to `tokenizer`.

    The weights are drawn after `transformers.set_seed(seed)`: the same seed gives the same
    model (the Trainer seeds only later, once the model exists), so runs are reproducible and
    the seeds of `recipes/mini_repro.py` really vary the initialization.
    """
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    config = shape_config(
        shape, vocab_size=len(tokenizer), max_length=max_length, tokenizer=tokenizer
    )
    set_seed(seed)
    return AutoModelForCausalLM.from_config(
        config,
        attn_implementation=varlen.prepare(attn_implementation),
        dtype=getattr(torch, dtype) if dtype not in (None, "auto") else None,
    )


def parameter_sharding() -> str | None:
    """``"fsdp"`` or ``"zero3"`` when `accelerate launch` shards this run's parameters, else `None`.

    Read from the environment that `accelerate launch` sets for its processes, so it is known
    before the model is loaded.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp"
    if (os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
            and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"):
        return "zero3"
    return None


def shardable_quantization(quantization_config: Any, dtype: Any) -> Any:
    """A 4-bit config whose packed weights FSDP and ZeRO-3 can shard: stored in the model's float dtype.

    By default bitsandbytes packs 4-bit weights into uint8, which FSDP leaves unsharded (every GPU
    holds the whole base model) and ZeRO-3 cannot partition; the storage dtype must equal the
    dtype of the other parameters (PEFT's FSDP/DeepSpeed QLoRA guides).
    """
    import torch

    if quantization_config is None or not getattr(quantization_config, "load_in_4bit", False):
        return quantization_config
    storage = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    if not isinstance(storage, torch.dtype) or not storage.is_floating_point:
        storage = torch.bfloat16
    given = quantization_config.bnb_4bit_quant_storage
    if given not in (torch.uint8, storage):  # uint8: bitsandbytes' default, not a choice to keep
        from ..cli import UsageError

        name = str(storage).removeprefix("torch.")
        fix = (f"pass --bnb_4bit_quant_storage {name}" if dtype not in (None, "auto") else
               "pass --dtype and the same --bnb_4bit_quant_storage (with --dtype auto the storage is bfloat16)")
        raise UsageError(f"--bnb_4bit_quant_storage {str(given).removeprefix('torch.')} under FSDP / ZeRO-3: the 4-bit "
                         f"weights must be stored in the dtype of the other parameters ({name}) to be sharded "
                         f"with them; {fix}, or leave it unset")
    quantization_config.bnb_4bit_quant_storage = storage
    return quantization_config


def load_model(model_args: Any, activation_checkpointing: bool = False, seed: int = 42):
    """Load `model_args.model_name_or_path`, quantized (bitsandbytes) and wrapped in LoRA as configured.

    Args:
        model_args (`trl.ModelConfig`): checkpoint, dtype, attention, LoRA and 4/8-bit settings.
        activation_checkpointing (`bool`, *optional*, defaults to `False`): prepares a k-bit
            model's inputs for it (QLoRA).
        seed (`int`, *optional*, defaults to 42): seeds the LoRA adapters' initialization (the
            Trainer seeds only once the model exists), so a run with the same `--seed` repeats.
    """
    from transformers import AutoModelForCausalLM
    from trl import get_peft_config, get_quantization_config

    from ..models import loading_from_hub

    check_kbit_options(model_args)
    quantization_config = get_quantization_config(model_args)
    if parameter_sharding() is not None:
        quantization_config = shardable_quantization(quantization_config, model_args.dtype)
    peft_config = get_peft_config(model_args)
    with loading_from_hub(model_args.model_name_or_path):
        model = AutoModelForCausalLM.from_pretrained(
            model_args.model_name_or_path,
            revision=model_args.model_revision,
            dtype=model_args.dtype,
            attn_implementation=varlen.prepare(model_args.attn_implementation),
            quantization_config=quantization_config,
        )
    keep_4bit_layout(model)
    if peft_config is None:
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    set_seed(seed)

    if quantization_config is not None and parameter_sharding() is not None:
        # Sharded QLoRA (as TRL does): prepare_model_for_kbit_training would upcast the other
        # parameters to fp32, away from the 4-bit storage dtype that FSDP/ZeRO-3 shard with them.
        if activation_checkpointing:
            model.enable_input_require_grads()
    elif quantization_config is not None:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=activation_checkpointing
        )
    return get_peft_model(model, peft_config)


def keep_4bit_layout(model: Any) -> None:
    """Keep a 4-bit model's weights in the layout they were loaded in, on CPUs with AVX512-BF16 too.

    bitsandbytes repacks a `Linear4bit`'s weight in place into a CPU inference layout (uint8) at its first
    forward in eval mode without gradients, on such CPUs only. A model trained there (QLoRA on a CPU: tests,
    small runs) then changed under FSDP2, which shards floating 4-bit storage but leaves uint8 unsharded: a
    rank whose layers had repacked gathered other sizes than the others (gloo: "Received data size doesn't
    match expected size"), so a run failed or not by the CPU it ran on. Training keeps the loaded layout."""
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False


def check_model_args(model_args: Any) -> None:
    """Check the model options before the data checks and anything loads: the 4/8-bit options
    (`check_kbit_options`), then a local `model_name_or_path` that holds no saved model
    (`hf_ipt.models.check_model_path`, ``~`` expanded in place).

    Raises:
        `UsageError`: naming the option and the fix.
    """
    from ..models import check_model_path

    check_kbit_options(model_args)
    if model_args.model_name_or_path:
        model_args.model_name_or_path = check_model_path(model_args.model_name_or_path)


def check_kbit_options(model_args: Any) -> None:
    """Refuse 4/8-bit loading without LoRA (the quantized weights cannot be trained themselves), and
    LoRA or 4/8-bit loading without the packages they need (the `train` extra), naming it.

    Called by `check_model_args` (the recipes, before the data checks and the tokenizer) and by `load_model`.

    Raises:
        `UsageError`: `model_args` (a `trl.ModelConfig`) sets `load_in_4bit` or `load_in_8bit` without `use_peft`,
            a LoRA option (`LORA_OPTIONS`) without `use_peft`, or a 4-bit option (`BNB_4BIT_OPTIONS`) without
            `load_in_4bit`: each would be ignored.
    """
    from ..cli import UsageError, install_hint

    given = [f"--{name}" for name in ("load_in_4bit", "load_in_8bit") if getattr(model_args, name, False)]
    use_peft = bool(getattr(model_args, "use_peft", False))
    needed = [package for package, wanted in (("peft", use_peft), ("bitsandbytes", bool(given)))
              if wanted and find_spec(package) is None]
    if needed:
        raise UsageError(f"{', '.join(given + ['--use_peft'] * use_peft)} need {' and '.join(needed)}, not "
                         f"installed: {install_hint('train')}")
    if given and not use_peft:
        raise UsageError(
            f"{' and '.join(given)} without --use_peft: 4/8-bit weights train only LoRA adapters; also pass "
            "--use_peft (QLoRA), or drop the flag to train the full weights"
        )
    changed = changed_options(model_args)
    for names, flag, what in ((LORA_OPTIONS, "--use_peft", "LoRA options: a full fine-tune would run"),
                              (BNB_4BIT_OPTIONS, "--load_in_4bit", "4-bit options: the weights would load unquantized")):
        if not getattr(model_args, flag[2:], False) and (unused := [n for n in names if n in changed]):
            named = ", ".join(f"--{name} {changed[name]!r}" for name in unused)
            raise UsageError(f"{named} without {flag}: {what}, ignoring them; also pass {flag}, or drop them")


# `trl.ModelConfig` options that only LoRA (`use_peft`) and only 4-bit loading (`load_in_4bit`) read.
LORA_OPTIONS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_parameters",
                "lora_modules_to_save", "lora_task_type", "use_rslora", "use_dora")
BNB_4BIT_OPTIONS = ("bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_quant_storage")


def changed_options(model_args: Any) -> dict[str, Any]:
    """The options of `model_args` (a `trl.ModelConfig`) set to other than their defaults, by name; none for
    an object that is no dataclass."""
    import dataclasses

    if not dataclasses.is_dataclass(model_args):
        return {}
    defaults = type(model_args)()
    return {f.name: getattr(model_args, f.name) for f in dataclasses.fields(model_args)
            if getattr(model_args, f.name) != getattr(defaults, f.name)}


def check_context_length(model: Any, max_length: int) -> None:
    """Refuse a `max_length` longer than the model's context, `max_position_embeddings` of its text
    config (a model without one is left alone).

    Past it, learned position embeddings (GPT-2) fail with an `IndexError` on the first batch and
    rotary ones (Llama) train on positions the model never saw, silently.

    Raises:
        `UsageError`: naming `--max_length` and the model's `max_position_embeddings`.
    """
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    context = getattr(text_config, "max_position_embeddings", None)
    if isinstance(context, int) and max_length > context:
        from ..cli import UsageError

        raise UsageError(
            f"`--max_length` {max_length} exceeds the context of the model ({type(model).__name__}: "
            f"max_position_embeddings {context}), whose positions end there: pass --max_length {context} or less "
            "(TrainingConfig.max_length)"
        )


def load_tokenizer(name_or_path: str, revision: str | None = None):
    """The tokenizer; it must have an EOS token, which separates packed documents.

    Raises:
        `UsageError`: the tokenizer has no EOS token.
    """
    from ..models import TOKENIZER_FILES, check_model_path, loading_from_hub, pretrained_tokenizer

    name_or_path = check_model_path(name_or_path, "the tokenizer", TOKENIZER_FILES, "tokenizer")
    with loading_from_hub(name_or_path, "tokenizer"):
        tokenizer = pretrained_tokenizer(name_or_path, revision)
    if tokenizer.eos_token_id is None:
        from ..cli import UsageError

        raise UsageError(
            f"the tokenizer of {name_or_path!r} has no `eos_token`: packed documents are separated by it. Give a "
            "tokenizer that has one, or set it in the tokenizer's folder (`tokenizer.eos_token = ...`, then "
            "`tokenizer.save_pretrained(folder)`)"
        )
    return tokenizer


def num_parameters(config: Any) -> int:
    """Parameter count of a Llama-like decoder (Llama, Mistral, Qwen2, ...) from its config alone.

    Counted from the config, not the module, so it is right under FSDP/ZeRO-3 sharding too.
    """
    d, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    attention = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2
    per_layer = attention + 3 * d * config.intermediate_size + 2 * d
    embeddings = vocab * d * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    return embeddings + layers * per_layer + d


def decoder_layers(model: Any) -> list[Any]:
    """The outermost modules of `model` whose class its `_no_split_modules` names (the decoder layers
    that FSDP wraps one by one), in order; a PEFT wrapper is looked through."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    layers: list[Any] = []
    taken: list[str] = []
    for path, module in model.named_modules():
        if type(module).__name__ in names and not any(path.startswith(f"{t}.") for t in taken):
            layers.append(module)
            taken.append(path)
    return layers


def compile_decoder_layers(model: Any, backend: str = "inductor", mode: str | None = None) -> int:
    """`torch.compile` each decoder layer of `model` in place (`nn.Module.compile`), leaving the
    embeddings, the head and the loss eager; returns how many were compiled.

    Raises:
        ValueError: `model` names no layer class in `_no_split_modules`.
    """
    layers = decoder_layers(model)
    if not layers:
        raise ValueError(
            f"`compile_layers`: {type(model).__name__} names no decoder layer class in `_no_split_modules`; "
            "use --torch_compile to compile the whole model instead (TrainingConfig.compile_layers)"
        )
    for layer in layers:
        layer.compile(backend=backend, mode=mode)
    return len(layers)
