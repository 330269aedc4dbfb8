#!/usr/bin/env python3
"""Clients that misbehave towards scagentd, for tests/integration/agent-doors.sh.

usage: doors-clients.py hold SOCKET IDLE WATCHERS SECONDS
           IDLE connections that never say hello and WATCHERS that say hello,
           watch and then only read; prints "ready" once all are connected,
           then after SECONDS one line per connection: "idle closed AFTER FIRST-LINE",
           "idle open", "watcher closed AFTER" or "watcher open".
       doors-clients.py stall SOCKET SECONDS
           hello and watch, then never read: prints "watching", sleeps SECONDS,
           then reads what came and prints "EOF" when the agent had closed the
           connection, else "OPEN".
       doors-clients.py churn SOCKET PIN TOKEN PAIRS
           PAIRS logins and logouts of TOKEN on one connection (each gives
           watchers an event); prints how many answers were ok.
"""
import json
import select
import socket
import sys
import time

HELLO = b'{"id":0,"op":"hello","version":1}\n'


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def readline(s, buf=b""):
    while b"\n" not in buf:
        got = s.recv(65536)
        if not got:
            raise EOFError
        buf += got
    line, rest = buf.split(b"\n", 1)
    return json.loads(line), rest


def hold(path, idle, watchers, seconds):
    conns = []
    for i in range(idle + watchers):
        s = connect(path)
        kind = "idle" if i < idle else "watcher"
        if kind == "watcher":
            s.sendall(HELLO + b'{"id":1,"op":"watch"}\n')
            buf = b""
            for _ in range(2):
                _, buf = readline(s, buf)
        conns.append({"s": s, "kind": kind, "data": b"", "closed": None})
    print("ready", flush=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        live = [c for c in conns if c["closed"] is None]
        if not live:
            break
        r, _, _ = select.select([c["s"] for c in live], [], [], 0.2)
        for c in live:
            if c["s"] in r:
                try:
                    got = c["s"].recv(65536)
                except ConnectionResetError:
                    got = b""
                if got:
                    c["data"] += got
                else:
                    c["closed"] = time.monotonic() - t0
    for c in conns:
        if c["closed"] is None:
            print(c["kind"], "open")
        else:
            first = c["data"].split(b"\n", 1)[0].decode("utf-8", "replace")
            print(c["kind"], "closed", "%.1f" % c["closed"], first)


def stall(path, seconds):
    s = connect(path)
    s.sendall(HELLO + b'{"id":1,"op":"watch"}\n')
    buf = b""
    for _ in range(2):
        _, buf = readline(s, buf)
    print("watching", flush=True)
    time.sleep(seconds)
    s.settimeout(2)
    closed = False
    try:
        while True:
            got = s.recv(1 << 20)
            if not got:
                closed = True
                break
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        pass
    print("EOF" if closed else "OPEN")


def churn(path, pin, token, pairs):
    s = connect(path)
    s.sendall(HELLO)
    _, buf = readline(s)
    good = 0
    for i in range(pairs):
        for j, req in enumerate(({"op": "login", "token": token, "pin": pin},
                                 {"op": "logout", "token": token})):
            req["id"] = 1 + 2 * i + j
            s.sendall(json.dumps(req).encode() + b"\n")
            resp, buf = readline(s, buf)
            good += resp.get("ok") is True
    print(good)


def main():
    a = sys.argv[1:]
    if a[:1] == ["hold"] and len(a) == 5:
        hold(a[1], int(a[2]), int(a[3]), float(a[4]))
    elif a[:1] == ["stall"] and len(a) == 3:
        stall(a[1], float(a[2]))
    elif a[:1] == ["churn"] and len(a) == 5:
        churn(a[1], a[2], a[3], int(a[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
