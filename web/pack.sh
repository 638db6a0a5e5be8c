#!/usr/bin/env bash
# Packs the widget as the npm package `ddpm-sampler` (web/npm/package.json) from a built site:
# the custom element, its modules, its worker, the two wasm modules (WebGPU, CPU) and their
# glue; no models.
#
#   bash web/pack.sh [SITE_DIR] [OUT_DIR]    # defaults: target/site-release, target/npm
#
# Build the site first (`trunk build --release --dist target/site-release`); the tarball lands
# in OUT_DIR as ddpm-sampler-VERSION.tgz, ready for `npm publish` or `npm install FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."
site="${1:-target/site-release}"
out="$(mkdir -p "${2:-target/npm}" && cd "${2:-target/npm}" && pwd)"
# The package's version is the workspace's.
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
packaged="$(node -p 'require("./web/npm/package.json").version')"
[ "$version" = "$packaged" ] || { echo "pack: web/npm/package.json has version $packaged, Cargo.toml $version" >&2; exit 1; }
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp web/npm/package.json web/npm/README.md "$stage/"
for file in $(node -p 'require("./web/npm/package.json").files.join("\n")'); do
  [ -f "$site/$file" ] || { echo "pack: $site/$file is missing (build the site first)" >&2; exit 1; }
  mkdir -p "$stage/$(dirname "$file")"
  cp "$site/$file" "$stage/$file"
done
npm pack --silent --pack-destination "$out" "$stage" | sed "s|^|$out/|"
