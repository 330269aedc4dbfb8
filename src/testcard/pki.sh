# shellcheck shell=bash
# scagent test kit, the shared part: SoftHSM tokens and a demo PKI modelled on
# AD CS (root, issuing and rogue CA), with keys generated ON the token and
# certificates of every CBA profile.  Sourced by the installed kit
# (scagent-testcard, `scagent testcard init`) and by scagent's own test bed
# (tests/testbed/testbed.sh): one PKI builder, not two.
#
# Everything goes under $TB_DIR (absolute): softhsm2.conf and tokens/, pki/
# (CAs, ca-chain.pem), certs/ (issued certificates), work/ (CSRs, extension
# files).  Commands run quietly, their output appended to $TB_DIR/testbed.log;
# on an error the functions print "$TB_NAME: ..." (default "testbed") and exit
# with $TB_DIE_CODE (default 99, automake's "hard error").
#
# Keys are always GENERATED ON THE TOKEN (pkcs11-tool --keypairgen); the
# certificate request is signed on the token through the libp11 engine (with an
# explicit OPENSSL_CONF naming MODULE_PATH: without it the engine loads the
# p11-kit proxy and every registered module) and issued with `openssl ca`,
# which is the OpenSSL 3.0 tool that can set arbitrary notBefore/notAfter
# (-startdate/-enddate).

TB_SOFTHSM=${TB_SOFTHSM:-/usr/lib/softhsm/libsofthsm2.so}
TB_PIN=${TB_PIN:-123456}
TB_SO_PIN=${TB_SO_PIN:-12345678}
export TB_SOFTHSM TB_PIN TB_SO_PIN

# ---------------------------------------------------------------- helpers

_tb_die() { echo "${TB_NAME:-testbed}: $*" >&2; exit "${TB_DIE_CODE:-99}"; }
_tb_log() { if [ "${TB_VERBOSE:-0}" = 1 ]; then echo "testbed: $*" >&2; fi; }

# _tb_run CMD...: run quietly (output to $TB_DIR/testbed.log); on failure show
# the command and its output and die.
_tb_run() {
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	printf '+ %s\n%s\n' "$*" "$out" >>"$TB_DIR/testbed.log"
	if [ "${TB_VERBOSE:-0}" = 1 ]; then printf '+ %s\n%s\n' "$*" "$out" >&2; fi
	if [ "$rc" != 0 ]; then
		printf '%s\n' "$out" >&2
		_tb_die "command failed (exit $rc): $*"
	fi
}

_tb_need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || _tb_die "required tool '$t' not found"
	done
}

# "0a1b" -> "%0a%1b" (RFC 7512 id attribute)
_tb_pct_id() { printf '%s' "$1" | sed 's/../%&/g'; }

# _tb_file_key FILE rsa|ec: a key in a file (CAs, servers, keys that are
# not on a token): RSA-2048 or EC P-256
_tb_file_key() {
	if [ "$2" = ec ]; then
		_tb_run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
	else
		_tb_run openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"
	fi
}

# _tb_date EPOCH OFFSET: EPOCH moved by a date(1) offset such as "-1 day",
# as YYYYMMDDHHMMSSZ for openssl ca (one EPOCH per certificate keeps the
# validity period exact)
_tb_date() { date -u -d "1970-01-01 UTC $1 seconds $2" +%Y%m%d%H%M%SZ; }

# ---------------------------------------------------------------- SoftHSM

# tb_softhsm_conf: this test's private SoftHSM store ($TB_SOFTHSM_STORE when
# set, else $TB_DIR: softhsm2.conf and tokens/), made if new; SOFTHSM2_CONF
# exported for it.
tb_softhsm_conf() {
	local store=${TB_SOFTHSM_STORE:-$TB_DIR}
	if [ ! -f "$store/softhsm2.conf" ]; then
		mkdir -p "$store/tokens"
		cat >"$store/softhsm2.conf" <<-EOF
			directories.tokendir = $store/tokens
			objectstore.backend = file
			log.level = ERROR
			slots.removable = false
		EOF
	fi
	SOFTHSM2_CONF=$store/softhsm2.conf
	export SOFTHSM2_CONF
}

