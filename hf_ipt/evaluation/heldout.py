"""Comprehension tasks built from held-out raw texts (texts no training run has seen).

Two multiple-choice tasks, scored like the paper's classification tasks (mean NLL of
``' ' + option``), with distractors drawn from OTHER held-out texts so that only reading
the passage tells the options apart:

- ``heldout_title``: the article body, then "which headline belongs to it?" (gold + 3 titles
  of other articles);
- ``heldout_next_sentence``: the first sentences of an article, then "which sentence comes
  next?" (the true next sentence + 3 sentences of other articles).

Each item's null prompt is its question without the passage, so both tasks are also scored
``accuracy_calibrated`` (`Example.null_prompt`): what reading the passage adds, the measure
that separates weak from-scratch models while their plain accuracy is still near chance.

Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..miner import MinerConfig, split_sentences, split_title
from .tasks import Example, Task

OPTIONS = 4
_TITLES = MinerConfig()  # the miner's headline heuristic
MAX_BODY_CHARS = 1200
TITLE_QUESTION = "Question: Which headline belongs to this article?\nAnswer:"
NEXT_QUESTION = "Question: Which sentence comes next?\nAnswer:"
# The rule miner's task type that asks what each task asks (`summarize.title` a text's headline, `completion`
# the text that comes next): a model trained on those pairs has practised the held-out task's kind.
MINER_TASK_TYPES = {"heldout_title": "summarize", "heldout_next_sentence": "completion"}


def _check_limit(limit: int | None) -> None:
    """`None` means every item; 0 or less would silently mean every item too, so it is refused."""
    if limit is not None and limit < 1:
        raise ValueError(f"`limit` must be >= 1 (items per task) or None (all items), got {limit}")


def _mc(rng: random.Random, passage: str, question: str, gold: str, pool: Sequence[str]) -> Example | None:
    """A multiple-choice item: `passage` then `question`; the question alone is its null prompt."""
    distractors = [p for p in dict.fromkeys(pool) if p != gold]
    if len(distractors) < OPTIONS - 1:
        return None
    options = [gold, *rng.sample(distractors, OPTIONS - 1)]
    rng.shuffle(options)
    return Example(prompt=f"{passage}\n\n{question}", options=options, gold=options.index(gold), null_prompt=question)


def title_task(texts: Sequence[str], seed: int = 0, limit: int | None = None) -> Task | None:
    """Pick the headline of an article among headlines of other articles."""
    _check_limit(limit)
    rng = random.Random(f"heldout_title:{seed}")
    parts = [split_title(t, _TITLES) for t in texts]
    docs = [(title.strip(), body.strip()) for title, body in parts if title and body and len(title) < 150]
    titles = [title for title, _ in docs]
    examples = []
    for i, (title, body) in enumerate(docs):
        others = titles[:i] + titles[i + 1 :]
        example = _mc(rng, body[:MAX_BODY_CHARS], TITLE_QUESTION, title, others)
        if example:
            examples.append(example)
    examples = examples[:limit]
    return Task("heldout_title", "accuracy", examples) if examples else None


def next_sentence_task(texts: Sequence[str], seed: int = 0, limit: int | None = None) -> Task | None:
    """Pick the sentence that continues an article among sentences of other articles.

    The passage is the article's text up to the cut, every sentence kept; only the answer and
    the distractors must be sentences of 40-300 characters (a one-word line is no question).
    """
    _check_limit(limit)
    rng = random.Random(f"heldout_next_sentence:{seed}")
    docs = [split_sentences(split_title(t, _TITLES)[1]) for t in texts]
    sentences = [[s for s in doc if 40 <= len(s) <= 300] for doc in docs]
    examples = []
    for i, doc in enumerate(docs):
        cuts = [k for k in range(2, len(doc)) if 40 <= len(doc[k]) <= 300]
        if len(sentences[i]) < 4 or not cuts:
            continue
        cut = rng.choice(cuts)
        pool = [s for j, other in enumerate(sentences) if j != i for s in other]
        example = _mc(rng, " ".join(doc[:cut])[-MAX_BODY_CHARS:], NEXT_QUESTION, doc[cut], pool)
        if example:
            examples.append(example)
    examples = examples[:limit]
    return Task("heldout_next_sentence", "accuracy", examples) if examples else None


def heldout_tasks(texts: Sequence[str], seed: int = 0, limit: int | None = None) -> list[Task]:
    """Both held-out tasks (those that could be built from `texts`), each of at most `limit` items
    (`None`: all; 0 or less is refused)."""
    tasks = [title_task(texts, seed, limit), next_sentence_task(texts, seed, limit)]
    return [t for t in tasks if t is not None]
