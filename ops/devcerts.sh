#!/usr/bin/env bash
# Generate the development/test PKI for nhgw into OUTDIR with the openssl CLI: device CAs (two
# trusted, one untrusted), a server CA with ECDSA and RSA server certificates, device leaf
# certificates (good, second CA, expired, untrusted CA, self-signed) and a TLS ticket key file.
# It does not make anything fit for production: keys are unencrypted and the CAs are throwaway.
#
# Usage: ops/devcerts.sh OUTDIR
# Idempotent: if OUTDIR/.complete exists and every file is present, nothing is regenerated.
# Safe to run concurrently for the same OUTDIR (flock). Prints one summary line.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$1

# Every file the script promises; checked for the idempotent fast path.
FILES="device-ca.pem device-ca.key device-ca2.pem device-ca2.key other-ca.pem other-ca.key
  device-cas.pem server-ca.pem server-ca.key server.pem server.key server-rsa.pem server-rsa.key
  server2.pem server2.key device-1.pem device-1.key device-2.pem device-2.key device-3.pem
  device-3.key device-4.pem device-4.key device-5.pem device-5.key device-expired.pem
  device-expired.key device-other.pem device-other.key device-selfsigned.pem
  device-selfsigned.key ticket.key"
# More devices of the first CA (device-6 .. device-40), for tests that hold many sessions at once:
# a device's newer connection closes its older one, so concurrent sessions need distinct devices.
EXTRA_DEVICES=$(seq 6 40)
for i in $EXTRA_DEVICES; do FILES="$FILES device-$i.pem device-$i.key"; done

all_present() {
  [ -f "$out/.complete" ] || return 1
  local f
  for f in $FILES; do [ -s "$out/$f" ] || return 1; done
}

mkdir -p "$out"
if all_present; then
  echo "devcerts: $out up to date"
  exit 0
fi

# Serialise concurrent runs (parallel test files all ask for the same directory).
exec 9>"$out/.lock"
flock 9
if all_present; then
  echo "devcerts: $out up to date"
  exit 0
fi

tmp=$(mktemp -d "$out/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

DAYS=3650

# One private config so the result does not depend on the system openssl.cnf.
cat > openssl.cnf <<'EOF'
[ req ]
distinguished_name = dn
prompt             = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
[ v3_device ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
[ v3_selfsigned ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
[ v3_server ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = serverAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
subjectAltName         = DNS:localhost, IP:127.0.0.1
# 'openssl ca' (used only for the expired certificate: OpenSSL 3.0's 'x509 -req' cannot set
# an explicit notBefore/notAfter).
[ ca ]
default_ca = expired_ca
[ expired_ca ]
database        = ./ca-db/index.txt
new_certs_dir   = ./ca-db
serial          = ./ca-db/serial
default_md      = sha256
policy          = policy_any
copy_extensions = none
unique_subject  = no
[ policy_any ]
commonName = supplied
EOF
export OPENSSL_CONF=$tmp/openssl.cnf

serial() { echo "0x$(openssl rand -hex 16)"; }

eckey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

# ca NAME CN
ca() {
  eckey "$1"
  openssl req -x509 -new -config openssl.cnf -key "$1.key" -subj "/O=nhgw dev/CN=$2" \
    -sha256 -days $DAYS -set_serial "$(serial)" -extensions v3_ca -out "$1.pem"
}

# leaf NAME CN CA EXTENSIONS [KEYKIND]
leaf() {
  if [ "${5:-ec}" = rsa ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key" 2>/dev/null
  else
    eckey "$1"
  fi
  openssl req -new -config openssl.cnf -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "$(serial)" \
    -sha256 -days $DAYS -extfile openssl.cnf -extensions "$4" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr"
}

ca device-ca "nhgw dev device CA"
ca device-ca2 "nhgw dev device CA 2"
ca other-ca "nhgw dev untrusted CA"
ca server-ca "nhgw dev server CA"
cat device-ca.pem device-ca2.pem > device-cas.pem

leaf server localhost server-ca v3_server
leaf server-rsa localhost server-ca v3_server rsa
leaf server2 nhgw-rotated server-ca v3_server

for i in 1 2 3 4 $EXTRA_DEVICES; do leaf "device-$i" "device-$i" device-ca v3_device; done
leaf device-5 device-5 device-ca2 v3_device
leaf device-other device-other other-ca v3_device

eckey device-selfsigned
openssl req -x509 -new -config openssl.cnf -key device-selfsigned.key -subj "/CN=device-selfsigned" \
  -sha256 -days $DAYS -set_serial "$(serial)" -extensions v3_selfsigned -out device-selfsigned.pem

# Expired: valid 2020-01-01 .. 2021-01-01, signed by device-ca.
eckey device-expired
openssl req -new -config openssl.cnf -key device-expired.key -subj "/CN=device-expired" \
  -out device-expired.csr
mkdir ca-db
: > ca-db/index.txt
openssl rand -hex 16 > ca-db/serial
openssl ca -batch -config openssl.cnf -notext -cert device-ca.pem -keyfile device-ca.key \
  -startdate 20200101000000Z -enddate 20210101000000Z -extfile openssl.cnf -extensions v3_device \
  -in device-expired.csr -out device-expired.pem 2>/dev/null
rm -rf ca-db device-expired.csr

# 80 bytes: 16-byte key name + 32-byte HMAC secret + 32-byte AES key (the nginx/BoringSSL layout
# a gateway may take the 48 bytes it needs from).
openssl rand -out ticket.key 80

rm -f openssl.cnf "$out/.complete"
for f in $FILES; do mv -f "$f" "$out/$f"; done
touch "$out/.complete"
echo "devcerts: generated $(echo $FILES | wc -w) files in $out"
