"""The training streams of the three recipes, built from `data`, `mixing`, `packing` and `synthesizer_data`.

Each ``*_dataset`` function returns a `datasets.IterableDataset` (one shard per rank) and the
data mix as rows for the model card. The per-rank generators are module-level functions bound
with `functools.partial`, so the datasets stay picklable. They are resumable: every document
carries where its source stands, every example the stream's `position.Position` after it, and
a generator given a ``start`` position continues from there (see `hf_ipt.training.position`).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..cli import UsageError
from ..corpus import text_bytes
from ..protocol import special_tokens
from .data import (
    LINES_NOT_FILES,
    endless_rows,
    load_rows,
    sharded_stream,
    text_folder,
    tokenize_texts,
    unequal_files,
)
from .packing import pack_sequences
from .position import RESUME_AT, Position, mix_documents, numbered_rows, with_positions
from .synthesizer_data import (
    blank_shot,
    collection_files,
    encode_shot,
    multi_shot_sequences,
    row_shot,
)

logger = logging.getLogger(__name__)


def _stream_seed(args: Any) -> int:
    """The seed of the streams' shuffling: `data_seed` when set (as the Trainer's samplers use it), else `seed`."""
    data_seed = getattr(args, "data_seed", None)
    return args.seed if data_seed is None else data_seed


def _rows(source: str | list[str], config: Any, rank: int, world_size: int, seed: int, name: str,
          text_of: Callable[[dict], Any] | None = None, skip: int = 0, by_rows: bool = False):
    return endless_rows(
        load_rows(source, split=config.dataset_split),
        rank=rank,
        world_size=world_size,
        seed=seed,
        shuffle_buffer_size=config.shuffle_buffer_size,
        name=name,
        text_of=text_of,
        skip=skip,
        by_rows=by_rows,
    )


def _split_by_rows(source: str | list[str], config: Any, rank: int, world_size: int, key: str, start: Position,
                   name: str, by_rows: bool) -> bool:
    """Whether each rank keeps every world-size-th row of `source` rather than whole files: `by_rows`
    (the collection), or its files differ in size (`unequal_files`). A resume keeps the split its
    checkpoint's position records (``"split:<key>"``): decided again, files grown or shrunk since would
    change which rows the saved row count skips; a checkpoint that records none was split by files. A
    position that records none for a folder of .txt files was saved when those were read one row per
    line: its row count is refused (`data.LINES_NOT_FILES`), not skipped in files."""
    saved = start.after.get(f"split:{key}")
    if saved is None and start.rows(key) and text_folder(source):
        raise UsageError(f"the stream position saved for source {name!r}, a folder of .txt files, is of the old "
                         f"format (no 'split:{key}', so it counts {start.rows(key)} rows of a version before "
                         f"the split was recorded): {LINES_NOT_FILES}")
    if saved is not None:
        return saved == "rows"
    if by_rows or start.rows(key):
        return by_rows
    if unequal_files(source, world_size, split=config.dataset_split, shuffled=config.shuffle_buffer_size > 0):
        if rank == 0:
            logger.info("source %r: its files differ in size, so each of the %d processes reads all of them and "
                        "keeps every %d-th row (whole files per process would over-sample the small ones)",
                        name, world_size, world_size)
        return True
    return False


def _numbered(
    source: str | list[str], config: Any, rank: int, world_size: int, seed: int, key: str, start: Position,
    text_of: Callable[[dict], Any], name: str | None = None, by_rows: bool = False,
) -> Iterator[tuple[tuple[dict, Any], dict]]:
    """This rank's rows of `source`, endless, past those `start` has behind it, as ``((row, text), snapshot)``.
    `text`: what `text_of` makes of the row (`None`: nothing), computed once per row read; a source
    that gives nothing in a whole pass raises. Rows behind `start` are dropped with no text computed."""
    name = name or str(source)
    by_rows = _split_by_rows(source, config, rank, world_size, key, start, name, by_rows)
    rows = _rows(source, config, rank, world_size, seed, name, text_of, skip=start.rows(key), by_rows=by_rows)
    return numbered_rows(rows, key, start, {f"split:{key}": "rows" if by_rows else "files"})


def _documents(
    numbered: Iterable[tuple[tuple[dict, str | None], dict]],
    tokenizer: Any,
    extra: Callable[[dict], dict] | None = None,
    batch_size: int = 256,
) -> Iterator[dict]:
    """Tokenized documents of numbered rows with their texts (`_numbered`): ``input_ids``, the
    row's snapshot and ``extra(row)``.

    A row whose text is `None` gives no document (its number still counts as read).
    """
    numbered = iter(numbered)
    while batch := list(itertools.islice(numbered, batch_size)):
        kept = [(row, at, text) for (row, text), at in batch if text is not None]
        encoded = tokenize_texts([text for *_, text in kept], tokenizer, batch_size)
        for (row, at, _), ids in zip(kept, encoded, strict=True):
            yield {"input_ids": ids, RESUME_AT: at, **(extra(row) if extra else {})}


# -- continual pre-training: augmented domain text + general instructions, by tokens ------------


def continual_pt_dataset(config: Any, tokenizer: Any, args: Any):
    """Packed blocks of augmented domain text mixed by tokens with ``{question} {response}`` data.

    Args:
        config (`ContinualPTConfig`): the data settings.
        tokenizer (`PreTrainedTokenizerBase`): the model's tokenizer.
        args (`TrainingConfig`): gives `max_length`, `seed` (`data_seed` when set) and the world size.
    """
    build = functools.partial(
        _continual_pt_blocks,
        config=config,
        tokenizer=tokenizer,
        seq_length=args.max_length,
        seed=_stream_seed(args),
    )
    general = config.general_fraction if config.general_dataset else 0.0
    mix = [_row(config.domain_dataset, "instruction-augmented domain text", 1 - general)]
    if config.general_dataset:
        mix.append(
            _row(config.general_dataset, "general instructions as `{question} {response}`", general)
        )
    return sharded_stream(build, args.world_size, resumable=True), mix


def _continual_pt_blocks(
    rank: int,
    world_size: int,
    *,
    config: Any,
    tokenizer: Any,
    seq_length: int,
    seed: int,
    start: Position | None = None,
):
    start = start or Position()
    numbered = functools.partial(_numbered, config=config, rank=rank, world_size=world_size, seed=seed, start=start)
    text = _column(config.text_column)
    docs = _documents(numbered(config.domain_dataset, key="domain", text_of=text), tokenizer)
    if config.general_dataset:
        general_text = functools.partial(_general_text, question=config.question_column,
                                         response=config.response_column)
        general = _documents(numbered(config.general_dataset, key="general", text_of=general_text), tokenizer)
        ratios = [1 - config.general_fraction, config.general_fraction]
        docs = mix_documents([docs, general], ratios, name="general", start=start)
    yield from pack_sequences(docs, seq_length, start)


def _column(name: str) -> Callable[[dict], str | None]:
    """The text in column `name` of a row, or `None` (the row is skipped): null or missing (a
    later file or line without the column; the first row's is checked up front), not a string, or
    blank (it would train an EOS right after the BOS)."""
    def text(row: dict) -> str | None:
        value = row.get(name)
        return value if isinstance(value, str) and value.strip() else None

    return text


def _general_text(row: dict, question: str, response: str) -> str | None:
    """``{question} {response}`` of a general-instruction row, or `None` (the row is skipped, as a
    domain row with a null text is) when either column is not a string (null in the data)."""
    from ..templify import format_general

    if not (isinstance(row.get(question), str) and isinstance(row.get(response), str)):  # null or missing
        return None
    text = format_general(row[question], row[response])
    return text if text.strip() else None


# -- pre-training from scratch: raw + augmented (by documents), + the collection (by tokens) ----


def pretrain_dataset(config: Any, tokenizer: Any, args: Any):
    """Packed blocks of raw text with `augmented_fraction` of the documents augmented, plus the collection.

    The collection's token share is `collection_token_share`, or, when unset, the share that
    shows it `collection_repeats` times within the token budget (``max_steps`` blocks).
    """
    share = 0.0
    if config.collection:
        share = config.collection_token_share or collection_share(config, tokenizer, args)
    build = functools.partial(
        _pretrain_blocks,
        config=config,
        tokenizer=tokenizer,
        seq_length=args.max_length,
        seed=_stream_seed(args),
        collection_fraction=share,
    )
    return sharded_stream(build, args.world_size, resumable=True), _pretrain_mix(config, share)


def _pretrain_mix(config: Any, share: float) -> list[dict[str, Any]]:
    corpus = 1 - share
    if config.augmented_dataset:
        fraction = config.augmented_fraction
        documents = "of corpus documents"
        both = f"raw + augmented: {corpus:.1%} of tokens"
        mix = [
            _row(config.raw_dataset, "raw text", None, f"{1 - fraction:.0%} {documents} ({both})"),
            _row(config.augmented_dataset, "instruction-augmented text", None, f"{fraction:.0%} {documents}"),
        ]
    else:
        mix = [_row(config.raw_dataset, "raw text", corpus)]
    if config.collection:
        repeats = f"seen about {config.collection_repeats} times"
        note = "set share" if config.collection_token_share else repeats
        mix.append(
            _row(config.collection, "synthesizer fine-tuning collection, templified", share, note)
        )
    return mix


def collection_share(config: Any, tokenizer: Any, args: Any) -> float:
    """Token share that shows the collection `collection_repeats` times in the run's token budget."""
    tokens = collection_tokens(config, tokenizer)
    if tokens == 0:
        raise UsageError(
            f"the collection {config.collection!r} gives no training text: no row has a usable pair (check "
            "--context_column and --pairs_column), so it cannot be shown `collection_repeats` times; fix it, or "
            "leave `collection` unset"
        )
    budget = args.max_steps * args.tokens_per_step
    share = config.collection_repeats * tokens / budget
    logger.info(
        "collection: %d tokens x %d repeats = %.4f of a %d-token budget",
        tokens,
        config.collection_repeats,
        share,
        budget,
    )
    if share >= 1:
        raise UsageError(
            f"the collection ({tokens} tokens) repeated {config.collection_repeats} times exceeds the token "
            f"budget ({budget} = max_steps x tokens per step): raise `max_steps`, lower `collection_repeats` "
            "or set `collection_token_share`"
        )
    return share


def collection_tokens(config: Any, tokenizer: Any) -> int:
    """Tokens of one pass over the templified collection, counted once and cached.

    The real collection (~249k rows) takes minutes to templify and tokenize, and every rank of
    every run (and resume) needs the count: it is kept in ``$HF_IPT_CACHE/collection_tokens/``
    under a key of the files (paths, sizes, times), the columns, the tokenizer and hf_ipt's
    version (which fixes templify's output).
    """
    import hashlib
    import json

    from .. import __version__
    from ..models import default_cache_dir

    files = _collection_files(config)
    vocabulary = getattr(getattr(tokenizer, "backend_tokenizer", None), "to_str", None)
    key = json.dumps({
        "files": [(f, os.path.getsize(f), os.path.getmtime(f)) for f in files],
        "columns": [config.context_column, config.pairs_column],
        "tokenizer": vocabulary() if vocabulary else [type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer)],
        "hf_ipt": __version__,
    }, sort_keys=True, default=str)
    path = default_cache_dir() / "collection_tokens" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
    if path.is_file():
        return int(json.loads(path.read_text(encoding="utf-8"))["tokens"])
    from tqdm.auto import tqdm

    from ..files import write_json

    texts = tqdm(_collection_texts(config, files), desc="counting the collection's tokens", unit="text", leave=False)
    tokens = sum(len(ids) for ids in tokenize_texts(texts, tokenizer))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(str(path), {"tokens": tokens, "collection": config.collection})
    return tokens


