#!/usr/bin/env bash
# The GPU side by side: `ddpm` builds against PyTorch with lucidrains' denoising-diffusion-pytorch
# on CUDA, on the same GPU in one run. Most important first, so that a deadline cuts the least:
#   1. a smoke test per build (two steps of a tiny model; it names the adapter): a build that
#      crashes, or that finds only a software adapter on a machine with nvidia-smi, is left out;
#   2. PyTorch's MNIST U-Net (dim 32, mults 1,2,4) in fp32 eager and with bf16 autocast:
#      training at batch 128 and 256, network evaluations/s and DDIM-50 at batch 256;
#   3. every build: MNIST training at batch 128; then `ddpm sample -n 256` (DDIM-50) on a cold,
#      then a warm autotune cache; then MNIST at batch 256;
#   4. the CIFAR-10 U-Net (dim 64, mults 1,2,4,8, 3×32×32) at batch 128: PyTorch, then ours.
#
#   bash crates/ddpm/benches/gpu.sh BUILD...
#
# BUILD: a binary named ddpm-<features>[.xz] (cargo features joined by '-', as
# tools/gpu-prepare.sh names them; ddpm-wgpu.xz is the default build), or LABEL=BINARY. A
# LABEL ending in `+kernels` runs with DDPM_GPU_KERNELS=1 (the core's GPU kernels).
# Training rates come from metrics.csv's cumulative `seconds` column over the timed steps
# (batch × steps ÷ their time, as PyTorch's); GPU utilisation is sampled during those steps
# only; the run is stopped with SIGINT after its last step, before the end-of-run preview.
# Sampling rates come from the line `sampled N images in S s (K steps)` of `ddpm sample`
# (the sampler loop alone; null where the binary does not print it).
# OUT gets two files, written as the run goes: results.jsonl (one JSON line per measurement)
# and bench.txt (the builds, progress, the tails of the runs' logs, the table last). A run cut
# off keeps what it measured: `python3 gpu_table.py results.jsonl` makes the table from it.
# Environment: OUT (default target/gpu-bench), BENCH_WORK (the runs' folders; default a new
# temporary folder: outside any Cargo workspace, where autotune's cache would go to its
# target/environment), STEPS (timed training steps, default 30), CIFAR_STEPS (default 10),
# WARM (untimed first steps, default 10: autotune, and the first EMA update at step 10),
# SAMPLE_STEPS (DDIM steps, default 50), PYTHON (torch, denoising-diffusion-pytorch and
# ema-pytorch; default python3), TORCH_CASTS ("none bf16"), TORCH_TF32 (conv: PyTorch's
# default, cuDNN's convolutions in TF32; on; off), DEVICE (wgpu), DEADLINE (seconds since the
# epoch after which nothing new starts), MANIFEST (a file copied to the top of bench.txt:
# tools/gpu-prepare.sh's manifest.txt), SMOKE_ONLY=1, SMALL=1 (tiny models and batches: checks
# this script without a GPU, with DEVICE=cpu or on lavapipe).
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
results="$OUT/results.jsonl"
: >"$results"
# Everything printed also goes to bench.txt as it happens.
exec > >(tee "$OUT/bench.txt") 2>&1
tee_pid=$!
# The NVIDIA driver's Vulkan ICD, where the loader's default search misses it (device README).
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
smi=0
command -v nvidia-smi >/dev/null && smi=1

# Seconds a training run needs at least (less left: it is skipped); SMALL runs take seconds.
min_s=60
if [ "${SMALL:-0}" = 1 ]; then
  min_s=10
  mnist_batches=(8) cifar_batch=4 sample_n=8 sample_steps="${SAMPLE_STEPS:-5}"
  mnist_model=(--set model.dim=8 --set model.attn_dim_head=8)
  cifar_model=(--set model.dim=8 --set 'model.dim_mults=[1,2]' --set model.attn_dim_head=8)
  torch_small=(--small)
else
  mnist_batches=(128 256) cifar_batch=128 sample_n=256 sample_steps="${SAMPLE_STEPS:-50}"
  mnist_model=()
  cifar_model=(--set model.dim=64 --set 'model.dim_mults=[1,2,4,8]')
  torch_small=()
fi

