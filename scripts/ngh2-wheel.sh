#!/usr/bin/env bash
# The ngh2 wheel the gateway's HTTP/2 listener runs on (clustergateway.fence.h2engine_ngh2):
# ngh2's own sdist, built here with libnghttp2's per-field HPACK limit raised.
#
# Why: libnghttp2 refuses any single header field longer than NGHTTP2_HD_MAX_NV (64 KiB),
# a compile-time constant, as a connection-level COMPRESSION_ERROR.  Behind the
# kube-aggregator that ends every stream of a pooled connection when one caller sends a
# long field (kubectl with a 100 KiB label selector), where Go's apiserver, and this
# gateway's pure-Python engine, take fields up to the 1 MiB header list.  Raised to
# 16 MiB, the constant stops being the bound: a field then stays within its header
# block, which libnghttp2 bounds by the CONTINUATION count (64, as h2) times the frame
# size we advertise, and the decoded list within the header list size we advertise and
# enforce (max_inbound_header_list_size): the same bounds as the pure-Python engine.
#
# The sdist is fetched by version and checked against its sha256; the wheel carries a
# local version label (0.3.0+nv16m) so `pip show ngh2` tells it apart from PyPI's wheel,
# which the gateway detects at start and refuses to use (server.h2engine).
#
# Usage: scripts/ngh2-wheel.sh PYTHON OUTDIR — prints the wheel's path; reuses a wheel
# already in OUTDIR for the same Python.
set -euo pipefail
PYTHON=${1:?python}
OUT=${2:?outdir}
VERSION=0.3.0
SHA256=09b995aa65b8a397de652fd7a9b3877d6d1e24c10d2effc36204a3f37aa73440
LABEL=nv16m
MAX_NV=16777216

tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
mkdir -p "$OUT"
for wheel in "$OUT"/ngh2-"$VERSION"+"$LABEL"-"$tag"-*.whl; do
  if [ -f "$wheel" ]; then echo "$wheel"; exit 0; fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip download -q --no-deps --no-binary :all: -d "$work" "ngh2==$VERSION" >&2
sdist="$work/ngh2-$VERSION.tar.gz"
echo "$SHA256  $sdist" | sha256sum -c --quiet - >&2
tar xzf "$sdist" -C "$work"
src="$work/ngh2-$VERSION"
header="$src/vendor/nghttp2/lib/nghttp2_hd.h"
grep -q '^#define NGHTTP2_HD_MAX_NV 65536$' "$header" \
  || { echo "ngh2-wheel: NGHTTP2_HD_MAX_NV not found as expected in $header" >&2; exit 1; }
sed -i "s/^#define NGHTTP2_HD_MAX_NV 65536\$/#define NGHTTP2_HD_MAX_NV $MAX_NV/" "$header"
sed -i "s/^__version__ = \"$VERSION\"\$/__version__ = \"$VERSION+$LABEL\"/" "$src/src/ngh2/_version.py"
grep -q "+$LABEL" "$src/src/ngh2/_version.py" \
  || { echo "ngh2-wheel: could not label the version" >&2; exit 1; }
"$PYTHON" -m pip wheel -q --no-deps -w "$work/out" "$src" >&2
wheel=$(ls "$work"/out/ngh2-*.whl)
mv "$wheel" "$OUT/"
echo "$OUT/$(basename "$wheel")"
