"""The CPU benchmarks' arguments: counts that would measure nothing are refused before any work."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_cpu_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "argv", "message"), [
    ("miner", ["--repeats", "0"], "--repeats must be >= 1, got 0"),
    ("miner", ["--num_keywords", "-3"], "--num_keywords must be >= 1, got -3"),
    ("resume_stream", ["--steps", "0"], "--steps must be >= 1, got 0"),
    ("resume_stream", ["--shuffle_buffer_size", "-1"], "--shuffle_buffer_size must be >= 0, got -1"),
])
def test_counts_that_measure_nothing_are_usage_errors(name, argv, message, capsys):
    """`miner.py --repeats 0` timed nothing and failed on its result; `resume_stream.py --steps 0` on an unset timing."""
    with pytest.raises(SystemExit) as exit_:
        _script(name).parse_args(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("name", ["miner", "resume_stream"])
def test_the_defaults_parse(name, monkeypatch):
    script = _script(name)
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda module: object() if module == "pysbd" else found(module))
    assert script.parse_args([]) is not None


def test_the_miner_baseline_without_pysbd_is_refused_before_any_work(monkeypatch, capsys):
    """`python benchmarks/miner.py` without pysbd printed its first table, then a ModuleNotFoundError."""
    script = _script("miner")
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda module: None if module == "pysbd" else found(module))
    with pytest.raises(SystemExit) as exit_:
        script.parse_args([])
    assert exit_.value.code == 2 and "pip install pysbd); or pass --no_baseline" in capsys.readouterr().err
    assert script.parse_args(["--no_baseline"]).no_baseline
