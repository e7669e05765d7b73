"""The synthesizer is prompted with the token ids it was trained on.

The released synthesizer (a Mistral-7B fine-tune) ships a tokenizer.json whose normalizer
prepends "▁" to every piece of text between special tokens, so ``<s> <CON>`` starts with two
"▁". transformers 5 builds `LlamaTokenizer`'s pipeline in code (a Metaspace pre-tokenizer) and
encodes that start, and any text that starts with a space, with other ids. `tokenizers` reading
the file is the reference: it is what transformers 4, which trained the synthesizer, ran.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer

from hf_ipt.protocol import build_prompt, encode_prompt, format_shot

from .conftest import SYNTH_PAIRS, train_tiny_tokenizer

PROMPTS = [
    build_prompt("The company reported a profit of $1.13bn."),
    build_prompt(" Sales fell  by 3.5%.\nShares dropped.", [("Analysts said the market fell.", SYNTH_PAIRS)]),
    format_shot("Energy prices rose.", SYNTH_PAIRS) + build_prompt("Interest rates"),
    " a text that starts with a space",
]


def shipped_ids(folder) -> list[list[int]]:
    shipped = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return [shipped.encode(prompt, add_special_tokens=False).ids for prompt in PROMPTS]


def test_a_mistral_style_tokenizer_encodes_prompts_as_its_tokenizer_json(mistral_style_model_dir):
    from hf_ipt.models import pretrained_tokenizer

    tokenizer = pretrained_tokenizer(str(mistral_style_model_dir))
    assert [encode_prompt(tokenizer, prompt) for prompt in PROMPTS] == shipped_ids(mistral_style_model_dir)
    bos = tokenizer.convert_tokens_to_ids("<s>")
    pieces = tokenizer.convert_ids_to_tokens(encode_prompt(tokenizer, PROMPTS[0]))
    assert pieces[0] == "<s>" and "".join(pieces[1:]).startswith("▁▁<CON>▁The")  # the prepended ▁ + the space
    assert encode_prompt(tokenizer, PROMPTS[2]).count(bos) == 2  # each shot's <s> is one BOS token
    assert tokenizer.decode(encode_prompt(tokenizer, PROMPTS[1])) == PROMPTS[1].replace("<s> ", "<s>  ")


def test_every_loader_of_a_synthesizer_or_base_tokenizer_keeps_the_shipped_pipeline(mistral_style_model_dir):
    """The transformers backend, the vLLM backend's prompt encoder and the training recipes."""
    from hf_ipt.backends import BackendConfig
    from hf_ipt.backends.transformers import TransformersBackend
    from hf_ipt.backends.vllm import prompt_tokenizer
    from hf_ipt.training.model_init import load_tokenizer

    folder = str(mistral_style_model_dir)
    expected = shipped_ids(mistral_style_model_dir)
    tokenizers = {
        "transformers": TransformersBackend(BackendConfig(folder, backend="transformers", device="cpu")).tokenizer,
        "vllm": prompt_tokenizer(BackendConfig(folder, backend="vllm")),
        "training": load_tokenizer(folder),
    }
    for name, tokenizer in tokenizers.items():
        assert [encode_prompt(tokenizer, prompt) for prompt in PROMPTS] == expected, name


