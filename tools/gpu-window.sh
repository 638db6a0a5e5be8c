#!/usr/bin/env bash
# One short window on a borrowed GPU machine that starts bare: the benchmark (optional), then
# training until a deadline, then everything needed to continue packed small enough to carry
# back. A run started in one window continues in the next, on another machine too.
#
#   bash tools/gpu-window.sh IN OUT MINUTES
#
# IN holds what was carried there:
#   ddpm[-NAME].xz    release builds of `ddpm` (xz-compressed); `ddpm.xz` trains, and every
#                     one is measured by crates/ddpm/benches/gpu.sh when BENCH=1 (`ddpm.xz`
#                     also with DDPM_GPU_KERNELS=1, as `default+kernels`)
#   run.tar.xz.*      a run packed by an earlier window (optional): it is continued
#   data.tar.xz       training images, unpacked beside the run (optional), or
#   images.xz         the same packed half as small by tools/images-pack.py (run from the
#                     repository: `python3 tools/images-pack.py pack data/emoji/images images.xz`)
# OUT receives at most seven files: run.tar.xz.aa, .ab, … (the run folder with its newest
# checkpoint, in parts of PART_MB, default 15), model.bpk and model.json (the EMA weights, f16,
# and their card), train.log, and with BENCH=1 bench.txt (the benchmark's table, GPU, JSON
# lines and log).
# Environment: TRAIN (the `ddpm train` arguments after the run folder for a new run; ignored
# when a run is carried in), TRAIN_STEPS (the run's total steps, default 1000000: the deadline
# stops it), BENCH=1 (benchmark first; BENCH_MINUTES caps it, default half the window; gpu.sh's
# own variables pass through), DEVICE (wgpu), KERNELS (0, 1 or auto, the default: the training
# runs with the core's GPU kernels, DDPM_GPU_KERNELS=1, when the benchmark just measured
# `default+kernels` training faster than `default`; without a benchmark, auto is 0),
# PACK_OPTIMIZER (1, the default; 0 packs the checkpoint without Adam's moments, half its size,
# for a run too large to carry in with them: the next window's trainer starts Adam afresh and
# warms the learning rate up again), PYTHON (python3; with Pillow where images.xz is carried).
# The trainer stops at the deadline with SIGINT, which makes it write a checkpoint; packing
# needs about a minute, so it is kept out of MINUTES.
set -uo pipefail
[ $# -eq 3 ] || { echo "usage: gpu-window.sh IN OUT MINUTES" >&2; exit 2; }
in="$(cd "$1" && pwd)" || exit 2
mkdir -p "$2" && out="$(cd "$2" && pwd)" || exit 2
minutes="$3"
here="$(cd "$(dirname "$0")" && pwd)"
end=$(($(date +%s) + minutes * 60))
work="${WORK:-${TMPDIR:-/tmp}/ddpm-window}"
device="${DEVICE:-wgpu}"
case "${KERNELS:-auto}" in 0 | 1 | auto) ;; *) echo "gpu-window: KERNELS is 0, 1 or auto, not ${KERNELS}" >&2; exit 2 ;; esac
case "${PACK_OPTIMIZER:-1}" in 0 | 1) ;; *) echo "gpu-window: PACK_OPTIMIZER is 0 or 1, not ${PACK_OPTIMIZER}" >&2; exit 2 ;; esac
rm -rf "$work"
mkdir -p "$work/bin"

for f in "$in"/ddpm*.xz; do
  [ -e "$f" ] || continue
  b="$work/bin/$(basename "$f" .xz)"
  xz -dc "$f" >"$b" && chmod +x "$b"
done
ddpm="$work/bin/ddpm"
[ -x "$ddpm" ] || { echo "gpu-window: $in/ddpm.xz is missing" >&2; exit 2; }
[ -e "$in/data.tar.xz" ] && tar -xJf "$in/data.tar.xz" -C "$work"
if [ -e "$in/images.xz" ]; then
  "${PYTHON:-python3}" "$here/images-pack.py" unpack "$in/images.xz" "$work" >/dev/null || exit 1
