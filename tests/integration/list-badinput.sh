#!/bin/bash
# `scagent --direct list` with bad input: an empty token, a corrupt
# certificate, modules that do not exist / are no modules / fail C_Initialize
# (fault-pkcs11), and broken configuration files.  Each gives a clear message
# and the rest of the output stays complete.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/list-common.sh"
[ -r "$FAULT_MODULE" ] || { echo "fault module $FAULT_MODULE not built (run make check)"; exit 99; }
tb_init
tb_softhsm_token demo
tb_enroll demo 01 alice rsa:2048 good
tb_write_ca_certs demo
tb_softhsm_token empty
tb_softhsm_token bad
tb_cert_only bad 1a nokey
tb_corrupt_cert bad 1b corrupt

W=$TB_DIR/badinput
mkdir -p "$W"
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# shape FILE: "label:cert,cert;..." sorted, the inventory in one line
shape() {
	jget "$1" '";".join(sorted(t["label"] + ":" + ",".join(sorted(c["label"] for c in t["certificates"])) for t in d["tokens"]))'
}
full="bad:corrupt,nokey;demo:Contoso Issuing CA,alice;empty:"

# ---- empty token, corrupt certificate
sca list --json >"$W/l.json" 2>"$W/l.err"
is "list --json: exit 0" $? 0
ok "list --json: nothing on stderr" test ! -s "$W/l.err"
ok "list --json: every token and certificate ($(shape "$W/l.json"))" test "$(shape "$W/l.json")" = "$full"
ok "empty token: certificates is an empty array" test \
	"$(jget "$W/l.json" '[t["certificates"] for t in d["tokens"] if t["label"] == "empty"]')" = "[[]]"
ok "empty token: its fields are there" test \
	"$(jget "$W/l.json" '[(t["manufacturer"], t["flags"]["login_required"]) for t in d["tokens"] if t["label"] == "empty"]')" = \
	"[('SoftHSM project', True)]"
corrupt='[c for t in d["tokens"] for c in t["certificates"] if c["label"] == "corrupt"][0]'
ok "corrupt: listed with its label, id, URI and an error" test \
	"$(jget "$W/l.json" "(lambda c: (c['id'], c['uri'].startswith('pkcs11:') and 'object=corrupt' in c['uri'], bool(c['error']), c['cba']))($corrupt)")" = \
	"('1b', True, True, {'suitable': False, 'problems': ['unparseable']})"
ok "corrupt: its sha256 is that of the object's bytes" test \
	"$(jget "$W/l.json" "$corrupt['sha256']")" = \
	"$(pkcs11-tool --module "$TB_SOFTHSM" --token-label bad --read-object --type cert --id 1b 2>/dev/null | openssl dgst -sha256 -r | cut -d' ' -f1)"
ok "nokey next to it: complete" test \
	"$(jget "$W/l.json" '[(c["subject"], c["upn"], c["key"]["type"]) for t in d["tokens"] for c in t["certificates"] if c["label"] == "nokey"]')" = \
	"[('CN=nokey,O=Contoso', ['nokey@contoso.com'], 'rsa')]"
sca list >"$W/h.txt" 2>"$W/h.err"
is "list (human): exit 0" $? 0
if grep -A3 '^Token "empty"' "$W/h.txt" | grep -q '^  (no certificates)$'; then
	pass "human: empty token says (no certificates)"
else fail "human: empty token says (no certificates)" "$(cat "$W/h.txt")"; fi
if grep -A2 '^  corrupt  \[' "$W/h.txt" | grep -q 'error: .*DER'; then
	pass "human: corrupt shown with its error"
else fail "human: corrupt shown with its error" "$(cat "$W/h.txt")"; fi
file_has "human: alice still shown" "$W/h.txt" "  alice  [CBA ok]"
file_has "human: nokey still shown" "$W/h.txt" "  nokey  ["
sca check corrupt --json >"$W/c.json" 2>"$W/c.err"
is "check corrupt: exit 1" $? 1
ok "check corrupt: unparseable with its error" test \
	"$(jget "$W/c.json" '(d["label"], d["cba"]["problems"], "error" in d)')" = "('corrupt', ['unparseable'], True)"

# ---- modules that do not load
missing=$TB_DIR/nowhere/libmissing.so
head -c 4096 /dev/zero | tr '\0' x >"$W/notamodule.so"	# longer than an ELF header
"$SCAGENT" --direct --module "$missing" --module "$W/notamodule.so" --module "$TB_SOFTHSM" \
	list --json >"$W/m.json" 2>"$W/m.err"
is "missing module + non-module + SoftHSM: exit 0" $? 0
ok "... the SoftHSM tokens still complete" test "$(shape "$W/m.json")" = "$full"
ok "... JSON errors name both modules with the reason" test \
	"$(jget "$W/m.json" '[(e["module"], e["error"]) for e in d["errors"]]')" = \
	"[('$missing', 'cannot resolve the module path: No such file or directory'), ('$W/notamodule.so', 'cannot load: $W/notamodule.so: invalid ELF header')]"
file_has "... stderr names the missing module and why" "$W/m.err" \
	"scagent: module $missing: cannot resolve the module path: No such file or directory"
