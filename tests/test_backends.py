"""What both synthesis backends share: lazy imports, prompt checks, stop tokens, errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from typing import Literal

import pytest

from hf_ipt.backends import BackendConfig, load_backend
from hf_ipt.backends.base import check_prompts, stop_token_ids


def test_importing_the_package_and_backends_imports_no_engine():
    code = (
        "import sys, hf_ipt, hf_ipt.backends; print(sorted({'torch', 'vllm'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_lazy_name_is_public_and_resolves():
    import hf_ipt

    assert set(hf_ipt._LAZY) <= set(hf_ipt.__all__)
    namespace: dict = {}
    exec("from hf_ipt import *", namespace)  # noqa: S102 - what a user may run
    assert set(hf_ipt.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hf_ipt.nope  # noqa: B018


def test_check_prompts_rejects_empty_and_overlong_prompts():
    results, valid = check_prompts([[1, 2], [], [1] * 5, [1] * 4], prompt_budget=4)
    assert valid == [0, 3]
    assert results[0] is None and results[3] is None
    assert results[1].error == "empty prompt"
    assert (
        results[2].num_prompt_tokens == 5 and "5 tokens exceeds the budget of 4" in results[2].error
    )


def test_stop_token_ids_put_the_tokenizer_eos_first(tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    assert stop_token_ids(tiny_tokenizer) == [eos]
    assert stop_token_ids(tiny_tokenizer, [7, eos]) == [eos, 7]
    assert stop_token_ids(tiny_tokenizer, 7) == [eos, 7]


def test_missing_vllm_names_the_extra(tiny_model_dir):
    """Where vllm is not installed (the main venv), the backend says what to install."""
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is importable here: the missing-dependency error cannot occur")
    with pytest.raises(ImportError, match=r"`vllm` extra: pip install 'vllm.*', hf_ipt's `vllm` extra"):
        load_backend(BackendConfig(str(tiny_model_dir), backend="vllm"))


def test_transformers_device_follows_local_rank():
    from hf_ipt.backends.transformers import default_device

    assert default_device({}, 0) == "cpu"
    assert default_device({"LOCAL_RANK": "3"}, 0) == "cpu"
    assert default_device({}, 8) == "cuda"
    assert [default_device({"LOCAL_RANK": str(r)}, 4) for r in range(6)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    with pytest.raises(ValueError, match="LOCAL_RANK must be a non-negative integer, got 'x'"):
        default_device({"LOCAL_RANK": "x"}, 2)


def test_vllm_rank_gets_its_own_tensor_parallel_slice_of_the_visible_gpus():
    from hf_ipt.backends.vllm import rank_visible_devices

    assert rank_visible_devices({}, 8, 1) is None  # no launcher: leave CUDA_VISIBLE_DEVICES alone
    assert [rank_visible_devices({"LOCAL_RANK": str(r)}, 8, 1) for r in (0, 7)] == ["0", "7"]
    assert [rank_visible_devices({"LOCAL_RANK": str(r)}, 8, 2) for r in range(4)] == ["0,1", "2,3", "4,5", "6,7"]
    visible = {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}  # a slice of what is already visible
    assert rank_visible_devices({**visible, "LOCAL_RANK": "1"}, 0, 2) == "6,7"
    assert rank_visible_devices({**visible, "LOCAL_RANK": "3"}, 0, 1) == "7"
    # the process already got exactly its share (srun --gpus-per-task): nothing to choose
    assert rank_visible_devices({"CUDA_VISIBLE_DEVICES": "5", "LOCAL_RANK": "3"}, 0, 1) is None
    with pytest.raises(ValueError, match=r"LOCAL_RANK=2 of 1 process\(es\).*tensor_parallel_size=2 needs 6 visible "
                                         r"GPUs \(its own: 4\.\.5\), but only 4 are visible.*at most 2 processes per node"):
        rank_visible_devices({**visible, "LOCAL_RANK": "2"}, 0, 2)
    # Two processes on a node that shows one GPU: both engines would land on it; refused on every rank.
    one = {"CUDA_VISIBLE_DEVICES": "0", "LOCAL_WORLD_SIZE": "2"}
    for rank in ("0", "1"):
        with pytest.raises(ValueError, match="of 2 process.*needs 2 visible GPUs.*only 1 are visible"):
            rank_visible_devices({**one, "LOCAL_RANK": rank}, 0, 1)
    two = {"CUDA_VISIBLE_DEVICES": "2,3", "LOCAL_WORLD_SIZE": "2"}
    assert [rank_visible_devices({**two, "LOCAL_RANK": r}, 0, 1) for r in ("0", "1")] == ["2", "3"]
    with pytest.raises(ValueError, match="only 0 are visible"):
        rank_visible_devices({"CUDA_VISIBLE_DEVICES": "", "LOCAL_RANK": "0"}, 8, 1)


def test_vllm_backend_isolates_bad_requests_but_lets_a_dead_engine_fail():
    """A request error is bisected down to its prompt; any other error (vLLM's EngineDeadError, a
    CUDA fault) propagates, so a job stops instead of rejecting every later document."""
    from types import SimpleNamespace

    from hf_ipt.backends.vllm import VLLMBackend, request_errors

    class Engine:
        def __init__(self, failure):
            self.failure, self.calls = failure, 0

        def generate(self, requests, params, use_tqdm):
            self.calls += 1
            if any(r["prompt_token_ids"][0] == 13 for r in requests) or self.failure is RuntimeError:
                raise self.failure("engine says no")
            done = [SimpleNamespace(text="ok", token_ids=[1], finish_reason="stop")]
            aborted = [SimpleNamespace(text="o", token_ids=[1], finish_reason="abort")]
            return [SimpleNamespace(prompt_token_ids=r["prompt_token_ids"],
                                    outputs=aborted if r["prompt_token_ids"][0] == 7 else done) for r in requests]

    def backend(failure):
        b = object.__new__(VLLMBackend)
        b.llm, b.sampling_params, b._tokens_prompt = Engine(failure), None, dict
        b._request_errors = request_errors()
        b.config = SimpleNamespace(prompt_budget=100)
        return b

    prompts = [[1, 2], [13, 2], [7, 2], [4, 2]]
    results = backend(ValueError).generate(prompts)
    assert results[0].error is None and "engine says no" in results[1].error
    assert "finished the request with 'abort'" in results[2].error and results[3].text == "ok"
    dead = backend(RuntimeError)
    with pytest.raises(RuntimeError, match="engine says no"):
        dead.generate(prompts)
    assert dead.llm.calls == 1  # no bisecting into a dead engine


def test_vllm_request_ended_by_the_engine_has_no_text():
    """A request vLLM ends with "abort" or "error" holds the text made so far: a failed
    `Generation` has empty text, as documented, so no caller parses pairs out of it."""
    from types import SimpleNamespace

    from hf_ipt.backends.vllm import VLLMBackend

    for reason in ("abort", "error"):
        cut = SimpleNamespace(text="<QUE> q <ANS> a </END>", token_ids=[5, 6], finish_reason=reason)
        generation = VLLMBackend._to_generation(4, cut)
        assert generation.text == "" and generation.error == f"vLLM finished the request with {reason!r}"
        assert generation.token_ids == [5, 6] and not generation.finished


def test_vllm_backend_narrows_cuda_visible_devices_before_the_engine_starts(monkeypatch):
    """The engine is created with this rank's GPUs visible (a fake `vllm` records what it saw)."""
    import dataclasses

    import hf_ipt.backends.vllm as vllm_backend

    seen = {}

    class Stop(Exception):
        pass

    class FakeLLM:
        def __init__(self, **kwargs):
            seen["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise Stop

    fake = {"LLM": FakeLLM, "EngineArgs": dataclasses.make_dataclass("EngineArgs", []), "__version__": "0"}
    monkeypatch.setattr(vllm_backend, "_import_vllm", lambda: type("vllm", (), fake))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(Stop):
        vllm_backend.VLLMBackend(BackendConfig("unused", backend="vllm", tensor_parallel_size=2))
    assert seen == {"CUDA_VISIBLE_DEVICES": "2,3"}


def test_settings_of_the_other_backend_are_refused():
    """One check (`check_backend_settings`) serves both directions, for `BackendConfig` too."""
    with pytest.raises(ValueError, match=r"`tensor_parallel_size` \(2\).*not of backend='transformers'"):
        BackendConfig("m", backend="transformers", tensor_parallel_size=2)
    with pytest.raises(ValueError, match=r"`engine_kwargs` \(\{'enforce_eager': True\}\).*\(BackendConfig.engine_kwargs\)"):
        BackendConfig("m", backend="transformers", engine_kwargs={"enforce_eager": True})
    with pytest.raises(ValueError, match="`device`.*not of backend='vllm'"):
        BackendConfig("m", backend="vllm", device="cuda:0")
    with pytest.raises(ValueError, match=r"`batch_size` \(64\).*not of backend='vllm'.*\"max_num_seqs\": 64"):
        BackendConfig("m", backend="vllm", batch_size=64)
    BackendConfig("m", backend="transformers", device="cpu", batch_size=2)  # its own settings pass
    BackendConfig("m", backend="vllm", tensor_parallel_size=2, gpu_memory_utilization=0.5)


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -0.1])
def test_a_temperature_that_is_not_a_finite_number_ge_0_is_refused(temperature):
    """NaN passed the ``< 0`` check, in both configs, and sampled from NaN logits."""
    from hf_ipt.augment import SynthesisConfig

    with pytest.raises(ValueError, match=r"`temperature` must be a finite number >= 0.*BackendConfig.temperature"):
        BackendConfig("m", temperature=temperature)
    with pytest.raises(ValueError, match=r"`temperature` must be a finite number >= 0.*SynthesisConfig.temperature"):
        SynthesisConfig(synthesizer="m", temperature=temperature)