def _collection_files(config: Any) -> list[str]:
    return sorted(f for fs in collection_files(config.collection).values() for f in fs)


def _collection_text(row: dict, config: Any) -> str | None:
    """The templified text of a collection row, or `None`: a row without pairs, or whose pairs
    are all malformed, gives nothing (not its bare context)."""
    from ..templify import templify_chain

    shot = row_shot(row, config.context_column, config.pairs_column)
    if shot is None:
        return None
    # Seeded by the context: a row keeps its layout on every rank, every repeat and resume; by its first
    # question when it has none (the same seed "" would give every such row one layout).
    seed = shot[0][:256] or shot[1][0][0][:256]
    return next((r.text for r in templify_chain([shot], seed=seed) if r.num_pairs), None)


def _collection_texts(config: Any, files: list[str] | None = None) -> Iterator[str]:
    """The collection's texts (of `files`, default: all of it), one pass (to count its tokens)."""
    texts = (_collection_text(row, config) for row in load_rows(files or _collection_files(config)))
    return (text for text in texts if text is not None)


def _pretrain_blocks(
    rank: int,
    world_size: int,
    *,
    config: Any,
    tokenizer: Any,
    seq_length: int,
    seed: int,
    collection_fraction: float,
    start: Position | None = None,
):
    start = start or Position()
    numbered = functools.partial(_numbered, config=config, rank=rank, world_size=world_size, seed=seed, start=start)
    text = _column(config.text_column)
    docs = _documents(numbered(config.raw_dataset, key="raw", text_of=_column(config.raw_text_column)), tokenizer)
    if config.augmented_dataset:
        # A row renders a CHAIN of corpus texts (``doc_ids``, 2-3 with a model synthesizer), so the
        # 1/5 of corpus documents is counted in texts, not rows; a row without ``doc_ids`` counts 1.
        augmented = _documents(
            numbered(config.augmented_dataset, key="augmented", text_of=text),
            tokenizer,
            extra=lambda row: {"num_texts": max(len(row.get("doc_ids") or ()), 1)},
        )
        ratios = [1 - config.augmented_fraction, config.augmented_fraction]
        docs = mix_documents([docs, augmented], ratios, name="augmented", start=start, count=num_corpus_texts)
    if collection_fraction > 0:
        collection_text = functools.partial(_collection_text, config=config)
        collection = _documents(
            # split by rows: its sources' files differ in size, and each must be seen `collection_repeats` times
            numbered(_collection_files(config), key="collection", name=config.collection, text_of=collection_text,
                     by_rows=True),
            tokenizer,
        )
        ratios = [1 - collection_fraction, collection_fraction]
        docs = mix_documents([docs, collection], ratios, name="collection", start=start)
    yield from pack_sequences(docs, seq_length, start)


