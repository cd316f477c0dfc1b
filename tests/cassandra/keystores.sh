#!/usr/bin/env bash
# Java keystores for a TLS-only Cassandra from PEM files:
#   tests/cassandra/keystores.sh DIR
# reads DIR/server.pem, DIR/server.key, DIR/ca.pem (made first with openssl, with
# DIR/client.pem + client.key, when DIR has no server.pem) and writes
# DIR/keystore.p12 (the server's key and chain) and DIR/truststore.p12 (the
# CA, for require_client_auth), both with the password "cassandra". PKCS12
# is read as a "JKS" store by Java 9 and later, so every Cassandra 4.x/5.0
# store_type default works.
set -euo pipefail
dir="$1"
command -v openssl >/dev/null || { echo "keystores.sh: openssl not found (apt-get install openssl)" >&2; exit 1; }
java="${JAVA:-java}"
keytool="$(dirname "$(readlink -f "$(command -v "$java")")")/keytool"
[[ -x "$keytool" ]] || keytool="$(command -v keytool)"
if [[ ! -f "$dir/server.pem" ]]; then
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj "/CN=cqlready test CA" -days 7 2>/dev/null
    for who in server client; do
        openssl req "${ec[@]}" -keyout "$dir/$who.key" -out "$dir/$who.csr" -subj "/CN=$who" 2>/dev/null
        # X.509 v3 (with extensions): what keytool makes, and what a verifying client needs.
        printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:%s,IP:127.0.0.1\n' "$who" > "$dir/$who.ext"
        openssl x509 -req -in "$dir/$who.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
            -extfile "$dir/$who.ext" -out "$dir/$who.pem" -days 7 2>/dev/null
    done
fi
rm -f "$dir/keystore.p12" "$dir/truststore.p12"
openssl pkcs12 -export -name node -in "$dir/server.pem" -inkey "$dir/server.key" \
    -certfile "$dir/ca.pem" -out "$dir/keystore.p12" -passout pass:cassandra
"$keytool" -importcert -noprompt -alias ca -file "$dir/ca.pem" \
    -keystore "$dir/truststore.p12" -storetype PKCS12 -storepass cassandra >/dev/null
echo "$dir/keystore.p12"
