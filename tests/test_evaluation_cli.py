"""`hf-ipt eval`, the training callback and the lm-evaluation-harness bridge, end to end."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainerCallback

HUB_FILES = {  # a few files of AdaptLLM/{finance,medicine}-tasks, in the Hub's layout
    "FPB/test.json": [
        {
            "input": "Sales fell by 3.5%. Sentiment:",
            "options": ["negative", "neutral", "positive"],
            "gold_index": 0,
        },
        {
            "input": "The company reported a profit. Sentiment:",
            "options": ["negative", "neutral", "positive"],
            "gold_index": 2,
        },
    ],
    "ConviFinQA/test.json": [{"input": "Profit was 42. What was the profit?", "label": ["42"]}],
    "pubmed_qa/test.json": [
        {
            "input": "Does aspirin thin blood? Answer:",
            "options": ["yes", "no", "maybe"],
            "gold_index": 0,
        }
    ],
    "usmle/test.json": [
        {
            "input": "A patient has fever. Diagnosis:",
            "options": ["flu", "cold", "none"],
            "gold_index": 0,
        }
    ],
}


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    for rel, rows in HUB_FILES.items():
        path = tmp_path / "tasks" / rel
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(rows))
    return tmp_path / "tasks"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- CLI ----------------------------------------------------------------------------------
def test_cli_evaluates_a_checkpoint_and_writes_json_and_markdown(
    tiny_model_dir, hub_dir, tmp_path, capsys
):
    from hf_ipt.evaluation import Example, Task, save_task_file
    from hf_ipt.evaluation.cli import main

    mine = save_task_file(
        Task("mine", "micro_f1", [Example("Up or down?", ["up", "down"], 1)]),
        tmp_path / "mine.json",
    )
    out = tmp_path / "results"
    argv = [
        "--model",
        str(tiny_model_dir),
        "--tasks",
        f"finance/FPB,finance/ConvFinQA,medicine/USMLE,{mine}",
        "--data_dir",
        str(hub_dir),
        "--output_dir",
        str(out),
        "--max_examples",
        "2",
        "--batch_size",
        "3",
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["FPB", "ConvFinQA", "USMLE", "mine"]
    assert results["USMLE"].keys() == {"accuracy"} and results["FPB"].keys() == {"weighted_f1"}
    # The very scores `evaluate` gives in process for the same model, tasks and settings.
    from hf_ipt.evaluation import evaluate
    from hf_ipt.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
    expected = evaluate(
        model,
        tokenizer,
        f"finance/FPB,finance/ConvFinQA,medicine/USMLE,{mine}".split(","),
        batch_size=3,
        max_examples=2,
        data_dir=hub_dir,
        progress=False,
    )
    assert list(expected) == list(results)
    for name, scores in expected.items():
        assert results[name] == pytest.approx(scores), name
    table = (out / "results.md").read_text()
    # each paper domain averaged on its own (the paper reports them apart); the task file in none
    finance = (results["FPB"]["weighted_f1"] + results["ConvFinQA"]["numeric_match"]) / 2
    assert table.startswith("| Task | Metric | Score |") and f"| **Finance average** | | **{finance:.2f}** |" in table
    assert "**Medicine average**" not in table and "**Average**" not in table  # one task: no average row
    assert table in capsys.readouterr().out


def test_cli_rejects_bad_values(capsys):
    from hf_ipt.evaluation.cli import main

    with pytest.raises(SystemExit) as exit_:  # a usage error, not a traceback
        main(["--model", "x", "--batch_size", "0"])
    assert exit_.value.code == 2 and "`batch_size` must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # refused by the parser, not by the offline task lookup after it
        main(["--model", "x", "--add_bos", "sometimes"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--add_bos" in err and "'sometimes'" in err and "Hub" not in err


def test_cli_keeps_the_domain_results_when_the_general_benchmarks_fail(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    from hf_ipt.evaluation import Example, Task, lm_eval_bridge, save_task_file
    from hf_ipt.evaluation.cli import main

    def offline(*args, **kwargs):
        raise ConnectionError("the Hub cannot be reached")

    monkeypatch.setattr(lm_eval_bridge, "run_lm_eval", offline)
    mine = save_task_file(
        Task("mine", "accuracy", [Example("Up or down?", ["up", "down"], 1)]), tmp_path / "mine.json"
    )
    out = tmp_path / "results"
    argv = ["--model", str(tiny_model_dir), "--tasks", f"{mine},general", "--output_dir", str(out)]
    with pytest.raises(ConnectionError):
        main([*argv, "--device", "cpu", "--dtype", "float32"])
    assert list(json.loads((out / "results.json").read_text())) == ["mine"]
    captured = capsys.readouterr()
    assert (out / "results.md").read_text() in captured.out
    assert f"the domain results are printed above and in {out}" in captured.err


def test_domain_tasks_and_general_benchmarks_are_averaged_apart(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """The paper reports the domain average and the general one apart; one row over both mixed
    (40 + 9 x 25) / 10."""
    from hf_ipt.evaluation import Example, Task, lm_eval_bridge, save_task_file
    from hf_ipt.evaluation.cli import main

    monkeypatch.setattr(lm_eval_bridge, "require_lm_eval", lambda: None)
    monkeypatch.setattr(lm_eval_bridge, "run_lm_eval",
                        lambda *a, **k: {"boolq": {"acc": 20.0}, "piqa": {"acc_norm": 30.0}})
    tasks = [save_task_file(Task(name, "accuracy", [Example("Up or down?", ["up", "down"], gold)]),
                            tmp_path / f"{name}.json") for name, gold in (("one", 0), ("two", 1))]
    argv = ["--model", str(tiny_model_dir), "--tasks", f"{tasks[0]},{tasks[1]},general", "--output_dir",
            str(tmp_path / "out"), "--device", "cpu", "--dtype", "float32"]
    assert main(argv) == 0
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| **Domain average** | | **50.00** |" in table and "| **General average** | | **25.00** |" in table
    assert "| **Average**" not in table
    clash = save_task_file(Task("boolq", "accuracy", [Example("Up?", ["up", "down"], 0)]), tmp_path / "boolq.json")
    with pytest.raises(SystemExit) as exit_:  # its score would be replaced by the benchmark's
        main(["--model", str(tiny_model_dir), "--tasks", f"{clash},general"])
    assert exit_.value.code == 2 and "domain task 'boolq' has the name of a general benchmark" in capsys.readouterr().err


def test_cli_checks_that_the_general_benchmarks_can_run_before_the_domain_tasks(
    tmp_path, capsys, monkeypatch
):
    from hf_ipt.evaluation import Example, Task, save_task_file
    from hf_ipt.evaluation.cli import main

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # lm-evaluation-harness not installed
    mine = save_task_file(
        Task("mine", "accuracy", [Example("Up or down?", ["up", "down"], 1)]), tmp_path / "mine.json"
    )
    with pytest.raises(SystemExit) as exit_:  # before the model loads (there is none here)
        main(["--model", "nobody/no-model", "--tasks", f"{mine},general"])
    assert exit_.value.code == 2 and "pip install 'lm-eval>=0.4.8', hf_ipt's `lmeval` extra" in capsys.readouterr().err


@pytest.mark.parametrize("tasks", [",", " , ", ""])
def test_cli_refuses_a_task_list_that_names_no_task(tasks, capsys):
    from hf_ipt.evaluation.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--model", "x", "--tasks", tasks])
    assert exit_.value.code == 2 and f"`tasks` names no task, got {tasks!r}" in capsys.readouterr().err


def test_cli_rejects_an_unknown_dtype_at_parse_time_listing_the_choices(capsys):
    from hf_ipt.evaluation.cli import main

    with pytest.raises(SystemExit):
        main(["--model", "x", "--dtype", "bf16"])  # not an AttributeError from getattr(torch, "bf16")
    err = capsys.readouterr().err
    assert "--dtype" in err and "'bf16'" in err
    assert all(f"'{choice}'" in err for choice in ("auto", "bfloat16", "float16", "float32"))
    from hf_ipt.evaluation.cli import EvalScriptArguments

    with pytest.raises(ValueError, match="`dtype` must be one of auto, bfloat16, float16, float32, got 'bf16'"):
        EvalScriptArguments(model_name_or_path="x", dtype="bf16")


def test_cli_help_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "hf_ipt.evaluation.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for flag in (
        "--model",
        "--tasks",
        "--output_dir",
        "--batch_size",
        "--max_examples",
        "--device",
    ):
        assert flag in proc.stdout


# --- EvalCallback ----------------------------------------------------------------------------
class Recorder(TrainerCallback):
    """Stands in for a `report_to` integration: those are callbacks fed by `on_log`."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def _trainer(tiny_model_dir, output_dir: Path, recorder, **extra):
    import datasets
    from transformers import Trainer, TrainingArguments

    from hf_ipt.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
    ids = tokenizer("The company reported a profit of $1.13bn in the third quarter.").input_ids
    data = datasets.Dataset.from_dict({"input_ids": [ids] * 4, "labels": [ids] * 4})
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        **extra,
    )
    kwargs = {"eval_dataset": data} if "eval_strategy" in extra else {}
    return Trainer(
        model=model, args=args, train_dataset=data, callbacks=[recorder], **kwargs
    ), tokenizer


