"""Every recipe end to end, launched the way a user launches it, on CPU with a tiny model.

Each run trains a few steps, saves checkpoints, resumes from one, and the result is reloaded
with `AutoModelForCausalLM.from_pretrained` (and, for the synthesizer, used by a synthesis
backend). The shipped YAML configs are used, with CLI overrides sized for CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import SYNTH_PAIRS, TOKENIZER_TEXT

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
SHARDING_ON_CPU = REPO / "tests" / "sharding_on_cpu"
RECIPES = ("continual_pt", "pretrain", "train_synthesizer")
CPU = [
    "--bf16",
    "false",
    "--activation_checkpointing",
    "false",
    "--torch_compile",
    "false",
    "--use_cpu",
    "true",
    "--logging_steps",
    "1",
    "--save_steps",
    "2",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--shuffle_buffer_size",
    "16",
    "--warmup_steps",
    "0",
]


def _run(args: list[str], timeout: int = 600, retry_if: Callable[[str], bool] | None = None,
         env: dict[str, str] | None = None) -> str:
    # PYTHONFAULTHANDLER: a SIGABRT makes every process print all its threads' Python stacks.
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as error:
        _kill_tree(proc.pid)
        stdout, stderr = proc.communicate()  # returns: no worker is left holding the pipes
        error.output = (stdout or "") + (stderr or "")
        raise
    output = stdout + stderr
    if proc.returncode != 0 and retry_if and retry_if(output):
        raise _Retry(output)
    assert proc.returncode == 0, output[-4000:]
    return output


class _Retry(Exception):
    """A launch failed for a reason outside the code under test; the caller may try once more."""


def _kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process below it.

    Killing its process group is not enough: torchrun starts each worker in a session of its own
    (`start_new_session=True` in torch.distributed.elastic), so a hung worker would survive the
    launcher, keep our pipes open and block `communicate` forever.
    """
    import psutil

    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    # Workers first get SIGABRT, so a hang leaves their stacks in the output, then SIGKILL.
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGABRT)
    psutil.wait_procs(family, timeout=10)
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(family, timeout=30)


def test_a_timed_out_launch_kills_workers_in_their_own_session():
    """Like a torchrun worker: a grandchild in a new session that holds our pipes and hangs."""
    import threading

    # "ready" once the grandchild holds the pipes; 10 s: ample for two interpreter starts.
    code = ("import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True); "
            "print('ready', flush=True); "
            "time.sleep(600)")
    raised = []

    def run() -> None:
        try:
            _run([sys.executable, "-c", code], timeout=10)
        except subprocess.TimeoutExpired as error:
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(120)  # killing only the launcher's group left the grandchild: this hung forever
    assert not thread.is_alive() and raised
    # The grandchild was running when the timeout hit (else nothing was tested): say so.
    assert "ready" in raised[0].output, f"the child was not ready within 10 s: {raised[0].output}"
    assert "most recent call first" in raised[0].output  # the hung process's stack, for the log


def test_a_launch_whose_port_was_taken_is_retried_and_other_failures_are_not():
    # torch's TCPStore message when the master port went to someone else before torchrun bound it
    taken = "print('The server socket has failed to listen ... code: -98, name: EADDRINUSE'); raise SystemExit(1)"
    with pytest.raises(_Retry):
        _run([sys.executable, "-c", taken], retry_if=_port_taken)
    with pytest.raises(AssertionError, match="ValueError"):
        _run([sys.executable, "-c", "raise ValueError('a real failure')"], retry_if=_port_taken)


