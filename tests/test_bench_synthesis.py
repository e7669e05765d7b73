"""benchmarks/synthesis.py: its figures and the rows it leaves, in process, on CPU."""

from __future__ import annotations

import importlib.util
import json
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from hf_ipt.backends import Generation

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "synthesis.py"


@pytest.fixture(scope="module")
def synthesis():
    spec = importlib.util.spec_from_file_location("bench_synthesis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num_prompts", "0"], "--num_prompts must be >= 1, got 0"),
        (["--repeats", "0"], "--repeats must be >= 1, got 0"),
        (["--context_tokens", "300", "100"], "got 300 100"),
        (["--modes", "transformers", "plain"], "put plain first"),
        (["--modes", "plain", "transformers-cb", "--cb_kwargs", '{"use_cuda_graphs": false}'], "use_cuda_graphs"),
        (["--max_batch_tokens", "0"], "max_batch_tokens"),
        (["--mode_limit", "0"], "--mode_limit must be > 0 seconds, got 0"),
    ],
)
def test_bad_arguments_are_refused_before_a_model_is_loaded(synthesis, monkeypatch, argv, message):
    def no_model(*args):
        raise AssertionError("a model was loaded for arguments that fail later")

    monkeypatch.setattr(synthesis, "load_model", no_model)
    with pytest.raises((SystemExit, ValueError), match=message):
        synthesis.main(synthesis.make_parser().parse_args(argv))


def test_failed_prompts_count_no_throughput(synthesis):
    """A prompt whose generation failed was not synthesized: its raw and prompt tokens are not
    counted in the row's tokens per second."""
    args = synthesis.make_parser().parse_args(["--num_prompts", "4", "--context_tokens", "50", "60",
                                               "--mean_new_tokens", "5", "--max_new_tokens", "8"])  # fmt: skip
    workload = synthesis.make_workload(args, synthesis.random_tokenizer(1024), budget=500)
    warmup = synthesis.make_workload(args, synthesis.random_tokenizer(1024), budget=500, count=1, seed=1)
    backend = SimpleNamespace(eos_token_ids=[2], config=SimpleNamespace(prefix_caching=False))

    def run(backend, prompts, lengths):  # the odd prompts fail, as a batch past the memory would
        return [Generation("", len(p), error="OOM") if i % 2 else Generation("x", len(p), 3, token_ids=[5, 6, 2])
                for i, p in enumerate(prompts)]  # fmt: skip

    row = synthesis.measure("x", run, backend, workload, {}, warmup)[1]
    raw, prompts = workload.raw[0], workload.contexts[0]
    assert row["errors"] == 2 and row["generated_tokens"] == 6
    assert row["raw_tokens"] == raw[0] + raw[2] < workload.raw_tokens
    assert row["prompt_tokens"] == len(prompts[0]) + len(prompts[2])
    # the rates share one timing: their ratio is that of the tokens counted
    counted = row["prompt_tokens"] + row["generated_tokens"]
    assert row["raw_tok_s"] / row["prompt_and_generated_tok_s"] == pytest.approx(row["raw_tokens"] / counted, rel=1e-3)


def test_rows_are_written_after_each_mode(synthesis, monkeypatch, tmp_path):
    """A later mode that fails (or a stage's time limit that stops it) leaves the rows before it."""
    rows_file = tmp_path / "rows.json"

    def failing(*args):
        raise RuntimeError("the backend under test failed")

    monkeypatch.setattr(synthesis, "run_backend", failing)
    args = synthesis.make_parser().parse_args(["--num_prompts", "2", "--batch_size", "2", "--context_tokens", "20", "30",
                                               "--modes", "plain", "transformers", "--json", str(rows_file)])  # fmt: skip
    with pytest.raises(RuntimeError, match="failed"):
        synthesis.main(args)
    rows = json.loads(rows_file.read_text())
    assert [row["mode"] for row in rows] == ["plain"] and rows[0]["errors"] == 0


def test_a_mode_past_its_limit_is_recorded_and_the_next_mode_runs(synthesis, monkeypatch, tmp_path):
    """`--mode_limit`: a mode that does not finish (continuous batching that never returns, as on
    the H200 on 2026-11-27) is stopped, left without figures, and the modes after it still run in
    the same process, so one device call can measure several modes on one loaded model."""
    measured = synthesis.run_backend

    def stuck_when_continuous(backend, prompts, lengths):
        while backend.config.continuous_batching:
            time.sleep(0.05)
        return measured(backend, prompts, lengths)

    monkeypatch.setattr(synthesis, "run_backend", stuck_when_continuous)
    limit, limits = synthesis.time_limit, []

    def stuck_mode_limited(seconds):  # the real alarm for the stuck mode; the others, on a loaded CI machine,
        limits.append(seconds)        # could run past 8 s themselves: no timing in tests
        return limit(seconds if len(limits) == 2 else None)

    monkeypatch.setattr(synthesis, "time_limit", stuck_mode_limited)
    rows_file = tmp_path / "rows.json"
    args = synthesis.make_parser().parse_args(
        ["--num_prompts", "2", "--batch_size", "2", "--context_tokens", "20", "30", "--mode_limit", "8",
         "--modes", "plain", "transformers-cb", "transformers", "--json", str(rows_file)]
    )  # fmt: skip
    rows = synthesis.main(args)
    assert [row["mode"] for row in rows] == ["plain", "transformers-cb", "transformers"] and limits == [8, 8, 8]
    stuck = rows[1]
    assert stuck["timed_out"] is True and stuck["mode_limit_seconds"] == 8
    assert stuck["raw_tok_s"] is None and stuck["ratio_to_plain"] is None
    assert rows[2]["raw_tok_s"] > 0 and rows[2]["ratio_to_plain"] > 0 and rows[2]["equal_to_plain"] == 2
    assert json.loads(rows_file.read_text()) == json.loads(json.dumps(rows))
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no alarm left behind