def test_eval_callback_logs_through_the_trainer_every_eval_steps_and_at_train_end(
    tiny_model_dir, hub_dir, tmp_path
):
    from hf_ipt.evaluation import EvalCallback
    from hf_ipt.evaluation.callback import RESULTS_FILENAME

    recorder = Recorder()
    trainer, tokenizer = _trainer(tiny_model_dir, tmp_path / "out", recorder)
    callback = EvalCallback(
        "finance/FPB,finance/ConvFinQA",
        tokenizer,
        eval_steps=2,
        max_examples=1,
        data_dir=hub_dir,
        trainer=trainer,
    )
    trainer.add_callback(callback)
    trainer.train()
    # step 2 (eval_steps) and step 3 (train end), as seen by a report_to integration
    reported = [log for log in recorder.logs if "eval_FPB_weighted_f1" in log]
    assert len(reported) == 2
    assert {"eval_ConvFinQA_numeric_match", "eval_domain_average"} <= reported[0].keys()
    steps = [h["step"] for h in trainer.state.log_history if "eval_FPB_weighted_f1" in h]
    assert steps == [2, 3]  # in log_history, so in trainer_state.json
    record = json.loads((tmp_path / "out" / RESULTS_FILENAME).read_text())
    assert record["global_step"] == 3 and list(record["results"]) == ["FPB", "ConvFinQA"]
    # what the scores depend on: 1 example of each task (max_examples), not FPB's 2
    assert record["settings"] == {"examples": {"FPB": 1, "ConvFinQA": 1}, "add_bos": True, "max_length": 4096,
                                  "task_sizes": {"FPB": 2, "ConvFinQA": 1}, "max_examples": 1}
    assert [h["step"] for h in record["history"]] == [2, 3]
    assert record["average"] == pytest.approx(reported[-1]["eval_domain_average"])


