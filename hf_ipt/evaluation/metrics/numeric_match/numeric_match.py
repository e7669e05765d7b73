"""ConvFinQA score: does the answer state the gold number (abs tol 1e-2)? A local `evaluate` module.

Only the first line of each text counts. The gold value is the first number of the
reference; a prediction is right when any of its numbers is within 1e-2 of it. Numbers may
carry thousands separators and trailing ``%`` (each one divides by 100), so ``14.1%``
matches ``0.141``.
"""

import math
import re

import datasets
import evaluate

_NUMBER = re.compile(r"[-+]?\.?\d+(?:,\d\d\d)*\.?\d*(?:[eE][-+]?\d+)?%*")
_INPUTS = """
Args:
    predictions (`list[str]`): generated answers.
    references (`list[str]`): gold answers.
    abs_tol (`float`, *optional*, defaults to 1e-2): tolerance of the match.
Returns:
    numeric_match (`float`): in [0, 1].
"""


def parse_numbers(text):
    """The numbers on the first line of `text`, percentages scaled to fractions."""
    values = []
    for token in _NUMBER.findall(text.split("\n")[0].strip()):
        digits = token.rstrip("%")
        percents = len(token) - len(digits)
        values.append(float(digits.replace(",", "")) / 100**percents)
    return values


def is_match(prediction, reference, abs_tol=1e-2):
    gold = parse_numbers(reference)
    if not gold:
        return False
    return any(math.isclose(value, gold[0], abs_tol=abs_tol) for value in parse_numbers(prediction))


class NumericMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Share of answers that state the gold number within an absolute tolerance.",
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, abs_tol=1e-2):
        hits = [is_match(p, r, abs_tol) for p, r in zip(predictions, references)]
        return {"numeric_match": sum(hits) / len(hits)}
