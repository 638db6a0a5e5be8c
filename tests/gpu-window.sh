#!/usr/bin/env bash
# The GPU window's tools on the CPU, as a borrowed machine would run them: training images
# packed by tools/images-pack.py (8-bit RGBA as pixels, other PNGs as files) come back with the
# same pixels; a run trained in one window (`DEVICE=cpu`) and packed without Adam's moments
# continues in the next one, warming up again; mistakes in TRAIN are refused at once; the
# benchmark's table survives broken result lines; and a benchmark-only window (BENCH=1 SMALL=1)
# brings back a table with ddpm's rows and, where torch is importable, PyTorch's.
#
#   bash tests/gpu-window.sh DDPM_BINARY
#
# PYTHON names an interpreter with Pillow (default python3); TORCH_PYTHON one with torch,
# denoising-diffusion-pytorch and ema-pytorch (default PYTHON; without them PyTorch's rows are
# not checked).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: tests/gpu-window.sh DDPM_BINARY" >&2; exit 2; }
ddpm="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "gpu-window test: $*" >&2; exit 1; }

# Two classes of 16x16 images: RGBA (stored as pixels), grey with alpha and palette (as files).
cd "$tmp"
"$py" - <<'PY'
import os, random
from PIL import Image
random.seed(0)
for c in ("a", "b"):
    os.makedirs(f"data/imgs/{c}")
    for i in range(6):
        im = Image.new("RGBA", (16, 16))
        im.putdata([tuple(random.randrange(256) for _ in range(4)) for _ in range(256)])
        if i == 4:
            im = im.convert("LA")
        elif i == 5:
            im = im.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        im.save(f"data/imgs/{c}/{i}.png")
PY
"$py" "$root/tools/images-pack.py" pack data/imgs images.xz >/dev/null
"$py" "$root/tools/images-pack.py" unpack images.xz back >/dev/null
"$py" - <<'PY' || fail "unpacked images differ"
import os, sys
from PIL import Image
n = 0
for root, _, names in os.walk("data/imgs"):
    for name in names:
        a, b = os.path.join(root, name), os.path.join("back", root, name)
        if Image.open(a).convert("RGBA").tobytes() != Image.open(b).convert("RGBA").tobytes():
            sys.exit(f"{b}: other pixels")
        n += 1
sys.exit(0 if n == 12 else f"{n} images, not 12")
PY
cmp data/imgs/a/5.png back/data/imgs/a/5.png || fail "a palette PNG was not kept as its bytes"
if "$py" "$root/tools/images-pack.py" pack /tmp x.xz 2>err.txt; then fail "packed a folder outside"; fi
grep -q "is not below the current folder" err.txt || fail "$(cat err.txt)"

# Window 1 trains a new run from the packed images and packs it without Adam's moments; five
# files already in OUT leave no room for model.bpk and model.json beside train.log and the run.
mkdir in1 in2 out1
xz -0 -T1 -c "$ddpm" >in1/ddpm-wgpu.xz
cp images.xz in1/
for k in 1 2 3 4 5; do echo "$k" >"out1/extra$k"; done
export DEVICE=cpu PYTHON="$py" WORK="$tmp/work"
TRAIN="--data data/imgs --image-size 8 --channels 3 --batch-size 4 --sample-every 0 \
--set model.dim=8 --set model.dim_mults=[1,2] --set model.attn_dim_head=8 \
--set model.attn_heads=2 --set diffusion.timesteps=100 --set optim.warmup_steps=10" \
  PACK_OPTIMIZER=0 bash "$root/tools/gpu-window.sh" in1 out1 1 >log1.txt 2>&1 || fail "window 1: $(tail -3 log1.txt)"
cat out1/run.tar.xz.* | tar -tJf - >members.txt
grep -q "checkpoints/step-.*/model.bpk" members.txt || fail "window 1 packed no checkpoint"
if grep -q optimizer.bpk members.txt; then fail "window 1 packed Adam's moments"; fi
first=$(sed -n 's/^stopped at step \([0-9]*\);.*/\1/p' out1/train.log)
[ -n "$first" ] || fail "window 1 did not stop at its deadline: $(tail -2 out1/train.log)"
[ "$first" -gt 10 ] || fail "window 1 trained only $first steps, within the warm-up"
grep -q "model.bpk and model.json do not fit beside the run: left behind" out1/train.log ||
  fail "window 1 did not leave its export behind: $(tail -3 out1/train.log)"
[ "$(find out1 -type f | wc -l)" -eq 7 ] || fail "window 1 wrote $(ls out1)"

