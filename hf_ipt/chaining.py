"""Multi-round ("M-shot") synthesis: chain each text to the same position of earlier rounds.

Raw texts are split into M consecutive slices; round r synthesizes slice r. Text i of round
r gets, as few-shot context, the chain of text i of the earlier rounds with their parsed
pairs. The token budget is EXACT: every candidate prompt is tokenized with the
synthesizer's tokenizer and must leave room for ``max_new_tokens``. As in the reference
(`get_dataset` in microsoft/LMOps ``instruction_pretrain``), the chain is all or nothing: if
the whole chain plus the new text does not fit, the text is synthesized zero-shot and the
chain is cut there (`ChainStats.chains_cut`), so a pre-training text never holds a shot its
last prompt did not see. A shot's text is never cut; a text too long on its own is
truncated at a token boundary (counted in `ChainStats.truncated`).

Each entry records the entries it inherits (`shots`) and its `parent` (the previous entry
of its chain, `None` when the chain starts here). An entry whose completion yields no pair
does not continue its chain (the reference's ``inherit_from_prev=False``): it becomes a
chain of its own, emitted later as raw text, and the entries before it keep theirs.
`chains_of` turns entries into the connected chains that templify renders, one
pre-training text each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .backends.base import Generation
from .protocol import (
    Pair,
    blank_markers,
    blank_shot,
    build_prompt,
    encode_prompt,
    parse_pairs,
    special_tokens,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ChainEntry:
    """One text in one round.

    Args:
        id (`int`): index of the entry in the window, in round order (round 0 first).
        round (`int`): the round this text belongs to.
        position (`int`): its index within its round; entries chain by position.
        text (`str`): the raw text, unchanged (templify renders this).
        context (`str`): the text as sent to the synthesizer: protocol markers and the
            tokenizer's other special tokens blanked (`blank_markers`), truncated when too long.
        prompt_ids (`list[int]`): the exact token ids of the prompt.
        shots (`tuple[int, ...]`): ids of the earlier entries used as shots, oldest first.
        parent (`int`, *optional*): id of the previous entry of the chain, `None` at a chain start.
        truncated (`bool`): the context was cut to fit the token budget.
        pairs (`list[Pair]`): parsed pairs, filled in after generation.
        tasks (`list[str]`): task type of each pair where the synthesizer knows it (rule miner).
        completion (`str`): the raw completion.
        error (`str`, *optional*): why the prompt produced nothing, when it failed.
    """

    id: int
    round: int
    position: int
    text: str
    context: str
    prompt_ids: list[int] = field(default_factory=list)
    shots: tuple[int, ...] = ()
    parent: int | None = None
    truncated: bool = False
    pairs: list[Pair] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    completion: str = ""
    error: str | None = None


@dataclass
class ChainStats:
    """Counts of what the budget did to a window of prompts."""

    prompts: int = 0
    truncated: int = 0
    shots_dropped: int = 0  # shots of the chains cut (a cut drops the whole chain)
    chains_cut: int = 0
    errors: int = 0
    markers_only: int = 0  # texts blank once markers are: sent to no engine (`MARKERS_ONLY`)

    def update(self, other: ChainStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def split_rounds(texts: Sequence[T], rounds: int) -> list[list[T]]:
    """Split `texts` into `rounds` consecutive slices whose sizes differ by at most one."""
    if rounds < 1:
        raise ValueError(f"`rounds` must be >= 1, got {rounds}")
    size, extra = divmod(len(texts), rounds)
    slices, start = [], 0
    for r in range(rounds):
        end = start + size + (1 if r < extra else 0)
        slices.append(list(texts[start:end]))
        start = end
    return slices


def ancestry(entry: ChainEntry, entries: Sequence[ChainEntry]) -> list[ChainEntry]:
    """The chain that ends at `entry`, oldest first (`entries` indexed by id)."""
    chain = [entry]
    while chain[-1].parent is not None:
        chain.append(entries[chain[-1].parent])
    return chain[::-1]


def _truncate_to_budget(tokenizer: Any, text: str, prompt_len: int, budget: int) -> str:
    """Cut `text` at a token boundary so that its zero-shot prompt fits `budget` tokens."""
    ids = encode_prompt(tokenizer, text)
    keep = len(ids) - (prompt_len - budget)
    while keep > 0:
        # No space clean-up, and no half of a byte-fallback character left at the cut.
        cut = tokenizer.decode(ids[:keep], clean_up_tokenization_spaces=False).rstrip("\ufffd")
        over = len(encode_prompt(tokenizer, build_prompt(cut))) - budget
        if over <= 0:
            return cut
        keep -= over  # decode/encode round trips may merge differently: shrink by the excess
    return ""


def plan_entry(
    entry: ChainEntry,
    candidates: list[ChainEntry],
    tokenizer: Any,
    budget: int,
    stats: ChainStats,
) -> ChainEntry:
    """Fill `entry.prompt_ids`: the whole chain `candidates` as shots if it fits in `budget`
    tokens, else none (zero-shot, the chain cut here)."""
    special = special_tokens(tokenizer)
    # Parsed pairs can hold a literal `</s>` or `<s>` (an answer about markup): blanked as contexts
    # are, or the next round's prompt would get an EOS/BOS in the middle of a shot; a pair left
    # blank is not shown, nor a text left with no pair (`blank_shot`).
    blanked = [(s, blank_shot(s.context, [(p.question, p.answer) for p in s.pairs], special)) for s in candidates]
    if blanked and blanked[-1][1] is None:
        # The text before this one has no pair to show: it ends its chain, as a text without pairs does (its
        # ancestors as this entry's shots would give them a second follower, rendered in two chains).
        blanked = []
    shots = [s for s, shot in blanked if shot is not None]
    examples = [shot for _, shot in blanked if shot is not None]
    ids = encode_prompt(tokenizer, build_prompt(entry.context, examples))
    if shots and len(ids) > budget:
        stats.chains_cut += 1
        stats.shots_dropped += len(shots)
        shots = []
        ids = encode_prompt(tokenizer, build_prompt(entry.context))
    if len(ids) > budget:  # the text alone is too long: cut it at a token boundary
        entry.context = _truncate_to_budget(tokenizer, entry.context, len(ids), budget)
        entry.truncated = True
        stats.truncated += 1
        ids = encode_prompt(tokenizer, build_prompt(entry.context))
    entry.prompt_ids = ids
    entry.shots = tuple(s.id for s in shots)
    entry.parent = shots[-1].id if shots else None
    stats.prompts += 1
    return entry


def plan_round(
    texts: Sequence[str],
    round_index: int,
    entries: list[ChainEntry],
    previous: Sequence[ChainEntry],
    tokenizer: Any,
    budget: int,
    stats: ChainStats,
) -> list[ChainEntry]:
    """Plan the prompts of one round; `previous` is the round before (paired by position)."""
    planned, special = [], special_tokens(tokenizer)
    for position, text in enumerate(texts):
        entry = ChainEntry(len(entries), round_index, position, text, blank_markers(text, special))
        if not entry.context.strip():  # markers only: sent to no engine (`chain`), so no prompt and no shots
            entries.append(entry)
            planned.append(entry)
            continue
        prev = previous[position] if position < len(previous) else None
        candidates = ancestry(prev, entries) if prev is not None and prev.pairs else []
        entries.append(plan_entry(entry, candidates, tokenizer, budget, stats))
        planned.append(entry)
    return planned


MARKERS_ONLY = "no text once the protocol's markers and the tokenizer's special tokens are blanked"
REJECT_MARKERS_ONLY = "markers only"  # the reject reason of such a text (jobs' rejects.jsonl, augment's counts)

def check_prompt_budget(tokenizer: Any, budget: int) -> None:
    """Refuse a prompt budget (``max_model_len - max_new_tokens``) that leaves no room for a text of one word:
    every document would be rejected (`no_room`) into an empty output, and the setting pinned in a job. Checked
    once the synthesizer's tokenizer is loaded (`Augmenter.load_engine`)."""
    from .cli import UsageError

    if (least := len(encode_prompt(tokenizer, build_prompt("text")))) > budget:
        raise UsageError(f"{no_room(budget)} (a prompt of one word takes {least} tokens)")