def num_corpus_texts(document: Any) -> int:
    """Corpus texts in one training document: ``num_texts`` of an augmented row, else 1."""
    return document.get("num_texts", 1) if isinstance(document, Mapping) else 1


# -- synthesizer tuning: multi-shot sequences from one source each, pairs-only loss -------------


def synthesizer_dataset(config: Any, tokenizer: Any, args: Any):
    """Multi-shot sequences (<= `max_length` tokens) of the collection, sources mixed by size.

    Sources are mixed in proportion to their bytes of text (a proxy for their tokens; a compressed
    file counts `corpus.text_bytes`, its size times `corpus.COMPRESSION_RATIO`), so one pass over the
    mix sees each source about once.
    """
    files = collection_files(config.collection)
    sizes = {name: sum(text_bytes(f) for f in fs) for name, fs in files.items()}
    build = functools.partial(
        _synthesizer_sequences,
        config=config,
        tokenizer=tokenizer,
        files=files,
        sizes=sizes,
        max_length=args.max_length,
        seed=_stream_seed(args),
    )
    total = sum(sizes.values())
    mix = [
        _row(
            f"{config.collection}/{name}",
            "multi-shot synthesizer examples",
            size / total,
            "by bytes of text",
        )
        for name, size in sizes.items()
    ]
    return sharded_stream(build, args.world_size, resumable=True), mix


