#!/usr/bin/env bash
# install-deps.sh: installs the Debian packages spindle builds, tests and
# benchmarks with (docs/decisions/0002-dependencies.md says why each one).
#   scripts/install-deps.sh           # build and test
#   scripts/install-deps.sh --bench   # and the benchmarks' peers
# Idempotent: when everything is installed it only checks and exits, without
# apt-get update. Needs no stdin. Uses sudo only when not already root.
set -euo pipefail

packages=(
  cmake
  ninja-build
  g++
  pkg-config
  libboost-context-dev   # fiber context switching (runtime/src/context.cpp)
  libboost-fiber-dev     # the peer the benchmarks compare against
  libboost-dev           # header-only Boost (Beast, for HTTP in io/)
  libuv1-dev             # I/O readiness and timers; found through pkg-config
  libbenchmark-dev       # Google Benchmark (bench/)
  catch2                 # Catch2 v2 (tests/)
  nlohmann-json3-dev     # JSON for http (docs/decisions/0008-http.md)
  libssl-dev             # OpenSSL 3: io::TlsStream, https (docs/decisions/0010-tls.md)
  libnghttp2-dev         # HTTP/2 (docs/decisions/0019-http2.md)
  nghttp2-client         # nghttp and h2load: the HTTP/2 interop tests' peers
  curl                   # the HTTP/2 interop tests' other peer (curl --http2)
  nghttp2-server         # nghttpd (a binary, no service): the HTTP/2 client's interop peer
  openssl                # the openssl command: examples/https_get.cpp makes its certificate
  clang                  # the fuzz preset only (libFuzzer), built by scripts/test.sh (fuzzed on request)
  libclang-rt-dev        # clang's libFuzzer and sanitizer runtimes (clang only recommends them)
)
# --bench: also the peers and load generators of the benchmarks (not needed
# to build or test; kept off the test path so a package's install scripts,
# nginx's above all, cannot fail a test run).
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(
    python3              # the asyncio peer of bench/process (asyncio_spawn.py)
    wrk                  # HTTP load generator (bench/http/run.sh)
    nginx-light          # the nginx peer of the http_hello benchmark
    python3-websockets   # the Python peer of the WebSocket echo figure (bench/ws/ws_echo_peer.py)
    python3-aiohttp      # the Python peer of the http client figure (bench/http/aiohttp_client_peer.py)
    h2o                  # the HTTP/2 peer of bench/http2/run.sh
  )
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [[ "$(id -u)" != 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: not root and no sudo; install these yourself: ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
echo "install-deps: done"