def no_room(budget: int) -> str:
    """Why a text cut to nothing to fit the prompt budget gets no prompt."""
    return (f"the prompt budget of {budget} tokens (max_model_len - max_new_tokens) leaves no room for any text: "
            "raise max_model_len or lower max_new_tokens")


Generate = Callable[[list[list[int]]], Sequence[Any]]


def _generated(generate: Generate, prompts: list[list[int]]) -> list:
    """`generate(prompts)`, checked to give one result per prompt (none asked: none)."""
    if not prompts:
        return []
    results = list(generate(prompts))
    if len(results) != len(prompts):
        raise ValueError(f"`generate` must return one result per prompt, in order: got {len(results)} for "
                         f"{len(prompts)} prompts")
    return results


def chain(
    texts: Sequence[str],
    generate: Generate,
    tokenizer: Any,
    *,
    rounds: int = 2,
    prompt_budget: int = 4096 - 400,
    stats: ChainStats | None = None,
) -> list[ChainEntry]:
    """Synthesize pairs for `texts` in `rounds` chained rounds.

    Args:
        texts (`Sequence[str]`): a window of raw texts.
        generate (`Callable`): token-id prompts -> results with `.text` and `.error`
            (a backend's `generate`, see `hf_ipt.backends`), or completion strings.
        tokenizer: the synthesizer's tokenizer (budgets are counted with it).
        rounds (`int`, *optional*, defaults to 2): M; 3 for domain corpora.
        prompt_budget (`int`, *optional*, defaults to 3696): ``max_model_len - max_new_tokens``.
        stats (`ChainStats`, *optional*): updated in place with budget decisions.

    Returns:
        `list[ChainEntry]`: every text once, in round order, with pairs and chain links.
    """
    if isinstance(texts, str):  # a window of one text per character
        raise TypeError("chain takes a window of texts (a list), got one str: pass [text]")
    stats = stats if stats is not None else ChainStats()
    entries: list[ChainEntry] = []
    previous: list[ChainEntry] = []
    for r, round_texts in enumerate(split_rounds(texts, rounds)):
        planned = plan_round(round_texts, r, entries, previous, tokenizer, prompt_budget, stats)
        # A text of markers or special tokens alone (`<s></s>`) is blank once they are: prompted with
        # an empty context, the synthesizer would invent pairs about nothing.
        sent = [e for e in planned if e.prompt_ids and e.context.strip()]
        results = dict(zip((e.id for e in sent), _generated(generate, [e.prompt_ids for e in sent]), strict=True))
        for entry in planned:
            result = results.get(entry.id)
            if isinstance(result, str):  # a plain completion: read as one, not as an empty result
                result = Generation(text=result, num_prompt_tokens=len(entry.prompt_ids))
            entry.error = (getattr(result, "error", None) if entry.id in results
                           else MARKERS_ONLY if not entry.prompt_ids else no_room(prompt_budget))
            entry.completion = getattr(result, "text", "") or ""
            # a failed request's text is cut short (vLLM's "abort"): no pairs, so no shot and no row
            entry.pairs = [] if entry.error is not None else parse_pairs(entry.completion)
            if not entry.pairs:  # nothing to continue from: its own chain, emitted raw
                entry.parent = None
            stats.errors += entry.error is not None and entry.error != MARKERS_ONLY
            stats.markers_only += entry.error == MARKERS_ONLY
        previous = planned
    return entries


def chains_of(entries: Sequence[ChainEntry]) -> list[list[ChainEntry]]:
    """The connected chains of `entries` (indexed by id), one per entry that no one continues."""
    continued = {e.parent for e in entries if e.parent is not None}
    return [ancestry(e, entries) for e in entries if e.id not in continued]
