"""The transformers synthesis backend, on the real engine (`model.generate` / `generate_batch`)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from hf_ipt.backends import BackendConfig, load_backend
from hf_ipt.backends.transformers import TransformersBackend
from hf_ipt.protocol import build_prompt, encode_prompt, format_pairs, parse_pairs

# Contexts of very different lengths, so length-sorted batches are padded differently.
TEXTS = [
    "The company reported a profit.",
    (
        "Sales in the U.S. fell by 3.5% because demand weakened. Therefore, the shares dropped "
        "sharply, and analysts said the market is about energy prices and interest rates."
    ),
    "Shares dropped.",
    (
        "However, sales fell. Analysts said the market is about energy prices. The company "
        "reported a profit of $1.13bn in the third quarter, up from last year."
    ),
    "What is the cause?",
]
SHOT = (TEXTS[1], [("Why did the shares drop?", "Because demand weakened.")])


def prompt_ids(tokenizer, texts=TEXTS, shots=((),)):
    """Protocol prompts as token ids: zero-shot, and one-shot when `shots` holds a shot."""
    return [encode_prompt(tokenizer, build_prompt(t, s)) for t in texts for s in shots]


def plain_greedy(backend: TransformersBackend, prompt: list[int]) -> list[int]:
    """The reference: one prompt, no padding, plain `generate`, cut after the first EOS."""
    import torch

    ids = torch.tensor([prompt], device=backend.device)
    out = backend.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        generation_config=backend._generation_config(),
    )[0, len(prompt) :].tolist()
    stop = next((k for k, t in enumerate(out) if t in backend.eos_token_ids), len(out) - 1)
    return out[: stop + 1]


@pytest.fixture(scope="module")
def tiny_backend(tiny_model_dir) -> TransformersBackend:
    config = BackendConfig(
        str(tiny_model_dir),
        backend="transformers",
        max_model_len=256,
        max_new_tokens=10,
        batch_size=3,
    )
    return load_backend(config)


def test_loads_safely_on_cpu_in_fp32(tiny_backend):
    assert isinstance(tiny_backend, TransformersBackend)
    assert tiny_backend.device == "cpu"
    assert str(tiny_backend.model.dtype) == "torch.float32"
    assert tiny_backend.eos_token_ids[0] == tiny_backend.tokenizer.convert_tokens_to_ids("</s>")


def test_encode_prompt_keeps_the_prompts_one_literal_bos(tiny_backend):
    """`<s>` in the prompt IS the BOS: encoding must not add a second one."""
    tokenizer = tiny_backend.tokenizer
    bos = tokenizer.bos_token_id
    for text in TEXTS:
        prompt = build_prompt(text)
        ids = encode_prompt(tokenizer, prompt)
        assert ids[0] == bos and ids.count(bos) == 1
        assert tokenizer.decode(ids) == prompt
        # The tokenizer's own special tokens would double it.
        assert tokenizer(prompt)["input_ids"] == [bos, *ids]
    # A one-shot prompt holds two contexts: one BOS each, at each `<s>`.
    ids = encode_prompt(tokenizer, build_prompt(TEXTS[0], [SHOT]))
    assert ids[0] == bos and ids.count(bos) == 2


def test_sorted_padded_batches_equal_plain_greedy_generate(tiny_backend):
    prompts = prompt_ids(tiny_backend.tokenizer, shots=((), (SHOT,)))
    assert len({len(p) for p in prompts}) > 3  # several lengths: batches really are padded
    generations = tiny_backend.generate(prompts)
    assert len(generations) == len(prompts)
    for prompt, generation in zip(prompts, generations):
        assert generation.error is None
        assert generation.num_prompt_tokens == len(prompt)
        assert generation.token_ids == plain_greedy(tiny_backend, prompt)
        assert generation.num_generated_tokens == len(generation.token_ids)
        assert generation.text == tiny_backend.tokenizer.decode(
            generation.token_ids, skip_special_tokens=True
        )


def test_continuous_batching_equals_plain_greedy_generate(tiny_backend):
    config = BackendConfig(
        tiny_backend.config.model_name_or_path,
        backend="transformers",
        max_model_len=256,
        max_new_tokens=6,
        continuous_batching=True,
    )
    backend = TransformersBackend.from_model(tiny_backend.model, tiny_backend.tokenizer, config)
    prompts = prompt_ids(tiny_backend.tokenizer, texts=TEXTS[:3]) + [[10**6]]
    generations = backend.generate(prompts)
    for prompt, generation in zip(prompts[:3], generations):
        assert generation.error is None
        assert generation.token_ids == plain_greedy(backend, prompt)
    # A prompt with an out-of-vocabulary id fails alone, recorded, not raised.
    assert generations[3].error and generations[3].text == ""


def test_prefix_caching_reuses_the_previous_calls_blocks_and_changes_no_token(tiny_backend):
    """Round 2's prompts start with round 1's prompt, its output and `</s>`, as chained synthesis
    builds them: with `prefix_caching` the kept paged cache embeds only what is new (whole
    256-token pages are reused), and every token equals plain `generate`'s."""
    tokenizer = tiny_backend.tokenizer
    config = BackendConfig(tiny_backend.config.model_name_or_path, backend="transformers", max_model_len=2048,
                           max_new_tokens=10, continuous_batching=True, prefix_caching=True)
    backend = TransformersBackend.from_model(tiny_backend.model, tokenizer, config)
    embedded = []
    hook = backend.model.get_input_embeddings().register_forward_pre_hook(lambda m, a: embedded.append(a[0].numel()))
    try:
        first = prompt_ids(tokenizer, texts=[" ".join(TEXTS[i:] + TEXTS[:i]) * 6 for i in range(3)])
        assert min(map(len, first)) > 2 * 256  # whole pages to reuse
        eos = backend.eos_token_ids[0]
        rounds = [first]
        for _ in range(2):
            outputs = backend.generate(rounds[-1])
            for prompt, generation in zip(rounds[-1], outputs):
                assert generation.error is None and generation.token_ids == plain_greedy(backend, prompt)
            rounds.append([p + g.token_ids + [eos] * (not g.finished) + prompt_ids(tokenizer, texts=[TEXTS[3]])[0]
                           for p, g in zip(rounds[-1], outputs)])
            embedded.clear()
        generations = backend.generate(rounds[-1])
        # Embedded: each prompt less its reused pages, then one token per decoding step.
        decoded = sum(g.num_generated_tokens - 1 for g in generations)
        assert sum(embedded) <= sum(map(len, rounds[-1])) - 2 * 256 * len(first) + decoded
        for prompt, generation in zip(rounds[-1], generations):
            assert generation.error is None and generation.token_ids == plain_greedy(backend, prompt)
        # A call that needs more cache than was kept gets a larger one (CPU), and the same tokens.
        kept = backend._cache_blocks
        many = [p + [eos] + q for p in rounds[-1] for q in first]
        assert all(g.token_ids == plain_greedy(backend, p) for p, g in zip(many, backend.generate(many)))
        assert backend._cache_blocks > kept
    finally:
        hook.remove()
        backend.close()
    assert not hasattr(tiny_backend.model, "_cached_continuous_batching_manager")  # `close` freed it
    with pytest.raises(ValueError, match="prefix_caching.*set `continuous_batching` too"):
        BackendConfig("m", backend="transformers", prefix_caching=True)
    with pytest.raises(ValueError, match="prefix_caching.*enable_prefix_caching"):
        BackendConfig("m", backend="vllm", prefix_caching=True)