# One JSON line per call, appended to results.jsonl: KEY=VALUE pairs (values that parse as JSON
# stay numbers, true/false, null) plus what it reads from the files named by metrics= (rate),
# smi= (utilisation), log= (adapter, sampler line) and start=/end= (wall time). Anything that
# does not parse becomes null: a run killed at the deadline leaves half-written files.
recorder=$(
  cat <<'PY'
import csv, json, math, re, sys
row = {}
for arg in sys.argv[1:]:
    key, _, value = arg.partition("=")
    try:
        row[key] = value if key in ("backend", "bench", "features") else json.loads(value)
    except ValueError:
        row[key] = value
metrics, smi, log = row.pop("metrics", None), row.pop("smi", None), row.pop("log", None)
start, end = row.pop("start", None), row.pop("end", None)
try:
    if metrics:
        sec = [float(r["seconds"]) for r in list(csv.DictReader(open(metrics)))[: row["total"]]]
        warm, n, batch = row["warm"], len(sec), row["batch"]
        # batch · timed steps ÷ their time, from the cumulative seconds column
        row.update(steps=n, first_step_seconds=sec[0] if sec else None,
                   images_per_second=round(batch * (n - warm) / (sec[n - 1] - sec[warm - 1]), 2)
                   if n > warm > 0 and sec[n - 1] > sec[warm - 1] else None)
except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
    row["metrics_error"] = str(e)
try:
    if smi:
        samples = [[float(x) for x in l.split(",")] for l in open(smi) if l.strip()]
        util = sorted(s[0] for s in samples)
        row.update(gpu_utilisation_percent=util[len(util) // 2] if util else None,
                   gpu_memory_mib=max((s[1] for s in samples), default=None))
except (OSError, ValueError, IndexError):
    row.update(gpu_utilisation_percent=None, gpu_memory_mib=None)
try:
    text = open(log, errors="replace").read() if log else ""
    m = re.search(r"parameters on (.*?): \d+ images", text)
    if m:
        row["adapter"] = m.group(1)
    m = re.search(r"sampled (\d+) images in ([\d.]+) s \((\d+) steps\)", text)
    if row["bench"].startswith("ddim"):
        n, s, k = (int(m.group(1)), float(m.group(2)), int(m.group(3))) if m else (None,) * 3
        row.update(sampler_seconds=s, sampler_steps=k,
                   evaluations_per_second=round(k / s, 3) if m and s > 0 else None)
    if row.get("rc") not in (None, 0) and text.strip():
        row["error"] = text.strip().splitlines()[-1][-300:]
except (OSError, ValueError):
    pass
try:
    if start is not None:
        row["seconds"] = round(float(str(end).replace(",", ".")) - float(str(start).replace(",", ".")), 3)
except ValueError:
    pass
if row["bench"] == "smoke":
    software = re.search(r"llvmpipe|lavapipe|swiftshader|software", row.get("adapter", ""), re.I)
    row["ok"] = row.get("rc") in (0, 124) and "adapter" in row and not (row["expect_gpu"] and software)
clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
print(json.dumps(clean))
PY
)
record() { python3 -c "$recorder" "$@" | tee -a "$results"; }

# Seconds left before the deadline (a large number without one); time_for N WHAT is true when
# at least N are left and says what is skipped otherwise.
left() { if [ "$DEADLINE" = 0 ]; then echo 100000; else echo $((DEADLINE - $(date +%s))); fi; }
time_for() {
  [ "$(left)" -ge "$1" ] && return 0
  echo "deadline: $2 skipped"
  return 1
}
# The last lines of a run's log, indented, into bench.txt.
tail_log() { tr '\r' '\n' <"$1" 2>/dev/null | grep -v '^ *$' | tail -n "${2:-3}" | cut -c1-300 | sed 's/^/    /'; }

labels=() bins=() kernels=() live=()
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
  [ "${label%+kernels}" != "$label" ] && kernels+=(1) || kernels+=(0)
done

echo "## Builds ($(date -u +%FT%TZ))"
[ -n "${MANIFEST:-}" ] && [ -f "$MANIFEST" ] && cat "$MANIFEST"
git -C "$root" rev-parse HEAD 2>/dev/null | sed 's/^/checkout: /'
for i in "${!bins[@]}"; do
  echo "${labels[$i]}: sha256 $(sha256sum "${bins[$i]}" | cut -c1-64), DDPM_GPU_KERNELS=${kernels[$i]}"
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
    timeout -s INT -k 20 "$limit" "${bins[$i]}" "$@"
}

