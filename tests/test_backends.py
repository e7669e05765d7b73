"""What both synthesis backends share: lazy imports, prompt checks, stop tokens, errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from hf_ipt.backends import BackendConfig, load_backend
from hf_ipt.backends.base import check_prompts, stop_token_ids


def test_importing_the_package_and_backends_imports_no_engine():
    code = (
        "import sys, hf_ipt, hf_ipt.backends; print(sorted({'torch', 'vllm'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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
    with pytest.raises(ImportError, match=r"`vllm` extra: pip install 'hf_ipt\[vllm\]'"):
        load_backend(BackendConfig(str(tiny_model_dir), backend="vllm"))
