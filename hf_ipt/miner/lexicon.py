"""The miner's word lists (abbreviations, function words, ...), kept as data in ``lexicon.json``."""

from __future__ import annotations

import functools
import json
from importlib import resources


@functools.cache
def _lexicon() -> dict[str, list[str]]:
    return json.loads(resources.files("hf_ipt.miner").joinpath("lexicon.json").read_text("utf-8"))


def lexicon(name: str) -> frozenset[str]:
    """The word list `name` of ``lexicon.json`` as a frozenset (for membership tests only)."""
    return frozenset(_lexicon()[name])
