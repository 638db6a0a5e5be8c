#!/usr/bin/env bash
# The GPU side by side: `ddpm` (one release build per burn feature set) against PyTorch with
# lucidrains' denoising-diffusion-pytorch on CUDA, on the same GPU in one run. For each build:
# training images/s of the reference MNIST U-Net (dim 32, mults 1,2,4) at batch 128 and 256 and of
# the paper's CIFAR-10 U-Net (dim 64, mults 1,2,4,8, 3×32×32) at batch 128, GPU utilisation
# during them, and `ddpm sample -n 256` (DDIM-50) twice: a cold and a warm autotune cache.
# PyTorch runs the same steps in fp32 eager (lucidrains' default) and with bf16 autocast.
# Prints a Markdown table; the JSON lines and logs go to $OUT.
#
#   bash crates/ddpm/benches/gpu.sh [NAME=DDPM_BINARY ...]
#
# Without arguments it builds the variants below with cargo (a Rust toolchain on the GPU
# machine); with them it measures those binaries (built elsewhere and copied there). A NAME
# ending in `+kernels` runs its binary with DDPM_GPU_KERNELS=1 (the core's GPU kernels).
# Environment: OUT (results; default target/gpu-bench), STEPS (timed training steps per
# measurement, default 30), PYTHON (one with torch, denoising-diffusion-pytorch and
# ema-pytorch; default: benches/run.sh's venv, else python3), DEVICE (default wgpu),
# DEADLINE (seconds since the epoch after which nothing new starts), SMALL=1 (tiny models
# and batches: checks this script on a machine without a GPU, e.g. lavapipe).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
OUT="${OUT:-$root/target/gpu-bench}"
STEPS="${STEPS:-30}"
DEVICE="${DEVICE:-wgpu}"
DEADLINE="${DEADLINE:-0}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
results="$OUT/results.jsonl"
: >"$results"

if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  venv="${BENCH_VENV:-${TMPDIR:-/tmp}/ddpm-bench-venv}"
  [ -x "$venv/bin/python" ] && PYTHON="$venv/bin/python"
fi

# The measured shapes; SMALL=1 shrinks them so that the script itself can be checked anywhere.
if [ "${SMALL:-0}" = 1 ]; then
  mnist_batches=(8) cifar_batch=4 sample_n=8 warm=1
  mnist_model=(--set model.dim=8 --set model.attn_dim_head=8)
  cifar_model=(--set model.dim=8 --set model.dim_mults=[1,2] --set model.attn_dim_head=8)
  torch_small=1
else
  mnist_batches=(128 256) cifar_batch=128 sample_n=256 warm=5
  mnist_model=()
  cifar_model=(--set model.dim=64 --set model.dim_mults=[1,2,4,8])
  torch_small=0
fi

# Seconds left before the deadline (a large number without one).
left() {
  if [ "$DEADLINE" = 0 ]; then echo 100000; else echo $((DEADLINE - $(date +%s))); fi
}

record() { echo "$1" | tee -a "$results"; }

# Samples GPU utilisation while a command runs; prints the median of the second half's samples
# (the first half holds start-up and autotuning).
with_utilisation() {
  local log="$1"
  shift
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits \
      -lms 250 >"$log" 2>/dev/null &
    local smi=$!
    "$@"
    local status=$?
    kill "$smi" 2>/dev/null
    wait "$smi" 2>/dev/null
    return $status
  fi
  "$@"
}

