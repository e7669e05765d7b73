"""Mix document streams by a TOKEN ratio (the paper mixes domain and general data 1:1 by tokens).

`mix_by_tokens` is deterministic: at every step it takes the next document from the source
that is furthest behind its share, so after any prefix of the output each source's token
count is within one document of its target. No sampling noise, nothing to seed, and the
same input gives the same order on every rank and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal


def num_tokens(document: Any) -> int:
    """Token count of a tokenized document: ``len(document["input_ids"])`` or ``len(document)``."""
    return len(document["input_ids"] if isinstance(document, Mapping) else document)


def mix_by_tokens(
    sources: Sequence[Iterable[Any]],
    ratios: Sequence[float],
    *,
    count: Callable[[Any], int] = num_tokens,
    stopping_strategy: Literal["first_exhausted", "all_exhausted"] = "first_exhausted",
    emitted: list[float] | None = None,
) -> Iterator[Any]:
    """Interleave `sources` so that their shares of the output follow `ratios`, counted by `count`.

    Args:
        sources (`Sequence[Iterable]`): document streams (tokenized dicts or token-id lists).
        ratios (`Sequence[float]`): relative shares, e.g. ``[1, 1]`` for the paper's 1:1 mix.
        count (`Callable`, *optional*, defaults to `num_tokens`): size of one document; pass
            ``lambda doc: 1`` to mix by number of documents instead.
        stopping_strategy (`str`, *optional*, defaults to ``"first_exhausted"``): stop when
            the first source ends (the ratio holds exactly), or ``"all_exhausted"``: restart
            an ended source (it must be re-iterable, e.g. a list or a `datasets` dataset) until
            every source has ended at least once.
        emitted (`list`, *optional*): what each source has already contributed, counted by
            `count`; updated in place as documents are yielded. Pass the counts saved with a
            stream position to resume a mix exactly where it stopped, or read them as it runs.

    Yields:
        The documents of all sources, interleaved.
    """
    if len(sources) != len(ratios) or not sources:
        raise ValueError(
            f"need one ratio per source, got {len(sources)} sources and {len(ratios)} ratios"
        )
    if any(r <= 0 for r in ratios):
        raise ValueError(f"every ratio must be > 0, got {list(ratios)}")
    if stopping_strategy not in ("first_exhausted", "all_exhausted"):
        raise ValueError(
            f"`stopping_strategy` must be 'first_exhausted' or 'all_exhausted', got {stopping_strategy!r}"
        )
    if emitted is None:
        emitted = [0] * len(sources)
    elif len(emitted) != len(sources):
        raise ValueError(f"need one count per source in `emitted`, got {len(emitted)} for {len(sources)} sources")
    iterators = [iter(s) for s in sources]
    ended = [False] * len(sources)
    while True:
        # The source furthest behind its share; ties go to the first source.
        i = min(range(len(sources)), key=lambda k: emitted[k] / ratios[k])
        try:
            document = next(iterators[i])
        except StopIteration:
            ended[i] = True
            if stopping_strategy == "first_exhausted" or all(ended):
                return
            iterators[i] = _restart(sources[i], i)
            document = next(iterators[i], _EMPTY)
            if document is _EMPTY:
                raise ValueError(f"source {i} yielded no document after a restart: it is empty")
        emitted[i] += count(document)
        yield document


_EMPTY = object()


def _restart(source: Iterable[Any], index: int) -> Iterator[Any]:
    iterator = iter(source)
    if iterator is source:
        raise ValueError(
            f"source {index} is a one-shot iterator and cannot be restarted for "
            "stopping_strategy='all_exhausted': pass a list or a dataset instead"
        )
    return iterator
