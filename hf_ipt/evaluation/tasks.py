"""Evaluation tasks as data: a prompt, then options to score or references to match.

A task row uses the columns of the AdaptLLM task files on the Hub:

- ``input``: the prompt (few-shot demonstrations included), always present;
- ``options`` + ``gold_index``: a classification row (score each option, pick one);
- ``label``: a generation row (a string or a list of strings; the first one is scored);
- ``class_id``: the sub-question of a Headline row (its metric averages over sub-questions);
- ``null_input`` (hf_ipt's own, optional): the prompt without its passage (the question alone);
  a classification task whose every row has one is also scored calibrated (`Example`).

Two on-disk forms are read:

- a *task file* ``name.json``: ``{"name": ..., "metric": ..., "examples": [rows]}``;
- a folder in the layout of ``AdaptLLM/finance-tasks`` / ``AdaptLLM/medicine-tasks``
  (``FPB/test.json``, ``ConviFinQA/test.json``, ``pubmed_qa/test.json`` ...), whose files hold
  rows only, as a JSON list or JSON lines; `PAPER_TASKS` knows each task's folder and metric.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

logger = logging.getLogger(__name__)

MetricName = Literal[
    "accuracy", "micro_f1", "weighted_f1", "headline_f1", "entity_f1", "numeric_match"
]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)
GENERATION_METRICS = frozenset({"entity_f1", "numeric_match"})


@dataclass(frozen=True)
class TaskSpec:
    """Where one of the paper's tasks lives on the Hub and how it is scored."""

    name: str
    repo_id: str
    config: str
    path: str  # relative to the dataset repo root (note the Hub's own `ConviFinQA` spelling)
    metric: MetricName


_FIN, _MED = "AdaptLLM/finance-tasks", "AdaptLLM/medicine-tasks"
# The paper's domain task sets: layout from the dataset cards' `configs`, metrics from the
# authors' evaluation scripts (LMOps/adaptllm).
PAPER_TASKS: dict[str, tuple[TaskSpec, ...]] = {
    "finance": (
        TaskSpec("FPB", _FIN, "FPB", "FPB/test.json", "weighted_f1"),
        TaskSpec("FiQA_SA", _FIN, "FiQA_SA", "FiQA_SA/test.json", "weighted_f1"),
        TaskSpec("Headline", _FIN, "Headline", "Headline/test.json", "headline_f1"),
        TaskSpec("NER", _FIN, "NER", "NER/test.json", "entity_f1"),
        TaskSpec("ConvFinQA", _FIN, "ConvFinQA", "ConviFinQA/test.json", "numeric_match"),
    ),
    "medicine": (
        TaskSpec("PubMedQA", _MED, "PubMedQA", "pubmed_qa/test.json", "accuracy"),
        TaskSpec("ChemProt", _MED, "ChemProt", "ChemProt/test.json", "micro_f1"),
        TaskSpec("MQP", _MED, "MQP", "MedQs/test.json", "accuracy"),
        TaskSpec("RCT", _MED, "RCT", "RCT/test.json", "micro_f1"),
        TaskSpec("USMLE", _MED, "USMLE", "usmle/test.json", "accuracy"),
    ),
}
DOMAIN_ALIASES = {"biomedicine": "medicine"}


def _answer(value: Any) -> bool:
    """A reference answer: a string or a number (not a bool)."""
    return isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool))


