"""The recipes' Trainer in process: callbacks, eval hook, QLoRA with an 8-bit optimizer, push with the card."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerCallback, TrainerState
from transformers.trainer_callback import ProgressCallback

from hf_ipt.cli import UsageError
from hf_ipt.training import callbacks as callbacks_module
from hf_ipt.training.callbacks import (
    ThroughputCallback,
    TokenBudgetProgressCallback,
    flops_per_token,
)
from hf_ipt.training.card import CardInfo
from hf_ipt.training.config import ContinualPTConfig, TrainingConfig
from hf_ipt.training.streams import continual_pt_dataset
from hf_ipt.training.trainer import (
    build_trainer,
    release_wrapped_model,
    resolve_checkpoint,
    train_and_save,
)

TEXT = "The company reported a profit of $1.13bn in the third quarter, up from last year."


def test_throughput_callback_logs_tokens_per_second_and_mfu():
    clock = iter([100.0, 102.0])
    args = SimpleNamespace(include_num_input_tokens_seen="no", world_size=2)
    state = TrainerState()
    callback = ThroughputCallback(
        tokens_per_step=1000, flops_per_token=6e6, peak_flops=1e10, clock=lambda: next(clock)
    )
    callback.on_train_begin(args, state, None)
    state.global_step = 4
    state.log_history.append({"loss": 1.0, "step": 4})
    logs = {"loss": 1.0}
    callback.on_log(args, state, None, logs=logs)
    assert logs["tokens_seen"] == 4000 and logs["tokens_per_second"] == 2000
    assert logs["mfu"] == pytest.approx(2000 * 6e6 / (1e10 * 2))
    assert state.log_history[-1]["mfu"] == logs["mfu"]  # the stored history gets it too
    summary = {"train_runtime": 1.0}
    callback.on_log(args, state, None, logs=summary)  # not a training log: untouched
    assert summary == {"train_runtime": 1.0}


def test_throughput_leaves_the_evaluation_time_out_of_the_interval_it_logs():
    """An interval that evaluated logged tokens/s and MFU over the evaluation too (1357 -> 122.9 -> 2662 tok/s):
    the seconds `EvalCallback` spent are left out, on a fake clock."""
    clock = iter([100.0, 102.0, 112.0])
    evaluation = SimpleNamespace(seconds=0.0)  # EvalCallback's running total
    args = SimpleNamespace(include_num_input_tokens_seen="no", world_size=1)
    state = TrainerState()
    callback = ThroughputCallback(tokens_per_step=1000, flops_per_token=6e6, clock=lambda: next(clock),
                                  excluded=[evaluation])
    callback.on_train_begin(args, state, None)
    speeds = []
    for step, evaluated in ((2, 0.0), (4, 8.0)):  # the 2nd interval: 10 s, 8 of them evaluating
        state.global_step, evaluation.seconds = step, evaluation.seconds + evaluated
        logs = {"loss": 1.0}
        callback.on_log(args, state, None, logs=logs)
        speeds.append(logs["tokens_per_second"])
    assert speeds == [1000, 1000]


@pytest.mark.parametrize(("device", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA GeForce RTX 4090", None),
])
def test_peak_flops_tells_the_h100_cards_apart(monkeypatch, device, peak):
    """Every H100 got the SXM's 989 TFLOP/s: the PCIe card's MFU was logged 24% too low."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: device)
    assert callbacks_module.peak_flops() == peak
    assert callbacks_module.peak_flops(100.0) == 100e12


def test_token_budget_progress_counts_tokens():
    callback = TokenBudgetProgressCallback(tokens_per_step=512)
    args = SimpleNamespace(include_num_input_tokens_seen="no")
    state = TrainerState(max_steps=10, is_world_process_zero=True)
    callback.on_train_begin(args, state, None)
    state.global_step = 3
    callback.on_step_end(args, state, None)
    assert (callback.training_bar.n, callback.training_bar.total) == (1536, 5120)
    callback.on_train_end(args, state, None)


def _continual_setup(tmp_path, tiny_model_dir, **training):
    (tmp_path / "domain.jsonl").write_text(
        "".join(json.dumps({"text": f"{TEXT} {i}"}) + "\n" for i in range(20))
    )
    (tmp_path / "general.jsonl").write_text(
        "".join(json.dumps({"question": f"What? {i}", "response": TEXT}) + "\n" for i in range(20))
    )
    data = ContinualPTConfig(
        domain_dataset=str(tmp_path / "domain.jsonl"),
        general_dataset=str(tmp_path / "general.jsonl"),
        shuffle_buffer_size=8,
    )
    settings = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "max_length": 64,
        "use_cpu": True,
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": False,
        "learning_rate": 1e-3,
        "report_to": "none",
    }
    return data, TrainingConfig(**{**settings, **training})


