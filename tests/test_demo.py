"""`hf-ipt demo` end to end at reduced size, as README command 1 runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

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