@dataclass
class Example:
    """One evaluation item.

    Args:
        prompt (`str`): the text the model continues.
        options (`list[str]`, *optional*): candidate answers (classification); each is scored
            as ``' ' + option`` after the prompt.
        gold (`int`, *optional*): index of the right option (classification).
        references (`list[str]`, *optional*): accepted answers (generation); the first is scored.
        group (`str`, *optional*): sub-question id (Headline's ``class_id``).
        null_prompt (`str`, *optional*): the prompt without the passage it asks about (column
            ``null_input``). When every example of a classification task has one, the task is
            also scored ``<metric>_calibrated``: each option's NLL after `prompt` minus its NLL
            after `null_prompt`, lowest wins (domain-conditional PMI, Holtzman et al. 2021). It
            credits only what the passage adds, so a weak model's preference for likely-sounding
            options does not hide whether it read the passage.
    """

    prompt: str
    options: list[str] = field(default_factory=list)
    gold: int | None = None
    references: list[str] = field(default_factory=list)
    group: str | None = None
    null_prompt: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Example:
        """Build an example from a row with the AdaptLLM columns (see the module docstring)."""
        if not isinstance(row, dict):
            raise ValueError(  # noqa: TRY004 - a bad value in a task file: callers report ValueErrors as usage errors
                f"a task row is a JSON object with an `input`, got {type(row).__name__} {row!r:.80}")
        if "input" not in row:
            raise ValueError(f"a task row needs an `input` column, got columns {sorted(row)}")
        if not isinstance(row["input"], str):
            raise ValueError(f"a task row's `input` is a string, got {row['input']!r:.80}")  # noqa: TRY004
        label = row.get("label")
        labels = [] if label is None else [label] if isinstance(label, (str, int, float)) else label
        if not isinstance(labels, list) or not all(_answer(x) for x in labels):
            raise ValueError(f"a task row's `label` is a string, a number or a list of them, got {label!r:.80}")
        references = [str(x) for x in labels]  # a numeric gold answer (ConvFinQA-style) as its text
        options = row.get("options") or []
        if not isinstance(options, list) or not all(isinstance(x, str) for x in options):
            raise ValueError(f"a task row's `options` is a list of strings, got {options!r:.80}")
        gold = row.get("gold_index")
        if isinstance(gold, bool):
            raise ValueError(f"a task row's `gold_index` is an integer, got {gold!r}")  # noqa: TRY004
        group = row.get("class_id")
        null_prompt = row.get("null_input")
        if null_prompt is not None and (not isinstance(null_prompt, str) or not null_prompt.strip()):
            raise ValueError(f"a task row's `null_input` is a non-empty string (the question without its passage), "
                             f"got {null_prompt!r:.80}")
        return cls(
            prompt=row["input"],
            options=list(options),
            gold=gold,
            references=references,
            group=None if group is None else str(group),
            null_prompt=null_prompt,
        )

    def to_row(self) -> dict[str, Any]:
        """The inverse of `from_row`: a JSON-ready row with the AdaptLLM columns."""
        row: dict[str, Any] = {"input": self.prompt}
        if self.options:
            row.update(options=self.options, gold_index=self.gold)
        if self.references:
            row["label"] = self.references
        if self.group is not None:
            row["class_id"] = self.group
        if self.null_prompt is not None:
            row["null_input"] = self.null_prompt
        return row


