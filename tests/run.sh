#!/usr/bin/env bash
# Every check and test of the project, as CI runs them. Safe to run on a fresh machine with
# Rust (rustup) installed: it adds the toolchain pieces it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null
rustup target add wasm32-unknown-unknown >/dev/null

step "a Vulkan driver for the wgpu tests (Mesa's lavapipe when there is no GPU)"
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers >/dev/null
  else
    echo "no Vulkan driver: install one (Debian: sudo apt-get install mesa-vulkan-drivers)" >&2
    exit 1
  fi
fi

step "format"
cargo fmt --all -- --check

step "clippy (native, warnings denied)"
cargo clippy --workspace --all-targets -- -D warnings

step "the core crate builds for the browser (wasm32-unknown-unknown)"
cargo check -p ddpm --target wasm32-unknown-unknown

step "tests"
cargo test --workspace
