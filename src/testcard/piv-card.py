#!/usr/bin/python3
# scagent test kit: an emulated PIV card for vsmartcard's vpcd.
#
#     piv-card.py run STATE.json [--host H] [--port P] [--once]
#     piv-card.py make-state --out STATE.json --pin PIN --puk PUK [--retries N]
#                 [--slot 9a:KEY.der:CERT.der]...
#
# `run` plugs the card into vpcd (the virtual reader of pcscd): the card is in
# the reader while this process runs, and removed when it stops. It speaks
# vpcd's framing itself (a 2-byte big-endian length, then a control byte or
# an APDU) rather than going through vicc, whose Debian package does not
# import without a shim, and whose card types cannot be extended from outside.
# Only the Python standard library is needed.
#
# What the card implements (NIST SP 800-73-4, the part OpenSC's PIV driver
# uses): SELECT of the PIV application; GET DATA for the discovery object,
# the CHUID and the certificates of keys 9A/9C/9D/9E; VERIFY of the PIV
# application PIN (key reference 80) with a retry counter (63 Cx, then 69 83),
# the empty VERIFY that reads the counter and VERIFY P1=FF that logs out;
# CHANGE REFERENCE DATA and RESET RETRY COUNTER (with the PUK); GENERAL
# AUTHENTICATE for RSA-2048 (raw RSA on the padded block OpenSC sends) and EC
# P-256 (ECDSA over the hash OpenSC sends, DER result). Command chaining
# (CLA 10) and GET RESPONSE (61 xx) carry the long objects. Key 9C needs the
# PIN immediately before every signature (PIN "always"), as on real cards.
#
# The retry counter is written back to STATE.json at once, so a test can read
# it (key "pin_tries_left"). Keys are stored in the clear: this is a test
# card, never a place for a real key.

import argparse
import json
import os
import secrets
import signal
import socket
import struct
import sys
import time

PIV_AID = bytes.fromhex("a000000308000010000100")

# GET DATA tags of the certificate for each key reference
CERT_TAG = {0x9A: "5fc105", 0x9C: "5fc10a", 0x9D: "5fc10b", 0x9E: "5fc101"}
CHUID_TAG = "5fc102"
DISCOVERY_TAG = "7e"

# GENERAL AUTHENTICATE algorithm identifiers (SP 800-78-4)
ALG_RSA2048 = 0x07
ALG_P256 = 0x11

SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6a\x82"
SW_WRONG_DATA = b"\x6a\x80"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_SEC_STATUS = b"\x69\x82"
SW_BLOCKED = b"\x69\x83"
SW_COND = b"\x69\x85"
SW_INS = b"\x6d\x00"
SW_CLA = b"\x6e\x00"
SW_LENGTH = b"\x67\x00"


# ---------------------------------------------------------------- DER / TLV

def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, value):
    t = bytes.fromhex(tag) if isinstance(tag, str) else bytes([tag])
    return t + der_len(len(value)) + value


def der_read(buf, pos):
    """One DER element at pos: (tag, value, next position)."""
    tag = buf[pos]
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[pos:pos + k], "big")
        pos += k
    if pos + n > len(buf):
        raise ValueError("truncated DER")
    return tag, buf[pos:pos + n], pos + n


def der_children(value):
    out, pos = [], 0
    while pos < len(value):
        tag, v, pos = der_read(value, pos)
        out.append((tag, v))
    return out