def test_prefix_caching_shares_pages_of_a_sliding_window_model_within_its_window(tiny_backend):
    """Mistral-7B's config sets a 4,096-token sliding window, and transformers shares no page of
    sliding-window layers: within the window attention is full, so the backend lifts it for its
    calls (and puts it back). The kept manager's limits are not the first call's (one prompt)."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    tokenizer = tiny_backend.tokenizer
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=4096, max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).eval()
    config = BackendConfig("mistral", backend="transformers", max_model_len=2048, max_new_tokens=6,
                           continuous_batching=True, prefix_caching=True)
    backend = TransformersBackend.from_model(model, tokenizer, config)
    embedded = []
    model.get_input_embeddings().register_forward_pre_hook(lambda m, a: embedded.append(a[0].numel()))
    try:
        first = prompt_ids(tokenizer, texts=[" ".join(TEXTS) * 6])
        outputs = backend.generate(first)
        assert backend._kept_manager.batch_processor.cb_config.max_requests_per_batch == 1024
        second = [first[0] + outputs[0].token_ids + prompt_ids(tokenizer, texts=[TEXTS[3]])[0]]
        embedded.clear()
        generation = backend.generate(second)[0]
        assert sum(embedded) <= len(second[0]) - 2 * 256 + generation.num_generated_tokens
        assert generation.token_ids == plain_greedy(backend, second[0])
        assert model.config.sliding_window == 4096
    finally:
        backend.close()


def test_a_call_that_fails_does_not_leave_its_kept_manager(tiny_backend, monkeypatch):
    config = BackendConfig(tiny_backend.config.model_name_or_path, backend="transformers", max_model_len=256,
                           max_new_tokens=6, continuous_batching=True, prefix_caching=True)
    backend = TransformersBackend.from_model(tiny_backend.model, tiny_backend.tokenizer, config)
    prompts = prompt_ids(tiny_backend.tokenizer, texts=TEXTS[:2])
    try:
        backend.generate(prompts)
        assert hasattr(backend.model, "_cached_continuous_batching_manager")
        with monkeypatch.context() as patch:
            patch.setattr(backend.model, "generate_batch", lambda *a, **k: 1 / 0)
            with pytest.raises(ZeroDivisionError):  # no memory trouble: raised, not recorded per prompt
                backend.generate(prompts)
        assert not hasattr(backend.model, "_cached_continuous_batching_manager")
        assert [g.token_ids for g in backend.generate(prompts)] == [plain_greedy(backend, p) for p in prompts]
    finally:
        backend.close()


def test_overlong_empty_and_failing_prompts_are_recorded_not_fatal(tiny_backend):
    good = prompt_ids(tiny_backend.tokenizer, texts=TEXTS[:2])
    budget = tiny_backend.config.prompt_budget
    too_long = good[0] + [good[0][-1]] * (budget - len(good[0]) + 1)
    out_of_vocab = good[1][:-1] + [len(tiny_backend.tokenizer) + 10]
    prompts = [good[0], too_long, [], out_of_vocab, good[1]]
    generations = tiny_backend.generate(prompts)

    errors = [g for g in generations if g.error]
    assert len(errors) == 3
    assert (
        "exceeds the budget" in generations[1].error
        and generations[1].num_prompt_tokens == budget + 1
    )
    assert generations[2].error == "empty prompt"
    assert f"token id {len(tiny_backend.tokenizer) + 10} is out of the model's vocabulary" in generations[3].error
    # The good prompts still ran, and the retry after the failed batch changed nothing.
    for i, prompt in ((0, good[0]), (4, good[1])):
        assert generations[i].error is None
        assert generations[i].token_ids == plain_greedy(tiny_backend, prompt)


def test_tiny_synthesizer_stops_at_eos_and_pairs_parse(tiny_synthesizer_dir):
    """A model over-fitted to the protocol: real pairs come out, then `</s>` ends generation."""
    config = BackendConfig(
        str(tiny_synthesizer_dir),
        backend="transformers",
        max_model_len=512,
        max_new_tokens=48,
        batch_size=2,
    )
    backend = load_backend(config)
    eos = backend.tokenizer.convert_tokens_to_ids("</s>")
    generations = backend.generate(
        prompt_ids(backend.tokenizer, texts=TEXTS[:3], shots=((), (SHOT,)))
    )
    for generation in generations:
        assert generation.error is None
        assert generation.finished and generation.token_ids[-1] == eos
        assert generation.num_generated_tokens < config.max_new_tokens
        assert "</s>" not in generation.text
        pairs = parse_pairs(generation.text)
        assert len(pairs) >= 2 and format_pairs(pairs) in generation.text
    # The fixture answers every context with the same pairs.
    assert len({tuple(parse_pairs(g.text)) for g in generations}) == 1


def test_smollm2_real_weights_through_the_protocol(smollm2_dir):
    """Real tokenizer + real weights: protocol prompts in, greedy text out, as plain generate."""
    config = BackendConfig(
        str(smollm2_dir), backend="transformers", max_model_len=512, max_new_tokens=8, batch_size=2
    )
    backend = load_backend(config)
    assert backend.eos_token_ids[0] == backend.tokenizer.eos_token_id
    tokenizer = backend.tokenizer
    prompts = prompt_ids(tokenizer, texts=TEXTS[:2], shots=((SHOT,),))
    special = set(tokenizer.all_special_ids)
    for prompt, text in zip(prompts, TEXTS):
        # SmolLM2 has no `<s>` token: the protocol's markers are plain text, nothing is added.
        assert tokenizer.decode(prompt) == build_prompt(text, [SHOT])
        assert not special & set(prompt)
    generations = backend.generate(prompts)
    for prompt, generation in zip(prompts, generations):
        assert generation.error is None and generation.text
        assert generation.token_ids == plain_greedy(backend, prompt)
        # 8 tokens of an untuned chat model: cut by the limit with no `</END>`, so the cut piece
        # is dropped; the same text closed by the protocol parses to one pair with its question.
        assert not generation.finished and "</END>" not in generation.text
        assert parse_pairs(generation.text) == []
        closed = f"<QUE>{generation.text} <ANS> A profit. </END>"
        assert parse_pairs(closed) == [(generation.text.strip(), "A profit.")]
    backend.close()
    assert backend.model is None


def test_generate_after_close_names_the_fix(tiny_model_dir):
    """It raised AttributeError ('NoneType' object has no attribute 'get_input_embeddings')."""
    backend = load_backend(BackendConfig(str(tiny_model_dir), backend="transformers", max_new_tokens=4))
    backend.close()
    with pytest.raises(RuntimeError, match=r"TransformersBackend.generate\(\) was called after close\(\).*create "
                       "a new TransformersBackend"):
        backend.generate([[1, 2, 3]])


def test_bad_dtype_is_rejected_with_the_fix(tiny_model_dir):
    with pytest.raises(ValueError, match=r"`dtype` must be 'auto', 'bfloat16'.*got 'bf17'.*\(BackendConfig.dtype\)"):
        BackendConfig(str(tiny_model_dir), backend="transformers", dtype="bf17")  # before any model loads


def test_pickle_weights_are_refused(tiny_model_dir, tmp_path):
    """Weights load as safetensors only: a `pytorch_model.bin` (pickle) checkpoint is refused."""
    import shutil

    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(OSError, match="model.safetensors"):
        load_backend(BackendConfig(str(pickled), backend="transformers"))


def test_a_cuda_fault_stops_generation_instead_of_failing_every_prompt(tiny_backend, monkeypatch):
    """After an illegal memory access every later CUDA call fails: recording it per prompt would
    reject every remaining document of a job and mark its units done."""
    prompts = prompt_ids(tiny_backend.tokenizer, texts=TEXTS[:2])

    def fault(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(tiny_backend.model, "generate", fault)
    with pytest.raises(RuntimeError, match="CUDA error"):
        tiny_backend.generate(prompts)
    monkeypatch.setattr(tiny_backend.model, "generate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("odd")))
    with pytest.raises(RuntimeError, match="odd"):  # no memory trouble: every prompt would fail, so it stops
        tiny_backend.generate(prompts)


def test_only_running_out_of_memory_is_recorded_per_prompt(tiny_backend, monkeypatch):
    """Any error of `generate` (a missing kernel, a bad setting) was bisected down to single prompts and
    recorded on each: a job rejected every document as `engine error` and marked its units done."""
    import torch

    prompts = prompt_ids(tiny_backend.tokenizer, texts=TEXTS[:3])
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise NotImplementedError("no kernel for this dtype")

    monkeypatch.setattr(tiny_backend.model, "generate", broken)
    with pytest.raises(NotImplementedError, match="no kernel"):
        tiny_backend.generate(prompts)
    assert len(calls) == 1  # not retried by halves
    real = type(tiny_backend.model).generate.__get__(tiny_backend.model)

    def too_wide(*args, input_ids, **kwargs):  # a batch of more than one row runs out of memory
        if len(input_ids) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(tiny_backend.model, "generate", too_wide)
    generations = tiny_backend.generate(prompts)
    assert [g.error for g in generations] == [None] * 3  # smaller batches recovered
    assert [g.token_ids for g in generations] == [plain_greedy(tiny_backend, p) for p in prompts]
    monkeypatch.setattr(tiny_backend.model, "generate", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")))
    assert all("can't allocate memory" in g.error for g in tiny_backend.generate(prompts))  # each alone: lost


def test_the_models_generation_config_does_not_change_decoding(tiny_backend, monkeypatch):
    """A synthesizer's generation_config.json filled every setting hf_ipt left unset on the padded path only
    (`generate_batch` and vLLM use the settings as given): a repetition_penalty or no_repeat_ngram_size there
    changed greedy tokens, and sampling always had transformers' top_k=50 (vLLM samples from all tokens)."""
    from transformers import GenerationConfig

    prompts = prompt_ids(tiny_backend.tokenizer, shots=((), (SHOT,)))
    expected = [plain_greedy(tiny_backend, p) for p in prompts]
    kept = tiny_backend.model.generation_config
    odd = GenerationConfig(**kept.to_dict())
    odd.update(repetition_penalty=3.0, no_repeat_ngram_size=1, top_k=1, top_p=0.1, num_beams=2)
    monkeypatch.setattr(tiny_backend.model, "generation_config", odd)
    continuous = TransformersBackend.from_model(tiny_backend.model, tiny_backend.tokenizer, replace(
        tiny_backend.config, continuous_batching=True))
    assert [g.token_ids for g in tiny_backend.generate(prompts)] == expected
    assert [g.token_ids for g in continuous.generate(prompts)] == expected
    assert tiny_backend.model.generation_config is odd  # given back after the call
    sampling = TransformersBackend.from_model(tiny_backend.model, tiny_backend.tokenizer,
                                              replace(tiny_backend.config, temperature=0.7))._generation_config()
    assert (sampling.top_k, sampling.top_p, sampling.do_sample) == (0, 1.0, True)