def test_non_padding_token_count_counts_every_token_of_packed_blocks(tmp_path, tiny_model_dir, one_torch_thread):
    """The Trainer's `non_padding` count drops the tokens equal to `pad_token_id`: with pad = EOS (a common
    setting), every document's EOS went uncounted, in the logs, tokens/s and the card's "exact" count."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.pad_token = tokenizer.eos_token
    data, args = _continual_setup(tmp_path, tiny_model_dir, include_num_input_tokens_seen="non_padding")
    dataset, mix = continual_pt_dataset(data, tokenizer, args)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = build_trainer(model, tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix))
    train_and_save(trainer)
    budget = args.max_steps * args.tokens_per_step
    assert trainer.state.num_input_tokens_seen == budget  # packed blocks: every token is a real one
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"**Tokens seen:** {budget:,} of a budget of {budget:,}" in card
    # not pushed: the card's snippet loads the folder it sits in (it named "out", which loads nothing)
    assert f'AutoModelForCausalLM.from_pretrained("{tmp_path / "out"}")' in card


def test_build_trainer_wires_packing_callbacks_and_the_eval_hook(
    tmp_path, tiny_model_dir, tiny_tokenizer, monkeypatch
):
    from transformers import AutoModelForCausalLM

    created = {}

    class FakeEvalCallback(TrainerCallback):
        def __init__(
            self,
            tasks,
            tokenizer,
            eval_steps=None,
            batch_size=8,
            max_examples=None,
            *,
            trainer=None,
        ):
            self.seconds = 0.0
            created.update(
                tasks=tasks,
                eval_steps=eval_steps,
                batch_size=batch_size,
                max_examples=max_examples,
                trainer=trainer,
            )

    data, args = _continual_setup(  # checks the task names with the real hf_ipt.evaluation
        tmp_path, tiny_model_dir, eval_tasks="finance, medicine", eval_max_examples=5, eval_steps=10
    )
    monkeypatch.setitem(
        sys.modules, "hf_ipt.evaluation", types.SimpleNamespace(EvalCallback=FakeEvalCallback)
    )
    dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = build_trainer(
        model, tiny_tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix)
    )
    kinds = [type(c) for c in trainer.callback_handler.callbacks]
    assert kinds[1] is ThroughputCallback  # before any logger, so they all see its metrics
    assert TokenBudgetProgressCallback in kinds and ProgressCallback not in kinds
    assert created.pop("trainer") is trainer  # so its scores reach every report_to logger
    assert created == {
        "tasks": "finance, medicine",
        "eval_steps": 10,
        "batch_size": 8,
        "max_examples": 5,
    }
    assert FakeEvalCallback in kinds
    throughput = trainer.callback_handler.callbacks[1]
    assert [type(c) for c in throughput.excluded] == [FakeEvalCallback]  # its seconds are no training time
    assert model.config.use_cache is False  # a cache would disable the packed-sequence mask
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape == (2, 64) and "attention_mask" not in batch
    assert [row["token_share"] for row in mix] == [0.5, 0.5]


def test_eval_hook_refuses_a_sharded_model(tmp_path, tiny_model_dir):
    """Each rank scores its share with a whole model, which FSDP / ZeRO-3 ranks do not hold: refuse it up front."""
    from types import SimpleNamespace

    _, args = _continual_setup(tmp_path, tiny_model_dir, eval_tasks="finance")

    def trainer(fsdp=False, stage=None):
        plugin = None if stage is None else SimpleNamespace(zero_stage=stage)
        state = SimpleNamespace(deepspeed_plugin=plugin)
        return SimpleNamespace(is_fsdp_enabled=fsdp, is_deepspeed_enabled=stage is not None,
                               accelerator=SimpleNamespace(state=state))

    for sharded in (trainer(fsdp=True), trainer(stage=3)):
        with pytest.raises(ValueError, match="whole copy of the model.*FSDP or DeepSpeed ZeRO-3"):
            callbacks_module.eval_callback(args, None, sharded)
    for plain in (trainer(), trainer(stage=2)):
        assert not callbacks_module.sharded_model(plain)


def test_eval_hook_without_the_harness_names_the_extra(tmp_path, tiny_model_dir, monkeypatch):
    _, args = _continual_setup(tmp_path, tiny_model_dir, eval_tasks="finance")  # its checks import the harness
    monkeypatch.setitem(sys.modules, "hf_ipt.evaluation", None)  # then the import fails (run alone, it failed here)
    with pytest.raises(ImportError, match=r"pip install 'evaluate>=0.4' scikit-learn, hf_ipt's `eval` extra"):
        callbacks_module.eval_callback(args, None, None)


def test_a_resume_starts_the_stream_at_the_position_saved_in_the_checkpoint(
    tmp_path, tiny_model_dir, tiny_tokenizer, caplog
):
    """Checkpoints hold each rank's stream position; a resume starts there (no batch replayed) and
    trains exactly as the uninterrupted run. A checkpoint without it (older hf_ipt) replays."""
    import shutil

    from transformers import AutoModelForCausalLM

    from hf_ipt.training.position import FOLDER, Position

    def run(out, max_steps=4, resume=None):
        data, args = _continual_setup(tmp_path, tiny_model_dir, output_dir=str(out), max_steps=max_steps,
                                      save_strategy="steps", save_steps=2, resume_from_checkpoint=resume,
                                      lr_scheduler_type="constant", disable_tqdm=True)
        dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
        # Dropout: the resumed run must also draw the same random numbers as the uninterrupted one.
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attention_dropout=0.3)
        trainer = build_trainer(model, tiny_tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix))
        train_and_save(trainer)
        return trainer, {log["step"]: log["loss"] for log in trainer.state.log_history if "loss" in log}

    def epochs(trainer):
        return {log["step"]: log["epoch"] for log in trainer.state.log_history if "loss" in log}

    def position(checkpoint):
        return Position.from_json((checkpoint / FOLDER / "rank0.json").read_text())

    straight, losses = run(tmp_path / "straight")
    assert straight.args.ignore_data_skip is False
    first, last = position(tmp_path / "straight" / "checkpoint-2"), position(tmp_path / "straight" / "checkpoint-4")
    assert 0 < first.rows("domain") < last.rows("domain") and first.after["mix:general"] != last.after["mix:general"]

    caplog.set_level("INFO", logger="hf_ipt")
    resumed, resumed_losses = run(tmp_path / "resumed", resume=str(tmp_path / "straight" / "checkpoint-2"))
    assert resumed.args.ignore_data_skip is True and "resumes at the position saved" in caplog.text
    assert resumed_losses == pytest.approx(losses, rel=1e-5)  # steps 1-2 come from the checkpoint's state
    assert epochs(resumed) == epochs(straight) == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}
    assert position(tmp_path / "resumed" / "checkpoint-4") == last  # it read exactly the same batches

    old = tmp_path / "old" / "checkpoint-2"
    shutil.copytree(tmp_path / "straight" / "checkpoint-2", old)
    shutil.rmtree(old / FOLDER)
    replayed, replayed_losses = run(tmp_path / "old", resume="last")
    assert replayed.args.ignore_data_skip is False and "holds no saved stream position" in caplog.text
    assert replayed_losses == pytest.approx(losses, rel=1e-5)


def test_a_jit_checkpoint_on_sigterm_saves_the_position_of_its_weights_and_ends_without_a_final_save(
    tmp_path, tiny_model_dir, tiny_tokenizer, caplog
):
    """transformers' JIT checkpoint (`--enable_jit_checkpoint`) saves from `on_pre_optimizer_step`: checkpoint-N
    holds step N's weights while step N+1's batches have trained. It held the stream position after them, so
    a resume skipped them; then the stopped run was saved, carded and pushed as if finished."""
    from transformers import AutoModelForCausalLM

    from hf_ipt.training.position import FOLDER

    def run(out, jit):
        data, args = _continual_setup(tmp_path, tiny_model_dir, output_dir=str(out), max_steps=4,
                                      gradient_accumulation_steps=2, save_strategy="no" if jit else "steps",
                                      save_steps=1, enable_jit_checkpoint=jit, disable_tqdm=True)
        dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
        trainer = build_trainer(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_tokenizer, dataset, args,
                                CardInfo("continual_pt", data_mix=mix))
        if jit:
            manager = next(c.jit_manager for c in trainer.callback_handler.callbacks if hasattr(c, "jit_manager"))
            calls, step = [], trainer.training_step

            def training_step(*args, **kwargs):  # SIGTERM's grace period ends in step 3's first micro-batch
                calls.append(1)
                manager.is_checkpoint_requested |= len(calls) == 5
                return step(*args, **kwargs)

            trainer.training_step = training_step
        train_and_save(trainer)
        return trainer

    run(tmp_path / "straight", jit=False)
    caplog.set_level("WARNING", logger="hf_ipt")
    stopped = run(tmp_path / "stopped", jit=True)
    assert stopped.signal_checkpoint == 2  # saved before step 3's optimizer step, which then ran
    saved = (tmp_path / "stopped" / "checkpoint-2" / FOLDER / "rank0.json").read_text()
    assert saved == (tmp_path / "straight" / "checkpoint-2" / FOLDER / "rank0.json").read_text()
    assert saved != (tmp_path / "straight" / "checkpoint-3" / FOLDER / "rank0.json").read_text()
    assert not (tmp_path / "stopped" / "model.safetensors").exists() and not (tmp_path / "stopped" / "README.md").exists()
    assert "stopped by SIGTERM, saved as checkpoint-2 (of 4 steps)" in caplog.text


def test_a_jit_checkpoint_in_the_last_step_still_ends_the_run_with_its_final_model(tmp_path, tiny_model_dir,
                                                                                   tiny_tokenizer):
    """SIGTERM's checkpoint taken once the last optimizer step ran: the run is complete, and its resume
    would be refused (nothing left to train), so the final model, card (and push) are written as usual."""
    from transformers import AutoModelForCausalLM

    data, args = _continual_setup(tmp_path, tiny_model_dir, max_steps=3, enable_jit_checkpoint=True,
                                  disable_tqdm=True)
    dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
    trainer = build_trainer(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_tokenizer, dataset, args,
                            CardInfo("continual_pt", data_mix=mix))
    manager = next(c.jit_manager for c in trainer.callback_handler.callbacks if getattr(c, "jit_manager", None))

    class Late(TrainerCallback):  # the grace period ends after the last step's optimizer step
        def on_optimizer_step(self, args, state, control, **kwargs):
            manager.is_checkpoint_requested |= state.global_step == args.max_steps - 1

    trainer.add_callback(Late())
    train_and_save(trainer)
    assert trainer.signal_checkpoint == 3 and (tmp_path / "out" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "README.md").is_file()


def test_after_a_resume_the_evaluation_logs_the_epoch_of_an_uninterrupted_run():
    """Resumed at step 3 of 6, the evaluation at step 4 logged epoch 0.1667 (the data loader's count, restarted at
    the resume), not 0.667: the epoch was corrected by a callback that ran after the evaluation's `on_step_end`."""
    from transformers import TrainerControl
    from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

    from hf_ipt.training.trainer import resume_stream

    class EpochAtEvaluation(TrainerCallback):  # logs from on_step_end, as EvalCallback does
        def on_step_end(self, args, state, control, **kwargs):
            self.epoch = state.epoch

    evaluation = EpochAtEvaluation()
    handler = CallbackHandler([DefaultFlowCallback(), evaluation], None, None, None, None)
    args = SimpleNamespace(ignore_data_skip=False, world_size=1, logging_steps=1, logging_strategy="no",
                           eval_strategy="no", save_strategy="no", logging_first_step=False, eval_delay=0)
    stream = SimpleNamespace(stream_start=SimpleNamespace(load=lambda checkpoint, world_size: True))
    trainer = SimpleNamespace(train_dataset=stream, args=args, callback_handler=handler, add_callback=handler.add_callback)
    assert resume_stream(trainer, "out/checkpoint-3")
    state = TrainerState(global_step=4, max_steps=6, epoch=1 / 6)  # as the Trainer sets it before on_step_end
    handler.on_step_end(args, state, TrainerControl())
    assert evaluation.epoch == pytest.approx(4 / 6)


