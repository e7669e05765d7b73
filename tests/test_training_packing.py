"""Packing keeps every token, cuts exact blocks, and keeps documents apart in attention and loss."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_ipt.training.packing import (
    IGNORE_INDEX,
    collate_packed,
    documents_isolated,
    isolation_gap,
    needs_flat_batches,
    pack_sequences,
    packed_collator,
)

documents = st.lists(st.lists(st.integers(0, 999), min_size=0, max_size=60), max_size=40)


@settings(max_examples=200, deadline=None)
@given(docs=documents, seq_length=st.integers(2, 50))
def test_packing_keeps_every_token(docs, seq_length):
    blocks = list(pack_sequences(docs, seq_length))
    # count in == count out, and the very same tokens in the same order
    assert sum(len(b["input_ids"]) for b in blocks) == sum(len(d) for d in docs)
    assert [t for b in blocks for t in b["input_ids"]] == [t for d in docs for t in d]
    assert all(len(b["input_ids"]) == seq_length for b in blocks[:-1])
    for block in blocks:
        assert len(block["labels"]) == len(block["position_ids"]) == len(block["input_ids"])
    # Token j of a document at stream offset g: its segment starts at the document's start or,
    # for a document split across blocks, at the block's start (offset g % seq_length).
    positions, labels = [], []
    g = 0
    for doc in docs:
        for j, token in enumerate(doc):
            position = min(j, g % seq_length)
            positions.append(position)
            # -100 exactly at segment starts: no token is predicted across a boundary.
            labels.append(IGNORE_INDEX if position == 0 else token)
            g += 1
    assert [p for b in blocks for p in b["position_ids"]] == positions
    assert [t for b in blocks for t in b["labels"]] == labels
    assert all(b["position_ids"][0] == 0 and b["labels"][0] == IGNORE_INDEX for b in blocks)


def test_positions_restart_at_documents_and_labels_mask_only_segment_starts():
    docs = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10]]
    blocks = list(pack_sequences(docs, 4))
    assert [b["input_ids"] for b in blocks] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert [b["position_ids"] for b in blocks] == [[0, 1, 2, 0], [0, 1, 2, 3], [0, 0]]
    assert [b["labels"] for b in blocks] == [[-100, 2, 3, -100], [-100, 6, 7, 8], [-100, -100]]


def test_document_labels_are_kept():
    docs = [
        {"input_ids": [1, 2, 3, 4], "labels": [-100, -100, 3, 4]},
        {"input_ids": [5, 6], "labels": [5, 6]},
    ]
    (block,) = pack_sequences(docs, 8)
    assert block["labels"] == [-100, -100, 3, 4, -100, 6]
    with pytest.raises(ValueError, match="labels"):
        list(pack_sequences([{"input_ids": [1, 2], "labels": [1]}], 4))


def test_collate_stacks_equal_blocks_and_flattens_ragged_ones():
    blocks = list(pack_sequences([list(range(10))], 4))
    stacked = collate_packed(blocks[:2])
    assert stacked["input_ids"].shape == (2, 4) and stacked["input_ids"].dtype == torch.long
    flat = collate_packed(blocks)  # 4 + 4 + 2 tokens: one padding-free row
    assert flat["input_ids"].tolist() == [list(range(10))]
    assert flat["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 3, 0, 1]]


def test_flash_attention_gets_one_flat_row():
    """transformers runs flash attention varlen only for ONE row: [batch, length] would leak."""
    blocks = list(pack_sequences([list(range(12))], 4))
    flat = collate_packed(blocks, flatten=True)
    assert flat["input_ids"].tolist() == [list(range(12))]
    assert flat["position_ids"].tolist() == [[0, 1, 2, 3] * 3]

    class Model:
        def __init__(self, implementation):
            self.config = SimpleNamespace(_attn_implementation=implementation)

    for implementation, flat_rows in [("flash_attention_2", True), ("flash_attention_3", True),
                                      ("kernels-community/flash-attn2", True), ("sdpa", False),
                                      ("eager", False), ("flex_attention", False)]:
        assert needs_flat_batches(Model(implementation)) is flat_rows
        assert packed_collator(Model(implementation))(blocks)["input_ids"].shape[0] == (1 if flat_rows else 3)


def test_stacked_rows_keep_documents_apart_with_sdpa(tiny_model_dir):
    """Each row of a [batch, length] batch gets its own block-diagonal mask (sdpa)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    model.config.use_cache = False
    rng = random.Random(1)
    docs = [[rng.randrange(5, 500) for _ in range(n)] for n in (5, 11, 8, 6, 10, 8)]
    blocks = list(pack_sequences(docs, 24))  # two rows: documents 0-2, then 3-5
    batch = packed_collator(model)(blocks)
    assert batch["input_ids"].shape == (2, 24)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        alone = model(input_ids=torch.tensor([docs[4]])).logits[0]
    torch.testing.assert_close(packed[1, 6:16], alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_no_attention_across_documents(tiny_model_dir, attn_implementation):
    """A document's logits inside a packed block equal its logits alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, attn_implementation=attn_implementation
    )
    model.config.use_cache = False  # as `build_trainer` sets it: a cache disables the packed mask
    rng = random.Random(0)
    docs = [[rng.randrange(5, 500) for _ in range(n)] for n in (7, 12, 9)]
    (block,) = pack_sequences(docs, 28)
    batch = collate_packed([block])
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        alone = model(input_ids=torch.tensor([docs[1]])).logits[0]
        mixed = model(input_ids=batch["input_ids"]).logits[
            0
        ]  # no position_ids: documents see each other
    torch.testing.assert_close(packed[7:19], alone, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(mixed[7:19], alone, atol=1e-3)
    assert block["labels"][7] == IGNORE_INDEX  # and no loss on predicting it from document 0


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_model_whose_mask_follows_position_ids_keeps_documents_apart(tiny_model_dir, attn):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn)
    model.train()
    assert documents_isolated(model) is True
    assert model.training  # the probe leaves the model as it found it
    assert isolation_gap(model) == 0.0  # same shapes, same kernels: not even rounding differs on CPU


def test_a_model_whose_mask_ignores_position_ids_is_found_and_warned_about(tmp_path, tiny_tokenizer, caplog):
    from transformers import OPTConfig, OPTForCausalLM

    from hf_ipt.training.card import CardInfo
    from hf_ipt.training.config import TrainingConfig
    from hf_ipt.training.trainer import build_trainer

    config = OPTConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=1,
                       num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=64)
    model = OPTForCausalLM(config)
    assert documents_isolated(model) is False
    gap = isolation_gap(model)
    assert gap > 1e-2  # far above rounding: the documents mix
    args = TrainingConfig(output_dir=str(tmp_path), max_steps=1, use_cpu=True, report_to="none", max_length=32)
    build_trainer(model, tiny_tokenizer, [], args, CardInfo("continual_pt"))
    assert "OPTForCausalLM (attention 'sdpa') lets packed documents attend to each other" in caplog.text
    assert f"moved by {gap:.2g} of their scale" in caplog.text  # the warning says by how much


def test_the_isolation_check_runs_in_the_training_precision_and_never_stops_a_run(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert documents_isolated(model, autocast_dtype=torch.bfloat16) is True  # fp32 weights, bf16 autocast

    def fail(*args, **kwargs):  # e.g. flash attention refusing float32 outside the Trainer's autocast
        raise RuntimeError("FlashAttention only supports fp16 and bf16")

    model.train()
    model.forward = fail
    assert documents_isolated(model) is None and model.training
