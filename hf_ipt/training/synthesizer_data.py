"""Fine-tuning data of the instruction synthesizer: the collection layout -> masked multi-shot sequences.

Layout of `instruction-pretrain/ft-instruction-synthesizer-collection`: one folder per source
dataset, ``{name}/shard/*.jsonl``, one row per context with its pairs: the reference's
read-collection entries, ``{"context": ..., "QA_list": [{"Q": ..., "A": ...}, ...]}``
(microsoft/LMOps ``instruction_pretrain/utils/read_compre.py``). A pair may also be a
``[question, answer]`` list or a ``{question, answer}`` mapping (`pairs_column` names the column).

A training sequence concatenates one-shot examples (`protocol.format_shot`) of the SAME
source until `max_length`, so the model learns to continue after earlier examples, which is
what M-shot synthesis asks of it. The loss covers each shot's pairs and its closing ``</s>``
(the model must learn where to stop); the context blocks (``<s> <CON> ... </CON>\\n\\n``) are
masked. Each shot is tokenized on its own: shots start with ``<s>`` and end with ``</s>``,
special tokens that split the text, so the ids equal those of the whole sequence tokenized
at once, as the synthesis backends tokenize a prompt. Protocol markers and the tokenizer's
special tokens are blanked first (`blank_shot`): a pair blank once they are is dropped, a row
left with no pair gives no shot, and a blank context is the empty context block ``<s>``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..cli import UsageError
from ..corpus import COMPRESSIONS
from ..protocol import (
    blank_shot,
    check_marker_tokens,
    context_block,
    format_shot,
    mapping_parts,
    special_tokens,
)
from .packing import IGNORE_INDEX
from .position import RESUME_AT

logger = logging.getLogger(__name__)

SHARD_GLOB = "*/shard/*.jsonl"
# the globs that find them, compressed too (`x.jsonl.zst`, see `hf_ipt.corpus.COMPRESSIONS`)
SHARD_GLOBS = [SHARD_GLOB, *(SHARD_GLOB + packed for packed in COMPRESSIONS)]


def collection_files(collection: str) -> dict[str, list[str]]:
    """``{source name: its jsonl files}`` (plain or compressed: ``.jsonl.gz``...) of a local collection
    folder or a Hub dataset repo id (``org/name[@revision]``, downloaded once into the Hub cache)."""
    root = Path(collection)
    if not root.is_dir():
        from huggingface_hub import snapshot_download

        from ..corpus import hub_id_parts

        repo, revision = hub_id_parts(collection)
        root = Path(snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=SHARD_GLOBS))
    files: dict[str, list[str]] = defaultdict(list)
    for path in sorted(p for pattern in SHARD_GLOBS for p in root.glob(pattern)):
        files[path.parent.parent.name].append(str(path))
    if not files:
        raise FileNotFoundError(
            f"no `{{name}}/shard/*.jsonl` files under {collection!r} (collection layout)"
        )
    return dict(files)


def _pair(pair: Any) -> tuple[str, str] | None:
    """`(question, answer)` of a collection pair; `None` when it is malformed (neither a mapping nor
    a ``[question, answer]`` list) or either part is null, blank or not text or a number (it would be
    trained as the text "None" or a Python list)."""
    if isinstance(pair, Mapping):
        parts = mapping_parts(pair)
    elif isinstance(pair, list | tuple) and len(pair) == 2:
        parts = tuple(pair)
    else:  # a 2-letter string would unpack into a question and an answer; other shapes would crash the run
        return None
    if not all(isinstance(part, str | int | float) and str(part).strip() for part in parts):
        return None
    return str(parts[0]), str(parts[1])


def row_shot(row: Mapping[str, Any], context_column: str = "context", pairs_column: str = "QA_list"):
    """`(context, pairs)` of a collection row, or `None` when it has no pair to learn from.

    A row without `pairs_column` gives nothing, as a null one does (rows are read as they are, and
    a line may leave out a column the others have): the column is checked in each source's first
    row up front (`checks.check_collection`), and a source without a pair in a whole pass raises.
    A context that is neither text nor null (a list of paragraphs, a number) gives nothing too, as a
    malformed pair does, rather than stop the run with a `TypeError` deep in tokenization. A null
    context is the empty text ``""``. Pairs and context are returned raw: a pair of protocol markers
    or special tokens only (an answer ``"</s>"``) is dropped when the shot is blanked for a tokenizer
    (`blank_shot`); pre-training's templified rows (`streams`) keep it as text.
    """
    context = row.get(context_column)
    if context is not None and not isinstance(context, str):
        return None
    pairs = [pair for p in row.get(pairs_column) or [] if (pair := _pair(p)) is not None]
    return (context or "", pairs) if pairs else None


def encode_shot(
    tokenizer: Any, context: str, pairs: Sequence[tuple[str, str]]
) -> dict[str, list[int]]:
    """Token ids of one shot and its labels: the ids on the pairs and ``</s>``, -100 on the context block.

    The shot is first blanked as `blank_shot` does (protocol markers and the tokenizer's special
    tokens; a pair blank once they are is dropped; a blank context is the empty block ``"<s>"``). A
    shot with no pair left, a slow tokenizer, or one whose BOS and EOS are not ``<s>`` and ``</s>``
    (`protocol.check_marker_tokens`) raises `ValueError`: leave such shots out first (`blank_shot`
    gives `None`), as the training stream does.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("synthesizer tuning needs a fast tokenizer (offsets locate the pairs)")
    check_marker_tokens(tokenizer)
    shot = blank_shot(context, pairs, special_tokens(tokenizer))
    if shot is None:
        raise ValueError(
            f"no pair of the shot for the text {context[:80]!r} has a question and an answer once the protocol's "
            "markers and the tokenizer's special tokens are blanked: leave it out (`blank_shot` gives None)"
        )
    context, pairs = shot
    pairs_start = len(context_block(context))
    encoding = tokenizer(
        format_shot(context, pairs), add_special_tokens=False, return_offsets_mapping=True
    )
    ids = encoding["input_ids"]
    labels = [
        t if start >= pairs_start else IGNORE_INDEX
        for t, (start, _) in zip(ids, encoding["offset_mapping"])
    ]
    return {"input_ids": ids, "labels": labels}


