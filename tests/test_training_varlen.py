"""``attn_implementation="hf_ipt_varlen"``: packed batches on PyTorch's varlen flash kernel.

The flash kernel itself runs only on CUDA; on CPU the same code path runs one causal sdpa per
document (`varlen._per_document`), and the kernel's keywords across torch releases are checked
against a stand-in that computes the same result.
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

from hf_ipt.training import varlen
from hf_ipt.training.packing import isolation_gap, pack_sequences, packed_collator


def _models(kv_heads: int = 2):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=256,
                         use_cache=False)  # as `build_trainer` sets it: with a cache, sdpa skips the packed mask
    torch.manual_seed(0)
    sdpa = AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation="sdpa")
    fast = AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation=varlen.prepare(varlen.NAME))
    assert (sdpa.config._attn_implementation, fast.config._attn_implementation) == ("sdpa", varlen.NAME)
    fast.load_state_dict(sdpa.state_dict())
    return sdpa, fast


def test_document_bounds_span_the_rows_laid_end_to_end():
    positions = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 0], [0, 1, 2, 3, 4, 5, 0, 1]])
    bounds = varlen.document_bounds(positions)
    assert bounds["cu_seq_lens_q"].tolist() == [0, 3, 7, 8, 14, 16] and bounds["cu_seq_lens_q"].dtype == torch.int32
    assert bounds["max_length_q"] == bounds["max_length_k"] == 8  # the row length: the same every step
    with pytest.raises(ValueError, match=r"\(6 tokens\).*\(5\)"):
        varlen.document_bounds(positions, window=5)
    with pytest.raises(ValueError, match="must start at 0"):
        varlen.document_bounds(torch.tensor([[1, 2, 0]]))
    with pytest.raises(ValueError, match=r"must start at 0.*\[0, 4\]"):  # not only the first row
        varlen.document_bounds(torch.tensor([[0, 1, 2, 3], [4, 5, 0, 1]]))


@pytest.mark.parametrize("kv_heads", [4, 2])  # plain and grouped-query attention
def test_packed_batches_give_the_logits_loss_and_gradients_of_sdpa(kv_heads, monkeypatch):
    calls = []
    per_document = varlen._per_document
    monkeypatch.setattr(varlen, "_per_document", lambda *a: calls.append(1) or per_document(*a))
    sdpa, fast = _models(kv_heads)
    documents = [list(range(1, 20)), list(range(5, 60)), list(range(2, 30)), list(range(3, 90))]
    blocks = list(pack_sequences(documents, 48))
    plain, packed = packed_collator(sdpa)(blocks), packed_collator(fast)(blocks)
    # the last block is short: the rows are flattened into one, whose length bounds every document
    assert "cu_seq_lens_q" not in plain and packed["max_length_q"] == 189
    expected, got = sdpa(**plain), fast(**packed)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
    assert len(calls) == 2  # both layers ran the varlen path, not the sdpa fallback
    expected.loss.backward()
    got.loss.backward()
    for (name, a), b in zip(sdpa.named_parameters(), fast.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert isolation_gap(fast) == 0.0  # the probe feeds the model as the collator does


def test_padded_evaluation_and_generation_run_sdpa_with_their_mask():
    sdpa, fast = _models()
    ids = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    torch.testing.assert_close(fast(input_ids=ids, attention_mask=mask).logits,
                               sdpa(input_ids=ids, attention_mask=mask).logits)
    settings = {"attention_mask": mask, "max_new_tokens": 4, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(fast.generate(ids, **settings), sdpa.generate(ids, **settings))


def _kernel_of(release: str):
    """A stand-in for `varlen_attn` with the keywords of a torch release, computing the same result."""
    calls = []

    def reference(query, key, value, cu_q, cu_k, max_q, max_k, scale=None, groups=1):
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
        return varlen._per_document(query, key, value, cu_q, query.shape[-1] ** -0.5 if scale is None else scale)

    if release == "2.10":
        def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
            calls.append({"is_causal": is_causal})
            assert query.dtype == key.dtype == torch.bfloat16, "the flash kernel takes bf16/fp16 only"
            assert query.shape[1] == key.shape[1], "2.10 has no GQA: keys must be repeated"
            return reference(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k)
    else:
        def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                        window_size=(-1, -1), enable_gqa=False):
            calls.append({"window_size": window_size, "scale": scale, "enable_gqa": enable_gqa})
            assert query.dtype == key.dtype == torch.bfloat16, "the flash kernel takes bf16/fp16 only"
            groups = query.shape[1] // key.shape[1]
            assert groups == 1 or enable_gqa
            return reference(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale, groups)

    return varlen_attn, calls


@pytest.mark.parametrize("release", ["2.10", "2.12"])
def test_the_flash_call_adapts_to_the_kernels_keywords(release, monkeypatch):
    import torch.nn.attention.varlen as module

    kernel, calls = _kernel_of(release)
    monkeypatch.setattr(module, "varlen_attn", kernel)
    monkeypatch.setattr(varlen, "_KERNEL", None)  # looked up again
    torch.manual_seed(0)
    query, key, value = (torch.randn(12, heads, 8, dtype=torch.bfloat16) for heads in (4, 2, 2))
    cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    scale = 0.3  # not the kernel's default dim ** -0.5
    got = varlen._flash(query, key, value, cu, 7, scale)
    # bf16, as the kernel takes; 2.10 has no `scale`, so the query is scaled first (one more rounding)
    torch.testing.assert_close(got, varlen._per_document(query, key, value, cu, scale), atol=1e-2, rtol=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 master weights give fp32 queries: cast for the kernel
        cast = varlen._flash(query.float(), key.float(), value.float(), cu, 7, scale)
    assert cast.dtype == torch.bfloat16 and torch.equal(cast, got)
    with pytest.raises(ValueError, match="takes bf16 or fp16, got torch.float32"):
        varlen._flash(query.float(), key.float(), value.float(), cu, 7, scale)
    with pytest.raises(ValueError, match="takes bf16 or fp16, got torch.bfloat16, torch.float32"):
        varlen._flash(query, key.float(), value, cu, 7, scale)  # every input is checked, not the query only
    expected = {"is_causal": True} if release == "2.10" else {"window_size": (-1, 0), "scale": scale, "enable_gqa": True}
    assert calls == [expected, expected]
    assert "max_q" in inspect.signature(kernel).parameters


def test_attention_dropout_is_refused_on_packed_batches():
    _, fast = _models()
    fast.config.attention_dropout = 0.1
    for layer in fast.model.layers:
        layer.self_attn.attention_dropout = 0.1
    fast.train()
    blocks = list(pack_sequences([list(range(1, 30))], 16))
    with pytest.raises(ValueError, match="no attention dropout"):
        fast(**packed_collator(fast)(blocks))


def test_compiled_layers_trace_the_varlen_path_whole_and_settle_on_dynamic_shapes(monkeypatch):
    """Under `--compile_layers`, batches bring another number of documents and another longest one
    each step: the layer must compile without graph breaks and stop recompiling once dynamic."""
    import random

    from torch._dynamo.utils import counters

    from hf_ipt.training.model_init import compile_decoder_layers

    @torch.library.custom_op("hf_ipt_tests::varlen", mutates_args=())
    def kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, longest: int,
               scale: float) -> torch.Tensor:  # the CUDA kernel's stand-in: an opaque op, as on a GPU
        return varlen._per_document(q, k, v, cu, scale)

    kernel.register_fake(lambda q, k, v, cu, longest, scale: torch.empty_like(q))
    monkeypatch.setattr(varlen, "_attend", kernel)
    torch._dynamo.reset()
    counters.clear()
    _, model = _models()
    assert compile_decoder_layers(model, backend="eager") == 2
    rng = random.Random(0)
    documents = ([rng.randrange(1, 100) for _ in range(rng.randint(10, 120))] for _ in range(10_000))
    blocks = pack_sequences(documents, 128)
    collate = packed_collator(model)
    graphs = []
    with torch.no_grad():
        for _ in range(8):
            batch = collate([next(blocks) for _ in range(2)])
            model(**batch)
            graphs.append(counters["stats"]["unique_graphs"])
    assert not counters["graph_break"]
    assert graphs[-1] <= 3 and graphs[-4:] == [graphs[-1]] * 4, graphs  # no recompiles after the first few


def test_a_sliding_window_shorter_than_a_document_is_refused():
    from transformers import AutoModelForCausalLM, MistralConfig

    config = MistralConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                           sliding_window=16, use_cache=False)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=varlen.prepare(varlen.NAME))
    short = packed_collator(model)(list(pack_sequences([list(range(1, 12)), list(range(1, 10))], 20)))
    model(**short)  # documents within the window: nothing to refuse
    with pytest.raises(ValueError, match=r"no sliding window.*\(39 tokens\).*\(16\)"):  # before the model runs
        packed_collator(model)(list(pack_sequences([list(range(1, 40))], 39)))


def test_attention_the_kernel_lacks_is_refused_not_dropped():
    from types import SimpleNamespace

    _, fast = _models()
    bounds = varlen.document_bounds(torch.tensor([[0, 1, 2, 3]]))
    query = torch.randn(1, 4, 4, 16)
    module = fast.model.layers[0].self_attn
    for name, value in (("softcap", 50.0), ("s_aux", torch.zeros(4))):
        with pytest.raises(ValueError, match=f"no .*\\({name}\\), which LlamaAttention uses"):
            varlen.varlen_attention_forward(module, query, query, query, None, **bounds, **{name: value})
    varlen.check_model(fast)  # Llama supports sdpa, the fallback
    no_sdpa = SimpleNamespace(config=SimpleNamespace(_attn_implementation=varlen.NAME), _supports_sdpa=False)
    with pytest.raises(ValueError, match="does not support sdpa"):
        varlen.check_model(no_sdpa)


def test_a_training_batch_without_bounds_is_warned_about_once(caplog, monkeypatch):
    monkeypatch.setattr(varlen, "_warned", set())
    _, fast = _models()
    fast.train()
    ids = torch.tensor([[5, 6, 7, 8]])
    for _ in range(2):
        fast(input_ids=ids)  # e.g. a patched forward that dropped the collator's kwargs
    assert caplog.text.count("without document bounds") == 1
