#!/usr/bin/env bash
# A fleet CA and the broker's TLS certificate, for mosquitto's TLS listener (8883).
#   deploy/mosquitto/make-certs.sh OUT_DIR [HOST_OR_IP ...]    (default: localhost 127.0.0.1)
# Writes OUT_DIR/ca.crt (give it to every drone: `pli device init --mqtt-tls-ca`), ca.key
# (keep it offline), server.crt and server.key (the broker's). Never commit any of them:
# deploy/mosquitto/certs/ is ignored by git.
set -euo pipefail
out=${1:?usage: make-certs.sh OUT_DIR [HOST_OR_IP ...]}
shift || true
hosts=("$@")
[ ${#hosts[@]} -gt 0 ] || hosts=(localhost 127.0.0.1)
san=""
for h in "${hosts[@]}"; do
    if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+="IP:$h,"; else san+="DNS:$h,"; fi
done
mkdir -p "$out"
cd "$out"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -keyout ca.key -out ca.crt -subj "/CN=pli fleet CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout server.key -out server.csr -subj "/CN=${hosts[0]}" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "${san%,}" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile server.ext -out server.crt 2>/dev/null
rm -f server.csr server.ext ca.srl
chmod 644 ca.crt server.crt
echo "wrote $out/{ca.crt,ca.key,server.crt,server.key} for ${hosts[*]}"