def test_qlora_with_8bit_optimizer_trains_on_cpu(tmp_path, tiny_model_dir, tiny_tokenizer):
    from trl import ModelConfig

    from hf_ipt.training.model_init import load_model

    data, args = _continual_setup(tmp_path, tiny_model_dir, optim="adamw_bnb_8bit")
    model_args = ModelConfig(
        model_name_or_path=str(tiny_model_dir),
        use_peft=True,
        load_in_4bit=True,
        lora_r=4,
        lora_alpha=8,
        lora_target_modules=["q_proj", "v_proj"],
    )
    model = load_model(model_args)
    dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
    trainer = build_trainer(
        model, tiny_tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix)
    )
    train_and_save(trainer)
    optimizer = trainer.optimizer.optimizer
    assert type(optimizer).__module__.startswith("bitsandbytes") and optimizer.args.optim_bits == 8
    assert all(math.isfinite(log["loss"]) for log in trainer.state.log_history if "loss" in log)
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").is_file()
    card = (out / "README.md").read_text()
    assert "| lora | r=4, alpha=8, dropout=0.05 |" in card and "| quantization | 4-bit nf4 bitsandbytes |" in card
    assert card.startswith("---\nlibrary_name: peft\n")  # an adapter, not full weights
    with pytest.raises(ValueError, match="--use_peft"):
        load_model(ModelConfig(model_name_or_path=str(tiny_model_dir), load_in_8bit=True))


def test_the_saving_process_writes_every_ranks_stream_position(tmp_path, monkeypatch):
    """Only the process that saves writes, and it writes all the ranks' positions (gathered), so a
    checkpoint pushed from rank 0 or saved on a node without a shared file system is complete.
    The real collective runs in the two-process recipe test."""
    import accelerate.utils

    from hf_ipt.training.position import FOLDER, StreamStart
    from hf_ipt.training.trainer import save_stream_positions

    positions = ['{"after": {"rows:s": 1}, "skip": 0}', '{"after": {"rows:s": 2}, "skip": 3}']
    sent = []
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda objects: sent.extend(objects) or positions)

    save_stream_positions(str(tmp_path / "other"), positions[1], SimpleNamespace(world_size=2, should_save=False))
    assert sent == [positions[1]] and not (tmp_path / "other").exists()
    save_stream_positions(str(tmp_path / "main"), positions[0], SimpleNamespace(world_size=2, should_save=True))
    assert sorted(p.name for p in (tmp_path / "main" / FOLDER).iterdir()) == ["rank0.json", "rank1.json"]
    start = StreamStart()
    assert start.load(tmp_path / "main", 2) and (start(1).rows("s"), start(1).skip) == (2, 3)

    sent.clear()  # one process: nothing to gather
    save_stream_positions(str(tmp_path / "one"), positions[0], SimpleNamespace(world_size=1, should_save=True))
    assert sent == [] and StreamStart().load(tmp_path / "one", 1)


def test_push_to_hub_uploads_the_checkpoint_with_our_card(
    tmp_path, tiny_model_dir, tiny_tokenizer, monkeypatch
):
    import transformers.trainer
    from transformers import AutoModelForCausalLM

    uploads = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return SimpleNamespace(repo_id=repo_id)

        def upload_folder(self, repo_id, folder_path, **kwargs):
            folder = Path(folder_path)
            uploads.append(
                (
                    repo_id,
                    sorted(p.name for p in folder.iterdir()),
                    (folder / "README.md").read_text(),
                )
            )

    monkeypatch.setattr(transformers.trainer, "hf_api", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")  # a push without a token is refused (test below)
    data, args = _continual_setup(
        tmp_path, tiny_model_dir, push_to_hub=True, hub_model_id="me/tiny-ipt", hub_strategy="end"
    )
    dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config._commit_hash = "c0ffee" * 6 + "beef"  # as `from_pretrained` of a Hub model at `main` sets it
    card = CardInfo("continual_pt", base_model="org/base", base_revision="main", data_mix=mix)
    train_and_save(build_trainer(model, tiny_tokenizer, dataset, args, card))
    assert len(uploads) == 1  # save_model pushes by itself when push_to_hub is set: no second push
    (repo_id, files, readme) = uploads[-1]
    assert repo_id == "me/tiny-ipt" and "model.safetensors" in files and "README.md" in files
    assert (
        "# tiny-ipt" in readme
        and "| tokens_per_step | 128 |" in readme
        and "256 of a budget of 256" in readme
    )
    # the base model's commit, not the branch it moves on: the card says which weights were trained
    commit = "c0ffee" * 6 + "beef"
    assert f"[org/base](https://huggingface.co/org/base/tree/{commit}) at revision `{commit}`" in readme
    assert json.loads((tmp_path / "out" / "config.json").read_text())["use_cache"] is True


def _fake_trainer_hub(monkeypatch) -> list[str]:
    """`Trainer.push_to_hub` against a fake Hub API; returns the list that each upload's README.md joins."""
    import transformers.trainer

    readmes = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return SimpleNamespace(repo_id=repo_id)

        def upload_folder(self, repo_id, folder_path, **kwargs):
            readmes.append(Path(folder_path, "README.md").read_text())

    monkeypatch.setattr(transformers.trainer, "hf_api", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    return readmes


def test_push_tags_license_and_the_models_tags_reach_our_card(tmp_path, tiny_model_dir, tiny_tokenizer, monkeypatch,
                                                              caplog):
    """`Trainer.push_to_hub(tags=...)` hands its card arguments to `create_model_card`, whose card ours
    replaces: the user's tags (and the model's, `add_model_tags`) follow hf_ipt's, in a card not pushed too."""
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    readmes = _fake_trainer_hub(monkeypatch)
    data, args = _continual_setup(tmp_path, tiny_model_dir, push_to_hub=True, hub_model_id="me/tiny-ipt")
    dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.add_model_tags(["from-model"])
    trainer = build_trainer(model, tiny_tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix))
    trainer.push_to_hub(tags=["finance", "hf_ipt", "region: eu", "#1"], license="apache-2.0", language="en")
    ours = ["hf_ipt", "instruction-pretraining", "continual_pt"]
    data = ModelCard(readmes[-1]).data  # YAML-quoted: "region: eu" and "#1" read back as written
    assert data.tags == [*ours, "finance", "region: eu", "#1", "from-model"]
    assert (data.license, data.language) == ("apache-2.0", "en")
    trainer.create_model_card(finetuned_from="org/other")  # the recipes' save without a push
    data = ModelCard((tmp_path / "out" / "README.md").read_text()).data
    assert data.tags == [*ours, "from-model"] and data.base_model is None
    assert "the model card ignores finetuned_from" in caplog.text


def test_the_final_push_of_a_model_with_tags_and_no_hub_tags_goes_through(tmp_path, tiny_model_dir, tiny_tokenizer,
                                                                           monkeypatch):
    """`train_and_save` passed ``tags=None``, on which `Trainer.push_to_hub` adds the model's tags
    (`add_model_tags`, or trackio's): a TypeError once training had finished, nothing pushed."""
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    readmes = _fake_trainer_hub(monkeypatch)
    data, args = _continual_setup(tmp_path, tiny_model_dir, push_to_hub=True, hub_model_id="me/tiny-ipt",
                                  disable_tqdm=True)
    dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.add_model_tags(["from-model"])
    train_and_save(build_trainer(model, tiny_tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix)))
    assert ModelCard(readmes[-1]).data.tags == ["hf_ipt", "instruction-pretraining", "continual_pt", "from-model"]