# tb_softhsm_token LABEL: a fresh token in that store.
tb_softhsm_token() {
	[ -r "$TB_SOFTHSM" ] || _tb_die "SoftHSM module $TB_SOFTHSM not found"
	tb_softhsm_conf
	_tb_run softhsm2-util --init-token --free --label "$1" \
		--so-pin "$TB_SO_PIN" --pin "$TB_PIN"
	_tb_log "token '$1' initialised"
}

# tb_softhsm_b: a second, independent SoftHSM instance with its own token
# directory, for a second module in one agent (two modules loading the same
# library share one instance, and one SOFTHSM2_CONF shows every token through
# both): a copy of libsofthsm2.so whose configuration variable is renamed
# SOFTHSM2_CONF -> SOFTHSM2_CONG (same length), so the same SoftHSM code reads
# its own configuration. Sets TB_SOFTHSM_B (the copy) and exports
# SOFTHSM2_CONG. tb_softhsm_b_token LABEL makes a token there; enrol on it with
# `SOFTHSM2_CONF=$SOFTHSM2_CONG tb_enroll ...` (the stock tools read that).
tb_softhsm_b() {
	local b=$TB_DIR/hsm-b
	mkdir -p "$b/tokens"
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
		"$b" >"$b/softhsm2.conf"
	perl -0777 -pe 'BEGIN { binmode STDIN; binmode STDOUT }
		$n = s/SOFTHSM2_CONF\0/SOFTHSM2_CONG\0/g;
		END { die "SOFTHSM2_CONF not found exactly once\n" unless $n == 1 }' \
		<"$(readlink -f "$TB_SOFTHSM")" >"$b/libsofthsm2-b.so" ||
		_tb_die "cannot make the second SoftHSM library"
	TB_SOFTHSM_B=$b/libsofthsm2-b.so
	SOFTHSM2_CONG=$b/softhsm2.conf
	export TB_SOFTHSM_B SOFTHSM2_CONG
}
tb_softhsm_b_token() {
	[ -n "${TB_SOFTHSM_B:-}" ] || tb_softhsm_b
	SOFTHSM2_CONF=$SOFTHSM2_CONG _tb_run softhsm2-util --init-token --free --label "$1" \
		--so-pin "$TB_SO_PIN" --pin "$TB_PIN"
	_tb_log "token '$1' initialised in the second SoftHSM"
}

# pkcs11-tool on one token, logged in
_tb_p11() {
	local token=$1; shift
	_tb_run pkcs11-tool --module "$TB_SOFTHSM" --token-label "$token" \
		--login --pin "$TB_PIN" "$@"
}

# ---------------------------------------------------------------- PKI

# A minimal `openssl ca` setup for CA NAME (dir $TB_DIR/pki/ca-NAME).
_tb_ca_setup() {
	local d=$TB_DIR/pki/ca-$1
	mkdir -p "$d/new"
	: >"$d/index.txt"
	cat >"$d/ca.cnf" <<-EOF
		[ca]
		default_ca = tbca
		[tbca]
		dir = $d
		database = \$dir/index.txt
		new_certs_dir = \$dir/new
		serial = \$dir/serial
		rand_serial = yes
		unique_subject = no
		default_md = sha256
		email_in_dn = no
		copy_extensions = none
		policy = anything
		[anything]
		countryName = optional
		organizationName = optional
		organizationalUnitName = optional
		domainComponent = optional
		commonName = optional
		emailAddress = optional
		msUPN = optional
	EOF
}