def _launch(recipe: str, *args: str, processes: int = 1, cpu_num_processes: int = 1,
            accelerate_config: str = "ddp") -> str:
    # `--cpu` makes accelerate start ONE process (several need mpirun) whatever `--num_processes`
    # (`cpu_num_processes` here) says: DDP on CPU goes through the torchrun launcher of the `ddp`
    # config, and the recipe's `--use_cpu true` picks gloo. `accelerate_config="fsdp2"` or
    # `"deepspeed_zero3"`: the shipped config, its sharding let onto CPU by the test shim in
    # tests/sharding_on_cpu/ (accelerate refuses DeepSpeed under `--use_cpu`: left out there).
    if processes == 1:
        launcher = [
            ACCELERATE,
            "launch",
            "--num_processes",
            str(cpu_num_processes),
            "--cpu",
            "--mixed_precision",
            "no",
        ]
        config = ["--config", f"recipes/configs/{recipe}.yaml"]
        return _run([*launcher, f"recipes/{recipe}.py", *config, *CPU, *args])
    from hf_ipt.training import accelerate_config_path

    sharded = accelerate_config in ("fsdp2", "deepspeed_zero3")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(SHARDING_ON_CPU), os.environ.get("PYTHONPATH")]))}
    cpu = list(CPU)
    if accelerate_config == "deepspeed_zero3":
        del cpu[cpu.index("--use_cpu"):cpu.index("--use_cpu") + 2]
    for attempt in (1, 2):
        launcher = [
            ACCELERATE,
            "launch",
            "--config_file",
            str(accelerate_config_path(accelerate_config)),
            "--num_processes",
            str(processes),
            "--mixed_precision",
            "no",
            "--main_process_port",
            _free_port(),
        ]
        command = [*launcher, f"recipes/{recipe}.py", "--config", f"recipes/configs/{recipe}.yaml", *cpu, *args]
        # A hang fails the test with every process's Python stack. Two-process gloo runs used to
        # hang about 1 in 6 at exit (the DDP wrapper outlived the process group; see
        # `hf_ipt.training.trainer.release_wrapped_model`); 32 runs in a row under load passed since.
        try:
            return _run(command, timeout=300, retry_if=_port_taken if attempt == 1 else None,
                        env=env if sharded else None)
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"2-process run hung; stacks of its processes:\n{error.output[-30000:]}")
        except _Retry as error:  # another process took the port between `_free_port` and torchrun
            print(f"port taken before torchrun bound it; relaunching on another:\n{str(error)[-2000:]}")
    raise AssertionError("unreachable: the second attempt returns or fails")


def _port_taken(output: str) -> bool:
    return "EADDRINUSE" in output or "Address already in use" in output


def _free_port() -> str:
    # Not the default 29500: another DDP job on this machine would join our process group.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _log_history(checkpoint: Path) -> dict[int, dict]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return {entry["step"]: entry for entry in state["log_history"] if "loss" in entry}


def _stream_positions(checkpoint: Path) -> dict[str, str]:
    """The stream position each rank saved in a checkpoint, by file name."""
    return {path.name: path.read_text() for path in (checkpoint / "hf_ipt_stream").glob("rank*.json")}


