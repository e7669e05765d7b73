"""Offline (conftest sets ``HF_HUB_OFFLINE=1``) or with no network, a command whose value needs the
Hub ends in one usage error (exit status 2) that names the value and the way on, not a traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from .test_publish import augment_output

TEXT = ("Revenue rose 5% because demand grew. However, costs fell. The company said profits doubled "
        "this year and the board approved a dividend.")


def usage_error(main, argv: list[str], capsys) -> str:
    """The one error line of `main(argv)`, which must exit like a parsing error."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_push_offline_says_the_hub_cannot_be_reached_and_how_to_go_on(tmp_path, capsys):
    from hf_ipt import publish_cli

    out = augment_output(tmp_path / "bbc")
    line = usage_error(publish_cli.main, ["--output_dir", str(out), "--repo_id", "org/x", "--token", "hf_x"], capsys)
    assert line.startswith("hf-ipt push: error: pushing to org/x needs the Hub, which cannot be reached (offline mode")
    assert "unset HF_HUB_OFFLINE" in line and f"copy {out} to a machine that reaches it" in line


def test_push_with_no_network_is_a_usage_error_after_the_retries(tmp_path, capsys, monkeypatch):
    import httpx2
    from huggingface_hub import HfApi, constants

    from hf_ipt import publish, publish_cli

    def no_network(*args, **kwargs):
        raise httpx2.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(publish, "BACKOFF_S", 0.0)
    monkeypatch.setattr(HfApi, "create_repo", no_network)
    out = augment_output(tmp_path / "bbc")
    line = usage_error(publish_cli.main, ["--output_dir", str(out), "--repo_id", "org/x", "--token", "hf_x"], capsys)
    assert "pushing to org/x needs the Hub, which cannot be reached (ConnectError: [Errno -2]" in line
    assert "check the network" in line


@pytest.mark.parametrize("command", ["augment", "synthesize"])
@pytest.mark.parametrize("corpus", ["org/news", "hf://datasets/org/news/*.jsonl"])
def test_a_hub_corpus_offline_names_the_corpus_and_the_fix(command, corpus, tmp_path, capsys):
    from hf_ipt import augment_cli, synthesize_cli

    main = {"augment": augment_cli.main, "synthesize": synthesize_cli.main}[command]
    line = usage_error(main, ["--corpus", corpus, "--output_dir", str(tmp_path / "out")], capsys)
    assert line.startswith(f"hf-ipt {command}: error: `corpus` {corpus!r} is read from the Hub, which cannot be "
                           "reached (offline mode")
    assert ("`hf download org/news --repo-type dataset`, into the Hugging Face cache, which is read offline; or "
            "with `--local-dir DIR`, then give that folder or its files as `corpus`" in line)


