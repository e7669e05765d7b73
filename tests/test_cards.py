"""Card metadata as the Hub reads it: `huggingface_hub.ModelCard` parses the YAML of our model cards."""

from __future__ import annotations

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
