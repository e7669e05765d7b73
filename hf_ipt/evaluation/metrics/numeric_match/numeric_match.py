"""ConvFinQA score: does the answer hold the gold number (abs tol 1e-2)? A local `evaluate` module.

The paper's evaluation rules: "Generation tasks (NER, ConvFinQA): greedy, stop
at newline, at most 100 new tokens, prompt left-truncated to fit; NER entity F1, ConvFinQA
numeric match (abs tol 1e-2)." The paper's numbers come from ``compute_ConvFinQA`` in
microsoft/LMOps ``adaptllm/src/utils/metric.py`` (numbers read by ``normalized_num`` in
``adaptllm/src/utils/qa_utils.py``); the default here re-implements that rule:

- Only the first line of each text counts (split on ``\\n``, stripped).
- Its numbers are the matches of
  ``[-+]?[.]?[\\d]+(?:,\\d\\d\\d)*[\\.]?\\d*(?:[eE][-+]?\\d+)?[%]*``, thousands separators
  dropped, each trailing ``%`` dividing by 100 (``14.1%`` is 0.141). The reference evaluates
  the text as Python; here it is parsed as a float, and what that Python would reject (an
  integer with leading zeros such as ``05``) becomes ``inf``, as in the reference.
- An answer is right when both sides hold a number and ANY number of the prediction is
  within 1e-2 (absolute) of the FIRST number of the gold: ``2.5 (12.5 minus 10)`` is right
  for ``2.5``; ``14.1`` is wrong for ``14.1%``.
- The score is the share of right answers.

``compute(..., strict=True)`` keeps hf_ipt's stricter rule instead: the answer is the LAST
number of the prediction's first line (numbers in the working do not count), and a
percentage stands for both ``x`` and ``x / 100`` (``14.1%`` matches ``14.1`` and
``0.141``); two plain numbers must agree as written. Its number pattern also accepts a space
before ``%``.
"""

import math
import re

import datasets
import evaluate

# reference (LMOps qa_utils.normalized_num)
_REFERENCE_NUMBER = re.compile(r"[-+]?[.]?[\d]+(?:,\d\d\d)*[\.]?\d*(?:[eE][-+]?\d+)?[%]*")
# strict: a percentage may have a space before its sign
_NUMBER = re.compile(r"[-+]?\.?\d+(?:,\d\d\d)*\.?\d*(?:[eE][-+]?\d+)?(?:\s?%)?")
_INPUTS = """
Args:
    predictions (`list[str]`): generated answers.
    references (`list[str]`): gold answers.
    abs_tol (`float`, *optional*, defaults to 1e-2): tolerance of the match.
    strict (`bool`, *optional*, defaults to `False`): match only the prediction's last number
        (percentages read both ways) instead of the reference (LMOps) rule.
Returns:
    numeric_match (`float`): in [0, 1].
"""


# --- reference rule (LMOps compute_ConvFinQA + normalized_num) --------------------------
def _reference_value(token: str) -> float:
    """The value of one matched number, as the reference's ``eval`` would give it."""
    number = token.rstrip("%").replace(",", "")
    digits = number.lstrip("+-")
    if digits.isdigit() and digits[0] == "0" and digits.strip("0"):
        return math.inf  # a Python integer literal cannot have leading zeros: eval fails
    value = float(number)
    for _ in range(len(token) - len(token.rstrip("%"))):
        value /= 100
    return value


def parse_reference_numbers(text: str) -> list[float]:
    """The numbers on the first line of `text`, in order, as the reference reads them.

    Args:
        text (`str`): an answer such as ``"1,234.5"`` or ``"14.1% (up from 12%)"``.

    Returns:
        `list[float]`: thousands separators dropped, each ``%`` dividing by 100.
    """
    return [_reference_value(t) for t in _REFERENCE_NUMBER.findall(text.split("\n")[0].strip())]


def is_reference_match(prediction: str, reference: str, abs_tol: float = 1e-2) -> bool:
    """Whether any number of the prediction is within `abs_tol` of the gold's first number.

    Args:
        prediction (`str`): a generated answer; only its first line counts.
        reference (`str`): a gold answer; its first number is the gold value.
        abs_tol (`float`, *optional*, defaults to 1e-2): absolute tolerance.

    Returns:
        `bool`: False when either side has no number.
    """
    gold, pred = parse_reference_numbers(reference), parse_reference_numbers(prediction)
    if not gold or not pred:
        return False
    return any(math.isclose(p, gold[0], abs_tol=abs_tol) for p in pred)


# --- strict rule (final number, percentages both ways) ----------------------------------
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
            description="Share of answers holding a number within a tolerance of the gold's.",
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, abs_tol=1e-2, strict=False):
        match = is_match if strict else is_reference_match
        hits = [match(p, r, abs_tol) for p, r in zip(predictions, references)]
        return {"numeric_match": sum(hits) / len(hits)}