@dataclass
class Task:
    """A named list of examples and the metric that scores them.

    Args:
        name (`str`): task name, used as the key of the results.
        metric (`str`): one of `METRIC_NAMES`; ``entity_f1`` and ``numeric_match`` make a
            generation task, the others a classification task.
        examples (`list[Example]`): the items.
    """

    name: str
    metric: MetricName
    examples: list[Example]

    def __post_init__(self) -> None:
        if self.metric not in METRIC_NAMES:
            raise ValueError(
                f"`metric` must be one of {METRIC_NAMES}, got {self.metric!r} (task {self.name!r})"
            )
        if not self.examples:
            raise ValueError(f"task {self.name!r} has no examples")
        for i, example in enumerate(self.examples):
            self._check(i, example)
        with_null = sum(e.null_prompt is not None for e in self.examples)
        if 0 < with_null < len(self.examples) or (with_null and self.is_generation):
            logger.warning("hf_ipt: task %r: %d of %d rows have a `null_input`; it is scored calibrated only when "
                           "every row of a classification task has one", self.name, with_null, len(self.examples))

    @property
    def is_generation(self) -> bool:
        return self.metric in GENERATION_METRICS

    @property
    def is_calibrated(self) -> bool:
        """Whether the task is also scored calibrated: classification, every example with a `null_prompt`."""
        return not self.is_generation and all(e.null_prompt is not None for e in self.examples)

    def _check(self, i: int, example: Example) -> None:
        where = f"task {self.name!r}, example {i}"
        if self.is_generation and not example.references:
            raise ValueError(f"{where}: a {self.metric} task needs a `label` (reference answer)")
        if self.is_generation:
            return
        if len(example.options) < 2:
            raise ValueError(f"{where}: a {self.metric} task needs >= 2 `options`")
        if blank := [j for j, option in enumerate(example.options) if not option.strip()]:
            raise ValueError(f"{where}: option {blank[0]} is {example.options[blank[0]]!r}: an empty option scores "
                             "only the space before it, so it is refused")
        if len(set(example.options)) < len(example.options):
            twice = next(o for o in example.options if example.options.count(o) > 1)
            first = example.options.index(twice)
            again = example.options.index(twice, first + 1)
            raise ValueError(f"{where}: options {first} and {again} are both {twice!r}: equal options score the same, "
                             f"so option {first} always wins; give each option once")
        if not isinstance(example.gold, int) or not 0 <= example.gold < len(example.options):
            hint = ""
            if example.gold is None and example.references:  # a `label` does not say which option is right
                hint = f" (a classification row names its right option by `gold_index`, not by `label` {example.references[0]!r:.40})"
            raise ValueError(
                f"{where}: `gold_index` must index `options` (0..{len(example.options) - 1}), "
                f"got {example.gold!r}{hint}"
            )
        if self.metric == "headline_f1" and example.group is None:
            raise ValueError(f"{where}: a headline_f1 task needs a `class_id` per row")

    def head(self, n: int | None) -> Task:
        """The first `n` examples (all when `n` is None)."""
        if n is None or n >= len(self.examples):
            return self
        if n < 1:
            raise ValueError(f"`max_examples` must be >= 1, got {n}")
        return replace(self, examples=self.examples[:n])

    def to_dict(self) -> dict[str, Any]:
        """The task-file form: ``{"name", "metric", "examples": [rows]}``."""
        return {
            "name": self.name,
            "metric": self.metric,
            "examples": [e.to_row() for e in self.examples],
        }


def _read_text(path: str | os.PathLike) -> str:
    """A UTF-8 file's text; a byte-order mark (as some Windows editors write) is dropped."""
    return Path(path).read_text(encoding="utf-8-sig")


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a JSON list file or a JSON-lines file.

    Raises:
        `ValueError`: the file is neither, naming the file and the line (of the file) that fails.
    """
    text = _read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a valid JSON list of rows ({error})") from None
    rows = []
    # "\n" only: `splitlines` also breaks at U+2028/U+2029, which JSON strings may hold unescaped
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not a JSON row ({error.msg}, column {error.colno}); "
                                 "a task data file is a JSON list of rows or one JSON row per line") from None
    return rows


def _examples(rows: Iterable[Any], where: str | os.PathLike) -> list[Example]:
    """`Example.from_row` of each row; an error names the file and the row."""
    examples = []
    for i, row in enumerate(rows):
        try:
            examples.append(Example.from_row(row))
        except ValueError as error:
            raise ValueError(f"{where}, example {i}: {error}") from None
    return examples


def load_task_file(path: str | os.PathLike) -> Task:
    """Load a task file ``{"name": ..., "metric": ..., "examples": [rows]}``."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); a task file is one JSON object") from None
    if not isinstance(data, dict) or "metric" not in data or "examples" not in data:
        raise ValueError(
            f"{path} is not a task file: expected a JSON object with `metric` and `examples` "
            "(rows with `input` + `options`/`gold_index` or `label`)"
        )
    rows = data["examples"]
    if not isinstance(rows, list):
        raise ValueError(f"{path}: `examples` is a list of rows, got {type(rows).__name__}")  # noqa: TRY004
    name = data.get("name") or Path(path).stem
    return _task(name, data["metric"], rows, path)


