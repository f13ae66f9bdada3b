#!/bin/sh
# The Go image's entry paths, kept so that charts which set `command:` keep working:
#   /apiserver ARGS  ->  cluster-gateway ARGS        (the gateway)
#   /patch ARGS      ->  cluster-gateway patch ARGS  (writes the APIService caBundle)
#   /addon-manager ARGS -> cluster-gateway-addon-manager ARGS (the Go addon-manager image's
#                          entry path: its chart sets only `args`, so it needs `command:`
#                          /addon-manager with this image)
# Both are symlinks to this script. Kubernetes' `command:` replaces the image's entrypoint, so
# this script may be PID 1: then tini goes in front, to forward SIGTERM to the gateway and to
# reap the orphans that exec credential plugins can leave behind.
set -eu
gateway=/opt/cluster-gateway/bin/cluster-gateway
case "${0##*/}" in
  patch) set -- patch "$@" ;;
  addon-manager) gateway=/opt/cluster-gateway/bin/cluster-gateway-addon-manager ;;
  *) ;;
esac
if [ "$$" -eq 1 ]; then
  exec /usr/bin/tini -- "$gateway" "$@"
fi
exec "$gateway" "$@"
