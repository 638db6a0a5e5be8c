#!/usr/bin/env bash
# Trunk's pre-build hook (Trunk.toml): builds the CPU fallback (web/cpu.html) into the cpu/
# folder of the site being built, before Trunk builds the page itself. Trunk 0.21.14 builds a
# page's wasm crates at the same time and names wasm-bindgen's and wasm-opt's intermediate files
# after the crate, so two builds of the same crate in one page wrote the same files and could swap
# the modules; built one after the other, they cannot.
set -euo pipefail
# The nested build reads the same Trunk.toml, so it runs this hook too.
case "${TRUNK_HTML_FILE:?web/cpu-build.sh is run by Trunk (a pre-build hook)}" in
  */cpu.html) exit 0 ;;
esac
release=()
if [ "${TRUNK_PROFILE:-debug}" = release ]; then release=(--release); fi
out="$TRUNK_STAGING_DIR/cpu"
trunk build "${release[@]}" --dist "$out" web/cpu.html
# Trunk writes the (empty) page too; the site has no use for it.
rm -f "$out/index.html"
