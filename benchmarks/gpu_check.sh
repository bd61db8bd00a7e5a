#!/usr/bin/env bash
# The checks that need a CUDA device, in one go (about 6 minutes on one H200):
#   1. the tests marked `gpu` (CUDA WALS, a 4-bit CUDA backbone, the cpu profile's head on CUDA);
#   2. the gpu profile's cost benchmark (benchmarks/gpu_cost.py) on an OpenLLaMA-3B-shaped model;
#   3. the rest of the test suite but the notebooks' tests (they need the book extras), on the GPU
#      machine's CPUs; tests of the book extras (plotly, umap, jupytext) skip where those are missing.
# Logs and the benchmark's JSON go to $OUT (default: ./gpu_check). Run from the repository root
# with the package importable (PYTHONPATH) and LLMREC_DATA_DIR set; exits non-zero if a step failed.
set -o pipefail
out=${OUT:-gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
{
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
  python3 -m pip list 2>/dev/null | grep -i -E "^(transformers|peft|accelerate|bitsandbytes|implicit|numpy|scipy) "
} | tee "$out/versions.txt"
status=0
python3 -m pytest -q -m gpu -p no:cacheprovider --ignore=tests/test_notebooks.py tests 2>&1 | tee "$out/pytest_gpu.log" | tail -15 || status=1
python3 benchmarks/gpu_cost.py --dataset lastfm --steps 20 --out "$out/gpu_cost_lastfm_openllama-3b.json" \
  > "$out/gpu_cost.log" 2>&1 || status=1
tail -3 "$out/gpu_cost.log" | cut -c1-800
timeout "${REST_TIMEOUT:-300}" python3 -m pytest -q -m "not gpu and not notebook" -p no:cacheprovider --ignore=tests/test_notebooks.py tests 2>&1 \
  | tee "$out/pytest_rest.log" | tail -25 || status=1
exit $status