def test_engine_kwargs_that_vllm_would_refuse_are_usage_errors_naming_the_fix():
    """A misspelt `vllm.LLM` argument was a `TypeError` traceback once the engine was built, and a
    wrong-typed value failed deep in vLLM's config code; both are refused first, naming the fix.
    `vllm.LLM` and `vllm.EngineArgs` are stood in for by classes of the same shape (their annotations
    strings here, as under ``from __future__ import annotations``: resolved in this module)."""
    import dataclasses

    from hf_ipt.backends.vllm import check_engine_arguments
    from hf_ipt.cli import UsageError

    @dataclasses.dataclass
    class EngineArgs:
        model: str = ""
        max_num_seqs: int | None = None
        gpu_memory_utilization: float = 0.9
        kv_cache_dtype: Literal["auto", "fp8"] = "auto"
        hf_overrides: dict | None = None

    class LLM:
        def __init__(self, model: str, *, enforce_eager: bool = False, compilation_config: int | dict | None = None,
                     **kwargs) -> None:
            pass

    def check(**engine_kwargs):
        check_engine_arguments(engine_kwargs, LLM, EngineArgs, "0.0")

    check(max_num_seqs=8, enforce_eager=True, gpu_memory_utilization=1, kv_cache_dtype="fp8",
          compilation_config={"mode": 0}, hf_overrides={"a": 1})  # all as vLLM takes them
    for engine_kwargs, message in (
        ({"max_num_seqz": 8}, (r"names 'max_num_seqz', which is not an argument of vllm.LLM \(vLLM 0.0\) "
                               r"\(did you mean max_num_seqs\?\)")),
        ({"max_num_seqs": "8"}, r"max_num_seqs='8' is not a value of the type vllm.LLM takes for it \(int \| None"),
        ({"max_num_seqs": True}, "max_num_seqs=True is not a value"),  # JSON true is no count
        ({"enforce_eager": "yes"}, r"enforce_eager='yes' .*\(bool, vLLM 0.0\)"),
        ({"kv_cache_dtype": "fp3"}, r"kv_cache_dtype='fp3' .*Literal\['auto', 'fp8'\]"),
    ):
        with pytest.raises(UsageError, match=message):
            check(**engine_kwargs)


