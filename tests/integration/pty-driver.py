#!/usr/bin/env python3
"""A user at a terminal, for the login tests.

pty-driver.py run PIN CMD...
    Runs CMD with a new pseudo-terminal as its controlling terminal, waits
    for it to print a prompt ending in ": ", types PIN and Enter, and prints
    everything CMD wrote to the terminal, then "EXIT <status>". Since the
    terminal echoes typed characters unless the program turned echo off, the
    PIN shows up in that output exactly when it was echoed.

pty-driver.py run-pins PIN1/PIN2/... CMD...
    The same for a command that asks several times: each prompt gets the
    next PIN.

pty-driver.py answer TTYFILE LOGFILE PIN...
    Opens a pseudo-terminal, writes its name to TTYFILE, then plays the user
    of a terminal pinentry (pinentry-tty) on it: each time "PIN:" appears it
    appends "prompt N: <what the terminal showed>" to LOGFILE and types the
    next PIN (the last one again when they run out). A confirmation
    (pinentry's CONFIRM: a line of choices like "[ad]? ") is answered the
    same way, with the next word of PIN... typed as the key (no Enter), logged
    as "confirm N: ...". Runs until killed.
"""
import os
import pty
import select
import sys
import time


def run(pins, cmd):
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    out = b""
    typed = 0
    prompts = 0
    deadline = time.time() + 30
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                got = os.read(fd, 4096)
            except OSError:
                break
            if not got:
                break
            out += got
        if typed < len(pins) and out.count(b": ") > prompts and out.rstrip(b" ").endswith(b":"):
            time.sleep(0.1)
            os.write(fd, pins[typed].encode() + b"\r")
            typed += 1
            prompts = out.count(b": ")
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(out.decode("utf-8", "replace"))
    print("\nEXIT %d" % os.waitstatus_to_exitcode(status))


def answer(ttyfile, logfile, pins):
    master, slave = pty.openpty()
    with open(ttyfile + ".tmp", "w") as f:
        f.write(os.ttyname(slave) + "\n")
    os.rename(ttyfile + ".tmp", ttyfile)
    seen = b""
    count = 0
    end = time.time() + 300
    while time.time() < end:
        r, _, _ = select.select([master], [], [], 0.5)
        if not r:
            continue
        seen += os.read(master, 4096)
        what = "prompt" if b"PIN:" in seen else "confirm" if seen.rstrip(b" ").endswith(b"]?") else None
        if what:
            count += 1
            with open(logfile, "a") as f:
                f.write("%s %d: %s\n" % (what, count, seen.decode("utf-8", "replace").replace("\r", "").replace("\n", " ")))
            pin = pins[min(count, len(pins)) - 1]
            time.sleep(0.1)
            # a confirmation takes one key, a PIN a line
            os.write(master, pin.encode() + (b"" if what == "confirm" else b"\r"))
            seen = b""


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "run":
        run([sys.argv[2]], sys.argv[3:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "run-pins":
        run(sys.argv[2].split("/"), sys.argv[3:])
    elif len(sys.argv) >= 5 and sys.argv[1] == "answer":
        answer(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)
