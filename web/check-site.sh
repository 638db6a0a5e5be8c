#!/usr/bin/env bash
# Checks that a built site holds each wasm module beside its own JavaScript: the WebGPU build at
# the top (it imports `requestAdapter`) and the CPU build in cpu/ (it does not). Trunk 0.21.14
# builds both from the same crate at the same time and names wasm-bindgen's and wasm-opt's
# outputs after the crate, so the two builds write the same intermediate files; a build in which
# they raced would swap or mix the modules, which the page would only show at run time.
#
#   bash web/check-site.sh SITE_DIR
set -euo pipefail
site="${1:?usage: bash web/check-site.sh SITE_DIR}"
for file in ddpm-web.js ddpm-web_bg.wasm cpu/ddpm-web.js cpu/ddpm-web_bg.wasm; do
  [ -s "$site/$file" ] || { echo "check-site: $site/$file is missing or empty" >&2; exit 1; }
done
for file in ddpm-web.js ddpm-web_bg.wasm; do
  if ! grep -aq requestAdapter "$site/$file" || grep -aq requestAdapter "$site/cpu/$file"; then
    echo "check-site: $site holds the wrong module in $file or cpu/$file (Trunk's two builds raced); build it again" >&2
    exit 1
  fi
done