def der_int(i):
    b = i.to_bytes((i.bit_length() + 8) // 8, "big")  # room for a sign bit
    return tlv(0x02, b)


def parse_key(der):
    """A PKCS#1 RSAPrivateKey or SEC1 ECPrivateKey (P-256) in DER -> dict."""
    tag, seq, _ = der_read(der, 0)
    if tag != 0x30:
        raise ValueError("not a DER SEQUENCE")
    items = der_children(seq)
    if len(items) >= 9 and all(t == 0x02 for t, _ in items[:9]):
        n, e, d, p, q = (int.from_bytes(v, "big") for _, v in items[1:6])
        return {"type": "rsa", "n": hex(n), "e": hex(e), "d": hex(d),
                "p": hex(p), "q": hex(q)}
    if len(items) >= 2 and items[0][0] == 0x02 and items[1][0] == 0x04:
        d = int.from_bytes(items[1][1], "big")
        if len(items[1][1]) != 32:
            raise ValueError("only EC P-256 keys are supported")
        return {"type": "ec", "curve": "prime256v1", "d": hex(d)}
    raise ValueError("neither an RSA (PKCS#1) nor an EC (SEC1) private key")


# ---------------------------------------------------------------- crypto

P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
          0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def ec_add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    p = P256_P
    if a[0] == b[0]:
        if (a[1] + b[1]) % p == 0:
            return None
        lam = (3 * a[0] * a[0] - 3) * pow(2 * a[1], -1, p) % p
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, p) % p
    x = (lam * lam - a[0] - b[0]) % p
    return (x, (lam * (a[0] - x) - a[1]) % p)


def ec_mul(k, pt):
    acc = None
    for bit in bin(k)[2:]:
        acc = ec_add(acc, acc)
        if bit == "1":
            acc = ec_add(acc, pt)
    return acc


def ecdsa_sign(d, digest):
    e = int.from_bytes(digest[:32], "big")
    if len(digest) < 32:
        e = int.from_bytes(digest, "big")
    while True:
        k = secrets.randbelow(P256_N - 1) + 1
        r = ec_mul(k, P256_G)[0] % P256_N
        s = pow(k, -1, P256_N) * (e + r * d) % P256_N
        if r and s:
            return tlv(0x30, der_int(r) + der_int(s))


def rsa_raw(key, block):
    n = int(key["n"], 16)
    size = (n.bit_length() + 7) // 8
    m = int.from_bytes(block, "big")
    if len(block) != size or m >= n:
        return None
    d, p, q = int(key["d"], 16), int(key["p"], 16), int(key["q"], 16)
    # CRT: four times faster than m^d mod n
    m1 = pow(m, d % (p - 1), p)
    m2 = pow(m, d % (q - 1), q)
    h = pow(q, -1, p) * (m1 - m2) % p
    return (m2 + h * q).to_bytes(size, "big")


# ---------------------------------------------------------------- the card

