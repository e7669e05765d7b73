"""`EvalCallback`: run domain tasks during training and log them like the trainer's own metrics.

Usage:
```python
trainer = Trainer(model=model, args=args, train_dataset=train_dataset)
trainer.add_callback(EvalCallback("finance", tokenizer, eval_steps=500, max_examples=200, trainer=trainer))
trainer.train()
```

A `TrainerCallback` is not handed the trainer, and `Trainer.log` is the one call that reaches
every `report_to` integration (they are callbacks fed by its `on_log` event) and the
`log_history` saved in ``trainer_state.json``. So, as TRL's callbacks do, the callback takes the
trainer; without it the scores still go to ``state.log_history`` and the results file, and a
warning says that `report_to` did not see them.

The evaluation runs from `on_step_end`, before the Trainer logs the step. Under DDP every rank
scores a disjoint share of each task (examples ``rank::world_size``) and the predictions are
gathered (`evaluate(..., distributed=True)`): no rank idles in a collective while another scores
alone, which could outlast the process group's timeout (``ddp_timeout``, 30 minutes), and the
evaluation is world-size times faster. Rank 0 alone logs and writes the results.
`Trainer.log` ends in `on_log`, which clears ``control.should_log``: the callback puts the flag
back, so the Trainer still logs the step's training loss, and every rank still runs that log's
loss all-gather (without it rank 0 would skip a collective the others run: a DDP hang).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..backends.base import is_integer
from .harness import Results, average_score, evaluate, group_averages, scoring_settings
from .scoring import check_batch_size, resolve_add_bos
from .tasks import load_tasks

logger = logging.getLogger(__name__)

# Not `eval_results.json`: `Trainer.save_metrics("eval", ...)` writes that name.
RESULTS_FILENAME = "domain_eval_results.json"


def flatten_results(results: Results, prefix: str = "eval") -> dict[str, float]:
    """``{"eval_FPB_weighted_f1": ..., "eval_domain_average": ...}`` for `Trainer.log`."""
    logs = {
        f"{prefix}_{task}_{m}": v for task, scores in results.items() for m, v in scores.items()
    }
    logs[f"{prefix}_domain_average"] = average_score(results)
    # finance and medicine (and task files): each one's average too
    logs.update({f"{prefix}_{label}_average": value for label, value in group_averages(results).items()})
    return logs


def resumed_history(output_dir: Path, log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of the results file's history that this run logged (its `log_history`, carried
    over a resume from a checkpoint): a resumed run keeps the evaluations before its checkpoint,
    while a file that another run left in `output_dir`, or the steps an interrupted run evaluated
    after the checkpoint, are not taken."""
    path = output_dir / RESULTS_FILENAME
    if not path.is_file():
        return []
    try:
        history = json.loads(path.read_text(encoding="utf-8")).get("history", [])
    except json.JSONDecodeError:  # cut short by a crash while it was written: rewritten at the next evaluation
        logger.warning("hf_ipt: %s is not valid JSON: its evaluation history is not carried over", path)
        return []
    logged = {(entry.get("step"), entry["eval_domain_average"]) for entry in log_history if "eval_domain_average" in entry}
    return [entry for entry in history if (entry["step"], average_score(entry["results"])) in logged]


def _eager_if_layers_compiled(args: Any) -> contextlib.AbstractContextManager:
    """Eager layers for the evaluation of a run with `compile_layers`: scoring with a KV cache would
    recompile every layer (a guard per cache layer) up to dynamo's recompile limit."""
    if not getattr(args, "compile_layers", False):
        return contextlib.nullcontext()
    import torch

    return torch.compiler.set_stance("force_eager")


