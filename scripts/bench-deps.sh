#!/usr/bin/env bash
# Installs what `make bench` needs beyond scripts/deps.sh on a Debian 12
# machine: the peers it is compared with and the chart tool. Only packages
# that are missing are installed; nothing is downloaded from anywhere but
# Debian's archive. Safe to run again and again.
#
# shadowsocks-libev ships a system service (ss-server with
# /etc/shadowsocks-libev/config.json). The bench starts its own ss-server and
# ss-local on loopback, so the system one is never started here, is disabled
# when an init system is there to disable it, and is stopped if something
# started it anyway.
set -euo pipefail

pkgs=(
  shadowsocks-libev                   # ss-server, ss-local: the peer to beat
  gnuplot-nox                         # build/bench/chart.png
  valgrind                            # scripts/bench/callgrind.sh
  python3                             # scripts/bench/run drives the bench
)

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "bench-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # shadowsocks-libev's package ships a service; never let apt start a daemon here.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The system ss-server: disabled, and not running. Each step is a no-op where
# there is no systemd / sysvinit or the service is already off.
if dpkg-query -W -f='${Status}' shadowsocks-libev 2>/dev/null | grep -q "install ok installed"; then
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    for unit in shadowsocks-libev.service; do
      if systemctl is-enabled --quiet "$unit" 2>/dev/null || systemctl is-active --quiet "$unit" 2>/dev/null; then
        $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
      fi
    done
  fi
  if [ -x /etc/init.d/shadowsocks-libev ] && command -v update-rc.d >/dev/null 2>&1; then
    $SUDO update-rc.d shadowsocks-libev disable >/dev/null 2>&1 || true
  fi
  # A system ss-server is one whose command line names the package's config
  # directory (the bench's own use /tmp); stop those by PID, nothing else.
  for pid in $(pgrep -x ss-server 2>/dev/null || true); do
    if tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | grep -q '/etc/shadowsocks-libev'; then
      echo "bench-deps: stopping the system ss-server (pid $pid)" >&2
      $SUDO kill "$pid" 2>/dev/null || true
    fi
  done
fi
