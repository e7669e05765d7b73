"""Packing that keeps every token and separates documents by `position_ids`.

TRL's ``packing_strategy="bfd"`` truncates documents longer than the block (their overflow
is lost) and works on Arrow batches of a materialized dataset; ``"bfd_split"`` keeps the
tokens but still bins per map batch, leaving short final bins whose shapes vary. Pre-training
wants the opposite trade-off: an endless stream cut into blocks of EXACTLY `seq_length`
tokens (static shapes for `torch.compile`, zero padding), documents split across blocks
where they must be.

Documents are kept apart by `position_ids` that restart at 0 at each document start (and at
each block start). Without an `attention_mask`, transformers derives a block-diagonal causal
mask from them (sdpa, eager, flex attention; per row of a ``[batch, length]`` batch) and
flash-attention runs varlen (only on ONE row: `packed_collator` flattens the batch for it), so
no token attends to another document; `labels` are -100 at every position 0, so no token is predicted
from the previous document either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

IGNORE_INDEX = -100
KEYS = ("input_ids", "labels", "position_ids")


def _fields(document: Any) -> tuple[Sequence[int], Sequence[int]]:
    """`(input_ids, labels)` of a dict with ``input_ids`` (and optional ``labels``) or a list of ids."""
    if isinstance(document, Mapping):
        ids = document["input_ids"]
        labels = document.get("labels", ids)
        if len(labels) != len(ids):
            raise ValueError(f"`labels` has {len(labels)} entries for {len(ids)} `input_ids`")
        return ids, labels
    return document, document


def pack_sequences(documents: Iterable[Any], seq_length: int) -> Iterator[dict[str, list[int]]]:
    """Cut a stream of tokenized documents into blocks of `seq_length` tokens, dropping none.

    Args:
        documents (`Iterable`): token-id lists, or dicts with ``input_ids`` and optionally
            ``labels`` (-100 where no loss is wanted).
        seq_length (`int`): tokens per block.

    Yields:
        `dict[str, list[int]]`: ``input_ids``, ``labels`` and ``position_ids`` of one block;
        every block has `seq_length` tokens except the last one of a finite stream.
    """
    if seq_length < 2:
        raise ValueError(f"`seq_length` must be >= 2, got {seq_length}")
    block: dict[str, list[int]] = {key: [] for key in KEYS}
    for document in documents:
        ids, labels = _fields(document)
        start = 0
        while start < len(ids):
            take = min(seq_length - len(block["input_ids"]), len(ids) - start)
            block["input_ids"] += ids[start : start + take]
            # Position 0 starts a segment: predicting it would read the previous document.
            block["labels"] += [IGNORE_INDEX, *labels[start + 1 : start + take]]
            block["position_ids"] += range(take)
            start += take
            if len(block["input_ids"]) == seq_length:
                yield block
                block = {key: [] for key in KEYS}
    if block["input_ids"]:
        yield block


def collate_packed(features: list[Mapping[str, Sequence[int]]], flatten: bool = False) -> dict[str, Any]:
    """Stack equal-length examples into ``[batch, length]`` tensors, else flatten them into ONE row.

    Flattening (padding-free, as `DataCollatorWithFlattening` does) keeps the examples apart
    through their `position_ids`, so a batch never carries a pad token. Every example must
    have ``input_ids``, ``labels`` (-100 at position 0) and ``position_ids``.

    Args:
        features (`list[Mapping]`): packed blocks from `pack_sequences`.
        flatten (`bool`, *optional*, defaults to `False`): always one ``[1, total]`` row. Flash
            attention needs it: transformers runs it varlen from `position_ids` only for a batch of
            one row; a ``[batch, length]`` batch would attend across documents (5.24).
    """
    import torch

    if not flatten and len({len(f["input_ids"]) for f in features}) == 1:
        return {
            key: torch.tensor([list(f[key]) for f in features], dtype=torch.long) for key in KEYS
        }
    return {
        key: torch.tensor([[t for f in features for t in f[key]]], dtype=torch.long) for key in KEYS
    }


def needs_flat_batches(model: Any) -> bool:
    """Whether `model` runs a flash-attention kernel (``flash_attention_2/3``, hub flash kernels)."""
    implementation = getattr(model.config, "_attn_implementation", None) or ""
    return "flash" in implementation


def packed_collator(model: Any) -> Callable[[list[Mapping[str, Sequence[int]]]], dict[str, Any]]:
    """`collate_packed` for `model`: flattened rows under flash attention, stacked rows otherwise."""
    return partial(collate_packed, flatten=needs_flat_batches(model))
