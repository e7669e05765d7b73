"""`hf-ipt eval`: score a checkpoint on the paper's domain tasks (and, optionally, general ones).

Usage:
```bash
hf-ipt eval --model instruction-pretrain/finance-Llama3-8B --tasks finance --output_dir results/
hf-ipt eval --model ./my-checkpoint --tasks medicine --data_dir ./medicine-tasks --max_examples 100
hf-ipt eval --model ./my-checkpoint --tasks finance/FPB,finance/ConvFinQA --batch_size 16
hf-ipt eval --model ./my-checkpoint --tasks general   # lm-evaluation-harness (pip install lm-eval)
```
`--tasks` takes a task set (``finance``, ``medicine``), one paper task (``finance/FPB``), a
task file or folder, ``general`` (ARC, BoolQ, SIQA, WinoGrande, PIQA, OBQA, HellaSwag, MMLU
through lm-evaluation-harness), or several of these separated by commas. Scores are percents.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from ..cli import check_output_dir, parse_dataclasses, tidy_help, usage_errors
from ..files import write_atomic
from ..models import check_model_path
from ..training.card import EVAL_BY_CLI, eval_card, with_eval_results
from .scoring import check_batch_size

GENERAL = "general"
Dtype = Literal["auto", "bfloat16", "float16", "float32"]


@dataclass
class EvalScriptArguments:
    """Arguments of `hf-ipt eval`."""

    model_name_or_path: str = field(
        metadata={"help": "Checkpoint folder or Hub id (safetensors).", "aliases": ["--model"]}
    )
    tasks: str = field(
        default="finance",
        metadata={
            "help": "'finance', 'medicine', 'finance/FPB', 'general', a task file or folder; "
            "comma-separated for several."
        },
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where to write results.json, results.md and eval_settings.json."}
    )
    batch_size: int = field(default=8, metadata={"help": "Sequences per forward pass."})
    max_examples: int | None = field(
        default=None, metadata={"help": "Evaluate only the first N examples of each task."}
    )
    device: str | None = field(
        default=None, metadata={"help": "torch device; defaults to cuda when available, else cpu."}
    )
    dtype: Dtype = field(
        default="auto",
        metadata={"help": "Model dtype: auto (as saved), bfloat16, float16, float32."},
    )
    add_bos: Literal["auto", "yes", "no"] = field(
        default="auto",
        metadata={
            "help": "Prepend BOS: 'auto' = the paper's choice for the model family (with BOS for "
            "instruction-pretrain/Llama tokenizers, none for AdaptLLM v1 and tokenizers without)."
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Token limit of prompt + answer (model context by default; the "
            "reference scripts used 2048)."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Local copy of AdaptLLM/{finance,medicine}-tasks (same layout); "
            "read from the Hub when unset."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run model code from the checkpoint repo."}
    )
    update_card: bool = field(
        default=False,
        metadata={"help": "Also write the scores into the model card (README.md) of --model, a local folder an "
                  "hf_ipt recipe saved, in place of its Evaluation section (push the folder to publish them)."},
    )

    def __post_init__(self) -> None:
        if self.dtype not in get_args(Dtype):  # the parser checks --dtype; this checks code building the arguments
            raise ValueError(f"`dtype` must be one of {', '.join(get_args(Dtype))}, got {self.dtype!r} (--dtype)")
        check_batch_size(self.batch_size, "--batch_size")
        self.model_name_or_path = check_model_path(self.model_name_or_path)
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(
                f"`max_examples` must be >= 1, got {self.max_examples} (--max_examples)"
            )
        if self.max_length is not None and self.max_length < 1:  # 0 would silently mean the model's context
            raise ValueError(f"`max_length` must be >= 1 (tokens), got {self.max_length} (--max_length); "
                             "leave it out for the model's context")
        if self.output_dir:
            self.output_dir = check_output_dir(self.output_dir, "--output_dir")
        if self.update_card:
            eval_card(self.model_name_or_path)  # before any model loads
        if _split_tasks(self.tasks) == ([], False):
            raise ValueError(
                f"`tasks` names no task, got {self.tasks!r}: pass e.g. --tasks finance, "
                "--tasks finance/FPB,general or a task file (--tasks)"
            )
        if self.data_dir is not None and not _names_a_paper_domain(self.tasks):
            raise ValueError(
                f"`data_dir` {self.data_dir!r} would be ignored: it is where the paper's task repos are read from, "
                f"and --tasks {self.tasks!r} names none of their domains; name one (--tasks finance, "
                "--tasks medicine/PubMedQA) or leave --data_dir out (--data_dir)"
            )


def _names_a_paper_domain(tasks: str) -> bool:
    """Whether `--tasks` names one of the paper's domains (``finance``, ``medicine/RCT``...), the
    tasks `--data_dir` is read for (task files and folders are read where they are)."""
    from .tasks import DOMAIN_ALIASES, PAPER_TASKS

    domains = [item.partition("/")[0] for item in _split_tasks(tasks)[0]]
    return any(DOMAIN_ALIASES.get(d, d) in PAPER_TASKS for d in domains)


def make_parser():
    from transformers import HfArgumentParser

    return tidy_help(HfArgumentParser(
        EvalScriptArguments, prog="hf-ipt eval", description="Score a checkpoint on domain tasks."
    ))


def _split_tasks(spec: str) -> tuple[list[str], bool]:
    items = [t.strip() for t in spec.split(",") if t.strip()]
    return [t for t in items if t != GENERAL], GENERAL in items


def run(args: EvalScriptArguments) -> dict:
    """Load the model, evaluate, write and return ``{task: {metric: percent}}``."""
    import torch

    from hf_ipt.cli import UsageError
    from hf_ipt.models import load_causal_lm

    from .harness import domain_groups, evaluate
    from .scoring import EvalInputError, default_add_bos
    from .tasks import load_tasks

    domain, general = _split_tasks(args.tasks)
    try:  # the tasks first: a wrong path should not wait for a model to load
        domain = load_tasks(domain, data_dir=args.data_dir, max_examples=args.max_examples) if domain else []
    except (ValueError, OSError) as error:
        raise UsageError(f"--tasks {args.tasks!r}: {error}") from error
    if general:
        from .lm_eval_bridge import GENERAL_TASKS

        if clash := sorted({task.name for task in domain} & set(GENERAL_TASKS)):
            raise UsageError(f"--tasks {args.tasks!r}: domain task {clash[0]!r} has the name of a general benchmark, "
                             "whose score would replace it: rename the task (its `name` in the task file)")
    if general:  # before the domain tasks: a missing package should not wait for hours of scoring
        from .lm_eval_bridge import require_lm_eval

        try:
            require_lm_eval()
        except ImportError as error:
            raise UsageError(f"--tasks {args.tasks!r}: {error}") from error
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype)
    try:
        model, tokenizer = load_causal_lm(
            args.model_name_or_path,
            dtype=dtype,
            device=device,
            trust_remote_code=args.trust_remote_code,
        )
    except OSError as error:
        # A name that is neither a folder nor a model on the Hub is the user's to fix; network,
        # authentication or disk errors keep their traceback (a retry may help).
        user_error = ("is not a local folder and is not a valid model identifier", "Repo id must be")
        if not any(text in str(error) for text in user_error):
            raise
        raise UsageError(f"--model_name_or_path {args.model_name_or_path!r}: {error}") from error
    add_bos = {"yes": True, "no": False}.get(args.add_bos)
    if add_bos is None:
        add_bos = default_add_bos(tokenizer, args.model_name_or_path)
    common = {"batch_size": args.batch_size, "add_bos": add_bos, "max_length": args.max_length}
    settings = _settings(args, model, domain, general, add_bos, device)
    results = {}
    if domain:
        try:
            results.update(
                evaluate(
                    model,
                    tokenizer,
                    domain,
                    max_examples=args.max_examples,
                    data_dir=args.data_dir,
                    **common,
                )
            )
        except EvalInputError as error:  # a prompt or limit that cannot be scored: the user's to fix
            raise UsageError(f"--tasks {args.tasks!r}: {error}") from error
    groups = domain_groups(list(results))  # one average per paper domain, task files apart
    card = eval_card(args.model_name_or_path) if args.update_card else None
    if domain:  # kept, whatever happens to the general benchmarks
        _report(results, args.output_dir, groups if len(groups) > 1 else None, settings, card)
    if general:
        from .lm_eval_bridge import run_lm_eval

        try:
            benchmarks = run_lm_eval(model, tokenizer, limit=args.max_examples, **common)
            results.update(benchmarks)
            groups["general"] = list(benchmarks)
        except Exception as error:
            if domain:
                where = f" and in {args.output_dir}" if args.output_dir else ""
                print(
                    f"hf-ipt eval: the general benchmarks failed; the domain results are printed "
                    f"above{where}",
                    file=sys.stderr,
                )
            if isinstance(error, EvalInputError):  # e.g. --add_bos yes for a tokenizer without a BOS
                raise UsageError(f"--tasks {args.tasks!r}: {error}") from error
            raise
        _report(results, args.output_dir, groups if domain else None, settings, card)
    return results


SETTINGS_FILENAME = "eval_settings.json"


def _settings(args: EvalScriptArguments, model, domain: list, general: bool, add_bos: bool, device: str) -> dict:
    """What a score depends on besides the weights: two results files compare only when these agree."""
    import importlib.metadata

    from hf_ipt import __version__

    from .harness import scoring_settings

    return {
        "model": args.model_name_or_path,
        "tasks": args.tasks,
        **scoring_settings(model, domain, add_bos, args.max_length),  # examples per domain task, after --max_examples
        "max_examples": args.max_examples,
        "general_limit": args.max_examples if general else None,  # lm-eval's `limit` per leaf task
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "device": device,
        "batch_size": args.batch_size,
        "hf_ipt_version": __version__,
        # tokenization (transformers rebuilt Llama-style tokenizers in 5.0) and kernels change scores too
        "versions": {name: importlib.metadata.version(name) for name in ("transformers", "tokenizers", "torch")},
    }


def _report(results: dict, output_dir: str | None, groups: dict[str, list[str]] | None = None,
            settings: dict | None = None, card: Path | None = None) -> None:
    """Print the results table; write ``results.json``, ``results.md`` and the run's `settings`
    (``eval_settings.json``) in `output_dir` when given, and the scores into the model `card` (`eval_card`)
    when given. `groups`: averaged apart (`results_to_markdown`)."""
    from .harness import average_score, results_to_json, results_to_markdown

    table = results_to_markdown(results, groups=groups)
    print(table, flush=True)
    if card is not None:
        domain = [task for label, tasks in (groups or {}).items() if label != "general" for task in tasks]
        record = {"evaluated_by": EVAL_BY_CLI, "results": results,
                  "average": average_score({t: results[t] for t in domain} if domain else results),
                  "averages": {label: average_score({t: results[t] for t in tasks}) for label, tasks in groups.items()}
                  if groups and len(groups) > 1 else {},
                  "settings": settings or {}}
        text = with_eval_results(card.read_text("utf-8"), record)
        write_atomic(str(card), lambda temp: Path(temp).write_text(text, encoding="utf-8"))  # never half a card
        print(f"hf-ipt eval: scores written into the model card {card}", flush=True)
    if output_dir:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        results_to_json(results, out / "results.json")
        (out / "results.md").write_text(table, encoding="utf-8")
        if settings is not None:
            (out / SETTINGS_FILENAME).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hf-ipt eval``; returns the exit code."""
    parser = make_parser()
    (args,) = parse_dataclasses(parser, argv)
    with usage_errors(parser):
        run(args)
    return 0


if __name__ == "__main__":
    from ..cli import run_command

    raise SystemExit(run_command("eval", main))
