#!/usr/bin/env bash
# Installs what the web build needs, offline-friendly and only when missing: the wasm32 target,
# Trunk 0.21.14 (the newest that builds with rustc 1.95), wasm-bindgen-cli at exactly the
# wasm-bindgen version in Cargo.lock, and Debian's wasm-opt (binaryen) when this is Debian and
# we are root. Tools go to $DDPM_TOOLS/bin (default: cargo's own bin folder); source this file
# to get them on PATH.
set -euo pipefail

DDPM_TOOLS="${DDPM_TOOLS:-${CARGO_HOME:-$HOME/.cargo}}"
export PATH="$DDPM_TOOLS/bin:$PATH"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

rustup target add wasm32-unknown-unknown >/dev/null

bindgen_version="$(grep -A1 '^name = "wasm-bindgen"$' "$repo/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p')"
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen_version" ]; then
  echo "installing wasm-bindgen-cli $bindgen_version (about 2 minutes)" >&2
  # Not --locked: one of its locked dependency versions is not in the registry mirror.
  cargo install --quiet --root "$DDPM_TOOLS" wasm-bindgen-cli --version "=$bindgen_version" --force
fi
if [ "$(trunk --version 2>/dev/null)" != "trunk 0.21.14" ]; then
  echo "installing trunk 0.21.14 (about 10 minutes on two cores)" >&2
  cargo install --quiet --root "$DDPM_TOOLS" trunk --version "=0.21.14" --locked --force
fi
if ! command -v wasm-opt >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null
  else
    echo "note: no wasm-opt (Debian: apt-get install binaryen); release builds stay larger" >&2
  fi
fi
