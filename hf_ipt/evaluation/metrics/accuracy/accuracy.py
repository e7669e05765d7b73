"""Accuracy of option indices (PubMedQA, MQP, USMLE), as a local `evaluate` module."""

import datasets
import evaluate

_DESCRIPTION = "Fraction of predicted option indices equal to the gold index."
_INPUTS = """
Args:
    predictions (`list[int]`): chosen option indices.
    references (`list[int]`): gold option indices.
Returns:
    accuracy (`float`): in [0, 1].
"""


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        hits = sum(int(p == r) for p, r in zip(predictions, references))
        return {"accuracy": hits / len(references)}
