#!/usr/bin/env bash
# The GPU side by side: `ddpm` builds against PyTorch with lucidrains' denoising-diffusion-pytorch
# on CUDA, on the same GPU in one run. Most important first, so that a deadline cuts the least:
#   1. a smoke test per build (two steps of a tiny model; it names the adapter): a build that
#      crashes, or that on a machine with nvidia-smi does not end cleanly (rc 0) or finds no
#      GPU through Vulkan (a software adapter, wgpu's GL fallback), is left out;
#   2. PyTorch, fp32 eager and bf16 autocast in one process per model: the MNIST U-Net (dim 32,
#      mults 1,2,4) training at batch 128 and 256, DDIM-50 at batch 256; then the CIFAR-10 U-Net
#      (dim 64, mults 1,2,4,8, 3×32×32) training at batch 128;
#   3. every build: MNIST training at batch 128;
#   4. the shipped build's CIFAR-10 training at batch 128 (`wgpu`, else the first build that
#      passed), then every build without `+kernels` or `+f16`: `ddpm sample -n 256` (DDIM-50)
#      on a cold, then a warm autotune cache; every other build's CIFAR; MNIST at batch 256.
# Builds are measured in the order given (tools/gpu-window.sh puts `wgpu` first, `+f16` and
# `+kernels` last); each run is capped (RUN_S, CIFAR_RUN_S) so that one slow build cannot use
# up the rest.
#
#   bash crates/ddpm/benches/gpu.sh BUILD...
#
# BUILD: a binary named ddpm-<features>[.xz] (cargo features joined by '-', as
# tools/gpu-prepare.sh names them; ddpm-wgpu.xz is the default build), or LABEL=BINARY. A
# LABEL ending in `+kernels` runs with DDPM_GPU_KERNELS=1 (the core's GPU kernels), one with
# `+f16` in it with DDPM_HALF_CONVS=1 (training's 3×3 convolutions in f16, with loss scaling);
# each process gets both variables set, so the caller's environment does not leak in.
# Training rates come from metrics.csv's cumulative `seconds` column over the timed steps
# (batch × steps ÷ their time, as PyTorch's); GPU utilisation is sampled during those steps
# only; the run is stopped with SIGINT after its last step, before the end-of-run preview.
# Sampling rates come from the line `sampled N images in S s (K steps)` of `ddpm sample`
# (the sampler loop alone; null where the binary does not print it), N·K/S as PyTorch's from
# its own DDIM loop.
# OUT gets two files, written as the run goes: results.jsonl (one JSON line per measurement,
# made by gpu_table.py --record) and bench.txt (the builds, progress, the tails of the runs'
# logs, the table last). A run cut off keeps what it measured: `python3 gpu_table.py
# results.jsonl` makes the table from it.
# Environment: OUT (default target/gpu-bench), BENCH_WORK (the runs' folders; default a new
# temporary folder: outside any Cargo workspace, where autotune's cache would go to its
# target/environment), STEPS (timed training steps, default 30), CIFAR_STEPS (default 10),
# WARM (untimed first steps, default 10: autotune, and the first EMA update at step 10),
# SAMPLE_STEPS (DDIM steps, default 50), RUN_S (seconds one MNIST training or sampling process
# may take, default 150), CIFAR_RUN_S (200), TORCH_S (one PyTorch process, 240), SMOKE_S (120;
# raise all four on lavapipe, where autotune takes minutes), PYTHON (torch,
# denoising-diffusion-pytorch and ema-pytorch; default python3), TORCH_CASTS ("none bf16"),
# TORCH_TF32 (conv: PyTorch's default, cuDNN's convolutions in TF32; on; off), DEVICE (wgpu),
# DEADLINE (seconds since the epoch after which nothing new starts), MANIFEST (a file copied to
# the top of bench.txt: tools/gpu-prepare.sh's manifest.txt, whose commits the table notes),
# SMOKE_ONLY=1, SMALL=1 (tiny models and batches: checks this script without a GPU, with
# DEVICE=cpu or on lavapipe).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
[ $# -gt 0 ] || { echo "usage: gpu.sh BUILD... (ddpm-<features>[.xz] or LABEL=BINARY; tools/gpu-prepare.sh makes them)" >&2; exit 2; }
OUT="${OUT:-$root/target/gpu-bench}"
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)" || exit 2
work="${BENCH_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/ddpm-gpu-bench.XXXXXX")}"
mkdir -p "$work" && work="$(cd "$work" && pwd)" || exit 2
STEPS="${STEPS:-30}" CIFAR_STEPS="${CIFAR_STEPS:-10}" WARM="${WARM:-10}" DEVICE="${DEVICE:-wgpu}"
DEADLINE="${DEADLINE:-0}" PYTHON="${PYTHON:-python3}" TORCH_TF32="${TORCH_TF32:-conv}"
RUN_S="${RUN_S:-150}" CIFAR_RUN_S="${CIFAR_RUN_S:-200}" TORCH_S="${TORCH_S:-240}"
results="$OUT/results.jsonl"
: >"$results"
# Everything printed also goes to bench.txt as it happens; every exit closes the tee and lets
# it finish writing, so that an early `exit` keeps the last lines too.
exec > >(tee "$OUT/bench.txt") 2>&1
tee_pid=$!
trap 'exec >/dev/null 2>&1; wait "$tee_pid"' EXIT
# The NVIDIA driver's Vulkan ICD, where the loader's default search misses it (device README).
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
smi=0
command -v nvidia-smi >/dev/null && smi=1
# nvidia-smi writes through stdio: into a file it would hold its lines until it exits (killed,
# never), so line-buffer it where stdbuf exists.
smi_cmd=(nvidia-smi)
command -v stdbuf >/dev/null && smi_cmd=(stdbuf -oL nvidia-smi)

