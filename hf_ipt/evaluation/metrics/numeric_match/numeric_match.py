"""ConvFinQA score: is the answer's number the gold one (abs tol 1e-2)? A local `evaluate` module.

The paper's evaluation rules: "Generation tasks (NER, ConvFinQA): greedy, stop
at newline, at most 100 new tokens, prompt left-truncated to fit; NER entity F1, ConvFinQA
numeric match (abs tol 1e-2)." The spec names no percentage or x-vs-x/100 rule, so none is
added: a ``%`` sign is ignored on both sides (``14.1%`` and ``14.1`` are both 14.1) and
``0.141`` does not match ``14.1%``.

Only the first line of each text counts. The gold value is the first number of the
reference; the predicted value is the LAST number of the prediction's first line (the
stated answer, e.g. after any working). Thousands separators are dropped.
"""

import math
import re

import datasets
import evaluate

_NUMBER = re.compile(r"[-+]?\.?\d+(?:,\d\d\d)*\.?\d*(?:[eE][-+]?\d+)?")
_INPUTS = """
Args:
    predictions (`list[str]`): generated answers.
    references (`list[str]`): gold answers.
    abs_tol (`float`, *optional*, defaults to 1e-2): tolerance of the match.
Returns:
    numeric_match (`float`): in [0, 1].
"""


def parse_numbers(text: str) -> list[float]:
    """The numbers on the first line of `text`, in order.

    Args:
        text (`str`): an answer such as ``"1,234.5"`` or ``"14.1%"``.

    Returns:
        `list[float]`: thousands separators dropped; a trailing ``%`` is ignored (the same on
        both sides), so ``"14.1%"`` gives ``[14.1]``.
    """
    return [float(token.replace(",", "")) for token in _NUMBER.findall(text.split("\n")[0])]


def is_match(prediction: str, reference: str, abs_tol: float = 1e-2) -> bool:
    """Whether the prediction's final number is within `abs_tol` of the reference's number.

    Args:
        prediction (`str`): a generated answer; its last number on the first line is the answer.
        reference (`str`): a gold answer; its first number is the gold value.
        abs_tol (`float`, *optional*, defaults to 1e-2): absolute tolerance.

    Returns:
        `bool`: False when either side has no number.
    """
    gold, pred = parse_numbers(reference), parse_numbers(prediction)
    if not gold or not pred:
        return False
    return math.isclose(pred[-1], gold[0], abs_tol=abs_tol)


class NumericMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Share of answers whose final number is within a tolerance of the gold.",
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, abs_tol=1e-2):
        hits = [is_match(p, r, abs_tol) for p, r in zip(predictions, references)]
        return {"numeric_match": sum(hits) / len(hits)}