def test_eval_callback_follows_trainer_evaluation_and_warns_without_trainer(
    tiny_model_dir, hub_dir, tmp_path, caplog
):
    from hf_ipt.evaluation import EvalCallback, Task, load_tasks

    recorder = Recorder()
    trainer, tokenizer = _trainer(
        tiny_model_dir, tmp_path / "out", recorder, eval_strategy="steps", eval_steps=2
    )
    tasks = load_tasks("medicine/PubMedQA", data_dir=hub_dir)
    assert isinstance(tasks[0], Task)
    trainer.add_callback(EvalCallback(tasks, tokenizer))
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert "pass EvalCallback(..., trainer=trainer)" in caplog.text
    steps = [h["step"] for h in trainer.state.log_history if "eval_PubMedQA_accuracy" in h]
    assert steps == [2, 3]  # on_evaluate at step 2, then train end
    assert not any("eval_PubMedQA_accuracy" in log for log in recorder.logs)
    for steps in (0, 2.5, 0.1, True):  # 2.5 evaluated at steps 5 and 10 only; 0.1 is TrainingArguments' fraction
        with pytest.raises(ValueError, match="`eval_steps` must be an integer >= 1 or None, got"):
            EvalCallback(tasks, tokenizer, eval_steps=steps)


def test_a_resumed_run_keeps_the_evaluations_before_its_checkpoint_in_the_results_file(tiny_model_dir, tmp_path):
    """The results file's history used to restart empty on a resume, losing the earlier evaluations."""
    import datasets
    from transformers import Trainer, TrainingArguments

    from hf_ipt.evaluation import EvalCallback, Example, Task
    from hf_ipt.evaluation.callback import RESULTS_FILENAME
    from hf_ipt.models import load_causal_lm

    task = Task("TinyQA", "accuracy", [Example("Profit rose. Up? Answer:", ["yes", "no"], 0)])

    def train(resume: str | None = None) -> None:
        model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
        ids = tokenizer("The company reported a profit of $1.13bn in the third quarter.").input_ids
        data = datasets.Dataset.from_dict({"input_ids": [ids] * 8, "labels": [ids] * 8})
        args = TrainingArguments(
            output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=2, save_steps=2,
            report_to="none", use_cpu=True, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=data)
        trainer.add_callback(EvalCallback([task], tokenizer, eval_steps=1, trainer=trainer))
        trainer.train(resume_from_checkpoint=resume)

    def history() -> list[int]:
        return [h["step"] for h in json.loads((tmp_path / RESULTS_FILENAME).read_text())["history"]]

    train()
    assert history() == [1, 2, 3, 4]
    train(resume=str(tmp_path / "checkpoint-2"))
    assert history() == [1, 2, 3, 4]  # 1, 2 from before the checkpoint; 3, 4 evaluated again


