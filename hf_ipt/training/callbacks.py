"""Trainer callbacks: tokens/s and MFU, progress in tokens against the budget, the evaluation hook.

Tokens seen are ``state.num_input_tokens_seen`` when the Trainer counts them
(``include_num_input_tokens_seen``, a device sync per step), else ``global_step x
tokens_per_step``, exact for packed blocks, which always hold `max_length` tokens.
MFU counts 6 x N FLOPs per token (N from the model config; attention FLOPs left out, as in
the baselines of ``BENCHMARKS.md``) against the devices' dense bf16 peak.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from .model_init import num_parameters

# Dense bf16 peak FLOP/s of one device, looked up by a substring of its name, the first that matches: the
# H100 PCIe and NVL cards (NVIDIA's datasheet: 756 and 835 dense) before the SXM's plain "H100 80GB HBM3".
PEAK_FLOPS = {
    "H200": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12,
    "A10G": 125e12,
}


def peak_flops(peak_tflops: float | None = None) -> float | None:
    """Peak FLOP/s of one device: `peak_tflops` if given, else looked up for the current GPU (None on CPU)."""
    if peak_tflops is not None:
        return peak_tflops * 1e12
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


def flops_per_token(config: Any) -> float:
    """Training FLOPs per token, 6 x parameters (forward 2N + backward 4N)."""
    return 6.0 * num_parameters(config)


def tokens_seen(args: Any, state: Any, tokens_per_step: int) -> int:
    if args.include_num_input_tokens_seen not in ("no", False):
        return state.num_input_tokens_seen
    return state.global_step * tokens_per_step


class ThroughputCallback(TrainerCallback):
    """Adds ``tokens_per_second``, ``tokens_seen`` and, when the peak is known, ``mfu`` to each training log.

    Args:
        tokens_per_step (`int`): tokens of one optimizer step over all ranks.
        flops_per_token (`float`): training FLOPs per token (see `flops_per_token`).
        peak_flops (`float`, *optional*): peak FLOP/s of ONE device; no ``mfu`` when `None`.
        clock (`Callable[[], float]`, *optional*, defaults to `time.perf_counter`): seconds of a
            monotonic clock.
        excluded (`list`, *optional*): callbacks whose ``seconds`` (time spent so far outside training)
            are left out of the logged intervals: an `EvalCallback`, which evaluates in `on_step_end`
            (`build_trainer` adds it); else an interval that evaluated logged a fraction of the speed.
    """

    def __init__(
        self,
        tokens_per_step: int,
        flops_per_token: float,
        peak_flops: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
        excluded: list[Any] | None = None,
    ):
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops
        self.clock = clock
        self.excluded = list(excluded or [])
        self._mark: tuple[float, int, float] | None = None  # clock, tokens seen, excluded seconds

    def _now(self, args, state) -> tuple[float, int, float]:
        excluded = sum(callback.seconds for callback in self.excluded)
        return self.clock(), tokens_seen(args, state, self.tokens_per_step), excluded

    def on_train_begin(self, args, state, control, **kwargs):
        self._mark = self._now(args, state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs or self._mark is None:
            return
        now, tokens, excluded = self._now(args, state)
        seconds = (now - self._mark[0]) - (excluded - self._mark[2])
        new_tokens = tokens - self._mark[1]
        self._mark = (now, tokens, excluded)
        metrics = {"tokens_seen": tokens}
        if seconds > 0 and new_tokens > 0:
            metrics["tokens_per_second"] = new_tokens / seconds
            if self.peak_flops:
                metrics["mfu"] = (
                    metrics["tokens_per_second"]
                    * self.flops_per_token
                    / (self.peak_flops * args.world_size)
                )
        logs.update(metrics)
        # The Trainer stored a copy of `logs` before calling the callbacks.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)


class TokenBudgetProgressCallback(ProgressCallback):
    """The progress bar in tokens: tokens seen against the budget (``max_steps x tokens_per_step``)."""

    def __init__(self, tokens_per_step: int):
        super().__init__()
        self.tokens_per_step = tokens_per_step

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.training_bar = tqdm(
                total=state.max_steps * self.tokens_per_step,
                unit="tok",
                unit_scale=True,
                dynamic_ncols=True,
                desc="tokens",
            )
        self.current_step = 0
        self._shown = 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            tokens = tokens_seen(args, state, self.tokens_per_step)
            self.training_bar.update(tokens - self._shown)
            self._shown = tokens
            self.training_bar.set_postfix(
                step=f"{state.global_step}/{state.max_steps}", refresh=False
            )


def eval_callback(args: Any, tokenizer: Any, trainer: Any) -> TrainerCallback:
    """`hf_ipt.evaluation.EvalCallback` for `args.eval_tasks`, imported only when asked for.

    Args:
        args (`TrainingConfig`): `eval_tasks` (comma-separated), `eval_steps` (every N steps;
            unset: at the end only), `per_device_eval_batch_size`, `eval_max_examples`.
        tokenizer (`PreTrainedTokenizerBase`): the model's tokenizer.
        trainer (`Trainer`): its `log` carries the scores to every `report_to` logger.
    """
    if sharded_model(trainer):
        raise ValueError(
            "`eval_tasks` has each rank score a share of the tasks with its own whole copy of the model, which a "
            "model sharded by FSDP or DeepSpeed ZeRO-3 is not (the ranks would wait on each other's parameter "
            "all-gathers with different batches): drop `--eval_tasks` and evaluate after training with `hf-ipt "
            "eval --model_name_or_path OUTPUT_DIR` (the final model is saved whole), or train with DDP. A checkpoint-N "
            "of DeepSpeed ZeRO-3 (zero3_save_16bit_model) loads as it is; one of FSDP's SHARDED_STATE_DICT holds the "
            "ranks' shards: merge them first with `accelerate merge-weights OUTPUT_DIR/checkpoint-N/pytorch_model_fsdp_0 "
            "MERGED`, copy the checkpoint's config.json and tokenizer files into MERGED, and evaluate MERGED"
        )
    try:
        from hf_ipt.evaluation import EvalCallback
    except ImportError as error:
        from ..cli import install_hint

        raise ImportError(f"`eval_tasks` needs `hf_ipt.evaluation` and the `eval` extra: {install_hint('eval')} "
                          f"({error})") from error
    steps = args.eval_steps
    if steps is not None and steps < 1:  # a fraction of the run, as TrainingArguments allows
        steps = max(1, round(steps * args.max_steps))
    return EvalCallback(
        args.eval_tasks,
        tokenizer,
        eval_steps=None if steps is None else int(steps),
        batch_size=args.per_device_eval_batch_size,
        max_examples=args.eval_max_examples,
        trainer=trainer,
    )


def sharded_model(trainer: Any) -> bool:
    """Whether `trainer` shards the model's parameters across ranks (FSDP, DeepSpeed ZeRO-3)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return False
    plugin = trainer.accelerator.state.deepspeed_plugin
    return plugin is not None and plugin.zero_stage == 3
