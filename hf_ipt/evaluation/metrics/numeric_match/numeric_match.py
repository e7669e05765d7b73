"""ConvFinQA score: is the answer's number the gold one (abs tol 1e-2)? A local `evaluate` module.

The paper's evaluation rules: "Generation tasks (NER, ConvFinQA): greedy, stop
at newline, at most 100 new tokens, prompt left-truncated to fit; NER entity F1, ConvFinQA
numeric match (abs tol 1e-2)."

Only the first line of each text counts. The gold value is the first number of the
reference; the predicted value is the LAST number of the prediction's first line (the
stated answer, e.g. after any working). Thousands separators are dropped. A percentage is
ambiguous (ConvFinQA golds are written both as ``14.1%`` and as the fraction ``0.141``), so
a number with ``%`` stands for both ``x`` and ``x / 100``: ``14.1%`` matches ``14.1`` and
``0.141``; two plain numbers must agree as they are.
"""

import math
import re

import datasets
import evaluate

_NUMBER = re.compile(r"[-+]?\.?\d+(?:,\d\d\d)*\.?\d*(?:[eE][-+]?\d+)?(?:\s?%)?")
_INPUTS = """
Args:
    predictions (`list[str]`): generated answers.
    references (`list[str]`): gold answers.
    abs_tol (`float`, *optional*, defaults to 1e-2): tolerance of the match.
Returns:
    numeric_match (`float`): in [0, 1].
"""


def parse_numbers(text: str) -> list[tuple[float, ...]]:
    """The numbers on the first line of `text`, in order, each as its candidate values.

    Args:
        text (`str`): an answer such as ``"1,234.5"`` or ``"14.1%"``.

    Returns:
        `list[tuple[float, ...]]`: ``(x,)`` for a plain number, ``(x, x / 100)`` for a
        percentage; thousands separators dropped.
    """
    numbers = []
    for token in _NUMBER.findall(text.split("\n")[0]):
        value = float(token.rstrip("% ").replace(",", ""))
        numbers.append((value, value / 100) if token.endswith("%") else (value,))
    return numbers


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
    return any(math.isclose(p, g, abs_tol=abs_tol) for p in pred[-1] for g in gold[0])


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