# _tb_issue CA CSR OUT EXTFILE SECTION START END
#   CA is "root", "issuing" or "rogue"; CA=self-NAME self-signs with NAME's key.
#   START/END are date(1) offsets like "-1 day", "+1 year".
_tb_issue() {
	local ca=$1 csr=$2 out=$3 ext=$4 sect=$5 now start end signer
	printf -v now "%(%s)T" -1 # (no process: the kit issues a dozen certificates)
	start=$(_tb_date "$now" "$6") end=$(_tb_date "$now" "$7")
	if [ "${ca#self-}" != "$ca" ]; then
		signer=(-selfsign -keyfile "$TB_DIR/pki/${ca#self-}.key")
		ca=${ca#self-}
	else
		signer=(-cert "$TB_DIR/pki/$ca.pem" -keyfile "$TB_DIR/pki/$ca.key")
	fi
	# flock: `openssl ca` rewrites its index.txt; the kit issues from parallel jobs
	_tb_run flock "$TB_DIR/pki/ca-$ca/lock" openssl ca -config "$TB_DIR/pki/ca-$ca/ca.cnf" -batch -notext -utf8 \
		-preserveDN "${signer[@]}" -in "$csr" -out "$out" \
		-startdate "$start" -enddate "$end" -extfile "$ext" -extensions "$sect"
}

# A CA: key + self-signed (root/rogue) or root-signed (issuing) certificate.
_tb_make_ca() {
	local name=$1 subj=$2 parent=$3 p=$TB_DIR/pki
	_tb_ca_setup "$name"
	# TB_FAST_KEYS=1 (the kit, which must be ready in seconds): the keys of
	# the CAs other than root and issuing (rogue, the chain-problem CAs) are
	# EC P-256; nothing looks at their type, and RSA generation is slow.
	if [ "$name" != root ] && [ "$name" != issuing ] && [ "${TB_FAST_KEYS:-0}" = 1 ]; then
		_tb_file_key "$p/$name.key" ec
	else
		_tb_file_key "$p/$name.key" rsa
	fi
	_tb_run openssl req -new -utf8 -key "$p/$name.key" -subj "$subj" -out "$p/$name.csr"
	_tb_issue "$parent" "$p/$name.csr" "$p/$name.pem" "$p/ext.cnf" "ca_$name" \
		"-800 days" "+3650 days"
}

# tb_pki: root, issuing and rogue CA under $TB_DIR/pki (idempotent).
tb_pki() {
	local p=$TB_DIR/pki
	[ -f "$p/ca-chain.pem" ] && return 0
	mkdir -p "$p" "$TB_DIR/certs"
	cat >"$p/ext.cnf" <<-EOF
		[ca_root]
		basicConstraints = critical, CA:TRUE
		keyUsage = critical, keyCertSign, cRLSign
		subjectKeyIdentifier = hash
		[ca_rogue]
		basicConstraints = critical, CA:TRUE
		keyUsage = critical, keyCertSign, cRLSign
		subjectKeyIdentifier = hash
		[ca_issuing]
		basicConstraints = critical, CA:TRUE, pathlen:0
		keyUsage = critical, keyCertSign, cRLSign
		subjectKeyIdentifier = hash
		authorityKeyIdentifier = keyid
		[ca_serveronly]
		basicConstraints = critical, CA:TRUE, pathlen:0
		keyUsage = critical, keyCertSign, cRLSign
		extendedKeyUsage = serverAuth
		subjectKeyIdentifier = hash
		authorityKeyIdentifier = keyid
		[ca_notca]
		basicConstraints = critical, CA:FALSE
		keyUsage = critical, keyCertSign, cRLSign
		subjectKeyIdentifier = hash
		authorityKeyIdentifier = keyid
	EOF
	# Subjects in OpenSSL -subj order (most significant RDN first), i.e.
	# RFC 4514 "CN=Contoso Root CA,O=Contoso".
	_tb_make_ca root "/O=Contoso/CN=Contoso Root CA" self-root
	_tb_make_ca issuing "/O=Contoso/CN=Contoso Issuing CA" root
	_tb_make_ca rogue "/CN=Fabrikam Rogue CA" self-rogue
	cat "$p/issuing.pem" "$p/root.pem" >"$p/ca-chain.pem"
	_tb_log "PKI ready in $p"
}

# _tb_problem_ca NAME: an issuing CA under the root whose chain is not valid
# for a CBA client certificate, made on first use (not in tb_pki: most tests
# need neither): "serveronly" ("CN=Contoso Server-only CA", EKU serverAuth
# only: `openssl verify -purpose sslclient` refuses the chain, chain-purpose)
# and "notca" ("CN=Contoso Not-a-CA", basicConstraints CA:FALSE although its
# keyUsage has keyCertSign: no CA at all, chain-invalid-ca). Not for
# parallel first use of the same NAME.
_tb_problem_ca() {
	[ -f "$TB_DIR/pki/$1.pem" ] && return 0
	case $1 in
	serveronly) _tb_make_ca serveronly "/O=Contoso/CN=Contoso Server-only CA" root ;;
	notca) _tb_make_ca notca "/O=Contoso/CN=Contoso Not-a-CA" root ;;
	*) _tb_die "unknown problem CA '$1'" ;;
	esac
}

