"""benchmarks/train_throughput.py runs as on the GPU, at tiny size on CPU: both loops, one JSON line."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


def test_recipe_and_raw_loop_are_measured_in_one_process():
    cmd = [sys.executable, str(SCRIPT), "--shape", "tiny", "--seq", "64", "--steps", "2", "--warmup", "1",
           "--micro_batch", "4", "--raw_micro_batch", "2", "--peak_tflops", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    # The baseline is printed as soon as it is measured, before the recipe runs.
    assert any(line.startswith("CPU") and "raw loop (eager, mb 2)" in line for line in lines[:-1])
    assert (result["micro_batch"], result["raw_micro_batch"], result["seq"]) == (4, 2, 64)
    assert result["recipe_padding_tokens"] == 0 and result["raw_tok_s"] > 0 and result["recipe_tok_s"] > 0
    assert result["ratio"] == pytest.approx(result["recipe_tok_s"] / result["raw_tok_s"], rel=1e-2)
    # MFU = 6N FLOPs/token x tok/s / peak (1 TFLOP/s given here).
    assert result["recipe_mfu"] == pytest.approx(round(6 * result["params"] * result["recipe_tok_s"] / 1e12, 3),
                                                 abs=1e-3)


def test_several_recipe_runs_share_one_raw_loop():
    """A device call's time goes to what is new: micro-batches and the nan/inf filter as variants of one
    process, a JSON line each, against one raw loop."""
    cmd = [sys.executable, str(SCRIPT), "--shape", "tiny", "--seq", "64", "--steps", "1", "--warmup", "1",
           "--micro_batch", "2", "3", "--nan_inf_filter", "on", "off", "--raw_micro_batch", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    rows = [json.loads(line) for line in lines if line.startswith('{"device"')]  # not the Trainer's log dicts
    assert [(r["micro_batch"], r["logging_nan_inf_filter"]) for r in rows] == [(2, True), (2, False), (3, True),
                                                                              (3, False)]
    assert sum("raw loop (eager, mb 2)" in line for line in lines) == 1 and len({r["raw_tok_s"] for r in rows}) == 1
    assert all(r["recipe_padding_tokens"] == 0 and r["recipe_tok_s"] > 0 for r in rows)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),  # was taken for the default (6 on CPU, 30 on GPU)
        (["--steps", "-1"], "--steps must be >= 1, got -1"),  # failed after the raw loop
        (["--raw_micro_batch", "0"], "--raw_micro_batch must be >= 1, got 0"),
        (["--micro_batch", "4", "0"], "--micro_batch must be >= 1, got 0"),
        (["--attn", "hf_ipt_varlne"], "hf_ipt_varlne"),  # transformers refused it only after the raw loop
        pytest.param(["--liger"], "liger-kernel is not installed", marks=pytest.mark.skipif(
            importlib.util.find_spec("liger_kernel") is not None, reason="liger-kernel is installed here")),
    ],
)
def test_bad_arguments_are_refused_before_the_raw_loop(flags, message):
    cmd = [sys.executable, str(SCRIPT), "--shape", "tiny", "--seq", "32", "--warmup", "0", *flags]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode != 0 and message in out.stderr
    assert "raw loop" not in out.stdout  # nothing was measured
