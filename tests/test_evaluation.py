"""Domain evaluation: task data, metrics (offline `evaluate` modules), scoring rules, harness.

Every scoring rule is checked against a direct log-prob computation on the tiny Llama; the
real SmolLM2-135M-Instruct answers easy multiple-choice items better than chance.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from hf_ipt.evaluation import Example, Task, load_task_file, load_tasks, save_task_file
from hf_ipt.evaluation.metrics import METRIC_MODULES, compute_metric, load_metric
from hf_ipt.evaluation.tasks import read_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from hf_ipt.models import load_causal_lm

    return load_causal_lm(tiny_model_dir, dtype="float32")


# --- a tiny copy of the Hub repos AdaptLLM/{finance,medicine}-tasks (same layout) ---------
def _cls(prompt: str, options: list[str], gold: int, **extra) -> dict:
    return {"id": prompt[:8], "input": prompt, "options": options, "gold_index": gold, **extra}


HUB_FILES = {
    "FPB/test.json": [
        _cls("Sales fell by 3.5%. Sentiment:", ["negative", "neutral", "positive"], 0),
        _cls("The company reported a profit. Sentiment:", ["negative", "neutral", "positive"], 2),
    ],
    "FiQA_SA/test.json": [
        _cls("Shares dropped sharply. Sentiment:", ["negative", "neutral", "positive"], 0)
    ],
    "Headline/test.json": [
        _cls(
            "Gold prices rise. Does the news talk about price going up?",
            ["Yes", "No"],
            0,
            class_id=0,
        ),
        _cls("Gold falls. Does the news talk about price going up?", ["Yes", "No"], 1, class_id=0),
        _cls("Gold flat. Does the news mention the past?", ["Yes", "No"], 1, class_id=1),
    ],
    "NER/test.json": [
        {"id": "n1", "input": "Acme hired Smith. Entities:", "label": "Acme (organization)"}
    ],
    "ConviFinQA/test.json": [
        {"id": "c1", "input": "Profit was 42. What was the profit?", "label": ["42"]}
    ],
    "pubmed_qa/test.json": [_cls("Does aspirin thin blood? Answer:", ["yes", "no", "maybe"], 0)],
    "ChemProt/test.json": [
        _cls("X inhibits Y. Relation:", ["inhibitor", "substrate", "agonist"], 0)
    ],
    "MedQs/test.json": [_cls("Are these questions the same? Answer:", ["yes", "no"], 0)],
    "RCT/test.json": [
        _cls("We randomized 40 patients. Role:", ["methods", "results", "background"], 0)
    ],
    "usmle/test.json": [
        _cls("A patient has fever. Diagnosis:", ["flu", "cold", "none", "other"], 0)
    ],
}


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    """FPB as JSON lines, the others as JSON lists: the loader reads both."""
    for rel, rows in HUB_FILES.items():
        path = tmp_path / "tasks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith("FPB"):
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            path.write_text(json.dumps(rows))
    return tmp_path / "tasks"


# --- tasks --------------------------------------------------------------------------------
def test_paper_task_sets_load_from_a_local_copy_of_the_hub_layout(hub_dir):
    finance = load_tasks("finance", data_dir=hub_dir)
    assert [(t.name, t.metric) for t in finance] == [
        ("FPB", "weighted_f1"),
        ("FiQA_SA", "weighted_f1"),
        ("Headline", "headline_f1"),
        ("NER", "entity_f1"),
        ("ConvFinQA", "numeric_match"),
    ]
    medicine = load_tasks("medicine", data_dir=hub_dir)
    assert {t.name: t.metric for t in medicine} == {
        "PubMedQA": "accuracy",
        "ChemProt": "micro_f1",
        "MQP": "accuracy",
        "RCT": "micro_f1",
        "USMLE": "accuracy",
    }
    headline = finance[2]
    assert [e.group for e in headline.examples] == ["0", "0", "1"]
    assert finance[4].is_generation and finance[4].examples[0].references == ["42"]
    assert finance[3].examples[0].references == ["Acme (organization)"]
    assert finance[0].examples[1].options[2] == "positive" and finance[0].examples[1].gold == 2


def test_task_specs_subsets_folders_and_max_examples(hub_dir):
    assert [t.name for t in load_tasks("finance/FPB,medicine/RCT", data_dir=hub_dir)] == [
        "FPB",
        "RCT",
    ]
    assert len(load_tasks(str(hub_dir))) == 10  # a folder in the Hub layout: every task found
    (fpb,) = load_tasks("finance/FPB", data_dir=hub_dir, max_examples=1)
    assert len(fpb.examples) == 1
    with pytest.raises(ValueError, match="unknown finance task"):
        load_tasks("finance/XYZ", data_dir=hub_dir)
    with pytest.raises(ValueError, match="cannot resolve task 'nope'"):
        load_tasks("nope")
    with pytest.raises(FileNotFoundError, match="ConviFinQA/test.json"):
        load_tasks("finance/ConvFinQA", data_dir=hub_dir.parent)


def test_a_task_file_in_a_folder_named_like_a_domain_is_read_as_a_file(hub_dir, tmp_path, monkeypatch):
    """`finance/mine.json` was looked up among the paper's finance tasks: "unknown finance task(s)"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "finance").mkdir()
    save_task_file(Task("mine", "accuracy", [Example("Up?", ["yes", "no"], 0)]), tmp_path / "finance" / "mine.json")
    assert [t.name for t in load_tasks("finance/mine.json,finance/FPB", data_dir=hub_dir)] == ["mine", "FPB"]
    with pytest.raises(ValueError, match="unknown finance task"):  # no such file: still a paper task name
        load_tasks("finance/XYZ", data_dir=hub_dir)


