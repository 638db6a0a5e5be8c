#!/usr/bin/env bash
# Installs what the web build needs, offline-friendly and only when missing: the wasm32 target,
# Trunk 0.21.14 (the newest that builds with rustc 1.95), wasm-bindgen-cli at exactly the
# wasm-bindgen version in Cargo.lock, and wasm-opt from binaryen 132 (npm's build, which runs on
# Node; Debian 12's binaryen 108 breaks wasm-bindgen 0.2.130's externref table). Tools go to
# $DDPM_TOOLS (default: cargo's own folder); source this file to get them on PATH.
set -euo pipefail

DDPM_TOOLS="${DDPM_TOOLS:-${CARGO_HOME:-$HOME/.cargo}}"
export PATH="$DDPM_TOOLS/binaryen/node_modules/.bin:$DDPM_TOOLS/bin:$PATH"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

rustup target add wasm32-unknown-unknown >/dev/null

bindgen_version="$(grep -A1 '^name = "wasm-bindgen"$' "$repo/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p')"
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen_version" ]; then
  echo "installing wasm-bindgen-cli $bindgen_version (about 2 minutes)" >&2
  # Not --locked: its lockfile pins a dependency version that could not be fetched when this
  # was written.
  cargo install --quiet --root "$DDPM_TOOLS" wasm-bindgen-cli --version "=$bindgen_version" --force
fi
if [ "$(trunk --version 2>/dev/null)" != "trunk 0.21.14" ]; then
  echo "installing trunk 0.21.14 (about 10 minutes on two cores)" >&2
  cargo install --quiet --root "$DDPM_TOOLS" trunk --version "=0.21.14" --locked --force
fi
# Trunk.toml names this version; Trunk runs it on release builds only.
if [ "$(wasm-opt --version 2>/dev/null)" != "wasm-opt version 132 (version_132)" ]; then
  echo "installing wasm-opt (binaryen 132, from npm)" >&2
  npm install --prefix "$DDPM_TOOLS/binaryen" --no-save --no-audit --no-fund --silent binaryen@132.0.0
fi