def _budget_backend(tiny_backend, **settings) -> TransformersBackend:
    config = BackendConfig(tiny_backend.config.model_name_or_path, backend="transformers", max_model_len=256,
                           max_new_tokens=10, **settings)
    return TransformersBackend.from_model(tiny_backend.model, tiny_backend.tokenizer, config)


def test_token_budget_cuts_batches_by_kv_tokens_and_row_count(tiny_backend):
    lengths = [100, 90, 50, 40, 30, 20, 10]  # longest first, as `generate` orders them
    order = [7, 3, 5, 0, 6, 2, 1]
    # rows x (first row's length + 10 new tokens) <= 150; batch_size caps the rows.
    backend = _budget_backend(tiny_backend, batch_size=4, max_batch_tokens=150)
    assert backend._batches(order, lengths) == [[7], [3], [5, 0], [6, 2, 1]]
    backend = _budget_backend(tiny_backend, batch_size=2, max_batch_tokens=150)
    assert backend._batches(order, lengths) == [[7], [3], [5, 0], [6, 2], [1]]
    # Unset: rows only. A budget under one prompt: each runs alone rather than not at all.
    assert _budget_backend(tiny_backend, batch_size=3)._batches(order, lengths) == [[7, 3, 5], [0, 6, 2], [1]]
    assert _budget_backend(tiny_backend, batch_size=4, max_batch_tokens=1)._batches(order, lengths) == [
        [i] for i in order
    ]
    with pytest.raises(ValueError, match="max_batch_tokens` must be an integer >= 1"):
        _budget_backend(tiny_backend, max_batch_tokens=0)
    with pytest.raises(ValueError, match="continuous batching sizes its own"):
        _budget_backend(tiny_backend, max_batch_tokens=100, continuous_batching=True)
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        BackendConfig("m", backend="vllm", max_batch_tokens=100)
    with pytest.raises(ValueError, match="static_cache.*vLLM pages its KV cache"):
        BackendConfig("m", backend="vllm", static_cache=True)
    with pytest.raises(ValueError, match="static_cache.*pass one"):
        _budget_backend(tiny_backend, static_cache=True, continuous_batching=True)


