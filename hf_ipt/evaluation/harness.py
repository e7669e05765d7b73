"""Run tasks on a model and report: ``{task_name: {metric_name: score}}``, scores in percent."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .metrics import compute_metric
from .scoring import (
    check_batch_size,
    generate_answers,
    model_context,
    resolve_add_bos,
    score_options,
)
from .tasks import Task, load_tasks

Results = dict[str, dict[str, float]]


def _lowest(row: Sequence[float]) -> int:
    return min(range(len(row)), key=row.__getitem__)


def option_nlls(model: Any, tokenizer: Any, task: Task, null: bool = False, **kwargs: Any) -> list[list[float]]:
    """Mean token NLL of every option of a classification task, after each example's prompt
    (`null`: after its `null_prompt`). Keyword arguments as for `predict`."""
    kwargs.pop("max_new_tokens", None)
    prompts = [e.null_prompt if null else e.prompt for e in task.examples]
    label = f"{task.name} (null prompts)" if null else task.name  # progress bar, truncation warning
    return score_options(model, tokenizer, prompts, [e.options for e in task.examples], label=label, **kwargs)


def predict(model: Any, tokenizer: Any, task: Task, **kwargs: Any) -> list[Any]:
    """Predictions of `model` on `task`: option indices, or generated answers.

    Classification picks, per example, the option with the LOWEST mean token NLL.
    Keyword arguments go to `score_options` / `generate_answers` (``batch_size``,
    ``add_bos``, ``max_length``, ``progress``; ``max_new_tokens`` / ``shared_prefix_min_tokens``
    only to the one that takes it).
    """
    if task.is_generation:
        kwargs.pop("shared_prefix_min_tokens", None)
        return generate_answers(model, tokenizer, [e.prompt for e in task.examples], label=task.name, **kwargs)
    return [_lowest(row) for row in option_nlls(model, tokenizer, task, **kwargs)]


# metrics whose classes are the options: an option is a class by its text, not its place in the row
_CLASS_METRICS = frozenset({"micro_f1", "weighted_f1", "headline_f1"})


def score_task(task: Task, predictions: Sequence[Any], metric: str | None = None) -> dict[str, float]:
    """``{metric_name: percent}`` of `predictions` on `task` (reported as `metric`, default the task's).

    For the F1 metrics an option's class is its text: rows that list the same options in
    different orders are scored by the answers chosen, not by their positions (the same as
    by index when every row lists its options in one order, as the paper's tasks do).
    """
    if task.is_generation:
        references = [e.references[0] for e in task.examples]
    elif task.metric in _CLASS_METRICS:
        classes: dict[str, int] = {}
        for example in task.examples:
            for option in example.options:
                classes.setdefault(option, len(classes))
        references = [classes[e.options[e.gold]] for e in task.examples]
        predictions = [classes[e.options[p]] for e, p in zip(task.examples, predictions, strict=True)]
    else:
        references = [e.gold for e in task.examples]
    groups = [e.group for e in task.examples] if task.metric == "headline_f1" else None
    return {metric or task.metric: compute_metric(task.metric, predictions, references, groups)}


Predictions = dict[str, list[Any]]  # reported metric name -> one prediction per example


def task_predictions(model: Any, tokenizer: Any, task: Task, calibrated: bool | None = None,
                     **kwargs: Any) -> Predictions:
    """Predictions of `task` per reported metric: its metric, and for a calibrated task
    (`calibrated`, default `Task.is_calibrated`) ``<metric>_calibrated``: each option's NLL after
    the prompt minus its NLL after the null prompt, lowest wins."""
    if not (task.is_calibrated if calibrated is None else calibrated):
        return {task.metric: predict(model, tokenizer, task, **kwargs)}
    nlls = option_nlls(model, tokenizer, task, **kwargs)
    null = option_nlls(model, tokenizer, task, null=True, **kwargs)
    # ties (a null prompt that leaves the scored context unchanged, e.g. both cut by max_length to
    # the same tokens) go to the plain score, not to option 0
    calibrated_picks = [_lowest([(a - b, a) for a, b in zip(row, base)]) for row, base in zip(nlls, null)]
    return {task.metric: [_lowest(row) for row in nlls], f"{task.metric}_calibrated": calibrated_picks}


def score_predictions(task: Task, predictions: Predictions) -> dict[str, float]:
    """``{metric_name: percent}`` of every metric's predictions (`task_predictions`) on `task`."""
    return {name: score_task(task, preds, metric=name)[name] for name, preds in predictions.items()}


def run_task(model: Any, tokenizer: Any, task: Task, **kwargs: Any) -> dict[str, float]:
    """The task's metric, and for a calibrated task (`Task.is_calibrated`) ``<metric>_calibrated``
    (`task_predictions`)."""
    return score_predictions(task, task_predictions(model, tokenizer, task, **kwargs))


def _shard_predictions(model: Any, tokenizer: Any, task: Task, rank: int, world: int, **kwargs: Any) -> Predictions:
    """Predictions of examples ``rank, rank + world, ...`` of `task` (none: empty lists)."""
    examples = task.examples[rank::world]
    if not examples:  # more ranks than examples
        return {name: [] for name in ([task.metric, f"{task.metric}_calibrated"] if task.is_calibrated else [task.metric])}
    shard = task if world == 1 else replace(task, examples=examples)
    # the whole task decides calibration: a shard of a task with some null prompts may hold only those
    return task_predictions(model, tokenizer, shard, task.is_calibrated, **kwargs)


def _gather_predictions(tasks: Sequence[Task], local: dict[str, Predictions], world: int) -> dict[str, Predictions]:
    """Every rank's shards (`_shard_predictions`), put back in example order on every rank."""
    import torch.distributed as dist

    shards: list[Any] = [None] * world
    dist.all_gather_object(shards, local)
    merged: dict[str, Predictions] = {}
    for task in tasks:
        merged[task.name] = {}
        for name in local[task.name]:
            full: list[Any] = [None] * len(task.examples)
            for rank, shard in enumerate(shards):
                full[rank::world] = shard[task.name][name]
            merged[task.name][name] = full
    return merged


def _process_group() -> tuple[int, int]:
    """This process's rank and the world size of the initialised `torch.distributed` group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def evaluate(
    model: Any,
    tokenizer: Any,
    tasks: Any,
    *,
    batch_size: int = 8,
    max_examples: int | None = None,
    add_bos: bool | None = None,
    max_length: int | None = None,
    max_new_tokens: int = 100,
    shared_prefix_min_tokens: int | None = 256,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    distributed: bool = False,
) -> Results:
    """Evaluate `model` on domain tasks.

    Args:
        model (`PreTrainedModel`): a causal LM (its train/eval mode is restored afterwards).
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer.
        tasks: anything `load_tasks` takes: ``"finance"``, ``"medicine"``, ``"finance/FPB"``,
            a task file or folder, or `Task` objects.
        batch_size (`int`, *optional*, defaults to 8): sequences per forward pass.
        max_examples (`int`, *optional*): evaluate only the first examples of each task.
        add_bos (`bool`, *optional*): prepend BOS to prompts; None follows the paper's choice
            for the model family (`default_add_bos`).
        max_length (`int`, *optional*): token limit of prompt + answer (model context if None).
        max_new_tokens (`int`, *optional*, defaults to 100): generation tasks' answer limit.
        shared_prefix_min_tokens (`int`, *optional*, defaults to 256): see `score_options`.
        data_dir (`str`, *optional*): local copy of the AdaptLLM task repos.
        progress (`bool`, *optional*, defaults to `True`): show progress bars.
        distributed (`bool`, *optional*, defaults to `False`): in an initialised `torch.distributed`
            group, every rank scores a disjoint share of each task (examples ``rank::world_size``)
            and the predictions are gathered, so every rank returns the results of the whole tasks.
            Every rank must call it, with the same tasks, and each holds a whole copy of the model
            (DDP; not FSDP or DeepSpeed ZeRO-3).

    Returns:
        `dict[str, dict[str, float]]`: ``{task_name: {metric_name: percent}}``; the task's metric
        first, then, for tasks whose examples carry null prompts, ``<metric>_calibrated``.
    """
    check_batch_size(batch_size)
    tasks = load_tasks(tasks, data_dir=data_dir, max_examples=max_examples)
    add_bos = resolve_add_bos(add_bos, tokenizer, model)
    options = {
        "batch_size": batch_size,
        "add_bos": add_bos,
        "max_length": max_length,
        "max_new_tokens": max_new_tokens,
        "shared_prefix_min_tokens": shared_prefix_min_tokens,
        "progress": progress,
    }
    rank, world = _process_group() if distributed else (0, 1)
    was_training = model.training
    model.eval()
    try:
        predictions = {t.name: _shard_predictions(model, tokenizer, t, rank, world, **options) for t in tasks}
    finally:
        model.train(was_training)
    if world > 1:
        predictions = _gather_predictions(tasks, predictions, world)
    return {t.name: score_predictions(t, predictions[t.name]) for t in tasks}


def scoring_settings(model: Any, tasks: Sequence[Task], add_bos: bool, max_length: int | None) -> dict[str, Any]:
    """What domain scores depend on besides the weights: the examples scored per task (after any
    `max_examples`), `add_bos` as resolved and `max_length` (the model's context when None)."""
    return {
        "examples": {task.name: len(task.examples) for task in tasks},
        "add_bos": add_bos,
        "max_length": max_length or model_context(model),
    }


def average_score(results: Results) -> float:
    """Mean over tasks of each task's first metric (the paper's domain average)."""
    if not results:
        raise ValueError("no results to average")
    return sum(next(iter(scores.values())) for scores in results.values()) / len(results)


def domain_groups(task_names: Sequence[str]) -> dict[str, list[str]]:
    """`task_names` grouped for their averages: each paper domain's tasks (`PAPER_TASKS`) apart, and task
    files apart from them (``"other"``), as the paper reports each domain's average on its own. One group,
    ``"domain"``, when they all fall in one."""
    from .tasks import PAPER_TASKS

    domain_of = {spec.name: domain for domain, specs in PAPER_TASKS.items() for spec in specs}
    groups: dict[str, list[str]] = {}
    for name in task_names:
        groups.setdefault(domain_of.get(name, "other"), []).append(name)
    return groups if len(groups) > 1 else {"domain": list(task_names)}


def group_averages(results: Results) -> dict[str, float]:
    """``{"finance": ..., "medicine": ...}``: the average of each group of `domain_groups` when the tasks
    fall in more than one (each paper domain apart, task files as ``"other"``); empty when in one."""
    groups = domain_groups(list(results))
    if len(groups) < 2:
        return {}
    return {label: average_score({task: results[task] for task in tasks}) for label, tasks in groups.items()}


def results_to_json(results: Results, path: str | os.PathLike | None = None) -> str:
    """Results as indented JSON, written to `path` when given."""
    text = json.dumps(results, indent=2) + "\n"
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def results_to_markdown(results: Results, average: bool = True, groups: dict[str, list[str]] | None = None) -> str:
    """A markdown table ``| Task | Metric | Score |``, with a final average row.

    `groups` (``{label: [task, ...]}``): one average row per group of more than one task,
    ``**{label} average**``, instead of one over every task (domain tasks and general
    benchmarks are averaged apart: the paper reports them apart).
    """
    lines = ["| Task | Metric | Score |", "| --- | --- | ---: |"]
    for task, scores in results.items():
        lines += [f"| {task} | {metric} | {value:.2f} |" for metric, value in scores.items()]
    if average:
        for label, tasks in (groups or {"": list(results)}).items():
            part = {task: results[task] for task in tasks if task in results}
            if len(part) > 1:
                name = f"{label} average".strip().capitalize()
                lines.append(f"| **{name}** | | **{average_score(part):.2f}** |")
    return "\n".join(lines) + "\n"