def _sharded_tasks():
    from hf_ipt.evaluation import Example, Task

    profit = [f"Profit of unit {i} rose {i}%. Up?" for i in range(5)]
    calibrated = Task("Updown", "accuracy", [
        Example(f"{p} Answer:", ["yes", "no"], i % 2, null_prompt=f"Up {i}? Answer:") for i, p in enumerate(profit)])
    numbers = Task("Numbers", "numeric_match", [
        Example(f"Profit was {i}. What was the profit?", references=[str(i)]) for i in range(3)])
    single = Task("Single", "weighted_f1", [Example("Sales fell. Sentiment:", ["negative", "positive"], 0)])
    return [calibrated, numbers, single]  # 5, 3 and 1 examples: shards of unequal size, one empty


def _sharded_eval_worker(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    """One DDP rank (gloo, CPU): the callback's evaluation at train end, recording what it scored."""
    from types import SimpleNamespace

    import torch
    import torch.distributed as dist
    from transformers import TrainerControl, TrainerState

    from hf_ipt.evaluation import EvalCallback, harness
    from hf_ipt.models import load_causal_lm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model, tokenizer = load_causal_lm(model_dir, dtype="float32")
    seen: list[str] = []
    score, generate = harness.score_options, harness.generate_answers
    harness.score_options = lambda m, t, prompts, *a, **k: seen.extend(prompts) or score(m, t, prompts, *a, **k)
    harness.generate_answers = lambda m, t, prompts, **k: seen.extend(prompts) or generate(m, t, prompts, **k)
    state = TrainerState(global_step=3, is_world_process_zero=rank == 0, is_local_process_zero=rank == 0)
    callback = EvalCallback(_sharded_tasks(), tokenizer, batch_size=2)
    callback.on_train_end(SimpleNamespace(output_dir=out, disable_tqdm=True), state, TrainerControl(), model=model)
    Path(out, f"seen{rank}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


def test_eval_callback_under_ddp_scores_a_disjoint_share_on_each_rank_and_gathers_it(tiny_model_dir, tmp_path):
    """It used to score everything on rank 0 while the other ranks waited in their next collective,
    which a long evaluation makes outlast the process group's timeout."""
    import socket
    from collections import Counter

    import torch.multiprocessing as mp

    from hf_ipt.evaluation import evaluate
    from hf_ipt.evaluation.callback import RESULTS_FILENAME, flatten_results
    from hf_ipt.models import load_causal_lm

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_sharded_eval_worker, args=(2, port, str(tiny_model_dir), str(tmp_path)), nprocs=2)
    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
    tasks = _sharded_tasks()
    expected = evaluate(model, tokenizer, tasks, batch_size=2, progress=False)
    record = json.loads((tmp_path / RESULTS_FILENAME).read_text())
    assert flatten_results(record["results"]) == pytest.approx(flatten_results(expected))
    assert list(record["results"]["Updown"]) == ["accuracy", "accuracy_calibrated"]
    seen = [json.loads((tmp_path / f"seen{rank}.json").read_text()) for rank in (0, 1)]
    every = [e.prompt for t in tasks for e in t.examples] + [e.null_prompt for e in tasks[0].examples]
    assert seen[0] and seen[1] and not set(seen[0]) & set(seen[1])
    assert Counter(seen[0]) + Counter(seen[1]) == Counter(every)


# --- lm-evaluation-harness bridge -----------------------------------------------------------
def test_lm_eval_command_names_every_general_benchmark():
    from hf_ipt.evaluation.lm_eval_bridge import GENERAL_TASKS, lm_eval_command

    command = lm_eval_command("./ckpt", add_bos=True, output_path="out")
    assert command.startswith(
        "lm_eval --model hf --model_args pretrained=./ckpt,add_bos_token=True"
    )
    assert f"--tasks {','.join(GENERAL_TASKS)}" in command and command.endswith("--output_path out")
    assert len(GENERAL_TASKS) == 9  # ARC-e/c, BoolQ, SIQA, WinoGrande, PIQA, OBQA, HellaSwag, MMLU


TINY_MC_YAML = """\
task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def test_lm_eval_bridge_runs_a_local_task_and_agrees_with_our_scoring(tiny_model_dir, tmp_path):
    import lm_eval  # noqa: F401 - in the `test` extra: a missing install fails, never skips

    from hf_ipt.evaluation import Example, Task, evaluate
    from hf_ipt.evaluation.lm_eval_bridge import run_lm_eval
    from hf_ipt.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
    choices = ["yes", "no", "maybe"]
    # one token per option: lm-eval's summed log-likelihood then equals our mean
    assert all(len(tokenizer(" " + c, add_special_tokens=False).input_ids) == 1 for c in choices)
    rows = [
        {"question": q, "choices": choices, "gold": g}
        for q, g in [
            ("Is the profit up?", 0),
            ("Did sales fall?", 1),
            ("What is the cause?", 2),
            ("Will the shares drop?", 0),
        ]
    ]
    data = tmp_path / "tiny_mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tiny_mc.yaml").write_text(TINY_MC_YAML.format(data=data))
    got = run_lm_eval(
        model, tokenizer, ["tiny_mc"], add_bos=True, batch_size=2, include_path=tmp_path
    )
    ours = evaluate(
        model,
        tokenizer,
        [Task("tiny_mc", "accuracy", [Example(r["question"], choices, r["gold"]) for r in rows])],
        add_bos=True,
        progress=False,
    )
    assert got["tiny_mc"].keys() == {"acc_norm", "acc"}
    assert got["tiny_mc"]["acc"] == pytest.approx(ours["tiny_mc"]["accuracy"])


def test_cli_refuses_a_max_length_below_one(capsys):
    """`--max_length 0` used to mean the model's context, silently."""
    from hf_ipt.evaluation.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--model", "x", "--max_length", "0"])
    assert exit_.value.code == 2 and "`max_length` must be >= 1 (tokens), got 0" in capsys.readouterr().err


def test_cli_refuses_a_data_dir_that_no_task_reads(tmp_path, capsys):
    """--data_dir holds the paper's task repos: with only task files or `general` it did nothing."""
    from hf_ipt.evaluation.cli import EvalScriptArguments, main

    with pytest.raises(SystemExit) as exit_:
        main(["--model", "x", "--tasks", "my_task.json,general", "--data_dir", str(tmp_path)])
    assert exit_.value.code == 2 and "`data_dir` " in capsys.readouterr().err
    for tasks in ("finance", "medicine/RCT", "biomedicine,general"):  # read from it: accepted
        assert EvalScriptArguments(model_name_or_path="x", tasks=tasks, data_dir=str(tmp_path)).data_dir


@pytest.mark.parametrize(("row", "flags", "message"), [
    ({"input": "", "options": ["yes", "no"], "gold_index": 0}, ["--add_bos", "no"], "leaves no token before the options"),
    ({"input": "Q: yes or no?", "options": ["yes", "no"], "gold_index": 0}, ["--max_length", "2"],
     "raise `max_length`"),
])
def test_cli_reports_a_prompt_it_cannot_score_as_a_usage_error(tiny_model_dir, tmp_path, capsys, row, flags, message):
    """These were tracebacks, after the model had loaded."""
    from hf_ipt.evaluation.cli import main

    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"metric": "accuracy", "examples": [row]}))
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(tiny_model_dir), "--tasks", str(path), "--dtype", "float32", *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_cli_records_what_the_scores_depend_on(tiny_model_dir, hub_dir, tmp_path):
    """results.json alone did not say how many examples were scored, with or without BOS, at
    which max_length or dtype: two runs' files could not be told comparable or not."""
    from hf_ipt.evaluation.cli import main

    out = tmp_path / "results"
    main(["--model", str(tiny_model_dir), "--tasks", "finance/FPB,medicine/USMLE", "--data_dir", str(hub_dir),
          "--output_dir", str(out), "--max_examples", "1", "--max_length", "300", "--dtype", "float32"])
    settings = json.loads((out / "eval_settings.json").read_text())
    assert settings["examples"] == {"FPB": 1, "USMLE": 1}
    assert settings["add_bos"] is True  # the tiny tokenizer adds its BOS
    assert (settings["max_length"], settings["dtype"], settings["batch_size"]) == (300, "float32", 8)
    assert settings["model"] == str(tiny_model_dir) and settings["general_limit"] is None
    import transformers

    assert settings["versions"]["transformers"] == transformers.__version__ and set(settings["versions"]) == {
        "transformers", "tokenizers", "torch"}
    assert set(json.loads((out / "results.json").read_text())) == {"FPB", "USMLE"}  # unchanged format