# tb_server_cert NAME [SAN...]: $TB_DIR/pki/NAME.{pem,key} + NAME-chain.pem
# (leaf + issuing CA), serverAuth, issued by the issuing CA, valid from a day
# ago for a year (TB_CERT_START / TB_CERT_END change that).  SAN entries may
# be "DNS:x", "IP:x", a bare IPv4 address or a bare DNS name (default: NAME).
tb_server_cert() {
	local name=$1 p=$TB_DIR/pki san="" s
	shift
	tb_pki
	[ $# -gt 0 ] || set -- "$name"
	for s in "$@"; do
		case $s in
		DNS:* | IP:*) ;;
		*[!0-9.]*) s="DNS:$s" ;;
		*) s="IP:$s" ;;
		esac
		san="${san:+$san, }$s"
	done
	cat >"$p/$name.ext" <<-EOF
		[srv]
		basicConstraints = critical, CA:FALSE
		keyUsage = critical, digitalSignature, keyEncipherment
		extendedKeyUsage = serverAuth
		subjectKeyIdentifier = hash
		authorityKeyIdentifier = keyid
		subjectAltName = $san
	EOF
	_tb_file_key "$p/$name.key" rsa
	_tb_run openssl req -new -key "$p/$name.key" -subj "/O=Contoso/CN=$name" -out "$p/$name.csr"
	# TB_CERT_START / TB_CERT_END: other validity times, as for tb_enroll
	# (TB_CERT_START="-400 days" TB_CERT_END="-1 day": an expired server).
	_tb_issue issuing "$p/$name.csr" "$p/$name.pem" "$p/$name.ext" srv \
		"${TB_CERT_START:--1 day}" "${TB_CERT_END:-+365 days}"
	cat "$p/$name.pem" "$p/issuing.pem" >"$p/$name-chain.pem"
}

# ---------------------------------------------------------------- enrolment

# OPENSSL_CONF for the libp11 engine that loads only SoftHSM (never the
# p11-kit proxy; see TESTBED.md).
_tb_engine_conf() {
	local f=$TB_DIR/openssl-pkcs11.cnf enginesdir
	[ -f "$f" ] && { echo "$f"; return 0; }
	enginesdir=$(openssl version -e | sed -n 's/^ENGINESDIR: "\(.*\)"$/\1/p')
	[ -f "$enginesdir/pkcs11.so" ] ||
		_tb_die "libp11 engine $enginesdir/pkcs11.so missing (libengine-pkcs11-openssl)"
	cat >"$f" <<-EOF
		openssl_conf = tb_openssl
		[tb_openssl]
		engines = tb_engines
		[tb_engines]
		pkcs11 = tb_pkcs11
		[tb_pkcs11]
		engine_id = pkcs11
		dynamic_path = $enginesdir/pkcs11.so
		MODULE_PATH = $TB_SOFTHSM
		init = 0
		[req]
		distinguished_name = tb_dn
		[tb_dn]
	EOF
	echo "$f"
}