def test_push_to_hub_without_a_token_is_refused_before_a_model_loads(tmp_path, monkeypatch, capsys):
    """The Trainer creates the Hub repo in its `__init__`, after the model (8B: minutes) and the data have loaded:
    without a token that failed there, with a traceback from huggingface_hub."""
    import importlib.util

    from hf_ipt.training.config import parse_recipe_args

    monkeypatch.delenv("HF_TOKEN", raising=False)
    recipes = Path(__file__).resolve().parents[1] / "recipes"
    spec = importlib.util.spec_from_file_location("continual_pt", recipes / "continual_pt.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    args = ["--domain_dataset", "d.jsonl", "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--max_steps",
            "1", "--push_to_hub", "--hub_model_id", "me/tiny-ipt"]
    with pytest.raises(SystemExit) as info:
        parse_recipe_args(recipe.make_parser(), args)
    assert info.value.code == 2
    assert "`push_to_hub` needs a Hub token with write access and none is set" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    assert parse_recipe_args(recipe.make_parser(), args)[1].push_to_hub
    monkeypatch.delenv("HF_TOKEN")
    assert parse_recipe_args(recipe.make_parser(), [*args, "--hub_token", "hf_fake"])[1].push_to_hub


def test_the_final_save_under_fsdp_gathers_a_full_state_dict():
    """Checkpoints stay sharded; `save_model` writes nothing for a sharded state dict, so the final
    save switches to a full one (loadable with from_pretrained)."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    from hf_ipt.training.trainer import full_state_dict_for_final_save

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type="SHARDED_STATE_DICT")
    trainer = SimpleNamespace(is_fsdp_enabled=True, accelerator=SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin)))
    full_state_dict_for_final_save(trainer)
    assert str(plugin.state_dict_type).endswith("FULL_STATE_DICT")
    full_state_dict_for_final_save(SimpleNamespace(is_fsdp_enabled=False))  # DDP, DeepSpeed: nothing to do


def test_a_sharded_fsdp_checkpoint_holds_what_makes_it_a_model_once_merged(tmp_path, tiny_model_dir, tiny_tokenizer):
    """Under the shipped FSDP2 config (SHARDED_STATE_DICT) a checkpoint-N held only `pytorch_model_fsdp_0/`, and
    `hf-ipt eval` on it failed ("a folder without a config.json"): the config and tokenizer are saved into it, the
    model check names the commands that merge it, and those commands, run as given, make a model that loads."""
    import subprocess

    import torch.distributed.checkpoint as dcp
    from accelerate.utils import FullyShardedDataParallelPlugin
    from transformers import AutoModelForCausalLM

    from hf_ipt.models import check_model_path, load_causal_lm
    from hf_ipt.training.trainer import save_loading_files

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.use_cache = False  # as `build_trainer` leaves it for packed training
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type="SHARDED_STATE_DICT")
    trainer = SimpleNamespace(
        is_fsdp_enabled=True, model=model, processing_class=tiny_tokenizer, args=SimpleNamespace(should_save=True),
        accelerator=SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), unwrap_model=lambda m: m),
    )
    checkpoint = tmp_path / "out" / "checkpoint-2"
    save_loading_files(trainer, str(checkpoint))
    # the ranks' shards, as accelerate's `save_fsdp_model` writes them (one process here)
    dcp.save({"model": model.state_dict()}, storage_writer=dcp.FileSystemWriter(str(checkpoint / "pytorch_model_fsdp_0")))
    assert json.loads((checkpoint / "config.json").read_text())["use_cache"] is True
    with pytest.raises(UsageError, match=r"is an FSDP checkpoint sharded by rank .*`accelerate merge-weights") as error:
        check_model_path(str(checkpoint))
    merge = re.search(r"`accelerate merge-weights (\S+) (\S+)`", str(error.value))
    copy = re.search(r"`cp ((?:\S+ )+)(\S+)/`", str(error.value))
    assert merge and copy and merge[2] == copy[2] == str(tmp_path / "out" / "checkpoint-2-merged")
    subprocess.run([sys.executable, "-m", "accelerate.commands.accelerate_cli", "merge-weights", merge[1], merge[2]],
                   check=True, capture_output=True)
    subprocess.run(["cp", *copy[1].split(), merge[2]], check=True)
    merged, _ = load_causal_lm(merge[2], dtype="float32")
    for name, weights in model.state_dict().items():
        assert merged.state_dict()[name].equal(weights), name
    (checkpoint / "config.json").unlink()  # a checkpoint of an older hf_ipt: the config and tokenizer come from elsewhere
    with pytest.raises(UsageError, match=r"merge-weights .*copy config.json and the tokenizer files .* base model"):
        check_model_path(str(checkpoint))
    save_loading_files(SimpleNamespace(is_fsdp_enabled=False), str(tmp_path / "ddp"))  # saved whole: nothing to add
    assert not (tmp_path / "ddp").exists()


def test_only_rank_0_checks_document_isolation_in_a_sharded_launch(tmp_path, tiny_model_dir, tiny_tokenizer,
                                                                   monkeypatch):
    from transformers import AutoModelForCausalLM

    from hf_ipt.training import trainer as trainer_module

    calls = []
    monkeypatch.setattr(trainer_module, "isolation_gap", lambda model, **kwargs: calls.append(1))
    data, args = _continual_setup(tmp_path, tiny_model_dir)
    dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for env, expected in (({}, 1), ({"ACCELERATE_USE_FSDP": "true", "RANK": "1"}, 0),
                          ({"ACCELERATE_USE_FSDP": "true", "RANK": "0"}, 1)):
        calls.clear()
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            build_trainer(model, tiny_tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix))
        assert len(calls) == expected, env


def test_resolve_checkpoint(tmp_path, caplog):
    import logging

    assert resolve_checkpoint(None, str(tmp_path)) is None and resolve_checkpoint("false", str(tmp_path)) is None
    with pytest.raises(ValueError, match="'some/path' does not exist"):
        resolve_checkpoint("some/path", str(tmp_path))
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        resolve_checkpoint("last", str(tmp_path))
    for step in (2, 10, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
    with pytest.raises(ValueError, match=r"no complete checkpoint-\* folder \(3 without trainer_state.json\)"):
        resolve_checkpoint("last", str(tmp_path))
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    # checkpoint-12 is what a save cut short leaves (hf_ipt's stream position, no trainer state)
    with caplog.at_level(logging.WARNING, logger="hf_ipt.training.trainer"):
        for value in ("last", "true", "True"):
            assert resolve_checkpoint(value, str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert "checkpoint-12 has no trainer_state.json" in caplog.text
    with pytest.raises(ValueError, match="checkpoint-12' is not a checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "checkpoint-12"), str(tmp_path))
    assert resolve_checkpoint(str(tmp_path / "checkpoint-2"), str(tmp_path)) == str(tmp_path / "checkpoint-2")
    # before any model loads: the recipe's arguments refuse a bad value when they are parsed
    with pytest.raises(ValueError, match="'missing' does not exist"):
        TrainingConfig(output_dir=str(tmp_path), max_steps=2, resume_from_checkpoint="missing", use_cpu=True)
    args = TrainingConfig(output_dir=str(tmp_path), max_steps=2, resume_from_checkpoint="last", use_cpu=True)
    assert args.resume_from_checkpoint == str(tmp_path / "checkpoint-10")


def test_a_checkpoint_at_or_past_max_steps_is_refused_before_a_model_loads(tmp_path):
    """Resuming checkpoint-3 with --max_steps 2 (or 3) trained a 4th step at the schedule's end, wrote
    checkpoint-4 and a card of 512 tokens "of a budget of 256": the Trainer checks the budget only
    after a step."""
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    for max_steps in (2, 3):
        with pytest.raises(ValueError, match=rf"at step 3, and `max_steps` is {max_steps}: nothing is left to train"):
            TrainingConfig(output_dir=str(tmp_path), max_steps=max_steps, resume_from_checkpoint="last", use_cpu=True)
    args = TrainingConfig(output_dir=str(tmp_path), max_steps=4, resume_from_checkpoint="last", use_cpu=True)
    assert args.resume_from_checkpoint == str(tmp_path / "checkpoint-3")


def test_the_card_records_the_launchers_precision_the_weights_dtype_and_quantization(tiny_model_dir, monkeypatch):
    """`accelerate launch` with `mixed_precision: bf16` trains under bf16 autocast while `args.bf16`
    stays false: the card used to say fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    from hf_ipt.training.trainer import hyperparameters

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    args = TrainingConfig(output_dir="unused", max_steps=2, use_cpu=True)
    assert not args.bf16 and hyperparameters(args, model)["precision"] == "bf16"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    values = hyperparameters(TrainingConfig(output_dir="unused", max_steps=2, use_cpu=True), model)
    assert values["precision"] == "fp32" and "weights_dtype" not in values and "quantization" not in values
    values = hyperparameters(TrainingConfig(output_dir="unused", max_steps=2, use_cpu=True),
                             model.to(torch.bfloat16))
    assert values["weights_dtype"] == "bfloat16"


