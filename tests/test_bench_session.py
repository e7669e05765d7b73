"""benchmarks/gpu/session.sh refuses, before any stage runs, what would waste a device call.

A stub stands in for Python: it records each command line, so the GPU stages' commands are
checked here on CPU against the benchmarks' own argument parsers.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SESSION = ROOT / "benchmarks" / "gpu" / "session.sh"
STAGES = ["train", "synth", "levers", "varlen", "sweep", "synth_levers", "synth_chain", "repro"]


def run_session(tmp_path: Path, *stages: str, python: str | None = None, smoke: str = "1"):
    """session.sh run from `tmp_path` (no .whl there), Python stubbed unless `python` is given."""
    stub = tmp_path / "python"
    # `-c "import flash_attn"` fails, as on the GPU image; anything else succeeds at once.
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$STUB_LOG"\n[ "$1" != -c ]\n')
    stub.chmod(0o755)
    env = dict(os.environ, PYTHON=python or str(stub), SMOKE=smoke, OUT=str(tmp_path / "out"),
               STUB_LOG=str(tmp_path / "calls.txt"), PYTHONPATH=str(ROOT))  # fmt: skip
    out = subprocess.run(["bash", str(SESSION), *stages], check=False, cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    calls = (tmp_path / "calls.txt").read_text().splitlines() if (tmp_path / "calls.txt").exists() else []
    return out, [shlex.split(call) for call in calls if call.startswith(("benchmarks/", "recipes/"))]


def test_a_mistyped_stage_runs_nothing(tmp_path):
    out, commands = run_session(tmp_path, "train", "synht")
    assert out.returncode == 2 and "unknown stage 'synht'" in out.stdout
    assert commands == [] and not (tmp_path / "out" / "stages.txt").exists()
    out, commands = run_session(tmp_path)
    assert out.returncode == 2 and "usage:" in out.stdout and commands == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_stages_without_cuda_stop_before_running(tmp_path):
    out, _ = run_session(tmp_path, "synth", python=sys.executable, smoke="0")
    assert out.returncode == 1 and "no CUDA device" in out.stdout
    assert not (tmp_path / "out" / "stages.txt").exists()


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_gpu_command_line_parses(tmp_path, monkeypatch):
    """A wrong flag in a GPU-only command line would show only on the device."""
    out, commands = run_session(tmp_path, *STAGES, smoke="0")
    scripts = {command[0] for command in commands}
    assert {"benchmarks/synthesis.py", "benchmarks/train_throughput.py"} <= scripts, out.stdout
    synthesis, train = load("synthesis"), load("train_throughput")
    for script, *argv in commands:
        if script == "benchmarks/synthesis.py":
            args = synthesis.make_parser().parse_args(argv)
            for name, value in synthesis.SHAPES[args.shape]._asdict().items():
                if name != "model" and getattr(args, name) is None:
                    setattr(args, name, value)
            synthesis.check_args(args)
        elif script == "benchmarks/train_throughput.py":
            monkeypatch.setattr(sys, "argv", [script, *argv])
            args = train.parse_args()
            args.seq, args.steps = args.seq or 2048, args.steps or 30  # the GPU defaults
            args.raw_micro_batch = args.raw_micro_batch or args.micro_batch[0]
            args.liger = False  # liger-kernel comes with the device's wheels (.whl), maybe not here
            train.check_args(args)


def documented_groups() -> list[list[str]]:
    """The stage groups session.sh's header tells a session to run, one device call each."""
    return [group for group, _ in documented_calls()]


def documented_calls() -> list[tuple[list[str], int | None]]:
    """Each documented group and the sum of its stage limits that its comment states (`None`: none stated)."""
    header = SESSION.read_text().split("\nset -uo pipefail", 1)[0]
    calls = re.split(r"^(?=#\s+(?:REPRO_STEPS=\d+ )?bash benchmarks/gpu/session\.sh )", header, flags=re.MULTILINE)[1:]
    found = []
    for call in calls:
        group = re.match(r"#\s+(?:REPRO_STEPS=\d+ )?bash benchmarks/gpu/session\.sh ([a-z_ ]+?)\s*(?:#|$)", call,
                         re.MULTILINE)
        stated = re.search(r"limits sum to (\d+) s", call)
        found.append((group[1].split(), int(stated[1]) if stated else None))
    return found


@pytest.mark.parametrize("group", documented_groups(), ids=" ".join)
def test_each_documented_call_fits_the_device_limits(tmp_path, group):
    """A device call brings back 8 files of $OUT at most (which ones, when there are more, is not said) and
    runs 595 s at most, the wheels' install and the versions check (~40 s) included: a group whose stages
    wrote more files, or whose limits leave no room for that, loses results on the device."""
    out, commands = run_session(tmp_path, *group, smoke="0")
    assert out.returncode == 0, out.stdout + out.stderr
    written = {p.name for p in (tmp_path / "out").iterdir()}
    written |= {os.path.basename(c[c.index("--json") + 1]) for c in commands if "--json" in c}
    if "repro" in group:
        written |= {"results.json", "results.md"}  # copied from the run's folder
    assert len(written) <= 8, sorted(written)
    limits = [int(n) for n in re.findall(r"\(limit (\d+)s\)", (tmp_path / "out" / "stages.txt").read_text())]
    # 595 s - ~40 s of installs - 20 s for a stage past its limit to stop; `repro` is a call of its own (560 s)
    assert limits and sum(limits) <= 530 or group == ["repro"], (group, limits)
    stated = {" ".join(g): n for g, n in documented_calls()}[" ".join(group)]
    assert stated is None or stated == sum(limits), (group, stated, limits)  # what the header says of it


def test_the_documented_groups_are_found():
    groups = documented_groups()
    assert ["sweep", "synth_levers"] in groups and ["train", "synth"] in groups and ["repro"] in groups
    assert all(stage in STAGES for group in groups for stage in group)