# Window 2 continues it, with a second build that sorts before the shipped one: the shipped one
# has its smoke test first and trains.
cp in1/ddpm-wgpu.xz in1/images.xz out1/run.tar.xz.* in2/
cp in1/ddpm-wgpu.xz in2/ddpm-aaa.xz
bash "$root/tools/gpu-window.sh" in2 out2 1 >log2.txt 2>&1 || fail "window 2: $(tail -3 log2.txt)"
grep -q "training with ddpm-wgpu," out2/train.log || fail "window 2: $(head -3 out2/train.log)"
head -1 work/smoke/results.jsonl | grep -q '"ddpm wgpu", "bench": "smoke"' ||
  fail "window 2 tried another build first: $(head -1 work/smoke/results.jsonl)"
grep -q "no optimizer.bpk; Adam starts afresh" out2/train.log || fail "window 2: $(head -3 out2/train.log)"
grep -q "steps $((first + 1))\.\." out2/train.log || fail "window 2 did not resume at step $((first + 1))"
rate=$(awk -F, -v s=$((first + 1)) '$1 == s {print $3}' work/run/metrics.csv)
"$py" -c "import sys; sys.exit(abs(float('$rate') - 2e-4 / 10) > 1e-12)" ||
  fail "step $((first + 1)) ran at rate $rate, not 1/10 of 2e-4"
[ -s out2/model.bpk ] || fail "window 2 exported no model"

# Window 3 carries the run in with no time to train and finds 63 MiB already in OUT: the run is
# refused (exit 1) after a try without Adam's moments, said in train.log's last line, and the
# weights come back.
mkdir in4 out4
cp in1/ddpm-wgpu.xz out1/run.tar.xz.* in4/
truncate -s 63M out4/big
if DEADLINE_S=80 PACK_OPTIMIZER=1 bash "$root/tools/gpu-window.sh" in4 out4 1 >log4.txt 2>&1; then
  fail "window 3 packed a run that does not fit"
fi
tail -1 out4/train.log | grep -q "not packed" || fail "window 3: $(tail -3 out4/train.log)"
grep -q "packed without them" out4/train.log || fail "window 3 did not try without Adam's moments"
{ [ -s out4/model.bpk ] && ! compgen -G "out4/run.tar.xz.*" >/dev/null; } || fail "window 3 wrote $(ls out4)"

# TRAIN's mistakes are refused before anything is unpacked.
if TRAIN="--steps 5" bash "$root/tools/gpu-window.sh" in1 outx 1 2>err.txt; then fail "TRAIN with --steps ran"; fi
grep -q "TRAIN has --steps" err.txt || fail "TRAIN with --steps: $(cat err.txt)"
if env -u TRAIN bash "$root/tools/gpu-window.sh" in1 outx 1 2>err.txt; then fail "a window with nothing to do ran"; fi
grep -q "nothing to do" err.txt || fail "no TRAIN: $(cat err.txt)"

# The recorder: a half-written last row of metrics.csv and damaged nvidia-smi lines cost those
# lines only; a smoke test on a machine with a GPU passes only with rc 0 and a Vulkan adapter
# that is not software.
table_py="$root/crates/ddpm/benches/gpu_table.py"
printf 'step,loss,lr,images_per_second,seconds\n1,1,0,1,2.0\n2,1,0,1,3.0\n3,1,0,1,oops\n4,1,0,1,5.0\n5,1,0,1,0.' >m.csv
printf '40, 100\n[N/A], 5\n60\n50, 300\n70, 4' >s.smi
python3 "$table_py" --record backend=x bench=mnist_b4 batch=4 warm=2 total=9 metrics=m.csv smi=s.smi >rec.json
grep -q '"steps": 4, "first_step_seconds": 2.0, "images_per_second": 4.0, "gpu_samples": 2, "gpu_utilisation_percent": 50.0, "gpu_memory_mib": 300.0' rec.json ||
  fail "the recorder on damaged lines: $(cat rec.json)"
smoke() { # ADAPTER RC EXPECT_GPU: prints the smoke test's "ok"
  echo "training 9 parameters on wgpu: $1: 2 images, steps 1..2" >smoke.log
  python3 "$table_py" --record backend=x bench=smoke log=smoke.log rc="$2" expect_gpu="$3" device=wgpu |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["ok"])'
}
judged="$(smoke "NVIDIA H100 (Vulkan)" 0 1) $(smoke "NVIDIA H100 (Vulkan)" 124 1) $(smoke "NVIDIA H100 (Gl)" 0 1)"
judged+=" $(smoke "llvmpipe (LLVM 15) (Vulkan)" 0 1) $(smoke "llvmpipe (LLVM 15) (Vulkan)" 124 0)"
[ "$judged" = "True False False False True" ] || fail "smoke tests judged $judged"