class PivCard:
    def __init__(self, path):
        self.path = path
        with open(path) as f:
            self.state = json.load(f)
        self.slots = {int(k, 16): v for k, v in self.state["slots"].items()}
        self.power_on()

    def power_on(self):
        self.selected = False
        self.verified = False
        self.always_ok = False  # PIN verified for the next 9C operation
        self.chain = b""
        self.pending = b""

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1)
        os.replace(tmp, self.path)

    # -- objects

    def objects(self):
        objs = {}
        guid = bytes.fromhex(self.state["guid"])
        fascn = bytes.fromhex("d4e739da739ced39ce739d836858210842108421c84210c3eb")
        chuid = tlv(0x30, fascn) + tlv(0x34, guid) + tlv(0x35, b"20991231") + \
            tlv(0x3E, b"") + tlv(0xFE, b"")
        objs[CHUID_TAG] = tlv(0x53, chuid)
        # discovery: the AID and the PIN usage policy (application PIN only)
        objs[DISCOVERY_TAG] = tlv(0x7E, tlv(0x4F, PIV_AID) + tlv("5f2f", b"\x40\x00"))
        for ref, slot in self.slots.items():
            cert = bytes.fromhex(slot["cert"])
            objs[CERT_TAG[ref]] = tlv(0x53, tlv(0x70, cert) + tlv(0x71, b"\x00") + tlv(0xFE, b""))
        return objs

    # -- APDUs

    def execute(self, apdu):
        try:
            cla, ins, p1, p2, data, ne = parse_apdu(apdu)
        except ValueError:
            return SW_LENGTH
        if cla & ~0x10 != 0x00:
            return SW_CLA
        if ins == 0xC0:
            return self.get_response(ne)
        self.pending = b""
        if cla & 0x10:
            if ins not in (0x87, 0xDB):
                return b"\x68\x84"  # chaining not supported for this command
            self.chain += data
            return SW_OK
        data, self.chain = self.chain + data, b""
        handler = {0xA4: self.select, 0xCB: self.get_data, 0x20: self.verify,
                   0x24: self.change_pin, 0x2C: self.reset_retry,
                   0x87: self.general_authenticate}.get(ins)
        if handler is None:
            return SW_INS
        if ins != 0xA4 and not self.selected:
            return SW_NOT_FOUND if ins == 0xCB else SW_COND
        return self.respond(*handler(p1, p2, data), ne)

    def respond(self, data, sw, ne):
        if len(data) <= ne:
            return data + sw
        self.pending = data[ne:]
        return data[:ne] + next_chunk_sw(len(self.pending))

    def get_response(self, ne):
        if not self.pending:
            return b"\x6f\x00"
        chunk, self.pending = self.pending[:ne], self.pending[ne:]
        return chunk + (next_chunk_sw(len(self.pending)) if self.pending else SW_OK)

    def select(self, p1, p2, data):
        if p1 != 0x04:
            return b"", SW_NOT_FOUND
        if not data or not PIV_AID.startswith(data):
            return b"", SW_NOT_FOUND
        self.selected = True
        algs = b"".join(tlv(0x80, bytes([a])) for a in (ALG_RSA2048, ALG_P256)) + tlv(0x06, b"\x00")
        apt = tlv(0x4F, PIV_AID[5:]) + tlv(0x79, tlv(0x4F, PIV_AID[:5])) + \
            tlv(0x50, b"scagent test PIV") + tlv(0xAC, algs)
        return tlv(0x61, apt), SW_OK

    def get_data(self, p1, p2, data):
        if (p1, p2) != (0x3F, 0xFF):
            return b"", SW_WRONG_P1P2
        try:
            tag, value, _ = der_read(data, 0)
        except (ValueError, IndexError):
            return b"", SW_WRONG_DATA
        if tag != 0x5C:
            return b"", SW_WRONG_DATA
        obj = self.objects().get(value.hex())
        if obj is None:
            return b"", SW_NOT_FOUND
        return obj, SW_OK

    def tries_sw(self):
        left = self.state["pin_tries_left"]
        return SW_BLOCKED if left == 0 else bytes([0x63, 0xC0 | min(left, 15)])

    def check_pin(self, given, which):
        """Constant-time compare of an 8-byte padded PIN or PUK."""
        want = self.state[which].encode().ljust(8, b"\xff")
        return len(given) == 8 and secrets.compare_digest(given, want)

    def verify(self, p1, p2, data):
        if p2 != 0x80:
            return b"", SW_NOT_FOUND
        if p1 == 0xFF:  # reset the security status (log out)
            self.verified = self.always_ok = False
            return b"", SW_OK
        if p1 != 0x00:
            return b"", SW_WRONG_P1P2
        if not data:  # how many tries are left
            return b"", (SW_OK if self.verified else self.tries_sw())
        if self.state["pin_tries_left"] == 0:
            return b"", SW_BLOCKED
        if self.check_pin(data, "pin"):
            self.verified = self.always_ok = True
            if self.state["pin_tries_left"] != self.state["pin_retries"]:
                self.state["pin_tries_left"] = self.state["pin_retries"]
                self.save()
            return b"", SW_OK
        self.verified = self.always_ok = False
        self.state["pin_tries_left"] -= 1
        self.save()
        return b"", self.tries_sw()

    def change_pin(self, p1, p2, data):
        if (p1, p2) != (0x00, 0x80) or len(data) != 16:
            return b"", SW_WRONG_DATA
        if self.state["pin_tries_left"] == 0:
            return b"", SW_BLOCKED
        if not self.check_pin(data[:8], "pin"):
            self.state["pin_tries_left"] -= 1
            self.save()
            return b"", self.tries_sw()
        self.state["pin"] = data[8:].rstrip(b"\xff").decode("ascii", "replace")
        self.state["pin_tries_left"] = self.state["pin_retries"]
        self.save()
        return b"", SW_OK

    def reset_retry(self, p1, p2, data):
        if (p1, p2) != (0x00, 0x80) or len(data) != 16:
            return b"", SW_WRONG_DATA
        if not self.check_pin(data[:8], "puk"):
            return b"", b"\x63\xc0"
        self.state["pin"] = data[8:].rstrip(b"\xff").decode("ascii", "replace")
        self.state["pin_tries_left"] = self.state["pin_retries"]
        self.save()
        return b"", SW_OK

    def general_authenticate(self, alg, ref, data):
        slot = self.slots.get(ref)
        if slot is None:
            return b"", SW_NOT_FOUND
        key = slot["key"]
        if (key["type"], alg) not in (("rsa", ALG_RSA2048), ("ec", ALG_P256)):
            return b"", SW_WRONG_P1P2
        if ref != 0x9E and not self.verified:
            return b"", SW_SEC_STATUS
        if ref == 0x9C and not self.always_ok:
            return b"", SW_SEC_STATUS
        try:
            tag, dyn, _ = der_read(data, 0)
            parts = dict(der_children(dyn)) if tag == 0x7C else {}
        except (ValueError, IndexError):
            return b"", SW_WRONG_DATA
        challenge = parts.get(0x81)
        if challenge is None or 0x82 not in parts:
            return b"", SW_WRONG_DATA
        if key["type"] == "rsa":
            out = rsa_raw(key, challenge)
            if out is None:
                return b"", SW_WRONG_DATA
        else:
            out = ecdsa_sign(int(key["d"], 16), challenge)
        if ref == 0x9C:
            self.always_ok = False
        return tlv(0x7C, tlv(0x82, out)), SW_OK


