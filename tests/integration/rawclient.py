#!/usr/bin/env python3
"""Speak raw bytes to scagentd, for the protocol tests.

usage: rawclient.py SOCKET [--hello] [--wait SEC] [--lines N] [--chunk N [--pace SEC]] [--linger SEC]

Sends standard input as it is (after a hello line with --hello; its reply is
not printed), in chunks of N bytes when --chunk is given, then prints every
line the agent sends until it closes the connection or nothing has come for
--wait seconds (default 2). The last line printed is "EOF" when the agent
closed the connection, "OPEN" when it was still open. --lines N: stop
reading (and print "OPEN") as soon as N lines have come. --linger SEC: keep the
connection open that long after sending, before reading (a slow client).
--pace SEC: wait that long before each chunk after the first (a client that
trickles its request).
"""
import socket
import sys
import time


def main():
    args = sys.argv[1:]
    path = args.pop(0)
    hello = wait = chunk = linger = lines = pace = None
    while args:
        a = args.pop(0)
        if a == "--hello":
            hello = True
        elif a == "--wait":
            wait = float(args.pop(0))
        elif a == "--lines":
            lines = int(args.pop(0))
        elif a == "--chunk":
            chunk = int(args.pop(0))
        elif a == "--pace":
            pace = float(args.pop(0))
        elif a == "--linger":
            linger = float(args.pop(0))
        else:
            sys.exit("rawclient.py: unknown option " + a)
    wait = 2.0 if wait is None else wait
    data = sys.stdin.buffer.read()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    buf = b""
    if hello:
        s.sendall(b'{"id":0,"op":"hello","version":1}\n')
        while b"\n" not in buf:
            got = s.recv(65536)
            if not got:
                print("EOF")
                return
            buf += got
        buf = buf.split(b"\n", 1)[1]
    try:
        if chunk:
            for i in range(0, len(data), chunk):
                if pace and i > 0:
                    time.sleep(pace)
                s.sendall(data[i:i + chunk])
        else:
            s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the agent dropped us while we were sending: read what it said
    if linger:
        time.sleep(linger)
    s.settimeout(wait)
    closed = False
    while True:
        try:
            got = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not got:
            closed = True
            break
        buf += got
        if lines is not None and buf.count(b"\n") >= lines:
            break
    for line in buf.split(b"\n"):
        if line:
            print(line.decode("utf-8", "replace"))
    print("EOF" if closed else "OPEN")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