def test_token_budget_batches_equal_plain_greedy_generate(tiny_backend, monkeypatch):
    prompts = prompt_ids(tiny_backend.tokenizer, shots=((), (SHOT,)))
    longest = max(map(len, prompts))
    backend = _budget_backend(tiny_backend, batch_size=8, max_batch_tokens=2 * (longest + 10))
    sizes = []
    run = backend._generate_batch
    monkeypatch.setattr(backend, "_generate_batch", lambda batch: sizes.append(len(batch)) or run(batch))
    generations = backend.generate(prompts)
    assert sizes[0] <= 2 and max(sizes) > 2 and sum(sizes) == len(prompts)  # short prompts share larger batches
    for prompt, generation in zip(prompts, generations):
        assert generation.error is None and generation.token_ids == plain_greedy(backend, prompt)


def test_static_cache_batches_equal_plain_greedy_generate(tiny_backend, monkeypatch):
    from transformers import StaticCache

    prompts = prompt_ids(tiny_backend.tokenizer, shots=((), (SHOT,)))
    backend = _budget_backend(tiny_backend, batch_size=3, static_cache=True)
    caches = []
    generate = type(backend.model).generate

    def spy(model, **kwargs):  # the cache `generate` really used, not just the setting
        out = generate(model, **kwargs, return_dict_in_generate=True)
        caches.append((type(out.past_key_values), kwargs["input_ids"].shape[1],
                       out.past_key_values.layers[0].max_cache_len))
        return out.sequences

    monkeypatch.setattr(backend.model, "generate", lambda **kw: spy(backend.model, **kw))
    generations = backend.generate(prompts)
    monkeypatch.undo()
    assert len(caches) > 1 and all(issubclass(c, StaticCache) for c, _, _ in caches)
    # each batch's cache holds its prompts and new tokens (not the last, which is never attended to): `generate`
    # kept the longest it had made (the first batch's), and every shorter batch after it attended over that length
    assert [length for _, _, length in caches] == [width + 10 - 1 for _, width, _ in caches]
    assert len({width for _, width, _ in caches}) > 1
    for prompt, generation in zip(prompts, generations):
        assert generation.error is None and generation.token_ids == plain_greedy(tiny_backend, prompt)


