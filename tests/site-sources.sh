#!/usr/bin/env bash
# web/site-sources.sh, the one list of what a built site is made from (serve.sh rebuilds and
# pack.sh refuses a site older than any of them), on a throwaway tree: each file below is made
# newer than the site in turn, and must count or not as listed. Seconds; part of tests/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
tree="$(mktemp -d)"
trap 'rm -rf -- "$tree"' EXIT
counted=(Cargo.toml Cargo.lock Trunk.toml crates/ddpm/Cargo.toml crates/ddpm/src/lib.rs
  crates/ddpm-web/src/run.rs web/app.js web/index.html web/cpu-build.sh www/models/mnist.json
  www/docs/mdbook.md www/docs/example.html patches/cubecl-spirv/src/lib.rs .cargo/config.toml
  rust-toolchain.toml)
ignored=(web/pack.sh web/serve.sh web/README.md web/npm/package.json web/serve/serve.mjs
  web/serve/node_modules/sirv/build.js www/README.md crates/ddpm/benches/gpu.sh
  crates/ddpm/tests/parity.rs crates/ddpm/README.md patches/README.md crates/ddpm-cli/src/main.rs
  docs/cli.md tests/run.sh)
for file in "${counted[@]}" "${ignored[@]}"; do
  mkdir -p "$tree/$(dirname "$file")"
  touch -d '2026-01-01 00:00' "$tree/$file"
done
touch -d '2026-01-02 00:00' "$tree/site"
fail() { echo "tests/site-sources.sh: $*" >&2; exit 1; }
newer() { bash web/site-sources.sh newer "$tree/site" "$tree"; }
[ -z "$(newer)" ] || fail "a tree older than its site has a newer source: $(newer)"
for file in "${counted[@]}"; do
  touch -d '2026-01-03 00:00' "$tree/$file"
  [ "$(newer)" = "$file" ] || fail "$file changed after the site but counts as '$(newer)'"
  touch -d '2026-01-01 00:00' "$tree/$file"
done
for file in "${ignored[@]}"; do
  touch -d '2026-01-03 00:00' "$tree/$file"
  [ -z "$(newer)" ] || fail "$file is not a source of the site but counts as '$(newer)'"
done
# A missing reference is an error, never an empty answer (serve.sh would serve a stale site).
if out="$(bash web/site-sources.sh newer "$tree/no-such-stamp" "$tree" 2>&1)"; then
  fail "a missing reference passed: '$out'"
fi
[[ "$out" == *"no-such-stamp does not exist"* ]] || fail "a missing reference said '$out'"
echo "site-sources: ${#counted[@]} sources counted, ${#ignored[@]} other files not"
