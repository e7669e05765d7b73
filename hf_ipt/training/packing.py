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
from the previous document either. Some models build their mask without `position_ids` (OPT;
Bloom and MPT in eager attention): `documents_isolated` finds out on the model itself, and
`trainer.build_trainer` warns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from .position import RESUME_AT, STREAM_POSITION, Position, Tracker

logger = logging.getLogger(__name__)

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


def pack_sequences(
    documents: Iterable[Any], seq_length: int, start: Position | None = None
) -> Iterator[dict[str, Any]]:
    """Cut a stream of tokenized documents into blocks of `seq_length` tokens, dropping none.

    Args:
        documents (`Iterable`): token-id lists, or dicts with ``input_ids`` and optionally
            ``labels`` (-100 where no loss is wanted) and a `RESUME_AT` snapshot.
        seq_length (`int`): tokens per block.
        start (`Position`, *optional*): where a resumed stream starts; its first `skip`
            tokens of the first document are already in earlier blocks.

    Yields:
        `dict`: ``input_ids``, ``labels`` and ``position_ids`` of one block (and its
        `STREAM_POSITION` when documents carry snapshots); every block has `seq_length`
        tokens except the last one of a finite stream.
    """
    if seq_length < 2:
        raise ValueError(f"`seq_length` must be >= 2, got {seq_length}")
    start = start or Position()
    skip, tracker = start.skip, Tracker(start)
    block: dict[str, Any] = {key: [] for key in KEYS}
    for document in documents:
        ids, labels = _fields(document)
        at = document.get(RESUME_AT) if isinstance(document, Mapping) else None
        begin, skip = skip, 0
        while begin < len(ids):
            take = min(seq_length - len(block["input_ids"]), len(ids) - begin)
            block["input_ids"] += ids[begin : begin + take]
            # Position 0 starts a segment: predicting it would read the previous document.
            block["labels"] += [IGNORE_INDEX, *labels[begin + 1 : begin + take]]
            block["position_ids"] += range(take)
            begin += take
            if len(block["input_ids"]) == seq_length:
                if at is not None:  # the position after this block
                    done = begin == len(ids)
                    after = tracker.after(at) if done else tracker.state
                    block[STREAM_POSITION] = Position(after, 0 if done else begin).to_json()
                yield block
                block = {key: [] for key in KEYS}
        if at is not None:
            tracker.passed(at)
    if block["input_ids"]:
        yield block


def collate_packed(
    features: list[Mapping[str, Sequence[int]]], flatten: bool = False, bounds: bool = False,
    window: int | None = None,
) -> dict[str, Any]:
    """Stack equal-length examples into ``[batch, length]`` tensors, else flatten them into ONE row.

    Flattening (padding-free, as `DataCollatorWithFlattening` does) keeps the examples apart
    through their `position_ids`, so a batch never carries a pad token. Every example must
    have ``input_ids``, ``labels`` (-100 at position 0) and ``position_ids``; the last one's
    `STREAM_POSITION`, when it has one, is passed on as is (`IPTTrainer` takes it out).

    Args:
        features (`list[Mapping]`): packed blocks from `pack_sequences`.
        flatten (`bool`, *optional*, defaults to `False`): always one ``[1, total]`` row. Flash
            attention needs it: transformers runs it varlen from `position_ids` only for a batch of
            one row; a ``[batch, length]`` batch would attend across documents (5.24).
        bounds (`bool`, *optional*, defaults to `False`): add the documents' boundaries
            (`varlen.document_bounds`) for ``attn_implementation="hf_ipt_varlen"``.
    """
    import torch

    if not flatten and len({len(f["input_ids"]) for f in features}) == 1:
        batch = {key: torch.tensor([list(f[key]) for f in features], dtype=torch.long) for key in KEYS}
    else:
        batch = {key: torch.tensor([[t for f in features for t in f[key]]], dtype=torch.long) for key in KEYS}
    if bounds:
        from .varlen import document_bounds

        batch.update(document_bounds(batch["position_ids"], window))
    if STREAM_POSITION in features[-1]:  # where the stream stands after this batch: `IPTTrainer` saves it
        batch[STREAM_POSITION] = features[-1][STREAM_POSITION]
    return batch


