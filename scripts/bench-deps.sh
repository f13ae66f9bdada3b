#!/usr/bin/env bash
# What `make bench` / `python -m bench` needs beyond the test environment:
#   Debian: wrk (HTTP/1.1 load generator), nghttp2-client (h2load: HTTP/2), nginx-light (fixed fast upstream; its http_v2 and ssl
#   modules), util-linux's taskset (CPU pinning; normally present), golang-go (builds the Go peer,
#   bench/goproxy, into bench/goproxy/bin/: standard library only, no module is fetched);
#   PyPI (the `bench` extra): matplotlib (plots), py-spy (the gateway profile).
# Installs only what is missing; apt needs root (CI and the dev machines run as root).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v go >/dev/null 2>&1 || need+=(golang-go)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "bench-deps: need root to install: ${need[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# nginx-light does not start a service by itself in a container; a running system
# nginx would not disturb the bench (it picks free loopback ports) but costs CPU.
"$python" -c 'import matplotlib' 2>/dev/null \
  && [ -x "$(dirname "$python")/py-spy" ] \
  || "$python" -m pip install -q -e "$here[bench]"
command -v kubectl >/dev/null || { echo "bench-deps: kubectl not found on PATH" >&2; exit 1; }
(cd "$here" && "$python" -c 'from bench.topology import build_goproxy; print("bench-deps: built", build_goproxy())')
