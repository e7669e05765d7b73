"""Entity-level F1 of generated ``entity (type)`` lists (finance NER), as a local `evaluate` module.

The paper's evaluation rules: "Generation tasks (NER, ConvFinQA): greedy, stop
at newline, at most 100 new tokens, ...; NER entity F1". Entities are parsed from the text as
a full span followed by its type in parentheses, e.g. ``New York Times (organization), John
Smith (person)``: the span runs from the end of the previous entity (list separators ``,``,
``;`` and ``and`` dropped) to the ``(``. Text and type are normalised (case-folded, inner
whitespace collapsed, edge punctuation stripped) and a predicted entity is correct only when
its exact ``(text, type)`` pair is in the gold list. Matching is one-to-one (multiset
intersection): a prediction credits at most one gold entity. Precision divides the correct
count by the predicted entities, recall by the gold entities; F1 is computed per example
(0 when either side has no entity), then averaged.
"""

import re
from collections import Counter

import datasets
import evaluate

_ENTITY = re.compile(r"[\s,;]*(?:and\s+)?([^()]+?)\s*\(([^()]+)\)")
_EDGE = " \t\"'`.,;:"
_INPUTS = """
Args:
    predictions (`list[str]`): generated answers.
    references (`list[str]`): gold answers in the same ``entity (type)`` format.
Returns:
    entity_f1 (`float`): in [0, 1], mean of the per-example F1.
"""


def normalize(text: str) -> str:
    """Case-folded `text` with whitespace runs collapsed and edge punctuation stripped."""
    return " ".join(text.split()).strip(_EDGE).casefold()


def parse_entities(text: str) -> Counter[tuple[str, str]]:
    """The multiset of normalised ``(text, type)`` pairs found in `text`.

    Args:
        text (`str`): an answer such as ``"New York (location), Bob Smith (person)"``.

    Returns:
        `Counter[tuple[str, str]]`: each full entity span with its type, counted as often as
        it occurs; pairs whose text or type is empty after normalisation are dropped.
    """
    found: Counter[tuple[str, str]] = Counter()
    for name, kind in _ENTITY.findall(text):
        # a lead-in ("Entities: Apple (organization)") is not part of the first entity
        name, kind = normalize(name.rsplit(":", 1)[-1]), normalize(kind)
        if name and kind:
            found[(name, kind)] += 1
    return found


def example_f1(gold: Counter[tuple[str, str]], pred: Counter[tuple[str, str]]) -> float:
    """F1 of one example from exact, one-to-one ``(text, type)`` matches.

    Args:
        gold (`Counter[tuple[str, str]]`): gold entities, from `parse_entities`.
        pred (`Counter[tuple[str, str]]`): predicted entities, from `parse_entities`.

    Returns:
        `float`: in [0, 1]; 0 when either side has no entity or nothing matches.
    """
    correct = sum((gold & pred).values())
    if correct == 0:
        return 0.0
    precision, recall = correct / sum(pred.values()), correct / sum(gold.values())
    return 2 * precision * recall / (precision + recall)


class EntityF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Entity-level F1 of generated 'entity (type)' lists, exact matches.",
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        scores = [
            example_f1(parse_entities(ref), parse_entities(pred))
            for pred, ref in zip(predictions, references)
        ]
        return {"entity_f1": sum(scores) / len(scores)}