def test_without_data_dir_the_test_split_is_read_from_the_hub(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(repo_id, config, split):
        calls.append((repo_id, config, split))
        row = {"input": "Profit was 42. What was it?", "label": "42"}
        return [{**row, "options": ["42", "41"], "gold_index": 0}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (task,) = load_tasks("finance/ConvFinQA")
    assert calls == [("AdaptLLM/finance-tasks", "ConvFinQA", "test")]
    assert task.metric == "numeric_match" and task.examples[0].references == ["42"]
    load_tasks("biomedicine/MQP")
    assert calls[-1] == ("AdaptLLM/medicine-tasks", "MQP", "test")


def test_offline_the_papers_tasks_are_read_from_the_hugging_face_cache(hub_dir, tmp_path, monkeypatch):
    """`hf download AdaptLLM/finance-tasks --repo-type dataset` where the Hub is reachable, then
    offline: the task is read from the cache, without --data_dir (datasets cannot read it offline)."""
    import shutil

    import datasets
    from huggingface_hub import constants

    commit = "f" * 40
    repo = tmp_path / "cache" / "datasets--AdaptLLM--finance-tasks"
    shutil.copytree(hub_dir / "FPB", repo / "snapshots" / commit / "FPB")  # as `--include "FPB/*"` leaves it
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets, "load_dataset", None)  # never asked
    (fpb,) = load_tasks("finance/FPB")
    assert fpb == load_tasks("finance/FPB", data_dir=hub_dir)[0]


def test_task_file_roundtrip_and_validation(tmp_path):
    task = Task("mc", "accuracy", [Example("Q?", ["a", "b"], 1), Example("R?", ["c", "d"], 0)])
    path = save_task_file(task, tmp_path / "mc.json")
    assert load_task_file(path) == task
    assert load_tasks(tmp_path) == [task]  # a folder of task files
    with pytest.raises(ValueError, match="`metric` must be one of"):
        Task("t", "bleu", [Example("Q?", ["a", "b"], 0)])
    with pytest.raises(ValueError, match="`gold_index` must index `options`"):
        Task("t", "accuracy", [Example("Q?", ["a", "b"], 2)])
    with pytest.raises(ValueError, match="needs a `label`"):
        Task("t", "numeric_match", [Example("Q?")])
    with pytest.raises(ValueError, match="needs a `class_id`"):
        Task("t", "headline_f1", [Example("Q?", ["Yes", "No"], 0)])
    with pytest.raises(ValueError, match="names must be unique"):
        load_tasks([task, task])


@pytest.mark.parametrize(("row", "message"), [
    ("just text", "a task row is a JSON object"),
    ({"input": 3, "label": "x"}, "`input` is a string"),
    ({"input": "Q?", "options": ["a", None], "gold_index": 0}, "`options` is a list of strings"),
    ({"input": "Q?", "options": ["a", "b"], "gold_index": True}, "`gold_index` is an integer, got True"),
    ({"input": "Q?", "label": {"a": 1}}, "`label` is a string, a number or a list"),
    ({"input": "Q?", "label": [None]}, "`label` is a string, a number or a list"),
])
def test_task_rows_of_the_wrong_type_are_refused_when_loaded(tmp_path, row, message):
    """Before the model loads: they used to fail with a TypeError after it, or be scored wrong
    (a None option as the text "None", a `true` gold as option 1)."""
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"name": "t", "metric": "accuracy", "examples": [row]}))
    with pytest.raises(ValueError, match=message):
        load_task_file(path)


def test_numeric_labels_are_references_and_examples_must_be_a_list(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"name": "t", "metric": "numeric_match", "examples": [
        {"input": "Q?", "label": 42}, {"input": "R?", "label": [1.5, "2"]}]}))
    assert [e.references for e in load_task_file(path).examples] == [["42"], ["1.5", "2"]]
    path.write_text(json.dumps({"name": "t", "metric": "accuracy", "examples": {"input": "Q?"}}))
    with pytest.raises(ValueError, match="`examples` is a list of rows, got dict"):
        load_task_file(path)


