#!/usr/bin/env python3
"""Check `scagent list --json` of the test bed's demo card field by field.

Every value is compared with an independent source: the token fields with
`pkcs11-tool -L`, the certificate fields with `openssl x509` on the PEM files
the test bed issued, and the rest (UPNs, EKUs, key usage, keys, CBA problems)
with what each test-bed profile was issued to be.  Each pkcs11: URI is parsed
and handed back to `scagent check`, which must select the same certificate.

usage: list-json-check.py LIST.json --certs DIR --slots PKCS11-TOOL-L.txt
           --module PATH [--logged-in TOKEN]... [--cafile] [--check-cmd CMD...]
Prints TAP-like "ok"/"not ok" lines without numbers ("ok - ..."); exits 1 when
anything failed.
"""
import argparse
import json
import subprocess
import sys
import urllib.parse

RSA_KU = ["digitalSignature", "keyEncipherment"]
EC_KU = ["digitalSignature"]
EKU = ["clientAuth", "msSmartcardLogin"]
CA = "Contoso Issuing CA"


def rsa(bits):
    return {"type": "rsa", "bits": bits}


EC = {"type": "ec", "bits": 256, "curve": "prime256v1"}


def user(label, key, ku, upn=None, problems=(), eku=EKU, haskey=True):
    return {"label": label, "key": key, "ku": ku, "eku": eku, "problems": list(problems),
            "upn": [label + "@contoso.com"] if upn is None else upn,
            "email": [label + "@contoso.com"], "haskey": haskey}


CA_ENTRY = {"label": CA, "key": rsa(2048), "ku": ["keyCertSign", "cRLSign"], "eku": [],
            "upn": [], "email": [], "problems": ["no-upn", "no-digital-signature"],
            "haskey": False}

# (token, id) -> what the test bed issued (tests/testbed/testbed.sh)
EXPECTED = {
    ("demo", "01"): user("alice", rsa(2048), RSA_KU),
    ("demo", "02"): user("bob", EC, EC_KU),
    ("demo", "03"): user("carol", rsa(3072), RSA_KU),
    ("demo", "ca01"): CA_ENTRY,
    ("negatives", "11"): user("expired", rsa(2048), RSA_KU, problems=["expired"]),
    ("negatives", "12"): user("notyet", rsa(2048), RSA_KU, problems=["not-yet-valid"]),
    ("negatives", "13"): user("serverauth", rsa(2048), RSA_KU, eku=["serverAuth"],
                              problems=["no-client-auth-eku"]),
    ("negatives", "14"): user("noupn", rsa(2048), RSA_KU, upn=[], problems=["no-upn"]),
    ("negatives", "15"): user("nodigsig", rsa(2048), ["keyEncipherment"],
                              problems=["no-digital-signature"]),
    ("negatives", "16"): user("weak", rsa(1024), RSA_KU, problems=["weak-key"]),
    ("negatives", "17"): user("untrusted", rsa(2048), RSA_KU),
    ("negatives", "18"): user("multiupn", rsa(2048), RSA_KU,
                              upn=["multiupn@contoso.com", "j\u00fcrgen@contoso.com"]),
    ("negatives", "19"): user("upnsubject", EC, EC_KU),
    ("negatives", "1a"): user("nokey", rsa(2048), RSA_KU, haskey=False),
    ("negatives", "1b"): {"label": "corrupt", "corrupt": True},
    ("negatives", "ca01"): CA_ENTRY,
}
# INTERFACE.md's order of problem codes
ORDER = ["no-client-auth-eku", "no-upn", "expired", "not-yet-valid", "no-digital-signature",
         "no-private-key", "weak-key", "chain-untrusted"]

failed = 0


def check(desc, cond, detail=""):
    global failed
    if cond:
        print("ok - " + desc)
    else:
        failed += 1
        print("not ok - " + desc)
        if detail:
            for line in str(detail).splitlines():
                print("#   " + line)


def eq(desc, got, want):
    check(desc, got == want, "got:  %r\nwant: %r" % (got, want))


