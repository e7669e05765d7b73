"""Configs of the training recipes: `TrainingConfig` (shared) and one data config per recipe.

Parsed by `trl.TrlParser` together with `trl.ModelConfig` (checkpoint, dtype, attention,
LoRA, 4/8-bit), so ``--config file.yaml`` gives defaults and CLI flags override them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import TrainingArguments

from ..backends.base import default_of
from ..cli import UsageError, check_output_dir, refuse_unknown_options, unknown_options
from ..models import TOKENIZER_FILES, check_model_path
from .model_init import MODEL_SHAPES, changed_options, parameter_sharding

logger = logging.getLogger(__name__)

ModelShape = Literal[tuple(MODEL_SHAPES)]  # type: ignore[valid-type]  # the parser offers these as choices


# TrainingArguments' own default (3.0): a value other than it was set, and has no effect on a streamed run
_EPOCHS_DEFAULT = TrainingArguments.__dataclass_fields__["num_train_epochs"].default

_LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]+)*")


def check_card_metadata(license: str | None, language: list[str] | None) -> None:
    """Refuse, before training, a license or language the Hub would refuse in the card's metadata at the
    push, after training: the Hub takes license ids (``apache-2.0``, not ``Apache 2.0``) and ISO 639 codes."""
    if license is not None and not _LICENSE_ID.fullmatch(license):
        raise UsageError(
            f"--hub_license {license!r} is no Hub license id: give one of "
            "https://huggingface.co/docs/hub/repositories-licenses in lower case (apache-2.0, mit, cc-by-4.0, "
            "llama3, other)"
        )
    if bad := [code for code in language or [] if not _LANGUAGE_CODE.fullmatch(code)]:
        raise UsageError(f"--hub_language {', '.join(map(repr, bad))}: give ISO 639 codes in lower case (en, fr, zh)")


@dataclass
class TrainingConfig(TrainingArguments):
    """`TrainingArguments` for streamed, packed training, plus the evaluation hook and MFU settings.

    Args:
        max_length (`int`, *optional*, defaults to 2048): tokens of a packed block (pre-training)
            or at most of a multi-shot sequence (synthesizer).
        eval_tasks (`str`, *optional*): comma-separated tasks for `hf_ipt.evaluation.EvalCallback`.
        eval_max_examples (`int`, *optional*): examples per task at most, for quick evaluations.
        peak_tflops (`float`, *optional*): dense bf16 TFLOP/s of one device for MFU; looked up for
            known GPUs when unset.
        compile_layers (`bool`, *optional*, defaults to `False`): `torch.compile` each decoder layer
            in place and leave the loss eager, instead of `torch_compile`'s whole model.
        hub_tags, hub_license, hub_language: the model card's metadata, written with the card at the end
            of training and pushed with it (`push_to_hub`).
    """

    max_length: int = field(
        default=2048,
        metadata={"help": "Tokens per packed block (synthesizer: at most per sequence)."},
    )
    eval_tasks: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated evaluation tasks run by `hf_ipt.evaluation.EvalCallback`; results go to "
            "`output_dir/domain_eval_results.json` and the model card."
        },
    )
    eval_max_examples: int | None = field(
        default=None, metadata={"help": "Examples per evaluation task at most."}
    )
    peak_tflops: float | None = field(
        default=None,
        metadata={"help": "Peak dense bf16 TFLOP/s of ONE device, for MFU (default: known GPUs)."},
    )
    compile_layers: bool = field(
        default=False,
        metadata={
            "help": "torch.compile each decoder layer (the model's `_no_split_modules`) in place and leave the "
            "loss eager: works with --use_liger_kernel's fused linear cross-entropy, which fails under the "
            "whole-model --torch_compile with torch 2.11. Uses --torch_compile_backend/--torch_compile_mode."
        },
    )
    hub_tags: list[str] | None = field(
        default=None,
        metadata={"help": "Tags of the model card, after hf_ipt's (the local card and --push_to_hub's)."},
    )
    hub_license: str | None = field(
        default=None,
        metadata={"help": "License of the model card: a Hub license id (apache-2.0, mit, cc-by-4.0, llama3, other)."},
    )
    hub_language: list[str] | None = field(
        default=None, metadata={"help": "Languages of the model card: ISO 639 codes (en, fr...)."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Streams yield model inputs only."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "Every parameter gets a gradient: skip DDP's extra graph traversal."},
    )

    def __post_init__(self) -> None:
        self._check_evaluation()
        if self.remove_unused_columns:
            raise ValueError(
                "`remove_unused_columns` must be false: the streams yield model inputs and the stream position "
                "that checkpoints save (TrainingConfig.remove_unused_columns)"
            )
        self.compile_layers_options: dict[str, Any] | None = None
        if self.compile_layers:
            if self.torch_compile:
                raise ValueError(
                    "`compile_layers` and `torch_compile` both compile the model: pass one (compile_layers leaves "
                    "the loss eager, for --use_liger_kernel) (TrainingConfig.compile_layers)"
                )
            dynamo = os.environ.get("ACCELERATE_DYNAMO_BACKEND", "no")
            if dynamo.lower() != "no":
                raise ValueError(
                    f"`compile_layers` with ACCELERATE_DYNAMO_BACKEND={dynamo!r} (from `accelerate launch "
                    "--dynamo_backend` or the accelerate config): Accelerate would compile the whole model, loss "
                    "included, on top of the layers; launch with --dynamo_backend no (TrainingConfig.compile_layers)"
                )
            # Kept for the layers only: left in place, they would make the Trainer (Accelerate's dynamo
            # plugin) compile the whole model, loss included. Not dataclass fields: `dataclasses.replace`
            # of these args would fall back to inductor (nothing in hf_ipt, the Trainer or TRL does that).
            self.compile_layers_options = {
                "backend": self.torch_compile_backend or "inductor", "mode": self.torch_compile_mode
            }
            self.torch_compile_backend = self.torch_compile_mode = None
        super().__post_init__()
        if self.include_num_input_tokens_seen == "non_padding":
            # Packed and flattened batches hold no padding, so every token counts; the Trainer would count
            # the tokens that are not `pad_token_id`, and drop every EOS of a tokenizer whose pad is its EOS.
            self.include_num_input_tokens_seen = "all"
        for name in ("hub_tags", "hub_language"):  # `hub_language: en` in YAML: one code, not the letters e and n
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])
        check_card_metadata(self.hub_license, self.hub_language)
        from .trainer import check_steps_left, refuse_other_checkpoints, resolve_checkpoint

        # checked here, before a model loads: `last` (or `true`) becomes the newest complete checkpoint
        self.output_dir = check_output_dir(self.output_dir, "TrainingConfig.output_dir")
        self.resume_from_checkpoint = resolve_checkpoint(self.resume_from_checkpoint, self.output_dir)
        refuse_other_checkpoints(self.output_dir, self.resume_from_checkpoint)
        check_steps_left(self.resume_from_checkpoint, self.max_steps)
        self._stream_per_rank()
        if getattr(self.accelerator_config, "split_batches", False):
            raise ValueError(
                "`accelerator_config.split_batches` must be false: each rank streams its own shard; splitting "
                "one stream's batches would train every rank on rank 0's shard (TrainingConfig.accelerator_config)"
            )
        if (self.fsdp or parameter_sharding() == "fsdp") and is_bitsandbytes_optimizer(self.optim):
            raise ValueError(
                f"`optim` {getattr(self.optim, 'value', self.optim)!r} is a bitsandbytes optimizer, which fails under "
                "FSDP (its state is not sharded with the parameters): use adamw_torch_fused (FSDP already shards "
                "the optimizer state across GPUs), or launch with DDP or DeepSpeed ZeRO-3 (TrainingConfig.optim)"
            )
        if self.use_cache:
            raise ValueError(
                "`use_cache` must be false for training: with a cache, transformers (5.24) builds one in training "
                "too and then skips the mask it derives from `position_ids`, so the documents of a packed block "
                "would attend to each other; the saved model gets `use_cache: true` back for generation "
                "(TrainingConfig.use_cache)"
            )
        if self.eval_tasks:  # a wrong task path or name: now, not after the model has loaded
            check_eval_tasks(self.eval_tasks)
        if self.max_steps <= 0:
            raise ValueError(
                f"`max_steps` must be > 0 with streamed input, got {self.max_steps}: a streamed run has no epochs, "
                "`max_steps` alone sets its length (TrainingConfig.max_steps)"
            )
        if self.num_train_epochs != _EPOCHS_DEFAULT:
            logger.warning(
                "`num_train_epochs` (%s) has no effect: the recipes stream their data, each source restarting as it "
                "ends, and `max_steps` (%d) alone sets the length of the run", self.num_train_epochs, self.max_steps
            )
        if self.max_length < 2:
            raise ValueError(
                f"`max_length` must be >= 2, got {self.max_length} (TrainingConfig.max_length)"
            )
        if self.dataloader_num_workers != 0:
            raise ValueError(
                f"`dataloader_num_workers` must be 0, got {self.dataloader_num_workers}: the stream shards itself by "
                "rank and tokenizes in batches on several threads (TrainingConfig.dataloader_num_workers)"
            )
        if self.push_to_hub and not self.hub_token:
            from huggingface_hub import get_token

            if get_token() is None:  # else the Trainer's repo creation fails once the model has loaded
                raise ValueError(
                    "`push_to_hub` needs a Hub token with write access and none is set: log in with `hf auth login`, "
                    "set HF_TOKEN, or pass --hub_token; or drop --push_to_hub (TrainingConfig.push_to_hub)"
                )
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise ValueError(
                f"`peak_tflops` must be > 0, got {self.peak_tflops} (TrainingConfig.peak_tflops)"
            )

    def _check_evaluation(self) -> None:
        """Refuse the Trainer's own evaluation (`eval_strategy`, `eval_on_start`): the recipes pass no
        `eval_dataset`, so it failed with a transformers traceback once the model had loaded; hf_ipt's
        evaluation is `eval_tasks`, run every `eval_steps` by `EvalCallback`. `eval_steps` without
        `eval_tasks` evaluates nothing: a warning says so."""
        strategy = str(getattr(self.eval_strategy, "value", self.eval_strategy))
        for name, value in (("eval_strategy", strategy if strategy != "no" else None),
                            ("eval_on_start", self.eval_on_start or None)):
            if value is not None:
                raise ValueError(
                    f"`{name}` {value!r}: the recipes have no `eval_dataset` for the Trainer's evaluation; hf_ipt "
                    "evaluates with --eval_tasks (task sets, names or task files), every --eval_steps steps (unset: at "
                    f"the end): drop --{name} (TrainingConfig.{name})"
                )
        if self.eval_steps is not None and not self.eval_tasks:
            logger.warning("hf_ipt: --eval_steps %s without --eval_tasks evaluates nothing: pass --eval_tasks (e.g. "
                           "finance, or a task file) to evaluate every %s steps", self.eval_steps, self.eval_steps)

    def _stream_per_rank(self) -> None:
        """Set accelerate's `dispatch_batches` to false, whichever form `accelerator_config` came in.

        Each rank reads and tokenizes its own shard (`data.sharded_stream`); dispatching would make
        rank 0 tokenize for all, need equal batch shapes on every rank, and fails on the stream
        position each batch carries. Checked once `TrainingArguments` has made an `AcceleratorConfig`
        of a dict, a JSON file's path or an instance.
        """
        if model_parallel := model_parallel_sizes(self.parallelism_config, os.environ):
            raise ValueError(
                f"{', '.join(f'{name} {size}' for name, size in model_parallel.items())} (`parallelism_config` or "
                "the accelerate config): the ranks of a tensor, context or sequence parallel group must read the "
                "same batches, and hf_ipt's streams give every process a share of its own (part of the data would be "
                "skipped, the rest repeated). Train with DDP, FSDP2 or DeepSpeed ZeRO-3 (`hf_ipt.training."
                "accelerate_config_path`) (TrainingConfig.parallelism_config)"
            )
        config = self.accelerator_config
        if not hasattr(config, "dispatch_batches"):  # no accelerate: the Trainer cannot run anyway
            return
        if config.dispatch_batches:
            raise ValueError(
                "`accelerator_config.dispatch_batches` must be false: each rank streams its own shard; leave it "
                "out of the accelerator config (dict or JSON file) or set it to false (TrainingConfig.accelerator_config)"
            )
        config.dispatch_batches = False

    @property
    def tokens_per_step(self) -> int:
        """Tokens of one optimizer step over all ranks (exact for packed blocks; an upper bound otherwise)."""
        return (
            self.per_device_train_batch_size
            * self.gradient_accumulation_steps
            * self.world_size
            * self.max_length
        )


def check_eval_tasks(tasks: str) -> None:
    """Refuse `eval_tasks` that name no task (a missing task file, an unknown paper task) before a
    model loads; it ended in a `FileNotFoundError` traceback when the evaluation callback was built."""
    from hf_ipt.evaluation.tasks import check_task_names

    try:
        check_task_names(tasks)
    except (ValueError, OSError) as error:
        raise ValueError(f"`eval_tasks` {tasks!r}: {error} (TrainingConfig.eval_tasks)") from error


def is_bitsandbytes_optimizer(optim: Any) -> bool:
    """Whether the Trainer's `optim` name is one of bitsandbytes' optimizers (8-bit, paged, Lion, ...)."""
    try:
        from transformers.trainer_optimizer import _BITSANDBYTES_OPTIMIZERS
    except ImportError:  # another transformers layout: tell them by name
        name = str(getattr(optim, "value", optim))
        return "bnb" in name or name.startswith(("paged_", "lion_", "ademamix")) or name in ("adamw_8bit",)
    return optim in _BITSANDBYTES_OPTIMIZERS


@dataclass
class DataConfig:
    """Settings every recipe's input shares."""

    dataset_split: str = field(default="train", metadata={"help": "Split of Hub datasets."})
    text_column: str = field(
        default="text", metadata={"help": "Column with the (templified) text."}
    )
    shuffle_buffer_size: int = field(
        default=10_000, metadata={"help": "Rows in the streaming shuffle buffer (0: none)."}
    )

    def __post_init__(self) -> None:
        if self.shuffle_buffer_size < 0:
            raise ValueError(f"`shuffle_buffer_size` must be >= 0, got {self.shuffle_buffer_size}")