def test_the_card_records_the_warmup_steps_run_the_clipping_and_the_schedules_settings(tiny_model_dir):
    """`warmup_steps: 0.03` (the shipped configs: a fraction of max_steps) was written as "0.03" steps, and
    the gradient clipping and `lr_scheduler_kwargs` (e.g. a cosine's floor) were left out."""
    from transformers import AutoModelForCausalLM

    from hf_ipt.training.trainer import hyperparameters

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    args = TrainingConfig(output_dir="unused", max_steps=2000, use_cpu=True, warmup_steps=0.03, max_grad_norm=0.3,
                          lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.1})
    values = hyperparameters(args, model)
    assert (values["warmup_steps"], values["max_grad_norm"]) == (60, 0.3)
    assert values["lr_scheduler_kwargs"] == '{"min_lr_rate": 0.1}'
    values = hyperparameters(TrainingConfig(output_dir="unused", max_steps=2000, use_cpu=True, warmup_steps=50), model)
    assert values["warmup_steps"] == 50 and "lr_scheduler_kwargs" not in values


def test_lora_adapters_are_initialized_from_the_seed(tiny_model_dir):
    import torch
    from trl import ModelConfig

    from hf_ipt.training.model_init import load_model

    args = ModelConfig(model_name_or_path=str(tiny_model_dir), use_peft=True, lora_r=4,
                       lora_target_modules=["q_proj", "v_proj"])

    def adapters(seed: int) -> list:
        return [p.detach().clone() for n, p in load_model(args, seed=seed).named_parameters() if "lora_A" in n]

    torch.manual_seed(123)  # whatever the global state before: the seed decides
    first = adapters(7)
    assert all(torch.equal(a, b) for a, b in zip(first, adapters(7), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, adapters(8), strict=True))


def test_flops_per_token_is_six_n(tiny_model_dir):
    from transformers import AutoConfig

    from hf_ipt.training.model_init import num_parameters

    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert flops_per_token(config) == 6 * num_parameters(config)


def test_release_wrapped_model_frees_the_wrapper_before_the_group_ends(caplog):
    import torch

    class Wrapper(torch.nn.parallel.DistributedDataParallel):  # a DDP wrapper, without a process group
        def __init__(self, module: torch.nn.Module):
            torch.nn.Module.__init__(self)
            self.module = module

    class Engine(torch.nn.Module):  # stands in for DeepSpeed's engine, which its ZeRO-3 hooks keep referenced
        def __init__(self, module: torch.nn.Module):
            super().__init__()
            self.module = module

    def trainer_with(prepared: list, wrap: type = Wrapper) -> SimpleNamespace:
        model = torch.nn.Linear(2, 2)
        wrapper = wrap(model)
        prepared.append(wrapper)
        accelerator = SimpleNamespace(free_memory=prepared.clear)
        return SimpleNamespace(model=model, model_wrapped=wrapper, accelerator=accelerator)

    prepared: list = []
    trainer = trainer_with(prepared)
    with caplog.at_level("WARNING", logger="hf_ipt.training.trainer"):
        release_wrapped_model(trainer)
    assert trainer.model_wrapped is trainer.model and not prepared and not caplog.records

    kept = trainer_with([])  # something else still holds the wrapper: said, not silent
    held = kept.model_wrapped
    with caplog.at_level("WARNING", logger="hf_ipt.training.trainer"):
        release_wrapped_model(kept)
    # The trainer let go of the wrapper; only the caller's reference keeps it, and that is said.
    assert isinstance(held, Wrapper) and held.module is kept.model
    assert kept.model_wrapped is kept.model and "Wrapper wrapper is still referenced" in caplog.text

    caplog.clear()
    engine = trainer_with([], wrap=Engine)
    held = engine.model_wrapped
    with caplog.at_level("WARNING", logger="hf_ipt.training.trainer"):
        release_wrapped_model(engine)
    assert engine.model_wrapped is engine.model and not caplog.records  # not DDP's: no hang known, no alarm


def test_single_cpu_process_warning_only_for_a_cpu_launch_of_several():
    from hf_ipt.training.trainer import single_cpu_process_warning

    simple = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    two = ["accelerate", "launch", "--num_processes", "2", "--cpu", "recipes/x.py"]
    assert "ddp" in single_cpu_process_warning(simple, two)  # `--cpu --num_processes 2`: names the fix
    assert "ddp" in single_cpu_process_warning(simple, ["accelerate", "launch", "--num_processes=3", "--cpu"])
    assert "ddp" in single_cpu_process_warning(simple, [])  # launcher unknown: the environment decides
    one = ["accelerate", "launch", "--num_processes", "1", "--cpu", "recipes/x.py"]
    assert single_cpu_process_warning(simple, one) is None  # MASTER_PORT exported by a shell or Slurm
    assert single_cpu_process_warning({"ACCELERATE_USE_CPU": "True"}, two) is None
    assert single_cpu_process_warning({**simple, "WORLD_SIZE": "2"}, two) is None  # torchrun started 2
    assert single_cpu_process_warning({**simple, "OMPI_COMM_WORLD_SIZE": "2"}, two) is None  # mpirun
    assert single_cpu_process_warning({**simple, "ACCELERATE_USE_CPU": "False"}, two) is None


def test_bf16_autocast_on_a_cpu_without_bf16_instructions_is_warned_of():
    """The recipes' YAML says `bf16: true` (for GPUs); with `--use_cpu true` on an AVX2 CPU, bf16 is emulated:
    SmolLM2-135M trained at 2.5 tokens/s instead of 40-61 in fp32, with no word of why."""
    from hf_ipt.training.trainer import cpu_has_native_bf16, emulated_bf16_warning

    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx avx2 fma\n"
    sapphire = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    graviton = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
    assert [cpu_has_native_bf16(info) for info in (avx2, sapphire, graviton, "processor\t: 0\n")] == [
        False, True, True, None]
    assert "pass --bf16 false" in emulated_bf16_warning("bf16", "cpu", native=False)
    assert emulated_bf16_warning("bf16", "cpu", native=True) is None
    assert emulated_bf16_warning("bf16", "cpu", native=None) is None  # unknown: no guess
    assert emulated_bf16_warning("no", "cpu", native=False) is None
    assert emulated_bf16_warning("bf16", "cuda", native=False) is None


def test_train_and_save_frees_the_wrapper_before_the_process_group_ends(tmp_path):
    class Wrapper:  # DistributedDataParallel's place: weak-referenceable
        def __init__(self, module):
            self.module = module

    calls: list[str] = []
    model = SimpleNamespace(config=SimpleNamespace(use_cache=False))
    from hf_ipt.training.card import CardInfo

    trainer = SimpleNamespace(
        args=SimpleNamespace(resume_from_checkpoint=None, output_dir=str(tmp_path), push_to_hub=False,
                             hub_tags=["finance"], hub_license="mit", hub_language=None),
        card=CardInfo("pretrain"), is_world_process_zero=lambda: True,
        model=model, model_wrapped=Wrapper(model),
        train=lambda **_: calls.append("train"), save_model=lambda _: calls.append("save"),
        create_model_card=lambda **metadata: calls.append(("card", metadata)), end=lambda: calls.append("end"),
        accelerator=SimpleNamespace(free_memory=lambda: calls.append("free")), signal_checkpoint=None,
    )
    train_and_save(trainer)
    card = ("card", {"tags": ["finance"], "license": "mit"})  # --hub_tags/--hub_license; no --hub_language
    assert calls == ["train", "save", card, "free", "end"] and trainer.model_wrapped is model