def _task(name: str, metric: str, rows: Iterable[Any], where: str | os.PathLike) -> Task:
    """`Task` of `rows`; an error of a row or of the task (an option twice, a gold index out of
    range) names where the rows come from."""
    examples = _examples(rows, where)
    try:
        return Task(name, metric, examples)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def save_task_file(task: Task, path: str | os.PathLike) -> Path:
    """Write `task` as a task file that `load_task_file` reads back."""
    path = Path(path)
    path.write_text(json.dumps(task.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def task_specs(domain: str, names: Iterable[str] | None = None) -> list[TaskSpec]:
    """The paper's tasks of `domain` ("finance" or "medicine"), optionally only `names`."""
    domain = DOMAIN_ALIASES.get(domain, domain)
    if domain not in PAPER_TASKS:
        raise ValueError(f"unknown task set {domain!r}: use one of {sorted(PAPER_TASKS)}")
    specs = PAPER_TASKS[domain]
    if names is None:
        return list(specs)
    by_name = {s.name: s for s in specs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown {domain} task(s) {unknown}: use some of {list(by_name)}")
    return [by_name[n] for n in names]


def load_paper_task(spec: TaskSpec, data_dir: str | os.PathLike | None = None) -> Task:
    """Load one of the paper's tasks from a local copy of its Hub repo, or from the Hub.

    Args:
        spec (`TaskSpec`): the task, from `PAPER_TASKS`.
        data_dir (`str`, *optional*): a folder with the Hub repo's layout (e.g. a
            ``hf download AdaptLLM/finance-tasks --repo-type dataset --local-dir DIR`` target);
            when None, the test split is read from the Hub with `datasets.load_dataset`, or offline
            (``HF_HUB_OFFLINE=1``) from the Hugging Face cache when it holds the repo (a ``hf download
            AdaptLLM/finance-tasks --repo-type dataset`` made where the Hub is reachable).
    """
    if data_dir is None:
        from ..corpus import cached_dataset

        data_dir = cached_dataset(spec.repo_id, None, f"task {spec.name!r} ({spec.repo_id})",
                                  allow_patterns=[spec.path])
    if data_dir is not None:
        path = Path(data_dir) / spec.path
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: `data_dir` must have the layout of {spec.repo_id} "
                f"({spec.path} for {spec.name})"
            )
        rows: Sequence[dict[str, Any]] = read_rows(path)
        where: str | Path = path
    else:
        import datasets

        from ..cli import needs_hub

        with needs_hub(f"task {spec.name!r} is read from the Hub ({spec.repo_id})", "download the repo there (`hf "
                       f"download {spec.repo_id} --repo-type dataset`, into the Hugging Face cache, which is read "
                       "offline; or with `--local-dir DIR`, then give that folder as `data_dir` (--data_dir DIR))"):
            rows = datasets.load_dataset(spec.repo_id, spec.config, split="test")
        where = f"{spec.repo_id} ({spec.config}, test split)"
    return _task(spec.name, spec.metric, rows, where)


def _paper_specs_in(folder: Path) -> list[TaskSpec]:
    return [s for specs in PAPER_TASKS.values() for s in specs if (folder / s.path).is_file()]


def _warn_missing_paper_tasks(folder: Path, found: list[TaskSpec]) -> None:
    """A folder in the layout of a paper's task repo that lacks some of its tasks (a partial
    download): its domain average would not compare with the paper's, so say which are missing."""
    for domain, specs in PAPER_TASKS.items():
        present = [s for s in specs if s in found]
        missing = [s.name for s in specs if s not in found]
        if present and missing:
            logger.warning("hf_ipt: %s holds %d of the %d %s tasks (missing: %s): its average does not compare "
                           "with one over all of them", folder, len(present), len(specs), domain, ", ".join(missing))


def _load_path(path: Path) -> list[Task]:
    if path.is_file():
        return [load_task_file(path)]
    specs = _paper_specs_in(path)
    files = sorted(path.glob("*.json"))
    if specs:
        _warn_missing_paper_tasks(path, specs)
        from ..corpus import NOT_DATA

        if files := [f for f in files if not NOT_DATA.fullmatch(f.name)]:  # not a repo's dataset_infos.json  # read as the paper's layout: its own task files beside it were left out without a word
            logger.warning("hf_ipt: %s is read as the paper's task layout (%s/test.json ...): the %d *.json file(s) "
                           "beside its folders are not read, such as %r; give them as --tasks too to evaluate them",
                           path, specs[0].name, len(files), files[0].name)
        return [load_paper_task(s, path) for s in specs]
    if not files:
        raise FileNotFoundError(
            f"{path} holds no task: expected task files (*.json) or the layout of "
            f"{_FIN} / {_MED} (e.g. FPB/test.json)"
        )
    return [load_task_file(f) for f in files]


def _load_item(item: str, data_dir: str | os.PathLike | None) -> list[Task]:
    where = _resolve_item(item)
    if isinstance(where, Path):
        return _load_path(where)
    return [load_paper_task(s, data_dir) for s in where]


def _resolve_item(item: str) -> Path | list[TaskSpec]:
    """A task file or folder, or the paper's tasks `item` names; `FileNotFoundError` or `ValueError`
    for an item that names none (nothing is read)."""
    domain, _, name = item.partition("/")
    domain = DOMAIN_ALIASES.get(domain, domain)
    paper = domain in PAPER_TASKS and (not name or name in {s.name for s in PAPER_TASKS[domain]})
    if Path(item).exists() and not paper:  # "finance/mine.json" is a file; a local folder named "finance" needs "./finance"
        return Path(item)
    if domain in PAPER_TASKS:
        return task_specs(domain, [name] if name else None)
    if item.endswith((".json", ".jsonl")) or item.startswith((".", "/", "~")):
        raise FileNotFoundError(f"task file or folder {item!r} does not exist")
    raise ValueError(
        f"cannot resolve task {item!r}: use 'finance', 'medicine', 'finance/FPB' (one task), "
        "a task file (*.json) or a folder of tasks"
    )


def check_task_names(tasks: str) -> None:
    """Raise as `load_tasks` would for a comma-separated item that names no task (a task file or
    folder that does not exist, an unknown paper task), without reading any: a training run checks
    its `eval_tasks` so before a model loads."""
    for item in (t.strip() for t in tasks.split(",")):
        if item:
            _resolve_item(item)


def load_tasks(
    tasks: str | os.PathLike | Task | Sequence[Task | str | os.PathLike],
    *,
    data_dir: str | os.PathLike | None = None,
    max_examples: int | None = None,
) -> list[Task]:
    """Resolve a task specification into `Task` objects.

    Args:
        tasks (`str`, `Path`, `Task` or a list of them): a task set name (``"finance"``,
            ``"medicine"``), one paper task (``"finance/FPB"``), several comma-separated
            (``"finance/FPB,medicine"``), a task file, a folder (task files or the Hub layout),
            or `Task` objects.
        data_dir (`str`, *optional*): local copy of the Hub repos for task set names.
        max_examples (`int`, *optional*): keep the first `max_examples` of each task.
    """
    items: list[Task | str | os.PathLike]
    if isinstance(tasks, (Task, os.PathLike)):
        items = [tasks]
    elif isinstance(tasks, str):
        items = [t.strip() for t in tasks.split(",") if t.strip()]
    else:
        items = list(tasks)
    loaded: list[Task] = []
    for item in items:
        if isinstance(item, Task):
            loaded.append(item)
        elif isinstance(item, os.PathLike):
            loaded.extend(_load_path(Path(item)))
        else:
            loaded.extend(_load_item(item, data_dir))
    names = [t.name for t in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    return [t.head(max_examples) for t in loaded]
