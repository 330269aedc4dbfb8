#!/bin/bash
# The agent on the demo card: login, every ALG of INTERFACE.md over data and
# over a precomputed digest, each signature checked with `openssl dgst -verify`
# against the certificate's public key; the errors a user meets on the way.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../testbed/testbed.sh"

tb_agent_test
tb_demo_card
head -c 3000 /dev/urandom >"$W/data"

# ---------------------------------------------------------------- no agent
run sc status --json
is "no agent: exit 3" "$RC" 3
has "no agent: the hint says how to start one" "$ERR" "scagentd"
has "no agent: the message names the socket" "$ERR" "$S"
run env SCAGENT_SOCKET="$S" "$SCAGENT" sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data"
is "no agent (SCAGENT_SOCKET): sign exits 3" "$RC" 3

start_agent "$S"

# ---------------------------------------------------------------- status, before login
run sc status --json
is "status: exit 0" "$RC" 0
is "status: demo not logged in" \
	"$("$PY" -c 'import json,sys; d=json.load(sys.stdin); print([t["logged_in"] for t in d["tokens"] if t["label"]=="demo"][0])' <<<"$OUT")" False
has "status: protocol version" "$OUT" '"protocol":1'

# ---------------------------------------------------------------- sign before login
run sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/nologin.sig"
is "sign before login: exit 1" "$RC" 1
has "sign before login: says to run scagent login" "$ERR" "scagent login --token demo"
ok "sign before login: no signature written" test ! -s "$W/nologin.sig"

# ---------------------------------------------------------------- wrong PIN, then the right one
run sc login --token demo --pin-stdin <<<"999999"
is "wrong PIN: exit 1" "$RC" 1
has "wrong PIN: clear error" "$ERR" 'wrong PIN for token "demo"'
run sc login --token nosuch --pin-stdin <<<"$TB_PIN"
is "login to an unknown token: exit 1" "$RC" 1
has "login to an unknown token: says so" "$ERR" 'no token labelled "nosuch"'
run sc login --token demo --pin-stdin </dev/null
is "login without a PIN on stdin: exit 1" "$RC" 1
has "login without a PIN on stdin: says so" "$ERR" "no PIN on standard input"
run sc login --token demo --pin-stdin <<<"$TB_PIN"
is "correct login after a wrong PIN: exit 0" "$RC" 0
has "login: confirms" "$ERR" 'logged in to token "demo"'
run sc status --json
has "status: demo logged in" "$OUT" '{"label":"demo","logged_in":true}'
run sc login --token demo --pin-stdin <<<"$TB_PIN"
is "second login: exit 1" "$RC" 1
has "second login: already logged in" "$ERR" "already logged in"