# --- metrics: local `evaluate` modules, no network ----------------------------------------
def test_metric_modules_load_by_local_path_with_the_network_blocked(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    load_metric.cache_clear()  # load again, now without network
    for name in METRIC_MODULES:
        if name in ("entity_f1", "numeric_match"):
            score = compute_metric(name, ["Acme (organization) 42"], ["Acme (organization) 42"])
        else:
            score = compute_metric(name, [1, 0], [1, 0], groups=["a", "a"])
        assert score == pytest.approx(100.0), name


def test_f1_metrics():
    refs, preds = [0, 0, 0, 1], [0, 0, 1, 1]
    assert compute_metric("micro_f1", preds, refs) == pytest.approx(75.0)
    # class 0: P 1, R 2/3 -> F1 0.8 (support 3); class 1: P 1/2, R 1 -> F1 2/3 (support 1)
    assert compute_metric("weighted_f1", preds, refs) == pytest.approx(100 * (3 * 0.8 + 2 / 3) / 4)


def test_headline_f1_averages_weighted_f1_over_sub_questions():
    groups = ["a", "a", "b", "b"]
    refs, preds = [0, 1, 0, 0], [0, 1, 1, 0]
    # group a: perfect (1.0); group b: class 0 has P 1, R 1/2 -> 2/3, class 1 has no support
    assert compute_metric("headline_f1", preds, refs, groups) == pytest.approx(
        100 * (1 + 2 / 3) / 2
    )
    with pytest.raises(ValueError, match="groups"):
        compute_metric("headline_f1", preds, refs)


# entity_f1 and numeric_match default to the rule of the paper's evaluation code
# (microsoft/LMOps adaptllm/src/utils/metric.py, NER scored by nereval)
@pytest.mark.parametrize(
    ("prediction", "reference", "f1"),
    [
        # only the last word before "(type)" is the name: both sides parse to ("Bank", org)
        ("Bank (organization)", "Silicon Valley Bank (organization)", 1.0),
        # Bank: name + type (2); Smith: name only (1) -> P = R = 3/4
        (
            "Silicon Valley Bank (organization), John Smith (location)",
            "Silicon Valley Bank (organization), John Smith (person)",
            0.75,
        ),
        ("Mary (person)", "John (person)", 0.5),  # the type alone earns 1 of 2 points
        ("apple (organization)", "Apple (organization)", 0.5),  # names compare as written
        ("Acme (organization), Acme (organization)", "Acme (organization)", 1.0),  # deduped
        ("", "John (person)", 0.0),
        ("no entity here", "John (person)", 0.0),
        ("John (person)", "", 0.0),
    ],
)
def test_entity_f1_follows_the_reference_rule(prediction, reference, f1):
    assert compute_metric("entity_f1", [prediction], [reference]) == pytest.approx(100 * f1)


def test_entity_f1_averages_the_per_example_f1():
    refs = ["Silicon Valley Bank (organization)", "John (person)"]
    preds = ["Bank (organization)", "Mary (person)"]
    assert compute_metric("entity_f1", preds, refs) == pytest.approx(100 * (1.0 + 0.5) / 2)


def _strict(module, predictions, references):
    out = load_metric(module).compute(predictions=predictions, references=references, strict=True)
    return 100.0 * out[module]


def test_strict_entity_f1_matches_full_spans_exactly_one_to_one_then_averages_examples():
    refs = ["Acme (organization), Smith (person)", "Smith (person)", "Acme (organization)"]
    preds = [
        "Acme (organization), Jones (location)",  # 1 of 2 right each way: F1 0.5
        "Jones (person)",  # same type, other text: no credit
        "nothing here",  # no entity: 0
    ]
    assert _strict("entity_f1", preds, refs) == pytest.approx(100 * (0.5 + 0 + 0) / 3)
    assert _strict("entity_f1", refs, refs) == pytest.approx(100.0)


def test_strict_entity_f1_parses_the_whole_entity_span():
    # the last word alone is not the entity
    assert _strict("entity_f1", ["New York (location)"], ["York (location)"]) == 0.0
    refs = ["New York Times (organization), John Smith (person); Acme, Inc. (organization)"]
    preds = ["  new  york times (Organization) and John Smith (person), Acme, Inc (organization)."]
    assert _strict("entity_f1", preds, refs) == pytest.approx(100.0)


def test_strict_entity_f1_ignores_a_lead_in():
    preds = ["Entities: Apple (organization), Tim Cook (person)"]
    assert _strict("entity_f1", preds, ["Apple (organization), Tim Cook (person)"]) == 100.0


def test_strict_entity_f1_credits_each_prediction_once():
    refs = ["Alice (person), Carol (person), Acme (organization)"]
    # a type-only overlap earns nothing, and cannot be reused for two gold persons
    assert _strict("entity_f1", ["Bob (person)"], refs) == 0.0
    # a duplicate prediction matches one gold entity: P 1/2, R 1 -> F1 2/3
    preds, refs = ["Acme (organization), Acme (organization)"], ["Acme (organization)"]
    assert _strict("entity_f1", preds, refs) == pytest.approx(100 * 2 / 3)


@pytest.mark.parametrize(
    ("prediction", "reference", "right"),
    [
        ("2.5 (12.5 minus 10)", "2.5", True),  # any number of the prediction may match
        ("300 from 2019 to 2020", "300", True),
        ("12.5 or 8.005", "8", True),  # within 1e-2
        ("The answer is 14.1", "14.1%", False),  # the gold is 0.141
        ("14.1%", "0.141", True),  # each % divides by 100
        ("-11.5%", "-0.115", True),
        ("0.141", "14.1", False),
        ("14.1 %", "14.1", True),  # a spaced % is not part of the number
        ("1,234.5", "1234.5", True),  # thousands separators dropped
        ("The answer is 1234.5", "1,234.5", True),
        ("7.4", "7.4 (5.2 + 2.2)", True),  # the gold is its first number
        ("2.2", "7.4 (5.2 + 2.2)", False),
        ("no number", "3", False),  # a prediction without a number never matches
        ("0", "n/a", False),  # nor does a reference without one
        ("the answer is\n42", "42", False),  # only the first line counts
        ("05", "5", False),  # the reference's eval rejects leading zeros: inf
    ],
)
def test_numeric_match_follows_the_reference_rule(prediction, reference, right):
    assert compute_metric("numeric_match", [prediction], [reference]) == 100.0 * right


def test_numeric_match_is_the_share_of_right_answers():
    preds = ["2.5 (12.5 minus 10)", "The answer is 14.1", "300 from 2019 to 2020"]
    refs = ["2.5", "14.1%", "300"]
    assert compute_metric("numeric_match", preds, refs) == pytest.approx(100 * 2 / 3)


@pytest.mark.parametrize(
    ("prediction", "reference", "right"),
    [
        ("The answer is 1234.5", "1,234.5", True),  # thousands separator
        ("41.9\n42", " 42", False),  # only the first line counts; 41.9 is off by > 1e-2
        ("8 or 7.005", "7", True),  # the final number is the answer, within 1e-2
        ("7.005 or 8", "7", False),  # an earlier number is not the answer
        ("5.2 + 2.2 = 7.4.", "7.4", True),  # working, then the answer
        ("5.2 ... 7.4 ... 2.2", "7.4", False),  # the gold number in the working does not count
        ("2.5 (12.5 minus 10)", "2.5", False),
        ("0", "n/a", False),  # a reference without a number never matches
        ("the answer is", "3", False),  # nor does a prediction without one
    ],
)
def test_strict_numeric_match_scores_the_final_number_of_the_first_line(
    prediction, reference, right
):
    assert _strict("numeric_match", [prediction], [reference]) == 100.0 * right


@pytest.mark.parametrize(
    ("prediction", "reference", "right"),
    [
        ("14.1", "14.1%", True),  # a percentage stands for x and x / 100
        ("14.1%", "14.1", True),
        ("14.1 %", "14.1%", True),
        ("0.141", "14.1%", True),  # ConvFinQA golds come as fractions and as percentages
        ("-11.5%", "-0.115", True),
        ("0.141", "14.1", False),  # two plain numbers must agree as written
        ("14.1%", "0.17", False),
    ],
)
def test_strict_numeric_match_reads_a_percentage_both_ways(prediction, reference, right):
    assert _strict("numeric_match", [prediction], [reference]) == 100.0 * right


# --- scoring rules against a direct computation -------------------------------------------
PROMPTS = [
    "The company reported a profit",
    "Sales fell. Therefore, the shares",
    "What is the cause? Options:" + " energy prices and interest rates." * 6,
]
OPTIONS = [
    ["yes", "no", "maybe so"],
    ["dropped sharply", "rose"],
    ["energy prices", "demand", "x", "0123"],
]


def direct_mean_nll(model, tokenizer, prompt: str, option: str, add_bos: bool) -> float:
    """Mean NLL of the tokens of ' ' + option, from one plain forward pass."""
    import torch

    bos = [tokenizer.bos_token_id] if add_bos else []
    context = bos + tokenizer(prompt, add_special_tokens=False).input_ids
    whole = bos + tokenizer(prompt + " " + option, add_special_tokens=False).input_ids
    assert whole[: len(context)] == context
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), -1)
    targets = whole[len(context) :]
    return -sum(logprobs[len(context) - 1 + k, t].item() for k, t in enumerate(targets)) / len(
        targets
    )


