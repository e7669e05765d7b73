"""Domain-adaptive continual pre-training (Instruction Pre-Training, Cheng et al. 2024).

Instruction-augmented domain text, mixed 1:1 BY TOKENS with general instructions written as
plain ``{question} {response}`` (no chat template), packed into blocks without dropping a
token, plain next-token loss.

# Llama-3-8B on 8 GPUs (FSDP2)
```bash
accelerate launch --config_file $(python -c "from hf_ipt.training import accelerate_config_path as p; print(p('fsdp2'))") \
    recipes/continual_pt.py --config recipes/configs/continual_pt.yaml
```

# QLoRA with an 8-bit optimizer on one GPU
```bash
accelerate launch recipes/continual_pt.py --config recipes/configs/continual_pt.yaml \
    --use_peft --load_in_4bit --dtype bfloat16 --optim paged_adamw_8bit --output_dir Llama-3-8B-finance-qlora
```

Resume with ``--resume_from_checkpoint last``; push with ``--push_to_hub --hub_model_id you/name``.
"""

import argparse

CONFIG_HELP = "--config FILE.yaml: defaults from a YAML file (recipes/configs/continual_pt.yaml); flags override them."


def main(data_args, training_args, model_args):
    from dataclasses import asdict

    from hf_ipt.training import (
        CardInfo,
        build_trainer,
        check_data,
        continual_pt_dataset,
        load_model,
        load_tokenizer,
        train_and_save,
    )
    from hf_ipt.training.model_init import check_model_args
    from hf_ipt.training.trainer import hub_datasets, refuse_changed_stream

    check_model_args(model_args)  # a missing local model folder, --load_in_4bit without --use_peft: first
    check_data(data_args)  # paths and columns (hf:// URLs pinned to a commit), before a model loads
    tokenizer = load_tokenizer(model_args.model_name_or_path, model_args.model_revision)
    dataset, data_mix = continual_pt_dataset(data_args, tokenizer, training_args)
    card = CardInfo(
        "continual_pt",
        base_model=model_args.model_name_or_path,
        base_revision=model_args.model_revision,
        data_mix=data_mix,
        data_settings=asdict(data_args),
        datasets=hub_datasets(data_args.domain_dataset, data_args.general_dataset),
    )
    refuse_changed_stream(training_args, card)  # a resume with other data settings: before the model loads
    model = load_model(model_args, training_args.activation_checkpointing, training_args.seed)
    train_and_save(build_trainer(model, tokenizer, dataset, training_args, card))


def make_parser(subparsers: argparse._SubParsersAction | None = None):
    from trl import ModelConfig, TrlParser

    from hf_ipt.cli import tidy_help
    from hf_ipt.training import ContinualPTConfig, TrainingConfig

    dataclass_types = (ContinualPTConfig, TrainingConfig, ModelConfig)
    if subparsers is not None:
        return tidy_help(subparsers.add_parser(
            "continual-pt", help="Continual pre-training", dataclass_types=dataclass_types
        ))
    return tidy_help(TrlParser(dataclass_types, epilog=CONFIG_HELP))


if __name__ == "__main__":
    from hf_ipt.cli import usage_errors
    from hf_ipt.training.config import parse_recipe_args

    parser = make_parser()
    args = parse_recipe_args(parser)  # an unknown option or config key, a refused value: usage line, exit status 2
    with usage_errors(parser):  # a wrong data path or column: usage line, message, exit status 2
        main(*args)