class EvalCallback(TrainerCallback):
    """Evaluate domain tasks at each evaluation (or every `eval_steps`) and at train end.

    Args:
        tasks: ``"finance"``, ``"medicine"``, ``"finance/FPB,finance/NER"``, a path to task
            files, or a list of `Task` objects (see `load_tasks`). Loaded once, up front.
        tokenizer (`PreTrainedTokenizerBase`): the model's tokenizer.
        eval_steps (`int`, *optional*): evaluate every `eval_steps` optimizer steps; when None,
            evaluate whenever the trainer evaluates (`on_evaluate`). Always at train end.
        batch_size (`int`, *optional*, defaults to 8): sequences per forward pass.
        max_examples (`int`, *optional*): first examples of each task only (keeps it quick).
        trainer (`Trainer`, *optional*): the trainer, whose `log` carries the scores to
            `report_to` (see the module docstring).
        add_bos (`bool`, *optional*): prepend BOS; None follows `default_add_bos`.
        data_dir (`str`, *optional*): local copy of the AdaptLLM task repos.

    Its ``seconds`` are the wall-clock seconds spent evaluating so far, which a throughput logger
    leaves out of training's time (`hf_ipt.training.callbacks.ThroughputCallback`'s `excluded`).
    """

    def __init__(
        self,
        tasks: Any,
        tokenizer: Any,
        eval_steps: int | None = None,
        batch_size: int = 8,
        max_examples: int | None = None,
        *,
        trainer: Any = None,
        add_bos: bool | None = None,
        data_dir: str | os.PathLike | None = None,
    ) -> None:
        if eval_steps is not None and (not is_integer(eval_steps) or eval_steps < 1):
            raise ValueError(f"`eval_steps` must be an integer >= 1 or None, got {eval_steps!r} (EvalCallback); a "
                             "fraction of the run, as TrainingArguments takes, is not one")
        check_batch_size(batch_size, "EvalCallback")
        whole = load_tasks(tasks, data_dir=data_dir)
        self.task_sizes = {task.name: len(task.examples) for task in whole}  # for the record: scored N of these
        self.tasks = [task.head(max_examples) for task in whole]
        self.max_examples = max_examples
        self.tokenizer = tokenizer
        self.eval_steps = eval_steps
        self.batch_size = batch_size
        self.trainer = trainer
        self.add_bos = add_bos
        self.history: list[dict[str, Any]] = []
        self.seconds = 0.0  # spent evaluating so far: a throughput logger leaves it out of training's time
        self._last_step: int | None = None
        self._warned = False  # about the missing `trainer`, once

    def on_train_begin(self, args, state, control, **kwargs):
        self.history = resumed_history(Path(args.output_dir), state.log_history)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.eval_steps is not None and state.global_step % self.eval_steps == 0:
            self._run(args, state, model, control)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if self.eval_steps is None:
            self._run(args, state, model, control)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._run(args, state, model, control)

    def _run(self, args, state, model, control) -> None:
        if self._last_step == state.global_step:
            return
        self._last_step = state.global_step
        start = time.perf_counter()
        add_bos = resolve_add_bos(self.add_bos, self.tokenizer, model)  # here, for the record
        with _eager_if_layers_compiled(args):
            results = evaluate(  # every rank scores its share (see the module docstring)
                model,
                self.tokenizer,
                self.tasks,
                batch_size=self.batch_size,
                add_bos=add_bos,
                progress=not args.disable_tqdm and state.is_local_process_zero,
                distributed=True,
            )
        self.seconds += time.perf_counter() - start
        if not state.is_world_process_zero:
            return
        self._log(state, control, flatten_results(results))
        self.history.append({"step": state.global_step, "results": results})
        self._write(Path(args.output_dir), state.global_step, results, self._settings(model, add_bos))

    def _log(self, state, control, logs: dict[str, float]) -> None:
        if self.trainer is not None:
            pending = control.should_log  # the Trainer's log of this step, not yet written
            self.trainer.log(logs)  # -> log_history and every report_to integration
            control.should_log = pending  # `on_log` cleared it: see the module docstring
            return
        state.log_history.append({**logs, "step": state.global_step})
        if not self._warned:
            self._warned = True
            logger.warning(
                "EvalCallback has no `trainer`: its scores go to log_history and %s but not to "
                "`report_to`; pass EvalCallback(..., trainer=trainer)",
                RESULTS_FILENAME,
            )

    def _settings(self, model: Any, add_bos: bool) -> dict[str, Any]:
        """What the scores depend on besides the weights (as ``hf-ipt eval``'s ``eval_settings.json``), with
        each task's size (``task_sizes``) and `max_examples`: a card must not pass off 3 examples as a task."""
        return {**scoring_settings(model, self.tasks, add_bos, None), "task_sizes": self.task_sizes,
                "max_examples": self.max_examples}

    def _write(self, output_dir: Path, step: int, results: Results, settings: dict[str, Any]) -> None:
        """Latest results, the settings they were scored with and the history, for the model card."""
        output_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "global_step": step,
            "results": results,
            "average": average_score(results),
            "averages": group_averages(results),  # per paper domain, when the tasks hold more than one
            "settings": settings,
            "history": self.history,
        }
        path = output_dir / RESULTS_FILENAME
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