@pytest.mark.parametrize("add_bos", [True, False])
@pytest.mark.parametrize("shared_prefix_min_tokens", [None, 0])  # whole sequences / shared cache
@pytest.mark.parametrize("batch_size", [1, 4])
def test_score_options_equals_direct_mean_nll(tiny, add_bos, shared_prefix_min_tokens, batch_size):
    from hf_ipt.evaluation import score_options

    model, tokenizer = tiny
    expected = [
        [direct_mean_nll(model, tokenizer, p, o, add_bos) for o in opts]
        for p, opts in zip(PROMPTS, OPTIONS)
    ]
    got = score_options(
        model,
        tokenizer,
        PROMPTS,
        OPTIONS,
        add_bos=add_bos,
        batch_size=batch_size,
        shared_prefix_min_tokens=shared_prefix_min_tokens,
    )
    assert [len(g) for g in got] == [3, 2, 4]
    for exp_row, got_row in zip(expected, got):
        assert got_row == pytest.approx(exp_row, abs=1e-4)


def test_score_options_refuses_prompts_and_option_lists_of_different_lengths(tiny):
    """Zipped, a third prompt without options (or options without a prompt) got no score, silently."""
    from hf_ipt.evaluation import score_options

    model, tokenizer = tiny
    with pytest.raises(ValueError, match="3 prompts but 2 option lists"):
        score_options(model, tokenizer, PROMPTS, OPTIONS[:2])


def test_long_prompts_are_left_truncated_keeping_bos(tiny):
    from hf_ipt.evaluation.scoring import build_request

    _, tokenizer = tiny
    full = build_request(tokenizer, PROMPTS[2], OPTIONS[2], add_bos=True, max_length=None)
    cut = build_request(tokenizer, PROMPTS[2], OPTIONS[2], add_bos=True, max_length=20)
    longest = max(map(len, cut.continuations))
    assert len(cut.context) + longest == 20
    assert cut.context[0] == tokenizer.bos_token_id
    assert cut.context[1:] == full.context[len(full.context) - (19 - longest) :]
    assert cut.continuations == full.continuations


def test_classification_picks_the_option_with_the_lowest_mean_nll(tiny):
    from hf_ipt.evaluation import evaluate
    from hf_ipt.evaluation.harness import predict

    model, tokenizer = tiny
    task = Task("mc", "accuracy", [Example(p, o, 0) for p, o in zip(PROMPTS, OPTIONS)])
    nlls = [
        [direct_mean_nll(model, tokenizer, p, o, True) for o in opts]
        for p, opts in zip(PROMPTS, OPTIONS)
    ]
    expected = [row.index(min(row)) for row in nlls]
    assert predict(model, tokenizer, task, add_bos=True) == expected
    results = evaluate(model, tokenizer, [task], add_bos=True, progress=False)
    assert results == {"mc": {"accuracy": pytest.approx(100 * expected.count(0) / 3)}}


def _greedy(model, ids: list[int], steps: int) -> list[int]:
    import torch

    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids + out])).logits[0, -1]
            out.append(int(logits.argmax()))
    return out


def test_generation_is_greedy_and_left_truncates_the_prompt(tiny):
    from hf_ipt.evaluation import generate_answers

    model, tokenizer = tiny
    prompts = [PROMPTS[2], PROMPTS[0]]
    got = generate_answers(
        model, tokenizer, prompts, add_bos=True, max_new_tokens=6, max_length=16, batch_size=2
    )
    assert len(got) == len(prompts)  # zip below would stop at a short result
    for prompt, answer in zip(prompts, got):
        ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False).input_ids
        ids = ids[:1] + ids[len(ids) - 9 :] if len(ids) > 10 else ids  # 16 - 6 tokens of room
        text = tokenizer.decode(_greedy(model, ids, 6), skip_special_tokens=True)
        assert answer == text.split("\n")[0].strip()


@pytest.mark.parametrize("lora", [False, True])  # a PEFT model generates with its base model's config
def test_generation_stays_greedy_whatever_the_checkpoints_generation_config(tiny_model_dir, lora):
    """`generate` fills a passed config's unset fields from the model's generation_config: a
    checkpoint's repetition penalty or n-gram ban used to change the paper's greedy answers."""
    from hf_ipt.evaluation import generate_answers
    from hf_ipt.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(target_modules=["q_proj"], r=2)).eval()
    base = model.get_base_model() if lora else model
    prompts = [PROMPTS[0], PROMPTS[1]]
    plain = generate_answers(model, tokenizer, prompts, add_bos=True, max_new_tokens=12, batch_size=2)
    sampling = base.generation_config
    sampling.update(repetition_penalty=5.0, no_repeat_ngram_size=1, do_sample=True, temperature=3.0)
    assert generate_answers(model, tokenizer, prompts, add_bos=True, max_new_tokens=12, batch_size=2) == plain
    assert base.generation_config is sampling  # the checkpoint's own is given back


def test_an_empty_generation_prompt_without_bos_is_refused(tiny):
    """It used to fail inside the model ("cannot reshape tensor of 0 elements")."""
    from hf_ipt.evaluation import generate_answers

    model, tokenizer = tiny
    with pytest.raises(ValueError, match="prompt '' gives no token to generate from"):
        generate_answers(model, tokenizer, [PROMPTS[0], ""], add_bos=False, max_new_tokens=2)
    assert len(generate_answers(model, tokenizer, [""], add_bos=True, max_new_tokens=2)) == 1


@pytest.fixture(scope="module")
def answers_42(tiny_model_dir):
    """The tiny Llama overfit on 'Q: profit? A: 42' lines: it answers 42, then a newline."""
    import torch

    from hf_ipt.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
    ids = torch.tensor([tokenizer("Q: profit? A: 42\n" * 6).input_ids])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), tokenizer


def test_generation_stops_at_the_first_newline(answers_42):
    from hf_ipt.evaluation import generate_answers

    model, tokenizer = answers_42
    prompt = "Q: profit? A:"
    ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False).input_ids
    unstopped = tokenizer.decode(_greedy(model, ids, 12), skip_special_tokens=True)
    assert unstopped.startswith(" 42\nQ:")  # the model would go on past the newline
    assert generate_answers(model, tokenizer, [prompt], add_bos=True, max_new_tokens=12) == ["42"]