def test_a_stop_id_that_is_no_special_token_stays_out_of_the_text(tiny_backend, monkeypatch):
    """A generation config may stop on an ordinary token (`?`): the text leaves it out, as vLLM's
    does, and as the documented "EOS not included" says; the token ids keep it."""
    question = tiny_backend.tokenizer.convert_tokens_to_ids("?")
    monkeypatch.setattr(tiny_backend, "eos_token_ids", [*tiny_backend.eos_token_ids, question])
    tokens = tiny_backend.tokenizer("<QUE> What is reported?", add_special_tokens=False)["input_ids"]
    assert tokens[-1] == question
    generation = tiny_backend._to_generation(3, [*tokens, 5, 6])
    assert generation.finished and generation.token_ids == tokens and generation.num_generated_tokens == len(tokens)
    assert generation.text == tiny_backend.tokenizer.decode(tokens[:-1], skip_special_tokens=True)
    assert not generation.text.endswith("?")


def test_max_model_len_beyond_the_models_context_is_refused(tiny_model_dir):
    """As vLLM refuses it: past `max_position_embeddings` rotary positions were never trained
    (a silent change of output) and learned ones fail with an `IndexError` per prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_ipt.cli import UsageError

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, max_position_embeddings=48)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = BackendConfig(str(tiny_model_dir), backend="transformers", max_model_len=256, max_new_tokens=10)
    with pytest.raises(UsageError, match=r"`max_model_len` 256 exceeds .*max_position_embeddings 48.*48 or less"):
        TransformersBackend.from_model(model, tokenizer, config)
    config = BackendConfig(str(tiny_model_dir), backend="transformers", max_model_len=48, max_new_tokens=10)
    assert TransformersBackend.from_model(model, tokenizer, config).config.max_model_len == 48
    # scaled rotary positions reach past max_position_embeddings: left alone
    scaled = AutoModelForCausalLM.from_pretrained(tiny_model_dir, max_position_embeddings=48,
                                                  rope_parameters={"rope_type": "linear", "factor": 8.0, "rope_theta": 10000.0})
    config = BackendConfig(str(tiny_model_dir), backend="transformers", max_model_len=256, max_new_tokens=10)
    assert TransformersBackend.from_model(scaled, tokenizer, config).config.max_model_len == 256


def test_sampling_restarts_from_the_seed_at_each_call(tiny_backend):
    """With `temperature` > 0 each call samples from `seed`: the same prompts give the same tokens
    in a second call and in a new backend (a resumed job), and the caller's RNG is untouched."""
    import torch

    config = BackendConfig(tiny_backend.config.model_name_or_path, backend="transformers", max_model_len=256,
                           max_new_tokens=10, batch_size=3, temperature=1.0, seed=3)
    prompts = prompt_ids(tiny_backend.tokenizer)
    backend = TransformersBackend.from_model(tiny_backend.model, tiny_backend.tokenizer, config)
    state = torch.get_rng_state()
    first = [g.token_ids for g in backend.generate(prompts)]
    assert torch.equal(torch.get_rng_state(), state)
    assert [g.token_ids for g in backend.generate(prompts)] == first
    again = TransformersBackend.from_model(tiny_backend.model, tiny_backend.tokenizer, config)
    assert [g.token_ids for g in again.generate(prompts)] == first
    other = TransformersBackend.from_model(tiny_backend.model, tiny_backend.tokenizer, replace(config, seed=4))
    assert [g.token_ids for g in other.generate(prompts)] != first  # it does sample