def test_a_resume_with_another_data_stream_is_refused(tmp_path, caplog):
    """Another `max_steps` moves an automatic collection share: the Trainer would then skip batches
    of a different stream. The first run's settings sit beside its checkpoints."""
    from types import SimpleNamespace

    from hf_ipt.cli import UsageError
    from hf_ipt.training.card import CardInfo
    from hf_ipt.training.trainer import DATA_STREAM_FILE, check_data_stream

    def trainer(output_dir, share, batch=2, set_share=None, raw="raw.jsonl", col="col", ignore=False, recipe="pretrain",
                data_seed=None):
        mix = [{"source": "raw.jsonl", "content": "raw text", "token_share": 1 - share, "note": ""},
               {"source": col, "content": "collection", "token_share": share, "note": "seen about 4 times"}]
        args = SimpleNamespace(output_dir=str(output_dir), seed=42, max_length=128, world_size=1,
                               per_device_train_batch_size=batch, gradient_accumulation_steps=1, ignore_data_skip=ignore,
                               data_seed=data_seed)
        settings = {"raw_dataset": raw, "collection": col, "collection_repeats": 4, "collection_token_share": set_share}
        if recipe != "pretrain":
            settings = {"domain_dataset": raw}
        card = CardInfo("pretrain", data_mix=mix, data_settings=settings)
        return SimpleNamespace(args=args, card=card, is_world_process_zero=lambda: True)

    first = tmp_path / "first"
    check_data_stream(trainer(first, 0.25), None)  # a fresh run records its stream
    assert (first / DATA_STREAM_FILE).is_file()
    (first / "checkpoint-2").mkdir()
    checkpoint = str(first / "checkpoint-2")
    check_data_stream(trainer(first, 0.25), checkpoint)  # the same stream: resumes
    check_data_stream(trainer(tmp_path / "second", 0.25), checkpoint)  # into another folder too
    with pytest.raises(UsageError, match=r"another data stream \(changed: mix\.collection \(col\) token_share 0\.25 -> 0\.125; mix\.raw text .*--collection_token_share"):
        check_data_stream(trainer(first, 0.125), checkpoint)
    with pytest.raises(UsageError, match=r"batches\.per_device_train_batch_size 2 -> 4.*or pass --ignore_data_skip"):
        check_data_stream(trainer(first, 0.25, batch=4), checkpoint)
    # a run of a version that ignored --data_seed (none recorded): resuming WITH it is another stream, said why
    with pytest.raises(UsageError, match=r"batches\.data_seed None -> 7.*resume it without --data_seed"):
        check_data_stream(trainer(first, 0.25, data_seed=7), checkpoint)
    # --ignore_data_skip: the weights resume and the new stream starts from its beginning, said
    from hf_ipt.training.trainer import refuse_changed_stream

    bigger = trainer(tmp_path / "bigger", 0.25, batch=4, ignore=True)
    bigger.args.resume_from_checkpoint = checkpoint
    (first / "checkpoint-2" / "trainer_state.json").write_text("{}")  # complete, as `resolve_checkpoint` checks
    refuse_changed_stream(bigger.args, bigger.card)  # the recipes' early check: allowed, and says nothing
    assert "another data stream" not in caplog.text
    changed = trainer(first, 0.125)
    changed.args.resume_from_checkpoint = checkpoint
    with pytest.raises(UsageError, match="another data stream"):  # the early check refuses as the Trainer's does
        refuse_changed_stream(changed.args, changed.card)
    check_data_stream(bigger, checkpoint)
    assert caplog.text.count("with another data stream (changed: batches.per_device_train_batch_size 2 -> 4) and "
                             "--ignore_data_skip") == 1
    cpt = tmp_path / "cpt"  # continual_pt has no collection share: the message does not offer one
    check_data_stream(trainer(cpt, 0.25, recipe="continual_pt"), None)
    (cpt / "checkpoint-2").mkdir()
    with pytest.raises(UsageError) as refused:
        check_data_stream(trainer(cpt, 0.25, raw="other.jsonl", recipe="continual_pt"), str(cpt / "checkpoint-2"))
    assert "collection_token_share" not in str(refused.value)
    # Training longer as the message says: the share derived from max_steps, now given explicitly.
    check_data_stream(trainer(tmp_path / "longer", 0.25, set_share=0.25), checkpoint)
    with pytest.raises(UsageError, match=r"changed: mix\.collection \(col\) token_share 0\.25 -> 0\.2;"):
        check_data_stream(trainer(first, 0.2, set_share=0.2), checkpoint)  # another share is another stream
    with pytest.raises(UsageError, match=r"changed: data\.raw_dataset 'raw\.jsonl' -> 'other\.jsonl'\)"):
        check_data_stream(trainer(first, 0.25, set_share=0.25, raw="other.jsonl"), checkpoint)
    (first / DATA_STREAM_FILE).unlink()  # a run from before the check: resumes with a warning
    check_data_stream(trainer(first, 0.125), checkpoint)
    assert "cannot be compared" in caplog.text

    # A run that recorded a Hub id bare (before ids were pinned) resumes with the id pinned now.
    hub = tmp_path / "hub"
    check_data_stream(trainer(hub, 0.25, col="org/col"), None)
    (hub / "checkpoint-2").mkdir()
    sha, other = "a" * 40, "b" * 40
    check_data_stream(trainer(hub, 0.25, col=f"org/col@{sha}"), str(hub / "checkpoint-2"))
    assert f"reads them at org/col@{sha}" in caplog.text
    # ... and from then on it is recorded pinned: another commit is another stream.
    with pytest.raises(UsageError, match=f"data.collection 'org/col@{sha}' -> 'org/col@{other}'"):
        check_data_stream(trainer(hub, 0.25, col=f"org/col@{other}"), str(hub / "checkpoint-2"))
    bare = tmp_path / "bare"
    check_data_stream(trainer(bare, 0.25, col="org/col"), None)
    (bare / "checkpoint-2").mkdir()
    with pytest.raises(UsageError, match="data.collection 'org/col' -> 'org/other@"):  # another repo stays another
        check_data_stream(trainer(bare, 0.25, col=f"org/other@{sha}"), str(bare / "checkpoint-2"))


def test_a_resume_whose_glob_matches_other_files_is_refused(tmp_path, monkeypatch):
    """A file added to a source's glob between save and resume: the saved positions counted rows of the
    first files, so rows were trained twice and others never, without a word."""
    from types import SimpleNamespace

    from hf_ipt.cli import UsageError
    from hf_ipt.training.card import CardInfo
    from hf_ipt.training.trainer import DATA_STREAM_FILE, check_data_stream

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("a", "b"):
        (tmp_path / "data" / f"{name}.jsonl").write_text('{"text": "x"}\n')
    col = tmp_path / "col" / "src" / "shard"
    col.mkdir(parents=True)
    (col / "0.jsonl").write_text("{}\n")

    def trainer(output_dir, raw="data/*.jsonl", ignore=False):
        args = SimpleNamespace(output_dir=str(output_dir), seed=42, max_length=128, world_size=1, data_seed=None,
                               per_device_train_batch_size=2, gradient_accumulation_steps=1, ignore_data_skip=ignore)
        settings = {"raw_dataset": raw, "collection": "col", "text_column": "data"}
        return SimpleNamespace(args=args, card=CardInfo("pretrain", data_settings=settings),
                               is_world_process_zero=lambda: True)

    run = tmp_path / "run"
    check_data_stream(trainer(run), None)
    recorded = json.loads((run / DATA_STREAM_FILE).read_text())["files"]
    assert sorted(recorded) == ["collection", "raw_dataset"] and recorded["raw_dataset"].startswith("2 files")
    (run / "checkpoint-2").mkdir()
    checkpoint = str(run / "checkpoint-2")
    check_data_stream(trainer(run), checkpoint)  # the same files: resumes
    (tmp_path / "data" / "c.jsonl").write_text('{"text": "y"}\n')
    with pytest.raises(UsageError, match=r"changed: files\.raw_dataset '2 files \(names sha256 \w+\)' -> '3 files"):
        check_data_stream(trainer(run), checkpoint)
    (col / "1.jsonl").write_text("{}\n")  # a folder source too
    with pytest.raises(UsageError, match=r"files\.collection '1 files .* -> '2 files"):
        check_data_stream(trainer(run), checkpoint)
    check_data_stream(trainer(tmp_path / "other", ignore=True), checkpoint)  # --ignore_data_skip: allowed, warned
    # a run recorded before the files check (no `files`) resumes as before
    old = json.loads((run / DATA_STREAM_FILE).read_text())
    old.pop("files")
    (run / DATA_STREAM_FILE).write_text(json.dumps(old))
    check_data_stream(trainer(run), checkpoint)