def needs_flat_batches(model: Any) -> bool:
    """Whether `model` runs a flash-attention kernel (``flash_attention_2/3``, hub flash kernels)."""
    implementation = getattr(model.config, "_attn_implementation", None) or ""
    return "flash" in implementation


def packed_collator(model: Any) -> Callable[[list[Mapping[str, Sequence[int]]]], dict[str, Any]]:
    """`collate_packed` for `model`: flattened rows under flash attention, stacked rows otherwise,
    with the documents' boundaries under ``hf_ipt_varlen``."""
    from .varlen import sliding_window, uses_varlen

    bounds = uses_varlen(model)
    return partial(collate_packed, flatten=needs_flat_batches(model), bounds=bounds,
                   window=sliding_window(model) if bounds else None)


ISOLATION_TOLERANCE = 1e-4  # relative: rounding alone, in fp32 and bf16 alike (same shapes, same kernels)


def documents_isolated(model: Any, length: int = 64, autocast_dtype: Any = None) -> bool | None:
    """Whether `model` keeps packed documents apart, tried on the model itself.

    `isolation_gap` at most `ISOLATION_TOLERANCE`; `None` where the gap cannot be measured here.
    """
    gap = isolation_gap(model, length, autocast_dtype)
    return None if gap is None else gap <= ISOLATION_TOLERANCE


def isolation_gap(model: Any, length: int = 64, autocast_dtype: Any = None) -> float | None:
    """How much a packed document's logits move when the document before it changes.

    Two rows, each two `length`-token documents packed as the collator packs them, differ only
    in their first document: where the mask follows `position_ids`, the second document's
    logits are the same computation on the same numbers in both (equal to rounding), whereas a
    model that attends across documents changes them. Costs two forward passes of
    ``2 x length`` tokens, without gradients. The default block of 128 tokens is a whole tile of
    the attention kernels (flex attention's default block), as training's blocks are; `length`
    is capped at half the model's context.

    Args:
        model (`PreTrainedModel`): the model as training will run it (``use_cache`` off).
        length (`int`, *optional*, defaults to 64): tokens per document.
        autocast_dtype (`torch.dtype`, *optional*): the mixed precision training will use
            (flash attention refuses float32 inputs).

    Returns:
        `float`: the largest change of the second document's logits, relative to their largest
        magnitude (0.0 under flash attention, which runs varlen and keeps documents apart by
        construction); `None` when it cannot be run here: weights not all on this process (meta
        tensors of a memory-efficient FSDP load, DeepSpeed ZeRO-3 partitions), or a forward pass
        that fails outside the training setup (logged).
    """
    import torch

    if needs_flat_batches(model):
        return 0.0  # flash attention runs varlen from `position_ids`: documents stay apart by construction
    params = list(model.parameters())
    if not params or any(p.device.type == "meta" or p.numel() == 0 or hasattr(p, "ds_id") for p in params):
        return None
    device = params[0].device
    training = model.training
    model.eval()
    try:
        text_config = model.config.get_text_config()
        vocab = text_config.vocab_size
        context = getattr(text_config, "max_position_embeddings", None)
        length = max(1, min(length, context // 2)) if context else length
        generator = torch.Generator().manual_seed(0)
        second = torch.randint(vocab, (length,), generator=generator).tolist()
        logits = []
        with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            for _ in range(2):
                first = torch.randint(vocab, (length,), generator=generator).tolist()
                (block,) = pack_sequences([first, second], 2 * length)
                batch = packed_collator(model)([block])  # as training feeds the model
                inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items() if k != "labels"}
                logits.append(model(**inputs, use_cache=False).logits[0, length:].float())
    except Exception as error:  # noqa: BLE001 - a check must not stop a run that would train
        logger.info("hf_ipt: could not check that packed documents stay apart (%s: %s)", type(error).__name__, error)
        return None
    finally:
        model.train(training)
    scale = logits[0].abs().max().clamp_min(1e-6)
    return float((logits[0] - logits[1]).abs().max() / scale)
