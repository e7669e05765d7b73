"""`recipes/mini_repro.py` (issue 9) end to end at toy size, as a user runs it, plus its pure parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hf_ipt.repro import MiniReproConfig, results_table, summarize

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          env=os.environ.copy(), check=False, timeout=1800)


def test_mini_repro_help():
    result = _run(["recipes/mini_repro.py", "--help"])
    assert result.returncode == 0, result.stderr[-3000:]
    for flag in ("--config", "--seeds", "--model_shape", "--augment_every", "--synthesizer", "--use_cpu"):
        assert flag in result.stdout
    assert "{templified,pairs}" not in result.stdout  # refused below: not offered
    refused = _run(["recipes/mini_repro.py", "--output", "pairs", "--output_dir", "/nonexistent/never-written"])
    assert refused.returncode == 2 and "trains on templified text" in refused.stderr, refused.stderr[-2000:]


def test_summarize_mean_and_sample_std():
    runs = [{"arm": arm, "seed": s, "scores": {"t": {"accuracy": v}, "u": {"accuracy": 50.0}}}
            for arm, values in (("vanilla", (20.0, 30.0, 40.0)), ("instruction", (30.0, 30.0, 30.0)))
            for s, v in enumerate(values)]
    summary = summarize(runs)
    assert summary["vanilla"]["t/accuracy"] == {"mean": 30.0, "std": 10.0, "n": 3}
    assert summary["instruction"]["t/accuracy"]["std"] == 0.0
    assert summary["vanilla"]["average"]["mean"] == 40.0  # mean over seeds of (t + u) / 2
    assert "| t/accuracy | 30.0 | 10.0 | 30.0 | 0.0 | +0.0 |" in results_table(summary)
    table = results_table(summary, chance={"t": 25.0, "u": 50.0})
    assert "| t/accuracy | 30.0 | 10.0 | 30.0 | 0.0 | +0.0 | 25.0 |" in table
    assert "| average | 40.0 | 5.0 | 40.0 | 0.0 | +0.0 | 37.5 |" in table and table.startswith("| task |")


def test_paired_differences_are_seed_by_seed():
    """The instruction arm 2 points above vanilla at every seed, while seeds move both arms by 20: the
    arms' stds (10) hide a difference the pairing shows exactly (std 0: no t); a noisier one gets its t."""
    from hf_ipt.repro import paired_differences

    runs = [{"arm": arm, "seed": s, "scores": {"t": {"accuracy": base + gain}}}
            for arm, gain in (("vanilla", 0.0), ("instruction", 2.0)) for s, base in enumerate((20.0, 30.0, 40.0))]
    paired = paired_differences(runs)
    assert paired["t/accuracy"] == {"mean": 2.0, "std": 0.0, "n": 3, "t": None}
    runs[-1]["scores"]["t"]["accuracy"] = 45.0  # instruction at seed 2: +5 (differences 2, 2, 5)
    paired = paired_differences(runs)["t/accuracy"]
    assert paired["mean"] == 3.0 and paired["std"] == pytest.approx(3 ** 0.5) and paired["t"] == pytest.approx(3.0)
    table = results_table(summarize(runs), {"t": 25.0}, paired_differences(runs))
    assert "| t/accuracy | 30.0 | 10.0 | 33.0 | 11.5 | +3.0 | 1.7 | +3.0 | 25.0 |" in table
    assert "| paired std | paired t | chance |" in table
    unpaired = paired_differences(runs[:4])  # vanilla seeds 0-2, instruction seed 0 only: one pair
    assert unpaired["t/accuracy"] == {"mean": 2.0, "std": None, "n": 1, "t": None}
    for run in runs:  # a metric every run has but vanilla's seed 1: paired over seeds 0 and 2, no KeyError
        if (run["arm"], run["seed"]) != ("vanilla", 1):
            run["scores"]["t"]["accuracy_calibrated"] = 60.0 if run["arm"] == "instruction" else 50.0
    assert paired_differences(runs)["t/accuracy_calibrated"] == {"mean": 10.0, "std": 0.0, "n": 2, "t": None}


def test_chance_levels_follow_each_items_options():
    from types import SimpleNamespace

    from hf_ipt.repro import chance_levels

    tasks = [SimpleNamespace(name="t", examples=[SimpleNamespace(options=o) for o in (["a", "b"], list("abcd"))])]
    assert chance_levels(tasks) == {"t": 37.5}  # (1/2 + 1/4) / 2


