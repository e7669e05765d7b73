"""Model cards of the recipes: `render_model_card` is a pure function over the packaged template.

The template is ``hf_ipt/templates/model_card.md`` (package data, ``string.Template``
placeholders); this module only fills it. Evaluation results come from
``output_dir/domain_eval_results.json``, written by `hf_ipt.evaluation.EvalCallback`, when present.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from ..cards import public_location

logger = logging.getLogger(__name__)

SUMMARIES = {
    "continual_pt": "Domain-adaptive continual pre-training on instruction-augmented domain text mixed with "
    "general instructions by tokens.",
    "pretrain": "Pre-training from scratch on raw text, part of it instruction-augmented, plus the instruction "
    "synthesizer's fine-tuning collection.",
    "train_synthesizer": "An instruction synthesizer: given `<s> <CON> {text} </CON>\\n\\n` (after earlier "
    "examples of the same format), it writes `<QUE> {question} <ANS> {answer} </END>` pairs and stops at `</s>`.",
}
USAGE_NOTES = {
    "continual_pt": "A base model: prompt it with plain text (no chat template), as in pre-training.",
    "pretrain": "A base model: prompt it with plain text (no chat template), as in pre-training.",
    "train_synthesizer": "Use it as `hf_ipt`'s synthesizer (`BackendConfig(model_name_or_path=...)`) or "
    "build prompts with `hf_ipt.build_prompt` and tokenize them with `add_special_tokens=False`, with the "
    "tokenizer loaded as above (`hf_ipt.models.pretrained_tokenizer` does the same). Trained with LoRA "
    "(`--use_peft`), it is an adapter: merge it into its base first (`hf_ipt.models.merge_adapter`).",
}


@dataclass
class CardInfo:
    """What a recipe knows about its run that the Trainer does not.

    Args:
        recipe (`str`): ``"continual_pt"``, ``"pretrain"`` or ``"train_synthesizer"``.
        base_model (`str`, *optional*): checkpoint trained from; `None` when trained from scratch.
        base_revision (`str`, *optional*): the revision of `base_model` it loaded (``--model_revision``,
            or the commit it resolved to: `IPTTrainer` fills in the loaded config's commit).
        model_shape (`str`, *optional*): the named shape a from-scratch model was built with.
        data_mix (`list[dict]`): rows with ``source``, ``content``, ``token_share`` (0-1, or
            `None` when the source is mixed by documents) and ``note``.
        datasets (`list[str]`): Hub dataset ids of the sources, for the card metadata.
        adapter (`bool`, *optional*, defaults to `False`): the checkpoint is a PEFT adapter
            (LoRA/QLoRA) on `base_model`, not full weights.
        data_settings (`dict`): the recipe's data config; with `data_mix` it pins the data
            stream that a resumed run must find unchanged (`trainer.check_data_stream`).
    """

    recipe: str
    base_model: str | None = None
    base_revision: str | None = None
    model_shape: str | None = None
    data_mix: list[dict] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    adapter: bool = False
    data_settings: dict = field(default_factory=dict)


# `hf_ipt.evaluation.callback.RESULTS_FILENAME`, not imported: the card needs no torch.
EVAL_RESULTS_FILENAME = "domain_eval_results.json"


def read_eval_results(output_dir: str | Path) -> dict[str, Any] | None:
    """The evaluation record (``global_step``, ``results`` as ``{task: {metric: value}}``,
    ``average``) that `EvalCallback` wrote in `output_dir`, or `None`."""
    path = Path(output_dir) / EVAL_RESULTS_FILENAME
    return json.loads(path.read_text("utf-8")) if path.is_file() else None


# The key `EvalCallback` logs the average under (`hf_ipt.evaluation.callback.flatten_results`).
EVAL_AVERAGE_LOG = "eval_domain_average"


def run_eval_results(output_dir: str | Path, log_history: list[dict]) -> dict[str, Any] | None:
    """The evaluation record in `output_dir` when this run wrote it, else `None`.

    The record is this run's when the run's `log_history` (``trainer_state.json``, carried over a
    resume) logged its average at its step; a record left in `output_dir` by an earlier run there
    (another model, another step) is not, and its scores must not go into this run's card.
    """
    record = read_eval_results(output_dir)
    if record is None:
        return None
    step = record.get("global_step")
    if any(entry.get("step") == step and entry.get(EVAL_AVERAGE_LOG, object()) == record.get("average")
           for entry in log_history):
        return record
    logger.warning("hf_ipt: %s holds evaluation results (step %s) that this run did not log: another run's, "
                   "left out of the model card", Path(output_dir) / EVAL_RESULTS_FILENAME, step)
    return None


def render_model_card(
    info: CardInfo,
    *,
    model_name: str,
    repo_id: str,
    tokens_seen: int,
    tokens_per_step: int,
    max_steps: int,
    hyperparameters: dict[str, Any],
    eval_results: dict[str, Any] | None = None,
    tokens_exact: bool = True,
    tags: Sequence[str] = (),
    license: str | None = None,
    language: str | list[str] | None = None,
) -> str:
    """The model card (markdown with YAML metadata) of a recipe's checkpoint.

    `tokens_exact`: whether `tokens_seen` was counted; else it is steps x tokens per step, exact
    for packed blocks and an upper bound for the synthesizer's sequences, which are not full.
    `tags`, `license`, `language`: the user's metadata (``Trainer.push_to_hub(tags=...)``); the
    tags follow hf_ipt's.
    """
    info = from_cache_snapshot(info)
    revision = info.base_revision if info.base_revision not in (None, "main") else None
    if is_hub_id(info.base_model):
        tree = f"/tree/{revision}" if revision else ""
        base = f"[{info.base_model}](https://huggingface.co/{info.base_model}{tree})"
        base += f" at revision `{revision}`" if revision else ""
    elif info.base_model:
        base = f"`{public_location(info.base_model)}`"  # a local folder: not the user's folders
    else:
        base = f"none, trained from scratch (shape `{info.model_shape}`)"
    template = Template(
        resources.files("hf_ipt").joinpath("templates/model_card.md").read_text("utf-8")
    )
    return template.substitute(
        metadata=_metadata(info, tags, license, language),
        model_name=model_name,
        summary=SUMMARIES[info.recipe],
        recipe=info.recipe,
        base_model=base,
        tokens_seen=f"{tokens_seen:,}" if tokens_exact or info.recipe != "train_synthesizer" else
        f"at most {tokens_seen:,} (not counted: --include_num_input_tokens_seen counts them)",
        token_budget=f"{max_steps * tokens_per_step:,}",
        max_steps=f"{max_steps:,}",
        tokens_per_step=f"{tokens_per_step:,}",
        data_mix="\n".join(_mix_row(row, tokens_seen) for row in info.data_mix),
        hyperparameters="\n".join(f"| {key} | {value} |" for key, value in hyperparameters.items()),
        eval_results=_eval_table(eval_results),
        repo_id=repo_id,
        usage_note=USAGE_NOTES[info.recipe],
    )


def from_cache_snapshot(info: CardInfo) -> CardInfo:
    """`info` with a base model loaded from a Hugging Face cache snapshot folder
    (``~/.cache/huggingface/hub/models--org--name/snapshots/<sha>``, as a cluster's shared cache
    is often given) named as what it is: the Hub model ``org/name`` at commit ``<sha>``."""
    from ..models import cache_snapshot

    if (found := cache_snapshot(info.base_model)) is None:
        return info
    return replace(info, base_model=found[0], base_revision=found[1])


def is_hub_id(name: str | None) -> bool:
    """Whether a base model's name is a Hub model id, for the card's ``base_model:`` and link.

    An id as the Hub takes it (`huggingface_hub.utils.validate_repo_id`): ``owner/name``, or one
    word for the models that predate owners (``gpt2``, ``bert-base-uncased``), and not a local
    path (``outputs/cpt`` and ``mymodel`` are folders here when they exist). Safe for a base model
    only: `from_pretrained` loaded it, so a name that is no local path came from the Hub. A local
    folder is never taken for the Hub model its ``config.json`` may name (``_name_or_path``, which
    transformers no longer saves): it may hold a fine-tune of it. Data sources need more
    (`hf_ipt.training.trainer.hub_datasets`).
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not name or os.path.exists(name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _metadata(info: CardInfo, tags: Sequence[str], license: str | None, language: str | list[str] | None) -> str:
    """The YAML metadata block, dumped by PyYAML: a value YAML would misread written plain (a tag
    ``a: b`` or ``#x``, an id ``1984`` or ``true``) is quoted, as on the Hub's own cards."""
    import yaml

    metadata: dict[str, Any] = {
        "library_name": "peft" if info.adapter else "transformers",
        # every recipe trains a causal LM; the Hub infers no task for an adapter (no architectures to read)
        "pipeline_tag": "text-generation",
    }
    if license:
        metadata["license"] = license
    if language:
        metadata["language"] = language
    metadata["tags"] = list(dict.fromkeys(["hf_ipt", "instruction-pretraining", info.recipe, *tags]))
    if is_hub_id(info.base_model):
        metadata["base_model"] = info.base_model
    if info.datasets:
        metadata["datasets"] = list(info.datasets)
    return yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).rstrip()


def _mix_row(row: dict[str, Any], tokens_seen: int) -> str:
    share = row["token_share"]
    shares = ("-", "-") if share is None else (f"{share:.1%}", f"{round(share * tokens_seen):,}")
    return f"| {public_location(row['source'])} | {row['content']} | {shares[0]} | {shares[1]} | {row['note']} |"


NO_EVAL_RESULTS = "No evaluation results yet."
EVAL_HEADING = "\n## Evaluation\n"
EVAL_BY_CLI = "hf-ipt eval"  # `evaluated_by` of a record that `hf-ipt eval --update_card` writes


def eval_card(model_dir: str | Path) -> Path:
    """The model card (README.md) of the local model folder `model_dir` that `with_eval_results` can fill:
    one an hf_ipt recipe wrote (it has the template's Evaluation section). A `ValueError` says what is not."""
    readme = Path(model_dir) / "README.md"
    if not Path(model_dir).is_dir():
        raise ValueError(f"--update_card writes the scores into the model card of a local model folder, and "
                         f"{str(model_dir)!r} is none (a Hub id?): evaluate a local copy of it, or leave --update_card out")
    text = readme.read_text("utf-8") if readme.is_file() else ""
    if EVAL_HEADING not in text or "hf_ipt" not in text.split("\n---", 1)[0]:
        raise ValueError(f"--update_card: {str(readme)!r} is no model card of an hf_ipt recipe (its `## Evaluation` "
                         "section and `hf_ipt` tag), so there is no section to fill: leave --update_card out, and take "
                         "the scores from --output_dir")
    return readme


def with_eval_results(card: str, record: dict[str, Any]) -> str:
    """`card` (a recipe's model card) with its Evaluation section replaced by `record`'s scores (`_eval_table`)."""
    return with_eval_section(card, _eval_table(record))


def with_eval_section(card: str, section: str) -> str:
    """`card` (a recipe's model card, with `EVAL_HEADING`) with the body of its Evaluation section replaced by
    `section` (markdown), the sections after it kept."""
    head, rest = card.split(EVAL_HEADING, 1)
    after = rest.find("\n## ")
    tail = rest[after:] if after >= 0 else "\n"
    return f"{head}{EVAL_HEADING}\n{section}\n{tail}"


def _eval_table(record: dict[str, Any] | None) -> str:
    """The scores of `record`, with the examples scored per task and the settings when it has them
    (``settings``: written since 0.3.0.dev3)."""
    if not record or not record.get("results"):
        return NO_EVAL_RESULTS
    settings = record.get("settings") or {}
    examples = settings.get("examples") or {}
    sizes = settings.get("task_sizes") or {}
    rows = [
        f"| {task} | {metric} | {_number(value)} |" + (f" {_examples(examples.get(task), sizes.get(task))} |"
                                                       if examples else "")
        for task, metrics in record["results"].items()
        for metric, value in metrics.items()
    ]
    when = (f"Scored by `{EVAL_BY_CLI}` (hf_ipt {settings.get('hf_ipt_version', '?')}) on the saved model"
            if record.get("evaluated_by") == EVAL_BY_CLI else f"At step {record.get('global_step', '?')}")
    head = f"{when}, average {_number(record.get('average'))}:"
    if averages := record.get("averages"):  # tasks of both paper domains: each one's average, as the paper
        head = f"{when}, averages " + ", ".join(f"{label} {_number(value)}" for label, value in averages.items()) + ":"
    if not examples:  # a record of an older hf_ipt
        return "\n".join([head, "", "| Task | Metric | Value |", "|---|---|---|", *rows])
    if sizes:
        capped = any(n is not None and n < sizes.get(task, n) for task, n in examples.items())
    else:  # `hf-ipt eval` loads only the first --max_examples: whether a task had more is not known
        capped = None if settings.get("max_examples") is not None else False
    option = "--max_examples" if record.get("evaluated_by") == EVAL_BY_CLI else "--eval_max_examples"
    scored = (f"on the first {settings.get('max_examples')} examples of each task (`{option}`), not the whole "
              "tasks" if capped else f"on at most {settings.get('max_examples')} examples of each task (`{option}`)"
              if capped is None else "on every example of each task")
    note = (f"Scored {scored}; add_bos {str(settings.get('add_bos')).lower()}, max_length "
            f"{settings.get('max_length')} tokens.")
    return "\n".join([head, "", note, "", "| Task | Metric | Value | Examples |", "|---|---|---|---|", *rows])


def _examples(scored: int | None, size: int | None) -> str:
    """``3 of 12`` for a task scored on its first 3 examples, ``12`` for one scored whole."""
    if scored is None:
        return "?"
    return f"{scored} of {size}" if size is not None and scored < size else str(scored)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