def test_evaluate_on_the_hub_layout_with_json_and_markdown(answers_42, hub_dir, tmp_path):
    from hf_ipt.evaluation import evaluate, results_to_json, results_to_markdown

    model, tokenizer = answers_42
    conv = {"input": "Q: profit? A:", "label": ["42"]}
    (hub_dir / "ConviFinQA" / "test.json").write_text(json.dumps([conv, {**conv, "label": "41"}]))
    results = evaluate(model, tokenizer, "finance", data_dir=hub_dir, add_bos=True, progress=False)
    assert list(results) == ["FPB", "FiQA_SA", "Headline", "NER", "ConvFinQA"]
    assert results["ConvFinQA"] == {"numeric_match": pytest.approx(50.0)}
    assert all(0 <= v <= 100 for scores in results.values() for v in scores.values())
    assert json.loads(results_to_json(results, tmp_path / "r.json")) == results
    assert json.loads((tmp_path / "r.json").read_text()) == results
    table = results_to_markdown(results)
    assert "| ConvFinQA | numeric_match | 50.00 |" in table
    average = sum(next(iter(s.values())) for s in results.values()) / 5
    assert table.rstrip().endswith(f"| **Average** | | **{average:.2f}** |")


def test_each_paper_domain_is_averaged_apart_and_task_files_in_none():
    """`--tasks finance,medicine` printed one average over all ten tasks, and a task file counted in it:
    the paper reports each domain's average on its own."""
    from hf_ipt.evaluation.callback import flatten_results
    from hf_ipt.evaluation.harness import domain_groups, results_to_markdown

    results = {"FPB": {"weighted_f1": 60.0}, "NER": {"entity_f1": 40.0}, "USMLE": {"accuracy": 30.0},
               "RCT": {"micro_f1": 50.0}, "mine": {"accuracy": 100.0}}
    groups = domain_groups(list(results))
    assert groups == {"finance": ["FPB", "NER"], "medicine": ["USMLE", "RCT"], "other": ["mine"]}
    table = results_to_markdown(results, groups=groups)
    assert "| **Finance average** | | **50.00** |" in table and "| **Medicine average** | | **40.00** |" in table
    assert "Other average" not in table and "| **Average**" not in table
    assert domain_groups(["FPB", "NER"]) == {"domain": ["FPB", "NER"]}
    logs = flatten_results(results)
    assert (logs["eval_finance_average"], logs["eval_medicine_average"], logs["eval_other_average"]) == (50, 40, 100)
    assert "eval_finance_average" not in flatten_results({"FPB": {"weighted_f1": 1.0}, "NER": {"entity_f1": 2.0}})
    from hf_ipt.evaluation.harness import group_averages
    from hf_ipt.training.card import _eval_table

    record = {"global_step": 10, "results": results, "average": 56.0, "averages": group_averages(results)}
    assert _eval_table(record).splitlines()[0] == "At step 10, averages finance 50, medicine 40, other 100:"


def test_bos_follows_the_model_family(tiny, smollm2_dir):
    from transformers import AutoTokenizer

    from hf_ipt.evaluation import default_add_bos

    _, llama_like = tiny
    assert default_add_bos(llama_like) is True  # tokenizer adds BOS itself (Llama 3 family)
    assert default_add_bos(llama_like, "AdaptLLM/finance-LLM") is False  # AdaptLLM v1: no BOS
    snapshot = "/shared/hf/hub/models--AdaptLLM--finance-LLM/snapshots/" + "a" * 40  # its cache folder: the same
    assert default_add_bos(llama_like, snapshot) is False
    assert default_add_bos(llama_like, snapshot.replace("AdaptLLM", "meta-llama")) is True
    assert default_add_bos(AutoTokenizer.from_pretrained(smollm2_dir)) is False


# --- a real model -----------------------------------------------------------------------
EASY_ITEMS = [
    ("Question: What color is the sky on a clear day?\nAnswer:", ["blue", "green", "red"], 0),
    ("Question: How many legs does a dog have?\nAnswer:", ["four", "two", "ten"], 0),
    ("Question: What is the opposite of hot?\nAnswer:", ["cold", "tall", "loud"], 0),
    ("Question: Which animal says 'meow'?\nAnswer:", ["a cat", "a cow", "a fish"], 0),
    ("Question: What do bees make?\nAnswer:", ["honey", "steel", "glass"], 0),
    ("Question: What is 2 + 2?\nAnswer:", ["4", "7", "10"], 0),
    ("Question: Which season is the coldest?\nAnswer:", ["winter", "summer", "spring"], 0),
    ("Question: What is the capital of France?\nAnswer:", ["Paris", "Berlin", "Madrid"], 0),
    ("Question: What do we drink when we are thirsty?\nAnswer:", ["water", "sand", "paper"], 0),
    ("Question: Where do fish live?\nAnswer:", ["in water", "in trees", "in the desert"], 0),
    ("Question: What does a thermometer measure?\nAnswer:", ["temperature", "weight", "speed"], 0),
    ("Question: Which planet do we live on?\nAnswer:", ["Earth", "Mars", "Jupiter"], 0),
]


def test_smollm2_answers_easy_multiple_choice_better_than_chance(smollm2_dir):
    from hf_ipt.evaluation import evaluate
    from hf_ipt.models import load_causal_lm

    model, tokenizer = load_causal_lm(smollm2_dir, dtype="float32")
    # gold moved around, so a position bias cannot pass the test
    examples = [
        Example(p, o[-i % 3 :] + o[: -i % 3], i % 3) for i, (p, o, _) in enumerate(EASY_ITEMS)
    ]
    results = evaluate(model, tokenizer, [Task("easy", "accuracy", examples)], progress=False)
    assert results["easy"]["accuracy"] >= 75.0  # chance is 33.3


class MergingTokenizer:
    """Greedy longest match over a toy vocabulary where 'a b' is one token but 'a c' is not.

    After the prompt 'xa', option 'b' re-tokenizes the prompt's last token ('a b'), option
    'c' does not ('a', ' ', 'c'): both must still be scored on their own tokens.
    """

    vocab: ClassVar[dict[str, int]] = {"x": 5, "a": 6, "a b": 7, " ": 8, "c": 9, "b": 10}
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 3

    def __call__(self, text: str, add_special_tokens: bool = True):
        from types import SimpleNamespace

        ids, i = [], 0
        while i < len(text):
            piece = next(text[i : i + n] for n in (3, 2, 1) if text[i : i + n] in self.vocab)
            ids.append(self.vocab[piece])
            i += len(piece)
        return SimpleNamespace(input_ids=ids)