def next_chunk_sw(remaining):
    return bytes([0x61, remaining if remaining < 256 else 0x00])


def parse_apdu(a):
    """-> (cla, ins, p1, p2, data, ne) for the four ISO 7816-4 cases."""
    if len(a) < 4:
        raise ValueError("short APDU")
    cla, ins, p1, p2 = a[:4]
    body = a[4:]
    if not body:
        return cla, ins, p1, p2, b"", 256
    if len(body) == 1:
        return cla, ins, p1, p2, b"", body[0] or 256
    if body[0] != 0:  # short Lc
        lc = body[0]
        if len(body) == 1 + lc:
            return cla, ins, p1, p2, bytes(body[1:]), 256
        if len(body) == 2 + lc:
            return cla, ins, p1, p2, bytes(body[1:1 + lc]), body[-1] or 256
        raise ValueError("bad length")
    if len(body) == 3:  # extended Le only
        return cla, ins, p1, p2, b"", int.from_bytes(body[1:3], "big") or 65536
    lc = int.from_bytes(body[1:3], "big")
    if len(body) == 3 + lc:
        return cla, ins, p1, p2, bytes(body[3:]), 65536
    if len(body) == 5 + lc:
        return cla, ins, p1, p2, bytes(body[3:3 + lc]), int.from_bytes(body[-2:], "big") or 65536
    raise ValueError("bad length")


def make_atr():
    # T=0 and T=1 offered, historical bytes "scagentPIV", TCK over T0..end
    hist = b"scagentPIV"
    body = bytes([0x80 | len(hist), 0x80, 0x01]) + hist
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


# ---------------------------------------------------------------- vpcd

def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("vpcd closed the connection")
        buf += chunk
    return buf


