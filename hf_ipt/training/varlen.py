"""``attn_implementation="hf_ipt_varlen"``: packed documents kept apart on PyTorch's own flash kernel.

Packed training keeps documents apart through `position_ids` (`packing`). With ``sdpa`` that
costs a block-diagonal mask, and a masked ``[batch, 1, L, L]`` attention runs sdpa's
memory-efficient kernel instead of its causal flash path; ``flash_attention_2`` needs the
`flash-attn` package, which cannot be installed everywhere. PyTorch (>= 2.10) ships a
variable-length flash kernel, `torch.nn.attention.varlen.varlen_attn`: this module registers it
with transformers' `AttentionInterface` under `NAME`, fed by the collator with each batch's
document boundaries (``cu_seq_lens_q``/``max_length_q``, the keys transformers passes down to the
attention function, computed on the CPU: the kernel call needs no host sync; transformers still
builds the sdpa mask of each batch for the fallback below).

Anything that is not such a packed batch (evaluation with a padding mask, generation with a KV
cache) runs transformers' ``sdpa`` with the mask transformers builds for it, so the model
stays usable as it is. On a CPU, where the flash kernel does not exist, packed batches run one
causal sdpa per document: the same result, slower; meant for tests.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from typing import Any

logger = logging.getLogger(__name__)

NAME = "hf_ipt_varlen"
BOUNDS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def register() -> str:
    """Register `NAME` with transformers (attention function, and the sdpa mask for other calls)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    _kernel()  # a torch without the kernel fails here, before the model loads
    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def prepare(attn_implementation: str | None) -> str | None:
    """`attn_implementation` as given, with `NAME` registered first when it is `NAME` (before a
    model is loaded with it: transformers refuses an unknown implementation)."""
    if attn_implementation == NAME:
        register()
    return attn_implementation


def uses_varlen(model: Any) -> bool:
    """Whether `model` runs `NAME` attention."""
    return getattr(model.config, "_attn_implementation", None) == NAME


def check_model(model: Any) -> None:
    """Refuse `NAME` for a model that cannot run sdpa, its fallback (transformers checks that for
    ``sdpa`` itself, not for a registered name): Gemma2's soft-capping, for one."""
    if uses_varlen(model) and not getattr(model, "_supports_sdpa", False):
        raise ValueError(f"{type(model).__name__} does not support sdpa, which {NAME} runs outside packed "
                         "batches (and its attention may need what the varlen kernel lacks): use "
                         "--attn_implementation eager or flash_attention_2")


# Attention-function arguments that change the attention itself; the varlen call has none of them.
UNSUPPORTED = {"softcap": "logit soft-capping", "s_aux": "attention sinks"}
_warned: set[str] = set()


def document_bounds(position_ids: Any, window: int | None = None) -> dict[str, Any]:
    """``cu_seq_lens_q/k`` (int32) and ``max_length_q/k`` of a ``[batch, length]`` packed batch.

    A document starts wherever `position_ids` is 0 (`pack_sequences` restarts them at each
    document and each block), over the batch's rows laid end to end. ``max_length_q/k`` is the
    row length, a bound on every document (none spans rows), not the batch's longest document:
    the same value every step, so compiled layers do not recompile for it (Dynamo specializes on
    an int). `window`: the model's sliding window; a longer document is refused here.
    """
    import torch

    rows = position_ids.reshape(-1, position_ids.shape[-1])
    if bool((rows[:, 0] != 0).any()):  # a row that goes on with a document would attend to the row before it
        raise ValueError(f"packed position_ids must start at 0 (a document start) in every row, got rows starting "
                         f"at {rows[:, 0].tolist()}")
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).reshape(-1)
    cu = torch.cat([starts, torch.tensor([flat.numel()])]).to(torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    if window is not None and longest > window:
        raise ValueError(f"{NAME} has no sliding window, and a document of this batch ({longest} "
                         f"tokens) is longer than the model's ({window}): use --attn_implementation sdpa, or a "
                         f"--max_length of at most {window}")
    bound = int(position_ids.shape[-1])
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": bound, "max_length_k": bound}


def sliding_window(model: Any) -> int | None:
    """The sliding window some attention layer of `model` uses, else `None` (the window check of
    `document_bounds`)."""
    config = getattr(model, "config", None)
    window = getattr(config, "sliding_window", None)
    if window is None or not getattr(config, "use_sliding_window", True):
        return None
    layer_types = getattr(config, "layer_types", None)
    return window if layer_types is None or "sliding_attention" in layer_types else None


def varlen_attention_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function signature: ``[batch, heads, length, dim]`` in,
    ``[batch, length, heads, dim]`` out."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[2] != key.shape[2]:  # not a packed training batch: sdpa with its mask
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        if cu is None and module.training and "no bounds" not in _warned:
            _warned.add("no bounds")
            logger.warning("hf_ipt: %s got a training batch without document bounds (cu_seq_lens_q): it runs sdpa "
                           "there. Feed it through hf_ipt's packed collator, and check that no patched forward "
                           "drops the model's **kwargs", NAME)

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **{k: v for k, v in kwargs.items() if k not in BOUNDS})
    if dropout:
        raise ValueError(f"{NAME} has no attention dropout (got {dropout}): set the model's attention_dropout to 0")
    for name, what in UNSUPPORTED.items():
        if kwargs.get(name) is not None:
            raise ValueError(f"{NAME} has no {what} ({name}), which {type(module).__name__} uses: use "
                             "--attn_implementation sdpa, eager or flash_attention_2")
    longest = int(kwargs["max_length_q"])  # a bound (the row length), checked against the window when collated
    batch, heads, length, dim = query.shape
    scale = dim**-0.5 if scaling is None else scaling
    flat = [t.transpose(1, 2).reshape(batch * length, t.shape[1], dim) for t in (query, key, value)]
    out = _attend(*flat, cu.to(query.device), longest, scale)
    return out.reshape(batch, length, heads, dim), None


