"""The Trainer every recipe uses: hf_ipt's callbacks and model card around `transformers.Trainer`.

A recipe builds a model, a tokenizer and a stream, then calls `build_trainer` and
`train_and_save`; everything else (resume, saving, the card, pushing) happens here once.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME  # written last in a checkpoint
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..cli import checkpoint_folders
from ..corpus import (
    COMMIT,
    SUPPORTED,
    hub_id_parts,
    hub_url_parts,
    is_file_corpus,
    is_hub_url,
    local_files,
    output_files,
)
from . import varlen
from .callbacks import (
    ThroughputCallback,
    TokenBudgetProgressCallback,
    eval_callback,
    flops_per_token,
    peak_flops,
)
from .card import CardInfo, is_hub_id, render_model_card, run_eval_results
from .data import LINES_NOT_FILES, text_folder
from .model_init import check_context_length, compile_decoder_layers, parameter_sharding
from .packing import ISOLATION_TOLERANCE, isolation_gap, packed_collator
from .position import STREAM_POSITION, save_position, saved_processes

logger = logging.getLogger(__name__)


class IPTTrainer(Trainer):
    """`Trainer` that writes hf_ipt's model card (also on `push_to_hub`) from `card`.

    Args:
        card (`CardInfo`): what the recipe knows about the run (data mix, base model).
        *args, **kwargs: as for `transformers.Trainer`.
    """

    def __init__(self, *args: Any, card: CardInfo, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.card = card
        # `state.global_step` while a batch trained -> the stream position after it (`position.Position`): the
        # batches of step N+1 train while `global_step` is N (`checkpoint_position`)
        self.step_positions: dict[int, str] = {}
        self.rng_checkpoint: str | None = None  # set by `resume_stream`: restore its RNG after the 1st batch
        self.uncounted_steps = 0  # steps before the resume whose tokens the Trainer did not count (`uncounted_steps`)
        # `on_log` runs callbacks in list order and the report_to integrations come before the
        # user's: put the throughput callback first so every logger sees its metrics.
        callbacks = self.callback_handler.callbacks
        for callback in [c for c in callbacks if isinstance(c, ThroughputCallback)]:
            callbacks.remove(callback)
            callbacks.insert(1, callback)
        # the step of the JIT checkpoint (`--enable_jit_checkpoint`, on SIGTERM) that ended the training, if one did
        self.signal_checkpoint: int | None = None
        for manager in [m for c in callbacks if (m := getattr(c, "jit_manager", None)) is not None]:
            manager.execute_jit_checkpoint = self._noting_signal_stop(manager.execute_jit_checkpoint)

    def _noting_signal_stop(self, execute: Any) -> Any:
        def execute_jit_checkpoint() -> None:
            self.signal_checkpoint = self.state.global_step
            execute()

        return execute_jit_checkpoint

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """`Trainer.training_step`, after taking the batch's stream position out of the model inputs."""
        position = inputs.pop(STREAM_POSITION, None)
        step = self.state.global_step
        loss = super().training_step(model, inputs, *args, **kwargs)
        if position is not None:
            self.step_positions = {s: p for s, p in self.step_positions.items() if s >= step - 1}
            self.step_positions[step] = position
        return loss

    def checkpoint_position(self) -> str | None:
        """The stream position after the last batch of the last finished optimizer step (`state.global_step`),
        which a checkpoint's weights have seen. A checkpoint written in the middle of a step, as transformers'
        JIT checkpoint on SIGTERM (``--enable_jit_checkpoint``) does from `on_pre_optimizer_step`, holds the
        weights before the batches of the step under way: a resume must train on them, not skip them. `None`
        when no batch of that step was trained in this process: the resume replays the stream instead."""
        return self.step_positions.get(self.state.global_step - 1)

    def get_batch_samples(self, *args: Any, **kwargs: Any) -> Any:
        """`Trainer.get_batch_samples`; after the first batches of a run resumed at its stream position, the
        checkpoint's random state is restored again, as the Trainer's replay does (`rng_to_sync`): starting
        the data loader drew from the generator after `ignore_data_skip` had restored it."""
        batches = super().get_batch_samples(*args, **kwargs)
        if self.rng_checkpoint is not None:
            self._load_rng_state(self.rng_checkpoint)
            self.rng_checkpoint = None
        return batches

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """`Trainer._load_optimizer_and_scheduler`, then the learning rate of the schedule as it is now
        (`schedule_learning_rates`): the optimizer saved the last rate of the checkpoint's schedule."""
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            schedule_learning_rates(self.lr_scheduler, self.optimizer, self.args.learning_rate)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """Save every rank's stream position into the checkpoint too, and under FSDP's sharded state dict
        the model's config and tokenizer (`save_loading_files`), before the Trainer's own files (so a Hub
        push of the checkpoint has them, and a checkpoint with ``trainer_state.json`` has them all)."""
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        save_stream_positions(folder, self.checkpoint_position(), self.args)
        save_loading_files(self, folder)
        super()._save_checkpoint(model, trial)

    def create_model_card(
        self,
        model_name: str | None = None,
        tags: str | list[str] | None = None,
        license: str | None = None,
        language: str | list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write ``output_dir/README.md`` (`Trainer.push_to_hub` calls it with its keyword arguments).

        `tags` (``push_to_hub(tags=...)``) and the model's own (`model.add_model_tags`) follow hf_ipt's
        in the card's metadata, with `license` and `language`; the Trainer's other card arguments
        (`finetuned_from`, `dataset`, ...) are not used: the recipe's `card` knows the base model and data.
        """
        if not self.is_world_process_zero():
            return
        if unused := sorted(key for key, value in kwargs.items() if value is not None):
            logger.warning("hf_ipt: the model card ignores %s: the base model and datasets come from the recipe",
                           ", ".join(unused))
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        tags += getattr(self.model, "model_tags", None) or []  # `push_to_hub` adds them, `create_model_card()` not
        args = self.args
        model_name = model_name or Path(args.output_dir).name
        # The commit `from_pretrained` resolved the base model's revision (a branch, `main`) to.
        commit = getattr(getattr(self.model, "config", None), "_commit_hash", None)
        card = replace(self.card, adapter=bool(getattr(self.model, "peft_config", None)),
                       base_revision=commit if self.card.base_model and commit else self.card.base_revision)
        tokens, exact = self.trained_tokens()
        text = render_model_card(
            card,
            model_name=model_name,
            # not pushed: the folder the card sits in, which `from_pretrained` loads (its bare name does not)
            repo_id=self.hub_model_id or args.hub_model_id or str(args.output_dir),
            tokens_seen=tokens,
            tokens_per_step=args.tokens_per_step,
            max_steps=args.max_steps,
            hyperparameters=hyperparameters(args, self.model),
            eval_results=run_eval_results(args.output_dir, self.state.log_history),
            tokens_exact=exact,
            tags=tags,
            license=license,
            language=language,
        )
        Path(args.output_dir, "README.md").write_text(text, encoding="utf-8")

    def trained_tokens(self) -> tuple[int, bool]:
        """Tokens of the whole run, and whether the Trainer counted them all (``--include_num_input_tokens_seen``).

        A count is used only while counting is on: a run resumed without it keeps the count of the
        steps before the resume. Steps trained before counting was turned on are not counted: they
        add `tokens_per_step` each (exact for packed blocks, an upper bound for other sequences).
        """
        per_step = self.args.tokens_per_step
        if not counts_tokens(self.args):
            return self.state.global_step * per_step, False
        return self.state.num_input_tokens_seen + self.uncounted_steps * per_step, not self.uncounted_steps


def schedule_learning_rates(scheduler: Any, optimizer: Any, learning_rate: float) -> None:
    """Set `optimizer`'s learning rates to `scheduler`'s at the step it was restored to, with the peak
    `learning_rate` of this run.

    A run resumed with a larger ``max_steps`` (or other warmup steps) builds its schedule from the new
    values, but the optimizer's saved state holds the rate the checkpoint's schedule gave last: 0 at
    the end of a cosine or linear decay, so the first resumed step trained at that rate, then jumped
    to the new schedule. The restored schedule also kept the checkpoint's peak rate, so a
    ``--learning_rate`` changed at the resume was ignored: it is used now, with a warning (when all
    parameter groups had the one peak rate). With the same settings the rates are unchanged.
    Schedules other than `torch.optim.lr_scheduler.LambdaLR` (all of `transformers.get_scheduler`'s
    but ``reduce_lr_on_plateau``; DeepSpeed's own) are left as they are.
    """
    from torch.optim.lr_scheduler import LambdaLR

    if not isinstance(scheduler, LambdaLR):
        return
    saved = set(scheduler.base_lrs)
    if len(saved) == 1 and learning_rate not in saved:
        logger.warning("hf_ipt: the checkpoint trained at a peak learning rate of %g; this run's --learning_rate "
                       "%g is used from the resumed step on", saved.pop(), learning_rate)
        scheduler.base_lrs = [learning_rate] * len(scheduler.base_lrs)
        for group in optimizer.param_groups:
            group["initial_lr"] = learning_rate
    rates = [base * rate(scheduler.last_epoch) for base, rate in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"] = rate
    scheduler._last_lr = rates  # what the Trainer logs as the step's `learning_rate`


class UncountedTokensCallback(TrainerCallback):
    """Zero ``state.num_input_tokens_seen`` of a run that does not count tokens: resumed without
    ``--include_num_input_tokens_seen``, the Trainer keeps the count it restored, and its
    checkpoints would pass it off as the count of all their steps (`uncounted_steps`)."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not counts_tokens(args):
            state.num_input_tokens_seen = 0


def counts_tokens(args: Any) -> bool:
    """Whether the Trainer counts input tokens (``--include_num_input_tokens_seen``: a bool, or
    ``"no"`` / ``"all"`` / ``"non_padding"``)."""
    return args.include_num_input_tokens_seen not in ("no", False)


def uncounted_steps(checkpoint: str) -> int:
    """Steps up to `checkpoint` whose tokens the Trainer did not count: all of them when it saved no count
    (trained without ``--include_num_input_tokens_seen``), else none."""
    state = json.loads(Path(checkpoint, TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    return 0 if state.get("num_input_tokens_seen") else int(state.get("global_step") or 0)


def save_stream_positions(checkpoint: str, position: str | None, args: Any) -> None:
    """Gather every rank's stream position and write them all from the process(es) that save.

    Every rank calls this (a collective when there are several). The processes that write the
    checkpoint (`args.should_save`: rank 0, or each node's first with `save_on_each_node`) write
    all the ranks' files, so the checkpoint is complete where it is saved: in a Hub push made
    from rank 0 and on nodes that share no file system.
    """
    positions = [position]
    if args.world_size > 1:
        from accelerate.utils import gather_object

        positions = gather_object([position])
    if args.should_save:
        for rank, saved in enumerate(positions):
            if saved is not None:
                save_position(checkpoint, rank, saved)


def mixed_precision(args: Any) -> str:
    """The autocast the run trains under: ``bf16``, ``fp16`` or ``no``. `TrainingArguments` reads
    it from ``--bf16``/``--fp16`` or else from ``accelerate launch`` (``mixed_precision`` of its
    config, passed as ``ACCELERATE_MIXED_PRECISION``), which ``args.bf16`` does not show."""
    return getattr(args, "mixed_precision", None) or ("bf16" if args.bf16 else "fp16" if args.fp16 else "no")


def hyperparameters(args: Any, model: Any) -> dict[str, Any]:
    """The settings a reader of the card needs to reproduce the run."""
    values = {
        "learning_rate": args.learning_rate,
        "lr_scheduler_type": str(args.lr_scheduler_type).split(".")[-1].lower(),
        # a `warmup_steps` under 1 is a fraction of max_steps: the card gives the steps it resolved to
        "warmup_steps": args.get_warmup_steps(args.max_steps),
        "optimizer": str(args.optim).split(".")[-1].lower(),
        "weight_decay": args.weight_decay,
        "max_grad_norm": args.max_grad_norm,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "num_processes": args.world_size,
        "max_length": args.max_length,
        "tokens_per_step": args.tokens_per_step,
        "max_steps": args.max_steps,
        "precision": {"no": "fp32"}.get(mixed_precision(args), mixed_precision(args)),
        "seed": args.seed,
    }
    if getattr(args, "lr_scheduler_kwargs", None):  # e.g. cosine_with_min_lr's min_lr_rate
        values["lr_scheduler_kwargs"] = json.dumps(args.lr_scheduler_kwargs, sort_keys=True)
    if getattr(args, "data_seed", None) is not None:  # the streams' shuffling seed
        values["data_seed"] = args.data_seed
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None and str(dtype) != "torch.float32":
        values["weights_dtype"] = str(dtype).removeprefix("torch.")
    quantization = getattr(getattr(model, "config", None), "quantization_config", None)
    if quantization is not None:
        quantization = quantization if isinstance(quantization, dict) else quantization.to_dict()
        bits = "4-bit" if quantization.get("load_in_4bit") else "8-bit" if quantization.get("load_in_8bit") else None
        kind = quantization.get("bnb_4bit_quant_type") if bits == "4-bit" else None
        values["quantization"] = " ".join(filter(None, [bits, kind, quantization.get("quant_method")]))
    peft_config = getattr(model, "peft_config", None)
    if peft_config:
        lora = next(iter(peft_config.values()))
        values["lora"] = f"r={lora.r}, alpha={lora.lora_alpha}, dropout={lora.lora_dropout}"
    return values


def hub_datasets(*sources: str | None) -> list[str]:
    """The Hub datasets among the sources, for the card's ``datasets:`` metadata: ids without their
    ``@revision`` and the repos of ``hf://`` URLs; not local files or folders.

    An ``org/name`` id that is no local path is taken for a Hub dataset (`check_data` refuses one
    the Hub does not have). A one-word id (``squad``, ``imdb``) is taken only when pinned to a commit
    (``squad@<sha>``, as `check_data` pins the ids it finds on the Hub): unpinned (offline, or never
    checked) ``news`` or ``data`` may as well be a folder not made yet, and the card would link
    another dataset. A local folder of the same name always wins (`card.is_hub_id`).
    """
    ids = []
    for source in filter(None, sources):
        if is_hub_url(source):
            ids.append(hub_url_parts(source)[0])
        elif not (is_file_corpus(source) or os.path.exists(source)):
            repo, revision = hub_id_parts(source)
            if "/" in repo or COMMIT.fullmatch(revision or ""):
                ids.append(repo)
    return list(dict.fromkeys(s for s in ids if is_hub_id(s)))


def build_trainer(
    model: Any, tokenizer: Any, train_dataset: Any, args: Any, card: CardInfo
) -> IPTTrainer:
    """An `IPTTrainer` with packed batches, throughput/MFU logging, token progress and the eval hook.

    Raises:
        `UsageError`: `args.max_length` exceeds the model's context (`check_context_length`).
    """
    check_context_length(model, args.max_length)
    varlen.check_model(model)
    if (message := single_cpu_process_warning(os.environ)) is not None:
        logger.warning(message)
    if (message := emulated_bf16_warning(mixed_precision(args), args.device.type, cpu_has_native_bf16())) is not None:
        logger.warning(message)
    try:
        flops = flops_per_token(model.config)
    except AttributeError:
        logger.warning("no MFU: %s is not a Llama-like config", type(model.config).__name__)
        flops, peak = 0.0, None
    else:
        peak = peak_flops(args.peak_tflops)
    # With `use_cache`, transformers builds a cache even in training and then skips the mask it
    # derives from `position_ids`: packed documents would attend to each other (5.24).
    model.config.use_cache = False
    import torch

    precision = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision(args))
    # Under FSDP / ZeRO-3 every rank holds the same architecture: rank 0 alone runs the check (on CPU,
    # before sharding, it would cost every rank a forward of the whole model and autocast copies).
    probe = parameter_sharding() is None or int(os.environ.get("RANK", "0")) == 0
    gap = isolation_gap(model, autocast_dtype=precision) if probe else None
    if gap is not None and gap > ISOLATION_TOLERANCE:
        logger.warning(
            "hf_ipt: %s (attention %r) lets packed documents attend to each other: a document's logits moved by "
            "%.2g of their scale when the document packed before it changed (rounding alone stays under %.0e). "
            "Training goes on with attention across the documents of each %d-token block (classic GPT packing). "
            "To keep them apart, use another --attn_implementation if the model has one, or a model whose mask "
            "follows position_ids (Llama, Mistral, Qwen, Gemma, GPT-2, GPT-NeoX, OLMo, ...)",
            type(model).__name__, getattr(model.config, "_attn_implementation", None), gap, ISOLATION_TOLERANCE,
            args.max_length,
        )
    elif gap is not None:
        logger.info("hf_ipt: packed documents stay apart (logit change %.2g of scale)", gap)
    if getattr(args, "compile_layers_options", None):  # after the check, which runs the model eager
        count = compile_decoder_layers(model, **args.compile_layers_options)
        logger.info("hf_ipt: compile_layers: %d decoder layers compiled (%s)", count, args.compile_layers_options)
    throughput = ThroughputCallback(args.tokens_per_step, flops, peak)
    trainer = IPTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=packed_collator(model),
        processing_class=tokenizer,
        callbacks=[throughput, UncountedTokensCallback()],
        card=card,
    )
    if args.eval_tasks:
        evaluation = eval_callback(args, tokenizer, trainer)
        trainer.add_callback(evaluation)
        throughput.excluded.append(evaluation)  # tokens/s and MFU of training alone
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(TokenBudgetProgressCallback(args.tokens_per_step))
    return trainer


_MPI_WORLD_SIZES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 (AVX-512 BF16, AMX), Arm (FEAT_BF16)


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU computes in bf16 natively, from the flags of `cpuinfo` (default: ``/proc/cpuinfo``);
    `None` when unknown (no such file, not Linux; or no flags in it)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    lines = re.findall(r"^(?:flags|Features)\s*:(.*)$", cpuinfo, re.MULTILINE)
    if not lines:  # no flags listed: unknown
        return None
    return any(flag in line.split() for line in lines for flag in _BF16_CPU_FLAGS)


def emulated_bf16_warning(precision: str, device_type: str, native: bool | None) -> str | None:
    """Say so when a run trains in bf16 autocast on a CPU without bf16 instructions (`native`: from
    `cpu_has_native_bf16`, `None` unknown): emulated, it ran 15-20x slower than fp32 (SmolLM2-135M, AMD EPYC
    with AVX2)."""
    if precision != "bf16" or device_type != "cpu" or native is not False:
        return None
    return ("hf_ipt: training in bf16 autocast on a CPU without bf16 instructions (no avx512_bf16, amx_bf16 or bf16 "
            "flag): it is emulated, many times slower than fp32 (15-20x measured with SmolLM2-135M); pass --bf16 false "
            "(and --mixed_precision no to accelerate launch)")


def single_cpu_process_warning(environ: Any, launcher_argv: list[str] | None = None) -> str | None:
    """Say so when `accelerate launch --cpu --num_processes N>1` started one process only.

    accelerate's `--cpu` launcher starts ONE process whatever `--num_processes` says (several
    need mpirun); it sets ``MASTER_PORT``, and no ``WORLD_SIZE``, only when N > 1. The
    launcher's own command line (`launcher_argv`, default: the parent process's), when it
    holds ``--num_processes``, decides, so a ``MASTER_PORT`` exported by a shell or a Slurm
    script does not.
    """
    use_cpu = str(environ.get("ACCELERATE_USE_CPU", "")).lower() in ("1", "true", "yes")
    launched_many = "MASTER_PORT" in environ and "WORLD_SIZE" not in environ
    if not (use_cpu and launched_many) or any(name in environ for name in _MPI_WORLD_SIZES):
        return None
    asked = _num_processes(_parent_argv() if launcher_argv is None else launcher_argv)
    if asked is not None and asked <= 1:
        return None
    return ("hf_ipt: `accelerate launch --cpu` started ONE process whatever --num_processes says (several "
            "need mpirun). For DDP on CPU (gloo) launch with the ddp config instead: accelerate launch "
            "--config_file \"$(python -c 'import hf_ipt.training as t; print(t.accelerate_config_path(\"ddp\"))')\" "
            "--num_processes 2 --mixed_precision no recipes/<recipe>.py ... --use_cpu true --bf16 false")


def _parent_argv() -> list[str]:
    try:
        import psutil

        return psutil.Process().parent().cmdline()
    except Exception:  # noqa: BLE001 - no parent or no access: decide from the environment alone
        return []


def _num_processes(argv: list[str]) -> int | None:
    """``--num_processes`` of a launcher's argv, parsed as accelerate's argparse parser reads it."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--num_processes")
    value = parser.parse_known_args(argv)[0].num_processes
    return int(value) if value is not None and value.isdigit() else None


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """The checkpoint folder to resume from, checked before any model loads.

    ``"last"`` (or ``"true"``) is the newest complete ``checkpoint-*`` folder in `output_dir`:
    one with ``trainer_state.json``, which the Trainer writes last (a save cut short leaves a
    folder without it, skipped with a warning). ``"false"`` is none. A path must be a complete
    checkpoint folder.
    """
    if resume_from_checkpoint is None or str(resume_from_checkpoint).lower() == "false":
        return None
    if str(resume_from_checkpoint).lower() in ("last", "true"):
        found = checkpoint_folders(output_dir)
        complete = [path for path in found if os.path.isfile(os.path.join(path, TRAINER_STATE_NAME))]
        if not complete:
            raise ValueError(
                f"`resume_from_checkpoint={resume_from_checkpoint}` but {output_dir!r} holds no complete "
                f"checkpoint-* folder{' (' + str(len(found)) + ' without trainer_state.json)' if found else ''}: "
                "start without it, or check --output_dir"
            )
        if complete[-1] != found[-1]:
            logger.warning("hf_ipt: %s has no trainer_state.json (a save cut short); resuming from %s",
                           found[-1], complete[-1])
        return complete[-1]
    if not os.path.isfile(os.path.join(resume_from_checkpoint, TRAINER_STATE_NAME)):
        what = "is not a checkpoint folder" if os.path.isdir(resume_from_checkpoint) else "does not exist"
        raise ValueError(
            f"`resume_from_checkpoint` {resume_from_checkpoint!r} {what} (no {TRAINER_STATE_NAME}): give a "
            "checkpoint-* folder, or 'last' for the newest in --output_dir"
        )
    return resume_from_checkpoint


def refuse_other_checkpoints(output_dir: str, checkpoint: str | None) -> None:
    """Refuse a run into an `output_dir` holding an earlier run's ``checkpoint-*`` folders unless it resumes
    one of them: a run that starts afresh, or resumes a `checkpoint` of another folder, would mix its
    checkpoints with them (the Trainer's ``save_total_limit`` rotation may delete the earlier run's, and a
    later ``--resume_from_checkpoint last`` resumes the newest of either run)."""
    if not (found := checkpoint_folders(output_dir)):
        return
    if checkpoint is not None and os.path.samefile(os.path.dirname(os.path.abspath(checkpoint)), output_dir):
        return
    from ..cli import UsageError
    from ..models import few_names

    names = few_names([os.path.basename(f) for f in found], quote=False)
    this = "starts afresh" if checkpoint is None else f"resumes {checkpoint!r}, of another folder"
    raise UsageError(
        f"`output_dir` {output_dir!r} holds the checkpoints of an earlier run ({names}), and this run {this}: "
        "its checkpoints would mix with them. To continue that run, pass --resume_from_checkpoint last; "
        "to start a new one, give another --output_dir (or delete those checkpoint folders first)"
    )


def check_steps_left(checkpoint: str | None, max_steps: int) -> None:
    """Refuse to resume from a checkpoint already at or past `max_steps`: the Trainer checks the
    budget only after a step, so it would train one more step past it (at the schedule's end, a
    learning rate of 0 for linear or cosine) and write a checkpoint and card beyond the budget."""
    if checkpoint is None or max_steps <= 0:
        return
    state = json.loads(Path(checkpoint, TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    done = int(state.get("global_step") or 0)
    if done >= max_steps:
        raise ValueError(
            f"{checkpoint!r} is at step {done}, and `max_steps` is {max_steps}: nothing is left to train. "
            f"To train on, raise --max_steps above {done}; to train to {max_steps} steps, resume from an "
            "earlier checkpoint (--resume_from_checkpoint path/to/checkpoint-N)"
        )


DATA_STREAM_FILE = "hf_ipt_data_stream.json"
STREAM_ARGS = ("seed", "max_length", "world_size", "per_device_train_batch_size", "gradient_accumulation_steps")


def data_stream_spec(trainer: IPTTrainer) -> dict:
    """What fixes the order of the training stream: the data settings, the resolved mix (token
    shares computed from `max_steps` included) and the batch geometry."""
    spec = {
        "data": trainer.card.data_settings,
        "mix": {f"{row['content']} ({row['source']}) token_share": row["token_share"] for row in trainer.card.data_mix},
        "batches": {k: getattr(trainer.args, k, None) for k in STREAM_ARGS},
    }
    if getattr(trainer.args, "data_seed", None) is not None:  # recorded only when set: older runs' files lack it
        spec["batches"]["data_seed"] = trainer.args.data_seed
    if files := source_files(trainer.card.data_settings):
        spec["files"] = files
    return json.loads(json.dumps(spec, default=str))


def source_files(settings: dict) -> dict[str, str]:
    """The files each local data setting (a file, glob or folder) names now, as ``N files (names sha256 …)``:
    a glob that matches another set of files on resume (a file added, renamed or removed) is another
    stream, whose saved positions would skip rows other than those trained on. Contents are not read."""
    import hashlib

    found = {}
    for key, value in sorted(settings.items()):
        if not (key.endswith("_dataset") or key == "collection"):  # the sources; not `text_column: text`
            continue
        patterns = [value] if isinstance(value, str) else value if isinstance(value, list | tuple) else []
        names = []
        for pattern in (p for p in patterns if isinstance(p, str)):
            if os.path.isdir(pattern) and (data := output_files(pattern)) is not None:  # not its job files
                names += [os.path.relpath(f, pattern) for f in data]
            elif os.path.isdir(pattern):
                names += sorted(os.path.relpath(os.path.join(root, f), pattern) for root, _, files in os.walk(pattern)
                                for f in files if f.endswith(SUPPORTED))
            elif is_file_corpus(pattern) and not is_hub_url(pattern):
                try:
                    names += local_files(pattern)
                except (OSError, ValueError):  # matches nothing: the stream's own check says so
                    continue
        if names:
            digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
            found[key] = f"{len(names)} files (names sha256 {digest})"
    return found


def refuse_changed_stream(args: Any, card: CardInfo) -> None:
    """`check_data_stream`'s refusal of a resumed run's changed stream, before a model loads: a recipe calls it
    once its data and card are built, so that a changed setting is said before minutes of loading an 8B model
    (`train_and_save` checks again, and records the stream)."""
    from types import SimpleNamespace

    checkpoint = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    first = first_stream_file(checkpoint)
    if first is not None and first.is_file():
        _refuse_another_stream(checkpoint, first, json.loads(first.read_text(encoding="utf-8")),
                               data_stream_spec(SimpleNamespace(args=args, card=card)),
                               allow=bool(getattr(args, "ignore_data_skip", False)), warn=False)


def first_stream_file(checkpoint: str | None) -> Path | None:
    """Where the run that saved `checkpoint` recorded its data stream (`None` for a fresh run)."""
    return Path(checkpoint).parent / DATA_STREAM_FILE if checkpoint else None


def check_data_stream(trainer: IPTTrainer, checkpoint: str | None) -> None:
    """Record the stream's settings on a fresh run; on resume, refuse a changed stream.

    A resumed Trainer skips the batches it has already seen by counting them in the stream it
    is given: a stream built from other settings (another `max_steps` moves the collection's
    token share, another batch size or world size moves every boundary) would silently repeat
    some examples and never show others.
    """
    spec = data_stream_spec(trainer)
    first = first_stream_file(checkpoint)
    if first is not None and not first.is_file():
        logger.warning("hf_ipt: %s has no %s (a run older than this check): the data stream of the resumed run "
                       "cannot be compared with the first one", first.parent, DATA_STREAM_FILE)
    elif first is not None:
        _refuse_another_stream(checkpoint, first, json.loads(first.read_text(encoding="utf-8")), spec,
                               allow=bool(getattr(trainer.args, "ignore_data_skip", False)))
    if trainer.is_world_process_zero():
        path = Path(trainer.args.output_dir) / DATA_STREAM_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")


# Data settings that act on the stream only through the token shares they resolve to, which the spec's
# `mix` records: `pretrain.py`'s collection share, set or derived from `collection_repeats` and `max_steps`.
RESOLVED_IN_MIX = ("collection_token_share", "collection_repeats")


def comparable_stream(spec: dict) -> dict:
    """`spec` without the data settings that its `mix` already pins as resolved shares
    (`RESOLVED_IN_MIX`): a share given as ``--collection_token_share`` that equals the share a
    run derived from `max_steps` is the same stream; any other share changes the `mix`."""
    if not isinstance(spec.get("data"), dict):
        return spec
    return {**spec, "data": {k: v for k, v in spec["data"].items() if k not in RESOLVED_IN_MIX}}


def unpinned_to_pinned(old: dict, spec: dict) -> dict[str, str]:
    """Hub dataset ids that a run saved before ids were pinned recorded bare (``org/name``) and this
    run pins (``org/name@<sha>``), by data setting: ``{pinned: bare}``."""
    before, now = old.get("data") or {}, spec.get("data") or {}
    pins = {}
    for key, value in now.items():
        bare = before.get(key)
        if isinstance(value, str) and isinstance(bare, str) and "@" not in bare:
            repo, revision = hub_id_parts(value)
            if repo == bare and COMMIT.fullmatch(revision or ""):
                pins[value] = bare
    return pins


def _refuse_another_stream(checkpoint: str, path: Path, old: dict, spec: dict, allow: bool = False,
                           warn: bool = True) -> None:
    """Raise a `UsageError` when `spec` differs from the stream `old` that `path` recorded; with
    `allow` (``--ignore_data_skip``: the new stream starts from its beginning, nothing is
    skipped), warn instead. `warn=False`: no warning (the early check, `refuse_changed_stream`; the
    Trainer's check says them once)."""
    shares = isinstance(old.get("data"), dict) and any(k in old["data"] for k in RESOLVED_IN_MIX)  # pretrain.py
    old, spec = comparable_stream(old), comparable_stream(spec)
    if "files" not in old:  # recorded by a run older than the files check
        spec = {k: v for k, v in spec.items() if k != "files"}
        folders = [f"{key} {value!r}" for key, value in sorted((old.get("data") or {}).items())
                   if (key.endswith("_dataset") or key == "collection") and text_folder(value)]
        if folders and not allow:  # that run read them one row per line: its positions count lines
            from ..cli import UsageError

            raise UsageError(f"resuming {checkpoint}: {path} records no files, so its run is older than the "
                             f"files check, and its sources {', '.join(folders)} are folders of .txt files: "
                             f"{LINES_NOT_FILES}")
    if pins := unpinned_to_pinned(old, spec):
        # A run saved before Hub ids were pinned: its stream is compared as it recorded it.
        text = json.dumps(spec)
        for pinned, bare in pins.items():
            text = text.replace(json.dumps(pinned)[1:-1], json.dumps(bare)[1:-1])
        spec = json.loads(text)
        if warn:
            logger.warning("hf_ipt: %s recorded its Hub datasets unpinned; the resumed run reads them at %s, which "
                           "may not be the commit it started on", path, ", ".join(sorted(pins)))
    if old != spec:
        from ..cli import UsageError, describe_changes

        changed = "; ".join(describe_changes(old, spec))
        if allow:
            if warn:
                logger.warning("hf_ipt: resuming %s with another data stream (changed: %s) and --ignore_data_skip: "
                               "the weights, optimizer and schedule resume, the stream starts from its beginning",
                               checkpoint, changed)
            return
        share = ("; to train longer on the same stream, keep the collection's share: --collection_token_share with "
                 f"the first value in {path}") if shares else ""
        if "data_seed" in spec.get("batches", {}) and "data_seed" not in old.get("batches", {}):
            share += ("; a run started with --data_seed by hf_ipt before 0.3.0.dev1 shuffled by --seed (data_seed was "
                      "ignored then): resume it without --data_seed")
        raise UsageError(
            f"resuming {checkpoint} with another data stream (changed: {changed}): the skipped batches would not be "
            f"the ones already trained on. Resume with the first run's settings{share}; or pass --ignore_data_skip "
            "true to resume the weights, optimizer and schedule on the new stream from its beginning (examples "
            "already trained on may come again)"
        )


class ResumedEpochCallback(TrainerCallback):
    """`state.epoch` of a run resumed at its stream position, as an uninterrupted run logs it.

    A stream is one endless epoch of `max_steps` steps; the Trainer derives the epoch from its
    step in the data loader, which restarts at the resume. The Trainer sets it right before
    `on_step_end`, so this callback goes first there (`resume_stream`): the evaluation callback logs
    from its `on_step_end` too.
    """

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        state.epoch = state.global_step / state.max_steps


def resume_stream(trainer: IPTTrainer, checkpoint: str) -> bool:
    """Start the training stream at the position saved in `checkpoint`, instead of replaying it.

    Without a saved position (a checkpoint of an older hf_ipt, or a stream that is not
    hf_ipt's), or when `ignore_data_skip` is set (the user wants the stream from its start),
    the `Trainer` does as usual. Returns whether the saved position is used.
    """
    start = getattr(trainer.train_dataset, "stream_start", None)
    if start is None or trainer.args.ignore_data_skip:
        return False
    if not start.load(checkpoint, trainer.args.world_size):
        saved = saved_processes(checkpoint)
        why = (f"it holds the positions of {saved} processes, this run has {trainer.args.world_size}" if saved
               else "an older hf_ipt saved it")
        logger.warning("hf_ipt: %s holds no saved stream position for every rank (%s): the Trainer replays (reads "
                       "and tokenizes) the stream up to the checkpoint", checkpoint, why)
        return False
    trainer.args.ignore_data_skip = True  # the stream itself starts after the batches already trained on
    trainer.rng_checkpoint = checkpoint
    trainer.callback_handler.callbacks.insert(0, ResumedEpochCallback())  # before EvalCallback's log
    logger.info("hf_ipt: the data stream resumes at the position saved in %s: its sources skip the rows already "
                "trained on (read, not tokenized) and no batch is replayed", checkpoint)
    return True


def train_and_save(trainer: IPTTrainer) -> None:
    """Train (resuming when asked), save the model and tokenizer, write the card, push when asked, end."""
    args = trainer.args
    checkpoint = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
    check_data_stream(trainer, checkpoint)
    if checkpoint is not None:
        trainer.uncounted_steps = uncounted_steps(checkpoint)
        resume_stream(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    # preempted before its last step: the run is not over, and its process is about to be killed
    if trainer.signal_checkpoint is not None and trainer.state.global_step < trainer.state.max_steps:
        logger.warning("hf_ipt: stopped by SIGTERM, saved as checkpoint-%d (of %d steps): resume with "
                       "--resume_from_checkpoint last. No final model, card or push for an unfinished run",
                       trainer.signal_checkpoint, trainer.state.max_steps)
        release_wrapped_model(trainer)
        trainer.end()
        return
    trainer.model.config.use_cache = True  # the saved model generates with a cache
    full_state_dict_for_final_save(trainer)
    # unset ones left out: `Trainer.push_to_hub` adds the model's own tags to a `tags` it is given, even None
    metadata = {key: value for key, value in (("tags", args.hub_tags), ("license", args.hub_license),
                                              ("language", args.hub_language)) if value is not None}
    if args.push_to_hub:
        # Saves the model into output_dir and writes the card first. Not after `save_model`, which
        # pushes by itself when push_to_hub is set: the model would be saved and hashed twice more.
        trainer.push_to_hub(commit_message="End of training", **metadata)
    else:
        trainer.save_model(args.output_dir)
        trainer.create_model_card(**metadata)
    release_wrapped_model(trainer)
    trainer.end()


def sharded_state_dict(trainer: Any) -> bool:
    """Whether `trainer` saves an FSDP model by rank (``fsdp_state_dict_type`` other than ``FULL_STATE_DICT``):
    `Trainer.save_model` then writes nothing, no weights, config or tokenizer; the checkpoints hold the
    ranks' shards in ``pytorch_model_fsdp_0/``."""
    if not getattr(trainer, "is_fsdp_enabled", False):
        return False
    return "FULL_STATE_DICT" not in str(trainer.accelerator.state.fsdp_plugin.state_dict_type)


def full_state_dict_for_final_save(trainer: Any) -> None:
    """Under FSDP, gather the whole model for the final save (and push).

    The shipped FSDP2 config checkpoints with ``SHARDED_STATE_DICT``: each rank writes its own
    shard, with no full copy of the model and its optimizer state gathered on rank 0 at every
    save. `Trainer.save_model` writes nothing for a sharded state dict, so the final model is
    gathered as a full state dict, and loads with `from_pretrained`.
    """
    if sharded_state_dict(trainer):
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")


def save_loading_files(trainer: Any, checkpoint: str) -> None:
    """Under FSDP's sharded state dict, write what loads the model beside the ranks' shards in `checkpoint`:
    the model's config (``use_cache`` on, as the final save has it), generation config and tokenizer, or
    for a PEFT model its ``adapter_config.json`` and the tokenizer. Then ``accelerate merge-weights
    CHECKPOINT/pytorch_model_fsdp_0 OUT`` and a copy of these files make a model (or, its
    ``model.safetensors`` renamed ``adapter_model.safetensors``, an adapter) that loads
    (`hf_ipt.models.merge_fsdp_hint` says so to whoever gives such a checkpoint as a model)."""
    if not (sharded_state_dict(trainer) and trainer.args.should_save):
        return
    import copy

    model = trainer.accelerator.unwrap_model(trainer.model)
    if getattr(model, "peft_config", None):
        # the shards hold only the adapter's weights, under the names PEFT saves them with
        config = copy.deepcopy(model.peft_config[model.active_adapter])
        config.inference_mode = True  # as `PeftModel.save_pretrained` writes it
        config.save_pretrained(checkpoint)
    else:
        config = copy.deepcopy(model.config)
        config.use_cache = True  # off for packed training (`build_trainer`); the merged model generates with a cache
        config.save_pretrained(checkpoint)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(checkpoint)
    if trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(checkpoint)


def release_wrapped_model(trainer: Trainer) -> None:
    """Free the DDP wrapper (and its gradient `Reducer`) while the process group is registered.

    The `Reducer` owns a reference to the process group. When `trainer.end()` destroys the group
    first, the wrapper is collected later as the group's last owner, and the group's destructor
    then runs holding the GIL and joins gloo's worker threads, one of which may need the GIL to
    free a finished collective's tensors: the process never exits (seen in about 1 of 6
    two-process CPU runs, after the model was saved). Dropped here, the group's last owner is
    its Python object, whose destructor releases the GIL.
    """
    import gc
    import weakref

    import torch

    wrapper = weakref.ref(trainer.model_wrapped)
    trainer.model_wrapped = trainer.model
    if getattr(trainer, "deepspeed", None) is not None:
        trainer.deepspeed = None  # the DeepSpeed engine, which free_memory destroys
    trainer.accelerator.free_memory()  # its lists of prepared models, optimizers and dataloaders
    gc.collect()
    # only DDP's wrapper is known to hang the exit; DeepSpeed's engine stays referenced by the hooks it left
    # on the model (ZeRO-3), and its processes exit (tests/test_recipes.py runs ZeRO-3 with two)
    if isinstance(wrapper(), torch.nn.parallel.DistributedDataParallel):
        logger.warning("hf_ipt: the %s wrapper is still referenced after training; a multi-process run may "
                       "hang at exit", type(wrapper()).__name__)
