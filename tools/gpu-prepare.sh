#!/usr/bin/env bash
# Everything a GPU window carries (tools/gpu-window.sh), prepared here, and whether it fits:
#   .gpu/  ddpm-<features>.xz (release builds, stripped, xz'd) and manifest.txt (commit,
#          features, sha256); put images.xz, an earlier window's run.tar.xz.* or model.bpk
#          there by hand
#   .whl/  lucidrains' packages as wheels (the device's image has torch, not these)
#   .gl/   the Vulkan loader's .debs (the device README's list)
# Then it prints the payload, the working tree that travels (tracked and untracked files git
# does not ignore) plus every carried file, and fails above the 64 MiB a window takes.
#
#   bash tools/gpu-prepare.sh [--no-build | --payload] [BUILD...]
#
# BUILD: the CLI's cargo features joined by '-'; `wgpu` is the default build, any other adds
# its features to it. Default: wgpu fusion-persistence-vulkan. The CLI's features are wgpu,
# fusion (burn/fusion and ddpm/fusion together: burn/fusion alone does not compile with the
# core's GPU kernels), persistence, vulkan (with the workspace's patched cubecl-spirv) and cuda
# (does not build offline: cubecl downloads LLVM). A build takes 15–20 min on 2 cores; each one
# is copied out of target/release before the next overwrites it (cargo keeps every feature
# set's artifacts, so a rebuild after a switch is short).
# --no-build keeps .gpu's binaries and fetches what is missing; --payload only prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=build
case "${1:-}" in --no-build) mode=fetch && shift ;; --payload) mode=payload && shift ;; esac
builds=("$@")
[ ${#builds[@]} -gt 0 ] || builds=(wgpu fusion-persistence-vulkan)

if [ "$mode" != payload ]; then
  exclude="$(git rev-parse --git-path info/exclude)"
  mkdir -p .gpu .whl .gl "$(dirname "$exclude")"
  for d in .gpu .whl .gl; do grep -qx "/$d/" "$exclude" 2>/dev/null || echo "/$d/" >>"$exclude"; done
fi

if [ "$mode" = build ]; then
  commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo +uncommitted)"
  for b in "${builds[@]}"; do
    features="${b//-/,}"
    [ "$b" = wgpu ] && features=""
    cargo build --release -p ddpm-cli ${features:+--features "$features"}
    tmp="$(mktemp -d)"
    strip -o "$tmp/ddpm" target/release/ddpm
    # xz's x86 filter (relative branch targets) often shrinks machine code: keep the smaller.
    xz -9e -T0 -c "$tmp/ddpm" >"$tmp/plain.xz"
    xz --x86 --lzma2=preset=9e -T0 -c "$tmp/ddpm" >"$tmp/x86.xz"
    small="$tmp/plain.xz"
    [ "$(stat -c %s "$tmp/x86.xz")" -lt "$(stat -c %s "$small")" ] && small="$tmp/x86.xz"
    mv "$small" ".gpu/ddpm-$b.xz"
    touch .gpu/manifest.txt
    grep -v "^ddpm-$b.xz:" .gpu/manifest.txt >"$tmp/manifest" || true
    echo "ddpm-$b.xz: commit $commit, cargo build --release -p ddpm-cli${features:+ --features $features}, sha256 $(sha256sum "$tmp/ddpm" | cut -c1-64), $(stat -c %s "$tmp/ddpm") bytes stripped, $(stat -c %s ".gpu/ddpm-$b.xz") xz'd ($(basename "$small" .xz)), $(date -u +%F)" >>"$tmp/manifest"
    mv "$tmp/manifest" .gpu/manifest.txt
    rm -rf "$tmp"
  done
fi

if [ "$mode" != payload ]; then
  # Wheels for the device's Python 3.12 (device README); the rest of their needs is there.
  if ! compgen -G ".whl/denoising_diffusion_pytorch-2.3.1-*.whl" >/dev/null; then
    "${PIP_PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl denoising-diffusion-pytorch==2.3.1 \
      ema-pytorch==0.8.3 pytorch-fid==0.3.0
  fi
  if ! compgen -G ".gl/libvulkan1_*.deb" >/dev/null; then
    o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    mkdir -p /tmp/amd64/partial
    apt-get "${o[@]}" -qq update
    (cd .gl && apt-get "${o[@]}" -qq download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  fi
fi

# The payload: the working tree that travels, then each carried file.
limit=$((64 * 1024 * 1024))
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$tree
printf '%12d  the working tree (tracked and untracked-not-ignored files)\n' "$tree"
for f in .gpu/* .whl/* .gl/*; do
  [ -f "$f" ] || continue
  size=$(stat -c %s "$f")
  total=$((total + size))
  printf '%12d  %s\n' "$size" "$f"
done
awk -v t="$total" 'BEGIN { printf "%12d  in all: %.1f MiB of 64 MiB (%.1f MB)\n", t, t / 1048576, t / 1e6 }'
if [ "$total" -gt "$limit" ]; then
  echo "gpu-prepare: $((total - limit)) bytes too many for a window: carry fewer builds, pack the images (tools/images-pack.py), or the run without Adam's moments (PACK_OPTIMIZER=0)" >&2
  exit 1
fi
cat <<'EOF'
The window (device tool `run`, carry [".gpu", ".whl", ".gl"], timeout_s 600):
  for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site; BENCH=1 bash tools/gpu-window.sh .gpu $OUT
(a benchmark-only window; with TRAIN="…" or a run in .gpu it also trains: tools/gpu-window.sh)
EOF
