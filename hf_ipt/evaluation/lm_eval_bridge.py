"""Bridge to lm-evaluation-harness for the paper's general benchmarks.

hf_ipt checkpoints are plain `transformers` checkpoints, so lm-eval's ``hf`` model runs them
as they are; no code is needed. From a shell (`lm_eval_command` returns it):

```bash
pip install "lm-eval>=0.4.8"     # hf_ipt's lmeval extra (in a checkout: pip install -e ".[lmeval]")
lm_eval --model hf --model_args pretrained=./my-checkpoint,add_bos_token=True,dtype=auto \
    --tasks arc_easy,arc_challenge,boolq,social_iqa,winogrande,piqa,openbookqa,hellaswag,mmlu \
    --batch_size auto --output_path results/general
```

or ``hf-ipt eval --model ./my-checkpoint --tasks general``, which calls `run_lm_eval` on the
loaded model with the same BOS choice as the domain tasks and reports in the same format
(percentages; ``acc_norm`` first where the task has it, as the paper reports).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shlex
from collections.abc import Sequence
from typing import Any

# ARC-e/c, BoolQ, SIQA, WinoGrande, PIQA, OBQA, HellaSwag, MMLU (lm-eval task names)
GENERAL_TASKS: tuple[str, ...] = (
    "arc_easy",
    "arc_challenge",
    "boolq",
    "social_iqa",
    "winogrande",
    "piqa",
    "openbookqa",
    "hellaswag",
    "mmlu",
)
_METRICS = ("acc_norm", "acc")  # the first present is the task's main score


def _task_names(tasks: str | Sequence[str]) -> list[str]:
    """lm-eval task names from a list, or from one comma-separated string as lm-eval's ``--tasks``
    takes them (a string is no list of names: ``"boolq"`` was read as the tasks b, o, o, l, q)."""
    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    if not names or not all(names):
        raise ValueError(f"`tasks` names lm-eval tasks, e.g. 'arc_easy,boolq', got {tasks!r}")
    return names


def lm_eval_command(
    model_name_or_path: str | os.PathLike,
    tasks: str | Sequence[str] = GENERAL_TASKS,
    *,
    add_bos: bool = True,
    batch_size: int | str = "auto",
    output_path: str | os.PathLike | None = None,
) -> str:
    """The shell command that runs `tasks` on a checkpoint with lm-evaluation-harness.

    lm-eval's ``add_bos_token=True`` only turns on a BOS that the tokenizer adds by itself (Llama:
    yes; GPT-2, Qwen, SmolLM2: no); `run_lm_eval` prepends it for those too."""
    model_args = f"pretrained={model_name_or_path},add_bos_token={add_bos},dtype=auto"
    parts = [
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        model_args,
        "--tasks",
        ",".join(_task_names(tasks)),
        "--batch_size",
        str(batch_size),
    ]
    if output_path is not None:
        parts += ["--output_path", str(output_path)]
    return shlex.join(parts)


def convert_results(
    raw: dict[str, dict[str, Any]], tasks: Sequence[str]
) -> dict[str, dict[str, float]]:
    """lm-eval's ``results`` (``{"arc_easy": {"acc,none": 0.7, ...}}``) -> hf_ipt results, in percent."""
    converted = {}
    for task in tasks:
        scores = raw.get(task, {})
        picked = {m: 100.0 * scores[f"{m},none"] for m in _METRICS if f"{m},none" in scores}
        if not picked:
            raise ValueError(f"lm-eval gave no acc/acc_norm for {task!r}: got {sorted(scores)}")
        converted[task] = picked
    return converted


def _task_manager(manager_cls: Any, tasks: Sequence[str], include_path: Any) -> Any:
    """Index only `include_path` when it defines every task: lm-eval's thousands of built-in
    task files take a minute to index."""
    if include_path is not None:
        local = manager_cls(include_path=str(include_path), include_defaults=False)
        if set(tasks) <= set(local.all_tasks):
            return local
    return manager_cls(include_path=str(include_path) if include_path else None)


