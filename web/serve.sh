#!/usr/bin/env bash
# Builds the page in release mode and serves it with the shipped models at
# http://127.0.0.1:8080 (the README's first command). The first run installs Trunk and
# wasm-bindgen-cli and builds burn for wasm: expect 20–40 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source web/tools.sh
exec trunk serve --release "$@"