file_has "... stderr names the non-module and why" "$W/m.err" "scagent: module $W/notamodule.so: cannot load:"
ok "... two lines on stderr" test "$(wc -l <"$W/m.err")" = 2
"$SCAGENT" --direct --module "$missing" --module "$TB_SOFTHSM" list >"$W/mh.txt" 2>"$W/mh.err"
is "missing module, human list: exit 0" $? 0
file_has "... tokens still listed" "$W/mh.txt" "  alice  [CBA ok]"
file_has "... error on stderr" "$W/mh.err" "module $missing: cannot resolve the module path"
"$SCAGENT" --direct --module "$missing" list >"$W/only.txt" 2>"$W/only.err"
is "only a missing module: exit 0 (nothing to list is no failure)" $? 0
file_has "... says there are no tokens" "$W/only.txt" "No tokens."
file_has "... and why" "$W/only.err" "module $missing: cannot resolve the module path"

# ---- a module whose C_Initialize fails (fault-pkcs11)
SCAGENT_FAULT= "$SCAGENT" --direct --module "$FAULT_MODULE" list --json >"$W/f0.json" 2>"$W/f0.err"
is "fault module without faults: exit 0" $? 0
ok "fault module without faults forwards to SoftHSM" test "$(shape "$W/f0.json")" = "$full"
SCAGENT_FAULT=init "$SCAGENT" --direct --module "$FAULT_MODULE" --module "$TB_SOFTHSM" \
	list --json >"$W/f.json" 2>"$W/f.err"
is "C_Initialize fails in one module: exit 0" $? 0
ok "... the other module's tokens complete" test "$(shape "$W/f.json")" = "$full"
ok "... JSON errors: the module's path and the reason" test \
	"$(jget "$W/f.json" '[(e["module"], e["error"]) for e in d["errors"]]')" = \
	"[('$FAULT_MODULE', 'C_Initialize failed: Device error')]"
file_has "... stderr: path and reason" "$W/f.err" "scagent: module $FAULT_MODULE: C_Initialize failed: Device error"
echo "$TB_PIN" | SCAGENT_FAULT=login-fail=CKR_PIN_LOCKED "$SCAGENT" --direct --module "$FAULT_MODULE" \
	list --login demo --pin-stdin --json >/dev/null 2>"$W/lf.err"
is "fault login-fail=CKR_PIN_LOCKED: login fails, exit 1" $? 1
file_has "... and says the PIN is locked" "$W/lf.err" 'login to token "demo" failed: PIN locked'
SCAGENT_FAULT=no-such-fault "$SCAGENT" --direct --module "$FAULT_MODULE" list >/dev/null 2>"$W/typo.err"
file_has "fault module: an unknown fault word is reported, not ignored" "$W/typo.err" \
	"fault-pkcs11: unknown fault 'no-such-fault'"

# ---- configuration
cfg=$TB_DIR/conf
mkdir -p "$cfg/modules.d"
printf '# test\nlog-level = info\n' >"$cfg/scagent.conf"
printf 'module: %s\n' "$missing" >"$cfg/modules.d/a-missing.module"
printf 'module: %s\n' "$TB_SOFTHSM" >"$cfg/modules.d/softhsm.module"
printf 'disable-in: scagent\nmodule: %s\n' "$TB_DIR/disabled/libx.so" >"$cfg/modules.d/z-off.module"
"$SCAGENT" --direct --config "$cfg/scagent.conf" list --json >"$W/cf.json" 2>"$W/cf.err"
is "config with a module file naming a missing module: exit 0" $? 0
ok "... the configured SoftHSM tokens complete" test "$(shape "$W/cf.json")" = "$full"
ok "... JSON errors name the missing module (and not the disabled one)" test \
	"$(jget "$W/cf.json" '[e["module"] for e in d["errors"]]')" = "['$missing']"
file_has "... stderr names it and why" "$W/cf.err" "module $missing: cannot resolve the module path"

printf '# test\nlog-level = info\nthis line has no value\n' >"$W/syntax.conf"
"$SCAGENT" --direct --config "$W/syntax.conf" list >"$W/syn.out" 2>"$W/syn.err"
is "--config with a syntax error: exit 2" $? 2
file_has "... file and line number in the message" "$W/syn.err" "$W/syntax.conf:3: expected 'name = value'"
ok "... nothing listed" test ! -s "$W/syn.out"
printf 'log-level = info\ncolour = blue\n' >"$W/unknown.conf"
"$SCAGENT" --direct --config "$W/unknown.conf" list >/dev/null 2>"$W/unk.err"
is "--config with an unknown setting: exit 2" $? 2
file_has "... names the setting and its line" "$W/unk.err" "$W/unknown.conf:2: unknown setting 'colour'"
"$SCAGENT" --direct --config "$W/none.conf" list >/dev/null 2>"$W/none.err"
is "--config that does not exist: exit 2" $? 2
file_has "... names the file and why" "$W/none.err" "$W/none.conf: cannot open: No such file or directory"
mkdir -p "$W/c2/modules.d"
: >"$W/c2/scagent.conf"
printf '# no module line\npriority: 1\n' >"$W/c2/modules.d/nomod.module"
"$SCAGENT" --direct --config "$W/c2/scagent.conf" list >/dev/null 2>"$W/nomod.err"
is "a .module file without module: line: exit 2" $? 2
file_has "... names the file and what is missing" "$W/nomod.err" \
	"$W/c2/modules.d/nomod.module: no 'module:' line"
printf 'module = %s\nthis is junk\n' "$TB_SOFTHSM" >"$W/c2/modules.d/nomod.module"
"$SCAGENT" --direct --config "$W/c2/scagent.conf" list >/dev/null 2>"$W/modsyn.err"
is "a .module file with a syntax error: exit 2" $? 2
file_has "... file and line number" "$W/modsyn.err" "$W/c2/modules.d/nomod.module:2: expected 'name: value'"

done_testing
