"""The rule-based reading-comprehension miner: hf_ipt's model-free synthesizer.

Mines AdaptLLM-style tasks (NLI, cause-effect, paraphrase, word-to-text, title, completion)
from a raw text with patterns, no model. Select it with ``synthesizer="rules"``; see
``docs/miner.md``.

Example:
    ```python
    from hf_ipt.miner import RuleMiner, mine_pairs

    pairs = mine_pairs(text)  # list[hf_ipt.Pair]
    mined = RuleMiner().mine(text)  # list[MinedPair] with each pair's task
    ```
"""

from .config import TASK_TYPES, MinerConfig
from .keywords import KeywordStats, keywords_from_tokenizers
from .miner import MinedPair, RuleMiner, looks_english, mine_pairs, split_title
from .sentences import split_sentences
from .templates import SUBTYPES

__all__ = [
    "SUBTYPES",
    "TASK_TYPES",
    "KeywordStats",
    "MinedPair",
    "MinerConfig",
    "RuleMiner",
    "keywords_from_tokenizers",
    "looks_english",
    "mine_pairs",
    "split_sentences",
    "split_title",
]