# _tb_profile_ext PROFILE LABEL UPN RSA(0|1) FILE: extension section "ee" for
# an end-entity certificate of that profile.  The SAN lives in its own
# section so that "FORMAT:UTF8" (a comma-separated modifier) can be used:
# without it OpenSSL reads the UPN as Latin-1 and double-encodes non-ASCII.
_tb_profile_ext() {
	local profile=$1 label=$2 upn=$3 rsa=$4 f=$5
	local upn_oid="1.3.6.1.4.1.311.20.2.3;FORMAT:UTF8,UTF8"
	local eku="clientAuth, 1.3.6.1.4.1.311.20.2.2"
	local ku="critical, digitalSignature"
	[ "$rsa" = 1 ] && ku="$ku, keyEncipherment"
	case $profile in
	serverauth) eku="serverAuth" ;;
	nodigsig) ku="critical, keyEncipherment" ;;
	esac
	cat >"$f" <<-EOF
		[ee]
		basicConstraints = critical, CA:FALSE
		keyUsage = $ku
		extendedKeyUsage = $eku
		subjectKeyIdentifier = hash
		authorityKeyIdentifier = keyid
		subjectAltName = @ee_san
		[ee_san]
	EOF
	case $profile in
	noupn | upnsubject) ;;
	multiupn) printf 'otherName.1 = %s:%s\notherName.2 = %s:%s\n' \
		"$upn_oid" "$upn" "$upn_oid" "jürgen@contoso.com" >>"$f" ;;
	*) printf 'otherName.1 = %s:%s\n' "$upn_oid" "$upn" >>"$f" ;;
	esac
	echo "email.1 = $label@contoso.com" >>"$f"
}

# _tb_issue_profile PROFILE LABEL UPN RSA CSR OUT: issue a certificate of
# that profile for the key in CSR (the CSR's subject is replaced).  Profiles
# untrusted, capurpose and notca are the good certificate from another CA:
# the rogue CA, and the chain-problem CAs of _tb_problem_ca.
_tb_issue_profile() {
	local profile=$1 label=$2 upn=$3 rsa=$4 csr=$5 out=$6
	local ca=issuing start="-1 day" end="+364 days" w=$TB_DIR/work
	case $profile in
	good | serverauth | noupn | nodigsig | weak | multiupn | upnsubject) ;;
	expired) start="-400 days" end="-1 day" ;;
	notyet) start="+30 days" end="+400 days" ;;
	untrusted) ca=rogue ;;
	capurpose) ca=serveronly ;;
	notca) ca=notca ;;
	*) _tb_die "unknown profile '$profile'" ;;
	esac
	case $ca in serveronly | notca) _tb_problem_ca "$ca" ;; esac
	# TB_CERT_START / TB_CERT_END: other validity times (date(1) offsets, "+40 seconds").
	start=${TB_CERT_START:-$start} end=${TB_CERT_END:-$end}
	_tb_profile_ext "$profile" "$label" "$upn" "$rsa" "$w/$label.ext"
	_tb_issue "$ca" "$csr" "$out" "$w/$label.ext" ee "$start" "$end"
}

# subject for a profile (OpenSSL -subj order): RFC 4514 "CN=<label>,O=Contoso"
_tb_subject() {
	if [ "$1" = upnsubject ]; then
		echo "/O=Contoso/CN=$2/1.3.6.1.4.1.311.20.2.3=$3"
	else
		echo "/O=Contoso/CN=$2"
	fi
}

