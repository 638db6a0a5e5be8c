#!/usr/bin/env bash
# Installs what the web build needs, offline-friendly and only when missing: the wasm32 target,
# Trunk 0.21.14 (the newest that builds with rustc 1.95), wasm-bindgen-cli at exactly the
# wasm-bindgen version in Cargo.lock, and wasm-opt from binaryen 132 (npm's build, which runs on
# Node; Debian 12's binaryen 108 breaks wasm-bindgen 0.2.130's externref table). Tools go to
# $DDPM_TOOLS (default: cargo's own folder).
#
#   source web/tools.sh    # installs what is missing and puts the tools on PATH
#
# Made to be sourced: it sets no shell options and leaves nothing behind but PATH, DDPM_TOOLS and
# the function below; a failure prints one line and makes `source` return non-zero (scripts
# under `set -e` stop there).

ddpm_web_tools() {
  local repo tools bindgen_version trunk_bindgen dir
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
  tools="${DDPM_TOOLS:-${CARGO_HOME:-$HOME/.cargo}}"
  export DDPM_TOOLS="$tools"
  for dir in "$tools/bin" "$tools/binaryen/node_modules/.bin"; do
    case ":$PATH:" in
      *":$dir:"*) ;;
      *) export PATH="$dir:$PATH" ;;
    esac
  done

  # The version is written twice: Cargo.lock (the crate) and Trunk.toml (the CLI Trunk runs).
  bindgen_version="$(grep -A1 '^name = "wasm-bindgen"$' "$repo/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p')"
  trunk_bindgen="$(sed -n 's/^wasm_bindgen = "\(.*\)"$/\1/p' "$repo/Trunk.toml")"
  if [ -z "$bindgen_version" ] || [ "$bindgen_version" != "$trunk_bindgen" ]; then
    echo "web/tools.sh: Cargo.lock has wasm-bindgen '$bindgen_version' but Trunk.toml's [tools] wasm_bindgen is '$trunk_bindgen'; make them the same" >&2
    return 1
  fi

  rustup target add wasm32-unknown-unknown >/dev/null || return 1

  if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen_version" ]; then
    echo "installing wasm-bindgen-cli $bindgen_version (about 2 minutes)" >&2
    # Not --locked: its lockfile pins a dependency version that could not be fetched when this
    # was written.
    cargo install --quiet --root "$tools" wasm-bindgen-cli --version "=$bindgen_version" --force || return 1
  fi
  if [ "$(trunk --version 2>/dev/null)" != "trunk 0.21.14" ]; then
    echo "installing trunk 0.21.14 (about 10 minutes on two cores)" >&2
    cargo install --quiet --root "$tools" trunk --version "=0.21.14" --locked --force || return 1
  fi
  # Trunk.toml names this version; Trunk runs it on release builds only.
  if [ "$(wasm-opt --version 2>/dev/null)" != "wasm-opt version 132 (version_132)" ]; then
    echo "installing wasm-opt (binaryen 132, from npm)" >&2
    npm install --prefix "$tools/binaryen" --no-save --no-audit --no-fund --silent binaryen@132.0.0 || return 1
  fi
}

ddpm_web_tools