# Seconds a training run needs at least (less left: it is skipped); SMALL runs take seconds.
min_s=60
if [ "${SMALL:-0}" = 1 ]; then
  min_s=10
  mnist_batches=(8) cifar_batch=4 sample_n=8 sample_steps="${SAMPLE_STEPS:-5}"
  # The same tiny U-Nets as pytorch_unet.py --small.
  mnist_model=(--set model.dim=8 --set 'model.dim_mults=[1,2]' --set model.attn_dim_head=8)
  cifar_model=(--set model.dim=8 --set 'model.dim_mults=[1,2]' --set model.attn_dim_head=8)
  torch_small=(--small)
else
  mnist_batches=(128 256) cifar_batch=128 sample_n=256 sample_steps="${SAMPLE_STEPS:-50}"
  mnist_model=()
  cifar_model=(--set model.dim=64 --set 'model.dim_mults=[1,2,4,8]')
  torch_small=()
fi

# One JSON line per call, appended to results.jsonl (gpu_table.py --record says what it reads).
record() { python3 "$here/gpu_table.py" --record "$@" | tee -a "$results"; }

# Seconds left before the deadline (a large number without one); time_for N WHAT is true when
# at least N are left and says what is skipped otherwise; cap N is what a run may take: N, or
# less near the deadline, keeping the 10 s a run gets after SIGINT before SIGKILL (at least 1:
# `timeout 0` would mean none).
left() { if [ "$DEADLINE" = 0 ]; then echo 100000; else echo $((DEADLINE - $(date +%s))); fi; }
time_for() {
  [ "$(left)" -ge "$1" ] && return 0
  echo "deadline: $2 skipped"
  return 1
}
cap() {
  local l=$(($(left) - 10))
  [ "$l" -lt "$1" ] || l=$1
  echo $((l > 1 ? l : 1))
}
# The last lines of a run's log, indented, into bench.txt.
tail_log() { tr '\r' '\n' <"$1" 2>/dev/null | grep -v '^ *$' | tail -n "${2:-3}" | cut -c1-300 | sed 's/^/    /'; }

labels=() bins=() kernels=() halves=() shas=() live=()
for arg in "$@"; do
  if [ "${arg#*=}" != "$arg" ]; then
    label="${arg%%=*}" file="${arg#*=}"
  else
    file="$arg" label="$(basename "$arg" .xz)" label="${label#ddpm-}" label="${label//-/,}"
  fi
  [ -f "$file" ] || { echo "gpu.sh: $file: no such binary" >&2; exit 2; }
  if [ "${file%.xz}" != "$file" ]; then
    xz -dc "$file" >"$work/bin-${#bins[@]}" && chmod +x "$work/bin-${#bins[@]}" || exit 2
    file="$work/bin-${#bins[@]}"
  fi
  labels+=("$label") bins+=("$(cd "$(dirname "$file")" && pwd)/$(basename "$file")")
  shas+=("$(sha256sum "$file" | cut -c1-64)")
  [ "${label%+kernels}" != "$label" ] && kernels+=(1) || kernels+=(0)
  [[ $label == *+f16* ]] && halves+=(1) || halves+=(0)
done

echo "## Builds ($(date -u +%FT%TZ))"
[ -n "${MANIFEST:-}" ] && [ -f "$MANIFEST" ] && cat "$MANIFEST"
git -C "$root" rev-parse HEAD 2>/dev/null | sed 's/^/checkout: /'
for i in "${!bins[@]}"; do
  echo "${labels[$i]}: sha256 ${shas[$i]}, DDPM_GPU_KERNELS=${kernels[$i]}, DDPM_HALF_CONVS=${halves[$i]}"