@pytest.mark.parametrize("shared_prefix_min_tokens", [None, 0])
def test_options_that_retokenize_the_prompt_end_score_their_own_tokens(
    tiny, shared_prefix_min_tokens
):
    import torch

    from hf_ipt.evaluation import score_options
    from hf_ipt.evaluation.scoring import build_request

    model, _ = tiny
    tokenizer = MergingTokenizer()
    request = build_request(tokenizer, "xa", ["b", "c"], add_bos=True, max_length=None)
    assert request.context == [1, 5] and request.continuations == [[7], [6, 8, 9]]
    assert request.skips == [0, 1]  # 'a' belongs to the prompt, not to option 'c'
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([[1, 5, 6, 8, 9]])).logits[0], -1)
        b = -torch.log_softmax(model(torch.tensor([[1, 5]])).logits[0, -1], -1)[7].item()
    c = -(logprobs[2, 8] + logprobs[3, 9]).item() / 2  # ' ' and 'c' only
    got = score_options(
        model,
        tokenizer,
        ["xa"],
        [["b", "c"]],
        add_bos=True,
        shared_prefix_min_tokens=shared_prefix_min_tokens,
    )
    assert got[0] == pytest.approx([b, c], abs=1e-4)


# --- EvalCallback during training -----------------------------------------------------------
def test_an_evaluation_on_a_logging_step_keeps_the_trainers_loss_log(tiny_model_dir, tmp_path):
    """`Trainer.log` from `on_step_end` (rank 0 alone) used to clear `control.should_log`: the step's
    training loss was never logged, and under DDP rank 0 skipped the loss all-gather the other ranks
    ran (gloo: collective mismatch; NCCL: a hang). The 2-process run is in test_recipes."""
    import datasets
    from transformers import Trainer, TrainingArguments

    from hf_ipt.evaluation import EvalCallback
    from hf_ipt.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_model_dir, dtype="float32")
    ids = tokenizer("The company reported a profit of $1.13bn in the third quarter.").input_ids
    data = datasets.Dataset.from_dict({"input_ids": [ids] * 8, "labels": [ids] * 8})
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=2, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data)
    task = Task("TinyQA", "accuracy", [Example("Profit rose. Up? Answer:", ["yes", "no"], 0)])
    trainer.add_callback(EvalCallback([task], tokenizer, eval_steps=2, trainer=trainer))
    trainer.train()
    history = trainer.state.log_history
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4]
    assert [h["step"] for h in history if "eval_TinyQA_accuracy" in h] == [2, 4]
    assert trainer.control.should_log is False  # the Trainer's own log of step 4 cleared it


