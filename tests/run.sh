#!/usr/bin/env bash
# Every check and test of the project, as CI runs them. Safe to run on a fresh machine with
# Rust (rustup) and Node 20.19+ installed: it adds the toolchain pieces it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Vite 8 (rolldown) needs Node ^20.19 or 22.12+ (`node --test-timeout` 20.11+); Debian 12's
# nodejs is 18.
node_version="$(node --version 2>/dev/null || true)"
IFS=. read -r node_major node_minor _ <<<"${node_version#v}"
if ! [[ "$node_major" =~ ^[0-9]+$ && "$node_minor" =~ ^[0-9]+$ ]] ||
  ! (((node_major == 20 && node_minor >= 19) || (node_major == 22 && node_minor >= 12) || node_major >= 23)); then
  echo "tests/run.sh: needs Node 20.19+ or 22.12+ (vite 8); found ${node_version:-none on PATH}" >&2
  exit 1
fi

# A temporary folder of this run's own (the browser tests' models and throwaway projects,
# Chromium's profiles), removed however the run ends.
tmp="$(mktemp -d "${TMPDIR:-/tmp}/ddpm-run.XXXXXX")"
trap 'rm -rf -- "$tmp"' EXIT
trap 'exit 130' INT TERM
export TMPDIR="$tmp"

step "toolchain components"
rustup component add rustfmt clippy >/dev/null
rustup target add wasm32-unknown-unknown >/dev/null

step "system packages: a C compiler, a Vulkan driver (Mesa's lavapipe without a GPU), Chromium, Pillow, xz"
missing=()
# cargo links with cc (the workspace, and `cargo install trunk`).
printf 'int main(void) { return 0; }\n' >"$tmp/cc-check.c"
cc "$tmp/cc-check.c" -o "$tmp/cc-check" 2>/dev/null || missing+=(gcc libc6-dev)
ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
# The browser tests launch $CHROMIUM; without one, the `chromium` on PATH.
[ -n "${CHROMIUM:-}" ] || command -v chromium >/dev/null || missing+=(chromium)
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
CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
export CHROMIUM

step "web tools: Trunk, wasm-bindgen-cli and wasm-opt (installed once)"
# shellcheck source=web/tools.sh disable=SC1091
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

step "what a built site is made from (tests/site-sources.sh: serve.sh's and pack.sh's one list)"
bash tests/site-sources.sh

# The site as web/serve.sh serves it and web/pack.sh packs it: the browser tests run what ships
# (a second site in the dev profile, for the tests alone, took 27 more minutes to build cold).
step "the release site (trunk build --release: target/site-release)"
trunk build --release --dist target/site-release
bash web/check-site.sh target/site-release

export DDPM_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/ddpm"
npm ci --prefix tests/browser --no-audit --no-fund --silent
# serve.test.mjs runs web/serve.sh's server (sirv) on that site.
npm ci --prefix web/serve --no-audit --no-fund --silent

step "browser tests on the release site (headless Chromium: WebGPU on SwiftShader, the CPU fallback, the npm package bundled by Vite)"
tests=()
for file in tests/browser/*.test.mjs; do tests+=("${file#tests/browser/}"); done
DDPM_SITE="$PWD/target/site-release" npm test --prefix tests/browser -- "${tests[@]}"
