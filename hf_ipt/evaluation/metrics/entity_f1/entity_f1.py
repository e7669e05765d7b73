"""Entity-level F1 of generated ``word (type)`` lists (finance NER), as a local `evaluate` module.

Follows the scoring of the paper's evaluation: entities are parsed from the text as a token
followed by its type in parentheses, e.g. ``Acme (organization), Smith (person)``. Each gold
entity earns up to 2 points from the first predicted entity that shares its text or its type
(1 for the text, 1 for the type), as in MUC-style scoring; precision divides by 2 x predicted
entities, recall by 2 x gold entities. F1 is computed per example, then averaged.
"""

import re

import datasets
import evaluate

_ENTITY = re.compile(r"(\S+)\s+\((\S+)\)")
_INPUTS = """
Args:
    predictions (`list[str]`): generated answers.
    references (`list[str]`): gold answers in the same ``word (type)`` format.
Returns:
    entity_f1 (`float`): in [0, 1], mean of the per-example F1.
"""


def parse_entities(text):
    """Ordered, de-duplicated ``(text, type)`` pairs found in `text`."""
    found = []
    for name, kind in _ENTITY.findall(text):
        if (name, kind) not in found:
            found.append((name, kind))
    return found


def example_f1(gold, pred):
    """MUC-style F1 of one example (0 when either side has no entity)."""
    correct = 0
    for gold_text, gold_type in gold:
        for text, kind in pred:
            if text == gold_text or kind == gold_type:
                correct += int(text == gold_text) + int(kind == gold_type)
                break
    if not gold or not pred or correct == 0:
        return 0.0
    precision, recall = correct / (2 * len(pred)), correct / (2 * len(gold))
    return 2 * precision * recall / (precision + recall)


class EntityF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Entity-level F1 of generated 'word (type)' lists.",
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
