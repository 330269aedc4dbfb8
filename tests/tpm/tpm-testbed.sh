# shellcheck shell=bash
# TPM test bed: a private software TPM (swtpm) behind a private resource
# manager (tpm2-abrmd on a private D-Bus session bus), and a private
# tpm2-pkcs11 store, for one test.  Source after tests/testbed/testbed.sh:
#
#     . "$TOP_SRCDIR/tests/testbed/testbed.sh"
#     . "$TOP_SRCDIR/tests/tpm/tpm-testbed.sh"
#     tb_init
#     tb_tpm_start
#
# Exports TPM2_PKCS11_TCTI, TPM2TOOLS_TCTI (both to the private abrmd),
# TPM2_PKCS11_STORE ($TB_DIR/tpm2store) and TB_TPM2_PKCS11 (the module).
# Every process is tracked with tb_track_pid, so tb_init's EXIT trap stops
# them.  A test that lacks one of the tools is skipped (skip_all).

TB_TPM2_PKCS11=${TB_TPM2_PKCS11:-/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so}
export TB_TPM2_PKCS11

# tb_tpm_need: skip the test when a TPM tool is missing.
tb_tpm_need() {
	local t
	for t in swtpm tpm2-abrmd dbus-daemon tpm2_getcap tpm2_startup; do
		command -v "$t" >/dev/null 2>&1 || skip_all "$t not installed"
	done
	[ -r "$TB_TPM2_PKCS11" ] || skip_all "$TB_TPM2_PKCS11 not installed"
}

_tb_wait_for() {
	local what=$1 pid=$2 log=$3
	shift 3
	for _ in $(seq 100); do
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			cat "$log" >&2 2>/dev/null
			_tb_die "$what exited"
		fi
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	cat "$log" >&2 2>/dev/null
	_tb_die "$what did not come up within 10 s"
}

# tb_tpm_start: swtpm + dbus-daemon + tpm2-abrmd on fresh ports.
tb_tpm_start() {
	local d=$TB_DIR/tpm p c pid
	tb_tpm_need
	mkdir -p "$d/state" "$TB_DIR/tpm2store"
	# The swtpm TCTI expects the control channel on the next port.
	for _ in $(seq 50); do
		p=$(tb_port)
		c=$((p + 1))
		if ! grep -qx "$c" "$TB_DIR/ports" && ! _tb_port_busy "$c"; then
			echo "$c" >>"$TB_DIR/ports"
			break
		fi
		c=
	done
	[ -n "$c" ] || _tb_die "no two consecutive free TCP ports found"
	swtpm socket --tpm2 --tpmstate "dir=$d/state" \
		--flags not-need-init,startup-clear \
		--server "type=tcp,port=$p,bindaddr=127.0.0.1" \
		--ctrl "type=tcp,port=$c,bindaddr=127.0.0.1" \
		--log "file=$d/swtpm.log" </dev/null >>"$d/swtpm.out" 2>&1 &
	pid=$!
	tb_track_pid "$pid"
	_tb_wait_for swtpm "$pid" "$d/swtpm.out" _tb_listening "$p"
	TB_TPM_PORT=$p
	# A private session bus: abrmd's well-known name cannot clash with
	# another test's.
	dbus-daemon --session --fork --nopidfile --print-address=3 --print-pid=4 \
		3>"$d/bus.addr" 4>"$d/bus.pid" </dev/null >>"$d/dbus.out" 2>&1 ||
		_tb_die "dbus-daemon failed to start"
	tb_track_pid "$(cat "$d/bus.pid")"
	DBUS_SESSION_BUS_ADDRESS=$(head -n1 "$d/bus.addr")
	export DBUS_SESSION_BUS_ADDRESS
	tpm2-abrmd --allow-root --session --tcti="swtpm:host=127.0.0.1,port=$p" \
		--flush-all </dev/null >>"$d/abrmd.out" 2>&1 &
	pid=$!
	tb_track_pid "$pid"
	TPM2_PKCS11_TCTI="tabrmd:bus_type=session"
	TPM2TOOLS_TCTI="tabrmd:bus_type=session"
	TPM2_PKCS11_STORE=$TB_DIR/tpm2store
	export TPM2_PKCS11_TCTI TPM2TOOLS_TCTI TPM2_PKCS11_STORE
	_tb_wait_for tpm2-abrmd "$pid" "$d/abrmd.out" tpm2_getcap properties-variable
	# tpm2-pkcs11 logs to stderr at this level: errors only.
	TPM2_PKCS11_LOG_LEVEL=${TPM2_PKCS11_LOG_LEVEL:-0}
	export TPM2_PKCS11_LOG_LEVEL
	_tb_log "TPM on 127.0.0.1:$p, abrmd on $DBUS_SESSION_BUS_ADDRESS"
}

# tb_tpm_lockout_counter: TPM2_PT_LOCKOUT_COUNTER now.
tb_tpm_lockout_counter() {
	tpm2_getcap properties-variable 2>/dev/null |
		sed -n 's/^TPM2_PT_LOCKOUT_COUNTER: *\(0x[0-9A-Fa-f]*\|[0-9]*\).*/\1/p' |
		{ read -r v; [ -n "$v" ] || _tb_die "cannot read TPM2_PT_LOCKOUT_COUNTER"; echo $((v)); }
}
