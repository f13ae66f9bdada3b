#!/usr/bin/env bash
# `make image`: the container image, from Debian's packages and PyPI alone (no registry).
#
#   1. the tools: podman, runc, mmdebstrap (installed from Debian when missing; needs root);
#   2. the base: a Debian root filesystem (python3, tini, ca-certificates, coreutils) made by
#      mmdebstrap from this machine's apt sources and imported as a local image, kept under a
#      tag that hashes everything it is made from (rebuilt when that changes or REFRESH_BASE=1);
#   3. the wheels: this project and its dependencies for CPython 3.11 on manylinux x86_64,
#      into build/image/wheels;
#   4. `podman build` of the Dockerfile on that base (installs the wheels into a venv in a
#      build stage, copies only the venv into the final stage).
#
# Environment: IMAGE (default cluster-gateway:<version>), REFRESH_BASE=1, CACHE_DIR (where the
# downloaded .deb files are kept between builds, default /var/cache/clustergateway-image).
# Prints the image's name, size and the seconds each step took.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE=${IMAGE:-cluster-gateway:$VERSION}
CACHE_DIR=${CACHE_DIR:-/var/cache/clustergateway-image}
SUITE=bookworm            # its python3 is 3.11: the wheels below are chosen for that
PY_TAG=3.11
BUILD=build/image

# This machine's sandbox has no CAP_SYS_RESOURCE, and crun refuses its hybrid cgroup layout
# (README, "Container image"): runc, with limits at or below what podman runs with.
PODMAN_RUN_OPTS=(--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

step_start=$SECONDS
step() {
  echo "image: $1 ($((SECONDS - step_start)) s so far)"
}

# 1. Tools. A failure to install is an error, never a skip.
need=()
for pkg_bin in podman:podman runc:runc mmdebstrap:mmdebstrap; do
  command -v "${pkg_bin##*:}" >/dev/null 2>&1 || need+=("${pkg_bin%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "image: need root to install: ${need[*]}" >&2; exit 1; fi
  apt-get update -qq
  # With their recommends (netavark, catatonit, ...), as verified on these machines.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
step "tools ready"

# 2. Base image from Debian's packages, cached under a content tag.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
  [ -s "$f" ] && grep -qE '^(deb |Types:)' "$f" && sources+=("$f")
done
[ ${#sources[@]} -gt 0 ] || { echo "image: no apt sources on this machine" >&2; exit 1; }
mm_opts=(
  --variant=essential
  --include=python3,tini,ca-certificates
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  # The gateway's user (uid/gid 65532, as distroless images name "nonroot").
  --customize-hook='echo "gateway:x:65532:65532:cluster-gateway:/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"'
  --customize-hook='echo "gateway:x:65532:" >> "$1/etc/group"'
)
base_key=$(printf '%s\n' "$SUITE" "${mm_opts[@]}" | cat - "${sources[@]}" | sha256sum | cut -c1-12)
BASE=localhost/cluster-gateway-base:$SUITE-$base_key
if [ "${REFRESH_BASE:-0}" = 1 ] || ! podman image exists "$BASE"; then
  mkdir -p "$CACHE_DIR/debs" "$BUILD"
  # Keep the .deb files between builds (mmdebstrap's documented sync-in/sync-out pattern).
  mmdebstrap "${mm_opts[@]}" \
    --skip=download/empty --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
    --setup-hook="sync-in $CACHE_DIR/debs /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $CACHE_DIR/debs" \
    "$SUITE" "$BUILD/base.tar" "${sources[@]}" >"$BUILD/mmdebstrap.log" 2>&1 \
    || { tail -20 "$BUILD/mmdebstrap.log" >&2; echo "image: mmdebstrap failed" >&2; exit 1; }
  podman import --quiet "$BUILD/base.tar" "$BASE" >/dev/null
  rm -f "$BUILD/base.tar"
  step "base $BASE built"
else
  step "base $BASE reused"
fi

# 3. Wheels for the image's Python, whatever Python this machine has. pip does not widen a
# --platform to the older manylinux tags that glibc 2.36 also runs, so each is listed.
platforms=()
for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_$(uname -m)"); done
platforms+=(--platform "manylinux2014_$(uname -m)" --platform "manylinux2010_$(uname -m)"
            --platform "manylinux1_$(uname -m)")
rm -rf "$BUILD/wheels"
mkdir -p "$BUILD/wheels"
"$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$BUILD/wheels" .
# ngh2 built here (scripts/ngh2-wheel.sh: libnghttp2 with the per-field header limit raised),
# for this machine's Debian, whose glibc the base shares; pip takes it from --find-links.
[ "$("$PYTHON" -c 'import sys; print(sys.version_info[:2] == (3, 11))')" = True ] \
  || { echo "image: the ngh2 wheel is built with this Python, which must be 3.11" >&2; exit 1; }
cp "$(bash scripts/ngh2-wheel.sh "$PYTHON" build/ngh2)" "$BUILD/wheels/"
"$PYTHON" -m pip download -q --dest "$BUILD/wheels" --only-binary=:all: \
  --find-links "$BUILD/wheels" --platform "linux_$(uname -m)" \
  --python-version "$PY_TAG" --implementation cp --abi "cp${PY_TAG/./}" \
  "${platforms[@]}" \
  "$BUILD"/wheels/clustergateway-*.whl pip
step "wheels ready ($(ls "$BUILD/wheels" | wc -l) files)"

# 4. The image.
podman build --pull=never "${PODMAN_RUN_OPTS[@]}" \
  --build-arg BASE="$BASE" --tag "$IMAGE" --file Dockerfile . >"$BUILD/build.log" 2>&1 \
  || { tail -30 "$BUILD/build.log" >&2; echo "image: podman build failed" >&2; exit 1; }
# Earlier builds' images and build stages, now untagged (only this Dockerfile's, by label).
podman image prune --force --filter label=io.clustergateway.image >/dev/null
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
step "built $IMAGE, $((size / 1000000)) MB"
