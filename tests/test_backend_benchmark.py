"""benchmarks/synthesis.py runs as a user runs it: a tiny random model, a few prompts, on CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "synthesis.py"


def test_help():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True
    )
    assert "--shape" in out.stdout and "mistral-7b" in out.stdout


def test_tiny_run_matches_plain_generate_token_for_token(tmp_path):
    rows_file = tmp_path / "rows.json"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--shape",
        "tiny",
        "--num_prompts",
        "6",
        "--batch_size",
        "3",
        "--modes",
        "plain",
        "transformers",
        "transformers-cb",
        "--json",
        str(rows_file),
    ]
    out = subprocess.run(
        cmd, check=False, capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {row["mode"]: row for row in json.loads(rows_file.read_text())}
    assert list(rows) == ["plain", "transformers", "transformers-cb"]
    for row in rows.values():
        assert row["errors"] == 0 and row["prompts"] == 6
        assert row["raw_tok_s"] > row["generated_tok_s"] > 0
        # raw = the new contexts' tokens: fewer than the prompts' (one-shot prompts carry a shot)
        assert 0 < row["raw_tokens"] < row["prompt_tokens"] == rows["plain"]["prompt_tokens"]
        assert row["raw_tok_s"] == pytest.approx(row["raw_tokens"] / row["seconds"], rel=0.15)  # seconds rounded
        assert row["peak_gpu_gib"] is None  # CPU: no GPU memory to report
        # The same drawn output lengths were forced in every mode.
        assert row["generated_tokens"] == rows["plain"]["generated_tokens"]
    assert rows["plain"]["ratio_to_plain"] == 1.0
    for mode in ("transformers", "transformers-cb"):  # raw tok/s over plain's, to 2 decimals
        expected = rows[mode]["raw_tok_s"] / rows["plain"]["raw_tok_s"]
        assert rows[mode]["ratio_to_plain"] == pytest.approx(expected, abs=0.006)
    # Greedy, fp32 on CPU: the fast paths give plain generate's tokens, every sequence.
    assert rows["transformers"]["equal_to_plain"] == 6
    assert rows["transformers-cb"]["equal_to_plain"] == 6
    printed = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [p["mode"] for p in printed] == list(rows)


def test_token_budget_batches_run_and_match_plain_generate(tmp_path):
    rows_file = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--shape", "tiny", "--num_prompts", "8", "--batch_size", "2",
           "--backend_batch_size", "8", "--max_batch_tokens", "700", "--modes", "plain", "transformers",
           "--json", str(rows_file)]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    plain, budget = json.loads(rows_file.read_text())
    assert (budget["mode"], budget["batch_size"], budget["max_batch_tokens"]) == ("transformers", 8, 700)
    assert budget["errors"] == 0 and budget["generated_tokens"] == plain["generated_tokens"]
    assert budget["equal_to_plain"] == 8
    # 8 prompts fit one call of --backend_batch_size 8: only the token budget cuts them into more.
    assert budget["engine_calls"] > 1


def test_static_cache_mode_runs_and_matches_plain_generate(tmp_path):
    rows_file = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--shape", "tiny", "--num_prompts", "6", "--batch_size", "3",
           "--static_cache", "--modes", "plain", "transformers", "--json", str(rows_file)]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    plain, static = json.loads(rows_file.read_text())
    assert static["static_cache"] is True and static["errors"] == 0 and static["equal_to_plain"] == 6
    assert static["generated_tokens"] == plain["generated_tokens"]


def test_chained_rounds_continue_each_prompt_and_prefix_caching_reuses_pages(tmp_path):
    """`--rounds 2`: round 2's prompts carry round 1's prompt and output; continuous batching
    with the cache kept between rounds embeds fewer tokens than the prompts hold (whole 256-token
    pages of round 1 reused) and gives plain generate's tokens, every sequence."""
    rows_file = tmp_path / "rows.json"
    cmd = [sys.executable, str(SCRIPT), "--shape", "tiny", "--num_prompts", "6", "--batch_size", "3", "--rounds", "2",
           "--context_tokens", "300", "500", "--max_model_len", "2048",
           "--modes", "plain", "transformers-cb", "transformers-cb-prefix", "--json", str(rows_file)]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    plain, fresh, kept = json.loads(rows_file.read_text())
    assert (plain["rounds"], plain["prompts"], kept["mode"], kept["prefix_caching"]) == (2, 6, "transformers-cb-prefix", True)
    # 6 zero-shot prompts would hold raw tokens + 6 BOS; the chained ones hold round 1's prompts
    # (3 BOS + raw), its outputs and EOS again.
    first_round = plain["prompt_tokens"] - (plain["raw_tokens"] + 6)
    assert first_round > plain["generated_tokens"] // 2 > 0
    for row in (fresh, kept):
        assert row["prompt_tokens"] == plain["prompt_tokens"] and row["generated_tokens"] == plain["generated_tokens"]
        assert row["errors"] == 0 and row["equal_to_plain"] == 6 and row["equal_to_plain_by_round"] == [3, 3]
    # Every prompt token and one per decoding step go through the embedding, unless a page is reused.
    decoded = plain["generated_tokens"] - plain["prompts"]
    assert fresh["embedded_tokens"] == plain["prompt_tokens"] + decoded
    assert kept["embedded_tokens"] <= plain["prompt_tokens"] + decoded - 3 * 256  # round 2 reused a page each
    bad = subprocess.run([sys.executable, str(SCRIPT), "--num_prompts", "1", "--rounds", "2"], check=False,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "fewer than --rounds 2" in bad.stderr