def _required(config: object, *names: str) -> None:
    for name in names:
        if not getattr(config, name):
            raise ValueError(f"`{name}` is required ({type(config).__name__}.{name})")


def _fraction(config: object, name: str) -> None:
    value = getattr(config, name)
    if not 0 < value < 1:
        raise ValueError(
            f"`{name}` must be in (0, 1), got {value} ({type(config).__name__}.{name})"
        )


@dataclass
class ContinualPTConfig(DataConfig):
    """Domain-adaptive continual pre-training: augmented domain text + general instructions, by tokens."""

    domain_dataset: str | None = field(
        default=None,
        metadata={
            "help": "Instruction-augmented domain text with a `text` column: files (path, glob, hf:// URL) or a dataset "
            "(folder, Hub id, `org/name@revision`; Hub sources are pinned to their commit at start)."
        },
    )
    general_dataset: str | None = field(
        default=None,
        metadata={
            "help": "General instruction data (question/response columns); unset: domain text only."
        },
    )
    general_fraction: float = field(
        default=0.5,
        metadata={"help": "Share of TOKENS from general instructions (0.5 = the paper's 1:1)."},
    )
    question_column: str = field(
        default="question", metadata={"help": "Question column of the general data."}
    )
    response_column: str = field(
        default="response", metadata={"help": "Response column of the general data."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _required(self, "domain_dataset")
        _fraction(self, "general_fraction")


@dataclass
class CollectionConfig:
    """Where the synthesizer's fine-tuning collection is and how its rows are laid out."""

    collection: str | None = field(
        default=None,
        metadata={"help": "Folder or Hub dataset in the `{name}/shard/*.jsonl` layout."},
    )
    context_column: str = field(
        default="context", metadata={"help": "Context column of collection rows."}
    )
    pairs_column: str = field(
        default="QA_list",
        metadata={"help": "Pairs column: {Q, A} maps (the reference's read-collection entries), "
                  "{question, answer} maps or [question, answer] lists."},
    )


@dataclass
class PretrainConfig(DataConfig, CollectionConfig):
    """Pre-training from scratch: raw text, `augmented_fraction` of documents augmented, the collection repeated."""

    model_shape: ModelShape = field(
        default="mistral-500m", metadata={"help": "Shape of the new model."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer (e.g. the synthesizer's Mistral tokenizer)."}
    )
    raw_dataset: str | None = field(
        default=None, metadata={"help": "Raw text with a `text` column: files (path, glob, hf:// URL) or a dataset (folder, Hub id, "
            "`org/name@revision`; Hub sources are pinned to their commit at start)."}
    )
    augmented_dataset: str | None = field(
        default=None, metadata={"help": "Instruction-augmented text of the OTHER documents."}
    )
    raw_text_column: str | None = field(
        default=None,
        metadata={"help": "Column of the text in `raw_dataset` when it is not `text_column` (e.g. `content` for "
                  "RefinedWeb, whose augmented 1/5 the builder writes to `text`); unset: `text_column`."},
    )
    augmented_fraction: float = field(
        default=0.2, metadata={"help": "Share of corpus DOCUMENTS that are augmented (paper: 1/5)."}
    )
    collection_repeats: int = field(
        default=4, metadata={"help": "Times the collection is seen within the token budget."}
    )
    collection_token_share: float | None = field(
        default=None,
        metadata={"help": "Token share of the collection; unset: from `collection_repeats`."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _required(self, "tokenizer_name_or_path", "raw_dataset")
        self.tokenizer_name_or_path = check_model_path(  # a missing local folder: now, not when it loads
            self.tokenizer_name_or_path, "--tokenizer_name_or_path", TOKENIZER_FILES, "tokenizer")
        self.raw_text_column = self.raw_text_column or self.text_column
        _fraction(self, "augmented_fraction")
        if self.collection_repeats < 1:
            raise ValueError(
                f"`collection_repeats` must be >= 1, got {self.collection_repeats} (PretrainConfig.collection_repeats)"
            )
        if self.collection_token_share is not None:
            _fraction(self, "collection_token_share")


# The `trl.ModelConfig` options that a model built from `--model_shape` uses; the others name a checkpoint,
# LoRA or 4/8-bit loading, for the recipes that train an existing checkpoint.
SCRATCH_MODEL_OPTIONS = ("dtype", "attn_implementation")


def model_parallel_sizes(parallelism_config: Any, environ: Mapping[str, str]) -> dict[str, int]:
    """The tensor, context and sequence parallel sizes above 1 (``tp_size``...), from `parallelism_config` (an
    accelerate `ParallelismConfig`) or, where it leaves one unset, from accelerate's ``PARALLELISM_CONFIG_*``
    variables (``accelerate launch`` with a config that sets them)."""
    sizes = {}
    for name in ("tp_size", "cp_size", "sp_size"):
        size = getattr(parallelism_config, name, None)
        if size is None:
            size = int(environ.get(f"PARALLELISM_CONFIG_{name.upper()}", "1") or 1)
        if size > 1:
            sizes[name] = size
    return sizes


def checkpoint_options(model_args: Any) -> dict[str, Any]:
    """The options of `model_args` (a `trl.ModelConfig`) outside `SCRATCH_MODEL_OPTIONS` that were set
    to something other than their defaults, by name."""
    return {name: value for name, value in changed_options(model_args).items() if name not in SCRATCH_MODEL_OPTIONS}


def refuse_checkpoint_options(model_args: Any) -> None:
    """Refuse checkpoint, LoRA and 4/8-bit options for a model trained from scratch (`pretrain.py`),
    which would otherwise be parsed and ignored.

    Raises:
        `UsageError`: naming each such option that was set and its value.
    """
    given = checkpoint_options(model_args)
    if given:
        named = ", ".join(f"--{name} {value!r}" for name, value in given.items())
        raise UsageError(
            f"{named}: pretrain.py builds a new model from --model_shape and trains it from scratch, so it "
            f"takes no checkpoint, LoRA or 4/8-bit options (of the model options, only "
            f"{' and '.join(f'--{n}' for n in SCRATCH_MODEL_OPTIONS)} apply). Drop them, or train an existing "
            "checkpoint with recipes/continual_pt.py"
        )


def hide_checkpoint_options(parser: argparse.ArgumentParser, model_config: type) -> argparse.ArgumentParser:
    """Leave the `model_config` options outside `SCRATCH_MODEL_OPTIONS` out of `parser`'s --help
    (they are still parsed, so that `refuse_checkpoint_options` can name them)."""
    hidden = {f.name for f in dataclasses.fields(model_config)} - set(SCRATCH_MODEL_OPTIONS)
    return hide_options(parser, tuple(hidden))


@dataclass
class SynthesizerConfig(DataConfig, CollectionConfig):
    """Synthesizer tuning: multi-shot sequences of the collection, loss on the pairs only."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _required(self, "collection")
        for name in SYNTHESIZER_UNUSED:
            if getattr(self, name) != default_of(self, name):
                raise ValueError(
                    f"`{name}` {getattr(self, name)!r} does not apply to synthesizer tuning, which reads the "
                    "collection's `{name}/shard/*.jsonl` files by `context_column` and `pairs_column`: drop it "
                    f"(SynthesizerConfig.{name})"
                )


# `DataConfig` options that `train_synthesizer.py` has no use for: refused when set, and left out of its --help.
SYNTHESIZER_UNUSED = ("text_column", "dataset_split")


def hide_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> argparse.ArgumentParser:
    """Leave the options `names` out of `parser`'s --help (they are still parsed, so that a config can refuse them)."""
    for action in parser._actions:
        if action.dest in names:
            action.help = argparse.SUPPRESS
    return parser


def parse_recipe_args(parser: Any, args: list[str] | None = None) -> tuple[Any, ...]:
    """``parser.parse_args_and_config(args)`` (a `trl.TrlParser`), with what the user wrote wrong reported as
    argparse reports its own errors (usage line, message, exit status 2) instead of a traceback.

    Checked first, so that a typo is named rather than what it left unset: an unknown flag or config-file
    key (with the closest option), a config file that is missing or not a YAML mapping, ``--config`` given
    twice or a ``config:`` key in the file (`TrlParser` reads one file), and a file's value its flag would
    refuse (`_wrong_config_value`: ``max_steps: 2.5``, an unquoted number for a text option). Then a value
    a config refuses (``--general_fraction 1``, ``--max_steps 0``).
    """
    import sys

    import yaml

    # `TrlParser` reads the file only from ``--config FILE``: given as ``--config=FILE`` it would be skipped.
    args = [part for a in (sys.argv[1:] if args is None else args)
            for part in (["--config", a.split("=", 1)[1]] if a.startswith("--config=") else [a])]
    command_line, config = list(args), None
    if command_line.count("--config") > 1:  # `TrlParser` would read the first and ignore the others
        parser.error("--config is given more than once: merge the config files into one (flags override it)")
    if "--config" in command_line:
        at = command_line.index("--config")
        config = command_line[at + 1] if at + 1 < len(command_line) else None
        del command_line[at : at + 2]
    refuse_unknown_options(parser, command_line)  # a required option may come from the config file
    if config is not None:
        try:
            with open(config, encoding="utf-8") as file:
                values = yaml.safe_load(file)
        except OSError as error:
            parser.error(f"--config {config!r}: {error.strerror or error}")
        except yaml.YAMLError as error:
            parser.error(f"--config {config!r} is not valid YAML: {' '.join(str(error).split())}")
        if values is None:  # `TrlParser` fails on it with a TypeError
            parser.error(f"--config {config!r} is empty (or only comments): give it option names and values "
                         f"(`max_steps: 100`, see the recipe's recipes/configs/*.yaml) or leave --config out")
        if not isinstance(values, dict):
            parser.error(f"--config {config!r} must hold a YAML mapping of option names to values")
        if "config" in values:  # `TrlParser` reads one file: a `config:` key naming another is ignored
            parser.error(f"the config file {config!r} sets `config: {values['config']!r}`, but a config file "
                         "cannot include another: copy that file's keys into this one")
        options = {action.dest for action in parser._actions}
        if keys := [key for key in values if key not in options and key != "env"]:
            parser.error(unknown_options(parser, [f"--{key}" for key in keys], config=config))
        if wrong := _wrong_config_value(parser, values):
            parser.error(f"the config file {config!r} sets {wrong}")
    try:
        return parser.parse_args_and_config(args)
    except ValueError as error:  # a value that a config's `__post_init__` refuses
        parser.error(str(error))


def _wrong_config_value(parser: Any, values: dict[str, Any]) -> str | None:
    """The first config-file value that the option would refuse on the command line, described, or `None`.

    argparse converts and checks a flag's value, but takes a config file's values as defaults: it converts
    a string only and checks no choice, so ``max_steps: 2.5``, ``per_device_train_batch_size: [4]`` or
    ``dtype: float61`` would reach training. Checked for typed options (numbers, booleans, choices), and
    text options given an unquoted number (``model_revision: 1.10`` is the float 1.1).
    """
    for action in parser._actions:
        value = values.get(action.dest)
        if action.type is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            # YAML reads `model_revision: 1.10` as the number 1.1: a name or path must be a string
            return (f"`{action.dest}: {value!r}`, a number, but --{action.dest} takes text: quote it as you "
                    f"mean it (`{action.dest}: \"...\"`), as YAML reads 1.10 as 1.1 and 0123 as 83")
        boolean = getattr(action.type, "__name__", None) == "string_to_bool"  # transformers' or trl's copy
        if value is None or not (action.type in (int, float) or boolean or action.choices):
            continue
        several = action.nargs in ("+", "*")
        if isinstance(value, (list, dict)) and not (several and isinstance(value, list)):
            return f"`{action.dest}: {value!r}`, but --{action.dest} takes one value"
        try:
            parser._get_values(action, [str(item) for item in (value if isinstance(value, list) else [value])])
        except argparse.ArgumentError as error:
            return f"`{action.dest}: {value!r}`: {error.message}"
    return None