@pytest.fixture
def lm_eval_sees(monkeypatch):
    """`run_lm_eval`'s real lm-eval model (`HFLM`), caught at `simple_evaluate`, which returns a score."""
    import lm_eval

    seen = {}

    def simple_evaluate(model, tasks, **kwargs):
        seen["lm"] = model
        return {"results": {task: {"acc,none": 0.5} for task in tasks}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", simple_evaluate)
    return seen


def test_lm_eval_gets_the_bos_even_from_a_tokenizer_that_does_not_add_it(tiny_model_dir, lm_eval_sees):
    """lm-eval's add_bos_token=True only turns a tokenizer's own special tokens on: a tokenizer that
    never adds its BOS (GPT-2, Qwen, SmolLM2) was scored without one, the domain tasks with one."""
    from hf_ipt.evaluation.lm_eval_bridge import run_lm_eval
    from hf_ipt.models import adds_bos, load_causal_lm

    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
    tokenizer.add_bos_token = False
    assert not adds_bos(tokenizer)
    bos, text = tokenizer.bos_token_id, "Is the profit up?"
    plain = tokenizer(text, add_special_tokens=False).input_ids
    run_lm_eval(model, tokenizer, ["tiny_mc"], add_bos=True)
    lm = lm_eval_sees["lm"]
    assert lm.tok_encode(text) == [bos, *plain]
    assert lm.tok_batch_encode([text])[0][0].tolist() == [bos, *plain]
    assert not adds_bos(tokenizer)  # the caller's tokenizer is left as it was
    run_lm_eval(model, tokenizer, ["tiny_mc"], add_bos=False)
    assert lm_eval_sees["lm"].tok_encode(text) == plain


def test_lm_eval_leaves_the_model_and_tokenizer_as_they_were(tiny_model_dir, lm_eval_sees):
    """lm-eval puts the model in eval mode (a call in the middle of training left dropout off) and
    gives a tokenizer without a pad token its <unk> as one."""
    from hf_ipt.evaluation.lm_eval_bridge import run_lm_eval
    from hf_ipt.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
    model.train()
    tokenizer.pad_token = None
    assert run_lm_eval(model, tokenizer, ["tiny_mc"]) == {"tiny_mc": {"acc": 50.0}}
    assert model.training and tokenizer.pad_token is None
    assert lm_eval_sees["lm"].tokenizer.pad_token is not None  # lm-eval pads its own copy


def test_cli_names_a_model_path_that_is_no_saved_model(tmp_path, monkeypatch, capsys):
    """'./my-ckpt' with a typo was a traceback about Hub repo-id characters; a training output_dir
    holding only checkpoint-N folders, one about converting a slow tokenizer."""
    from hf_ipt.evaluation.cli import EvalScriptArguments, main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run" / "checkpoint-10").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-2").mkdir()
    (tmp_path / "weights.safetensors").write_text("")
    (tmp_path / "task.json").write_text(json.dumps({"metric": "accuracy", "examples": [HUB_FILES["usmle/test.json"][0]]}))
    for model, message in (
        ("./my-ckpt", "--model_name_or_path './my-ckpt': no such local folder"),
        ("run", ("'run' is a folder without a config.json, not a saved model (its checkpoints: checkpoint-2, "
                 "checkpoint-10)")),
        ("weights.safetensors", "is a file: give the folder of the saved model that holds it"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["--model", model, "--tasks", "task.json"])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    # a missing folder inside an existing one (`run/` exists) is local, not the Hub repo 'run/checkpoint-3'
    with pytest.raises(SystemExit) as exit_:
        main(["--model", "run/checkpoint-3", "--tasks", "task.json"])
    assert exit_.value.code == 2 and capsys.readouterr().err.splitlines()[-1].endswith(
        "--model_name_or_path 'run/checkpoint-3': no such local folder (did you mean 'run/checkpoint-2'?); give the "
        "folder of a saved model, or a Hub model id ('name' or 'org/name')")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "run" / "model.safetensors").write_text("")
    assert EvalScriptArguments(model_name_or_path="~/run").model_name_or_path == str(tmp_path / "run")
    assert EvalScriptArguments(model_name_or_path="org/model").model_name_or_path == "org/model"  # a Hub id


