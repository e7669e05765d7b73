"""The miner's question/answer templates, kept as data in ``templates.json``."""

from __future__ import annotations

import functools
import json
from importlib import resources

SUBTYPES = (
    "nli.entail",
    "nli.contradict",
    "nli.neutral",
    "commonsense.effect",
    "commonsense.cause",
    "paraphrase.similar",
    "paraphrase.different",
    "word2text.definition",
    "word2text.acronym",
    "word2text.topic",
    "word2text.keywords",
    "summarize.title",
    "summarize.article",
    "completion",
)


def task_type(subtype: str) -> str:
    """``"nli.entail"`` -> ``"nli"``; ``"completion"`` -> ``"completion"``."""
    return subtype.split(".", 1)[0]


@functools.cache
def load_templates() -> dict[str, tuple[tuple[tuple[str, str], ...], dict[str, str]]]:
    """Per sub-type: its ``(question, answer)`` templates and its constant fields.

    A sub-type draws from the templates of its type (shared, e.g. ``"nli"``), of the groups its
    ``includes`` entry names (``"nli.labels"``: the Yes/No and Entailment/Contradiction/Neutral
    questions, which a contrast cannot answer) and its own.
    """
    data = json.loads(resources.files("hf_ipt.miner").joinpath("templates.json").read_text("utf-8"))
    templates, constants, includes = data["templates"], data["constants"], data.get("includes", {})
    table = {}
    for subtype in SUBTYPES:
        shared = templates.get(task_type(subtype), []) if task_type(subtype) != subtype else []
        groups = [pair for group in includes.get(subtype, ()) for pair in templates[group]]
        pool = tuple((q, a) for q, a in [*shared, *groups, *templates.get(subtype, [])])
        table[subtype] = (pool, constants.get(subtype, {}))
    return table
