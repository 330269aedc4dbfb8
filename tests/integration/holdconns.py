#!/usr/bin/env python3
"""Open connections to scagentd and keep them, for the tests of its limits.

usage: holdconns.py SOCKET N RELEASE

Opens N connections one after the other, each saying hello and waiting up to
3 s for the answer. Prints one line "OK BUSY HUNG OTHER": connections
answered (kept open), refused with a `busy` error, not answered within 3 s,
anything else (each busy or other message also goes to stderr). Then keeps
the connections open until the file RELEASE exists.
"""
import json
import os
import socket
import sys
import time


def hello(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(path)
    try:
        s.sendall(b'{"id":0,"op":"hello","version":1}\n')
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before the hello went: its answer may be there
    buf = b""
    while b"\n" not in buf:
        got = s.recv(4096)
        if not got:
            break
        buf += got
    return s, buf.split(b"\n")[0]


def main():
    path, n, release = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    kept, busy, hung, other = [], 0, 0, 0
    for _ in range(n):
        try:
            s, line = hello(path)
        except socket.timeout:
            hung += 1
            continue
        except OSError as e:
            other += 1
            print("error:", e, file=sys.stderr)
            continue
        a = json.loads(line) if line else {}
        if a.get("ok"):
            kept.append(s)
        elif a.get("error", {}).get("code") == "busy":
            busy += 1
            print("busy:", a["error"]["message"], file=sys.stderr)
            s.close()
        else:
            other += 1
            print("other:", line, file=sys.stderr)
            s.close()
    print(len(kept), busy, hung, other, flush=True)
    while not os.path.exists(release):
        time.sleep(0.1)


main()
