#!/bin/bash
# OpenSSL with the libp11 engine configured with scagent-pkcs11.so (an
# explicit OPENSSL_CONF: never p11-kit's proxy) completes TLS handshakes with
# client certificates to `openssl s_server -Verify 2`: alice (RSA) over TLS
# 1.3 (RSA-PSS) and TLS 1.2 (PKCS#1 v1.5), bob (EC) over TLS 1.3.
. "$TOP_SRCDIR/tests/pkcs11/common.sh"
p11_setup

enginesdir=$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')
[ -f "$enginesdir/pkcs11.so" ] || skip_all "libengine-pkcs11-openssl missing"
W=$TB_DIR/w
mkdir -p "$W"
cat >"$W/openssl.cnf" <<CNF
openssl_conf = sc_openssl
[sc_openssl]
engines = sc_engines
[sc_engines]
pkcs11 = sc_pkcs11
[sc_pkcs11]
engine_id = pkcs11
dynamic_path = $enginesdir/pkcs11.so
MODULE_PATH = $MODULE
init = 0
CNF

port=$(tb_port)
tb_s_server "$port"
"$SCAGENT" login --token demo --pin-stdin <<<"$TB_PIN" >/dev/null 2>&1
ok "the agent is logged in to demo" agent_logged_in demo

handshake() { # USER OUT [s_client args]
	local u=$1 out=$2; shift 2
	printf 'GET / HTTP/1.0\r\n\r\n' | ext env OPENSSL_CONF="$W/openssl.cnf" timeout 30 \
		openssl s_client -connect "127.0.0.1:$port" -servername localhost \
		-CAfile "$TB_DIR/pki/ca-chain.pem" -ign_eof -engine pkcs11 -keyform engine \
		-key "pkcs11:token=demo;object=$u;type=private" -cert "$TB_DIR/certs/$u.pem" \
		"$@" >"$out" 2>&1
}
accepted() { # OUT USER: the server saw the client certificate of USER
	grep -q 'HTTP/1.0 200 ok' "$1" && grep -q "Subject: O=Contoso, CN=$2\$" "$1"
}

handshake alice "$W/alice13" -tls1_3
ok "alice (RSA-2048), TLS 1.3: handshake with her certificate accepted" accepted "$W/alice13" alice
ok "  the agent signed it with RSA-PSS" grep -q 'exe=.*openssl .*alg=rsa-pss-sha256 result=ok' "$AGENT_LOG"
handshake alice "$W/alice12" -tls1_2 -sigalgs RSA+SHA256
ok "alice (RSA-2048), TLS 1.2 with PKCS#1 v1.5: accepted" accepted "$W/alice12" alice
ok "  the agent signed it with rsa-pkcs1-sha256" grep -q 'alg=rsa-pkcs1-sha256 result=ok' "$AGENT_LOG"
handshake bob "$W/bob13" -tls1_3
ok "bob (EC P-256), TLS 1.3: handshake with his certificate accepted" accepted "$W/bob13" bob
ok "  the agent signed it with ECDSA" grep -q 'alg=ecdsa-sha256 result=ok' "$AGENT_LOG"

# Without the agent's login the key is not usable (the server gets no proof).
"$SCAGENT" logout --token demo >/dev/null 2>&1
handshake alice "$W/nologin" -tls1_3
nok "logged out: no handshake with alice's key" accepted "$W/nologin" alice
done_testing
