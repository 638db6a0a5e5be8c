#!/usr/bin/env bash
# What a built site is made from, in one list for web/serve.sh and web/pack.sh, which each refuse
# or rebuild a site older than its sources (two lists drifted apart once, and CI failed on it).
#
#   bash web/site-sources.sh newer REF [ROOT]   # the first source newer than REF, or nothing
#
# Sources: the workspace's manifests and lock, Trunk.toml, the two crates (the core's benches,
# examples and tests aside), web/, www/models and www/docs (copied into the site whole),
# patches/ and the toolchain's settings. Not sources: web/'s scripts but the pre-build hook
# (cpu-build.sh), which are run, not built; Markdown outside www/docs; web/npm/ (read by pack.sh
# alone); web/serve/ (the server and its npm packages).
set -euo pipefail
if [ "${1:-}" != newer ] || [ $# -lt 2 ]; then
  echo "usage: bash web/site-sources.sh newer REF [ROOT]" >&2
  exit 2
fi
ref="$(realpath "$2")"
[ -e "$ref" ] || { echo "site-sources: $2 does not exist" >&2; exit 2; }
cd "${3:-$(dirname "$0")/..}"
sources=(Cargo.toml Cargo.lock Trunk.toml crates/ddpm/Cargo.toml crates/ddpm/src crates/ddpm-web
  web www/models www/docs patches .cargo rust-toolchain rust-toolchain.toml)
present=()
for source in "${sources[@]}"; do [ -e "$source" ] && present+=("$source"); done
[ ${#present[@]} -gt 0 ] || exit 0
find "${present[@]}" -type f -newer "$ref" \
  ! -path 'web/npm/*' ! -path 'web/serve/*' ! \( -name '*.md' ! -path 'www/docs/*' \) \
  \( ! -path 'web/*.sh' -o -path web/cpu-build.sh \) -print -quit
