#!/usr/bin/env bash
# Packs the widget as the npm package `ddpm-sampler` (web/npm/package.json) from a built site:
# the custom element, its modules, its worker, the two wasm modules (WebGPU, CPU) and their
# glue, and the licence texts; no models.
#
#   bash web/pack.sh [SITE_DIR] [OUT_DIR]    # defaults: target/site-release, target/npm
#
# Build the site first (`trunk build --release --dist target/site-release`); the tarball lands
# in OUT_DIR as ddpm-sampler-VERSION.tgz, ready for `npm publish` or `npm install FILE`. Paths
# given are taken from the current folder, the defaults from the repository's root. A site
# older than its sources (web/site-sources.sh) is refused.
set -euo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."
from_caller() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$caller/$1" ;; esac; }
site="target/site-release"
[ $# -ge 1 ] && site="$(from_caller "$1")"
out="target/npm"
[ $# -ge 2 ] && out="$(from_caller "$2")"
[ -d "$site" ] || { echo "pack: no site at $site (build it first: source web/tools.sh && trunk build --release --dist target/site-release)" >&2; exit 1; }
# The package's version is the workspace's.
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
packaged="$(node -p 'require("./web/npm/package.json").version')"
[ "$version" = "$packaged" ] || { echo "pack: web/npm/package.json has version $packaged, Cargo.toml $version" >&2; exit 1; }
files="$(node -p 'require("./web/npm/package.json").files.join("\n")')"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp web/npm/package.json web/npm/README.md "$stage/"
oldest=""
for file in $files; do
  case "$file" in
    # The licence texts come from the repository's root, everything else from the site.
    LICENSE-*) cp "$file" "$stage/$file"; continue ;;
  esac
  [ -f "$site/$file" ] || { echo "pack: $site/$file is missing (build the site first)" >&2; exit 1; }
  mkdir -p "$stage/$(dirname "$file")"
  cp "$site/$file" "$stage/$file"
  if [ -z "$oldest" ] || [ "$site/$file" -ot "$oldest" ]; then oldest="$site/$file"; fi
done
# Trunk writes every file of a build at or after its start: a source newer than the oldest of
# them changed after that build began (web/site-sources.sh, serve.sh's list too).
newer="$(bash web/site-sources.sh newer "$oldest")"
if [ -n "$newer" ]; then
  echo "pack: $site is older than $newer; rebuild it (source web/tools.sh && trunk build --release --dist $site)" >&2
  exit 1
fi
bash web/check-site.sh "$site"
out="$(mkdir -p "$out" && cd "$out" && pwd)"
npm pack --silent --pack-destination "$out" "$stage" | sed "s|^|$out/|"