def test_a_resume_of_a_run_that_read_a_txt_folder_by_lines_is_refused(tmp_path, monkeypatch):
    """A run older than the files check (its data_stream.json records no `files`) read a folder's .txt files
    one row per line: its positions, split recorded or not, count lines, which this version skipped as files."""
    from types import SimpleNamespace

    from hf_ipt.cli import UsageError
    from hf_ipt.training.card import CardInfo
    from hf_ipt.training.trainer import DATA_STREAM_FILE, check_data_stream

    monkeypatch.chdir(tmp_path)
    for folder, name in (("docs", "a.txt"), ("rows", "a.jsonl")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text('{"text": "x"}\n')

    def trainer(domain, ignore=False):
        args = SimpleNamespace(output_dir=str(tmp_path / "run"), seed=42, max_length=128, world_size=1,
                               data_seed=None, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                               ignore_data_skip=ignore)
        return SimpleNamespace(args=args, card=CardInfo("continual_pt", data_settings={"domain_dataset": domain}),
                               is_world_process_zero=lambda: True)

    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    checkpoint = str(run / "checkpoint-2")
    for domain in ("docs", "rows"):
        check_data_stream(trainer(domain), None)
        check_data_stream(trainer(domain), checkpoint)  # recorded by this version: resumes
        old = json.loads((run / DATA_STREAM_FILE).read_text())
        old.pop("files")  # as a run older than the files check recorded it
        (run / DATA_STREAM_FILE).write_text(json.dumps(old))
        if domain == "rows":  # JSON lines were rows then too
            check_data_stream(trainer(domain), checkpoint)
            continue
        with pytest.raises(UsageError, match=r"records no files.*domain_dataset 'docs'.*one row per LINE.*"
                                             r"--ignore_data_skip true"):
            check_data_stream(trainer(domain), checkpoint)
        (run / DATA_STREAM_FILE).write_text(json.dumps(old))
        check_data_stream(trainer(domain, ignore=True), checkpoint)  # the stream starts from its beginning


def _losses(tmp_path, tiny_model_dir, tiny_tokenizer, attn=None, **training):
    from transformers import AutoModelForCausalLM, set_seed

    from hf_ipt.training import varlen

    tmp_path.mkdir()
    data, args = _continual_setup(tmp_path, tiny_model_dir, **training)
    set_seed(0)
    dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=varlen.prepare(attn))
    trainer = build_trainer(model, tiny_tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix))
    trainer.train()
    return trainer, args, [log["loss"] for log in trainer.state.log_history if "loss" in log]


def test_compile_layers_compiles_each_decoder_layer_and_trains_as_eager(tmp_path, tiny_model_dir, tiny_tokenizer):
    import torch
    from torch._dynamo.utils import counters

    _, _, eager = _losses(tmp_path / "eager", tiny_model_dir, tiny_tokenizer)
    counters.clear()
    # backend "eager": dynamo traces each layer and runs the traced graph (no C++ build on CI)
    trainer, args, compiled = _losses(
        tmp_path / "layers", tiny_model_dir, tiny_tokenizer, compile_layers=True, torch_compile_backend="eager"
    )
    model = trainer.model
    # The Trainer must not compile the whole model (loss included) from the backend it was given.
    assert args.torch_compile is False and args.torch_compile_backend is None
    assert args.compile_layers_options == {"backend": "eager", "mode": None}
    layers = model.model.layers
    assert len(layers) > 0 and all(layer._compiled_call_impl is not None for layer in layers)
    assert model._compiled_call_impl is None and model.lm_head._compiled_call_impl is None
    # Accelerate returns a wrapper rather than changing `model`: the one the Trainer ran must not be compiled.
    assert not isinstance(trainer.model_wrapped, torch._dynamo.eval_frame.OptimizedModule)
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo did trace the layers
    assert len(compiled) == len(eager) == 2
    assert compiled == pytest.approx(eager, rel=1e-5)


def test_varlen_attention_trains_as_sdpa_with_the_collators_document_bounds(
    tmp_path, tiny_model_dir, tiny_tokenizer, monkeypatch
):
    from hf_ipt.training import varlen

    _, _, sdpa = _losses(tmp_path / "sdpa", tiny_model_dir, tiny_tokenizer)
    calls = []
    per_document = varlen._per_document
    monkeypatch.setattr(varlen, "_per_document", lambda *a: calls.append(1) or per_document(*a))
    trainer, _, fast = _losses(tmp_path / "varlen", tiny_model_dir, tiny_tokenizer, attn=varlen.NAME)
    assert trainer.model.config._attn_implementation == varlen.NAME
    layers = trainer.model.config.num_hidden_layers
    assert len(calls) == (2 + 2) * layers  # the isolation probe's 2 forwards, then the 2 training steps
    assert len(fast) == len(sdpa) == 2
    assert fast == pytest.approx(sdpa, rel=1e-5)


def test_compile_layers_refuses_torch_compile_and_a_model_without_layer_classes(
    tmp_path, tiny_model_dir, monkeypatch
):
    import torch

    from hf_ipt.training.model_init import compile_decoder_layers

    with pytest.raises(ValueError, match="pass one"):
        _continual_setup(tmp_path, tiny_model_dir, compile_layers=True, torch_compile=True)
    # `accelerate launch --dynamo_backend inductor` would compile the whole model on top of the layers.
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "INDUCTOR")
    with pytest.raises(ValueError, match="ACCELERATE_DYNAMO_BACKEND='INDUCTOR'.*--dynamo_backend no"):
        _continual_setup(tmp_path, tiny_model_dir, compile_layers=True)
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")
    assert _continual_setup(tmp_path, tiny_model_dir, compile_layers=True)[1].compile_layers_options
    with pytest.raises(ValueError, match="_no_split_modules.*--torch_compile"):
        compile_decoder_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_the_eval_hook_runs_eager_when_layers_are_compiled():
    """Scoring with a KV cache would recompile every compiled layer up to dynamo's limit."""
    import torch
    from torch._dynamo.utils import counters

    from hf_ipt.evaluation.callback import _eager_if_layers_compiled

    double = torch.compile(lambda x: x * 2, backend="eager")
    counters.clear()
    with _eager_if_layers_compiled(SimpleNamespace(compile_layers=True)):
        assert double(torch.ones(2)).tolist() == [2.0, 2.0]
    assert counters["stats"]["unique_graphs"] == 0
    with _eager_if_layers_compiled(SimpleNamespace(compile_layers=False)):
        double(torch.ones(2))
    assert counters["stats"]["unique_graphs"] == 1