def openssl(pem, *args):
    out = subprocess.run(["openssl", "x509", "-in", pem, "-noout"] + list(args),
                         check=True, capture_output=True, text=True).stdout.strip()
    return out.split("=", 1)[1] if "=" in out else out


def verify_reason(cafile, untrusted, pem):
    """openssl verify's reason: "error 20 at 0 depth lookup: REASON" -> REASON"""
    r = subprocess.run(["openssl", "verify", "-CAfile", cafile, "-untrusted", untrusted, pem],
                       capture_output=True, text=True)
    for line in (r.stdout + r.stderr).splitlines():
        if line.startswith("error ") and ": " in line:
            return line.split(": ", 1)[1].strip()
    return "(openssl verify accepted it)"


def read_slots(path):
    """pkcs11-tool -L: {token label: {slot, reader, manufacturer, model, serial, flags}}"""
    tokens, cur = {}, None
    for line in open(path, encoding="utf-8"):
        if line.startswith("Slot "):
            # "Slot 0 (0x5c7ca9f4): SoftHSM slot ID 0x5c7ca9f4"
            head, reader = line.rstrip("\n").split(": ", 1)
            cur = {"slot": int(head.split("(")[1].rstrip(")"), 16), "reader": reader.strip()}
            continue
        if cur is None or ":" not in line:
            continue
        key, val = (s.strip() for s in line.split(":", 1))
        if key == "token label":
            tokens[val] = cur
        cur[key] = val
    return tokens


