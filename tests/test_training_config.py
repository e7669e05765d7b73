"""Configs, shipped YAMLs, Accelerate configs, model shapes and the model card (rendered as text)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from hf_ipt.training import ACCELERATE_CONFIGS, accelerate_config_path
from hf_ipt.training.card import (
    EVAL_RESULTS_FILENAME,
    CardInfo,
    read_eval_results,
    render_model_card,
)
from hf_ipt.training.config import (
    ContinualPTConfig,
    PretrainConfig,
    SynthesizerConfig,
    TrainingConfig,
)
from hf_ipt.training.model_init import MODEL_SHAPES, num_parameters, shape_config

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_training_config_defaults_and_checks(tmp_path):
    args = TrainingConfig(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        max_length=64,
        use_cpu=True,
    )
    assert args.tokens_per_step == 2 * 4 * 1 * 64
    assert args.accelerator_config.dispatch_batches is False  # each rank reads its own shard
    for kwargs, message in [
        ({"max_steps": -1}, "max_steps"),
        ({"max_steps": 1, "max_length": 1}, "max_length"),
        ({"max_steps": 1, "dataloader_num_workers": 2}, "dataloader_num_workers"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainingConfig(output_dir=str(tmp_path), use_cpu=True, **kwargs)


def test_epochs_are_said_to_have_no_effect_on_a_streamed_run(tmp_path, caplog):
    """`--num_train_epochs 1` was accepted and silently ignored: `max_steps` alone sets a streamed run's length."""
    with caplog.at_level("WARNING", logger="hf_ipt"):
        TrainingConfig(output_dir=str(tmp_path), max_steps=3, use_cpu=True)
    assert "num_train_epochs" not in caplog.text  # left at its default: nothing to say
    with caplog.at_level("WARNING", logger="hf_ipt"):
        TrainingConfig(output_dir=str(tmp_path), max_steps=3, use_cpu=True, num_train_epochs=1)
    assert "`num_train_epochs` (1) has no effect: the recipes stream their data" in caplog.text
    assert "`max_steps` (3) alone sets the length of the run" in caplog.text
    with pytest.raises(ValueError, match="a streamed run has no epochs"):
        TrainingConfig(output_dir=str(tmp_path), use_cpu=True, num_train_epochs=2)


