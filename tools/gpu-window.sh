#!/usr/bin/env bash
# One short window on a borrowed GPU machine that starts bare: the benchmark (optional), then
# training until a deadline, then everything needed to continue packed small enough to carry
# back. A run started in one window continues in the next, on another machine too.
#
#   bash tools/gpu-window.sh IN OUT [MINUTES]
#
# IN holds what was carried there (tools/gpu-prepare.sh makes it):
#   ddpm-<features>.xz  release builds of `ddpm`, named by their cargo features joined by '-'
#                       (ddpm-wgpu.xz: the default build; ddpm-fusion-vulkan.xz: `--features
#                       fusion,vulkan`), and manifest.txt (their commit and sha256)
#   run.tar.xz.*        a run packed by an earlier window (optional): it is continued
#   data.tar.xz         training images, unpacked into the work folder (optional), or
#   images.xz           the same packed by tools/images-pack.py
#   model.bpk, …        weights for TRAIN's --init (optional; see below)
# OUT receives at most eight files: results.jsonl and bench.txt (BENCH=1; written as the
# benchmark goes, so a window cut off still brings back what it measured), train.log,
# run.tar.xz.aa, .ab, … (the run folder with its newest checkpoint, in parts of PART_MB, default
# 15), model.bpk and model.json (the EMA weights, f16, and their card). The packed run is
# measured before it is split: where it does not fit the 8 files and 64 MiB that come back,
# model.bpk and model.json stay behind (`ddpm export` makes them from the run), then Adam's
# moments, and a run that still does not fit is refused (exit 1; the weights come back).
# Time: the whole command ends within DEADLINE_S (default 540) seconds of its start, packing
# included, which leaves a 600 s device command a minute for unpacking the Vulkan loader and
# the wheels before it. Training stops at MINUTES (default 8) or at DEADLINE_S − 60, whichever
# is first: SIGINT (the trainer checkpoints the step it is at), SIGKILL 20 s later. A
# benchmark-only window, with nothing to pack, runs until DEADLINE_S − 15.
# Environment:
#   TRAIN        `ddpm train` arguments after the run folder, for a new run; ignored when a run
#                is carried in. Not --steps or --device (TRAIN_STEPS and DEVICE set those).
#                Relative paths of --data, --init and --config are looked for in the work
#                folder (carried data unpacks there), the caller's folder, then IN.
#   TRAIN_STEPS  the run's total steps (default 1000000: the deadline stops it)
#   TRAIN_BUILD  which build trains, by its features (e.g. fusion-vulkan). Default: the fastest
#                at MNIST batch 128 when the benchmark ran, else `wgpu`, else the first in IN.
#                Builds are tried and measured in this order: TRAIN_BUILD, `wgpu` (shipped),
#                the rest, the `+f16` variant (training's convolutions in f16, measured in a
#                benchmark on a GPU only; the run trains so only with DDPM_HALF_CONVS=1 in the
#                environment) and the `+kernels` variant (KERNELS=auto) last. A build that
#                fails its smoke test (gpu.sh: crashes, runs out its time, or finds no GPU
#                through Vulkan where nvidia-smi exists) never trains; the next one does.
#   BENCH=1      the benchmark first (crates/ddpm/benches/gpu.sh, every build; its variables
#                pass through). BENCH_MINUTES caps it: default half the window, or all of it in
#                a benchmark-only window (BENCH=1 without TRAIN and without a carried run).
#   KERNELS      0, 1 or auto (default): auto trains with DDPM_GPU_KERNELS=1 when the benchmark
#                measured the training build faster with them (it then also measures
#                TRAIN_BUILD+kernels); without a benchmark auto is 0
#   PACK_OPTIMIZER 0 (default) packs the checkpoint without Adam's moments: half the size, and
#                the next window starts Adam afresh with a new learning-rate warm-up; 1 keeps
#                them (the dim-32 colour model's checkpoint is then 42 MB, too large to carry in
#                again beside a build)
#   DEVICE (wgpu), PYTHON (python3: Pillow for images.xz, torch for the benchmark), WORK,
#   DEADLINE_S, PART_MB.
# To continue without the run folder (a new run from the window's weights: Adam, the step
# count and the learning-rate schedule start afresh): carry OUT's model.bpk in IN and set
# TRAIN="--init model.bpk …" with the same model settings.
set -uo pipefail
t0=$(date +%s)
say() { echo "gpu-window: $*" >&2; }
[ $# -eq 2 ] || [ $# -eq 3 ] || { say "usage: gpu-window.sh IN OUT [MINUTES]"; exit 2; }
caller="$PWD"
in="$(cd "$1" && pwd)" || exit 2
mkdir -p "$2" && out="$(cd "$2" && pwd)" || exit 2
minutes="${3:-8}"
here="$(cd "$(dirname "$0")" && pwd)"
work="${WORK:-${TMPDIR:-/tmp}/ddpm-window}"
device="${DEVICE:-wgpu}"
hard_end=$((t0 + ${DEADLINE_S:-540}))
end=$((t0 + minutes * 60))
case "${KERNELS:-auto}" in 0 | 1 | auto) ;; *) say "KERNELS is 0, 1 or auto, not ${KERNELS}"; exit 2 ;; esac
case "${PACK_OPTIMIZER:-0}" in 0 | 1) ;; *) say "PACK_OPTIMIZER is 0 or 1, not ${PACK_OPTIMIZER}"; exit 2 ;; esac