def parse_uri(uri):
    """RFC 7512 path attributes -> {name: bytes}"""
    if not uri.startswith("pkcs11:"):
        return None
    path = uri[len("pkcs11:"):].split("?", 1)[0]
    attrs = {}
    for part in path.split(";"):
        if part:
            k, v = part.split("=", 1)
            attrs[k] = urllib.parse.unquote_to_bytes(v)
    return attrs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("list")
    ap.add_argument("--certs", required=True)
    ap.add_argument("--slots", required=True)
    ap.add_argument("--module", required=True)
    ap.add_argument("--logged-in", action="append", default=[])
    ap.add_argument("--cafile", help="the list was made with --cafile FILE")
    ap.add_argument("--intermediate", help="the issuing CA (on the token)")
    ap.add_argument("--extra-token", action="append", default=[],
                    help="a token that may be there too (not checked here)")
    ap.add_argument("--check-cmd", nargs=argparse.REMAINDER, default=None)
    a = ap.parse_args()

    doc = json.load(open(a.list, encoding="utf-8"))
    slots = read_slots(a.slots)
    eq("top level: tokens (and no errors)", sorted(k for k in doc if k not in ("readers", "readers_error")), ["tokens"])
    labels = sorted(t["label"] for t in doc["tokens"] if t["label"] not in a.extra_token)
    eq("tokens demo and negatives listed", labels, ["demo", "negatives"])
    seen = set()
    for t in doc["tokens"]:
        tl = t["label"]
        if tl in a.extra_token:
            continue
        p = slots.get(tl, {})
        logged = tl in a.logged_in
        eq(tl + ": module", t["module"], a.module)
        eq(tl + ": slot", t["slot"], p.get("slot"))
        eq(tl + ": reader", t["reader"], p.get("reader"))
        eq(tl + ": manufacturer", t["manufacturer"], p.get("token manufacturer"))
        eq(tl + ": model", t["model"], p.get("token model"))
        eq(tl + ": serial", t["serial"], p.get("serial num"))
        pf = p.get("token flags", "")
        eq(tl + ": flags", {k: t["flags"].get(k) for k in
                            ("login_required", "logged_in", "pin_count_low", "pin_final_try",
                             "pin_locked")},
           {"login_required": "login required" in pf, "logged_in": logged,
            "pin_count_low": "user PIN count low" in pf,
            "pin_final_try": "user PIN final try" in pf,
            "pin_locked": "user PIN locked" in pf})
        for c in t["certificates"]:
            key = (tl, c.get("id"))
            exp = EXPECTED.get(key)
            name = "%s/%s" % (tl, c.get("label"))
            if exp is None:
                check(name + ": expected on this token", False, json.dumps(c))
                continue
            seen.add(key)
            eq(name + ": label", c["label"], exp["label"])
            uri = parse_uri(c.get("uri", ""))
            check(name + ": uri is a pkcs11: URI", uri is not None, c.get("uri"))
            if uri is not None:
                eq(name + ": uri attributes", {k: uri.get(k) for k in
                                               ("token", "serial", "manufacturer", "model",
                                                "id", "object", "type")},
                   {"token": tl.encode(), "serial": t["serial"].encode(),
                    "manufacturer": t["manufacturer"].encode(), "model": t["model"].encode(),
                    "id": bytes.fromhex(c["id"]), "object": exp["label"].encode(),
                    "type": b"cert"})
                if a.check_cmd:
                    r = subprocess.run(a.check_cmd + [c["uri"], "--json"], capture_output=True,
                                       text=True)
                    try:
                        got = json.loads(r.stdout).get("sha256")
                    except ValueError:
                        got = "(no JSON: %r %r)" % (r.stdout[:200], r.stderr[:200])
                    eq(name + ": `check <uri>` selects this certificate", got, c["sha256"])
            if exp.get("corrupt"):
                check(name + ": listed with an error", bool(c.get("error")), json.dumps(c))
                eq(name + ": nothing parsed is claimed",
                   sorted(set(c) & {"subject", "issuer", "serial", "not_before", "upn", "key"}),
                   [])
                check(name + ": sha256 of the object", len(c.get("sha256", "")) == 64)
                eq(name + ": cba", c.get("cba"), {"suitable": False, "problems": ["unparseable"]})
                continue
            pem = "%s/%s.pem" % (a.certs, "issuing" if exp["label"] == CA else exp["label"])
            eq(name + ": subject", c["subject"], openssl(pem, "-subject", "-nameopt", "RFC2253"))
            eq(name + ": issuer", c["issuer"], openssl(pem, "-issuer", "-nameopt", "RFC2253"))
            eq(name + ": serial", c["serial"], openssl(pem, "-serial").lower())
            eq(name + ": not_before", c["not_before"],
               openssl(pem, "-startdate", "-dateopt", "iso_8601").replace(" ", "T"))
            eq(name + ": not_after", c["not_after"],
               openssl(pem, "-enddate", "-dateopt", "iso_8601").replace(" ", "T"))
            eq(name + ": sha256", c["sha256"],
               openssl(pem, "-fingerprint", "-sha256").replace(":", "").lower())
            eq(name + ": upn", c["upn"], exp["upn"])
            eq(name + ": email", c["email"], exp["email"])
            eq(name + ": eku", c["eku"], exp["eku"])
            eq(name + ": key_usage", c["key_usage"], exp["ku"])
            if logged:
                pk = "present" if exp["haskey"] else "absent"
            else:
                pk = "unknown"  # SoftHSM hides private keys before login
            eq(name + ": key", c["key"], dict(exp["key"], private_key=pk))
            probs = list(exp["problems"])
            if pk == "absent":
                probs.append("no-private-key")
            if a.cafile and exp["label"] == "untrusted":
                probs.append("chain-untrusted")
            probs.sort(key=ORDER.index)
            eq(name + ": cba", {k: c["cba"].get(k) for k in ("suitable", "problems")},
               {"suitable": not probs, "problems": probs})
            if "chain-untrusted" in probs:
                eq(name + ": chain_error is OpenSSL's reason", c["cba"].get("chain_error"),
                   verify_reason(a.cafile, a.intermediate, pem))
            elif a.cafile:
                check(name + ": no chain_error", "chain_error" not in c["cba"], json.dumps(c["cba"]))
    eq("every test-bed certificate listed", sorted(set(EXPECTED) - seen), [])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
