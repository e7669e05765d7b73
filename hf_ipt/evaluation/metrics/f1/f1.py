"""F1 of option indices: micro (ChemProt, RCT) or weighted (FPB, FiQA_SA), as a local `evaluate` module.

Computed with scikit-learn's `f1_score`, like the authors' scripts; classes that never occur
in the references count as 0 instead of warning.
"""

import datasets
import evaluate
from sklearn.metrics import f1_score

_AVERAGES = ("micro", "macro", "weighted")
_INPUTS = """
Args:
    predictions (`list[int]`): chosen option indices.
    references (`list[int]`): gold option indices.
    average (`str`, *optional*, defaults to `"micro"`): "micro", "macro" or "weighted".
Returns:
    f1 (`float`): in [0, 1].
"""


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 score over option indices.",
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, average="micro"):
        if average not in _AVERAGES:
            raise ValueError(f"`average` must be one of {_AVERAGES}, got {average!r}")
        score = f1_score(references, predictions, average=average, zero_division=0)
        return {"f1": float(score)}
