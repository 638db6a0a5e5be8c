#!/usr/bin/env bash
# Builds the page in release mode (`trunk build --release`, into target/site) and serves it with
# the shipped models at http://127.0.0.1:8080 (the README's first command). The first run
# installs Trunk and wasm-bindgen-cli and builds burn for wasm: expect 20–40 minutes on two
# cores. A site built by an earlier run from the same sources and tools is served as it is;
# after a change the build reruns (Trunk reruns wasm-bindgen and wasm-opt on every build).
#
#   bash web/serve.sh [--port N] [--address ADDR] [--rebuild]
#
# A failed build stops here (non-zero); the site is served by Node with sirv (web/serve/; no SPA
# fallback: a missing file is a 404), not by `trunk serve`, which would build it all again.
set -euo pipefail
cd "$(dirname "$0")/.."

port=8080
address=127.0.0.1
rebuild=0
usage="usage: bash web/serve.sh [--port N] [--address ADDR] [--rebuild]"
while [ $# -gt 0 ]; do
  case "$1" in
    -p | --port) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; port="$2"; shift 2 ;;
    --port=*) port="${1#*=}"; shift ;;
    -a | --address) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; address="$2"; shift 2 ;;
    --address=*) address="${1#*=}"; shift ;;
    --rebuild) rebuild=1; shift ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) echo "serve.sh: unknown option '$1'; $usage" >&2; exit 2 ;;
  esac
done
case "$port" in
  '' | *[!0-9]*) echo "serve.sh: --port takes a number, not '$port'" >&2; exit 2 ;;
esac

# Before the build, not after it: a busy port found 20 minutes in is 20 minutes lost.
free_port='require("node:net").createServer().once("error", (e) => { console.error(e.code); process.exit(1); })
  .listen(Number(process.argv[2]), process.argv[1], function () { this.close(); });'
if ! why="$(node -e "$free_port" "$address" "$port" 2>&1)"; then
  if [ "$why" = EADDRINUSE ]; then
    echo "serve.sh: port $port is in use on $address; choose another: bash web/serve.sh --port $((port == 8080 ? 8081 : port + 1))" >&2
  else
    echo "serve.sh: cannot listen on $address:$port (${why:-unknown error}); see --address and --port" >&2
  fi
  exit 1
fi

# The server's own packages (sirv), installed from their lockfile when it changed (before the
# build: a failed install found after it would waste the build's minutes).
if [ ! -f web/serve/node_modules/.package-lock.json ] ||
  [ web/serve/package-lock.json -nt web/serve/node_modules/.package-lock.json ]; then
  npm ci --prefix web/serve --no-audit --no-fund --silent
fi

# shellcheck source=web/tools.sh disable=SC1091
source web/tools.sh

site=target/site
stamp=target/.site-release.stamp
tools="$(rustc --version) / $(trunk --version) / $(wasm-opt --version) / $(wasm-bindgen --version)"
fresh() {
  [ "$rebuild" = 0 ] && [ -f "$stamp" ] && [ -f "$site/index.html" ] || return 1
  [ "$(cat "$stamp")" = "$tools" ] || return 1
  # Another build (say a plain `trunk build`) wrote the site since.
  [ ! "$site/index.html" -nt "$stamp" ] || return 1
  # A source changed since (web/site-sources.sh, pack.sh's list too).
  local newer
  newer="$(bash web/site-sources.sh newer "$stamp")" || return 1
  [ -z "$newer" ]
}
if fresh; then
  echo "serve.sh: $site is up to date (built by an earlier run; --rebuild builds it again)" >&2
else
  rm -f "$stamp"
  trunk build --release
  bash web/check-site.sh "$site"
  printf '%s\n' "$tools" >"$stamp"
fi

exec node web/serve/serve.mjs "$site" "$address" "$port"
