"""Fine-tune a base LM into an instruction synthesizer (Instruction Pre-Training, Cheng et al. 2024).

Data in the ``ft-instruction-synthesizer-collection`` layout (``{name}/shard/*.jsonl``, each
row a context and its pairs). One sequence concatenates one-shot examples of the SAME source
in the synthesizer's exact format (`hf_ipt.protocol`); the loss covers only the pairs (and
each closing ``</s>``). The result loads in hf_ipt's synthesis backends.

# Mistral-7B-v0.1 on 8 GPUs (FSDP2)
```bash
accelerate launch --config_file $(python -c "from hf_ipt.training import accelerate_config_path as p; print(p('fsdp2'))") \
    recipes/train_synthesizer.py --config recipes/configs/train_synthesizer.yaml
```

Resume with ``--resume_from_checkpoint last``; push with ``--push_to_hub --hub_model_id you/name``.
"""

import argparse

CONFIG_HELP = "--config FILE.yaml: defaults from a YAML file (recipes/configs/train_synthesizer.yaml); flags override them."


def main(data_args, training_args, model_args):
    from dataclasses import asdict

    from hf_ipt.protocol import check_marker_tokens
    from hf_ipt.training import (
        CardInfo,
        build_trainer,
        check_data,
        load_model,
        load_tokenizer,
        synthesizer_dataset,
        train_and_save,
    )
    from hf_ipt.training.model_init import check_model_args
    from hf_ipt.training.trainer import hub_datasets, refuse_changed_stream

    check_model_args(model_args)  # a missing local model folder, --load_in_4bit without --use_peft: first
    check_data(data_args)  # paths and columns (hf:// URLs pinned to a commit), before a model loads
    tokenizer = load_tokenizer(model_args.model_name_or_path, model_args.model_revision)
    check_marker_tokens(tokenizer)  # "<s>"/"</s>" as the BOS/EOS the synthesizer stops at, before the model loads
    dataset, data_mix = synthesizer_dataset(data_args, tokenizer, training_args)
    card = CardInfo(
        "train_synthesizer",
        base_model=model_args.model_name_or_path,
        base_revision=model_args.model_revision,
        data_mix=data_mix,
        data_settings=asdict(data_args),
        datasets=hub_datasets(data_args.collection),
    )
    refuse_changed_stream(training_args, card)  # a resume with other data settings: before the model loads
    model = load_model(model_args, training_args.activation_checkpointing, training_args.seed)
    train_and_save(build_trainer(model, tokenizer, dataset, training_args, card))


def make_parser(subparsers: argparse._SubParsersAction | None = None):
    from trl import ModelConfig, TrlParser

    from hf_ipt.cli import tidy_help
    from hf_ipt.training import SynthesizerConfig, TrainingConfig
    from hf_ipt.training.config import SYNTHESIZER_UNUSED, hide_options

    dataclass_types = (SynthesizerConfig, TrainingConfig, ModelConfig)
    if subparsers is not None:
        parser = subparsers.add_parser("train-synthesizer", help="Synthesizer tuning", dataclass_types=dataclass_types)
    else:
        parser = TrlParser(dataclass_types, epilog=CONFIG_HELP)
    # --text_column and --dataset_split are pre-training options: the collection is read by its own columns.
    return hide_options(tidy_help(parser), SYNTHESIZER_UNUSED)


if __name__ == "__main__":
    from hf_ipt.cli import usage_errors
    from hf_ipt.training.config import parse_recipe_args

    parser = make_parser()
    args = parse_recipe_args(parser)  # an unknown option or config key, a refused value: usage line, exit status 2
    with usage_errors(parser):  # a wrong data path or column: usage line, message, exit status 2
        main(*args)