def test_cli_general_benchmarks_with_bos_for_a_tokenizer_without_one_is_a_usage_error(tiny_model_dir, tmp_path, capsys):
    """lm-eval ran such a model without a BOS, silently, while --add_bos yes was recorded."""
    import shutil

    from transformers import AutoTokenizer

    from hf_ipt.evaluation.cli import main

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.bos_token = None
    tokenizer.save_pretrained(model)
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(model), "--tasks", "general", "--add_bos", "yes", "--dtype", "float32"])
    assert exit_.value.code == 2 and "the tokenizer has no `bos_token`" in capsys.readouterr().err


def test_lm_eval_tasks_may_be_one_comma_separated_string(tiny_model_dir, lm_eval_sees):
    """As lm-eval's --tasks takes them: a string was split into characters, b,o,o,l,q."""
    from hf_ipt.evaluation.lm_eval_bridge import lm_eval_command, run_lm_eval
    from hf_ipt.models import load_causal_lm

    assert "--tasks arc_easy,boolq " in lm_eval_command("./ckpt", "arc_easy, boolq")
    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
    assert run_lm_eval(model, tokenizer, "boolq") == {"boolq": {"acc": 50.0}}
    for tasks in ("", "boolq,,piqa", []):
        with pytest.raises(ValueError, match="`tasks` names lm-eval tasks"):
            lm_eval_command("./ckpt", tasks)


