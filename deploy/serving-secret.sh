#!/usr/bin/env bash
# Prints the gateway's serving Secret (kubernetes.io/tls: ca.crt, tls.crt, tls.key) as YAML:
# a new CA and a certificate signed by it for the gateway's Service, made with openssl here,
# on the admin's machine; nothing is sent anywhere. Apply it once, before the overlay:
#
#   deploy/serving-secret.sh | kubectl apply -f -
#
# Usage: serving-secret.sh [NAMESPACE [SERVICE [SECRET]]]
#        (defaults: vela-system cluster-gateway cluster-gateway-tls)
# The patch Job copies ca.crt into the APIService's caBundle. To rotate, run it again and
# re-run the Job (README.md, "In a hub cluster"); a cert-manager Certificate writing the same three keys
# into the same Secret works as well.
set -euo pipefail
namespace=${1:-vela-system}
service=${2:-cluster-gateway}
secret=${3:-cluster-gateway-tls}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout ca.key -out ca.crt -days 3650 -subj "/CN=$service-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout tls.key -out tls.csr -subj "/CN=$service.$namespace.svc" 2>/dev/null
cat > ext.cnf <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:$service,DNS:$service.$namespace,DNS:$service.$namespace.svc,DNS:$service.$namespace.svc.cluster.local
EXT
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
  -extfile ext.cnf -out tls.crt 2>/dev/null
b64() { base64 -w0 < "$1"; }
cat <<YAML
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata:
  name: $secret
  namespace: $namespace
data:
  ca.crt: $(b64 ca.crt)
  tls.crt: $(b64 tls.crt)
  tls.key: $(b64 tls.key)
YAML