def serve(card, sock, log):
    atr = make_atr()
    while True:
        size = struct.unpack("!H", recv_exact(sock, 2))[0]
        msg = recv_exact(sock, size) if size else b""
        if size == 1:
            ctrl = msg[0]
            if ctrl in (0, 1, 2):  # power off, power on, reset
                card.power_on()
            elif ctrl == 4:
                sock.sendall(struct.pack("!H", len(atr)) + atr)
            continue
        rapdu = card.execute(msg)
        if log:
            log.write("> %s\n< %s\n" % (redact(msg), rapdu.hex()))
            log.flush()
        sock.sendall(struct.pack("!H", len(rapdu)) + rapdu)


def redact(apdu):
    """APDU as hex for the log, with PINs and PUKs hidden."""
    if len(apdu) > 5 and apdu[1] in (0x20, 0x24, 0x2C):
        return apdu[:5].hex() + "<%d bytes hidden>" % (len(apdu) - 5)
    return apdu.hex()


def cmd_run(args):
    card = PivCard(args.state)
    log = open(args.log, "a") if args.log else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    announced = False
    while True:
        try:
            sock = socket.create_connection((args.host, args.port), timeout=2)
        except OSError as e:
            if args.once or not announced:
                print("piv-card: cannot reach vpcd at %s:%d (%s); is pcscd with vsmartcard's vpcd running?"
                      % (args.host, args.port, e.strerror or e), file=sys.stderr)
            if args.once:
                return 1
            announced = True
            time.sleep(0.2)
            continue
        sock.settimeout(None)
        announced = False
        print("piv-card: inserted into vpcd at %s:%d" % (args.host, args.port), file=sys.stderr)
        try:
            serve(card, sock, log)
        except (ConnectionError, OSError):
            pass
        sock.close()
        card.power_on()
        if args.once:
            return 0
        # pcscd went away: the card stays "in the reader" and comes back with it
        time.sleep(0.2)


def cmd_make_state(args):
    slots = {}
    for spec in args.slot:
        ref, keyfile, certfile = spec.split(":", 2)
        ref = int(ref, 16)
        if ref not in CERT_TAG:
            sys.exit("piv-card: key reference %02x is not one of 9a, 9c, 9d, 9e" % ref)
        with open(keyfile, "rb") as f:
            key = parse_key(f.read())
        with open(certfile, "rb") as f:
            cert = f.read()
        slots["%02x" % ref] = {"key": key, "cert": cert.hex()}
    if not 1 <= len(args.pin) <= 8 or not 1 <= len(args.puk) <= 8:
        sys.exit("piv-card: PIN and PUK must be 1 to 8 characters")
    state = {"pin": args.pin, "puk": args.puk, "pin_retries": args.retries,
             "pin_tries_left": args.retries, "guid": secrets.token_hex(16), "slots": slots}
    old = os.umask(0o077)
    try:
        with open(args.out, "w") as f:
            json.dump(state, f, indent=1)
    finally:
        os.umask(old)
    return 0


def main():
    ap = argparse.ArgumentParser(prog="piv-card", description="emulated PIV card for vpcd")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="insert the card into vpcd until stopped")
    r.add_argument("state")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=35963)
    r.add_argument("--log", help="append every APDU (PINs hidden) to this file")
    r.add_argument("--once", action="store_true", help="exit when vpcd goes away")
    m = sub.add_parser("make-state", help="write a card's state file")
    m.add_argument("--out", required=True)
    m.add_argument("--pin", required=True)
    m.add_argument("--puk", required=True)
    m.add_argument("--retries", type=int, default=3)
    m.add_argument("--slot", action="append", default=[], metavar="REF:KEY.der:CERT.der")
    args = ap.parse_args()
    return cmd_run(args) if args.cmd == "run" else cmd_make_state(args)


if __name__ == "__main__":
    sys.exit(main())
