#!/usr/bin/env bash
# Every check and test of the project, as CI runs them. Safe to run on a fresh machine with
# Rust (rustup) and Node installed: it adds the toolchain pieces it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null
rustup target add wasm32-unknown-unknown >/dev/null

step "system packages: a Vulkan driver (Mesa's lavapipe without a GPU), Chromium, Pillow, xz"
missing=()
ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
command -v chromium >/dev/null || missing+=(chromium)
/usr/bin/python3 -c 'import PIL' 2>/dev/null || missing+=(python3-pil)
command -v xz >/dev/null || missing+=(xz-utils)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

step "web tools: Trunk, wasm-bindgen-cli and wasm-opt (installed once)"
source web/tools.sh

step "format"
cargo fmt --all -- --check

# ddpm-web compiles natively too, so this also enforces its clippy.toml: no synchronous tensor
# read-back in the browser crate.
step "clippy (native, warnings denied)"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
cargo test --workspace

step "the GPU window's tools, on the CPU (tests/gpu-window.sh)"
PYTHON=/usr/bin/python3 bash tests/gpu-window.sh "${CARGO_TARGET_DIR:-$PWD/target}/debug/ddpm"

step "the site (trunk build: target/site)"
trunk build

step "browser tests (headless Chromium: WebGPU on SwiftShader, and the CPU fallback)"
npm ci --prefix tests/browser --no-audit --no-fund --silent
DDPM_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/ddpm" npm test --prefix tests/browser
