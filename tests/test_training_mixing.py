"""`mix_by_tokens`: shares counted in tokens (or documents), stopping and restarting sources."""

from __future__ import annotations

import random

import pytest

from hf_ipt.training.mixing import mix_by_tokens, num_tokens


def _docs(seed: int, n: int, low: int, high: int, tag: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[tag] * rng.randint(low, high) for _ in range(n)]


def _token_counts(mixed) -> dict[int, int]:
    counts: dict[int, int] = {}
    for doc in mixed:
        counts[doc[0]] = counts.get(doc[0], 0) + len(doc)
    return counts


def test_one_to_one_by_tokens_within_two_percent_on_thousands_of_examples():
    # Domain documents are long, general instructions short: 1:1 by TOKENS, not by examples.
    domain = _docs(0, 3000, 200, 1200, tag=1)
    general = _docs(1, 20000, 20, 300, tag=2)
    mixed = list(mix_by_tokens([domain, general], [1, 1]))
    counts = _token_counts(mixed)
    assert len(mixed) > 3000
    assert abs(counts[1] - counts[2]) / (counts[1] + counts[2]) < 0.02
    # Documents come out whole and in their source order.
    assert [d for d in mixed if d[0] == 1] == domain[: sum(1 for d in mixed if d[0] == 1)]


def test_any_prefix_keeps_the_ratio_within_one_document():
    a, b = _docs(2, 2000, 1, 50, tag=1), _docs(3, 2000, 1, 50, tag=2)
    seen = {1: 0, 2: 0}
    for doc in mix_by_tokens([a, b], [3, 1]):
        seen[doc[0]] += len(doc)
        total = seen[1] + seen[2]
        assert abs(seen[1] - 0.75 * total) <= 50


def test_count_by_documents():
    a, b = _docs(4, 1000, 1, 500, tag=1), _docs(5, 1000, 1, 500, tag=2)
    mixed = list(mix_by_tokens([a, b], [0.8, 0.2], count=lambda doc: 1))
    n_a = sum(1 for d in mixed if d[0] == 1)
    assert n_a == 1000 and sum(1 for d in mixed if d[0] == 2) == 250


def test_first_exhausted_stops_and_all_exhausted_restarts():
    a, b = [[1] * 10] * 3, [[2] * 10] * 10
    assert len(list(mix_by_tokens([a, b], [1, 1]))) == 6  # a ends after its 3 documents
    counts = _token_counts(mix_by_tokens([a, b], [1, 1], stopping_strategy="all_exhausted"))
    assert counts[2] == 100 and 100 <= counts[1] <= 110  # a restarted until b ended once


def test_dicts_are_counted_by_input_ids():
    assert num_tokens({"input_ids": [1, 2, 3]}) == 3
    mixed = list(
        mix_by_tokens([[{"input_ids": [1] * 4}] * 5, [{"input_ids": [2] * 2}] * 10], [1, 1])
    )
    assert sum(len(d["input_ids"]) for d in mixed if d["input_ids"][0] == 1) == 20


@pytest.mark.parametrize(
    ("sources", "ratios", "kwargs", "message"),
    [
        ([[[1]]], [1, 1], {}, "one ratio per source"),
        ([[[1]], [[2]]], [1, 0], {}, "must be > 0"),
        ([[[1]], [[2]]], [1, 1], {"stopping_strategy": "longest"}, "stopping_strategy"),
        (
            [iter([[1]]), [[2]] * 5],
            [1, 1],
            {"stopping_strategy": "all_exhausted"},
            "one-shot iterator",
        ),
        ([[], [[2]] * 5], [1, 1], {"stopping_strategy": "all_exhausted"}, "empty"),
    ],
)
def test_bad_input_raises(sources, ratios, kwargs, message):
    with pytest.raises(ValueError, match=message):
        list(mix_by_tokens(sources, ratios, **kwargs))