# What trains is checked before anything is unpacked: a mistake costs seconds, not the window.
carried=0
compgen -G "$in/run.tar.xz.*" >/dev/null && carried=1
read -ra words <<<"${TRAIN:-}"
trains=1
if [ "$carried" = 0 ] && [ ${#words[@]} -eq 0 ]; then
  [ "${BENCH:-0}" = 1 ] || { say "nothing to do: set TRAIN for a new run, carry run.tar.xz.* to continue one, or BENCH=1 for a benchmark-only window"; exit 2; }
  trains=0
fi
# Training leaves a minute for SIGINT, SIGKILL and packing; the benchmark alone needs seconds.
reserve=60
[ "$trains" = 0 ] && reserve=15
[ "$end" -le $((hard_end - reserve)) ] || end=$((hard_end - reserve))
for w in "${words[@]}"; do
  case "$w" in
    --steps | --steps=* | --device | --device=*) say "TRAIN has ${w%%=*}: the window sets it (TRAIN_STEPS, DEVICE)"; exit 2 ;;
  esac
done

rm -rf "$work"
mkdir -p "$work/bin"
# An image without xz gets a stand-in on Python's lzma (tar -J calls it too).
if ! command -v xz >/dev/null; then
  mkdir -p "$work/tools"
  cat >"$work/tools/xz" <<'PY'
#!/usr/bin/env python3
import lzma, shutil, sys
flags = "".join(a[1:] for a in sys.argv[1:] if a.startswith("-") and not a.startswith("-T"))
files = [a for a in sys.argv[1:] if not a.startswith("-")]
src = open(files[0], "rb") if files else sys.stdin.buffer
if "d" in flags:
    shutil.copyfileobj(lzma.open(src), sys.stdout.buffer)
else:
    with lzma.open(sys.stdout.buffer, "w", preset=int(([c for c in flags if c.isdigit()] or ["6"])[-1])) as f:
        shutil.copyfileobj(src, f)
PY
  chmod +x "$work/tools/xz"
  export PATH="$work/tools:$PATH"
fi
labels=() bins=()
for f in "$in"/ddpm-*.xz; do
  [ -e "$f" ] || continue
  label="$(basename "$f" .xz)" label="${label#ddpm-}"
  if ! { xz -dc "$f" >"$work/bin/ddpm-$label" && chmod +x "$work/bin/ddpm-$label"; }; then
    say "$f does not unpack"
    exit 1
  fi
  labels+=("${label//-/,}") bins+=("$work/bin/ddpm-$label")
done
if [ ${#bins[@]} -eq 0 ]; then
  [ -e "$in/ddpm.xz" ] && say "ddpm.xz: name each build by its features, ddpm-<features>.xz (tools/gpu-prepare.sh)"
  say "no ddpm-<features>.xz in $in"
  exit 2
fi
[ -e "$in/data.tar.xz" ] && tar -xJf "$in/data.tar.xz" -C "$work"
if [ -e "$in/images.xz" ]; then
  "${PYTHON:-python3}" "$here/images-pack.py" unpack "$in/images.xz" "$work" >/dev/null || exit 1
fi

# TRAIN's relative paths, as the caller meant them (the trainer runs in the work folder).
resolve() {
  case "$1" in /* | mnist) echo "$1"; return ;; esac
  local d
  for d in "$work" "$caller" "$in"; do
    [ -e "$d/$1" ] && { echo "$d/$1"; return; }
  done
  say "TRAIN: $1 is in none of $work, $caller, $in"
  return 1
}
args=()
for ((k = 0; k < ${#words[@]}; k++)); do
  w="${words[k]}"
  case "$w" in
    --data | --init | --config)
      k=$((k + 1))
      args+=("$w" "$(resolve "${words[k]:-}")") || exit 2 ;;
    --data=* | --init=* | --config=*) args+=("${w%%=*}=$(resolve "${w#*=}")") || exit 2 ;;
    *) args+=("$w") ;;
  esac
done

# The NVIDIA driver's Vulkan ICD, where the loader's default search misses it (device README).
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"

# The builds in the order gpu.sh measures them, the safest first, so that a build never tried
# on a GPU cannot use up the window: the wanted one, the shipped `wgpu`, the others, and the
# lead one with the core's GPU kernels last (when KERNELS=auto is to decide).
want="${TRAIN_BUILD:-}" want="${want//-/,}"
lead=0
for i in "${!labels[@]}"; do [ "${labels[$i]}" = wgpu ] && lead=$i; done
for i in "${!labels[@]}"; do [ "${labels[$i]}" = "$want" ] && lead=$i; done
order=("$lead")
for i in "${!labels[@]}"; do [ "$i" != "$lead" ] && [ "${labels[$i]}" = wgpu ] && order+=("$i"); done
for i in "${!labels[@]}"; do [ "$i" != "$lead" ] && [ "${labels[$i]}" != wgpu ] && order+=("$i"); done
variants=() ordered=()
for i in "${order[@]}"; do variants+=("${labels[$i]}=${bins[$i]}") ordered+=("${labels[$i]}"); done
# f16 convolutions are measured on a GPU only (the CPU refuses them); they train only where the
# caller's environment says DDPM_HALF_CONVS=1.
[ "${BENCH:-0}" = 1 ] && [ "$device" != cpu ] && variants+=("${labels[$lead]}+f16=${bins[$lead]}")
[ "${KERNELS:-auto}" = auto ] && [ "${BENCH:-0}" = 1 ] && variants+=("${labels[$lead]}+kernels=${bins[$lead]}")
manifest=""
[ -f "$in/manifest.txt" ] && manifest="$in/manifest.txt"
results=""
now=$(date +%s)
bench_end=$((now + (end - now) / 2))
[ "$trains" = 0 ] && bench_end=$end
[ -n "${BENCH_MINUTES:-}" ] && bench_end=$((now + BENCH_MINUTES * 60))
[ "$bench_end" -le "$end" ] || bench_end=$end
if [ "${BENCH:-0}" = 1 ] && [ $((bench_end - now)) -lt 60 ]; then
  say "less than a minute for the benchmark: skipped"
elif [ "${BENCH:-0}" = 1 ]; then
  results="$out/results.jsonl"
  # gpu.sh keeps to DEADLINE; the timeout is a safety net, within the command's own deadline.
  # Its two files go straight to OUT.
  net=$((bench_end + 60))
  [ "$net" -le $((hard_end - 5)) ] || net=$((hard_end - 5))
  OUT="$out" BENCH_WORK="$work/bench" DEADLINE=$bench_end DEVICE="$device" MANIFEST="$manifest" \
    timeout -k 5 $((net - now)) bash "$here/../crates/ddpm/benches/gpu.sh" "${variants[@]}"
  grep -q '^## Table' "$out/bench.txt" 2>/dev/null ||
    python3 "$here/../crates/ddpm/benches/gpu_table.py" "$results" >>"$out/bench.txt"
elif [ "$trains" = 1 ] && [ ${#bins[@]} -gt 1 ]; then
  # Several builds and no benchmark: only the smoke tests, to train with one that works.
  results="$work/smoke/results.jsonl"
  OUT="$work/smoke" BENCH_WORK="$work/smoke-runs" DEVICE="$device" MANIFEST="$manifest" \
    SMOKE_ONLY=1 bash "$here/../crates/ddpm/benches/gpu.sh" "${variants[@]}"
fi
[ "$trains" = 1 ] || { ls -l "$out"; exit 0; }

exec > >(tee -a "$out/train.log") 2>&1
tee_pid=$!
# Every exit, an early `exit 1` too, closes the tee and lets it write train.log's last lines.
trap 'exec >/dev/null 2>&1; wait "$tee_pid"' EXIT
kernels="${KERNELS:-auto}"
[ -z "$results" ] && [ "$kernels" = auto ] && kernels=0
read -r label kernels < <(python3 "$here/../crates/ddpm/benches/gpu_table.py" --pick "${results:-/dev/null}" \
  --want "$want" --kernels "$kernels" "${ordered[@]}")
ddpm="${bins[$lead]}"
for i in "${!labels[@]}"; do [ "${labels[$i]}" = "${label:-}" ] && ddpm="${bins[$i]}"; done
case "${kernels:-}" in 0 | 1) ;; *) kernels=0 ;; esac
echo "gpu-window: training with $(basename "$ddpm"), DDPM_GPU_KERNELS=$kernels, DDPM_HALF_CONVS=${DDPM_HALF_CONVS:-0}"

run="$work/run"
if [ "$carried" = 1 ]; then
  cat "$in"/run.tar.xz.* | tar -xJf - -C "$work" || { say "the carried run does not unpack"; exit 1; }
  args=()
fi
left=$((end - $(date +%s)))
if [ "$left" -gt 30 ]; then
  # `timeout -s INT`: the trainer's Ctrl-C path, which checkpoints the step it is at.
  (cd "$work" && DDPM_GPU_KERNELS=$kernels timeout -s INT -k 20 "$left" "$ddpm" train "$run" \
    --device "$device" --steps "${TRAIN_STEPS:-1000000}" "${args[@]}")
fi

# Pack: the run folder with its newest checkpoint only (the others are older copies), without
# Adam's moments unless PACK_OPTIMIZER=1; measured before it is split, so that OUT keeps to
# the 8 files and 64 MiB that come back.
newest=""
for c in "$run"/checkpoints/step-*; do [ -d "$c" ] && newest="$c"; done
[ -n "$newest" ] || { say "no checkpoint to pack"; exit 1; }
members=()
for p in "$run"/*; do
  [ "$(basename "$p")" = checkpoints ] || members+=("run/$(basename "$p")")
done
pack() {
  tar -cf - -C "$work" "$@" "${members[@]}" "run/checkpoints/$(basename "$newest")" |
    xz -T0 -3 >"$work/run.tar.xz"
}
leave=()
[ "${PACK_OPTIMIZER:-0}" = 0 ] && leave=(--exclude=optimizer.bpk)
pack "${leave[@]}"
# The EMA weights, f16, and their card, into the work folder: they go to OUT only if they fit.
rm -rf "$work/export" "$work/aside" && mkdir -p "$work/export" "$work/aside"
left=$((hard_end - $(date +%s)))
[ "$left" -gt 5 ] && timeout "$left" "$ddpm" export "$run" -o "$work/export/model.bpk" --f16 --force 2>&1 | tail -2
part=$((${PART_MB:-15} * 1024 * 1024))
# True when OUT's files, the export and the run's parts come to at most 8 files and 63 MiB
# (a MiB kept for train.log's last lines).
fits() {
  local size files bytes
  size=$(stat -c %s "$work/run.tar.xz")
  files=$(find "$out" "$work/export" -type f | wc -l)
  bytes=$(find "$out" "$work/export" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  [ $((files + (size + part - 1) / part)) -le 8 ] && [ $((bytes + size)) -le $((63 * 1024 * 1024)) ]
}
# What does not fit stays behind, the least important first: the export (`ddpm export` makes it
# again from the run), then Adam's moments (the next window warms Adam up again), the export
# coming back if it then fits; a run that still does not fit is refused, the weights kept.
if ! fits; then
  mv "$work/export"/* "$work/aside"/ 2>/dev/null
  if ! fits && [ ${#leave[@]} -eq 0 ]; then
    say "the run with Adam's moments does not fit in what comes back: packed without them (as PACK_OPTIMIZER=0)"
    pack --exclude=optimizer.bpk
    mv "$work/aside"/* "$work/export"/ 2>/dev/null
    fits || mv "$work/export"/* "$work/aside"/ 2>/dev/null
  fi
  if ! fits; then
    say "the run packs to $(stat -c %s "$work/run.tar.xz") bytes: beside OUT's $(find "$out" -type f | wc -l) files, $(du -sb "$out" | cut -f1) bytes, more than comes back (8 files, 64 MiB; parts of PART_MB=${PART_MB:-15}); not packed, the exported weights come back instead"
    mv "$work/aside"/* "$out"/ 2>/dev/null
    exit 1
  fi
  [ -n "$(ls -A "$work/aside")" ] &&
    say "model.bpk and model.json do not fit beside the run: left behind (\`ddpm export\` makes them from the run)"
fi
split -b "$part" "$work/run.tar.xz" "$out/run.tar.xz."
mv "$work/export"/* "$out"/ 2>/dev/null
ls -l "$out"
