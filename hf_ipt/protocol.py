"""The instruction synthesizer's prompt protocol.

`instruction-pretrain/instruction-synthesizer` was fine-tuned on ONE exact format; any other
format degrades it. This module knows that format and nothing else:

- a context block is ``"<s> <CON> {text} </CON>\\n\\n"`` (just ``"<s>"`` for an empty text);
- a pair is ``"<QUE> {question} <ANS> {answer} </END>"``, pairs joined by ``"\\n\\n"``;
- a finished example ("shot") is context block + pairs + ``"</s>"``;
- a prompt is the earlier shots, concatenated with nothing between them, + the new context block.

``<s>`` in the prompt IS the BOS token, so prompts are tokenized with
``add_special_tokens=False`` (see `encode_prompt`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

BOS = "<s>"
EOS = "</s>"
CON_OPEN, CON_CLOSE = "<CON>", "</CON>"
QUE, ANS, END = "<QUE>", "<ANS>", "</END>"
PAIR_SEPARATOR = "\n\n"
MARKERS = (BOS, EOS, CON_OPEN, CON_CLOSE, QUE, ANS, END)
MARKER_PATTERN = re.compile("|".join(re.escape(marker) for marker in MARKERS))


class Pair(NamedTuple):
    """One instruction-response pair."""

    question: str
    answer: str


PairLike = Pair | tuple[str, str] | Sequence[str] | Mapping[str, str]
Shot = tuple[str, Sequence[PairLike]]


def blank_markers(text: str, special: Sequence[str] = ()) -> str:
    """`text` with every protocol marker, and every string of `special`, replaced by a space.

    Raw text can hold ``<s>`` or ``</s>`` (HTML strike-through, scraped markup); inside a prompt
    they would tokenize as a real BOS/EOS in the middle of the context. `special`: the
    tokenizer's other special tokens (`special_tokens`, e.g. Mistral's ``<unk>``), which would
    become their special ids too. A space cannot be part of a marker, so one pass leaves none
    behind.
    """
    if not text or ("<" not in text and not special):
        return text
    return (_pattern(tuple(special)) if special else MARKER_PATTERN).sub(" ", text)


@functools.lru_cache(maxsize=8)
def _pattern(special: tuple[str, ...]) -> re.Pattern:
    strings = sorted({*MARKERS, *special}, key=len, reverse=True)  # longest first: `</s>` before `<s>`
    return re.compile("|".join(re.escape(s) for s in strings if s))


def special_tokens(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's special tokens other than the protocol's markers (``<unk>``, ``<pad>``...):
    raw text holding one would be encoded as its special id (`encode_prompt` reads the prompt's
    special tokens, as it must for ``<s>``/``</s>``). Added tokens flagged special count too: a
    tokenizer's unnamed ones (reserved or chat tokens) are in no `all_special_tokens`."""
    added = getattr(tokenizer, "added_tokens_decoder", {}).values()
    found = [*getattr(tokenizer, "all_special_tokens", ()), *(str(t) for t in added if getattr(t, "special", False))]
    return tuple(t for t in dict.fromkeys(found) if t and t not in MARKERS)


def context_block(text: str) -> str:
    """The context part of a prompt: ``"<s> <CON> {text} </CON>\\n\\n"``, or ``"<s>"`` when empty."""
    if not text:
        return BOS
    return f"{BOS} {CON_OPEN} {text} {CON_CLOSE}\n\n"


def format_pair(question: str, answer: str) -> str:
    """``"<QUE> {question} <ANS> {answer} </END>"``."""
    return f"{QUE} {question} {ANS} {answer} {END}"


def mapping_parts(pair: Mapping[str, Any]) -> tuple[Any, Any]:
    """`(question, answer)` of a pair given as a mapping: keys ``question``/``answer`` (the builder's
    pairs rows) or ``Q``/``A`` (the reference's ``QA_list``); a missing part is `None`."""
    keys = ("question", "answer") if "question" in pair else ("Q", "A")
    return pair.get(keys[0]), pair.get(keys[1])


def question_answer(pair: Any, where: str) -> tuple[str, str]:
    """A pair's strings: `(question, answer, ...)` (a `Pair`, a tuple or list) or a mapping with
    ``question``/``answer`` (the builder's pairs rows) or ``Q``/``A`` (the reference's ``QA_list``).

    Raises:
        `TypeError`: any other shape, or a part that is no string; `where` names the pair.
    """
    if isinstance(pair, Mapping):
        parts = mapping_parts(pair)
    else:
        parts = () if isinstance(pair, str) or not hasattr(pair, "__iter__") else tuple(pair)[:2]
    if len(parts) != 2 or not all(isinstance(part, str) for part in parts):
        raise TypeError(
            f"{where}: a pair is (question, answer) or a mapping with 'question' and 'answer', both str; "
            f"got {pair!r:.200} (drop pairs with null parts first)"
        )
    return parts


def format_pairs(pairs: Iterable[PairLike]) -> str:
    """Pairs in synthesizer format joined by ``"\\n\\n"`` (no trailing separator); a pair may be a mapping
    (`question_answer`: a dict unpacked as a tuple gave its keys, ``<QUE> question <ANS> answer``)."""
    return PAIR_SEPARATOR.join(format_pair(*question_answer(pair, f"pair {i}")) for i, pair in enumerate(pairs))


