#!/usr/bin/env bash
# Installs what luaray needs to build and test on a fresh Debian 12 machine.
# Only packages that are missing are installed; nothing is downloaded from
# anywhere but Debian's archive. Safe to run again and again.
set -euo pipefail

pkgs=(
  build-essential pkg-config          # compiler, make, pkg-config
  libev-dev                           # the event loop
  libssl-dev                          # OpenSSL EVP: every cipher and hash
  libsodium-dev                       # randomness, constant-time compare, wiping
  libluajit-5.1-dev luajit            # scripting, FFI
  libc-ares-dev                       # non-blocking DNS for the direct outbound
  libnghttp2-dev                      # HTTP/2 for the gRPC transport and the v2ray API
  protobuf-c-compiler libprotobuf-c-dev  # the v2ray API's messages: protoc-c at build time, libprotobuf-c
  lua-busted lua-cjson                # specs (run on LuaJIT), JSON vectors
  lua-socket lua-posix                # end-to-end specs: sockets, processes
  v2ray                               # the interoperability oracle
  haproxy                             # a real PROXY protocol sender (proxy_protocol_spec)
  nginx-light                         # a real reverse proxy in front (ws_spec, grpc_spec, wss_spec)
  caddy                               # the README's Caddy snippet, run for real (caddy_spec)
  prometheus                          # a real Prometheus scraping /metrics, and promtool (metrics_spec)
  curl python3                        # end-to-end helpers
  groff-base                          # install_spec: the man page linted with groff -ww
  openssl                             # e2e: test certificates (tls_spec)
  python3-h2                          # the independent gRPC (gun) peer in spec/e2e/grpc_spec.lua
  python3-grpcio                      # an independent gRPC client of the v2ray API (api_spec)
  python3-cryptography                # the independent XUDP/VMessAEAD test peer (xudp_spec)
  clang libclang-rt-14-dev            # libFuzzer (make fuzz); replays use gcc
  libpcre2-dev                        # routing: regexp: domain rules (PCRE2, JIT)
  libmaxminddb-dev                    # routing: geoip from MaxMind .mmdb files
  nftables iptables iproute2          # tproxy/redirect inbounds in a test-made network namespace (transparent_spec)
  libhiredis-dev                      # luaray.cluster: the Redis client (libev adapter)
  redis-server redis-tools            # fleet_spec: a real Redis the nodes share
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
# v2ray's package ships a systemd unit; never let apt start a daemon here.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
