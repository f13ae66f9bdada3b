#!/usr/bin/env bash
# Debian packages the end-to-end tests drive for real (egress proxies, load tools, and
# golang-go, which builds the bench's Go peer for tests/e2e/test_bench_smoke.py).
# Installs only what is missing; needs root (CI and the dev machines run as root).
set -euo pipefail
need=()
for pkg_bin in tinyproxy:tinyproxy microsocks:microsocks bsdutils:script curl:curl golang-go:go; do
  pkg=${pkg_bin%%:*}; bin=${pkg_bin##*:}
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/bin/$bin" ] || [ -x "/usr/sbin/$bin" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "test-deps: need root to install: ${need[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v kubectl >/dev/null || { echo "test-deps: kubectl not found on PATH" >&2; exit 1; }
