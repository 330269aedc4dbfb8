#!/usr/bin/python3
# scagent test kit: a local HTTPS server that asks for a client certificate
# from the kit's CA, as a load balancer (certificate in the handshake) or IIS
# (certificate only under one path) does, and answers with what it saw:
#
#     status: 200
#     path: /
#     tls: TLSv1.3
#     subject: CN=alice,O=Contoso
#     issuer: CN=Contoso Issuing CA,O=Contoso
#
# --verify require: no certificate, no handshake. --verify optional: asked for,
# not required ("subject: (none)"). --renegotiate PATH: nothing is asked in the
# handshake; a request for PATH (or below it) makes the server ask then, with
# TLS 1.3 post-handshake authentication, and answer 403 without a certificate.
# The TLS 1.2 form of that, a server-initiated renegotiation, is not available
# in Python's ssl module: --renegotiate with --tls 1.2 is refused (Apache with
# SSLVerifyClient inside a <Location> does it; see docs/TESTCARD.md).
#
# Only the Python standard library is needed.

import argparse
import socket
import socketserver
import ssl
import sys
import time


def dn(name):
    """getpeercert()'s subject tuple as RFC 4514 text (last RDN first)."""
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "domainComponent": "DC", "emailAddress": "emailAddress"}
    rdns = ["+".join("%s=%s" % (short.get(k, k), v) for k, v in rdn) for rdn in name]
    return ",".join(reversed(rdns))


class Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def setup(self):
        # the handshake in this connection's thread, not in the accept loop
        self.request.do_handshake()
        super().setup()

    def handle(self):
        conn = self.request
        try:
            line = self.rfile.readline(8192).decode("latin-1")
            while True:
                h = self.rfile.readline(8192)
                if h in (b"\r\n", b"\n", b""):
                    break
        except (OSError, ssl.SSLError):
            return
        parts = line.split()
        path = parts[1] if len(parts) >= 2 else "/"
        status = 200
        reneg = self.server.renegotiate
        if reneg and (path == reneg or path.startswith(reneg.rstrip("/") + "/")) \
                and conn.getpeercert() is None:
            status = self.ask_certificate(conn)
        cert = conn.getpeercert()
        body = "status: %d\npath: %s\ntls: %s\n" % (status, path, conn.version())
        if cert:
            body += "subject: %s\nissuer: %s\n" % (dn(cert["subject"]), dn(cert["issuer"]))
        else:
            body += "subject: (none)\n"
        reason = {200: "OK", 403: "Forbidden"}[status]
        out = ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
               "Connection: close\r\n\r\n%s" % (status, reason, len(body), body))
        try:
            self.wfile.write(out.encode())
            self.wfile.flush()
        except (OSError, ssl.SSLError):
            pass
        print("%s %s %d %s" % (conn.version(), path, status,
                               dn(cert["subject"]) if cert else "(no certificate)"), flush=True)

    def ask_certificate(self, conn):
        """TLS 1.3 post-handshake authentication; 403 when none came."""
        try:
            conn.verify_client_post_handshake()
            conn.do_handshake()  # sends the CertificateRequest
        except (ssl.SSLError, OSError) as e:
            print("post-handshake authentication failed: %s" % e, flush=True)
            return 403
        # The client's answer is read with the next record; it sends no more
        # application data, so read with a short timeout until it was processed.
        conn.settimeout(0.2)
        end = time.monotonic() + 10
        while conn.getpeercert() is None and time.monotonic() < end:
            try:
                conn.recv(1)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (ssl.SSLError, OSError) as e:
                print("post-handshake authentication failed: %s" % e, flush=True)
                break
        conn.settimeout(self.timeout)
        return 200 if conn.getpeercert() else 403


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(30)
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        print("connection from %s:%d failed: %s" % (client_address[0], client_address[1],
                                                    sys.exc_info()[1]), flush=True)


def main():
    ap = argparse.ArgumentParser(prog="scagent testcard server")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--verify", choices=["require", "optional"], default="require")
    ap.add_argument("--tls", choices=["1.2", "1.3"])
    ap.add_argument("--renegotiate", metavar="PATH")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--cafile", required=True)
    a = ap.parse_args()
    if a.renegotiate and a.tls == "1.2":
        sys.exit("scagent testcard server: --renegotiate needs TLS 1.3 (post-handshake "
                 "authentication); Python's ssl cannot renegotiate TLS 1.2. Drop --tls 1.2, "
                 "or use Apache for that case (docs/TESTCARD.md)")
    if a.renegotiate and not a.renegotiate.startswith("/"):
        sys.exit("scagent testcard server: --renegotiate takes a path starting with /")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.load_verify_locations(a.cafile)
    if a.tls == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif a.tls == "1.3" or a.renegotiate:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    if a.renegotiate:
        # Nothing asked in the handshake; verify_client_post_handshake later.
        ctx.post_handshake_auth = True
        ctx.verify_mode = ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED if a.verify == "require" else ssl.CERT_OPTIONAL
    try:
        srv = Server((a.bind, a.port), Handler, bind_and_activate=True)
    except OSError as e:
        sys.exit("scagent testcard server: cannot listen on %s:%d (%s); choose another --port"
                 % (a.bind, a.port, e.strerror))
    srv.ctx = ctx
    srv.renegotiate = a.renegotiate
    print("listening on https://localhost:%d/ (client certificate: %s%s)"
          % (a.port, "on request under " + a.renegotiate if a.renegotiate else a.verify,
             ", TLS " + a.tls if a.tls else ""), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