def test_a_device_torch_cannot_use_is_a_usage_error_before_the_model_loads(tiny_model_dir, monkeypatch, tmp_path,
                                                                           capsys):
    """``--device gpu`` (no torch device), ``cuda`` with no GPU, ``cuda:N`` past the visible GPUs were
    tracebacks from inside the model load; they are usage errors naming the device and the fix."""
    import torch

    import hf_ipt.backends.transformers as module
    from hf_ipt.augment_cli import main
    from hf_ipt.cli import UsageError

    def no_load(*args, **kwargs):
        raise AssertionError("the model loaded for a device it cannot use")

    monkeypatch.setattr(module, "load_causal_lm", no_load)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    bad = [("gpu", "`device` 'gpu' is not a torch device: use 'cpu', 'cuda' or 'cuda:N'"),
           (f"cuda:{gpus + 3}", f"`device` 'cuda:{gpus + 3}'")]
    if not gpus:
        bad.append(("cuda", "`device` 'cuda' asks for a GPU, but"))
    for device, message in bad:
        config = BackendConfig(str(tiny_model_dir), backend="transformers", max_model_len=256, max_new_tokens=8,
                               device=device)
        with pytest.raises(UsageError, match=re.escape(message)):
            load_backend(config)
    corpus = tmp_path / "c.txt"
    corpus.write_text("The company reported a profit.")
    with pytest.raises(SystemExit) as exit_:
        main(["--corpus", str(corpus), "--synthesizer", str(tiny_model_dir), "--backend", "transformers",
              "--device", "gpu", "--max_model_len", "256", "--max_new_tokens", "8", "--output_dir", str(tmp_path / "o")])
    assert exit_.value.code == 2
    assert "hf-ipt augment: error: `device` 'gpu' is not a torch device" in capsys.readouterr().err