fi

if [ "${BENCH:-0}" = 1 ]; then
  bench_end=$(($(date +%s) + ${BENCH_MINUTES:-$((minutes / 2))} * 60))
  [ "$bench_end" -lt "$end" ] || bench_end=$end
  variants=()
  for b in "$work"/bin/ddpm*; do
    name=$(basename "$b")
    name=${name#ddpm}
    variants+=("${name#-}=$b")
  done
  variants=("${variants[@]/#=/default=}")
  # The core's GPU kernels are a switch of the same binary: measured with the default build.
  variants=("${variants[0]}" "default+kernels=$work/bin/ddpm" "${variants[@]:1}")
  # The benchmark's run folders stay in the work folder: only its report travels back.
  OUT="$work/bench" DEADLINE=$bench_end DEVICE="$device" \
    bash "$here/../crates/ddpm/benches/gpu.sh" "${variants[@]}" >"$work/bench.log" 2>&1
  cat "$work/bench/table.md" "$work/bench/gpu.txt" "$work/bench/results.jsonl" "$work/bench.log" \
    >"$out/bench.txt" 2>/dev/null
fi

# With or without the core's GPU kernels: their training rows against the plain build's, the
# geometric mean of the ratios over the rows both have.
kernels="${KERNELS:-auto}"
if [ "$kernels" = auto ]; then
  kernels=$("${PYTHON:-python3}" - "$work/bench/results.jsonl" <<'PY'
import json, math, sys
rows = {}
try:
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if r.get("images_per_second") and r["backend"] in ("ddpm default", "ddpm default+kernels"):
            rows.setdefault(r["bench"], {})[r["backend"]] = r["images_per_second"]
except OSError:
    pass
ratios = [v["ddpm default+kernels"] / v["ddpm default"] for v in rows.values() if len(v) == 2]
print(int(bool(ratios) and math.exp(sum(map(math.log, ratios)) / len(ratios)) > 1))
PY
)
fi
echo "gpu-window: training with DDPM_GPU_KERNELS=$kernels" | tee "$out/train.log"

run="$work/run"
if compgen -G "$in/run.tar.xz.*" >/dev/null; then
  cat "$in"/run.tar.xz.* | tar -xJf - -C "$work" || { echo "gpu-window: the carried run does not unpack" >&2; exit 1; }
  args=()
else
  # shellcheck disable=SC2206 # TRAIN is a list of arguments
  args=($TRAIN)
fi
left=$((end - $(date +%s)))
if [ "$left" -gt 30 ]; then
  # `timeout -s INT`: the trainer's Ctrl-C path, which checkpoints the step it is at.
  (cd "$work" && DDPM_GPU_KERNELS=$kernels timeout -s INT -k 120 "$left" "$ddpm" train "$run" \
    --device "$device" --steps "${TRAIN_STEPS:-1000000}" "${args[@]}") 2>&1 | tee -a "$out/train.log"
fi

# Pack: the run folder with its newest checkpoint only (the others are older copies), with or
# without Adam's moments.
newest=$(ls -d "$run"/checkpoints/step-* 2>/dev/null | sort | tail -1)
[ -n "$newest" ] || { echo "gpu-window: no checkpoint to pack" >&2; exit 1; }
members=()
for p in "$run"/*; do
  [ "$(basename "$p")" = checkpoints ] || members+=("run/$(basename "$p")")
done
leave=()
[ "${PACK_OPTIMIZER:-1}" = 0 ] && leave=(--exclude=optimizer.bpk)
tar -cf - -C "$work" "${leave[@]}" "${members[@]}" "run/checkpoints/$(basename "$newest")" |
  xz -T0 -3 | split -b "${PART_MB:-15}M" - "$out/run.tar.xz."
"$ddpm" export "$run" -o "$out/model.bpk" --f16 --force 2>&1 | tail -2
ls -l "$out"