done
if [ "$smi" = 1 ]; then
  gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
  echo "GPU: $gpu"
  record backend=gpu bench=gpu "gpu=$gpu" >/dev/null
fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"

# Becomes build I's binary, run in FOLDER with HOME (and XDG_CACHE_HOME, which cubecl's and
# the drivers' caches prefer) there, so that a cold autotune cache is a new HOME. Call it in a
# subshell: `(run_build …)`, or `run_build … &`, whose $! then takes the SIGINT.
run_build() {
  local i="$1" dir="$2" home="$3" limit="$4"
  shift 4
  mkdir -p "$dir" "$home" && cd "$dir" || exit 1
  exec env HOME="$home" XDG_CACHE_HOME="$home/.cache" DDPM_GPU_KERNELS="${kernels[$i]}" \
    DDPM_HALF_CONVS="${halves[$i]}" \
    timeout -s INT -k 10 "$limit" "${bins[$i]}" "$@"
}

smoke() {
  local i="$1" dir="$work/v$1/smoke" start rc line commit=""
  mkdir -p "$dir"
  # The build's commit, from the manifest line with its sha256.
  [ -n "${MANIFEST:-}" ] && [ -f "$MANIFEST" ] &&
    commit=$(sed -n "s/^[^:]*: commit \([^,]*\),.*sha256 ${shas[$i]}.*/\1/p" "$MANIFEST" | head -1)
  start=$EPOCHREALTIME
  (run_build "$i" "$dir" "$dir/home" "${SMOKE_S:-120}" train run --device "$DEVICE" --steps 2 \
    --batch-size 2 --set model.dim=8 --set 'model.dim_mults=[1,2]' --set model.attn_dim_head=8 \
    --set diffusion.timesteps=3 --set data.class_conditional=false --sample-every 0) 2>"$dir.log"
  rc=$?
  line=$(record "backend=ddpm ${labels[$i]}" bench=smoke "log=$dir.log" rc=$rc "start=$start" \
    "end=$EPOCHREALTIME" expect_gpu=$smi "device=$DEVICE" "sha256=${shas[$i]}" "commit=$commit")
  echo "$line"
  if [[ $line == *'"ok": true'* ]]; then
    live+=("$i")
  else
    echo "${labels[$i]} is left out: its smoke test failed"
    tail_log "$dir.log"
  fi
}

# Trains WARM + N steps of build I as TAG at BATCH within LIMIT seconds; stops it after the last
# timed step (before the end-of-run preview) and samples nvidia-smi between the first and the
# last timed step.
train() {
  local i="$1" tag="$2" batch="$3" n="$4" limit="$5" dir="$work/v$1" pid smi_pid="" rows rc
  shift 5
  local total=$((WARM + n))
  time_for "$min_s" "${labels[$i]} $tag" || return 0
  rm -rf "${dir:?}/$tag" && mkdir -p "$dir"
  run_build "$i" "$dir" "$dir/home-train" "$(cap "$limit")" train "$tag" --device "$DEVICE" \
    --steps "$total" --batch-size "$batch" --sample-every 0 --checkpoint-every 100000 \
    --set data.class_conditional=false "$@" 2>"$dir/$tag.log" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    rows=$(($({ wc -l <"$dir/$tag/metrics.csv"; } 2>/dev/null || echo 1) - 1))
    if [ "$smi" = 1 ] && [ -z "$smi_pid" ] && [ "$rows" -ge "$WARM" ]; then
      "${smi_cmd[@]}" --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits \
        -lms 200 >"$dir/$tag.smi" 2>/dev/null &
      smi_pid=$!
    fi
    [ "$rows" -ge "$total" ] && { kill -INT "$pid"; break; }
    sleep 0.2
  done
  [ -n "$smi_pid" ] && { kill "$smi_pid" 2>/dev/null; wait "$smi_pid" 2>/dev/null; }
  wait "$pid"
  rc=$?
  record "backend=ddpm ${labels[$i]}" "bench=$tag" batch="$batch" warm="$WARM" total="$total" \
    "metrics=$dir/$tag/metrics.csv" "smi=$dir/$tag.smi" "log=$dir/$tag.log" rc=$rc
  tail_log "$dir/$tag.log" 2
}

