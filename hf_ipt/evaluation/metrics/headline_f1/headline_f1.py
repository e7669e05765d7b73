"""Headline score: weighted F1 per sub-question, averaged over sub-questions (local `evaluate` module).

Each Headline row asks one of several yes/no questions about a news headline (its
``class_id``); the paper reports the mean of the per-question weighted F1.
"""

import datasets
import evaluate
from sklearn.metrics import f1_score

_INPUTS = """
Args:
    predictions (`list[int]`): chosen option indices.
    references (`list[int]`): gold option indices.
    groups (`list[str]`): the sub-question of each row, same length as `predictions`.
Returns:
    headline_f1 (`float`): in [0, 1], the unweighted mean over the sub-questions present.
"""


class HeadlineF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Weighted F1 per sub-question, averaged over sub-questions.",
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, groups=None):
        if groups is None or len(groups) != len(predictions):
            raise ValueError("`groups` must give the sub-question (class_id) of every prediction")
        by_group = {}
        for group, pred, ref in zip(groups, predictions, references):
            preds, refs = by_group.setdefault(group, ([], []))
            preds.append(pred)
            refs.append(ref)
        scores = [
            f1_score(refs, preds, average="weighted", zero_division=0)
            for preds, refs in by_group.values()
        ]
        return {"headline_f1": float(sum(scores) / len(scores))}