def format_shot(context: str, pairs: Iterable[PairLike]) -> str:
    """A finished one-shot example: context block + pairs + ``"</s>"``.

    A shot without pairs raises `ValueError`: ``"</CON>\\n\\n</s>"`` would show the synthesizer a
    text answered by nothing (the reference uses an earlier text as a shot only when it has pairs).
    """
    formatted = format_pairs(pairs)
    if not formatted:
        raise ValueError(
            f"a shot needs at least one (question, answer) pair, got none for the text {context[:80]!r}: "
            "leave texts without pairs out of the shots"
        )
    return context_block(context) + formatted + EOS


def build_prompt(context: str, shots: Iterable[Shot] = ()) -> str:
    """Build the synthesizer prompt for `context` given earlier `(context, pairs)` shots.

    Args:
        context (`str`): the raw text to synthesize pairs for.
        shots (`Iterable[tuple[str, Sequence[tuple[str, str]]]]`, *optional*, defaults to `()`):
            earlier examples of the same chain, oldest first.

    Returns:
        `str`: shots concatenated with nothing between them, then the context block.
    """
    return "".join(format_shot(c, p) for c, p in shots) + context_block(context)


def parse_pairs(completion: Any) -> list[Pair]:
    """Parse a synthesizer completion into pairs, following the reference rules exactly.

    Split on ``</END>``; drop the last piece when the completion does not end with ``</END>``
    (it was cut by the token limit); a piece must hold exactly one ``<ANS>``, its question
    (stripped) must start with ``<QUE>`` and its answer (stripped) must be non-empty; the
    question is the piece with every ``<QUE>`` removed, stripped. Invalid pieces are skipped.
    Finally a pair whose lower-cased question was already seen is dropped. Never raises:
    a non-string input gives ``[]``.
    """
    if not isinstance(completion, str):
        return []
    pieces = completion.split(END)
    if not completion.endswith(END):
        pieces = pieces[:-1]
    pairs: list[Pair] = []
    seen: set[str] = set()
    for piece in pieces:
        parts = piece.split(ANS)
        if len(parts) != 2:
            continue
        question, answer = parts[0].strip(), parts[1].strip()
        if not question.startswith(QUE) or not answer:
            continue
        question = question.replace(QUE, "").strip()
        key = question.lower()
        if key in seen:
            continue
        seen.add(key)
        pairs.append(Pair(question, answer))
    return pairs


def blank_shot(
    context: str, pairs: Sequence[tuple[str, str]], special: Sequence[str] = ()
) -> tuple[str, list[tuple[str, str]]] | None:
    """`(context, pairs)` of a shot as the synthesizer is shown it, or `None` when no pair is left:
    the collection's shots when it is tuned (`hf_ipt.training.synthesizer_data`), the pairs of
    earlier rounds when a chain prompts it (`hf_ipt.chaining.plan_entry`).

    Protocol markers, and the tokenizer's other special tokens `special` (`special_tokens`), are
    blanked (`blank_markers`) in the context and the pairs: a literal ``</s>`` must not become an
    EOS. Which strings are special depends on the tokenizer, so what is left is checked after:

    - a pair whose question or answer is blank once they are (an answer ``"</s>"`` or ``"<unk>"``)
      is dropped, as a blank pair is: a synthesizer tuned on it would learn an empty answer, and
      one prompted with it would be shown one;
    - a shot left with no pair gives `None`, no shot;
    - a context blank once they are (whitespace only, ``"<s></s>"``) is no text, as synthesis
      reads it (`chaining.plan_round`: such a text gets no prompt, ``MARKERS_ONLY``). A collection
      row's pairs are given, not generated from the context, so its shot is kept, with the block
      for no text, ``"<s>"`` (`context_block`), as a null or empty context has (the reference
      formats the collection's empty contexts so), not a ``"<s> <CON>   </CON>"`` block around
      nothing that synthesis never sends.
    """
    pairs = [(blank_markers(q, special), blank_markers(a, special)) for q, a in pairs]
    pairs = [(q, a) for q, a in pairs if q.strip() and a.strip()]
    if not pairs:
        return None
    context = blank_markers(context, special)
    return (context if context.strip() else ""), pairs


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of `prompt` WITHOUT an automatic BOS: the prompt's literal ``<s>`` is the BOS.

    Args:
        tokenizer (`PreTrainedTokenizerBase`): the synthesizer's tokenizer.
        prompt (`str`): a prompt from `build_prompt`.
    """
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def check_marker_tokens(tokenizer: Any) -> None:
    """Raise `UsageError` (a `ValueError`) unless ``<s>`` and ``</s>`` each encode as ONE token: the tokenizer's BOS and EOS.

    A synthesizer learns to close its pairs with ``</s>`` and engines stop at the tokenizer's EOS.
    Where ``</s>`` is plain text (GPT-2 or SmolLM2 style tokenizers), a model tuned on this format
    learns to write its characters, never stops, and runs every completion to `max_new_tokens`.
    """
    from .cli import UsageError

    bos, eos = encode_prompt(tokenizer, BOS), encode_prompt(tokenizer, EOS)
    if bos != [tokenizer.bos_token_id] or eos != [tokenizer.eos_token_id]:
        raise UsageError(
            f"the synthesizer format needs a tokenizer whose BOS is {BOS!r} and EOS is {EOS!r}, each one token; "
            f"got bos_token={tokenizer.bos_token!r}, eos_token={tokenizer.eos_token!r} ({BOS!r} -> {bos}, "
            f"{EOS!r} -> {eos}): the model would learn to write {EOS!r} as text and never stop; start from a "
            "base model with such a tokenizer (Mistral-7B-v0.1, the paper's)"
        )


def count_tokens(tokenizer: Any, text: str) -> int:
    """Exact number of tokens `tokenizer` gives `text` without special tokens."""
    return len(encode_prompt(tokenizer, text))
