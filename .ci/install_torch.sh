#!/usr/bin/env bash
# Install torch into the given interpreter's environment, fast on CPU machines, CUDA where a GPU is.
set -euo pipefail
PY="$1"
PIP="$PY -m pip --disable-pip-version-check"
if $PY -c "import torch" 2>/dev/null; then exit 0; fi
if command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then
    echo "GPU found: installing CUDA torch"
    $PIP install --quiet 'torch>=2.2,<3'
    exit 0
fi
# No GPU. A CPU build of torch is far smaller than the CUDA default: first a wheel pip can find
# without an index (a local wheel folder such as pip's find-links), else PyTorch's CPU index.
if $PIP install --quiet --no-index --no-deps 'torch>=2.2,<3' 2>/dev/null; then
    version=$($PY -c "import importlib.metadata as m; print(m.version('torch'))")
    echo "installed local CPU torch $version"
    $PIP install --quiet "torch==$version"      # its dependencies, from the index
else
    echo "no GPU: installing CPU torch from PyTorch's CPU index"
    $PIP install --quiet 'torch>=2.2,<3' --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
fi