smoke() {
  local i="$1" dir="$work/v$1/smoke" start rc line
  mkdir -p "$dir"
  start=$EPOCHREALTIME
  (run_build "$i" "$dir" "$dir/home" "${SMOKE_S:-120}" train run --device "$DEVICE" --steps 2 \
    --batch-size 2 --set model.dim=8 --set 'model.dim_mults=[1,2]' --set model.attn_dim_head=8 \
    --set diffusion.timesteps=3 --set data.class_conditional=false --sample-every 0) 2>"$dir.log"
  rc=$?
  line=$(record "backend=ddpm ${labels[$i]}" bench=smoke "log=$dir.log" rc=$rc "start=$start" \
    "end=$EPOCHREALTIME" expect_gpu=$smi "sha256=$(sha256sum "${bins[$i]}" | cut -c1-64)")
  echo "$line"
  if [[ $line == *'"ok": true'* ]]; then
    live+=("$i")
  else
    echo "${labels[$i]} is left out: its smoke test failed"
    tail_log "$dir.log"
  fi
}

# Trains WARM + N steps of build I as TAG at BATCH; stops it after the last timed step (before
# the end-of-run preview) and samples nvidia-smi between the first and the last timed step.
train() {
  local i="$1" tag="$2" batch="$3" n="$4" dir="$work/v$1" pid smi_pid="" rows rc
  shift 4
  local total=$((WARM + n))
  time_for "$min_s" "${labels[$i]} $tag" || return 0
  rm -rf "${dir:?}/$tag" && mkdir -p "$dir"
  run_build "$i" "$dir" "$dir/home-train" "$(left)" train "$tag" --device "$DEVICE" --steps "$total" \
    --batch-size "$batch" --sample-every 0 --checkpoint-every 100000 \
    --set data.class_conditional=false "$@" 2>"$dir/$tag.log" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    rows=$(($({ wc -l <"$dir/$tag/metrics.csv"; } 2>/dev/null || echo 1) - 1))
    if [ "$smi" = 1 ] && [ -z "$smi_pid" ] && [ "$rows" -ge "$WARM" ]; then
      nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits \
        -lms 200 >"$dir/$tag.smi" 2>/dev/null &
      smi_pid=$!
    fi
    [ "$rows" -ge "$total" ] && { kill -INT "$pid"; break; }
    sleep 0.2
  done
  [ -n "$smi_pid" ] && kill "$smi_pid" 2>/dev/null
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
    (run_build "$i" "$dir" "$dir/home-sample" "$(left)" sample "$model" -n "$sample_n" \
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
# PyTorch's run of one model, fp32 eager then bf16 autocast; its lines go to results.jsonl.
torch_run() {
  local model="$1" cast log
  shift
  [ "$torch_ok" = 1 ] || return 0
  for cast in ${TORCH_CASTS:-none bf16}; do
    time_for "$min_s" "PyTorch $model $cast" || return 0
    log="$work/pytorch-$model-$cast.log"
    PYTHONUNBUFFERED=1 timeout -k 10 "$(left)" "$PYTHON" "$here/pytorch_unet.py" --trainer \
      --device "$torch_device" --autocast "$cast" --tf32 "$TORCH_TF32" --model "$model" \
      "${torch_small[@]}" "$@" 2>"$log" | grep --line-buffered '^{' | tee -a "$results"
    tail_log "$log" 1
  done
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

echo "## Smoke tests"
for i in "${!bins[@]}"; do smoke "$i"; done
if [ "${SMOKE_ONLY:-0}" != 1 ]; then
  echo "## Measurements"
  torch_run mnist --batch "${mnist_batches[@]}" --sample-batch "$sample_n" \
    --sample-steps "$sample_steps" --steps "$STEPS"
  for i in "${live[@]}"; do train "$i" "mnist_b${mnist_batches[0]}" "${mnist_batches[0]}" "$STEPS" "${mnist_model[@]}"; done
  for i in "${live[@]}"; do sample "$i"; done
  for b in "${mnist_batches[@]:1}"; do
    for i in "${live[@]}"; do train "$i" "mnist_b$b" "$b" "$STEPS" "${mnist_model[@]}"; done
  done
  torch_run cifar --batch "$cifar_batch" --sample-batch 0 --steps "$CIFAR_STEPS"
  for i in "${live[@]}"; do
    train "$i" "cifar_b$cifar_batch" "$cifar_batch" "$CIFAR_STEPS" --data "$cifar_data" \
      --image-size 32 --channels 3 "${cifar_model[@]}"
  done
  echo "## Table"
  python3 "$here/gpu_table.py" "$results"
fi
# Close the tee into bench.txt and let it finish writing.
exec >/dev/null 2>&1
wait "$tee_pid"
