"""Entity-level F1 of generated ``entity (type)`` lists (finance NER), as a local `evaluate` module.

The paper's evaluation rules: "Generation tasks (NER, ConvFinQA): greedy, stop
at newline, at most 100 new tokens, ...; NER entity F1". The paper's numbers come from
``compute_ner`` in microsoft/LMOps ``adaptllm/src/utils/metric.py`` (entities parsed by
``parse_ner`` in ``adaptllm/src/utils/qa_utils.py``, scored by the ``nereval`` package,
jantrienes/nereval). The default here re-implements that rule, without ``nereval``:

- Parsing: every match of ``(\\S+\\s+)(\\(\\S+\\))`` in the text is one entity; its name is the
  first group less its final (whitespace) character, its type the second group less the
  parentheses. So only the LAST word before ``(type)`` is the name: ``Silicon Valley Bank
  (organization)`` gives ``("Bank", "organization")``. Text is compared as written (no case
  folding). Repeated ``(name, type)`` pairs are kept once, first occurrence first.
- Scoring (nereval, every entity starting at offset 0): for each gold entity, walk the
  predicted entities in order; a same name earns 1 and a same type earns 1 (both names
  non-empty, nereval's overlap test); stop at the first predicted entity that earns
  anything. Precision = correct / (2 * predicted), recall = correct / (2 * gold), F1 their
  harmonic mean, 0 when undefined. So ``John (person)`` against ``Mary (person)`` scores 0.5.
- The task score is the mean per-example F1.

``compute(..., strict=True)`` keeps hf_ipt's stricter rule instead: entities are full spans
(from the end of the previous entity, list separators ``,`` ``;`` ``and`` and a ``Label:``
lead-in dropped, up to the ``(``), text and type normalised (case-folded, inner whitespace
collapsed, edge punctuation stripped); a predicted entity counts only on an exact
``(text, type)`` match, one-to-one (multiset intersection); precision = correct / predicted,
recall = correct / gold; F1 per example (0 when either side has no entity), averaged.
"""

import re
from collections import Counter

import datasets
import evaluate

# reference (LMOps qa_utils.parse_ner): the last word before a parenthesised type
_REFERENCE_ENTITY = re.compile(r"(\S+\s+)(\(\S+\))")
# strict: a full span up to its parenthesised type
_ENTITY = re.compile(r"[\s,;]*(?:and\s+)?([^()]+?)\s*\(([^()]+)\)")
_EDGE = " \t\"'`.,;:"
_INPUTS = """
Args:
    predictions (`list[str]`): generated answers.
    references (`list[str]`): gold answers in the same ``entity (type)`` format.
    strict (`bool`, *optional*, defaults to `False`): score full, normalised spans by exact
        one-to-one match instead of the reference (LMOps / nereval) rule.
Returns:
    entity_f1 (`float`): in [0, 1], mean of the per-example F1.
"""


# --- reference rule (LMOps compute_ner + nereval) ---------------------------------------
def parse_reference_entities(text: str) -> list[tuple[str, str]]:
    """The ``(name, type)`` pairs of `text` as the reference evaluation parses them.

    Args:
        text (`str`): an answer such as ``"Silicon Valley Bank (organization), Bob (person)"``.

    Returns:
        `list[tuple[str, str]]`: one pair per ``word (type)`` match, the name being the single
        word before the type (``("Bank", "organization")``, ``("Bob", "person")``);
        duplicates dropped, first occurrences kept in order.
    """
    entities: dict[tuple[str, str], None] = {}
    for word, kind in _REFERENCE_ENTITY.findall(text):
        name = word[:-1] if len(word) > 1 else ""  # drop the one whitespace char matched
        kind = kind[1:-1] if len(kind) > 2 else ""  # drop the parentheses
        entities.setdefault((name, kind), None)
    return list(entities)


def reference_example_f1(gold: list[tuple[str, str]], pred: list[tuple[str, str]]) -> float:
    """F1 of one example under nereval's text-and-type partial credit.

    Each gold entity is compared with the predicted ones in order until one shares its name
    or its type; a shared name and a shared type (with both names non-empty) earn 1 each.
    Each entity is worth 2 points on its side.

    Args:
        gold (`list[tuple[str, str]]`): gold entities, from `parse_reference_entities`.
        pred (`list[tuple[str, str]]`): predicted entities, from `parse_reference_entities`.

    Returns:
        `float`: in [0, 1]; 0 when either side has no entity or nothing is earned.
    """
    correct = 0
    for gold_name, gold_type in gold:
        for pred_name, pred_type in pred:
            same_text = gold_name == pred_name
            same_type = gold_type == pred_type and bool(gold_name) and bool(pred_name)
            correct += same_text + same_type
            if same_text or same_type:
                break
    precision = correct / (2 * len(pred)) if pred else 0.0
    recall = correct / (2 * len(gold)) if gold else 0.0
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


# --- strict rule (full spans, exact one-to-one) -----------------------------------------
def normalize(text: str) -> str:
    """Case-folded `text` with whitespace runs collapsed and edge punctuation stripped."""
    return " ".join(text.split()).strip(_EDGE).casefold()


def parse_entities(text: str) -> Counter[tuple[str, str]]:
    """The multiset of normalised ``(text, type)`` pairs found in `text` (strict rule).

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
    """F1 of one example from exact, one-to-one ``(text, type)`` matches (strict rule).

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


def score(prediction: str, reference: str, strict: bool = False) -> float:
    """F1 of one generated answer against its gold, by the reference rule or the strict one."""
    if strict:
        return example_f1(parse_entities(reference), parse_entities(prediction))
    return reference_example_f1(
        parse_reference_entities(reference), parse_reference_entities(prediction)
    )


class EntityF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Entity-level F1 of generated 'entity (type)' lists (LMOps/nereval rule).",
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, strict=False):
        scores = [score(pred, ref, strict) for pred, ref in zip(predictions, references)]
        return {"entity_f1": sum(scores) / len(scores)}