def test_update_card_writes_the_scores_into_a_recipes_model_card(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """A checkpoint evaluated after training had its scores in results.json only: the card a recipe wrote kept
    "No evaluation results yet." (the training callback's results were the only ones it could show)."""
    import shutil

    from hf_ipt.evaluation import Example, Task, lm_eval_bridge, save_task_file
    from hf_ipt.evaluation.cli import main
    from hf_ipt.training.card import NO_EVAL_RESULTS, CardInfo, render_model_card

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    card = render_model_card(CardInfo("continual_pt", base_model="org/base"), model_name="model", repo_id="me/model",
                             tokens_seen=4096, tokens_per_step=512, max_steps=8, hyperparameters={"learning_rate": 1e-4})
    (model / "README.md").write_text(card)
    assert NO_EVAL_RESULTS in card
    tasks = [save_task_file(Task(name, "accuracy", [Example("Up or down?", ["up", "down"], g)] * 3),
                            tmp_path / f"{name}.json") for name, g in (("one", 0), ("two", 1))]
    argv = ["--model", str(model), "--tasks", f"{tasks[0]},{tasks[1]}", "--device", "cpu", "--dtype", "float32",
            "--max_examples", "2", "--update_card"]
    assert main(argv) == 0
    updated = (model / "README.md").read_text()
    head, _, after = updated.partition("\n## Evaluation\n")
    section = after.split("\n## ")[0]
    assert head == card.partition("\n## Evaluation\n")[0] and after.endswith(card.partition("\n## Usage")[2])
    assert NO_EVAL_RESULTS not in updated and "\n## Usage\n" in updated
    assert "Scored by `hf-ipt eval` (hf_ipt " in section and ", average 50:" in section
    assert "Scored on at most 2 examples of each task (`--max_examples`)" in section  # 3 each: more unknown
    scores = {name: float(value) for name, value in re.findall(r"\| (one|two) \| accuracy \| (\d+) \| 2 \|", section)}
    assert sorted(scores.values()) == [0.0, 100.0]  # one gold option each, the same prompt: the model picks one
    assert f"scores written into the model card {model / 'README.md'}" in capsys.readouterr().out
    # again, with the general benchmarks: the section is replaced, not added to; the averages kept apart
    monkeypatch.setattr(lm_eval_bridge, "require_lm_eval", lambda: None)
    monkeypatch.setattr(lm_eval_bridge, "run_lm_eval", lambda *a, **k: {"boolq": {"acc": 20.0}})
    assert main([*argv[:3], f"{tasks[0]},general", *argv[4:]]) == 0
    updated = (model / "README.md").read_text()
    assert updated.count("## Evaluation") == 1 and updated.count("Scored by `hf-ipt eval`") == 1
    assert f"averages domain {scores['one']:.0f}, general 20:" in updated and "| boolq | acc | 20 | ? |" in updated
    # no card to fill: refused before any model loads
    (model / "README.md").write_text("# my notes\n")
    for target, why in ((model, "is no model card of an hf_ipt recipe"), ("org/model", "is none (a Hub id?)")):
        with pytest.raises(SystemExit) as exit_:
            main(["--model", str(target), "--tasks", str(tasks[0]), "--update_card"])
        assert exit_.value.code == 2 and why in capsys.readouterr().err