@pytest.mark.parametrize(
    ("config", "kwargs", "message"),
    [
        (ContinualPTConfig, {}, "domain_dataset"),
        (ContinualPTConfig, {"domain_dataset": "d", "general_fraction": 1.0}, "general_fraction"),
        (PretrainConfig, {"raw_dataset": "r"}, "tokenizer_name_or_path"),
        (
            PretrainConfig,
            {"raw_dataset": "r", "tokenizer_name_or_path": "t", "collection_repeats": 0},
            "collection_repeats",
        ),
        (SynthesizerConfig, {}, "collection"),
        (SynthesizerConfig, {"collection": "c", "shuffle_buffer_size": -1}, "shuffle_buffer_size"),
    ],
)
def test_data_configs_reject_bad_values(config, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config(**kwargs)


def _recipe(recipe: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(recipe, RECIPES / f"{recipe}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("recipe", ["continual_pt", "pretrain", "train_synthesizer"])
def test_shipped_yaml_configs_parse(recipe, tmp_path):
    module = _recipe(recipe)
    data_args, training_args, model_args = module.make_parser().parse_args_and_config(
        [
            "--config",
            str(RECIPES / "configs" / f"{recipe}.yaml"),
            "--output_dir",
            str(tmp_path),
            "--bf16",
            "false",
            "--use_cpu",
            "true",
        ]
    )
    assert training_args.max_steps > 0 and training_args.max_length >= 2048
    if recipe == "continual_pt":
        assert data_args.general_fraction == 0.5 and model_args.model_name_or_path.endswith(
            "Llama-3-8B"
        )
    if recipe == "pretrain":
        assert (
            data_args.model_shape,
            data_args.augmented_fraction,
            data_args.collection_repeats,
        ) == ("mistral-500m", 0.2, 4)
    if recipe == "train_synthesizer":
        assert training_args.learning_rate == 5e-6 and training_args.max_length == 4096


def test_pretrain_refuses_checkpoint_lora_and_kbit_options_and_hides_them(tmp_path):
    """pretrain.py builds its model from --model_shape: these options were parsed, listed and ignored."""
    from hf_ipt.cli import UsageError

    module = _recipe("pretrain")
    parser = module.make_parser()
    shown = parser.format_help()
    assert "--dtype" in shown and "--attn_implementation" in shown
    for hidden in ("--model_name_or_path", "--model_revision", "--use_peft", "--lora_r", "--load_in_4bit", "--load_in_8bit"):
        assert hidden not in shown
    base = ["--config", str(RECIPES / "configs" / "pretrain.yaml"), "--output_dir", str(tmp_path), "--bf16", "false",
            "--use_cpu", "true", "--dtype", "bfloat16", "--attn_implementation", "eager"]
    for extra, named in (
        (["--model_name_or_path", "org/model"], "--model_name_or_path 'org/model'"),
        (["--use_peft", "--lora_r", "8"], "--use_peft True, --lora_r 8"),
        (["--load_in_4bit", "true"], "--load_in_4bit True"),
        (["--model_revision", "v2"], "--model_revision 'v2'"),
    ):
        args = parser.parse_args_and_config([*base, *extra])
        with pytest.raises(UsageError, match=f"^{named}: pretrain.py builds a new model .*continual_pt.py"):
            module.main(*args)  # refused before any data or model is read
    from hf_ipt.training.config import checkpoint_options

    *_, model_args = parser.parse_args_and_config(base)
    assert checkpoint_options(model_args) == {}  # --dtype and --attn_implementation are the model's own


@pytest.mark.parametrize("name", ACCELERATE_CONFIGS)
def test_accelerate_configs_ship_and_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(accelerate_config_path(name)))
    expected = {
        "single_gpu": "NO",
        "ddp": "MULTI_GPU",
        "fsdp2": "FSDP",
        "deepspeed_zero3": "DEEPSPEED",
    }[name]
    assert str(config.distributed_type).split(".")[-1] == expected
    if name == "fsdp2":  # sharded checkpoints; train_and_save gathers the final model
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    if name == "deepspeed_zero3":
        assert config.deepspeed_config["zero_stage"] == 3
    with pytest.raises(ValueError, match="unknown Accelerate config"):
        accelerate_config_path("zero2")


def test_model_shapes_match_their_names():
    sizes = {
        shape: num_parameters(shape_config(shape, vocab_size=32000, max_length=2048))
        for shape in MODEL_SHAPES
    }
    assert round(sizes["llama-551m"] / 1e6) == 551  # the GPU baselines' model
    assert 480e6 < sizes["mistral-500m"] < 520e6 and 1.25e9 < sizes["mistral-1.3b"] < 1.4e9


def test_num_parameters_matches_the_module(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert num_parameters(model.config) == sum(p.numel() for p in model.parameters())


CARD_ARGS = {
    "model_name": "InstructLM-tiny",
    "repo_id": "me/InstructLM-tiny",
    "tokens_seen": 4096,
    "tokens_per_step": 1024,
    "max_steps": 8,
    "hyperparameters": {"learning_rate": 3e-4, "max_length": 512},
}


def test_model_card_renders_mix_tokens_hyperparameters_and_citation():
    info = CardInfo(
        "continual_pt",
        base_model="meta-llama/Meta-Llama-3-8B",
        datasets=["Open-Orca/OpenOrca"],
        data_mix=[
            {"source": "data/fin.parquet", "content": "augmented", "token_share": 0.5, "note": ""},
            {"source": "Open-Orca/OpenOrca", "content": "general", "token_share": 0.5, "note": ""},
        ],
    )
    card = render_model_card(info, **CARD_ARGS)
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert (
        "base_model: meta-llama/Meta-Llama-3-8B" in card
        and "datasets:\n- Open-Orca/OpenOrca" in card
    )
    assert "| data/fin.parquet | augmented | 50.0% | 2,048 |  |" in card
    assert "4,096 of a budget of 8,192 (8 steps of 1,024 tokens)" in card
    assert "**Tokens seen:** 4,096 of" in render_model_card(info, tokens_exact=False, **CARD_ARGS)  # packed blocks
    synthesizer = render_model_card(CardInfo("train_synthesizer"), tokens_exact=False, **CARD_ARGS)
    assert "**Tokens seen:** at most 4,096 (not counted: --include_num_input_tokens_seen counts them)" in synthesizer
    assert "| learning_rate | 0.0003 |" in card
    assert "No evaluation results yet." in card
    assert "@inproceedings{cheng2024instruction" in card and "2406.14491" in card
    assert 'from_pretrained("me/InstructLM-tiny")' in card
    assert "**Base model:** [meta-llama/Meta-Llama-3-8B](https://huggingface.co/meta-llama/Meta-Llama-3-8B)\n" in card
    pinned = render_model_card(replace(info, base_revision="v1.0"), **CARD_ARGS)
    assert ("**Base model:** [meta-llama/Meta-Llama-3-8B](https://huggingface.co/meta-llama/Meta-Llama-3-8B/tree/v1.0)"
            " at revision `v1.0`\n") in pinned
    assert render_model_card(replace(info, base_revision="main"), **CARD_ARGS) == card  # a branch names no weights


def test_model_card_shows_eval_results_and_local_base_models(tmp_path, monkeypatch):
    record = {
        "global_step": 8,
        "results": {"finance": {"fpb_f1": 0.71234, "n": 10}},
        "average": 0.71234,
    }
    (tmp_path / EVAL_RESULTS_FILENAME).write_text(json.dumps(record))
    results = read_eval_results(tmp_path)
    info = CardInfo(
        "pretrain",
        base_model=None,
        model_shape="mistral-500m",
        data_mix=[
            {
                "source": "raw",
                "content": "raw text",
                "token_share": None,
                "note": "80% of documents",
            }
        ],
    )
    card = render_model_card(info, eval_results=results, **CARD_ARGS)
    assert "At step 8, average 0.7123:" in card
    assert "| finance | fpb_f1 | 0.7123 |" in card and "| finance | n | 10 |" in card
    assert "trained from scratch (shape `mistral-500m`)" in card and "base_model:" not in card
    assert "| raw | raw text | - | - | 80% of documents |" in card
    local = render_model_card(
        CardInfo("train_synthesizer", base_model="/models/mistral"), **CARD_ARGS
    )
    assert "`.../mistral`" in local and "/models/" not in local and "base_model:" not in local  # not the folders
    # A relative folder looks like owner/name; the Hub would reject it as base_model (and the link is dead).
    (tmp_path / "outputs" / "cpt").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    relative = render_model_card(CardInfo("continual_pt", base_model="outputs/cpt"), **CARD_ARGS)
    assert "`outputs/cpt`" in relative and "base_model:" not in relative and "huggingface.co/outputs" not in relative
    assert read_eval_results(tmp_path / "missing") is None


def test_the_card_says_how_many_examples_of_each_task_were_scored_and_with_which_settings():
    """`--eval_max_examples 3` on a 12-example task read "average 33.33 | mytask | weighted_f1 | 33.33", with no word
    of the 3 examples; the settings EvalCallback records (as `hf-ipt eval`'s eval_settings.json) are shown."""
    settings = {"examples": {"mytask": 3, "small": 2}, "task_sizes": {"mytask": 12, "small": 2}, "max_examples": 3,
                "add_bos": False, "max_length": 8192}
    record = {"global_step": 2, "results": {"mytask": {"weighted_f1": 33.333}, "small": {"accuracy": 50.0}},
              "average": 41.67, "settings": settings}
    card = render_model_card(CardInfo("continual_pt"), eval_results=record, **CARD_ARGS)
    assert ("At step 2, average 41.67:\n\nScored on the first 3 examples of each task (`--eval_max_examples`), not "
            "the whole tasks; add_bos false, max_length 8192 tokens.\n\n| Task | Metric | Value | Examples |") in card
    assert "| mytask | weighted_f1 | 33.33 | 3 of 12 |" in card and "| small | accuracy | 50 | 2 |" in card
    whole = {**record, "settings": {**settings, "examples": {"mytask": 12, "small": 2}, "max_examples": None}}
    card = render_model_card(CardInfo("continual_pt"), eval_results=whole, **CARD_ARGS)
    assert "Scored on every example of each task; add_bos false" in card and "| 33.33 | 12 |" in card


def test_card_reads_the_file_the_eval_harness_writes():
    from hf_ipt.evaluation.callback import RESULTS_FILENAME

    assert EVAL_RESULTS_FILENAME == RESULTS_FILENAME


def test_settings_that_would_break_per_rank_streams_are_refused(tmp_path):
    from hf_ipt.training.config import TrainingConfig

    common = {"output_dir": str(tmp_path), "max_steps": 1, "use_cpu": True, "report_to": "none"}
    with pytest.raises(ValueError, match="remove_unused_columns` must be false"):
        TrainingConfig(**common, remove_unused_columns=True)
    with pytest.raises(ValueError, match="dispatch_batches` must be false"):
        TrainingConfig(**common, accelerator_config={"dispatch_batches": True})
    args = TrainingConfig(**common, accelerator_config={"split_batches": False})  # the user's own config
    assert args.accelerator_config.dispatch_batches is False
    assert TrainingConfig(**common).accelerator_config.dispatch_batches is False
    # A JSON file's path, as transformers takes it (it used to skip the check: DDP then failed on the strings
    # of the stream position, and a file asking for dispatching was accepted).
    settings = tmp_path / "accelerator.json"
    settings.write_text(json.dumps({"even_batches": False}))
    args = TrainingConfig(**common, accelerator_config=str(settings))
    assert (args.accelerator_config.dispatch_batches, args.accelerator_config.even_batches) == (False, False)
    settings.write_text(json.dumps({"dispatch_batches": True}))
    with pytest.raises(ValueError, match="dispatch_batches` must be false"):
        TrainingConfig(**common, accelerator_config=str(settings))
    from transformers.trainer_pt_utils import AcceleratorConfig

    with pytest.raises(ValueError, match="dispatch_batches` must be false"):
        TrainingConfig(**common, accelerator_config=AcceleratorConfig(dispatch_batches=True))
    with pytest.raises(ValueError, match="split_batches` must be false"):
        TrainingConfig(**common, accelerator_config={"split_batches": True})


def test_bitsandbytes_optimizers_are_refused_under_fsdp_only(tmp_path, monkeypatch):
    """bitsandbytes' optimizer state is not sharded with FSDP2's DTensor parameters: the first step fails."""
    common = {"output_dir": str(tmp_path), "max_steps": 1, "use_cpu": True, "report_to": "none"}
    assert TrainingConfig(**common, optim="paged_adamw_8bit").optim == "paged_adamw_8bit"  # DDP, one process
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` sets with the fsdp2 config
    for optim in ("adamw_bnb_8bit", "paged_adamw_8bit", "lion_32bit"):
        with pytest.raises(ValueError, match=f"`optim` '{optim}' is a bitsandbytes optimizer.*adamw_torch_fused"):
            TrainingConfig(**common, optim=optim)
    assert TrainingConfig(**common, optim="adamw_torch_fused").optim == "adamw_torch_fused"


def test_parameter_sharding_and_4bit_storage_for_it(monkeypatch):
    import torch
    from transformers import BitsAndBytesConfig

    from hf_ipt.cli import UsageError
    from hf_ipt.training.model_init import parameter_sharding, shardable_quantization

    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(name, raising=False)
    assert parameter_sharding() is None
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    assert parameter_sharding() is None  # ZeRO-2 keeps whole parameters on every rank
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert parameter_sharding() == "zero3"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert parameter_sharding() == "fsdp"

    # Packed into uint8 by default, which FSDP leaves whole on every GPU: stored in the model's dtype instead.
    assert BitsAndBytesConfig(load_in_4bit=True).bnb_4bit_quant_storage == torch.uint8
    for dtype, storage in (("bfloat16", torch.bfloat16), ("float32", torch.float32), ("auto", torch.bfloat16),
                           (None, torch.bfloat16)):
        config = shardable_quantization(BitsAndBytesConfig(load_in_4bit=True), dtype)
        assert config.bnb_4bit_quant_storage == storage
    eight = BitsAndBytesConfig(load_in_8bit=True)
    assert shardable_quantization(eight, "bfloat16") is eight and shardable_quantization(None, "bfloat16") is None
    # a storage dtype given by the user was replaced silently
    given = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_storage="float16")
    with pytest.raises(UsageError, match=r"--bnb_4bit_quant_storage float16 under FSDP / ZeRO-3: .* \(bfloat16\)"):
        shardable_quantization(given, "bfloat16")
    same = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_storage="bfloat16")
    assert shardable_quantization(same, "bfloat16").bnb_4bit_quant_storage == torch.bfloat16


def test_load_model_stores_4bit_weights_for_sharding_only_when_sharded(monkeypatch):
    from transformers import AutoModelForCausalLM
    from trl import ModelConfig

    from hf_ipt.training.model_init import load_model

    seen = []

    def fake_from_pretrained(name, **kwargs):
        seen.append(kwargs["quantization_config"].bnb_4bit_quant_storage)
        raise RuntimeError("stop before loading")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    args = ModelConfig(model_name_or_path="any", load_in_4bit=True, use_peft=True, dtype="bfloat16")
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    for sharded in (False, True):
        if sharded:
            monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
        with pytest.raises(RuntimeError, match="stop before loading"):
            load_model(args)
    assert [str(s) for s in seen] == ["torch.uint8", "torch.bfloat16"]


def test_sharded_qlora_keeps_the_storage_dtype_and_prepares_inputs_for_checkpointing(monkeypatch, tiny_model_dir):
    """Under FSDP/ZeRO-3 `prepare_model_for_kbit_training` is skipped: it upcasts every other
    parameter to fp32, away from the 4-bit storage dtype they must share to be sharded."""
    import peft
    import torch
    from trl import ModelConfig

    from hf_ipt.training.model_init import load_model

    prepared = []

    def spy(model, **kwargs):
        prepared.append(kwargs)
        return model

    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", spy)
    args = ModelConfig(model_name_or_path=str(tiny_model_dir), load_in_4bit=True, use_peft=True, lora_r=4,
                       lora_target_modules=["q_proj", "v_proj"], dtype="bfloat16")
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    load_model(args, activation_checkpointing=True)
    assert prepared == [{"use_gradient_checkpointing": True}]

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    model = load_model(args, activation_checkpointing=True)
    assert len(prepared) == 1  # not called when sharded
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16}  # 4-bit packed in bf16 storage, the rest bf16: one shardable dtype
    embeddings = model.get_input_embeddings()
    assert embeddings(torch.tensor([[1, 2]])).requires_grad  # inputs prepared for checkpointing


def test_use_cache_is_refused_for_training(tmp_path):
    """`--use_cache true` made the Trainer turn the model's cache back on after `build_trainer` turned it off:
    transformers then skips the mask it derives from `position_ids`, and packed documents attend to each other."""
    TrainingConfig(output_dir=str(tmp_path), max_steps=1, use_cpu=True, use_cache=False)
    with pytest.raises(ValueError, match="`use_cache` must be false.*attend to each other"):
        TrainingConfig(output_dir=str(tmp_path), max_steps=1, use_cpu=True, use_cache=True)


def test_synthesizer_tuning_refuses_and_hides_the_pretraining_columns(tmp_path):
    """--text_column and --dataset_split were listed in train_synthesizer.py --help, parsed and ignored."""
    shown = _recipe("train_synthesizer").make_parser().format_help()
    assert "--text_column" not in shown and "--dataset_split" not in shown and "--pairs_column" in shown
    SynthesizerConfig(collection="c", text_column="text", dataset_split="train")  # the defaults: nothing set
    for kwargs in ({"text_column": "body"}, {"dataset_split": "validation"}):
        with pytest.raises(ValueError, match=f"`{next(iter(kwargs))}` .* does not apply to synthesizer tuning"):
            SynthesizerConfig(collection="c", **kwargs)


def _parse_error(capsys, recipe: str, args: list[str]) -> str:
    from hf_ipt.training.config import parse_recipe_args

    with pytest.raises(SystemExit) as info:
        parse_recipe_args(_recipe(recipe).make_parser(), args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and "Traceback" not in err
    return err.rsplit(": error: ", 1)[1].strip()  # after the program's name


def test_a_misspelled_option_or_config_key_and_a_refused_value_are_usage_errors(tmp_path, capsys):
    """Each of these used to end in a ValueError (or FileNotFoundError) traceback from the parser."""
    base = ["--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--bf16", "false", "--max_steps", "1",
            "--domain_dataset", "d.jsonl"]
    assert _parse_error(capsys, "continual_pt", [*base, "--general_fration", "0.3", "--lerning_rate", "1"]) == (
        "unrecognized options: --general_fration (did you mean --general_fraction?), "
        "--lerning_rate (did you mean --learning_rate?)")
    assert _parse_error(capsys, "continual_pt", [*base, "stray"]) == "unrecognized arguments: stray"
    config = tmp_path / "cpt.yaml"
    config.write_text((RECIPES / "configs" / "continual_pt.yaml").read_text().replace("general_fraction:", "general_fration:"))
    for given in (["--config", str(config)], [f"--config={config}"]):
        assert _parse_error(capsys, "continual_pt", [*given, *base]) == (
            f"unknown key in the config file {str(config)!r}: general_fration (did you mean "
            "general_fraction?). Every key is the name of an option (--help lists them)")
    assert "`general_fraction` must be in (0, 1), got 1.0" in _parse_error(
        capsys, "continual_pt", [*base, "--general_fraction", "1"])
    assert "`max_steps` must be > 0" in _parse_error(
        capsys, "pretrain", ["--config", str(RECIPES / "configs" / "pretrain.yaml"), *base[:6], "--max_steps", "0"])
    assert _parse_error(capsys, "train_synthesizer", ["--config", str(tmp_path / "nope.yaml"), *base[:8]]) == (
        f"--config {str(tmp_path / 'nope.yaml')!r}: No such file or directory")
    config.write_text("max_steps: [1\n")
    assert "is not valid YAML" in _parse_error(capsys, "continual_pt", ["--config", str(config), *base])
    config.write_text("# max_steps: 10\n")  # all commented out: it said "must hold a YAML mapping"
    assert f"--config {str(config)!r} is empty (or only comments)" in _parse_error(
        capsys, "continual_pt", ["--config", str(config), *base])


def test_an_unquoted_glob_after_a_recipe_option_names_that_option(tmp_path, capsys):
    """`--raw_dataset data/raw/*.txt` unquoted: the message said to quote `--corpus`, an option no recipe has."""
    raw = tmp_path / "raw"
    raw.mkdir()
    files = [str(raw / f"{i}.txt.gz") for i in range(3)]
    for f in files:
        Path(f).write_bytes(b"")
    args = ["--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--bf16", "false", "--max_steps", "1",
            "--raw_dataset", *files]
    assert _parse_error(capsys, "pretrain", ["--config", str(RECIPES / "configs" / "pretrain.yaml"), *args]).startswith(
        f"2 path(s) follow an option that takes one value, such as {files[1]!r}: the shell expanded an unquoted "
        f"glob into files; quote it (--raw_dataset '{raw}/*.txt.gz') so that one pattern reaches ")  # the program


@pytest.mark.parametrize("recipe", ["continual_pt", "pretrain"])
def test_a_resume_with_another_data_stream_is_refused_before_the_model_loads(recipe, tmp_path, tiny_model_dir,
                                                                            monkeypatch):
    """The refusal came from `train_and_save`, after the model had loaded (minutes for an 8B model under FSDP)."""
    from hf_ipt import training
    from hf_ipt.cli import UsageError
    from hf_ipt.training.config import parse_recipe_args
    from hf_ipt.training.trainer import DATA_STREAM_FILE

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"Document {i} about markets."}) + "\n" for i in range(8)))
    out = tmp_path / "out"
    (out / "checkpoint-1").mkdir(parents=True)
    (out / "checkpoint-1" / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    (out / DATA_STREAM_FILE).write_text(json.dumps({"data": {}, "mix": {}, "batches": {}}))  # another stream
    common = ["--output_dir", str(out), "--use_cpu", "true", "--bf16", "false", "--max_steps", "3",
              "--resume_from_checkpoint", "last", "--max_length", "32"]
    if recipe == "continual_pt":
        args = [*common, "--model_name_or_path", str(tiny_model_dir), "--domain_dataset", str(data),
                "--general_dataset", ""]
        monkeypatch.setattr(training, "load_model", lambda *a, **k: pytest.fail("the model loaded first"))
    else:
        args = [*common, "--tokenizer_name_or_path", str(tiny_model_dir), "--raw_dataset", str(data),
                "--collection", "", "--model_shape", "tiny"]
        monkeypatch.setattr(training, "init_model", lambda *a, **k: pytest.fail("the model was built first"))
    module = _recipe(recipe)
    with pytest.raises(UsageError, match="another data stream"):
        module.main(*parse_recipe_args(module.make_parser(), args))


def test_a_config_given_as_config_equals_file_is_applied(tmp_path):
    """`--config=FILE` used to be checked for unknown keys and then not read: the run took the defaults."""
    from hf_ipt.training.config import parse_recipe_args

    config = tmp_path / "cpt.yaml"
    config.write_text("domain_dataset: d.jsonl\nmax_steps: 7\nlearning_rate: 1.0e-3\n")
    base = ["--output_dir", str(tmp_path / "out"), "--use_cpu", "true"]
    for given in (["--config", str(config)], [f"--config={config}"]):
        data_args, training_args, _ = parse_recipe_args(_recipe("continual_pt").make_parser(), [*given, *base])
        assert (data_args.domain_dataset, training_args.max_steps, training_args.learning_rate) == ("d.jsonl", 7, 1e-3)
    flags = parse_recipe_args(_recipe("continual_pt").make_parser(), [f"--config={config}", *base, "--max_steps", "3"])
    assert flags[1].max_steps == 3  # flags still override the file


def test_a_config_that_names_another_config_is_a_usage_error(tmp_path, capsys):
    """`TrlParser` reads one file: a `config:` key, or a second --config, was ignored and its settings lost."""
    other = tmp_path / "other.yaml"
    other.write_text("max_steps: 7\n")
    config = tmp_path / "cpt.yaml"
    config.write_text(f"domain_dataset: d.jsonl\nconfig: {other}\n")
    base = ["--output_dir", str(tmp_path / "out"), "--use_cpu", "true"]
    assert _parse_error(capsys, "continual_pt", ["--config", str(config), *base]) == (
        f"the config file {str(config)!r} sets `config: {str(other)!r}`, but a config file cannot include "
        "another: copy that file's keys into this one")
    assert _parse_error(capsys, "continual_pt", ["--config", str(config), f"--config={other}", *base]) == (
        "--config is given more than once: merge the config files into one (flags override it)")


@pytest.mark.parametrize(("line", "message"), [
    ("max_steps: 2.5", "sets `max_steps: 2.5`: invalid int value: '2.5'"),
    ("per_device_train_batch_size: [4]",
     "sets `per_device_train_batch_size: [4]`, but --per_device_train_batch_size takes one value"),
    ("dtype: float61", "sets `dtype: 'float61'`: invalid choice: 'float61'"),
    ("bf16: 2", "sets `bf16: 2`: Truthy value expected"),
    ("model_revision: 1.10", "sets `model_revision: 1.1`, a number, but --model_revision takes text: quote it"),
    ("domain_dataset: 2024", "sets `domain_dataset: 2024`, a number, but --domain_dataset takes text"),
])
def test_a_config_value_of_the_wrong_type_is_a_usage_error(tmp_path, capsys, line, message):
    """argparse checks flags but takes config values as defaults: these reached training (or a TypeError)."""
    config = tmp_path / "cpt.yaml"
    config.write_text(f"domain_dataset: d.jsonl\nmax_steps: 1\n{line}\n")
    error = _parse_error(capsys, "continual_pt", ["--config", str(config), "--output_dir", str(tmp_path / "out"),
                                                 "--use_cpu", "true"])
    assert error.startswith(f"the config file {str(config)!r} {message}")


@pytest.mark.parametrize("recipe", ["continual_pt", "pretrain", "train_synthesizer", "mini_repro"])
def test_shipped_yaml_configs_pass_the_recipes_checks(recipe, tmp_path, monkeypatch):
    from hf_ipt.training.config import parse_recipe_args

    monkeypatch.chdir(tmp_path)  # mini_repro's output_dir
    values = parse_recipe_args(_recipe(recipe).make_parser(), [
        "--config", str(RECIPES / "configs" / f"{recipe}.yaml"), "--output_dir", str(tmp_path / "out"),
        "--bf16", "false", "--use_cpu", "true"])
    assert values


def test_the_recipes_report_a_misspelled_option_as_a_usage_error(tmp_path):
    import os
    import subprocess
    import sys

    for recipe in ("continual_pt", "mini_repro"):
        res = subprocess.run([sys.executable, f"recipes/{recipe}.py", "--output_dir", str(tmp_path), "--max_stepz", "3"],
                             cwd=RECIPES.parent, capture_output=True, text=True, env=os.environ.copy(), timeout=300,
                             check=False)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert res.stderr.splitlines()[-1] == (
            f"{recipe}.py: error: unrecognized option: --max_stepz (did you mean --max_steps?)")


def test_4bit_loading_without_lora_is_a_usage_error_before_anything_loads(tmp_path):
    """It used to be a ValueError traceback from `load_model`, after the data checks and the tokenizer load."""
    import os
    import subprocess
    import sys

    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n')
    for recipe, data in (("continual_pt", "--domain_dataset"), ("train_synthesizer", "--collection")):
        res = subprocess.run([sys.executable, f"recipes/{recipe}.py", "--output_dir", str(tmp_path / "out"), "--use_cpu",
                              "true", "--max_steps", "1", data, str(tmp_path / "d.jsonl"), "--model_name_or_path",
                              str(tmp_path / "no-model"), "--load_in_4bit"],
                             cwd=RECIPES.parent, capture_output=True, text=True, env=os.environ.copy(), timeout=300,
                             check=False)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert res.stderr.splitlines()[-1] == (
            f"{recipe}.py: error: --load_in_4bit without --use_peft: 4/8-bit weights train only LoRA adapters; also "
            "pass --use_peft (QLoRA), or drop the flag to train the full weights")


def test_lora_and_4bit_options_without_their_switch_are_refused():
    """`--lora_r 64` without `--use_peft` ran a full fine-tune of an 8B model with no word; a 4-bit option
    without `--load_in_4bit` loaded the weights unquantized."""
    from trl import ModelConfig

    from hf_ipt.cli import UsageError
    from hf_ipt.training.model_init import check_kbit_options

    with pytest.raises(UsageError, match=r"^--lora_r 64, --use_dora True without --use_peft: LoRA options: a full "
                                         r"fine-tune would run, ignoring them; also pass --use_peft, or drop them$"):
        check_kbit_options(ModelConfig(lora_r=64, use_dora=True))
    with pytest.raises(UsageError, match=r"^--bnb_4bit_quant_type 'fp4' without --load_in_4bit: 4-bit options"):
        check_kbit_options(ModelConfig(use_peft=True, load_in_8bit=True, bnb_4bit_quant_type="fp4"))
    check_kbit_options(ModelConfig(use_peft=True, lora_r=64, load_in_4bit=True, bnb_4bit_quant_type="fp4"))
    check_kbit_options(ModelConfig())


@pytest.mark.parametrize(("flags", "missing"), [({"use_peft": True}, "peft"),
                                               ({"use_peft": True, "load_in_4bit": True}, "bitsandbytes")])
def test_lora_or_kbit_without_their_packages_names_the_extra(monkeypatch, flags, missing):
    """Without peft, trl said `pip install -U peft`; without bitsandbytes, transformers failed at load."""
    from types import SimpleNamespace

    from hf_ipt.cli import UsageError
    from hf_ipt.training import model_init

    monkeypatch.setattr(model_init, "find_spec", lambda name: None if name == missing else object())
    with pytest.raises(UsageError, match=rf"need {missing}, not installed: pip install .*, hf_ipt's `train` extra"):
        model_init.check_kbit_options(SimpleNamespace(**flags))


def test_a_missing_local_model_or_tokenizer_folder_is_one_line_before_anything_loads(tmp_path, monkeypatch, capsys):
    """`--model_name_or_path runs/nope` (runs/ exists) was looked up as the Hub repo runs/nope once the data
    was checked: a 404, or offline an unreachable Hub; pretrain's --tokenizer_name_or_path alike."""
    from types import SimpleNamespace

    from hf_ipt.cli import MissingFileError
    from hf_ipt.training.model_init import check_model_args, load_tokenizer

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "base").mkdir(parents=True)
    model_args = SimpleNamespace(model_name_or_path="runs/bsae", load_in_4bit=False, load_in_8bit=False, use_peft=False)
    with pytest.raises(MissingFileError, match=re.escape("--model_name_or_path 'runs/bsae': no such local folder "
                                                         "(did you mean 'runs/base'?)")):
        check_model_args(model_args)
    with pytest.raises(MissingFileError, match=re.escape("the tokenizer 'runs/tok': no such local folder")):
        load_tokenizer("runs/tok")
    assert "--tokenizer_name_or_path 'runs/tok': no such local folder (runs/ holds 'base')" in _parse_error(
        capsys, "pretrain", ["--output_dir", "out", "--max_steps", "1", "--raw_dataset", "r.jsonl",
                             "--tokenizer_name_or_path", "runs/tok"])


def test_a_tokenizer_without_eos_is_a_usage_error(tmp_path, tiny_tokenizer):
    from hf_ipt.cli import UsageError
    from hf_ipt.training.model_init import load_tokenizer

    tiny_tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("eos_token")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="has no `eos_token`: packed documents are separated by it"):
        load_tokenizer(str(tmp_path))


def test_data_seed_is_recorded_in_the_stream_spec_and_the_card_only_when_set(tmp_path):
    from types import SimpleNamespace

    import torch

    from hf_ipt.training.trainer import data_stream_spec, hyperparameters

    model = torch.nn.Linear(2, 2)
    for data_seed in (None, 7):
        args = TrainingConfig(output_dir=str(tmp_path), max_steps=1, use_cpu=True, seed=3, data_seed=data_seed)
        spec = data_stream_spec(SimpleNamespace(args=args, card=CardInfo("continual_pt")))
        assert spec["batches"].get("data_seed") == data_seed and spec["batches"]["seed"] == 3
        assert "data_seed" not in spec["batches"] or data_seed is not None  # older runs' files compare equal
        assert hyperparameters(args, model).get("data_seed") == data_seed


def test_synthesizer_tuning_refuses_a_tokenizer_whose_eos_is_text_before_the_model_loads(tmp_path, smollm2_dir):
    """SmolLM2's `</s>` is plain text: a synthesizer tuned on it would never emit the EOS generation stops at."""
    import json
    import os
    import subprocess
    import sys

    shard = tmp_path / "collection" / "squad" / "shard"
    shard.mkdir(parents=True)
    (shard / "00000.jsonl").write_text(json.dumps({"context": "Text.", "QA_list": [{"Q": "What?", "A": "Text."}]}) + "\n")
    res = subprocess.run([sys.executable, "recipes/train_synthesizer.py", "--output_dir", str(tmp_path / "out"),
                          "--use_cpu", "true", "--max_steps", "1", "--collection", str(tmp_path / "collection"),
                          "--model_name_or_path", str(smollm2_dir)],
                         cwd=RECIPES.parent, capture_output=True, text=True, env=os.environ.copy(), timeout=300,
                         check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "the synthesizer format needs a tokenizer whose BOS is '<s>' and EOS is '</s>'" in res.stderr.splitlines()[-1]
    assert "Loading weights" not in res.stderr  # refused before the model loads


def test_eval_tasks_that_name_no_task_are_refused_before_a_model_loads(tmp_path, capsys):
    """`--eval_tasks missing.json` ended in a FileNotFoundError traceback after the model had loaded."""
    base = ["--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--bf16", "false", "--max_steps", "1",
            "--domain_dataset", "d.jsonl"]
    assert _parse_error(capsys, "continual_pt", [*base, "--eval_tasks", "missing.json"]) == (
        "`eval_tasks` 'missing.json': task file or folder 'missing.json' does not exist (TrainingConfig.eval_tasks)")
    assert "unknown finance task(s) ['FBP']" in _parse_error(capsys, "continual_pt", [*base, "--eval_tasks",
                                                                                       "finance/FBP"])
    task = tmp_path / "task.json"
    task.write_text('{"metric": "accuracy", "examples": [{"input": "Up?", "options": ["up", "down"], "gold_index": 0}]}')
    args = TrainingConfig(output_dir=str(tmp_path / "out"), max_steps=1, use_cpu=True,
                          eval_tasks=f"{task},finance/FPB")  # a file and a paper task: nothing read yet
    assert args.eval_tasks == f"{task},finance/FPB"


def test_card_tags_license_and_language_are_recipe_options_checked_before_training(tmp_path, capsys):
    """The recipes pushed cards without tags, license or language; a license the Hub refuses ("Apache 2.0")
    would fail the push after training, so it is refused when the arguments are parsed."""
    from hf_ipt.training.config import parse_recipe_args

    config = tmp_path / "cpt.yaml"
    config.write_text("domain_dataset: d.jsonl\nmax_steps: 3\nhub_tags: [finance, hf_ipt-demo]\nhub_language: [en]\n")
    base = ["--config", str(config), "--output_dir", str(tmp_path / "out"), "--use_cpu", "true"]
    _, training_args, _ = parse_recipe_args(_recipe("continual_pt").make_parser(), [*base, "--hub_license", "cc-by-4.0"])
    assert (training_args.hub_tags, training_args.hub_license, training_args.hub_language) == (
        ["finance", "hf_ipt-demo"], "cc-by-4.0", ["en"])
    _, flags, _ = parse_recipe_args(_recipe("continual_pt").make_parser(), [*base, "--hub_tags", "a", "b"])
    assert flags.hub_tags == ["a", "b"]  # flags override the file
    assert _parse_error(capsys, "continual_pt", [*base, "--hub_license", "Apache 2.0"]) == (
        "--hub_license 'Apache 2.0' is no Hub license id: give one of "
        "https://huggingface.co/docs/hub/repositories-licenses in lower case (apache-2.0, mit, cc-by-4.0, llama3, other)")
    assert _parse_error(capsys, "continual_pt", [*base, "--hub_language", "en", "English"]) == (
        "--hub_language 'English': give ISO 639 codes in lower case (en, fr, zh)")
    config.write_text("domain_dataset: d.jsonl\nmax_steps: 3\nhub_tags: finance\nhub_language: en\n")
    _, single, _ = parse_recipe_args(_recipe("continual_pt").make_parser(), base)  # 'en' was checked as 'e', 'n'
    assert (single.hub_tags, single.hub_language) == (["finance"], ["en"])


def test_the_trainers_own_evaluation_is_refused_and_eval_steps_without_tasks_warned(tmp_path, capsys, caplog):
    """`--eval_strategy steps --eval_steps 500 --eval_tasks finance` failed with a transformers traceback ("you
    didn't pass an eval_dataset") once the model had loaded; `--eval_steps` without `--eval_tasks` did nothing."""
    base = ["--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--bf16", "false", "--max_steps", "1",
            "--domain_dataset", "d.jsonl", "--eval_tasks", "finance"]
    assert _parse_error(capsys, "continual_pt", [*base, "--eval_strategy", "steps", "--eval_steps", "500"]) == (
        "`eval_strategy` 'steps': the recipes have no `eval_dataset` for the Trainer's evaluation; hf_ipt evaluates "
        "with --eval_tasks (task sets, names or task files), every --eval_steps steps (unset: at the end): drop "
        "--eval_strategy (TrainingConfig.eval_strategy)")
    assert "drop --eval_on_start" in _parse_error(capsys, "continual_pt", [*base, "--eval_on_start", "true"])
    with caplog.at_level("WARNING", logger="hf_ipt"):
        TrainingConfig(output_dir=str(tmp_path / "out"), max_steps=1, use_cpu=True, eval_steps=500)
    assert "--eval_steps 500 without --eval_tasks evaluates nothing" in caplog.text


def test_tensor_context_or_sequence_parallelism_is_refused(tmp_path, monkeypatch):
    """Accelerate feeds one batch to a whole tensor/context-parallel group, but hf_ipt's streams give each
    process its own share: with tp 2 on 4 processes only 2 of the 4 shares were ever read."""
    from accelerate.parallelism_config import ParallelismConfig

    from hf_ipt.training.config import TrainingConfig, model_parallel_sizes

    for name in ("TP", "CP", "SP"):
        monkeypatch.delenv(f"PARALLELISM_CONFIG_{name}_SIZE", raising=False)
    assert model_parallel_sizes(None, {}) == {} and model_parallel_sizes(ParallelismConfig(dp_shard_size=2), {}) == {}
    assert model_parallel_sizes(None, {"PARALLELISM_CONFIG_CP_SIZE": "2"}) == {"cp_size": 2}
    monkeypatch.setenv("PARALLELISM_CONFIG_TP_SIZE", "2")
    with pytest.raises(ValueError, match=r"^tp_size 2 \(`parallelism_config` or the accelerate config\): the ranks"):
        TrainingConfig(output_dir=str(tmp_path / "out"), use_cpu=True, max_steps=1)


def test_a_4bit_model_keeps_its_loaded_layout_on_avx512_bf16_cpus():
    """bitsandbytes repacked a Linear4bit's weight into a uint8 CPU layout at an eval-mode forward on AVX512-BF16
    CPUs only: under FSDP2 one rank's layers then gathered other sizes (QLoRA failed by the CPU it ran on)."""
    import torch

    from hf_ipt.training.model_init import keep_4bit_layout

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[0].support_avx512bf16_for_cpu = True  # as bitsandbytes sets it on such a CPU
    keep_4bit_layout(model)
    assert model[0].support_avx512bf16_for_cpu is False and not hasattr(model[1], "support_avx512bf16_for_cpu")