def test_a_hub_corpus_with_no_network_and_a_missing_local_path_keep_their_own_errors(tmp_path, capsys, monkeypatch):
    import datasets
    from huggingface_hub import constants

    from hf_ipt import augment_cli

    def no_network(*args, **kwargs):  # what datasets raises when the Hub does not answer
        raise ConnectionError("Couldn't reach 'org/news' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets, "load_dataset_builder", no_network)
    out = ["--output_dir", str(tmp_path / "out")]
    line = usage_error(augment_cli.main, ["--corpus", "org/news", *out], capsys)
    assert "`corpus` 'org/news' is read from the Hub, which cannot be reached (ConnectionError: Couldn't" in line
    assert "check the network" in line
    line = usage_error(augment_cli.main, ["--corpus", "./data/news", *out], capsys)
    assert "`corpus` './data/news': no such local file or folder" in line


def test_a_hub_model_offline_names_the_model_and_the_fix(tmp_path, capsys, monkeypatch):
    from hf_ipt import augment_cli
    from hf_ipt.evaluation.cli import main as eval_main

    (tmp_path / "task.json").write_text(json.dumps({"metric": "accuracy", "examples": [
        {"input": "Up or down?", "options": ["up", "down"], "gold_index": 1}]}))
    line = usage_error(eval_main, ["--model_name_or_path", "org/nonexistent", "--tasks", str(tmp_path / "task.json"),
                                   "--device", "cpu"], capsys)
    assert line.startswith("hf-ipt eval: error: model 'org/nonexistent' is loaded from the Hub, which cannot be "
                           "reached (offline mode")  # an org/name id with nothing like it here: no note of folders
    assert "`hf download org/nonexistent`" in line
    # a folder mistyped reads as a Hub id: the error said nothing of folders
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    line = usage_error(eval_main, ["--model", "my-modle", "--tasks", str(tmp_path / "task.json"), "--device", "cpu"],
                       capsys)
    assert "model 'my-modle' is loaded from the Hub (no local folder 'my-modle' here (did you mean 'my-model'?))" \
        in line
    (tmp_path / "runs" / "model").mkdir(parents=True)
    line = usage_error(eval_main, ["--model", "runs/modle", "--tasks", str(tmp_path / "task.json"), "--device", "cpu"],
                       capsys)
    assert "'runs/modle': no such local folder (did you mean 'runs/model'?)" in line  # `check_model_path`
    (tmp_path / "news.jsonl").write_text(json.dumps({"text": TEXT}) + "\n")
    line = usage_error(augment_cli.main, ["--corpus", str(tmp_path / "news.jsonl"), "--synthesizer", "org/model",
                                          "--backend", "transformers", "--output_dir", str(tmp_path / "out")], capsys)
    assert line.startswith("hf-ipt augment: error: model 'org/model' is loaded from the Hub, which cannot be reached")


def test_a_recipes_hub_model_or_tokenizer_offline_is_one_usage_error(tiny_model_dir):
    """The recipes' model and tokenizer loads gave transformers' 88-line `OSError` traceback offline (the shipped
    configs name meta-llama/Meta-Llama-3-8B and Mistral-7B), where their data sources and every command said
    one line with the way on."""
    from trl import ModelConfig

    from hf_ipt.cli import UsageError
    from hf_ipt.training.model_init import load_model, load_tokenizer

    with pytest.raises(UsageError, match=r"^tokenizer 'org/absent' is loaded from the Hub, which cannot be reached "
                                         r"\(offline mode.*`hf download org/absent`"):
        load_tokenizer("org/absent")
    with pytest.raises(UsageError, match=r"^model 'org/absent' is loaded from the Hub, which cannot be reached"):
        load_model(ModelConfig(model_name_or_path="org/absent", dtype="float32"))
    assert load_tokenizer(str(tiny_model_dir)).eos_token_id is not None  # a local folder loads as before


def test_a_cached_hub_model_still_loads_offline(tiny_model_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hf_ipt.models import load_causal_lm

    commit = "c" * 40
    folder = tmp_path / "models--org--tiny"
    shutil.copytree(tiny_model_dir, folder / "snapshots" / commit)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    model, tokenizer = load_causal_lm("org/tiny", dtype="float32")
    assert model.config.num_hidden_layers == 2 and tokenizer.eos_token == "</s>"


def test_demo_push_offline_is_refused_before_any_work(tmp_path):
    from hf_ipt.cli import UsageError
    from hf_ipt.demo import DemoConfig

    out = tmp_path / "demo"
    with pytest.raises(UsageError) as error:  # at parse time, not after synthesis and training
        DemoConfig(push=True, hub_dataset_id="org/d", hub_model_id="org/m", output_dir=str(out))
    assert str(error.value).startswith("--push needs the Hub, which cannot be reached (offline mode")
    assert f"hf-ipt push --output_dir {out / 'augmented'} --repo_id org/d --config_name demo" in str(error.value)


@pytest.mark.parametrize("corpus, name", [("news.jsonl.gz", "news"), ("/data/finance/x.jsonl.zst", "x"),
                                          ("a.txt.bz2", "a"), ("news.jsonl", "news"), ("org/pubmed", "pubmed")])
def test_a_compressed_corpus_gets_the_config_name_of_its_uncompressed_file(corpus, name):
    from hf_ipt.publish import config_name_for

    assert config_name_for(corpus) == name


def test_the_builder_offline_names_the_hub_corpus_and_the_fix(tmp_path, caplog):
    import datasets

    from hf_ipt.cli import HubUnreachableError

    with pytest.raises(HubUnreachableError, match=r"`corpus` 'org/news' is read from the Hub, which cannot be "
                       r"reached \(offline mode.*`hf download org/news --repo-type dataset`, into the Hugging Face cache"):
        datasets.load_dataset("hf_ipt/augmented", corpus="org/news", streaming=True, cache_dir=str(tmp_path))
    assert "could not list the files" not in caplog.text  # no warning about a cache key never used


def test_the_papers_tasks_offline_name_the_repo_and_data_dir(tmp_path, capsys):
    from hf_ipt.evaluation.cli import main as eval_main

    line = usage_error(eval_main, ["--model_name_or_path", "org/model", "--tasks", "finance/FPB", "--device", "cpu"],
                       capsys)
    assert line.startswith("hf-ipt eval: error: --tasks 'finance/FPB': task 'FPB' is read from the Hub "
                           "(AdaptLLM/finance-tasks), which cannot be reached (offline mode")
    assert ("`hf download AdaptLLM/finance-tasks --repo-type dataset`, into the Hugging Face cache, which is read "
            "offline; or with `--local-dir DIR`, then give that folder as `data_dir` (--data_dir DIR)" in line)


def test_a_hub_dataset_source_with_no_network_stops_a_recipe_before_its_model_loads(monkeypatch):
    """With no network, a Hub dataset id source was left unpinned with a warning, and the run failed once
    `datasets` began to stream it, after the model had loaded."""
    import datasets
    import huggingface_hub
    from huggingface_hub import constants

    from hf_ipt.cli import HubUnreachableError
    from hf_ipt.training.checks import check_data
    from hf_ipt.training.config import ContinualPTConfig

    def no_network(*args, **kwargs):
        raise ConnectionError("Failed to establish a new connection")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", no_network)
    with pytest.raises(HubUnreachableError) as error:
        check_data(ContinualPTConfig(domain_dataset="org/news"))
    assert str(error.value) == (
        "--domain_dataset 'org/news' is read from the Hub, which cannot be reached (ConnectionError: Failed to "
        "establish a new connection): check the network (the Hub is https://huggingface.co, HF_ENDPOINT) or run "
        "where the Hub is reachable, or download it there (`hf download org/news --repo-type dataset`, into the "
        "Hugging Face cache, which is read offline; or with `--local-dir DIR`, then give that folder or its files "
        "as `--domain_dataset`); if it is in the Hugging Face cache already, set HF_HUB_OFFLINE=1 to read it from "
        "there"
    )
