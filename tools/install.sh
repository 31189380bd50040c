#!/usr/bin/env bash
# Installs keras_local (editable) and what it needs into the active Python environment, with exactly one
# TensorFlow, chosen here:
#   bash tools/install.sh              # CPU: tensorflow-cpu (pyproject.toml's dependencies)
#   bash tools/install.sh gpu          # NVIDIA GPUs (Linux): tensorflow[and-cuda], every other dependency
#                                      # from requirements-gpu.txt, then keras_local without its tensorflow-cpu
#   bash tools/install.sh cpu test     # ... and what the tests need (the README's test command, .ci/run)
#   bash tools/install.sh gpu test
# keras-hub (backbones as your own model) comes with "test" without its tensorflow-text, which keras-hub
# imports only for text tokenizers and which would add the full tensorflow wheel beside tensorflow-cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-cpu}"
case "$target" in
cpu) python -m pip install -q -e ".[test]" ;;
gpu)
    python -m pip install -q -r requirements-gpu.txt
    python -m pip install -q --no-deps -e .
    ;;
*)
    echo "tools/install.sh: unknown target '$target'; use cpu or gpu" >&2
    exit 2
    ;;
esac
if [ "${2:-}" = "test" ]; then
    python -m pip install -q "pytest>=8" "pytest-xdist>=3" "matplotlib>=3.8" dill importlib_resources "ruff==0.17.6" "build>=1" \
        "mkdocs>=1.6,<2" "mkdocs-material>=9.5,<10" "mkdocstrings[python]>=0.26"
    python -m pip install -q --no-deps "keras-hub>=0.32,<0.33"
    python -m pip install -q regex tokenizers sentencepiece "kagglehub!=1.0.1" "kagglesdk==0.1.28"
fi
python - <<'CHECK'
import importlib.metadata as metadata

installed = []
for name in ("tensorflow", "tensorflow-cpu"):
    try:
        installed.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
if len(installed) != 1:
    raise SystemExit(f"tools/install.sh: expected one TensorFlow in this environment, found {installed or 'none'}")
print(f"keras_local installed with {installed[0]}")
CHECK