# The table from results cut off at a deadline: half a line, NaN, a failed build, PyTorch only,
# a run killed after the deadline (rc 137: marked, not failed, out of the ratios, never picked).
cat >cut.jsonl <<'EOF'
{"backend": "pytorch 2 cuda", "model": "mnist", "autocast": "none", "tf32": "conv", "bench": "train_b128", "batch": 128, "images_per_second": 900.5}
{"backend": "ddpm wgpu", "bench": "smoke", "ok": false, "rc": 139}
{"backend": "ddpm fusion", "bench": "smoke", "ok": true, "rc": 0, "sha256": "0123456789abcdef", "commit": "d3537a0"}
{"backend": "ddpm vulkan", "bench": "smoke", "ok": true, "rc": 0}
{"backend": "ddpm fusion", "bench": "mnist_b128", "images_per_second": NaN}
{"backend": "ddpm vulkan", "bench": "mnist_b128", "images_per_second": 1000, "rc": 137, "steps": 20, "total": 40}
{"backend": "ddpm fusion", "bench": "mnist_b1
EOF
python3 "$table_py" cut.jsonl >table.txt || fail "gpu_table.py failed on cut results"
grep -qF "| train mnist, batch 128 (images/s) | – | – | 1,000* | 900 | – | – | – |" table.txt ||
  fail "no PyTorch row, or a cut-off rate in the ratios: $(cat table.txt)"
{ grep -qx 'Failed: .wgpu. smoke.' table.txt && grep -q 'killed after it (rc 137).*.vulkan. mnist_b128 after 20 steps' table.txt &&
  grep -q '.fusion. commit d3537a0, sha256 0123456789ab' table.txt; } || fail "the table's notes: $(cat table.txt)"
[ "$(python3 "$table_py" --pick cut.jsonl --kernels auto wgpu vulkan fusion)" = "vulkan 0" ] ||
  fail "--pick trained a build whose smoke test failed"
# A variant is never the build that trains, however fast.
{ cat cut.jsonl; echo; echo '{"backend": "ddpm vulkan+f16", "bench": "smoke", "ok": true, "rc": 0}'
  echo '{"backend": "ddpm vulkan+f16", "bench": "mnist_b128", "images_per_second": 5000, "rc": 0}'; } >variant.jsonl
[ "$(python3 "$table_py" --pick variant.jsonl --kernels auto wgpu vulkan+f16 vulkan)" = "vulkan 0" ] ||
  fail "--pick trained a +f16 variant"

# A benchmark-only window on the CPU: tiny models, PyTorch too where it can be imported.
torch_py="${TORCH_PYTHON:-$py}"
torch=1
if ! "$torch_py" -c 'import torch, denoising_diffusion_pytorch, ema_pytorch' 2>/dev/null; then
  echo "gpu-window test: $torch_py lacks torch, denoising-diffusion-pytorch or ema-pytorch (TORCH_PYTHON): PyTorch's rows are not checked"
  torch=0
fi
mkdir in3
cp in1/ddpm-wgpu.xz in3/
env -u TRAIN BENCH=1 SMALL=1 STEPS=2 CIFAR_STEPS=2 WARM=2 PYTHON="$torch_py" \
  bash "$root/tools/gpu-window.sh" in3 out3 3 >log3.txt 2>&1 || fail "benchmark window: $(tail -3 log3.txt)"
[ "$(find out3 -type f | wc -l)" -eq 2 ] || fail "the benchmark window wrote $(ls out3), not results.jsonl and bench.txt"
grep -q '"bench": "smoke".*"ok": true' out3/results.jsonl || fail "benchmark window: no smoke test passed"
# The shipped build's CIFAR before sampling; no sampling with the core's GPU kernels.
line_of() { grep -n "$1" out3/results.jsonl | head -1 | cut -d: -f1; }
[ "$(line_of '"ddpm wgpu", "bench": "cifar')" -lt "$(line_of '"ddpm wgpu", "bench": "ddim')" ] ||
  fail "benchmark window: sampling before the shipped build's CIFAR"
if grep -q '"ddpm wgpu+kernels", "bench": "ddim' out3/results.jsonl; then fail "benchmark window sampled with +kernels"; fi
for r in "train mnist, batch 8 " "train cifar, batch 4 " "sampling, batch 8: "; do
  # | measurement | wgpu | wgpu+kernels | PyTorch fp32 | PyTorch bf16 | …
  row=$(grep "^| $r" out3/bench.txt) || fail "benchmark window: no row '$r': $(tail -5 out3/bench.txt)"
  [ "$(echo "$row" | cut -d'|' -f3)" != " – " ] || fail "benchmark window: no ddpm number: $row"
  [ "$torch" = 0 ] || ! echo "$row" | cut -d'|' -f5,6 | grep -q ' – ' || fail "benchmark window: not both PyTorch precisions: $row"
done
[ "$torch" = 0 ] || [ "$(grep -c 'U-Net: [0-9,]* parameters (.*PyTorch' out3/bench.txt)" = 2 ] ||
  fail "benchmark window: ours and PyTorch's U-Nets differ: $(grep U-Net out3/bench.txt)"
echo "gpu-window test: images round-trip; window 1 stopped at step $first, its export left behind; window 2 resumed with a new warm-up on the shipped build; window 3 refused a run too large; the benchmark's table came back$([ "$torch" = 1 ] && echo ", PyTorch's rows in it, fp32 and bf16")"
