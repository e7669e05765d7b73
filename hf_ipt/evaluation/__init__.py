"""Domain evaluation of Instruction Pre-Training models (paper section on evaluation).

- tasks as data (`Task`, `Example`, `load_tasks`; the paper's AdaptLLM task sets);
- scoring (`score_options`: mean token NLL of ``' ' + option``; `generate_answers`: greedy,
  stop at newline);
- metrics as local `evaluate` modules (`hf_ipt/evaluation/metrics/<name>/<name>.py`);
- `evaluate(model, tokenizer, tasks)` -> ``{task: {metric: percent}}``, `results_to_json`,
  `results_to_markdown`;
- `EvalCallback` for a `Trainer`, the ``hf-ipt eval`` command (`cli.main`), and a bridge to
  lm-evaluation-harness for the general benchmarks (`lm_eval_bridge`).

Only the task data model imports eagerly; torch, transformers and evaluate load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .tasks import PAPER_TASKS, Example, Task, TaskSpec, load_task_file, load_tasks, save_task_file

# public name -> submodule that defines it, imported lazily on first attribute access
_LAZY: dict[str, str] = {
    "score_options": "hf_ipt.evaluation.scoring",
    "generate_answers": "hf_ipt.evaluation.scoring",
    "default_add_bos": "hf_ipt.evaluation.scoring",
    "evaluate": "hf_ipt.evaluation.harness",
    "predict": "hf_ipt.evaluation.harness",
    "average_score": "hf_ipt.evaluation.harness",
    "results_to_json": "hf_ipt.evaluation.harness",
    "results_to_markdown": "hf_ipt.evaluation.harness",
    "compute_metric": "hf_ipt.evaluation.metrics",
    "load_metric": "hf_ipt.evaluation.metrics",
    "EvalCallback": "hf_ipt.evaluation.callback",
    "run_lm_eval": "hf_ipt.evaluation.lm_eval_bridge",
    "lm_eval_command": "hf_ipt.evaluation.lm_eval_bridge",
    "GENERAL_TASKS": "hf_ipt.evaluation.lm_eval_bridge",
}

__all__ = [
    "GENERAL_TASKS",
    "PAPER_TASKS",
    "EvalCallback",
    "Example",
    "Task",
    "TaskSpec",
    "average_score",
    "compute_metric",
    "default_add_bos",
    "evaluate",
    "generate_answers",
    "lm_eval_command",
    "load_metric",
    "load_task_file",
    "load_tasks",
    "predict",
    "results_to_json",
    "results_to_markdown",
    "run_lm_eval",
    "save_task_file",
    "score_options",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_ipt.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too: tab completion, dir()
    return sorted({*globals(), *_LAZY})