# ---------------------------------------------------------------- every ALG
sigopts() {
	case $1 in
	rsa-pss-*) echo "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest" ;;
	*) echo "" ;;
	esac
}
verify() { # ALG LABEL SIG DATA
	local md=${1##*-}
	# shellcheck disable=SC2046
	openssl dgst "-$md" -verify "$(pubkey "$2")" $(sigopts "$1") -signature "$3" "$4"
}
for alg in rsa-pkcs1-sha256 rsa-pkcs1-sha384 rsa-pkcs1-sha512 \
	rsa-pss-sha256 rsa-pss-sha384 rsa-pss-sha512 \
	ecdsa-sha256 ecdsa-sha384 ecdsa-sha512; do
	case $alg in ecdsa-*) key=bob ;; *) key=alice ;; esac
	md=${alg##*-}
	run sc sign --cert "$key" --alg "$alg" --in "$W/data" --out "$W/$alg.data.sig"
	is "$alg ($key) over data: exit 0" "$RC" 0
	ok "$alg ($key) over data: openssl dgst -verify" verify "$alg" "$key" "$W/$alg.data.sig" "$W/data"
	openssl dgst "-$md" -binary "$W/data" >"$W/$md.bin"
	run sc sign --cert "$key" --alg "$alg" --digest --in "$W/$md.bin" --out "$W/$alg.dgst.sig"
	is "$alg ($key) over a digest: exit 0" "$RC" 0
	ok "$alg ($key) over a digest: openssl dgst -verify" verify "$alg" "$key" "$W/$alg.dgst.sig" "$W/data"
	# A signature must not verify over other data: the check above can fail.
	nok "$alg: the signature does not verify over other data" \
		verify "$alg" "$key" "$W/$alg.data.sig" "$here/agent-sign.sh"
done
is "rsa-pkcs1 signature of a 2048-bit key is 256 bytes" "$(stat -c %s "$W/rsa-pkcs1-sha256.data.sig")" 256
ok "ecdsa signature is DER (openssl asn1parse)" openssl asn1parse -inform DER -in "$W/ecdsa-sha256.data.sig"

# RSA-3072 (carol), data from standard input, REF by fingerprint prefix and URI
fp=$(openssl x509 -in "$TB_DIR/certs/carol.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)
run sc sign --cert "${fp:0:12}" --alg rsa-pss-sha384 --out "$W/carol.sig" <"$W/data"
is "carol by fingerprint prefix, data on stdin: exit 0" "$RC" 0
ok "carol rsa-pss-sha384: verifies" verify rsa-pss-sha384 carol "$W/carol.sig" "$W/data"
uri=$(sc list --json | "$PY" -c 'import json,sys
for t in json.load(sys.stdin)["tokens"]:
    for c in t["certificates"]:
        if c["label"] == "alice": print(c["uri"])')
run sc sign --cert "$uri" --alg rsa-pkcs1-sha512 --in "$W/data" --out "$W/uri.sig"
is "alice by pkcs11: URI: exit 0" "$RC" 0
ok "alice by URI: verifies" verify rsa-pkcs1-sha512 alice "$W/uri.sig" "$W/data"
sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" >"$W/stdout.sig"
ok "signature to standard output: verifies" verify rsa-pkcs1-sha256 alice "$W/stdout.sig" "$W/data"

# ---------------------------------------------------------------- bad requests
run sc sign --cert bob --alg rsa-pss-sha256 --in "$W/data"
is "RSA alg with the EC key: exit 1" "$RC" 1
has "RSA alg with the EC key: says the key is EC" "$ERR" "is an EC key"
run sc sign --cert alice --alg ecdsa-sha256 --in "$W/data"
is "ECDSA with the RSA key: exit 1" "$RC" 1
has "ECDSA with the RSA key: says the key is RSA" "$ERR" "is an RSA key"
run sc sign --cert alice --alg rsa-md5 --in "$W/data"
is "unknown alg: usage error (exit 2)" "$RC" 2
has "unknown alg: lists the algorithms" "$ERR" "rsa-pss-sha256"
run sc sign --cert alice --alg rsa-pkcs1-sha256 --digest --in "$W/data"
is "--digest with the wrong length: exit 1" "$RC" 1
has "--digest with the wrong length: says the size" "$ERR" "32-byte hash"
run sc sign --cert nosuch --alg rsa-pkcs1-sha256 --in "$W/data"
is "unknown REF: exit 1" "$RC" 1
has "unknown REF: says nothing matches" "$ERR" 'no certificate matches "nosuch"'
has "unknown REF: lists candidates" "$ERR" 'on token "negatives"'
run sc sign --cert nokey --alg rsa-pkcs1-sha256 --in "$W/data"
is "certificate without a key, token not logged in: exit 1" "$RC" 1
has "certificate without a key, token not logged in: needs a login (keys hidden)" "$ERR" "scagent login --token negatives"
sc login --token negatives --pin-stdin <<<"$TB_PIN" 2>/dev/null
run sc sign --cert nokey --alg rsa-pkcs1-sha256 --in "$W/data"
is "certificate without a private key: exit 1" "$RC" 1
has "certificate without a private key: says so" "$ERR" "no private key"
run sc sign --cert alice --alg rsa-pkcs1-sha256
is "sign without --in reads stdin (empty here): exit 0" "$RC" 0

# ---------------------------------------------------------------- logout
run sc logout --token demo
is "logout: exit 0" "$RC" 0
run sc sign --cert alice --alg rsa-pkcs1-sha256 --in "$W/data" --out "$W/after-logout.sig"
is "sign after logout: exit 1" "$RC" 1
has "sign after logout: says to log in" "$ERR" "scagent login --token demo"
run sc logout --token demo
is "logout twice: exit 1" "$RC" 1
has "logout twice: not logged in" "$ERR" "not logged in"
run sc status --json
has "status after logout: demo not logged in" "$OUT" '{"label":"demo","logged_in":false}'
ok "the agent is still running" kill -0 "$AGENT_PID"

stop_agent "the agent stops on SIGTERM: exit 0, no sanitizer report"
done_testing
