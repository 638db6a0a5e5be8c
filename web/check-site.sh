#!/usr/bin/env bash
# Checks that a built site holds each wasm module beside its own JavaScript: the WebGPU build at
# the top (it imports `requestAdapter`) and the CPU build in cpu/ (it does not). The two are
# built one after the other (web/cpu-build.sh); a site built before that, when Trunk built them at
# once and they could swap, or assembled by hand, would show a wrong module only at run time.
#
#   bash web/check-site.sh SITE_DIR
set -euo pipefail
site="${1:?usage: bash web/check-site.sh SITE_DIR}"
for file in ddpm-web.js ddpm-web_bg.wasm cpu/ddpm-web.js cpu/ddpm-web_bg.wasm; do
  [ -s "$site/$file" ] || { echo "check-site: $site/$file is missing or empty" >&2; exit 1; }
done
for file in ddpm-web.js ddpm-web_bg.wasm; do
  if ! grep -aq requestAdapter "$site/$file" || grep -aq requestAdapter "$site/cpu/$file"; then
    echo "check-site: $site holds the wrong module in $file or cpu/$file; build it again" >&2
    exit 1
  fi
done