# tb_enroll TOKEN ID LABEL KEYTYPE PROFILE [UPN]     (env TB_ALWAYS_AUTH=1: see below)
#   Key pair generated on TOKEN (KEYTYPE rsa:1024|rsa:2048|rsa:3072|
#   EC:prime256v1; profile "weak" always uses rsa:1024), CSR signed on the
#   token, certificate of PROFILE issued and written to the token with the same
#   ID and LABEL; also saved as $TB_DIR/certs/LABEL.pem.
tb_enroll() {
	local token=$1 id=$2 label=$3 keytype=$4 profile=$5 upn=${6:-$3@contoso.com}
	local w=$TB_DIR/work rsa=1 conf uri
	[ $# -ge 5 ] || _tb_die "usage: tb_enroll TOKEN ID LABEL KEYTYPE PROFILE [UPN]"
	[[ $id =~ ^([0-9a-fA-F]{2})+$ ]] || _tb_die "ID '$id' is not hex"
	tb_pki
	mkdir -p "$w"
	[ "$profile" = weak ] && keytype=rsa:1024
	case $keytype in
	rsa:1024 | rsa:2048 | rsa:3072 | rsa:4096) ;;
	EC:prime256v1 | ec:p256 | ec:prime256v1) keytype=EC:prime256v1 rsa=0 ;;
	*) _tb_die "unsupported key type '$keytype'" ;;
	esac
	# TB_ALWAYS_AUTH=1: the private key asks for the PIN at every signature
	# (CKA_ALWAYS_AUTHENTICATE, like a PIV card's signature key).
	_tb_p11 "$token" --keypairgen --key-type "$keytype" --id "$id" --label "$label" \
		${TB_ALWAYS_AUTH:+--always-auth}
	# CSR signed by the token key through the libp11 engine.
	conf=$(_tb_engine_conf) || exit 99
	uri="pkcs11:token=$token;id=$(_tb_pct_id "$id");type=private?pin-value=$TB_PIN"
	# libp11 asks for an always-authenticate key's PIN through OpenSSL's UI:
	# on standard input when there is no terminal (setsid: none).
	printf '%s\n' "$TB_PIN" | _tb_run setsid -w env OPENSSL_CONF="$conf" openssl req -new \
		-utf8 -engine pkcs11 -keyform engine -key "$uri" \
		-subj "$(_tb_subject "$profile" "$label" "$upn")" -out "$w/$label.csr"
	_tb_issue_profile "$profile" "$label" "$upn" "$rsa" "$w/$label.csr" "$TB_DIR/certs/$label.pem"
	_tb_write_cert "$token" "$id" "$label" "$TB_DIR/certs/$label.pem"
	_tb_log "enrolled $label ($keytype, $profile) on $token id $id"
}

# _tb_write_cert TOKEN ID LABEL PEM: certificate object on the token
_tb_write_cert() {
	local der=$TB_DIR/work/$3.der
	mkdir -p "$TB_DIR/work"
	_tb_run openssl x509 -in "$4" -outform DER -out "$der"
	_tb_p11 "$1" --write-object "$der" --type cert --id "$2" --label "$3"
}

# tb_cert_only TOKEN ID LABEL: good-profile certificate on the token with no
# key at all on the token (key made in a file and deleted): no-private-key.
tb_cert_only() {
	local token=$1 id=$2 label=$3 w=$TB_DIR/work
	tb_pki
	mkdir -p "$w"
	# (TB_FAST_KEYS=1: an EC key; the problem does not depend on the type)
	_tb_file_key "$w/$label.key" "$([ "${TB_FAST_KEYS:-0}" = 1 ] && echo ec || echo rsa)"
	_tb_run openssl req -new -key "$w/$label.key" -subj "$(_tb_subject good "$label")" \
		-out "$w/$label.csr"
	rm -f "$w/$label.key"
	_tb_issue_profile good "$label" "$label@contoso.com" 1 "$w/$label.csr" "$TB_DIR/certs/$label.pem"
	_tb_write_cert "$token" "$id" "$label" "$TB_DIR/certs/$label.pem"
}

# tb_write_ca_certs TOKEN [ID]: issuing CA certificate on the token as
# "Contoso Issuing CA" (default ID ca01) so that intermediates are found there.
tb_write_ca_certs() {
	tb_pki
	_tb_write_cert "$1" "${2:-ca01}" "Contoso Issuing CA" "$TB_DIR/pki/issuing.pem"
}