def test_a_device_type_this_machine_lacks_is_a_usage_error_before_the_model_loads(tiny_model_dir, monkeypatch,
                                                                                   tmp_path, capsys):
    """``mps`` off a Mac, ``xpu``, ``hpu``, ``mtia``: torch parses them, and only `cuda` was checked, so the model
    load ended in a traceback. Any device type whose torch backend finds no device is refused, and so is
    ``meta`` (no weights); the CPU passes."""
    import torch

    import hf_ipt.backends.transformers as module
    from hf_ipt.augment_cli import main
    from hf_ipt.cli import UsageError

    def no_load(*args, **kwargs):
        raise AssertionError("the model loaded for a device it cannot use")

    monkeypatch.setattr(module, "load_causal_lm", no_load)
    backends = {"mps": torch.backends.mps, "xpu": torch.xpu, "mtia": torch.mtia}
    lacking = [kind for kind, backend in backends.items() if not backend.is_available()] + ["hpu", "xla"]  # no plugin
    for device in [*lacking, *(f"{kind}:0" for kind in lacking)]:
        kind = device.split(":")[0]
        with pytest.raises(UsageError, match=re.escape(f"`device` {device!r} needs torch's {kind} backend, but this "
                                                       f"torch finds no {kind} device here: use 'cpu'")):
            module.check_device(device)
    with pytest.raises(UsageError, match=r"`device` 'meta' holds no weights.*use 'cpu'"):
        module.check_device("meta")
    module.check_device("cpu")
    module.check_device("cpu:0")
    if not torch.backends.mps.is_available():
        corpus = tmp_path / "c.txt"
        corpus.write_text("The company reported a profit.")
        with pytest.raises(SystemExit) as exit_:
            main(["--corpus", str(corpus), "--synthesizer", str(tiny_model_dir), "--backend", "transformers",
                  "--device", "mps", "--max_model_len", "256", "--max_new_tokens", "8",
                  "--output_dir", str(tmp_path / "o")])
        assert exit_.value.code == 2
        assert "hf-ipt augment: error: `device` 'mps' needs torch's mps backend" in capsys.readouterr().err


def test_an_available_device_type_is_counted_by_its_backend(monkeypatch):
    """A device type is usable when its torch backend module says so (``torch.mps``, or one a plugin such as
    ``torch_npu`` registers); an index past its devices is refused, named with its type."""
    import types

    import torch

    import hf_ipt.backends.transformers as module
    from hf_ipt.cli import UsageError

    plugin = types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 2)
    monkeypatch.setattr(torch, "xpu", plugin)
    module.check_device("xpu:1")
    with pytest.raises(UsageError, match=re.escape("`device` 'xpu:2' names xpu device 2, but 2 are visible "
                                                   "(xpu:0 to xpu:1): use one of those")):
        module.check_device("xpu:2")
    assert module.device_count("xpu") == 2
    assert "'xpu'" in module.usable_devices() or torch.accelerator.current_accelerator() is None


def save_model_without_eos(out, tokenizer, model_eos: int | None):
    """The tiny Llama saved with a tokenizer that has no EOS token, and `model_eos` as the model's."""
    import copy

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=model_eos,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.eos_token = None
    tokenizer.save_pretrained(out)
    return out