median_utilisation() {
  python3 - "$1" <<'PY'
import sys
try:
    rows = [l.split(",") for l in open(sys.argv[1]) if l.strip()]
    util = sorted(float(r[0]) for r in rows[len(rows) // 2:])
    mem = max(float(r[1]) for r in rows)
    print(f'"gpu_utilisation_percent":{util[len(util) // 2]:.0f},"gpu_memory_mib":{mem:.0f}')
except Exception:
    print('"gpu_utilisation_percent":null')
PY
}

# Images/s of a `ddpm train` run from its metrics.csv: the mean over the steps after the
# warm-up, and the first step's seconds (autotune included).
train_rate() {
  python3 - "$1" "$warm" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
warm = int(sys.argv[2])
timed = [float(r["images_per_second"]) for r in rows[warm:]]
first = float(rows[0]["seconds"])
steps = len(rows)
mean = sum(timed) / len(timed) if timed else float("nan")
print(f'"steps":{steps},"images_per_second":{mean:.1f},"first_step_seconds":{first:.2f}')
PY
}

# A small CIFAR-10-format training set (random pixels: speed does not depend on them).
cifar_data="$OUT/cifar"
mkdir -p "$cifar_data"
python3 -c "
import os, sys
with open(sys.argv[1], 'wb') as f:
    for i in range(512):
        f.write(bytes([i % 10]) + os.urandom(3072))
" "$cifar_data/data_batch_1.bin"

variants=("$@")
if [ ${#variants[@]} -eq 0 ]; then
  # name:features of `cargo build --release -p ddpm-cli` (the default build is `wgpu`).
  for v in wgpu: wgpu+kernels: fusion:fusion fusion+kernels:fusion \
    fusion-persistence:fusion,persistence vulkan-fusion:vulkan,fusion,persistence; do
    name="${v%%:*}" features="${v#*:}" build="${v%%[:+]*}"
    if [ ! -x "$OUT/ddpm-$build" ]; then
      (cd "$root" && cargo build -q --release -p ddpm-cli ${features:+--features "$features"}) || exit 1
      cp "$root/target/release/ddpm" "$OUT/ddpm-$build"
    fi
    variants+=("$name=$OUT/ddpm-$build")
  done
fi

for v in "${variants[@]}"; do
  name="${v%%=*}"
  bin="$(cd "$(dirname "${v#*=}")" && pwd)/$(basename "${v#*=}")"
  work="$OUT/$name"
  rm -rf "$work"
  mkdir -p "$work/home"
  # A fresh HOME and a folder outside any cargo workspace: autotune's cache (with burn's
  # `persistence`) starts empty, in $HOME/.cache/cubecl.
  kernels=0
  [ "${name%+kernels}" != "$name" ] && kernels=1
  run() {
    (cd "$work" && HOME="$work/home" DDPM_GPU_KERNELS=$kernels timeout "$(left)" "$bin" "$@")
  }
  train() {
    local tag="$1" batch="$2"
    shift 2
    [ "$(left)" -gt 60 ] || { echo "deadline: $name $tag skipped" >&2; return; }
    with_utilisation "$work/$tag.smi" run train "$tag" --device "$DEVICE" \
      --steps $((warm + STEPS)) --batch-size "$batch" --sample-every 0 --checkpoint-every 100000 \
      --set data.class_conditional=false "$@" 2>"$work/$tag.log"
    if [ -s "$work/$tag/metrics.csv" ]; then
      local adapter
      adapter=$(grep -o 'on wgpu: [^:]*\|on cuda[^:]*\|on cpu[^:]*' "$work/$tag.log" | head -1)
      record "{\"backend\":\"ddpm $name\",\"adapter\":\"${adapter#on }\",\"bench\":\"$tag\",\"batch\":$batch,$(train_rate "$work/$tag/metrics.csv"),$(median_utilisation "$work/$tag.smi")}"
    else
      echo "$name $tag failed; log: $work/$tag.log" >&2
      tail -3 "$work/$tag.log" >&2
    fi
  }
  for b in "${mnist_batches[@]}"; do
    train "mnist_b$b" "$b" "${mnist_model[@]}"
  done
  train "cifar_b$cifar_batch" "$cifar_batch" --data "$cifar_data" --image-size 32 --channels 3 \
    "${cifar_model[@]}"

  # Sampling with the trained MNIST U-Net: `ddpm sample -n 256` (DDIM-50) on a cold, then a warm
  # autotune cache (the same without `persistence`), then DDIM-10: the difference of the two
  # step counts is the sampler's time per network evaluation, free of start-up and tuning.
  model="mnist_b${mnist_batches[0]}"
  for pass in cold warm short; do
    [ -d "$work/$model" ] && [ "$(left)" -gt 30 ] || break
    steps=50
    [ "$pass" = short ] && steps=10
    start=$(date +%s.%N)
    if run sample "$model" -n "$sample_n" --steps "$steps" --device "$DEVICE" --force \
      -o "$work/$pass.png" 2>"$work/sample-$pass.log"; then
      record "{\"backend\":\"ddpm $name\",\"bench\":\"ddim${steps}_b${sample_n}_$pass\",\"batch\":$sample_n,\"seconds\":$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 3))" "$start" "$(date +%s.%N)")}"
    else
      echo "$name sample ($pass) failed; log: $work/sample-$pass.log" >&2
    fi
  done
done

# PyTorch and lucidrains on the same GPU: fp32 eager, then bf16 autocast.
if [ "$DEVICE" != cpu ] && ! "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  echo "PyTorch: no CUDA device for $PYTHON; its rows are skipped" >&2
else
  torch_device=cuda
  [ "$DEVICE" = cpu ] && torch_device=cpu
  for cast in none bf16; do
    [ "$(left)" -gt 60 ] || break
    # The small check runs the CPU's PyTorch with lucidrains' smallest settings it accepts.
    small=()
    [ "$torch_small" = 1 ] && small=(--steps 1)
    PYTHONUNBUFFERED=1 timeout "$(left)" "$PYTHON" "$here/pytorch_unet.py" --trainer \
      --device "$torch_device" --autocast "$cast" --model mnist --batch "${mnist_batches[@]}" \
      --sample-batch "$sample_n" --sample-steps 50 --steps "$STEPS" "${small[@]}" \
      2>>"$OUT/pytorch.log" | grep '^{' | tee -a "$results"
    PYTHONUNBUFFERED=1 timeout "$(left)" "$PYTHON" "$here/pytorch_unet.py" --trainer \
      --device "$torch_device" --autocast "$cast" --model cifar --batch "$cifar_batch" \
      --sample-batch 0 --steps "$STEPS" "${small[@]}" \
      2>>"$OUT/pytorch.log" | grep '^{' | tee -a "$results"
  done
fi

command -v nvidia-smi >/dev/null &&
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT/gpu.txt"
python3 "$here/gpu_table.py" "$results" | tee "$OUT/table.md"