def require_lm_eval() -> None:
    """Fail with the install command when lm-evaluation-harness (what `run_lm_eval` imports) is missing."""
    try:
        import lm_eval
        import lm_eval.models.huggingface
        import lm_eval.tasks  # noqa: F401
    except ImportError as err:
        from ..cli import install_hint

        raise ImportError(f"the general benchmarks run on lm-evaluation-harness: {install_hint('lmeval')}") from err


def _lm_eval_tokenizer(tokenizer: Any, add_bos: bool) -> Any:
    """A copy of `tokenizer` that lm-eval can hand `add_bos`: lm-eval's ``add_bos_token`` only turns
    the tokenizer's own special tokens on or off, so a tokenizer that never adds its BOS (GPT-2,
    Qwen, SmolLM2) would be scored without one while the domain tasks prepend it. The copy also
    keeps lm-eval's pad-token setup off the caller's tokenizer."""
    from ..models import adds_bos
    from .scoring import EvalInputError

    tokenizer = copy.deepcopy(tokenizer)
    if not add_bos or adds_bos(tokenizer):
        return tokenizer
    if tokenizer.bos_token_id is None:
        raise EvalInputError("`add_bos=True` but the tokenizer has no `bos_token`: pass add_bos=False (--add_bos no)")
    with contextlib.suppress(AttributeError, NotImplementedError):  # tokenizers without the switch
        tokenizer.add_bos_token = True  # rebuilds the post-processor (transformers' TokenizersBackend)
    if not adds_bos(tokenizer):
        raise EvalInputError(f"`add_bos=True`, but {type(tokenizer).__name__} cannot be made to add its BOS for "
                             "lm-evaluation-harness: pass add_bos=False (--add_bos no) or a tokenizer that adds it")
    return tokenizer


@contextlib.contextmanager
def _training_mode_kept(model: Any):
    """lm-eval puts the model in eval mode for good: give its mode back (a mid-training call)."""
    was_training = getattr(model, "training", False)
    try:
        yield
    finally:
        if was_training:
            model.train()


def run_lm_eval(
    model: Any,
    tokenizer: Any,
    tasks: str | Sequence[str] = GENERAL_TASKS,
    *,
    add_bos: bool = True,
    batch_size: int = 8,
    max_length: int | None = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    include_path: str | os.PathLike | None = None,
) -> dict[str, dict[str, float]]:
    """Run lm-evaluation-harness tasks on an in-memory model.

    Args:
        model (`PreTrainedModel`): a causal LM.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer.
        tasks (`list[str]` or `str`, *optional*, defaults to `GENERAL_TASKS`): lm-eval task names
            (a string: comma-separated).
        add_bos (`bool`, *optional*, defaults to `True`): prepend the tokenizer's BOS, as the domain
            tasks do, also where the tokenizer does not add it by itself.
        batch_size (`int`, *optional*, defaults to 8): lm-eval batch size.
        max_length (`int`, *optional*): context limit (lm-eval's default when None).
        limit (`int`, *optional*): examples per task (for quick runs).
        num_fewshot (`int`, *optional*): demonstrations per prompt (each task's default when None).
        include_path (`str`, *optional*): folder of extra task YAML files (e.g. local data).

    Returns:
        `dict[str, dict[str, float]]`: ``{task: {"acc_norm": %, "acc": %}}``.
    """
    tasks = _task_names(tasks)
    require_lm_eval()
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tokenizer = _lm_eval_tokenizer(tokenizer, add_bos)
    with _training_mode_kept(model):
        lm = HFLM(
            pretrained=model,
            tokenizer=tokenizer,
            batch_size=batch_size,
            add_bos_token=add_bos,
            max_length=max_length,
        )
        manager = _task_manager(TaskManager, tasks, include_path)
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(tasks),
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=manager,
            log_samples=False,
        )
    return convert_results(out["results"], tasks)