# `ddpm sample -n N` from build I's MNIST run: the first process with a new HOME (cold caches:
# autotune's with `persistence`, the driver's shaders), the second with the same (warm).
sample() {
  local i="$1" dir="$work/v$1" pass start rc
  local model="$dir/mnist_b${mnist_batches[0]}"
  rm -rf "$dir/home-sample"
  for pass in cold warm; do
    [ -d "$model/checkpoints" ] || { echo "${labels[$i]}: no MNIST run to sample"; return 0; }
    time_for $((min_s / 2)) "${labels[$i]} sampling ($pass)" || return 0
    start=$EPOCHREALTIME
    (run_build "$i" "$dir" "$dir/home-sample" "$(cap "$RUN_S")" sample "$model" -n "$sample_n" \
      --steps "$sample_steps" --device "$DEVICE" --force -o "$dir/$pass.png") 2>"$dir/sample-$pass.log"
    rc=$?
    record "backend=ddpm ${labels[$i]}" "bench=ddim${sample_steps}_b${sample_n}_$pass" \
      batch="$sample_n" "log=$dir/sample-$pass.log" rc=$rc "start=$start" "end=$EPOCHREALTIME"
    tail_log "$dir/sample-$pass.log" 1
  done
}

torch_device=cuda
[ "$DEVICE" = cpu ] && torch_device=cpu
torch_ok=0
if [ "${SMOKE_ONLY:-0}" != 1 ]; then
  if "$PYTHON" -c "import sys, torch, denoising_diffusion_pytorch, ema_pytorch
sys.exit('$torch_device' == 'cuda' and not torch.cuda.is_available())" 2>"$work/torch-check.log"; then
    torch_ok=1
  else
    echo "PyTorch: $PYTHON lacks torch, lucidrains' packages or CUDA; its rows are skipped"
    tail_log "$work/torch-check.log" 1
  fi
fi
# PyTorch's runs of one model, fp32 eager then bf16 autocast in one process (one start of
# Python and CUDA); its lines go to results.jsonl as they come.
torch_run() {
  local model="$1" log
  shift
  [ "$torch_ok" = 1 ] || return 0
  time_for "$min_s" "PyTorch $model" || return 0
  log="$work/pytorch-$model.log"
  # shellcheck disable=SC2086 # TORCH_CASTS is a list of words
  PYTHONUNBUFFERED=1 timeout -k 10 "$(cap "$TORCH_S")" "$PYTHON" "$here/pytorch_unet.py" --trainer \
    --device "$torch_device" --autocast ${TORCH_CASTS:-none bf16} --tf32 "$TORCH_TF32" \
    --model "$model" "${torch_small[@]}" "$@" 2>"$log" | grep --line-buffered '^{' | tee -a "$results"
  tail_log "$log" 1
}

# A small CIFAR-10-format training set (random pixels: speed does not depend on them).
cifar_data="$work/cifar"
mkdir -p "$cifar_data"
python3 -c "
import os, sys
with open(sys.argv[1], 'wb') as f:
    for i in range(512):
        f.write(bytes([i % 10]) + os.urandom(3072))
" "$cifar_data/data_batch_1.bin"
cifar() {
  train "$1" "cifar_b$cifar_batch" "$cifar_batch" "$CIFAR_STEPS" "$CIFAR_RUN_S" --data "$cifar_data" \
    --image-size 32 --channels 3 "${cifar_model[@]}"
}

echo "## Smoke tests"
for i in "${!bins[@]}"; do smoke "$i"; done
if [ "${SMOKE_ONLY:-0}" != 1 ]; then
  # The builds that passed, without `+kernels` or `+f16` (sampling and batch 256 leave those
  # out: sampling is the same with f16 convolutions, which only training uses), and
  # the shipped one among them: `wgpu`, else the first.
  plain=() shipped=""
  for i in "${live[@]}"; do [ "${kernels[$i]}${halves[$i]}" = 00 ] && plain+=("$i"); done
  for i in "${plain[@]}"; do [ "${labels[$i]}" = wgpu ] && shipped=$i; done
  [ -z "$shipped" ] && [ ${#plain[@]} -gt 0 ] && shipped=${plain[0]}
  echo "## Measurements"
  torch_run mnist --batch "${mnist_batches[@]}" --sample-batch "$sample_n" \
    --sample-steps "$sample_steps" --steps "$STEPS"
  torch_run cifar --batch "$cifar_batch" --sample-batch 0 --steps "$CIFAR_STEPS"
  for i in "${live[@]}"; do train "$i" "mnist_b${mnist_batches[0]}" "${mnist_batches[0]}" "$STEPS" "$RUN_S" "${mnist_model[@]}"; done
  [ -n "$shipped" ] && cifar "$shipped"
  for i in "${plain[@]}"; do sample "$i"; done
  for i in "${live[@]}"; do [ "$i" = "$shipped" ] || cifar "$i"; done
  for b in "${mnist_batches[@]:1}"; do
    for i in "${plain[@]}"; do train "$i" "mnist_b$b" "$b" "$STEPS" "$RUN_S" "${mnist_model[@]}"; done
  done
  echo "## Table"
  python3 "$here/gpu_table.py" "$results"
fi