def _synthesizer_sequences(
    rank: int,
    world_size: int,
    *,
    config: Any,
    tokenizer: Any,
    files: dict,
    sizes: dict,
    max_length: int,
    seed: int,
    start: Position | None = None,
):
    start = start or Position()
    streams = []
    shot_of = functools.partial(_shot, config=config, special=special_tokens(tokenizer))
    for name, source_files in files.items():
        numbered = _numbered(source_files, config, rank, world_size, seed, f"collection/{name}", start, name=name,
                             text_of=shot_of)
        encoded = ({**encode_shot(tokenizer, *shot), RESUME_AT: at} for (_, shot), at in numbered if shot is not None)
        streams.append(multi_shot_sequences(encoded, max_length, name=f"source {name!r}"))
    sequences = mix_documents(streams, [sizes[name] for name in files], name="sources", start=start)
    yield from with_positions(sequences, start)


def _shot(row: dict, config: Any, special: Sequence[str] = ()):
    """The row's shot as it is tuned on (`blank_shot`), or `None`: checked here, per row, so a row whose
    pairs are all markers or special tokens gives nothing, as a row of null pairs does (a source of
    only such rows raises after a whole pass, `endless_rows`)."""
    shot = row_shot(row, config.context_column, config.pairs_column)
    return None if shot is None else blank_shot(*shot, special)


def _row(source: str, content: str, token_share: float | None, note: str = "") -> dict[str, Any]:
    """One row of the model card's data-mix table."""
    return {"source": source, "content": content, "token_share": token_share, "note": note}