def _attend(query: Any, key: Any, value: Any, cu: Any, longest: int, scale: float) -> Any:
    """Causal attention within each ``cu`` segment of ``(tokens, heads, dim)`` tensors."""
    if query.is_cuda:
        return _flash(query, key, value, cu, longest, scale)
    return _per_document(query, key, value, cu, scale)


def _flash(query: Any, key: Any, value: Any, cu: Any, longest: int, scale: float) -> Any:
    """`varlen_attn`, whose keywords changed across releases (2.10: ``is_causal``; later:
    ``window_size=(-1, 0)``, ``scale``, ``enable_gqa``)."""
    import torch

    half = (torch.bfloat16, torch.float16)
    if any(t.dtype not in half for t in (query, key, value)):
        # fp32 master weights under bf16 autocast give fp32 queries (RoPE's fp32 cos/sin promote them):
        # autocast casts sdpa's inputs itself, not those of this custom op
        device = query.device.type
        if not torch.is_autocast_enabled(device):
            found = sorted({str(t.dtype) for t in (query, key, value)})
            raise ValueError(f"{NAME} runs a flash kernel, which takes bf16 or fp16, got {', '.join(found)}: train "
                             "with --bf16 true (or --fp16 true, or a model loaded with --dtype bfloat16)")
        dtype = torch.get_autocast_dtype(device)
        query, key, value = (t.to(dtype) for t in (query, key, value))
    kernel, accepted = _kernel()
    options: dict[str, Any] = {"window_size": (-1, 0)} if "window_size" in accepted else {"is_causal": True}
    if "scale" in accepted:
        options["scale"] = scale
    else:  # the kernel's own scale is dim ** -0.5
        query = query * (scale / query.shape[-1] ** -0.5)
    groups = query.shape[1] // key.shape[1]
    if groups > 1 and "enable_gqa" in accepted:
        options["enable_gqa"] = True
    elif groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    return kernel(query, key, value, cu, cu, longest, longest, **options)


_KERNEL: tuple[Any, frozenset[str]] | None = None


def _kernel() -> tuple[Any, frozenset[str]]:
    """`varlen_attn` and its keywords, looked up once (`register` does it, before any compile)."""
    global _KERNEL
    if _KERNEL is None:
        import torch

        try:
            from torch.nn.attention.varlen import varlen_attn
        except ImportError:
            raise ImportError(
                f"attn_implementation={NAME!r} needs torch >= 2.10 (torch.nn.attention.varlen), found "
                f"{torch.__version__}: use sdpa, or flash_attention_2 with the flash-attn package"
            ) from None
        _KERNEL = varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)
    return _KERNEL


def _per_document(query: Any, key: Any, value: Any, cu: Any, scale: float) -> Any:
    import torch
    import torch.nn.functional as F

    groups = query.shape[1] // key.shape[1]
    bounds = cu.tolist()
    out = [
        F.scaled_dot_product_attention(
            query[a:b].transpose(0, 1), key[a:b].transpose(0, 1), value[a:b].transpose(0, 1),
            is_causal=True, scale=scale, enable_gqa=groups > 1,
        ).transpose(0, 1)
        for a, b in itertools.pairwise(bounds)
    ]
    return torch.cat(out)