def test_eval_callback_gives_back_the_pending_log_flag_it_cleared(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from hf_ipt.evaluation import EvalCallback
    from hf_ipt.evaluation import callback as callback_module

    monkeypatch.setattr(callback_module, "evaluate", lambda *a, **k: {"T": {"accuracy": 1.0}})
    control, logged = TrainerControl(should_log=True), []

    def log(logs):  # as `Trainer.log` does: `on_log` clears the flag
        logged.append(logs)
        control.should_log = False

    task = Task("T", "accuracy", [Example("p", ["a", "b"], 0)])
    callback = EvalCallback([task], None, eval_steps=2, trainer=SimpleNamespace(log=log, control=control),
                            add_bos=False)
    args = SimpleNamespace(output_dir=str(tmp_path), disable_tqdm=True, compile_layers=False)
    state = TrainerState(global_step=2, is_world_process_zero=True)
    callback.on_step_end(args, state, control, model=SimpleNamespace(config=SimpleNamespace()))
    assert logged == [{"eval_T_accuracy": 1.0, "eval_domain_average": 1.0}]
    assert control.should_log is True  # the Trainer still logs step 2's loss (and all-gathers it on every rank)


def test_eval_callback_counts_the_seconds_it_spends_evaluating(tmp_path, monkeypatch):
    """Its running total, which the throughput callback leaves out of training's tokens/s; on a fake clock."""
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    from hf_ipt.evaluation import EvalCallback
    from hf_ipt.evaluation import callback as callback_module

    clock = iter([10.0, 13.0, 20.0, 21.5])
    monkeypatch.setattr(callback_module, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    monkeypatch.setattr(callback_module, "evaluate", lambda *a, **k: {"T": {"accuracy": 1.0}})
    task = Task("T", "accuracy", [Example("p", ["a", "b"], 0)])
    callback = EvalCallback([task], None, eval_steps=1, add_bos=False)
    args = SimpleNamespace(output_dir=str(tmp_path), disable_tqdm=True, compile_layers=False)
    for step in (1, 2):
        callback.on_step_end(args, TrainerState(global_step=step, is_world_process_zero=False), TrainerControl())
    assert callback.seconds == 4.5


def test_an_option_is_scored_as_space_plus_option_after_any_prompt():
    """The reference scores ``' ' + o`` after every prompt (AdaptLLM's ``get_answers``), one ending in
    whitespace too; a prompt ending in a space or newline had the option without it, other tokens than
    the paper's numbers scored."""
    from hf_ipt.evaluation.scoring import build_request, with_option

    request = build_request(MergingTokenizer(), "xa ", ["c"], add_bos=True, max_length=None)
    assert request.context == [1, 5, 6, 8] and request.continuations == [[8, 9]]  # ' ' + 'c'
    assert with_option("Answer:", "yes") == "Answer: yes"
    assert with_option("Answer:\n", "yes") == "Answer:\n yes"
    assert with_option("Answer: ", "yes") == "Answer:  yes"


def test_calibrated_score_credits_what_the_passage_adds(monkeypatch):
    """An option likely anywhere (option 0) wins the plain score; the one the passage makes
    likelier (option 1, gold) wins the calibrated score."""
    from hf_ipt.evaluation import evaluate, harness
    from hf_ipt.evaluation.tasks import Example, Task

    nlls = {"passage\n\nQ:": [1.0, 1.5], "Q:": [0.5, 2.5]}
    monkeypatch.setattr(harness, "score_options", lambda model, tok, prompts, options, **kw: [nlls[p] for p in prompts])
    model = SimpleNamespace(training=False, eval=lambda: None, train=lambda mode: None, name_or_path="m")
    task = Task("t", "accuracy", [Example("passage\n\nQ:", ["a", "b"], gold=1, null_prompt="Q:")])
    assert task.is_calibrated
    assert evaluate(model, SimpleNamespace(), [task], add_bos=False) == {"t": {"accuracy": 0.0, "accuracy_calibrated": 100.0}}
    plain = Task("t", "accuracy", [Example("passage\n\nQ:", ["a", "b"], gold=1)])
    assert not plain.is_calibrated
    assert evaluate(model, SimpleNamespace(), [plain], add_bos=False) == {"t": {"accuracy": 0.0}}


def test_null_input_round_trips_through_task_rows():
    from hf_ipt.evaluation.tasks import Example

    row = {"input": "passage\n\nQ:", "options": ["a", "b"], "gold_index": 1, "null_input": "Q:"}
    assert Example.from_row(row).null_prompt == "Q:" and Example.from_row(row).to_row() == row
    with pytest.raises(ValueError, match="null_input"):
        Example.from_row({**row, "null_input": 3})


def test_heldout_items_ask_their_question_alone_as_the_null_prompt():
    from hf_ipt.evaluation.heldout import heldout_tasks

    texts = [f"Title {i} of the day\n\n" + " ".join(f"Sentence {j} of article {i} is long enough to count here."
                                                    for j in range(6)) for i in range(8)]
    for task in heldout_tasks(texts):
        assert task.is_calibrated
        for example in task.examples:
            assert example.prompt.endswith("\n\n" + example.null_prompt) and example.null_prompt.startswith("Question:")


def test_calibrated_ties_go_to_the_plain_score(monkeypatch):
    """A null prompt that leaves the scored context unchanged ties every option: the plain score
    decides, not the option's position."""
    from hf_ipt.evaluation import evaluate, harness
    from hf_ipt.evaluation.tasks import Example, Task

    nlls = {"passage\n\nQ:": [2.0, 1.0], "Q:": [2.0, 1.0]}
    monkeypatch.setattr(harness, "score_options", lambda model, tok, prompts, options, **kw: [nlls[p] for p in prompts])
    model = SimpleNamespace(training=False, eval=lambda: None, train=lambda mode: None, name_or_path="m")
    task = Task("t", "accuracy", [Example("passage\n\nQ:", ["a", "b"], gold=1, null_prompt="Q:")])
    assert evaluate(model, SimpleNamespace(), [task], add_bos=False) == {"t": {"accuracy": 100.0, "accuracy_calibrated": 100.0}}


def test_null_input_must_be_a_question_and_partial_ones_are_named(caplog):
    from hf_ipt.evaluation.tasks import Example, Task

    row = {"input": "passage\n\nQ:", "options": ["a", "b"], "gold_index": 1}
    with pytest.raises(ValueError, match="null_input"):
        Example.from_row({**row, "null_input": " "})
    with caplog.at_level("WARNING"):
        task = Task("t", "accuracy", [Example.from_row({**row, "null_input": "Q:"}), Example.from_row(row)])
    assert not task.is_calibrated and "1 of 2 rows have a `null_input`" in caplog.text


# --- task files a user gets wrong: refused when loaded, naming where ---------------------------
@pytest.mark.parametrize(("options", "message"), [
    (["yes", "yes", "no"], "options 0 and 1 are both 'yes'"),
    (["", "no"], "option 0 is ''"),
    (["yes", "  "], "option 1 is '  '"),
])
def test_duplicate_or_empty_options_are_refused(options, message):
    """Equal options score the same, so the first always won: a gold on the second scored 0
    whatever the model; an empty option scored only the space before it."""
    with pytest.raises(ValueError, match=message):
        Task("t", "accuracy", [Example("Q?", options, 1)])


def test_a_classification_row_with_a_label_but_no_gold_index_says_so():
    with pytest.raises(ValueError, match="by `gold_index`, not by `label` 'no'"):
        Task("t", "accuracy", [Example("Q?", ["yes", "no"], None, references=["no"])])


def test_row_errors_name_the_file_and_the_example(tmp_path):
    rows = [{"input": "Q?", "options": ["a", "b"], "gold_index": 0}] * 3
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"metric": "accuracy", "examples": [*rows, {"input": "R?", "options": "a,b"}]}))
    with pytest.raises(ValueError, match=r"t\.json, example 3: a task row's `options` is a list of strings"):
        load_task_file(path)
    # Errors found on the whole task (an option twice) name the file too.
    path.write_text(json.dumps({"metric": "accuracy", "examples": [*rows, {"input": "R?", "options": ["a", "a"],
                                                                             "gold_index": 1}]}))
    with pytest.raises(ValueError, match=r"t\.json: .*options 0 and 1 are both 'a'"):
        load_task_file(path)
    # a Hub-layout file in JSON lines: the line of the file that is broken, and the file
    (tmp_path / "hub" / "FPB").mkdir(parents=True)
    lines = [json.dumps(r) for r in rows] + ['{"input": "R?", "options": ["a", "b"], "gold_index": 1']
    (tmp_path / "hub" / "FPB" / "test.json").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"FPB/test\.json, line 4: not a JSON row"):
        load_tasks(tmp_path / "hub")


def test_a_json_lines_row_may_hold_a_line_separator_character(tmp_path):
    """`json.dumps(..., ensure_ascii=False)` writes U+2028 as is; `str.splitlines` split rows there."""
    path = tmp_path / "rows.jsonl"
    row = {"input": "Q\u2028still Q?", "options": ["a", "b"], "gold_index": 0}
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    assert read_rows(path) == [row, row]


def test_a_partial_copy_of_a_paper_task_repo_says_what_is_missing(tmp_path, caplog):
    """A folder holding some of a domain's tasks (a partial download) loads them, and says which
    are missing: its average would not compare with the paper's."""
    from hf_ipt.evaluation.tasks import PAPER_TASKS

    spec = PAPER_TASKS["finance"][0]
    (tmp_path / spec.path).parent.mkdir(parents=True)
    (tmp_path / spec.path).write_text(json.dumps({"input": "Q?", "options": ["a", "b"], "gold_index": 0}) + "\n")
    with caplog.at_level("WARNING"):
        tasks = load_tasks(tmp_path)
    assert [t.name for t in tasks] == [spec.name]
    missing = [s.name for s in PAPER_TASKS["finance"][1:]]
    assert f"holds 1 of the {len(PAPER_TASKS['finance'])} finance tasks (missing: {', '.join(missing)})" in caplog.text
    (tmp_path / "dataset_infos.json").write_text("{}")  # a file a dataset repo may ship: not a task, no warning
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_tasks(tmp_path)
    assert "not read" not in caplog.text
    # a task file of one's own beside the paper's folders was dropped without a word
    (tmp_path / "mine.json").write_text(json.dumps(Task("mine", "accuracy", [Example("Q?", ["a", "b"], 0)]).to_dict()))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert [t.name for t in load_tasks(tmp_path)] == [spec.name]
    assert (f"is read as the paper's task layout ({spec.name}/test.json ...): the 1 *.json file(s) beside its folders "
            "are not read, such as 'mine.json'; give them as --tasks too") in caplog.text