def _reload(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Domain text, general instructions, raw/augmented text and a two-source collection."""
    root = tmp_path_factory.mktemp("recipe_data")
    rng = random.Random(0)
    words = TOKENIZER_TEXT.split()

    def text(low: int, high: int) -> str:
        return " ".join(rng.choices(words, k=rng.randint(low, high)))

    def jsonl(path: Path, rows: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    jsonl(root / "domain.jsonl", [{"text": text(20, 120)} for _ in range(60)])
    jsonl(
        root / "general.jsonl",
        [{"question": text(3, 15) + "?", "response": text(3, 30)} for _ in range(60)],
    )
    jsonl(root / "augmented.jsonl", [{"text": text(40, 150)} for _ in range(20)])
    (root / "raw").mkdir()
    for i in range(30):
        (root / "raw" / f"{i}.txt").write_text(text(20, 120))
    task = {
        "name": "TinyQA",
        "metric": "accuracy",
        "examples": [
            {"input": f"{text(5, 20)} Answer:", "options": ["yes", "no"], "gold_index": i % 2}
            for i in range(4)
        ],
    }
    (root / "tiny_task.json").write_text(json.dumps(task))
    # Every context gets the same pairs: a synthesizer learns them in a few steps.
    for name in ("squad", "race"):
        jsonl(
            root / "collection" / name / "shard" / "00000.jsonl",
            # the reference's read-collection entries, the recipes' default columns
            [{"context": text(5, 40), "QA_list": [{"Q": q, "A": a} for q, a in SYNTH_PAIRS]} for _ in range(12)],
        )
    return root


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_help(recipe):
    output = _run([sys.executable, f"recipes/{recipe}.py", "--help"])
    for flag in (
        "--config",
        "--max_length",
        "--max_steps",
        "--resume_from_checkpoint",
        "--push_to_hub",
        "--eval_tasks",
        "--optim",
        "--attn_implementation",
    ):
        assert flag in output
    specific = {
        "continual_pt": "--general_fraction",
        "pretrain": "--collection_repeats",
        "train_synthesizer": "--pairs_column",
    }[recipe]
    assert specific in output


@pytest.mark.slow
def test_continual_pt_ddp_two_processes_resumes_exactly(data, tiny_model_dir, tmp_path):
    common = _sharding_common(data, tiny_model_dir)
    first, second = tmp_path / "first", tmp_path / "second"
    _launch("continual_pt", *common, "--output_dir", str(first), processes=2)
    output = _launch(
        "continual_pt",
        *common,
        "--output_dir",
        str(second),
        "--resume_from_checkpoint",
        str(first / "checkpoint-2"),
        processes=2,
    )
    uninterrupted, resumed = (
        _log_history(first / "checkpoint-4"),
        _log_history(second / "checkpoint-4"),
    )
    # Each rank's stream started at the position its checkpoint saved (no batch replayed) ...
    assert sorted(_stream_positions(first / "checkpoint-2")) == ["rank0.json", "rank1.json"]
    assert "no saved stream position" not in output
    assert _stream_positions(second / "checkpoint-4") == _stream_positions(first / "checkpoint-4")
    # ... and reads the same data and restores optimizer and schedule: same losses.
    for step in (3, 4):
        assert resumed[step]["loss"] == pytest.approx(uninterrupted[step]["loss"], rel=1e-4)
        assert resumed[step]["learning_rate"] == uninterrupted[step]["learning_rate"]
    assert resumed[4]["tokens_seen"] == 4 * 2 * 2 * 128  # two ranks of 2 x 128-token blocks a step
    assert "still referenced after training" not in output  # the DDP wrapper was freed before the group
    card = (second / "README.md").read_text()
    assert "| num_processes | 2 |" in card and "50.0%" in card
    model, initial = _reload(second), _reload(tiny_model_dir)
    assert model.config.use_cache is True
    # The tiny model itself, trained: same shape, new weights.
    assert model.num_parameters() == initial.num_parameters()
    assert any(not a.equal(b) for a, b in zip(model.parameters(), initial.parameters()))


def _merge_as_hinted(checkpoint: Path) -> Path:
    """Run the commands that `check_model_path`'s refusal of a sharded FSDP checkpoint names, as a user would."""
    import re

    from hf_ipt.cli import UsageError
    from hf_ipt.models import check_model_path

    with pytest.raises(UsageError, match=r"is an FSDP checkpoint sharded by rank") as error:
        check_model_path(str(checkpoint))
    steps = re.findall(r"`((?:accelerate merge-weights|cp|mv) [^`]+)`", str(error.value))
    assert steps[0].startswith("accelerate merge-weights") and steps[1].startswith("cp "), str(error.value)
    for step in steps:
        name, *args = step.split()
        command = [ACCELERATE, *args] if name == "accelerate" else [name, *args]
        subprocess.run(command, check=True, capture_output=True)
    return Path(re.search(r"and give '([^']+)'", str(error.value))[1])


def _sharding_common(data: Path, model: Path) -> list[str]:
    """4 steps of continual_pt on the tiny model: the DDP test's run, and the sharded configs' (and their reference)."""
    return [
        "--model_name_or_path", str(model), "--dtype", "float32",
        "--domain_dataset", str(data / "domain.jsonl"), "--general_dataset", str(data / "general.jsonl"),
        "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--max_length", "128",
        "--max_steps", "4", "--learning_rate", "1e-3",
    ]


@pytest.fixture(scope="module")
def ddp_reference(data, tiny_model_dir, tmp_path_factory) -> Path:
    """The run that the sharded configs' tests compare with: the same 4 steps, two DDP processes."""
    out = tmp_path_factory.mktemp("ddp_reference")
    _launch("continual_pt", *_sharding_common(data, tiny_model_dir), "--output_dir", str(out), processes=2)
    assert not (out / "checkpoint-2" / "pytorch_model_fsdp_0").exists()  # unsharded
    return out


def _trains_as_ddp_and_resumes_exactly(first: Path, second: Path, ddp: Path) -> dict[str, Any]:
    """Asserts that the run in `first` has DDP's losses, and `second` (resumed from its checkpoint-2) its
    last steps, stream positions and final weights; returns the final weights."""
    uninterrupted, resumed, reference = (_log_history(first / "checkpoint-4"),
                                         _log_history(second / "checkpoint-4"), _log_history(ddp / "checkpoint-4"))
    for step in (1, 2, 3, 4):
        assert uninterrupted[step]["loss"] == pytest.approx(reference[step]["loss"], rel=1e-4)
    for step in (3, 4):
        assert resumed[step]["loss"] == pytest.approx(uninterrupted[step]["loss"], rel=1e-4)
    assert _stream_positions(second / "checkpoint-4") == _stream_positions(first / "checkpoint-4")
    final = _reload(first).state_dict()
    resumed_final, unsharded = _reload(second).state_dict(), _reload(ddp).state_dict()
    for name, weights in final.items():
        assert resumed_final[name].equal(weights), name
        # float32 sums in another order (Adam scales their differences up): far below one step's ~1e-3 change
        assert unsharded[name].allclose(weights, atol=1e-5), name
    return final


@pytest.mark.slow
def test_continual_pt_fsdp2_shards_resumes_exactly_and_merges(data, tiny_model_dir, ddp_reference, tmp_path):
    """The shipped FSDP2 config, two processes (its sharding on CPU through tests/sharding_on_cpu/): it trains as
    DDP does, checkpoints by rank, resumes from such a checkpoint exactly, gathers the final model whole, and
    the commands that the refusal of a sharded checkpoint names make it a model equal to the final one."""
    from hf_ipt.models import fsdp_shards, has_weights

    common = _sharding_common(data, tiny_model_dir)
    first, second = tmp_path / "first", tmp_path / "second"
    _launch("continual_pt", *common, "--output_dir", str(first), processes=2, accelerate_config="fsdp2")
    _launch("continual_pt", *common, "--output_dir", str(second), "--resume_from_checkpoint",
            str(first / "checkpoint-2"), processes=2, accelerate_config="fsdp2")
    # sharded by rank: no whole model in the checkpoints, two ranks' shards of model and optimizer
    for checkpoint in (first / "checkpoint-2", first / "checkpoint-4"):
        assert fsdp_shards(str(checkpoint)) == ["pytorch_model_fsdp_0"] and not has_weights(str(checkpoint))
        assert len(list((checkpoint / "pytorch_model_fsdp_0").glob("*.distcp"))) == 2
    final = _trains_as_ddp_and_resumes_exactly(first, second, ddp_reference)
    merged = _reload(_merge_as_hinted(first / "checkpoint-4"))
    assert merged.config.use_cache is True
    for name, weights in merged.state_dict().items():
        assert weights.equal(final[name]), name


@pytest.mark.slow
def test_continual_pt_deepspeed_zero3_resumes_exactly(data, tiny_model_dir, ddp_reference, tmp_path):
    """The shipped ZeRO-3 config, two processes (DeepSpeed's CPU accelerator over gloo, through
    tests/sharding_on_cpu/): it trains as DDP does, resumes from its checkpoint exactly, and every checkpoint
    holds the gathered model (`zero3_save_16bit_model`), which loads as it is."""
    common = _sharding_common(data, tiny_model_dir)
    first, second = tmp_path / "first", tmp_path / "second"
    output = _launch("continual_pt", *common, "--output_dir", str(first), processes=2,
                     accelerate_config="deepspeed_zero3")
    assert "still referenced after training" not in output  # no false alarm about DeepSpeed's engine
    _launch("continual_pt", *common, "--output_dir", str(second), "--resume_from_checkpoint",
            str(first / "checkpoint-2"), processes=2, accelerate_config="deepspeed_zero3")
    assert (first / "checkpoint-2" / "global_step2").is_dir()  # DeepSpeed's own partitioned state
    final = _trains_as_ddp_and_resumes_exactly(first, second, ddp_reference)
    checkpoint = _reload(first / "checkpoint-4").state_dict()
    for name, weights in checkpoint.items():
        assert weights.equal(final[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("quantized", [False, True], ids=["lora", "qlora"])
def test_continual_pt_fsdp2_with_lora_saves_an_adapter_at_every_checkpoint(data, tiny_model_dir, tmp_path, quantized):
    """`--use_peft` (and QLoRA, as PEFT's FSDP guide runs it) under FSDP2: the final adapter loads; a sharded
    checkpoint holds the adapter's config and the tokenizer, and the commands its refusal names make an adapter
    equal to the final one at the last step."""
    from peft import AutoPeftModelForCausalLM

    out = tmp_path / "out"
    _launch("continual_pt", "--model_name_or_path", str(tiny_model_dir), "--dtype", "float32",
            "--domain_dataset", str(data / "domain.jsonl"), "--general_dataset", str(data / "general.jsonl"),
            "--per_device_train_batch_size", "2", "--max_length", "128", "--max_steps", "4",
            "--learning_rate", "1e-2", "--use_peft", "true", "--load_in_4bit", str(quantized).lower(),
            "--output_dir", str(out), processes=2, accelerate_config="fsdp2")
    checkpoint = out / "checkpoint-4"
    assert (checkpoint / "pytorch_model_fsdp_0").is_dir() and (checkpoint / "tokenizer.json").is_file()
    assert json.loads((checkpoint / "adapter_config.json").read_text())["inference_mode"] is True
    merged = _merge_as_hinted(checkpoint)
    final = AutoPeftModelForCausalLM.from_pretrained(out).state_dict()
    adapter = AutoPeftModelForCausalLM.from_pretrained(merged).state_dict()
    lora = [name for name in final if "lora_" in name]
    assert lora and sorted(adapter) == sorted(final)
    for name in final:
        assert adapter[name].equal(final[name]), name
    assert any(final[name].abs().sum() > 0 for name in lora if "lora_B" in name)  # B starts at 0: it trained


@pytest.mark.slow
def test_ddp_evaluation_on_logging_steps_keeps_every_loss_log(data, tiny_model_dir, tmp_path):
    """Rank 0 evaluates at `--eval_steps`; its log used to cancel that step's training log there, so rank 0
    skipped the loss all-gather rank 1 ran: gloo died of a collective mismatch (NCCL would hang)."""
    out = tmp_path / "out"
    _launch(
        "continual_pt",
        "--model_name_or_path", str(tiny_model_dir), "--dtype", "float32",
        "--domain_dataset", str(data / "domain.jsonl"), "--general_dataset", str(data / "general.jsonl"),
        "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1", "--max_length", "128",
        "--max_steps", "4", "--save_steps", "4", "--eval_tasks", str(data / "tiny_task.json"), "--eval_steps", "2",
        "--output_dir", str(out),
        processes=2,
    )
    history = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4]
    assert [h["step"] for h in history if "eval_TinyQA_accuracy" in h] == [2, 4]


@pytest.mark.slow
def test_pretrain_from_scratch_resumes_from_last(data, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    common = [
        "--model_shape",
        "tiny",
        "--tokenizer_name_or_path",
        str(tiny_model_dir),
        "--dtype",
        "float32",
        "--raw_dataset",
        str(data / "raw" / "*.txt"),
        "--augmented_dataset",
        str(data / "augmented.jsonl"),
        "--collection",
        str(data / "collection"),
        "--collection_token_share",
        "0.25",
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "1",
        "--max_length",
        "256",
        "--lr_scheduler_type",
        "constant",  # the same schedule whether the run ends at step 2 or 4
        "--warmup_steps",
        "0",
    ]
    _launch("pretrain", *common, "--output_dir", str(out), "--max_steps", "2")
    resumed = _launch(
        "pretrain",
        *common,
        "--output_dir",
        str(out),
        "--max_steps",
        "4",
        "--resume_from_checkpoint",
        "last",
        "--eval_tasks",
        str(data / "tiny_task.json"),
    )
    history = _log_history(out / "checkpoint-4")
    assert sorted(history) == [1, 2, 3, 4]
    assert "no saved stream position" not in resumed  # the stream started at checkpoint-2's position
    # steps 3-4 after the resume = steps 3-4 of one uninterrupted run: weights, optimizer AND
    # the position in the mixed raw/augmented/collection stream were restored
    _launch("pretrain", *common, "--output_dir", str(tmp_path / "straight"), "--max_steps", "4")
    straight = _log_history(tmp_path / "straight" / "checkpoint-4")
    assert _stream_positions(out / "checkpoint-4") == _stream_positions(tmp_path / "straight" / "checkpoint-4")
    for step in (1, 2, 3, 4):  # steps 1-2: the same seed gives the same initial weights
        assert history[step]["loss"] == pytest.approx(straight[step]["loss"], rel=1e-4)
    card = (out / "README.md").read_text()
    assert "trained from scratch (shape `tiny`)" in card
    assert "80% of corpus documents" in card and "synthesizer fine-tuning collection" in card
    assert "At step 4, average" in card and "| TinyQA | accuracy |" in card  # the eval hook ran
    model = _reload(out)
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size % 64 == 0


@pytest.mark.slow
def test_train_synthesizer_makes_a_usable_synthesizer(data, tiny_model_dir, tmp_path):
    from hf_ipt.backends import BackendConfig, load_backend
    from hf_ipt.protocol import build_prompt, encode_prompt, parse_pairs

    out = tmp_path / "synthesizer"
    common = [
        "--model_name_or_path",
        str(tiny_model_dir),
        "--dtype",
        "float32",
        "--collection",
        str(data / "collection"),
        "--per_device_train_batch_size",
        "4",
        "--gradient_accumulation_steps",
        "1",
        "--max_length",
        "256",
        "--learning_rate",
        "3e-3",
        "--lr_scheduler_type",
        "constant",
        "--output_dir",
        str(out),
    ]
    # `accelerate launch --num_processes 2 --cpu`, as users first try it: one process, and it says so.
    output = _launch("train_synthesizer", *common, "--max_steps", "30", "--save_steps", "30", cpu_num_processes=2)
    assert "`accelerate launch --cpu` started ONE process" in output
    resumed = _launch(
        "train_synthesizer",
        *common,
        "--max_steps",
        "60",
        "--save_steps",
        "30",
        "--resume_from_checkpoint",
        "last",
    )
    assert sorted(_log_history(out / "checkpoint-60")) == list(range(1, 61))
    assert list(_stream_positions(out / "checkpoint-30")) == ["rank0.json"] and "no saved stream position" not in resumed
    assert _reload(out).config.vocab_size == _reload(tiny_model_dir).config.vocab_size
    backend = load_backend(
        BackendConfig(
            model_name_or_path=str(out),
            backend="transformers",
            device="cpu",
            max_model_len=512,
            max_new_tokens=48,
        )
    )
    tokenizer = backend.tokenizer
    prompt = encode_prompt(
        tokenizer, build_prompt("Analysts said the market is about energy prices.")
    )
    (generation,) = backend.generate([prompt])
    assert generation.error is None
    assert parse_pairs(generation.text) == [tuple(p) for p in SYNTH_PAIRS]
