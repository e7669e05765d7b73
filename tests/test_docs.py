"""The documentation names only options, fields and files that exist.

Every `hf-ipt <command>`, `python -m hf_ipt...` and `recipes/<name>.py` command line in
README.md, docs/*.md and examples/ is checked flag by flag against that command's own parser,
and the option tables of docs/jobs.md and docs/builder.md against the configs they describe.
Cheap (parsers are built, nothing runs) and robust: a renamed or removed option fails here
instead of in a user's shell.
"""

from __future__ import annotations

import ast
import configparser
import dataclasses
import importlib.util
import json
import re
import shlex
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").iterdir())]


def _options(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


@cache
def command_options(command: str) -> frozenset[str]:
    """Option strings of an `hf-ipt` subcommand or a recipe (``recipes/<name>.py``)."""
    from transformers import HfArgumentParser

    from hf_ipt.augment import SynthesisConfig

    if command.startswith("recipes/"):
        spec = importlib.util.spec_from_file_location(Path(command).stem, ROOT / command)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        parser = module.make_parser()
        return frozenset(_options(parser) | {"--config"})  # TrlParser reads --config itself
    if command == "synthesize":
        from hf_ipt.synthesize_cli import make_parser

        return frozenset(_options(make_parser()))
    if command == "eval":
        from hf_ipt.evaluation.cli import make_parser

        return frozenset(_options(make_parser()))
    if command == "augment":
        from hf_ipt.augment_cli import AugmentArguments

        return frozenset(_options(HfArgumentParser((AugmentArguments, SynthesisConfig))))
    if command == "demo":
        from hf_ipt.demo import DemoConfig

        return frozenset(_options(HfArgumentParser((DemoConfig, SynthesisConfig))))
    if command == "push":
        from hf_ipt.publish_cli import PushArguments

        return frozenset(_options(HfArgumentParser(PushArguments)))
    raise KeyError(command)


COMMAND = re.compile(
    r"(?:\bhf-ipt (?P<sub>demo|augment|synthesize|push|eval)\b"
    r"|-m hf_ipt\.(?P<module>synthesize_cli|evaluation\.cli)\b"
    r"|(?P<recipe>recipes/(?:continual_pt|pretrain|train_synthesizer|mini_repro)\.py))"
)
MODULES = {"synthesize_cli": "synthesize", "evaluation.cli": "eval"}


def command_lines(text: str) -> list[str]:
    """Lines of fenced code blocks (backslash continuations joined) and inline code spans."""
    lines, block, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith(("srun ", "    --")):
            block.append(line.rstrip())
            if not line.rstrip().endswith("\\"):
                lines.append(" ".join(part.rstrip("\\") for part in block))
                block = []
    lines += re.findall(r"`([^`\n]+)`", text)
    return lines


def documented_flags() -> list[tuple[str, str, str]]:
    """(file, command, flag) for every flag written after a command on one command line."""
    found = []
    for path in DOCS:
        for line in command_lines(path.read_text(encoding="utf-8")):
            matches = list(COMMAND.finditer(line))
            for i, match in enumerate(matches):
                command = match["sub"] or MODULES.get(match["module"] or "") or match["recipe"]
                end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
                rest = line[match.end():end].split("#")[0].split("|")[0].split("&&")[0]
                try:
                    words = shlex.split(rest)
                except ValueError:
                    words = rest.split()
                for word in words:
                    if re.fullmatch(r"--[a-z][a-z0-9_-]*(=.*)?", word):
                        found.append((path.name, command, word.split("=")[0]))
    return found


FLAGS = documented_flags()


def test_the_docs_show_command_lines():
    commands = {command for _, command, _ in FLAGS}
    assert {"synthesize", "augment", "eval", "push", "demo", "recipes/continual_pt.py"} <= commands, commands


@pytest.mark.parametrize("command", sorted({c for _, c, _ in FLAGS}))
def test_every_flag_on_a_documented_command_line_exists(command):
    options = command_options(command)
    missing = sorted({(doc, flag) for doc, c, flag in FLAGS if c == command and flag not in options})
    assert not missing, f"{command}: documented flags it does not take: {missing}"


def _table_first_column(text: str, header: str) -> list[str]:
    """First-column code spans of the markdown table whose header row starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    names = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names += re.findall(r"`([^`]+)`", line.split("|")[1])
    return names


def _table_column(text: str, header: str, column: int) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    cells = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells.append(line.split("|")[column])
    return cells


def test_jobs_filter_table_names_real_options_and_defaults():
    from hf_ipt.filters import FilterConfig

    options = command_options("synthesize")
    defaults = {f.name: f.default for f in dataclasses.fields(FilterConfig)}
    text = (ROOT / "docs" / "jobs.md").read_text(encoding="utf-8")
    cells = _table_column(text, "| filter | removes |", 3)
    assert len(cells) == 5
    for cell in cells:
        for flag, value in re.findall(r"`(--[a-z_]+)(?: ([^`]+))?`", cell):
            assert flag in options, flag
            if value:
                assert str(defaults[flag[2:]]) == value, (flag, value, defaults[flag[2:]])


def test_builder_settings_table_names_real_fields():
    from hf_ipt.builder import AugmentedConfig

    fields = {f.name for f in dataclasses.fields(AugmentedConfig)}
    names = _table_first_column((ROOT / "docs" / "builder.md").read_text(encoding="utf-8"), "| field | default |")
    assert names and not set(names) - fields, sorted(set(names) - fields)


def test_manifest_table_lists_the_keys_a_job_writes(tmp_path):
    import json

    from hf_ipt.augment import SynthesisConfig
    from hf_ipt.jobs import JobConfig, run_job

    corpus = tmp_path / "news.jsonl"
    corpus.write_text(json.dumps({"text": "Profits rose. However, sales fell sharply in Europe this year."}) + "\n")
    run_job(JobConfig(corpus=str(corpus), output_dir=str(tmp_path / "job"), num_shards=1), SynthesisConfig(),
            progress=False)
    manifest = json.loads((tmp_path / "job" / "manifest.json").read_text())
    doc = (ROOT / "docs" / "jobs.md").read_text(encoding="utf-8")
    names = _table_first_column(doc, "| key | type |")
    assert sorted(names) == sorted(manifest)
    # the `chain` row names every ChainStats total (it lacked `markers_only`)
    chain_row = next(line for line in doc.splitlines() if line.startswith("| `chain` |"))
    from hf_ipt.chaining import ChainStats

    assert {f"`{name}`" for name in ChainStats.__dataclass_fields__} <= set(re.findall(r"`\w+`", chain_row))


def test_evaluation_metric_table_names_shipped_modules():
    from hf_ipt.evaluation.metrics import metric_path

    text = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
    names = _table_first_column(text, "| module | task metric names |")
    assert len(names) == 5
    for name in names:
        assert (metric_path(name) / f"{name}.py").is_file(), name


BENCHMARK = re.compile(r"python (benchmarks/\w+\.py)")


def _imported_modules(script: Path) -> set[str]:
    """Top-level names of the modules `script` imports anywhere (lazy imports in functions too)."""
    names = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _installed_by_hf_ipt() -> set[str]:
    """Distribution names (normalized) of the base install: setup.cfg's `install_requires`."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = config["options"]["install_requires"].splitlines()
    requirements = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    names = {re.split(r"[<>=!~\[ ;]", requirement)[0] for requirement in requirements}
    return {re.sub(r"[-_.]+", "-", name).lower() for name in names}


def _distribution(module: str) -> str:
    from importlib.metadata import packages_distributions

    dists = packages_distributions().get(module) or [module]  # not installed here: pip names it like the module
    return re.sub(r"[-_.]+", "-", dists[0]).lower()


def test_documented_benchmark_commands_say_how_to_install_what_they_import():
    """`python benchmarks/miner.py`, run as docs/miner.md said, ended in a ModuleNotFoundError for pysbd
    (the `bench` extra) after the first table: a doc that gives such a command says how to install what
    the script imports beyond hf_ipt's own dependencies."""
    base = _installed_by_hf_ipt()
    checked = 0
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for script in sorted(set(BENCHMARK.findall(text))):
            local = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
            modules = _imported_modules(ROOT / script) - set(sys.stdlib_module_names) - local - {"hf_ipt"}
            for module in sorted(modules):
                if _distribution(module) in base:
                    continue
                checked += 1
                assert re.search(rf"pip install[^\n`]*\b{re.escape(module)}\b", text), (
                    f"{path.name} runs {script}, which imports {module!r} (not installed with hf_ipt): "
                    f"say how to install it (`pip install {module}`)"
                )
    assert checked, "no documented benchmark command imports an optional module: the check checks nothing"


def test_evaluation_doc_states_the_fewest_options_a_classification_row_takes():
    """docs/evaluation.md said a classification row's options are "non-empty"; the loader refuses
    fewer than two. The doc states the minimum the loader enforces."""
    from hf_ipt.evaluation.tasks import Example, Task

    def accepted(n: int) -> bool:
        try:
            Task("t", "accuracy", [Example("Question:", [f"option {i}" for i in range(n)], 0 if n else None)])
        except ValueError:
            return False
        return True

    fewest = next(n for n in range(1, 5) if accepted(n))
    text = " ".join((ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8").split())
    words = {1: "one", 2: "two", 3: "three", 4: "four"}
    assert fewest == 1 or f"at least {words[fewest]} options" in text, (fewest, "docs/evaluation.md")


def test_evaluation_doc_says_how_task_file_errors_count_rows(tmp_path):
    """docs/evaluation.md said an error in a JSON-lines task file names the line; a bad row is named
    by its example index (from 0, blank lines not counted), only a line that is not JSON by its line
    number. The doc states what the messages print."""
    from hf_ipt.evaluation.tasks import load_tasks

    good = json.dumps({"input": "Q:", "options": ["a", "b"], "gold_index": 0})
    folder = tmp_path / "tasks" / "FPB"
    folder.mkdir(parents=True)
    rows = folder / "test.json"
    bad = json.dumps({"input": "Q:", "options": ["a", "b"], "gold_index": True})
    rows.write_text(f"{good}\n\n{bad}\n")
    with pytest.raises(ValueError, match=r"example 1\b"):  # third line, second row
        load_tasks(str(tmp_path / "tasks") + "/")
    rows.write_text(f"{good}\n\nnot json\n")
    with pytest.raises(ValueError, match=r"line 3\b"):
        load_tasks(str(tmp_path / "tasks") + "/")
    text = " ".join((ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8").split())
    assert "the example, counted from 0" in text and "its line number, counted from 1" in text


def _paragraph(path: Path, start: str) -> str:
    """The whitespace-normalized paragraph of `path` that begins with `start`."""
    text = " ".join(path.read_text(encoding="utf-8").split())
    return text[text.index(start):][:1200]


def test_readme_states_what_chain_expects_of_generate(tiny_tokenizer):
    """README gave `chain(texts, generate, tokenizer, ...)` without saying what `generate` returns;
    a callable returning completion strings (the obvious guess) silently gave no pairs. The README
    states the contract, and it holds: results with `.text`/`.error` and plain strings give pairs."""
    from hf_ipt.backends import Generation
    from hf_ipt.chaining import chain

    completion = "<QUE> What rose? <ANS> Profits. </END></s>"
    texts = ["Profits rose in the third quarter.", "Sales fell in Europe."]

    def results(prompts):
        return [Generation(text=completion, num_prompt_tokens=len(p)) for p in prompts]

    assert all(e.pairs for e in chain(texts, results, tiny_tokenizer))
    strings = chain(texts, lambda ps: [completion] * len(ps), tiny_tokenizer)
    assert all(e.pairs == [("What rose?", "Profits.")] and e.error is None for e in strings)
    doc = _paragraph(ROOT / "README.md", "`hf_ipt.chaining.chain(")
    assert "`.text` and `.error`" in doc and "`hf_ipt.backends.Generation`" in doc, doc[:400]
    assert "or the completion strings themselves" in doc, doc[:400]


def test_training_doc_says_where_bos_and_eos_come_from(tiny_tokenizer):
    """docs/training.md said `pack_sequences` concatenates documents "(BOS + text + EOS)"; it adds
    no special token: `tokenize_texts` appends the EOS, and the BOS only where the tokenizer adds
    one itself. The doc says so."""
    from hf_ipt.models import adds_bos
    from hf_ipt.training import pack_sequences, tokenize_texts

    assert [b["input_ids"] for b in pack_sequences([[5, 6, 7], [8]], 4)] == [[5, 6, 7, 8]]
    ids = next(tokenize_texts(["Profits rose."], tiny_tokenizer))
    assert ids[-1] == tiny_tokenizer.eos_token_id
    assert (ids[0] == tiny_tokenizer.bos_token_id) == adds_bos(tiny_tokenizer)
    doc = _paragraph(ROOT / "docs" / "training.md", "`pack_sequences(documents, seq_length)`")
    assert "(BOS + text + EOS)" not in doc and "`hf_ipt.training.tokenize_texts`" in doc, doc[:400]


def test_the_general_mix_snippet_writes_one_question_response_file(tmp_path, monkeypatch):
    """docs/training.md merges the paper's general mix (OpenOrca, LIMA, WizardLM: three column layouts) into one
    file for `--general_dataset`; run here on local stand-ins of the three datasets with their columns (no Hub)."""
    import datasets

    from hf_ipt.training.data import load_rows

    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    start = text.index("```python", text.index("The paper's general instructions are OpenOrca"))
    snippet = text[start + len("```python"):text.index("```", start + 3)]
    stand_ins = {
        "Open-Orca/OpenOrca": {"id": ["o"], "system_prompt": [""], "question": ["Q orca"], "response": ["R orca"]},
        "json": {"conversations": [["Q lima", "R lima", "again?", "yes"]], "source": ["stackexchange"]},
        "WizardLMTeam/WizardLM_evol_instruct_70k": {"instruction": ["Q wizard"], "output": ["R wizard"]},
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kwargs: datasets.Dataset.from_dict(stand_ins[name]))
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "docs/training.md", "exec"), {})  # noqa: S102 - the doc's own snippet, on local stand-ins
    rows = list(load_rows(str(tmp_path / "data" / "general.jsonl")))  # as --general_dataset reads it
    assert sorted(rows, key=str) == [{"question": f"Q {name}", "response": f"R {name}"} for name in ("lima", "orca", "wizard")]


def test_the_evaluation_doc_says_lm_evals_limit_counts_per_leaf_task():
    """docs/evaluation.md called `general_limit` lm-eval's limit "per general benchmark"; lm-eval applies it to each
    leaf task, so MMLU with --max_examples N scores 57 x N questions."""
    doc = _paragraph(ROOT / "docs" / "evaluation.md", "`general_limit`")
    assert "per general benchmark" not in doc and "each leaf task" in doc and "57 x N" in doc