def test_a_synthesizer_path_that_does_not_exist_is_refused_and_a_tilde_expanded(tmp_path, tiny_model_dir,
                                                                                 monkeypatch):
    """Transformers and vLLM took a missing folder (or ``~/...``, which no shell expanded in a quoted flag
    or YAML) for a malformed Hub id and failed with "Repo id must be in the form ..." once the model
    loaded, and a folder that holds no model with a tokenizer error asking for sentencepiece; the
    configs refuse both at once, and expand ``~`` as for other paths."""
    import re

    from hf_ipt.augment import SynthesisConfig

    def configs(name: str) -> tuple[str, str]:
        return (SynthesisConfig(synthesizer=name, backend="transformers").synthesizer,
                BackendConfig(name, backend="transformers").model_name_or_path)

    for name in (str(tmp_path / "no_model"), "./models/synth", "../synth", "~/no_model", "org/name/extra"):
        for make in (lambda n: SynthesisConfig(synthesizer=n), lambda n: BackendConfig(n, backend="vllm")):
            with pytest.raises(ValueError, match=re.escape(f"{name!r}: no such local folder")):
                make(name)
    (tmp_path / "outputs").mkdir()  # a folder, but no model's: it has no config.json
    monkeypatch.chdir(tmp_path)
    for make in (lambda n: SynthesisConfig(synthesizer=n), lambda n: BackendConfig(n, backend="vllm")):
        with pytest.raises(ValueError, match=re.escape("'outputs/synth': no such local folder (outputs/ is empty)")):
            make("outputs/synth")  # outputs/ exists: a local folder, not the Hub repo outputs/synth
    for make in (lambda n: SynthesisConfig(synthesizer=n), lambda n: BackendConfig(n, backend="vllm")):
        with pytest.raises(ValueError, match="'outputs' is a folder without a config.json, not a saved model"):
            make("outputs")
    assert configs("org/model") == ("org/model", "org/model")  # a Hub id: looked up when the model loads
    monkeypatch.setenv("HOME", str(tiny_model_dir.parent))
    assert configs(f"~/{tiny_model_dir.name}") == (str(tiny_model_dir), str(tiny_model_dir))
