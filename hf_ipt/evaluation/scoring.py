"""Model-side scoring: option log-likelihoods and greedy answers, batched, on any device.

- `score_options`: the MEAN negative log-likelihood of the tokens of ``' ' + option`` after
  the prompt, for every option (also after a prompt that ends in whitespace, as the reference). Short
  prompts go in left-padded batches of prompt+option sequences (one forward pass per batch,
  logits kept only for the option positions). Long prompts with several options are run once
  and their key/value cache is shared by all of their options (``shared_prefix_min_tokens``).
- `generate_answers`: greedy decoding that stops at the first newline, at most
  ``max_new_tokens`` tokens, prompts left-truncated to ``max_length - max_new_tokens``.

BOS: the prompt is tokenized without special tokens and the BOS id is prepended only when
``add_bos`` is true (`default_add_bos` gives the paper's choice per model family).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ADAPTLLM_V1_PREFIX = "AdaptLLM/"
logger = logging.getLogger(__name__)


class EvalInputError(ValueError):
    """A prompt, option or limit that cannot be scored as given (the caller's to fix, not a bug):
    `hf-ipt eval` reports it as a usage error."""


def check_batch_size(batch_size: int, where: str = "") -> None:
    """Refuse a `batch_size` below 1 up front (an `EvalCallback` would fail only at its first
    evaluation, hours into training); `where` names the setting, e.g. ``--batch_size``."""
    if batch_size < 1:
        raise EvalInputError(f"`batch_size` must be >= 1, got {batch_size}" + (f" ({where})" if where else ""))


def default_add_bos(tokenizer: Any, model_name_or_path: str | os.PathLike | None = None) -> bool:
    """Whether to prepend BOS, as the paper's evaluation did for this model family.

    The instruction-pretrain models (Llama3) were evaluated WITH a BOS token, the earlier
    AdaptLLM (Llama1) models without. Other families follow their tokenizer: BOS when it adds
    one by itself (Llama, Mistral), none when it does not (SmolLM2, GPT-2, Qwen).
    """
    from ..models import adds_bos, cache_snapshot

    # an AdaptLLM model by its Hub id, or by its snapshot folder in a Hugging Face cache
    hub_id = (cache_snapshot(model_name_or_path) or (str(model_name_or_path or ""),))[0]
    if hub_id.startswith(ADAPTLLM_V1_PREFIX):
        return False

    return adds_bos(tokenizer)


def resolve_add_bos(add_bos: bool | None, tokenizer: Any, model: Any) -> bool:
    """`add_bos` as given, or, when `None`, `default_add_bos` for `model` (by its ``name_or_path``)."""
    return default_add_bos(tokenizer, getattr(model, "name_or_path", None)) if add_bos is None else add_bos


def encode(tokenizer: Any, text: str, add_bos: bool) -> list[int]:
    """Token ids of `text` with no special token but an optional leading BOS."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if not add_bos:
        return ids
    if tokenizer.bos_token_id is None:
        raise EvalInputError("`add_bos=True` but the tokenizer has no `bos_token`: pass add_bos=False (--add_bos no)")
    return [tokenizer.bos_token_id, *ids]


def left_truncate(ids: list[int], limit: int, add_bos: bool) -> list[int]:
    """Keep the last `limit` tokens of `ids`, keeping a leading BOS in place."""
    if len(ids) <= limit:
        return ids
    if limit < 1 + add_bos:
        raise EvalInputError(f"no room for the prompt: {limit} token(s) left, raise `max_length`")
    return ids[:1] + ids[len(ids) - limit + 1 :] if add_bos else ids[len(ids) - limit :]


@dataclass
class _Request:
    """One prompt and its options as token ids.

    ``continuations[j][skips[j]:]`` are the tokens of option j that are scored; the first
    ``skips[j]`` continuation tokens (rare: only when another option's joint tokenization
    changed the end of the prompt) are prompt tokens, fed to the model but not scored.
    """

    context: list[int]
    continuations: list[list[int]]
    skips: list[int]
    dropped: int = 0  # prompt tokens cut off the front to fit `max_length`


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def with_option(prompt: str, option: str) -> str:
    """``prompt + ' ' + option``, always, as the reference scores (AdaptLLM's ``get_answers``: ``' ' + o``),
    also after a prompt that ends in whitespace: the tokens scored are those the paper's numbers scored
    (a SentencePiece tokenizer reads ``"\\n positive"`` as ``▁positive``, ``"\\npositive"`` as ``pos itive``)."""
    return f"{prompt} {option}"


def build_request(
    tokenizer: Any, prompt: str, options: Sequence[str], add_bos: bool, max_length: int | None
) -> _Request:
    """Tokenize a prompt and its ``' ' + option`` continuations (joint tokenization).

    Each option is tokenized together with the prompt, so the tokens scored are those the
    model sees in running text; where the joint tokenization changes the last prompt tokens,
    scoring starts at the first token that differs. Prompts are left-truncated to fit
    `max_length` (prompt + the longest option).
    """
    context = encode(tokenizer, prompt, add_bos)
    wholes = [encode(tokenizer, with_option(prompt, option), add_bos) for option in options]
    # every option scores at least one token, even if it tokenizes into the prompt's end
    starts = [min(_common_prefix(context, w), len(w) - 1) for w in wholes]
    shared = min(starts)
    if shared == 0:
        raise EvalInputError(
            f"prompt {prompt[:50]!r} leaves no token before the options: use a non-empty prompt "
            "or add_bos=True"
        )
    continuations = [w[shared:] for w in wholes]
    context = context[:shared]
    full = len(context)
    if max_length is not None:
        longest = max(map(len, continuations))
        if longest >= max_length:
            raise EvalInputError(
                f"an option of prompt {prompt[:50]!r} takes {longest} tokens, `max_length` is {max_length}: "
                "no room for the prompt, raise `max_length`"
            )
        context = left_truncate(context, max_length - longest, add_bos)
    return _Request(context, continuations, [s - shared for s in starts], full - len(context))


def model_context(model: Any) -> int | None:
    """The longest sequence the model takes (``config.max_position_embeddings``), if known."""
    return getattr(model.config, "max_position_embeddings", None)


def resolve_max_length(model: Any, max_length: int | None) -> int | None:
    """`max_length`, or the model's context when None; checked (>= 1; beyond the context, a warning)."""
    context = model_context(model)
    if max_length is None:
        return context
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise EvalInputError(f"`max_length` must be a positive number of tokens or None (the model's context), "
                             f"got {max_length!r}")
    if context is not None and max_length > context:
        _warn_beyond_context(max_length, context)
    return max_length


@functools.cache
def _warn_beyond_context(max_length: int, context: int) -> None:  # once, not once per task
    logger.warning("hf_ipt: `max_length` %d is beyond the model's context (max_position_embeddings %d): "
                   "positions past it were never trained", max_length, context)


def _warn_truncated(what: str, dropped: Sequence[int], limit: int | None) -> None:
    """Say how many prompts lost their beginning to `limit`: it changes their scores."""
    cut = [n for n in dropped if n > 0]
    if cut:
        logger.warning("hf_ipt: %s: %d of %d prompts were left-truncated to fit max_length=%s (up to %d tokens cut)",
                       what, len(cut), len(dropped), limit, max(cut))


def _pad_id(tokenizer: Any) -> int:
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


def _left_pad(rows: Sequence[list[int]], pad_id: int, device: Any):
    """Left-padded ids, attention mask and position ids (positions restart after padding)."""
    import torch

    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def _mean_nll(logprobs, continuation: list[int], skip: int) -> float:
    """Mean NLL of ``continuation[skip:]``; ``logprobs[t]`` predicts ``continuation[t]``."""
    import torch

    targets = torch.tensor(continuation[skip:], device=logprobs.device)
    picked = logprobs[skip : len(continuation)].gather(-1, targets[:, None])
    return -picked.mean().item()


def _score_flat(
    model, items: Sequence[tuple[list[int], list[int], int]], pad_id: int
) -> list[float]:
    """One forward pass over a batch of (context, continuation, skip) sequences."""
    import torch

    rows = [(ctx + cont)[:-1] for ctx, cont, _ in items]
    keep = max(len(cont) for _, cont, _ in items)
    ids, mask, positions = _left_pad(rows, pad_id, model.device)
    # left padding aligns every row's end, so the option positions are the last `keep` ones
    logits = model(
        input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
    ).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return [
        _mean_nll(logprobs[i, keep - len(cont) :], cont, skip)
        for i, (_, cont, skip) in enumerate(items)
    ]


def _score_shared(model, request: _Request, batch_size: int, pad_id: int) -> list[float]:
    """Run the prompt once, then all its options on copies of its key/value cache."""
    import torch

    context = torch.tensor([request.context], device=model.device)
    out = model(input_ids=context, use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    n, scores = len(request.context), []
    for start in range(0, len(request.continuations), batch_size):
        conts = request.continuations[start : start + batch_size]
        skips = request.skips[start : start + batch_size]
        width = max(len(c) for c in conts) - 1
        rest = None
        if width > 0:
            ids = torch.full((len(conts), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(conts), n + width), dtype=torch.long)
            mask[:, :n] = 1
            for i, cont in enumerate(conts):
                ids[i, : len(cont) - 1] = torch.tensor(cont[:-1])
                mask[i, n : n + len(cont) - 1] = 1
            cache = copy.deepcopy(out.cache)
            cache.batch_repeat_interleave(len(conts))
            positions = torch.arange(n, n + width).expand(len(conts), width)
            rest = model(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                position_ids=positions.to(model.device),
                cache=cache,
                use_cache=True,
            ).logits
            rest = torch.log_softmax(rest.float(), dim=-1)
        for i, (cont, skip) in enumerate(zip(conts, skips)):
            steps = first[None] if rest is None else torch.cat([first[None], rest[i]], dim=0)
            scores.append(_mean_nll(steps, cont, skip))
    return scores


def score_options(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    add_bos: bool = False,
    batch_size: int = 8,
    max_length: int | None = None,
    shared_prefix_min_tokens: int | None = 256,
    progress: bool = False,
    label: str = "scoring options",
) -> list[list[float]]:
    """Mean token negative log-likelihood of ``' ' + option`` after each prompt.

    Args:
        model (`PreTrainedModel`): a causal LM, on any device, in eval mode.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer.
        prompts (`list[str]`): one prompt per example.
        options (`list[list[str]]`): the options of each example.
        add_bos (`bool`, *optional*, defaults to `False`): prepend the BOS token.
        batch_size (`int`, *optional*, defaults to 8): sequences per forward pass.
        max_length (`int`, *optional*): prompt + option limit; defaults to the model's
            context. Longer prompts lose their beginning.
        shared_prefix_min_tokens (`int`, *optional*, defaults to 256): prompts of at least this
            many tokens (with >= 2 options) are run once and share their key/value cache with
            all options; None scores every prompt+option sequence whole.
        progress (`bool`, *optional*, defaults to `False`): show a progress bar.
        label (`str`, *optional*): what is scored (a task's name), in the progress bar and in the
            warning about left-truncated prompts.

    Returns:
        `list[list[float]]`: per example, one mean NLL per option (lower is more likely).
    """
    import torch
    from tqdm.auto import tqdm

    check_batch_size(batch_size)
    if len(prompts) != len(options):  # zipped, the extra ones would get no score and no error
        raise ValueError(f"score_options: {len(prompts)} prompts but {len(options)} option lists; give one list "
                         "of options per prompt")
    limit = resolve_max_length(model, max_length)
    requests = [build_request(tokenizer, p, o, add_bos, limit) for p, o in zip(prompts, options, strict=True)]
    _warn_truncated(label, [r.dropped for r in requests], limit)
    scores: list[list[float]] = [[0.0] * len(r.continuations) for r in requests]
    pad_id, flat = _pad_id(tokenizer), []
    bar = tqdm(total=sum(len(s) for s in scores), desc=label, disable=not progress)
    with torch.no_grad():
        for i, request in enumerate(requests):
            shared = shared_prefix_min_tokens is not None and len(request.continuations) > 1
            if shared and len(request.context) >= shared_prefix_min_tokens:
                scores[i] = _score_shared(model, request, batch_size, pad_id)
                bar.update(len(scores[i]))
                continue
            for j, (cont, skip) in enumerate(zip(request.continuations, request.skips)):
                flat.append(((i, j), (request.context, cont, skip)))
        flat.sort(key=lambda item: -len(item[1][0]) - len(item[1][1]))  # less padding
        for start in range(0, len(flat), batch_size):
            batch = flat[start : start + batch_size]
            for ((i, j), _), nll in zip(batch, _score_flat(model, [b[1] for b in batch], pad_id)):
                scores[i][j] = nll
            bar.update(len(batch))
    bar.close()
    return scores


@contextlib.contextmanager
def _generation_config(model: Any, config: Any):
    """`config` as the model's own while it generates: `generate` fills every field a passed config
    leaves unset from ``model.generation_config`` (a checkpoint's `repetition_penalty`, `num_beams`,
    `no_repeat_ngram_size`, `min_new_tokens`...), which would make the paper's greedy answers
    depend on the checkpoint's sampling defaults. A PEFT model generates with its base model's."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = target.generation_config
    target.generation_config = config
    try:
        yield
    finally:
        target.generation_config = saved


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    add_bos: bool = False,
    batch_size: int = 8,
    max_new_tokens: int = 100,
    max_length: int | None = None,
    progress: bool = False,
    label: str = "generating",
) -> list[str]:
    """Greedy answers that stop at the first newline.

    Args:
        model (`PreTrainedModel`): a causal LM, on any device, in eval mode.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer.
        prompts (`list[str]`): the prompts.
        add_bos (`bool`, *optional*, defaults to `False`): prepend the BOS token.
        batch_size (`int`, *optional*, defaults to 8): prompts per `generate` call.
        max_new_tokens (`int`, *optional*, defaults to 100): generated tokens at most.
        max_length (`int`, *optional*): prompt + answer limit; defaults to the model's
            context. Prompts are left-truncated to ``max_length - max_new_tokens`` tokens.
        progress (`bool`, *optional*, defaults to `False`): show a progress bar.
        label (`str`, *optional*): what is generated for (a task's name), in the progress bar and
            in the warning about left-truncated prompts.

    Returns:
        `list[str]`: the answer to each prompt, up to its first newline, stripped.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    if max_new_tokens < 1:
        raise EvalInputError(f"`max_new_tokens` must be >= 1, got {max_new_tokens}")
    check_batch_size(batch_size)
    total = resolve_max_length(model, max_length) or 2048
    limit = total - max_new_tokens
    if limit < 1 + add_bos:
        raise EvalInputError(f"`max_length` {total} leaves no room for a prompt before the {max_new_tokens} new tokens "
                             "of a generation task: raise `max_length`")
    whole = [encode(tokenizer, p, add_bos) for p in prompts]
    encoded = [left_truncate(ids, limit, add_bos) for ids in whole]
    _warn_truncated(label, [len(a) - len(b) for a, b in zip(whole, encoded)], total)
    if (empty := next((p for p, ids in zip(prompts, encoded, strict=True) if not ids), None)) is not None:
        raise EvalInputError(f"prompt {empty!r} gives no token to generate from: use a non-empty prompt or add_bos=True")
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    eos = model.generation_config.eos_token_id
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        stop_strings=["\n"],
        pad_token_id=_pad_id(tokenizer),
        eos_token_id=tokenizer.eos_token_id if eos is None else eos,
    )
    answers = [""] * len(encoded)
    for start in tqdm(range(0, len(order), batch_size), desc=label, disable=not progress):
        batch = order[start : start + batch_size]
        ids, mask, _ = _left_pad([encoded[i] for i in batch], config.pad_token_id, model.device)
        with torch.no_grad(), _generation_config(model, config):
            out = model.generate(
                input_ids=ids, attention_mask=mask, generation_config=config, tokenizer=tokenizer
            )
        texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
        for i, text in zip(batch, texts):
            answers[i] = text.split("\n")[0].strip()
    return answers