def test_a_max_length_past_the_models_context_is_refused_before_training(tmp_path, tiny_model_dir, tiny_tokenizer):
    """GPT-2's learned positions failed with an IndexError on the first batch; Llama trained past its context."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    from hf_ipt.cli import UsageError
    from hf_ipt.training.model_init import check_context_length

    data, args = _continual_setup(tmp_path, tiny_model_dir)  # max_length 64
    dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_positions=32, n_embd=32, n_layer=1, n_head=2))
    llama = AutoModelForCausalLM.from_pretrained(tiny_model_dir, max_position_embeddings=48)
    for model, name, context in ((gpt2, "GPT2LMHeadModel", 32), (llama, "LlamaForCausalLM", 48)):
        with pytest.raises(UsageError, match=rf"`--max_length` 64 exceeds the context of the model \({name}: "
                                             rf"max_position_embeddings {context}\).*--max_length {context} or less"):
            build_trainer(model, tiny_tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix))
    check_context_length(llama, 48)  # up to the context: trains
    check_context_length(SimpleNamespace(config=SimpleNamespace()), 10**6)  # no max_position_embeddings: left alone


def test_the_card_of_a_resumed_run_counts_all_its_tokens_and_no_other_runs_scores(
    tmp_path, tiny_model_dir, tiny_tokenizer
):
    """Resumed without --include_num_input_tokens_seen, the card said the count restored from the
    checkpoint (the first session's tokens); counting turned on at a resume counted only the new
    session; and the evaluation record another run had left in output_dir went into the card."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    out.mkdir()
    stale = {"global_step": 10, "results": {"OtherTask": {"acc": 0.9}}, "average": 0.9}
    (out / "domain_eval_results.json").write_text(json.dumps(stale))

    def train(max_steps: int, counting: bool, resume: str | None = None) -> str:
        data, args = _continual_setup(tmp_path, tiny_model_dir, max_steps=max_steps, save_strategy="steps",
                                      save_steps=2, include_num_input_tokens_seen=counting,
                                      resume_from_checkpoint=resume)
        dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        train_and_save(build_trainer(model, tiny_tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix)))
        return (out / "README.md").read_text()

    card = train(2, counting=True)
    assert "**Tokens seen:** 256 of a budget of 256" in card  # 2 steps of 128 tokens, counted
    assert "OtherTask" not in card and "No evaluation results yet." in card
    assert "**Tokens seen:** 512 of a budget of 512" in train(4, counting=False, resume="last")
    assert "**Tokens seen:** 768 of a budget of 768" in train(6, counting=True, resume="last")


def test_the_card_keeps_the_evaluation_that_its_run_logged(tmp_path):
    from hf_ipt.evaluation.callback import flatten_results
    from hf_ipt.training.card import run_eval_results

    results = {"TinyQA": {"accuracy": 0.5}}
    record = {"global_step": 4, "results": results, "average": 0.5}
    (tmp_path / "domain_eval_results.json").write_text(json.dumps(record))
    logged = [{"loss": 1.0, "step": 4}, {**flatten_results(results), "step": 4}]
    assert run_eval_results(tmp_path, logged) == record
    assert run_eval_results(tmp_path, logged[:1]) is None  # not logged by this run: another run's
    assert run_eval_results(tmp_path, [{**logged[1], "step": 2}]) is None


@pytest.mark.parametrize(("scheduler", "learning_rate"), [("cosine", 1e-3), ("linear", 1e-3), ("cosine", 3e-3)])
def test_a_resume_with_a_larger_max_steps_trains_on_the_new_schedule_from_its_first_step(
    scheduler, learning_rate, tmp_path, tiny_model_dir, tiny_tokenizer, caplog
):
    """Raising `--max_steps` to train on: the optimizer's saved learning rate was the old schedule's
    last one (0 at the end of a cosine or linear decay), so the first resumed step did not train; a
    `--learning_rate` changed at the resume was ignored (the schedule kept the checkpoint's peak)."""
    import torch
    from transformers import AutoModelForCausalLM, get_scheduler

    used: dict[int, float] = {}

    class RecordLearningRate(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            used[state.global_step + 1] = optimizer.param_groups[0]["lr"]

    def run(max_steps, resume=None, **training):
        data, args = _continual_setup(tmp_path, tiny_model_dir, max_steps=max_steps, save_strategy="steps",
                                      save_steps=2, resume_from_checkpoint=resume, lr_scheduler_type=scheduler,
                                      warmup_steps=1, disable_tqdm=True, **training)
        dataset, mix = continual_pt_dataset(data, tiny_tokenizer, args)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        trainer = build_trainer(model, tiny_tokenizer, dataset, args, CardInfo("continual_pt", data_mix=mix))
        trainer.add_callback(RecordLearningRate())
        train_and_save(trainer)
        return trainer

    run(2, learning_rate=1e-3)
    trainer = run(4, resume="last", learning_rate=learning_rate)
    assert ("is used from the resumed step on" in caplog.text) == (learning_rate != 1e-3)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=learning_rate)
    expected = get_scheduler(scheduler, optimizer, num_warmup_steps=1, num_training_steps=4)
    for _ in range(2):  # the steps before the resume
        optimizer.step()
        expected.step()
    for step in (3, 4):
        assert used[step] == pytest.approx(optimizer.param_groups[0]["lr"]) and used[step] > 0, (step, used)
        optimizer.step()
        expected.step()
    logged = {log["step"]: log["learning_rate"] for log in trainer.state.log_history if "loss" in log}
    assert logged[3] == pytest.approx(used[3]) and logged[4] == pytest.approx(used[4])  # the rates logged are those used


def test_a_fresh_run_into_a_folder_with_another_runs_checkpoints_is_refused_before_a_model_loads(tmp_path):
    """A run without --resume_from_checkpoint into a folder holding checkpoint-* folders of an earlier
    run trained on: its checkpoints mixed with the earlier ones (save_total_limit deleted them, a later
    `--resume_from_checkpoint last` resumed the newest of either run)."""
    out = tmp_path / "run"
    for step in (2, 10):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (out / "checkpoint-notes").mkdir()  # not a checkpoint
    for resume in ({}, {"resume_from_checkpoint": "false"}):
        with pytest.raises(UsageError) as error:
            TrainingConfig(output_dir=str(out), max_steps=20, use_cpu=True, **resume)
        assert str(error.value) == (
            f"`output_dir` {str(out)!r} holds the checkpoints of an earlier run (checkpoint-2, checkpoint-10), and "
            "this run starts afresh: its checkpoints would mix with them. To continue that run, pass "
            "--resume_from_checkpoint last; to start a new one, give another --output_dir (or delete those "
            "checkpoint folders first)"
        )
    resumed = TrainingConfig(output_dir=str(out), max_steps=20, use_cpu=True, resume_from_checkpoint="last")
    assert resumed.resume_from_checkpoint == str(out / "checkpoint-10")
    named = TrainingConfig(output_dir=str(out), max_steps=20, use_cpu=True,
                           resume_from_checkpoint=str(out / "." / "checkpoint-2"))  # one of its own, by path
    assert named.resume_from_checkpoint == str(out / "." / "checkpoint-2")
    other = tmp_path / "elsewhere" / "checkpoint-4"  # resuming another folder's run into this one mixed them too
    other.mkdir(parents=True)
    (other / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    with pytest.raises(UsageError, match=re.escape(
            f"holds the checkpoints of an earlier run (checkpoint-2, checkpoint-10), and this run resumes "
            f"{str(other)!r}, of another folder: its checkpoints would mix with them")):
        TrainingConfig(output_dir=str(out), max_steps=20, use_cpu=True, resume_from_checkpoint=str(other))
    assert TrainingConfig(output_dir=str(tmp_path / "new"), max_steps=20, use_cpu=True,
                          resume_from_checkpoint=str(other)).resume_from_checkpoint == str(other)
    (out / "checkpoint-2" / "trainer_state.json").unlink()
    (out / "checkpoint-10" / "trainer_state.json").unlink()
    with pytest.raises(UsageError, match=r"checkpoints of an earlier run \(checkpoint-2, checkpoint-10\)"):
        TrainingConfig(output_dir=str(out), max_steps=20, use_cpu=True)  # a save cut short is a checkpoint too
    for name in ("checkpoint-2", "checkpoint-10"):
        shutil.rmtree(out / name)
    assert TrainingConfig(output_dir=str(out), max_steps=20, use_cpu=True).output_dir == str(out)  # other files: fine


def test_an_output_dir_that_is_a_file_is_refused_before_a_model_loads(tmp_path):
    """It failed only when the first checkpoint or the model was saved, after training."""
    (tmp_path / "model.safetensors").write_text("")
    for path, which in ((tmp_path / "model.safetensors", "is a file"),
                        (tmp_path / "model.safetensors" / "run", f"is inside the file {str(tmp_path / 'model.safetensors')!r}")):
        with pytest.raises(ValueError, match=re.escape(f"`output_dir` {str(path)!r} {which}: give a folder "
                                                       "(TrainingConfig.output_dir)")):
            TrainingConfig(output_dir=str(path), max_steps=1, use_cpu=True)