def test_a_synthesizer_without_an_eos_token_is_refused_before_its_weights_load(tiny_tokenizer, tmp_path,
                                                                                monkeypatch, capsys):
    """Its tokenizer had no EOS and the model named none: a `ValueError` traceback once the weights had loaded
    (nothing could stop a completion). It is a usage error naming the model and what to set, before the weights
    load; a model whose generation config names an EOS still runs."""
    import transformers

    from hf_ipt.augment_cli import main
    from hf_ipt.cli import UsageError

    path = save_model_without_eos(tmp_path / "no_eos", tiny_tokenizer, model_eos=None)
    config = BackendConfig(str(path), backend="transformers", max_model_len=256, max_new_tokens=4, device="cpu")
    message = re.escape(f"the synthesizer {str(path)!r} has no EOS token") + r".*set \"eos_token\": \"</s>\""
    loaded = transformers.AutoModelForCausalLM.from_pretrained
    with monkeypatch.context() as patch:
        def no_load(*args, **kwargs):
            raise AssertionError("the weights loaded")

        patch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
        with pytest.raises(UsageError, match=message):
            load_backend(config)
        corpus = tmp_path / "c.txt"
        corpus.write_text("The company reported a profit.")
        with pytest.raises(SystemExit) as exit_:
            main(["--corpus", str(corpus), "--synthesizer", str(path), "--backend", "transformers",
                  "--max_model_len", "256", "--max_new_tokens", "4", "--output_dir", str(tmp_path / "o")])
        assert exit_.value.code == 2
        assert f"hf-ipt augment: error: the synthesizer {str(path)!r} has no EOS token" in capsys.readouterr().err
    model = loaded(path)
    with pytest.raises(UsageError, match=message):  # a model already in memory: checked as it is wrapped
        TransformersBackend.from_model(model, transformers.AutoTokenizer.from_pretrained(path), config)
    named = save_model_without_eos(tmp_path / "model_eos", tiny_tokenizer, model_eos=tiny_tokenizer.eos_token_id)
    backend = load_backend(replace(config, model_name_or_path=str(named)))
    assert backend.eos_token_ids == [tiny_tokenizer.eos_token_id]
    assert backend.generate(prompt_ids(backend.tokenizer, TEXTS[:1]))[0].error is None


def test_vllm_refuses_a_synthesizer_without_an_eos_token_before_its_engine_starts(tiny_tokenizer, tmp_path,
                                                                                   monkeypatch):
    """The vLLM backend reads the tokenizer the engine would load (its own, or `engine_kwargs`' ``tokenizer``)
    before the engine starts (a fake `vllm` fails the test if it does)."""
    import dataclasses

    import hf_ipt.backends.vllm as vllm_backend
    from hf_ipt.cli import UsageError

    class FakeLLM:
        def __init__(self, **kwargs):
            raise AssertionError("the engine started")

    fields = [("tokenizer", str | None, None), ("tokenizer_mode", str, "auto")]
    fake = {"LLM": FakeLLM, "EngineArgs": dataclasses.make_dataclass("EngineArgs", fields), "__version__": "0"}
    monkeypatch.setattr(vllm_backend, "_import_vllm", lambda: type("vllm", (), fake))
    path = save_model_without_eos(tmp_path / "no_eos", tiny_tokenizer, model_eos=None)
    with pytest.raises(UsageError, match=re.escape(f"the synthesizer {str(path)!r} has no EOS token")):
        vllm_backend.VLLMBackend(BackendConfig(str(path), backend="vllm"))
    tiny_tokenizer.save_pretrained(tmp_path / "tokenizer")  # one with an EOS: the engine starts
    with pytest.raises(AssertionError, match="the engine started"):
        vllm_backend.VLLMBackend(BackendConfig(str(path), backend="vllm",
                                               engine_kwargs={"tokenizer": str(tmp_path / "tokenizer")}))


def test_a_lora_adapter_as_synthesizer_is_refused_naming_the_merge_which_gives_a_model_that_loads(
    tiny_model_dir, tmp_path
):
    """`train_synthesizer.py --use_peft` saves an adapter; as `--synthesizer` it was refused as "a folder
    without a config.json", pointing at its checkpoints (adapters too), and the docs said it loads."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.cli import UsageError
    from hf_ipt.models import merge_adapter

    torch.manual_seed(0)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                          LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    adapter = str(tmp_path / "adapter")
    for make in (lambda: SynthesisConfig(synthesizer=adapter), lambda: BackendConfig(adapter, backend="vllm")):
        with pytest.raises(UsageError, match=rf"is a LoRA adapter .* merge_adapter\('{re.escape(adapter)}', "
                                             rf"'{re.escape(adapter)}-merged'\)"):
            make()
    merged = merge_adapter(adapter, f"{adapter}-merged", dtype="float32")
    backend = TransformersBackend(BackendConfig(merged, backend="transformers", device="cpu", max_new_tokens=4))
    ids = torch.tensor([encode_prompt(backend.tokenizer, build_prompt("The company reported a profit."))])
    with torch.no_grad():  # the merged weights compute what the base + adapter computed
        assert torch.allclose(backend.model(ids).logits, lora.eval()(ids).logits, atol=1e-4)
    with pytest.raises(UsageError, match="holds files already"):
        merge_adapter(adapter, merged)
