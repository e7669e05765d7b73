"""Pre-training from scratch (Instruction Pre-Training, Cheng et al. 2024).

A model of a named shape (the paper's ``mistral-500m`` / ``mistral-1.3b``) trained on raw text
where 1/5 of the documents are instruction-augmented, plus the instruction synthesizer's
fine-tuning collection (templified) seen ``collection_repeats`` (4) times within the token
budget; packed blocks, no token dropped, no attention across documents, plain next-token loss.

```bash
accelerate launch --config_file $(python -c "from hf_ipt.training import accelerate_config_path as p; print(p('ddp'))") \
    recipes/pretrain.py --config recipes/configs/pretrain.yaml
```

Resume with ``--resume_from_checkpoint last``; push with ``--push_to_hub --hub_model_id you/name``.
"""

import argparse

CONFIG_HELP = "--config FILE.yaml: defaults from a YAML file (recipes/configs/pretrain.yaml); flags override them."


def main(data_args, training_args, model_args):
    from dataclasses import asdict

    from hf_ipt.training import (
        CardInfo,
        build_trainer,
        check_data,
        init_model,
        load_tokenizer,
        pretrain_dataset,
        train_and_save,
    )
    from hf_ipt.training.config import refuse_checkpoint_options
    from hf_ipt.training.trainer import hub_datasets, refuse_changed_stream

    refuse_checkpoint_options(model_args)  # --model_name_or_path, --use_peft, ...: continual_pt.py's options
    check_data(data_args)  # paths and columns (hf:// URLs pinned to a commit), before a model loads
    tokenizer = load_tokenizer(data_args.tokenizer_name_or_path)
    dataset, data_mix = pretrain_dataset(data_args, tokenizer, training_args)
    card = CardInfo(
        "pretrain",
        model_shape=data_args.model_shape,
        data_mix=data_mix,
        data_settings=asdict(data_args),
        datasets=hub_datasets(
            data_args.raw_dataset, data_args.augmented_dataset, data_args.collection
        ),
    )
    refuse_changed_stream(training_args, card)  # a resume with other data settings: before the model is built
    model = init_model(
        data_args.model_shape,
        tokenizer,
        training_args.max_length,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
        seed=training_args.seed,
    )
    train_and_save(build_trainer(model, tokenizer, dataset, training_args, card))


def make_parser(subparsers: argparse._SubParsersAction | None = None):
    from trl import ModelConfig, TrlParser

    from hf_ipt.cli import tidy_help
    from hf_ipt.training import PretrainConfig, TrainingConfig
    from hf_ipt.training.config import hide_checkpoint_options

    dataclass_types = (PretrainConfig, TrainingConfig, ModelConfig)
    if subparsers is not None:
        parser = subparsers.add_parser("pretrain", help="Pre-training from scratch", dataclass_types=dataclass_types)
    else:
        parser = TrlParser(dataclass_types, epilog=CONFIG_HELP)
    # The model is built from --model_shape: of trl's ModelConfig only --dtype and --attn_implementation apply.
    return hide_checkpoint_options(tidy_help(parser), ModelConfig)


if __name__ == "__main__":
    from hf_ipt.cli import usage_errors
    from hf_ipt.training.config import parse_recipe_args

    parser = make_parser()
    args = parse_recipe_args(parser)  # an unknown option or config key, a refused value: usage line, exit status 2
    with usage_errors(parser):  # a wrong data path or column: usage line, message, exit status 2
        main(*args)