def test_task_files_saved_with_a_byte_order_mark_load(tmp_path):
    """Notepad and PowerShell write UTF-8 with a BOM; json refused the file."""
    task = Task("bom", "accuracy", [Example("Qué? ✓", ["sí", "no"], 0)])
    text = json.dumps(task.to_dict(), ensure_ascii=False)
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_task_file(tmp_path / "bom.json") == task
    (tmp_path / "hub" / "FPB").mkdir(parents=True)
    (tmp_path / "hub" / "FPB" / "test.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([task.examples[0].to_row()]).encode())
    assert load_tasks(tmp_path / "hub")[0].examples == task.examples


def test_f1_classes_are_the_option_texts_not_their_positions():
    """Rows listing the same options in another order: the answer chosen is the class."""
    from hf_ipt.evaluation.harness import score_task

    examples = [Example("A", ["pos", "neg"], 0), Example("B", ["neg", "pos"], 0)]  # gold: pos, neg
    predictions = [0, 1]  # "pos" both times
    # by hand: pos P=1/2 R=1 F=2/3 (support 1); neg F=0 (support 1) -> weighted 1/3
    assert score_task(Task("t", "weighted_f1", examples), predictions) == {"weighted_f1": pytest.approx(100 / 3)}
    assert score_task(Task("t", "micro_f1", examples), predictions) == {"micro_f1": pytest.approx(50.0)}
    headline = [Example(e.prompt, e.options, e.gold, group="0") for e in examples]
    assert score_task(Task("t", "headline_f1", headline), predictions) == {"headline_f1": pytest.approx(100 / 3)}


# --- limits: checked, and truncation reported ---------------------------------------------------
@pytest.mark.parametrize("max_length", [0, -5])
def test_a_max_length_below_one_is_refused_not_read_as_the_model_context(tiny, max_length):
    from hf_ipt.evaluation.scoring import EvalInputError, generate_answers, score_options

    model, tokenizer = tiny
    with pytest.raises(EvalInputError, match="`max_length` must be a positive number"):
        score_options(model, tokenizer, PROMPTS[:1], OPTIONS[:1], max_length=max_length)
    with pytest.raises(EvalInputError, match="`max_length` must be a positive number"):
        generate_answers(model, tokenizer, PROMPTS[:1], max_length=max_length)


def test_a_max_length_with_no_room_for_the_prompt_is_a_clear_error(tiny):
    from hf_ipt.evaluation.scoring import EvalInputError, generate_answers, score_options

    model, tokenizer = tiny
    with pytest.raises(EvalInputError, match="an option of prompt .* takes \\d+ tokens, `max_length` is 2"):
        score_options(model, tokenizer, PROMPTS[:1], [["maybe so", "no"]], max_length=2)
    with pytest.raises(EvalInputError, match="`max_length` 50 leaves no room for a prompt before the 100 new tokens"):
        generate_answers(model, tokenizer, ["Q"], max_length=50)


def test_truncated_prompts_are_reported(tiny, caplog):
    from hf_ipt.evaluation import evaluate
    from hf_ipt.evaluation.scoring import generate_answers, score_options

    model, tokenizer = tiny
    with caplog.at_level("WARNING", logger="hf_ipt.evaluation.scoring"):
        score_options(model, tokenizer, PROMPTS, OPTIONS, max_length=20)
        generate_answers(model, tokenizer, PROMPTS[2:], max_length=25, max_new_tokens=4)
    messages = [r.getMessage() for r in caplog.records]
    assert any("scoring options: 1 of 3 prompts were left-truncated to fit max_length=20" in m for m in messages)
    assert any("generating: 1 of 1 prompts were left-truncated to fit max_length=25" in m for m in messages)
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_ipt.evaluation.scoring"):  # through the harness: named by task
        evaluate(model, tokenizer, [Task("cut_task", "accuracy", [Example(p, o, 0) for p, o in zip(PROMPTS, OPTIONS)])],
                 max_length=20)
    assert "cut_task: 1 of 3 prompts were left-truncated" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_ipt.evaluation.scoring"):
        score_options(model, tokenizer, PROMPTS, OPTIONS)  # the model's context: nothing cut
    assert not caplog.records


def test_a_zero_batch_size_is_refused_up_front(tiny, tiny_model_dir):
    """EvalCallback used to accept it and fail at its first evaluation, hours into training."""
    from hf_ipt.evaluation import EvalCallback, evaluate

    model, tokenizer = tiny
    task = Task("mc", "accuracy", [Example(p, o, 0) for p, o in zip(PROMPTS, OPTIONS)])
    with pytest.raises(ValueError, match="`batch_size` must be >= 1, got 0"):
        EvalCallback([task], tokenizer, eval_steps=10, batch_size=0)
    with pytest.raises(ValueError, match="`batch_size` must be >= 1, got 0"):
        evaluate(model, tokenizer, [task], batch_size=0, progress=False)


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_results_do_not_depend_on_batch_size_or_the_tokenizers_padding_side(tiny, padding_side):
    """Prompts of many lengths share batches: padding must change neither a score nor an answer,
    whatever padding side the checkpoint's tokenizer was saved with (scoring pads on the left itself)."""
    import copy

    from hf_ipt.evaluation import generate_answers, score_options

    model, tokenizer = tiny
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.padding_side = padding_side
    prompts = [PROMPTS[2][:n] for n in (5, 17, 40, 90, 130, 200, 12, 60, 3)]
    options = [OPTIONS[i % 3] for i in range(len(prompts))]
    one = score_options(model, tokenizer, prompts, options, add_bos=True, batch_size=1, max_length=40)
    eight = score_options(model, tokenizer, prompts, options, add_bos=True, batch_size=8, max_length=40)
    for a, b in zip(one, eight):
        assert a == pytest.approx(b, abs=1e-5)
    answers = [generate_answers(model, tokenizer, prompts, add_bos=True, batch_size=n, max_new_tokens=6, max_length=40)
               for n in (1, 8)]
    assert answers[0] == answers[1] and len(set(answers[0])) > 1
