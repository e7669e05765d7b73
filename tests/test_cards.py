"""Card metadata as the Hub reads it: `huggingface_hub.ModelCard` parses the YAML of our model cards."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hf_ipt.training.card import CardInfo, render_model_card

CARD_ARGS = {"model_name": "tiny", "repo_id": "me/tiny", "tokens_seen": 8, "tokens_per_step": 4, "max_steps": 2,
             "hyperparameters": {"learning_rate": 1e-4}}


@pytest.mark.parametrize("adapter, library", [(False, "transformers"), (True, "peft")])
def test_model_card_metadata_names_library_task_base_model_and_datasets(adapter, library):
    from huggingface_hub import ModelCard

    info = CardInfo("continual_pt", base_model="meta-llama/Meta-Llama-3-8B", adapter=adapter,
                    datasets=["AdaptLLM/finance-tasks"])
    data = ModelCard(render_model_card(info, **CARD_ARGS)).data
    assert (data.library_name, data.base_model, data.datasets) == (library, info.base_model, info.datasets)
    # The Hub reads the task from the config's architectures, which an adapter repo does not have
    assert data.pipeline_tag == "text-generation"
    assert {"hf_ipt", "continual_pt"} <= set(data.tags)


def test_a_one_word_hub_model_is_the_base_model_and_a_local_folder_of_that_name_is_not(tmp_path, monkeypatch):
    """Models that predate owners (``gpt2``) are Hub ids too; `from_pretrained` loaded the name, so it is
    the Hub's unless a local folder has it. A folder's ``config.json`` naming a Hub model
    (``_name_or_path``) does not make the folder that model: it may hold a fine-tune of it."""
    from huggingface_hub import ModelCard

    from hf_ipt.training.card import is_hub_id

    monkeypatch.chdir(tmp_path)
    card = render_model_card(CardInfo("continual_pt", base_model="gpt2"), **CARD_ARGS)
    assert ModelCard(card).data.base_model == "gpt2"
    assert "**Base model:** [gpt2](https://huggingface.co/gpt2)\n" in card
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text('{"_name_or_path": "openai-community/gpt2"}')
    local = render_model_card(CardInfo("continual_pt", base_model="gpt2"), **CARD_ARGS)
    assert ModelCard(local).data.base_model is None and "**Base model:** `gpt2`\n" in local
    # the Hub's rules for ids (huggingface_hub.utils.validate_repo_id): not paths, not a--b, not x.git
    assert not any(map(is_hub_id, ["./gpt2", "~/models/x", "/models/x", "a/b/c", "a--b", "model.git", "org/x@v1"]))


def test_card_datasets_take_a_one_word_hub_id_only_pinned_to_a_commit(tmp_path, monkeypatch):
    """`check_data` pins the ids it finds on the Hub (``squad@<sha>``); a bare one-word name may be a
    folder not made yet (or read offline), and would link the card to another dataset."""
    from hf_ipt.training.trainer import hub_datasets

    monkeypatch.chdir(tmp_path)
    sha = "0123456789abcdef" * 2 + "01234567"
    assert hub_datasets(f"squad@{sha}", "news", "imdb@v1", "org/general", f"org/news@{sha}") == [
        "squad", "org/general", "org/news"]
    (tmp_path / "squad").mkdir()  # a local folder of that name wins
    assert hub_datasets(f"squad@{sha}", "squad") == []


def test_recipes_list_the_one_word_hub_dataset_they_pinned(tmp_path, monkeypatch):
    """The recipes' way to the card: `check_data` asks the Hub for ``imdb``'s commit, `hub_datasets` lists it."""
    import datasets
    from huggingface_hub import HfApi, constants

    from hf_ipt.training.checks import check_data
    from hf_ipt.training.config import ContinualPTConfig
    from hf_ipt.training.trainer import hub_datasets

    sha = "0123456789abcdef" * 2 + "01234567"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(HfApi, "dataset_info", lambda self, repo, revision=None: SimpleNamespace(sha=sha))
    monkeypatch.chdir(tmp_path)
    config = ContinualPTConfig(domain_dataset="imdb")
    check_data(config)
    assert config.domain_dataset == f"imdb@{sha}" and hub_datasets(config.domain_dataset) == ["imdb"]


def test_metadata_that_yaml_would_misread_reads_back_as_written(tmp_path, monkeypatch):
    """Written plain, ``- a: b`` is a mapping, ``- #x`` a comment, ``1984`` a number and ``yes`` a bool;
    the Hub wants strings."""
    from huggingface_hub import ModelCard

    monkeypatch.chdir(tmp_path)
    info = CardInfo("continual_pt", base_model="1984", datasets=["yes"])
    data = ModelCard(render_model_card(info, tags=["a: b", "#x", "2024", "hf_ipt"], **CARD_ARGS)).data
    assert (data.base_model, data.datasets) == ("1984", ["yes"])
    assert data.tags == ["hf_ipt", "instruction-pretraining", "continual_pt", "a: b", "#x", "2024"]


def test_a_base_model_from_a_cache_snapshot_folder_is_named_as_the_hub_model_at_that_commit():
    from huggingface_hub import ModelCard

    commit = "0123456789abcdef0123456789abcdef01234567"
    for path, repo in [(f"/home/me/.cache/huggingface/hub/models--meta-llama--Meta-Llama-3-8B/snapshots/{commit}/",
                        "meta-llama/Meta-Llama-3-8B"), (f"/shared/hub/models--gpt2/snapshots/{commit}", "gpt2")]:
        card = render_model_card(CardInfo("continual_pt", base_model=path, base_revision=commit), **CARD_ARGS)
        assert ModelCard(card).data.base_model == repo
        assert f"**Base model:** [{repo}](https://huggingface.co/{repo}/tree/{commit}) at revision `{commit}`" in card
    folder = render_model_card(CardInfo("continual_pt", base_model="/models/models--x/checkpoint-5"), **CARD_ARGS)
    assert ModelCard(folder).data.base_model is None and "**Base model:** `.../checkpoint-5`" in folder and "/models/" not in folder
