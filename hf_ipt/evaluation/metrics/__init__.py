"""The paper's metrics as `evaluate` modules shipped inside hf_ipt, loaded by local path.

``evaluate.load("accuracy")`` downloads the module script from the Hub and fails offline;
``evaluate.load(<folder of this package>)`` never touches the network. Each folder here holds
one module, ``<name>/<name>.py``:

- ``accuracy``: option accuracy (PubMedQA, MQP, USMLE);
- ``f1``: micro (ChemProt, RCT) or weighted (FPB, FiQA_SA) F1 over option indices;
- ``headline_f1``: weighted F1 per Headline sub-question, averaged;
- ``entity_f1``: entity F1 of generated ``entity (type)`` lists (NER), by the rule of the
  paper's evaluation code (microsoft/LMOps ``adaptllm/src/utils/metric.py`` with nereval);
  ``compute(..., strict=True)`` for exact full-span matches;
- ``numeric_match``: any number of the answer's first line within 1e-2 of the gold's first
  number (ConvFinQA), as in LMOps; ``compute(..., strict=True)`` for the final number only.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

METRICS_DIR = Path(__file__).parent

# task metric name -> (module folder, keyword arguments of `compute`)
METRIC_MODULES: dict[str, tuple[str, dict[str, Any]]] = {
    "accuracy": ("accuracy", {}),
    "micro_f1": ("f1", {"average": "micro"}),
    "weighted_f1": ("f1", {"average": "weighted"}),
    "headline_f1": ("headline_f1", {}),
    "entity_f1": ("entity_f1", {}),
    "numeric_match": ("numeric_match", {}),
}


def metric_path(module: str) -> Path:
    """The folder of a shipped metric module, e.g. ``metric_path("f1")``."""
    path = METRICS_DIR / module
    if not (path / f"{module}.py").is_file():
        shipped = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())
        raise ValueError(f"no metric module {module!r} in {METRICS_DIR}: shipped are {shipped}")
    return path


@cache
def load_metric(module: str):
    """`evaluate.load` of a shipped module, by local path (no Hub access)."""
    try:
        import evaluate
    except ImportError as err:
        from ...cli import install_hint

        raise ImportError(f"hf_ipt's metrics need `evaluate`: {install_hint('eval')}") from err
    return evaluate.load(str(metric_path(module)))


def compute_metric(
    name: str,
    predictions: Sequence[Any],
    references: Sequence[Any],
    groups: Sequence[str] | None = None,
) -> float:
    """Score predictions with the task metric `name`, as a percentage (the paper's scale).

    Args:
        name (`str`): a task metric, one of `METRIC_MODULES`.
        predictions (`list`): option indices (classification) or generated strings.
        references (`list`): gold indices or gold strings.
        groups (`list[str]`, *optional*): sub-question of each row (``headline_f1`` only).
    """
    if name not in METRIC_MODULES:
        raise ValueError(f"unknown metric {name!r}: use one of {sorted(METRIC_MODULES)}")
    module, kwargs = METRIC_MODULES[name]
    if name == "headline_f1":
        kwargs = {**kwargs, "groups": list(groups or [])}
    out = load_metric(module).compute(
        predictions=list(predictions), references=list(references), **kwargs
    )
    return 100.0 * out[module]