def test_averages_are_over_each_tasks_own_metric_and_calibrated_apart():
    runs = [{"arm": arm, "seed": 0, "scores": {"t": {"accuracy": 20.0, "accuracy_calibrated": 60.0},
                                               "u": {"accuracy": 30.0, "accuracy_calibrated": 40.0}}}
            for arm in ("vanilla", "instruction")]
    summary = summarize(runs)["vanilla"]
    assert summary["average"]["mean"] == 25.0 and summary["average_calibrated"]["mean"] == 50.0
    # one seed measures no spread: no std, not a std of 0
    assert summary["average"]["std"] is None
    assert "| t/accuracy | 20.0 | – | 20.0 | – | +0.0 |" in results_table(summarize(runs))
    assert "average_calibrated" not in summarize([{**r, "scores": {"t": {"accuracy": 1.0}}} for r in runs])["vanilla"]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="augment_every"):
        MiniReproConfig(augment_every=1)
    with pytest.raises(ValueError, match="seeds"):
        MiniReproConfig(seeds=[0, 0])


def test_augmented_rows_keep_the_texts_they_render(tmp_path):
    """The pretrain stream counts the augmented share of corpus documents by `doc_ids` (a model
    synthesizer's row renders a chain of 2-3 texts): the repro's augmented file must keep them."""
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.repro import prepare_data

    texts = [f"Sales of firm {i} rose because demand grew. Profits fell in quarter {i}." for i in range(8)]
    data = prepare_data(MiniReproConfig(augment_every=2), SynthesisConfig(), tmp_path, texts)
    rows = [json.loads(line) for line in Path(data["instruction"]["augmented_dataset"]).read_text().splitlines()]
    assert rows and all(r["text"] and r["doc_ids"] and isinstance(r["doc_ids"], list) for r in rows)
    assert data["instruction"]["augmented_fraction"] == 0.5


def _fake_stages(monkeypatch, train, corpus_texts) -> None:
    """`repro.run` with `train` and `corpus_texts` for the recipe and the corpus, and no tokenizer, synthesis
    or evaluation: one held-out task of two options."""
    from types import SimpleNamespace

    import hf_ipt.evaluation.heldout
    from hf_ipt import repro

    monkeypatch.setattr(repro, "corpus_texts", corpus_texts)
    monkeypatch.setattr(repro, "train_tokenizer", lambda texts, size, out: "tok")
    monkeypatch.setattr(repro, "prepare_data", lambda cfg, syn, work, texts: {"vanilla": {}, "instruction": {}})
    monkeypatch.setattr(repro, "train", train)
    monkeypatch.setattr(repro, "evaluate_model", lambda path, tasks, bs, device: {"t": {"accuracy": 25.0}})
    monkeypatch.setattr(hf_ipt.evaluation.heldout, "heldout_tasks",
                        lambda texts, seed, limit: [SimpleNamespace(name="t", examples=[SimpleNamespace(options="ab")])])


def test_run_cut_short_keeps_the_seeds_it_finished(tmp_path, monkeypatch):
    """A run stopped by a time limit (a GPU session) leaves the results of its finished seeds, marked partial."""
    from hf_ipt import repro
    from hf_ipt.augment import SynthesisConfig

    trained = []

    def train(config, recipe, cpu):
        if len(trained) == 2:  # vanilla and instruction of seed 0 done; seed 1 is cut off
            raise KeyboardInterrupt
        trained.append(config)

    _fake_stages(monkeypatch, train, lambda cfg: [f"text {i}." for i in range(20)])
    cfg = MiniReproConfig(output_dir=str(tmp_path), seeds=[0, 1, 2], use_cpu=True)
    with pytest.raises(KeyboardInterrupt):
        repro.run(cfg, SynthesisConfig())
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["complete"] is False
    assert {(r["arm"], r["seed"]) for r in results["runs"]} == {("vanilla", 0), ("instruction", 0)}
    assert (tmp_path / "results.md").read_text().startswith("PARTIAL: seeds [0] of [0, 1, 2] finished.")
    assert ("Caveat: the rule miner mined summarize and completion pairs, the kinds of the held-out tasks "
            "(headline, next sentence), so the instruction arm trained on questions of their kind; "
            "`--task_types nli,commonsense,paraphrase,word2text` leaves them out") in (tmp_path / "results.md").read_text()
    # a rerun that fails in its first seed left the earlier results, "complete", naming models it replaced
    trained.clear()
    trained.extend([None, None])  # cut off at once
    with pytest.raises(KeyboardInterrupt):
        repro.run(cfg, SynthesisConfig())
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "results.md").exists()
    config = yaml.safe_load(next(tmp_path.glob("*-seed0.yaml")).read_text())
    assert config["save_strategy"] == "no" and "save_steps" not in config  # no unused ~7 GB checkpoint a run