# tb_write_problem_cas TOKEN: the chain-problem CAs made so far (profiles
# capurpose and notca) on the token, "Contoso Server-only CA" as ID ca02 and
# "Contoso Not-a-CA" as ca03, where `scagent check` finds intermediates.
tb_write_problem_cas() {
	[ ! -f "$TB_DIR/pki/serveronly.pem" ] ||
		_tb_write_cert "$1" ca02 "Contoso Server-only CA" "$TB_DIR/pki/serveronly.pem"
	[ ! -f "$TB_DIR/pki/notca.pem" ] ||
		_tb_write_cert "$1" ca03 "Contoso Not-a-CA" "$TB_DIR/pki/notca.pem"
}

# tb_corrupt_cert TOKEN ID LABEL: a certificate object whose CKA_VALUE is
# truncated DER.  pkcs11-tool refuses unparseable certificates, so a valid one
# is written and then SoftHSM's object file is edited: in the file backend a
# public object's attributes are stored in clear as
# [type u64][kind u64][length u64][value], all big-endian.
tb_corrupt_cert() {
	local token=$1 id=$2 label=$3 der f
	_tb_need python3
	tb_cert_only "$token" "$id" "$label"
	der=$TB_DIR/work/$label.der
	local objs=("$TB_DIR"/tokens/*/*.object)
	_tb_run python3 - "$der" "${objs[@]}" <<-'EOF'
		import struct, sys
		der = open(sys.argv[1], "rb").read()
		hits = 0
		for path in sys.argv[2:]:
		    data = open(path, "rb").read()
		    hdr = struct.pack(">QQQ", 0x11, 3, len(der))  # CKA_VALUE, bytes, len
		    i = data.find(hdr + der)
		    if i < 0:
		        continue
		    keep = len(der) // 2  # truncated DER
		    new = (data[:i] + struct.pack(">QQQ", 0x11, 3, keep) + der[:keep]
		           + data[i + len(hdr) + len(der):])
		    open(path, "wb").write(new)
		    hits += 1
		if hits != 1:
		    sys.exit("expected exactly one object with that certificate, found %d" % hits)
	EOF
	rm -f "$TB_DIR/certs/$label.pem"
	_tb_log "corrupted certificate $label on $token"
}

# ---------------------------------------------------------------- demo card

# tb_demo_card: token "demo" (alice RSA-2048, bob EC P-256, carol RSA-3072,
# all good, plus the issuing CA) and token "negatives" (one certificate per
# negative profile, a certificate without key, a corrupt certificate and the
# issuing CA).
tb_demo_card() {
	tb_pki
	tb_softhsm_token demo
	tb_enroll demo 01 alice rsa:2048 good
	tb_enroll demo 02 bob EC:prime256v1 good
	tb_enroll demo 03 carol rsa:3072 good
	tb_write_ca_certs demo
	tb_softhsm_token negatives
	tb_enroll negatives 11 expired rsa:2048 expired
	tb_enroll negatives 12 notyet rsa:2048 notyet
	tb_enroll negatives 13 serverauth rsa:2048 serverauth
	tb_enroll negatives 14 noupn rsa:2048 noupn
	tb_enroll negatives 15 nodigsig rsa:2048 nodigsig
	tb_enroll negatives 16 weak rsa:1024 weak
	tb_enroll negatives 17 untrusted rsa:2048 untrusted
	tb_enroll negatives 18 multiupn rsa:2048 multiupn
	tb_enroll negatives 19 upnsubject EC:prime256v1 upnsubject
	tb_cert_only negatives 1a nokey
	tb_corrupt_cert negatives 1b corrupt
	# The issuing CA here too: a --cafile check then fails only for the
	# certificate from the rogue CA, not for every negative one.
	tb_write_ca_certs negatives
	_tb_log "demo card ready"
}