def multi_shot_sequences(
    shots: Iterable[Mapping[str, list[int]]], max_length: int, name: str = "the collection", max_unusable: int = 1000
) -> Iterator[dict[str, list[int]]]:
    """Concatenate consecutive encoded shots while they fit in `max_length` tokens.

    A shot longer than `max_length` on its own cannot be trained on whole and is skipped
    (counted in a warning); no shot is ever cut. When the first `max_unusable` shots of source
    `name` are all skipped, it raises: an endless source of such shots would never yield. A
    sequence keeps the `RESUME_AT` snapshot of its last shot, when shots carry one: a stream
    resumed there starts the next sequence.
    """
    ids: list[int] = []
    labels: list[int] = []
    at = None
    skipped = 0
    for shot in shots:
        if len(shot["input_ids"]) > max_length:
            skipped += 1
            if skipped >= max_unusable and not ids:  # no shot kept yet
                raise UsageError(
                    f"the first {skipped} shots of {name} are all longer than max_length={max_length} tokens: "
                    "raise `max_length` (--max_length) or leave this source out of the collection"
                )
            if skipped in (1, 10, 100, 1000):
                logger.warning(
                    "skipped %d shot(s) of %s longer than max_length=%d tokens", skipped, name, max_length
                )
            continue
        if len(ids) + len(shot["input_ids"]) > max_length:
            yield _sequence(ids, labels, at)
            ids, labels = [], []
        ids += shot["input_ids"]
        labels += shot["labels"]
        at = shot.get(RESUME_AT)
    if ids:
        yield _sequence(ids, labels, at)


def _sequence(ids: list[int], labels: list[int], at: dict | None) -> dict[str, Any]:
    sequence: dict[str, Any] = {
        "input_ids": ids,
        "labels": [IGNORE_INDEX, *labels[1:]],
        "position_ids": list(range(len(ids))),
    }
    if at is not None:
        sequence[RESUME_AT] = at
    return sequence