def test_a_repro_on_gpu_settings_without_a_gpu_is_refused_up_front(monkeypatch, tmp_path, capsys):
    """Without --use_cpu on a machine with no GPU, each run failed after the tokenizer and the synthesis."""
    import torch

    from hf_ipt import repro
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.cli import UsageError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _fake_stages(monkeypatch, lambda *a: pytest.fail("trained"), lambda cfg: pytest.fail("read the corpus"))
    with pytest.raises(UsageError, match=r"no GPU is visible here: pass --use_cpu true --bf16 false"):
        repro.run(MiniReproConfig(output_dir=str(tmp_path)), SynthesisConfig())
    import hf_ipt.training.trainer

    monkeypatch.setattr(hf_ipt.training.trainer, "cpu_has_native_bf16", lambda: False)
    repro.check_device(MiniReproConfig(use_cpu=True))  # bf16 emulated on this CPU: said, with the repro's flag
    assert "emulated, 15-20x slower than fp32: pass --bf16 false" in capsys.readouterr().out
    repro.check_device(MiniReproConfig(use_cpu=True, bf16=False))
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_mini_repro_end_to_end_toy(tmp_path):
    out = tmp_path / "repro"
    # The shipped GPU config, shrunk by CLI flags: 60 BBC articles, tiny shape, 2 steps, 3 seeds.
    # max_length 256: evaluation truncates prompts to it, and an option can take ~100 tokens here.
    result = _run(["recipes/mini_repro.py", "--config", "recipes/configs/mini_repro.yaml",
                   "--output_dir", str(out), "--max_docs", "60", "--heldout_every", "5", "--model_shape", "tiny",
                   "--vocab_size", "1000", "--max_steps", "2", "--max_length", "256",
                   "--per_device_train_batch_size", "2", "--warmup_steps", "0", "--shuffle_buffer_size", "16",
                   "--no_bf16", "--use_cpu", "true", "--eval_items", "4", "--eval_batch_size", "4",
                   "--seeds", "0", "1", "2"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    runs = {(r["arm"], r["seed"]) for r in results["runs"]}
    assert results["complete"] is True and not (out / "results.md").read_text().startswith("PARTIAL")
    assert runs == {(arm, seed) for arm in ("vanilla", "instruction") for seed in (0, 1, 2)}
    assert results["tokens_per_run"] == 2 * 2 * 256
    for arm in ("vanilla", "instruction"):
        assert results["summary"][arm]["average"]["n"] == 3
        assert set(results["summary"][arm]) == {f"{t}/{m}" for t in ("heldout_title", "heldout_next_sentence")
                                                for m in ("accuracy", "accuracy_calibrated")} | {
            "average", "average_calibrated"}
    table = (out / "results.md").read_text()
    assert "| task | vanilla mean | vanilla std | instruction mean | instruction std |" in table
    assert results["paired"]["average"]["n"] == 3 and "| paired std | paired t |" in table
    assert results["chance"] == {"heldout_title": 25.0, "heldout_next_sentence": 25.0}
    assert "| average |" in table and table in result.stdout + "\n"
    # Each run is a real pretrain.py checkpoint trained on its arm's data.
    config = (out / "instruction-seed0.yaml").read_text()
    assert "augmented_dataset:" in config and "augmented_fraction: 0.2" in config
    assert "augmented_dataset" not in (out / "vanilla-seed0.yaml").read_text()
    assert (out / "vanilla-seed2" / "model.safetensors").is_file()
    # The shipped config mines no pair of the held-out tasks' kinds (summarize, completion): no caveat, recorded.
    assert results["synthesis"]["task_types"] == "nli,commonsense,paraphrase,word2text"
    assert "Caveat" not in table and "note: the rule miner" not in result.stdout


def test_heldout_kinds_mined_names_the_miners_task_types_of_the_heldout_tasks():
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.repro import heldout_kinds_mined

    assert heldout_kinds_mined(SynthesisConfig()) == ["summarize", "completion"]
    assert heldout_kinds_mined(SynthesisConfig(task_types="nli,completion")) == ["completion"]
    assert heldout_kinds_mined(SynthesisConfig(task_types=["nli", "word2text"])) == []
    model = SynthesisConfig(synthesizer="org/synth", backend="transformers")
    assert heldout_kinds_mined(model) == []
    # the demo's general half is rule-mined with every task type when a model synthesizes (it takes no task_types)
    assert heldout_kinds_mined(model, general_mined=True) == ["summarize", "completion"]
    assert heldout_kinds_mined(SynthesisConfig(task_types="nli"), general_mined=True) == []


def test_the_caveat_names_task_types_that_leave_the_heldout_kinds_out(tmp_path):
    """With the miner mining the held-out kinds alone, the caveat suggested an empty `--task_types `."""
    from types import SimpleNamespace

    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.repro import write_results

    tasks = [SimpleNamespace(name="t", examples=[SimpleNamespace(options="ab")])]
    runs = [{"arm": arm, "seed": 0, "scores": {"t": {"accuracy": 50.0}}} for arm in ("vanilla", "instruction")]
    for types, suggested in (("summarize,completion", "nli,commonsense,paraphrase,word2text"),
                             ("nli,completion", "nli")):
        write_results(MiniReproConfig(output_dir=str(tmp_path)), SynthesisConfig(task_types=types), tmp_path, runs,
                      tasks)
        assert f"`--task_types {suggested}` leaves them out" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("name", ["max_docs", "eval_items", "per_device_train_batch_size", "eval_batch_size"])
def test_config_refuses_counts_below_one(name):
    """`max_docs` 0 read the whole corpus (0 meant "all"); `eval_items` 0 was a traceback at the start."""
    with pytest.raises(ValueError, match=f"`{name}` must be >= 1, got 0"):
        MiniReproConfig(**{name: 0})


def test_a_rerun_replaces_each_arms_earlier_folder_and_never_trains_into_a_foreign_one(tmp_path, monkeypatch):
    """A rerun into the same --output_dir trained each arm beside the checkpoints of the earlier run's:
    the recipe now refuses that fresh run (its checkpoints would mix with the earlier ones), so each arm's
    folder the repro wrote is replaced; a folder of that name it did not write is refused before any work."""
    import yaml

    from hf_ipt import repro
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.cli import UsageError, checkpoint_folders

    read = []

    def train(config, recipe, cpu):  # what recipes/pretrain.py does: refuses other checkpoints, writes its own
        folder = Path(yaml.safe_load(config.read_text())["output_dir"])
        assert not checkpoint_folders(str(folder)), f"{folder} holds an earlier run's checkpoints"
        (folder / "checkpoint-4").mkdir(parents=True)
        (folder / "model.safetensors").write_text("weights")

    def texts(cfg):
        read.append(cfg.output_dir)
        return [f"text {i}." for i in range(20)]

    _fake_stages(monkeypatch, train, texts)
    out = tmp_path / "out"
    cfg = MiniReproConfig(output_dir=str(out), seeds=[0, 1], use_cpu=True)
    repro.run(cfg, SynthesisConfig())
    (out / "vanilla-seed1" / "stale_adapter.safetensors").write_text("an earlier run's file")
    repro.run(cfg, SynthesisConfig())  # trains every arm afresh
    for arm in ("vanilla-seed0", "instruction-seed0", "vanilla-seed1", "instruction-seed1"):
        assert sorted(p.name for p in (out / arm).iterdir()) == [repro.ARM_MARKER, "checkpoint-4", "model.safetensors"]
    assert read == [str(out)] * 2

    mine = tmp_path / "mine"
    (mine / "instruction-seed1").mkdir(parents=True)
    (mine / "instruction-seed1" / "notes.txt").write_text("the user's notes")
    with pytest.raises(UsageError, match=r"instruction-seed1 holds files that no earlier `recipes/mini_repro.py` "
                                         r"run wrote, and the repro trains an arm into it: give another --output_dir"):
        repro.run(MiniReproConfig(output_dir=str(mine), seeds=[0, 1], use_cpu=True), SynthesisConfig())
    assert read == [str(out)] * 2  # refused before any work
    assert sorted(p.name for p in mine.iterdir()) == ["instruction-seed1"]
    assert (mine / "instruction-seed1" / "notes.txt").read_text() == "the user's notes"


def test_a_rerun_replaces_the_augmented_data_of_the_earlier_run(tmp_path):
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.repro import prepare_data

    texts = [f"Sales of firm {i} rose because demand grew. Profits fell in quarter {i}." for i in range(8)]
    prepare_data(MiniReproConfig(augment_every=2), SynthesisConfig(), tmp_path, texts)
    data = prepare_data(MiniReproConfig(augment_every=4), SynthesisConfig(), tmp_path, texts)
    assert len(Path(data["instruction"]["augmented_dataset"]).read_text().splitlines()) == 2