def test_from_model_gives_a_loaded_tokenizer_its_shipped_pipeline(mistral_style_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_ipt.backends import BackendConfig
    from hf_ipt.backends.transformers import TransformersBackend

    folder = str(mistral_style_model_dir)
    model = AutoModelForCausalLM.from_pretrained(folder)
    backend = TransformersBackend.from_model(model, AutoTokenizer.from_pretrained(folder),
                                             BackendConfig(folder, backend="transformers"))
    assert [encode_prompt(backend.tokenizer, p) for p in PROMPTS] == shipped_ids(mistral_style_model_dir)


def test_a_tokenizer_transformers_reads_as_shipped_is_left_as_it_is(tmp_path):
    from transformers import AutoTokenizer

    from hf_ipt.models import keep_shipped_pipeline

    train_tiny_tokenizer().save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    before = tokenizer.backend_tokenizer.to_str()
    assert keep_shipped_pipeline(tokenizer, str(tmp_path)) == []
    assert tokenizer.backend_tokenizer.to_str() == before
    assert keep_shipped_pipeline(tokenizer, str(tmp_path / "no_such_folder")) == []


def test_a_pipeline_transformers_builds_on_purpose_is_left_as_built(tmp_path, mistral_style_model_dir):
    """`add_prefix_space` (a GPT-2 tokenizer_config.json, or a Llama kwarg) changes the pipeline in transformers
    4 and 5 alike: it was undone, back to the file's."""
    import json

    from transformers import AutoTokenizer

    from hf_ipt.models import pretrained_tokenizer

    train_tiny_tokenizer().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "GPT2Tokenizer",
                                                                "add_prefix_space": True}))
    gpt2 = AutoTokenizer.from_pretrained(tmp_path)
    assert pretrained_tokenizer(str(tmp_path)).tokenize("Hello world") == gpt2.tokenize("Hello world")
    folder = str(mistral_style_model_dir)
    built = AutoTokenizer.from_pretrained(folder, add_prefix_space=False)
    ours = pretrained_tokenizer(folder, add_prefix_space=False)
    assert ours.backend_tokenizer.to_str() == built.backend_tokenizer.to_str()


def test_from_model_refuses_a_device_or_dtype_the_model_does_not_have(mistral_style_model_dir):
    """`from_model` neither moves nor casts the model: such a setting was ignored silently."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_ipt.backends import BackendConfig
    from hf_ipt.backends.transformers import TransformersBackend

    folder = str(mistral_style_model_dir)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    with pytest.raises(ValueError, match=r"`dtype` 'bfloat16' in the config, but the model given is in float32"):
        TransformersBackend.from_model(model, tokenizer, BackendConfig(folder, backend="transformers",
                                                                       dtype="bfloat16"))
    with pytest.raises(ValueError, match=r"`device` 'meta' in the config, but the model given is on 'cpu'"):
        TransformersBackend.from_model(model, tokenizer, BackendConfig(folder, backend="transformers",
                                                                       device="meta"))
    TransformersBackend.from_model(model.to(torch.bfloat16), tokenizer, BackendConfig(
        folder, backend="transformers", dtype="bfloat16", device="cpu"))


def test_a_lora_adapter_folder_loads_with_its_base_models_tokenizer(mistral_style_model_dir, tmp_path):
    """`hf-ipt eval --model ADAPTER` (documented): `PeftModel.save_pretrained` writes no tokenizer, and the
    load failed asking for sentencepiece; the base's tokenizer, with its shipped pipeline, is taken."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from hf_ipt.cli import UsageError
    from hf_ipt.models import load_causal_lm

    base = AutoModelForCausalLM.from_pretrained(str(mistral_style_model_dir))
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "adapter")
    model, tokenizer = load_causal_lm(str(tmp_path / "adapter"), dtype="float32")
    assert getattr(model, "peft_config", None)  # the base model with the adapter loaded into it
    assert [encode_prompt(tokenizer, p) for p in PROMPTS] == shipped_ids(mistral_style_model_dir)
    config = tmp_path / "adapter" / "adapter_config.json"
    config.write_text(config.read_text().replace(str(mistral_style_model_dir), ""))
    with pytest.raises(UsageError, match=r"a LoRA adapter with no tokenizer and no base_model_name_or_path"):
        load_causal_lm(str(tmp_path / "adapter"), dtype="float32")


def test_a_saved_checkpoints_tokenizer_loads_as_the_model_card_says_with_the_training_ids(
    mistral_style_model_dir, tmp_path
):
    """The recipes save the tokenizer they trained with; the card's `PreTrainedTokenizerFast` reads that
    tokenizer.json as saved, where `AutoTokenizer` would rebuild it (the card said `AutoTokenizer`)."""
    from importlib import resources

    from transformers import PreTrainedTokenizerFast

    from hf_ipt.models import pretrained_tokenizer

    pretrained_tokenizer(str(mistral_style_model_dir)).save_pretrained(tmp_path)
    reloaded = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert [encode_prompt(reloaded, p) for p in PROMPTS] == shipped_ids(mistral_style_model_dir)
    card = resources.files("hf_ipt").joinpath("templates/model_card.md").read_text()
    assert 'tokenizer = PreTrainedTokenizerFast.from_pretrained("$repo_id")' in card
