#!/usr/bin/env bash
# Side-by-side speed of this project and PyTorch (lucidrains' denoising-diffusion-pytorch) on
# this machine, for the reference MNIST U-Net (dim 32, dim_mults 1,2,4, 1×28×28): a training step
# at batch 64 and one sampling step (network evaluation) at batch 16. Prints JSON lines and the
# ratio ours ÷ PyTorch. Not part of the test suite: numbers go to BENCHMARKS.md by hand. Where
# `nvidia-smi` is found (or with BENCH_GPU=1; BENCH_GPU=0 skips it) it then does the same on the
# GPU: burn's wgpu backend against PyTorch on CUDA (a GPU machine needs a Vulkan loader and
# driver for wgpu). The GPU table of BENCHMARKS.md (training at batch 128/256, the CIFAR-10
# U-Net, bf16 autocast, each burn feature set) comes from benches/gpu.sh instead.
#
#   bash crates/ddpm/benches/run.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")"
steps="${1:-5}"
venv="${BENCH_VENV:-${TMPDIR:-/tmp}/ddpm-bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch denoising-diffusion-pytorch==2.3.1 ema-pytorch==0.8.3
fi
threads=$(nproc)

# Prints ours ÷ PyTorch for every measurement of ours ($1, JSON lines) against PyTorch's ($2).
compare() {
  python3 - "$1" "$2" <<'PY'
import json, sys
ours = {j["bench"]: j for j in map(json.loads, sys.argv[1].splitlines())}
theirs = {j["bench"]: j for j in map(json.loads, sys.argv[2].splitlines())}
for name in ours:
    # PyTorch's one step is the reference for ours in one batch and in parts.
    ref = "train_step" if name.startswith("train") else "sampling_step"
    a, b = ours[name]["seconds"], theirs.get(name, theirs[ref])["seconds"]
    backends = f'{ours[name]["backend"]} / {theirs[ref]["backend"]}'
    print(f"{name} ({backends}): ours {a:.4f} s, PyTorch {b:.4f} s, ours / PyTorch = {a / b:.2f}")
PY
}

# The features the CLI builds the library with: the fused CPU kernels (`ddpm::fused`).
ours=$(cargo bench -q -p ddpm --bench unet --features fused-autodiff,fused-rayon -- "$steps" | grep '^{')
theirs=$("$venv/bin/python" pytorch_unet.py --steps "$steps" --threads "$threads" | grep '^{')
echo "$ours"
echo "$theirs"
compare "$ours" "$theirs"

# On a machine with an NVIDIA GPU (or BENCH_GPU=1): burn's wgpu backend against PyTorch on CUDA.
if [ "${BENCH_GPU:-}" = 1 ] || { [ "${BENCH_GPU:-}" != 0 ] && command -v nvidia-smi >/dev/null; }; then
  ours=$(cargo bench -q -p ddpm --bench unet --features wgpu -- "$steps" wgpu | grep '^{')
  theirs=$("$venv/bin/python" pytorch_unet.py --steps "$steps" --threads "$threads" --device cuda | grep '^{')
  echo "$ours"
  echo "$theirs"
  compare "$ours" "$theirs"
fi
